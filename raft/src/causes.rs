//! The closed vocabularies inside replicated commands: which operation libvirt refused
//! (`VmAction`), why a VM went down (`DownCause`) and why a host was declared down
//! (`HostDownCause`). Each is stored as the word or sentence that the `String` it replaced
//! held, so logs and snapshots written before these types read the same, and a string this
//! build does not know is kept as `Other`: decoding the log never fails on one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A VM operation the host agent asked libvirt for, and libvirt refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmAction {
    Start,
    PowerOff,
    ShutDown,
    Suspend,
    Resume,
    Reboot,
    /// One this build does not know (written by another build).
    Other(String),
}

impl VmAction {
    const WORDS: [(VmAction, &'static str); 6] = [
        (VmAction::Start, "start"),
        (VmAction::PowerOff, "power off"),
        (VmAction::ShutDown, "shut down"),
        (VmAction::Suspend, "suspend"),
        (VmAction::Resume, "resume"),
        (VmAction::Reboot, "reboot"),
    ];
}

impl fmt::Display for VmAction {
    /// The verb as a message uses it: "Could not {action} VM web1".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmAction::Other(text) => f.write_str(text),
            known => f.write_str(Self::WORDS.iter().find(|(a, _)| a == known).map_or("", |(_, w)| w)),
        }
    }
}

impl From<String> for VmAction {
    fn from(text: String) -> Self {
        Self::WORDS.iter().find(|(_, w)| *w == text).map_or(VmAction::Other(text), |(a, _)| a.clone())
    }
}

/// Why a VM's domain is no longer running on its host, as the host agent saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownCause {
    /// Stopped as the cluster ordered, with no reason given.
    PoweredOff,
    /// Its host lost its lease and destroyed it (self-fencing).
    SelfFenced { host: String },
    /// libvirt reports the guest crashed.
    Crashed,
    /// The guest shut itself down (HA leaves it down, as oVirt does).
    GuestShutdown,
    /// QEMU ended without a shutdown: killed, or it failed.
    ProcessEnded,
    /// The domain is gone from the hypervisor.
    Vanished,
    /// Killed after a storage I/O error pause, as its resume behaviour says.
    KilledAfterIoError,
    /// Free text: the operator's reason for a stop ordered with one, or a cause this build does
    /// not know (written by another build).
    Other(String),
}

impl DownCause {
    const SENTENCES: [(DownCause, &'static str); 6] = [
        (DownCause::PoweredOff, "powered off"),
        (DownCause::Crashed, "the guest crashed"),
        (DownCause::GuestShutdown, "it was shut down from inside the guest"),
        (DownCause::ProcessEnded, "its QEMU process ended without a shutdown (killed or failed)"),
        (DownCause::Vanished, "its domain disappeared from the hypervisor"),
        (DownCause::KilledAfterIoError, "it was killed after a storage I/O error pause (resume behaviour: kill)"),
    ];
    const FENCED: (&'static str, &'static str) = ("host ", " lost its lease and stopped it (self-fencing)");

    fn parse(text: &str) -> Option<DownCause> {
        if let Some((cause, _)) = Self::SENTENCES.iter().find(|(_, s)| *s == text) {
            return Some(cause.clone());
        }
        let host = text.strip_prefix(Self::FENCED.0)?.strip_suffix(Self::FENCED.1)?;
        Some(DownCause::SelfFenced { host: host.to_string() })
    }
}

impl fmt::Display for DownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownCause::SelfFenced { host } => write!(f, "{}{host}{}", Self::FENCED.0, Self::FENCED.1),
            DownCause::Other(text) => f.write_str(text),
            known => f.write_str(Self::SENTENCES.iter().find(|(c, _)| c == known).map_or("", |(_, s)| s)),
        }
    }
}

impl From<String> for DownCause {
    fn from(text: String) -> Self {
        read_back(text, DownCause::parse, DownCause::Other)
    }
}

/// Why the leader declared a host down (its lease has certainly ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDownCause {
    /// No heartbeat for `silent_ms` (whole tenths of a second, as the event shows it), longer
    /// than its lease of `lease_ms` and the margin.
    LeaseEnded { silent_ms: u64, lease_ms: u64 },
    /// The fence agent powered it off after `silent_ms` (whole tenths) without a heartbeat.
    FenceAgent { silent_ms: u64 },
    /// This node was restored from a backup as a cluster of its own.
    Restored,
    /// `corrald --force-new-cluster` made a cluster of its own on another host.
    ForcedNewCluster,
    /// One this build does not know (written by another build).
    Other(String),
}

impl HostDownCause {
    const RESTORED: &'static str = "the cluster was restored from a backup";
    const FORCED: &'static str = "a new cluster was forced on another host";

    /// The lease ended: silent for `silent_ms` (kept to the tenth of a second the event shows).
    pub fn lease_ended(silent_ms: u64, lease_ms: u64) -> Self {
        HostDownCause::LeaseEnded { silent_ms: tenths(silent_ms), lease_ms }
    }

    pub fn fence_agent(silent_ms: u64) -> Self {
        HostDownCause::FenceAgent { silent_ms: tenths(silent_ms) }
    }

    fn parse(text: &str) -> Option<HostDownCause> {
        match text {
            Self::RESTORED => return Some(HostDownCause::Restored),
            Self::FORCED => return Some(HostDownCause::ForcedNewCluster),
            _ => {}
        }
        if let Some(rest) = text.strip_prefix("no heartbeat for ") {
            let (silent, rest) = rest.split_once(" s, so its ")?;
            let lease = rest.strip_suffix(" s lease has certainly ended")?;
            return Some(HostDownCause::LeaseEnded { silent_ms: millis(silent)?, lease_ms: millis(lease)? });
        }
        let silent =
            text.strip_prefix("the fence agent powered it off after ")?.strip_suffix(" s without a heartbeat")?;
        Some(HostDownCause::FenceAgent { silent_ms: millis(silent)? })
    }
}

impl fmt::Display for HostDownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ms: &u64| *ms as f64 / 1000.0;
        match self {
            HostDownCause::LeaseEnded { silent_ms, lease_ms } => write!(
                f,
                "no heartbeat for {:.1} s, so its {} s lease has certainly ended",
                secs(silent_ms),
                secs(lease_ms)
            ),
            HostDownCause::FenceAgent { silent_ms } => {
                write!(f, "the fence agent powered it off after {:.1} s without a heartbeat", secs(silent_ms))
            }
            HostDownCause::Restored => f.write_str(Self::RESTORED),
            HostDownCause::ForcedNewCluster => f.write_str(Self::FORCED),
            HostDownCause::Other(text) => f.write_str(text),
        }
    }
}

impl From<String> for HostDownCause {
    fn from(text: String) -> Self {
        read_back(text, HostDownCause::parse, HostDownCause::Other)
    }
}

/// Milliseconds rounded to the tenth of a second.
fn tenths(ms: u64) -> u64 {
    (ms + 50) / 100 * 100
}

/// "12.3" (seconds) as milliseconds.
fn millis(secs: &str) -> Option<u64> {
    let s: f64 = secs.parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| (s * 1000.0).round() as u64)
}

/// The typed value a stored string means, if writing that value gives the same string back
/// (so the bytes a log holds are the bytes this build writes again); otherwise `Other`.
fn read_back<T: fmt::Display>(text: String, parse: fn(&str) -> Option<T>, other: fn(String) -> T) -> T {
    match parse(&text) {
        Some(v) if v.to_string() == text => v,
        _ => other(text),
    }
}

/// Stored as text, as the `String`s they replaced were; `From<&str>` for tests and callers
/// that name a cause by its words.
macro_rules! as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(<$t>::from)
            }
        }
        impl From<&str> for $t {
            fn from(text: &str) -> Self {
                <$t>::from(text.to_string())
            }
        }
    )*};
}
as_text!(VmAction, DownCause, HostDownCause);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_value_reads_back_from_its_text() {
        let actions = VmAction::WORDS.iter().map(|(a, _)| a.clone());
        for a in actions.chain([VmAction::Other("migrate".into())]) {
            assert_eq!(VmAction::from(a.to_string()), a);
        }
        let causes = DownCause::SENTENCES.iter().map(|(c, _)| c.clone());
        for c in causes.chain([DownCause::SelfFenced { host: "host2".into() }, DownCause::Other("firmware".into())]) {
            assert_eq!(DownCause::from(c.to_string()), c);
        }
        for h in [
            HostDownCause::lease_ended(12_345, 10_000),
            HostDownCause::lease_ended(3_000, 2_500),
            HostDownCause::fence_agent(4_449),
            HostDownCause::Restored,
            HostDownCause::ForcedNewCluster,
            HostDownCause::Other("its lease ended".into()),
        ] {
            assert_eq!(HostDownCause::from(h.to_string()), h);
        }
    }

    #[test]
    fn text_that_would_not_be_written_back_the_same_stays_text() {
        // "12.34" would be written "12.3": kept as it was, so re-encoding gives the same bytes.
        let odd = "no heartbeat for 12.34 s, so its 10 s lease has certainly ended";
        assert_eq!(HostDownCause::from(odd), HostDownCause::Other(odd.into()));
        assert_eq!(VmAction::from("Start"), VmAction::Other("Start".into()));
        assert_eq!(
            HostDownCause::lease_ended(12_345, 10_000).to_string(),
            "no heartbeat for 12.3 s, so its 10 s lease has certainly ended"
        );
    }
}
