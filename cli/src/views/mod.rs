//! What `-o json` prints: one serde struct per result, converted from the proto messages here
//! and nowhere else. These shapes are a contract with scripts and tests; add fields, never
//! rename or remove them.
//!
//! One file per noun, as in `commands/`; everything is re-exported here, so callers name a view
//! as `views::VmView` whatever file holds it.

mod affinity;
mod cluster;
mod disk;
mod engine;
mod events;
mod host;
mod ovf;
mod snapshot;
mod vm;

pub use affinity::{AffinityGroupView, AffinityLabelView};
pub use cluster::{
    BootstrapView, ClusterSettingsView, ClusterStatusView, JoinView, MemberView, MigrationSettingsView, TokenInfoView,
    TokenView,
};
pub use disk::DiskView;
pub use engine::{EngineHostView, EngineStartView, EngineStatusView};
pub use events::EventView;
pub use host::{EngineScoreView, HostView, MaintenanceBlockView};
pub use ovf::{ExportView, ImportView, OvfDocumentView, OvfEntryView, OvfListView};
pub use snapshot::{SnapshotDetailView, SnapshotDiskView, SnapshotView};
pub use vm::{
    DeletedVmView, HaRestartView, HaView, MigrationOverridesView, MigrationProgressView, MigrationView, NextRunView,
    NicView, VmDiskView, VmView, VncTicketView,
};

use chrono::{DateTime, SecondsFormat, Utc};
use corral_proto::Word;

/// Unix milliseconds as RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T04:10:00.123Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A closed-set field as the server sent it: its enum's word, or the string field beside it
/// when the enum is unspecified (a server that sends only the strings, such as release 3f21f51,
/// or a value newer than this CLI).
fn word<E: Word>(value: i32, text: String) -> String {
    match E::of(value) {
        v if v.is_unspecified() => text,
        v => v.word().to_string(),
    }
}

/// Proto3 cannot tell an empty string from none; JSON says null for both.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

/// Test fixtures shared by the views' and the commands' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use corral_proto as proto;

    /// The engine VM, with every field the plain VM lacks.
    pub fn engine_vm() -> proto::Vm {
        proto::Vm {
            name: "HostedEngine".into(),
            hosted_engine: true,
            delete_protected: true,
            os: "other_linux".into(),
            cdrom: Some("tools.iso".into()),
            ..Default::default()
        }
    }

    /// A host with an engine score (its gateway fails) in local maintenance.
    pub fn engine_host() -> proto::Host {
        proto::Host {
            name: "host2".into(),
            engine_score: Some(proto::EngineScore {
                score: 1800,
                penalties: vec!["gateway 10.0.0.1 unreachable: -1600".into()],
                measured_unix_ms: 0,
            }),
            engine_local_maintenance: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_320_600_123), "2026-11-22T04:10:00.123Z");
    }
}
