//! What `-o json` prints: one serde struct per result, converted from the proto messages here
//! and nowhere else. These shapes are a contract with scripts and tests; add fields, never
//! rename or remove them.

use chrono::{DateTime, SecondsFormat, Utc};
use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatusView {
    pub cluster: String,
    /// 0 while no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub members: Vec<MemberView>,
    pub this_node_id: u64,
    pub last_applied: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub name: String,
    pub address: String,
    /// "voter" or "learner".
    pub role: String,
    pub reachable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub id: u64,
    pub name: String,
    pub address: String,
    pub state: String,
    pub cpus: u32,
    pub memory_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmView {
    pub id: String,
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub description: String,
    pub comment: String,
    pub status: String,
    /// The host the VM runs on, if any.
    pub host: Option<String>,
    pub ha: HaView,
    /// RFC 3339, UTC.
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaView {
    pub enabled: bool,
    pub priority: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedVmView {
    pub id: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub index: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapView {
    pub cluster: String,
    pub node_id: u64,
    pub token: String,
    /// RFC 3339, UTC.
    pub expires: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub token: String,
    /// RFC 3339, UTC.
    pub expires: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinView {
    pub node_id: u64,
    pub cluster: String,
    pub role: String,
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T04:10:00.123Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<proto::ClusterStatus> for ClusterStatusView {
    fn from(s: proto::ClusterStatus) -> Self {
        ClusterStatusView {
            cluster: s.cluster,
            leader_id: s.leader_id,
            term: s.term,
            members: s.members.into_iter().map(MemberView::from).collect(),
            this_node_id: s.this_node_id,
            last_applied: s.last_applied,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
        }
    }
}

impl From<proto::Member> for MemberView {
    fn from(m: proto::Member) -> Self {
        MemberView { id: m.id, name: m.name, address: m.address, role: m.role, reachable: m.reachable }
    }
}

impl From<proto::Host> for HostView {
    fn from(h: proto::Host) -> Self {
        HostView { id: h.id, name: h.name, address: h.address, state: h.state, cpus: h.cpus, memory_mib: h.memory_mib }
    }
}

impl From<proto::Vm> for VmView {
    fn from(vm: proto::Vm) -> Self {
        let ha = vm.ha.unwrap_or_default();
        VmView {
            id: vm.id,
            name: vm.name,
            memory_mib: vm.memory_mib,
            vcpus: vm.vcpus,
            description: vm.description,
            comment: vm.comment,
            status: vm.status,
            host: vm.host.filter(|h| !h.is_empty()),
            ha: HaView { enabled: ha.enabled, priority: ha.priority },
            created: rfc3339(vm.created_unix_ms),
        }
    }
}

impl From<proto::Event> for EventView {
    fn from(e: proto::Event) -> Self {
        EventView { index: e.index, time: rfc3339(e.time_unix_ms), kind: e.kind, message: e.message }
    }
}

impl BootstrapView {
    pub fn new(cluster: String, r: proto::BootstrapResponse) -> Self {
        BootstrapView { cluster, node_id: r.node_id, token: r.token, expires: rfc3339(r.token_expires_unix_ms) }
    }
}

impl From<proto::CreateTokenResponse> for TokenView {
    fn from(r: proto::CreateTokenResponse) -> Self {
        TokenView { token: r.token, expires: rfc3339(r.expires_unix_ms) }
    }
}

impl From<proto::JoinResponse> for JoinView {
    fn from(r: proto::JoinResponse) -> Self {
        JoinView { node_id: r.node_id, cluster: r.cluster_name, role: r.role }
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

    #[test]
    fn vm_json_has_the_documented_shape() {
        let vm = proto::Vm {
            id: "7f9c".into(),
            name: "web1".into(),
            memory_mib: 1024,
            vcpus: 2,
            ha: Some(proto::HaSettings { enabled: true, priority: "high".into() }),
            status: "stopped".into(),
            host: Some(String::new()),
            ..Default::default()
        };
        let json = serde_json::to_value(VmView::from(vm)).unwrap();
        assert_eq!(json["host"], serde_json::Value::Null);
        assert_eq!(json["ha"]["enabled"], true);
        assert_eq!(json["ha"]["priority"], "high");
        assert_eq!(json["memory_mib"], 1024);
        assert_eq!(json["created"], "1970-01-01T00:00:00.000Z");
    }
}
