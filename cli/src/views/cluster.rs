//! `cluster status`, `cluster settings`, `bootstrap`, `token` and `join`: the cluster as a whole
//! and how a node enters it.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::vm::VmView;
use super::{rfc3339, word};

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
    /// How live migrations run, unless a VM says otherwise.
    pub migration: MigrationSettingsView,
    /// "even" or "pack"; empty before bootstrap.
    pub scheduling: String,
    /// vCPUs a host may hand out per physical CPU.
    pub cpu_overcommit: u32,
    /// The format and features every member must understand (raised by `cluster upgrade`).
    pub cluster_level: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSettingsView {
    pub scheduling: String,
    pub cpu_overcommit: u32,
    pub migration: MigrationSettingsView,
    /// Snapshots kept per VM; 0: no cap.
    #[serde(default)]
    pub max_snapshots: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub name: String,
    pub address: String,
    /// "voter" or "learner".
    pub role: String,
    pub reachable: bool,
    /// Its software version; empty when it does not answer.
    pub version: String,
    /// The highest cluster level it supports.
    pub max_level: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationSettingsView {
    pub auto_converge: bool,
    pub compression: bool,
    /// Null: libvirt's default.
    pub max_downtime_ms: Option<u64>,
    /// Null: unlimited.
    pub bandwidth_mibps: Option<u64>,
    pub max_per_host: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapView {
    pub cluster: String,
    pub node_id: u64,
    pub token: String,
    /// RFC 3339, UTC.
    pub expires: String,
    /// The hosted engine VM, when the bootstrap made one; null otherwise.
    pub engine: Option<VmView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub token: String,
    /// RFC 3339, UTC.
    pub expires: String,
    /// For `cluster token revoke`.
    #[serde(default)]
    pub id: String,
}

/// A join token as `cluster token list` shows it: never the token itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfoView {
    pub id: String,
    pub created: String,
    pub expires: String,
    pub uses: u32,
}

impl From<proto::JoinTokenInfo> for TokenInfoView {
    fn from(t: proto::JoinTokenInfo) -> Self {
        TokenInfoView {
            id: t.id,
            created: rfc3339(t.created_unix_ms),
            expires: rfc3339(t.expires_unix_ms),
            uses: t.uses,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinView {
    pub node_id: u64,
    pub cluster: String,
    pub role: String,
}

fn migration_view(m: Option<proto::MigrationSettings>) -> MigrationSettingsView {
    m.map(|m| MigrationSettingsView {
        auto_converge: m.auto_converge,
        compression: m.compression,
        max_downtime_ms: m.max_downtime_ms,
        bandwidth_mibps: m.bandwidth_mibps,
        max_per_host: m.max_per_host,
    })
    .unwrap_or_default()
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
            migration: migration_view(s.settings.as_ref().and_then(|c| c.migration)),
            scheduling: s
                .settings
                .as_ref()
                .map(|c| word::<proto::SchedulingPolicy>(c.scheduling_enum, c.scheduling.clone()))
                .unwrap_or_default(),
            cpu_overcommit: s.settings.map_or(0, |c| c.cpu_overcommit),
            cluster_level: s.cluster_level,
        }
    }
}

impl From<proto::Member> for MemberView {
    fn from(m: proto::Member) -> Self {
        MemberView {
            id: m.id,
            name: m.name,
            address: m.address,
            role: word::<proto::MemberRole>(m.role_enum, m.role),
            reachable: m.reachable,
            version: m.version,
            max_level: m.max_level,
        }
    }
}

impl From<proto::ClusterSettings> for ClusterSettingsView {
    fn from(c: proto::ClusterSettings) -> Self {
        ClusterSettingsView {
            scheduling: word::<proto::SchedulingPolicy>(c.scheduling_enum, c.scheduling),
            cpu_overcommit: c.cpu_overcommit,
            migration: migration_view(c.migration),
            max_snapshots: c.max_snapshots,
        }
    }
}

impl BootstrapView {
    pub fn new(cluster: String, r: proto::BootstrapResponse) -> Self {
        BootstrapView {
            cluster,
            node_id: r.node_id,
            token: r.token,
            expires: rfc3339(r.token_expires_unix_ms),
            engine: r.engine.map(VmView::from),
        }
    }
}

impl From<proto::CreateTokenResponse> for TokenView {
    fn from(r: proto::CreateTokenResponse) -> Self {
        TokenView { token: r.token, expires: rfc3339(r.expires_unix_ms), id: r.id }
    }
}

impl From<proto::JoinResponse> for JoinView {
    fn from(r: proto::JoinResponse) -> Self {
        JoinView { node_id: r.node_id, cluster: r.cluster_name, role: word::<proto::MemberRole>(r.role_enum, r.role) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_json_has_the_engine_vm_or_null() {
        let plain = BootstrapView::new("lab".into(), proto::BootstrapResponse::default());
        assert_eq!(serde_json::to_value(plain).unwrap()["engine"], serde_json::Value::Null);
        let response = proto::BootstrapResponse {
            engine: Some(proto::Vm { name: "HostedEngine".into(), hosted_engine: true, ..Default::default() }),
            ..Default::default()
        };
        let json = serde_json::to_value(BootstrapView::new("lab".into(), response)).unwrap();
        assert_eq!(json["engine"]["name"], "HostedEngine");
        assert_eq!(json["engine"]["hosted_engine"], true);
    }
}
