//! `host list` and `host show`: a host's capacity, state, maintenance and hosted-engine score.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::{rfc3339, word};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub id: u64,
    pub name: String,
    pub address: String,
    pub state: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub memory_free_mib: u64,
    pub vms_running: u32,
    /// The hypervisor its VMs run under by default: "kvm", "qemu" or "test".
    pub domain_type: String,
    pub vcpus_free: u32,
    /// RFC 3339, UTC: since when the host is in its state.
    pub state_since: String,
    /// Set while the host is ordered into maintenance (the reason, possibly empty).
    pub maintenance_reason: Option<String>,
    /// VMs that keep it from entering maintenance, with why.
    pub blocked: Vec<MaintenanceBlockView>,
    /// What the host offers, for VMs that require tags.
    pub tags: Vec<String>,
    /// Hosted engine: the host's last reported score; null when it never reported one.
    pub engine_score: Option<EngineScoreView>,
    /// Hosted engine: the host will not run the engine VM.
    pub engine_local_maintenance: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineScoreView {
    pub score: u32,
    /// What lowered it, e.g. "gateway 10.0.0.1 unreachable: -1600".
    pub penalties: Vec<String>,
    /// RFC 3339, UTC.
    pub measured: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceBlockView {
    pub vm: String,
    pub reason: String,
}

impl From<proto::Host> for HostView {
    fn from(h: proto::Host) -> Self {
        HostView {
            id: h.id,
            name: h.name,
            address: h.address,
            state: word::<proto::HostState>(h.state_enum, h.state),
            cpus: h.cpus,
            memory_mib: h.memory_mib,
            memory_free_mib: h.memory_free_mib,
            vms_running: h.vms_running,
            domain_type: word::<proto::DomainType>(h.domain_type_enum, h.domain_type),
            vcpus_free: h.vcpus_free,
            state_since: rfc3339(h.state_since_unix_ms),
            maintenance_reason: h.maintenance_reason,
            blocked: h.blocked.into_iter().map(|b| MaintenanceBlockView { vm: b.vm, reason: b.reason }).collect(),
            tags: h.tags,
            engine_score: h.engine_score.map(EngineScoreView::from),
            engine_local_maintenance: h.engine_local_maintenance,
        }
    }
}

impl From<proto::EngineScore> for EngineScoreView {
    fn from(s: proto::EngineScore) -> Self {
        EngineScoreView { score: s.score, penalties: s.penalties, measured: rfc3339(s.measured_unix_ms) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::fixtures::engine_host;

    #[test]
    fn host_json_has_its_engine_score() {
        let plain = serde_json::to_value(HostView::from(proto::Host::default())).unwrap();
        assert_eq!(plain["engine_score"], serde_json::Value::Null);
        assert_eq!(plain["engine_local_maintenance"], false);
        let host = engine_host();
        let json = serde_json::to_value(HostView::from(host)).unwrap();
        assert_eq!(
            json["engine_score"],
            serde_json::json!({"score": 1800, "penalties": ["gateway 10.0.0.1 unreachable: -1600"],
                "measured": "1970-01-01T00:00:00.000Z"})
        );
        assert_eq!(json["engine_local_maintenance"], true);
    }

    #[test]
    fn host_json_has_capacity_left() {
        let host = proto::Host {
            id: 2,
            name: "host2".into(),
            cpus: 8,
            memory_mib: 16384,
            memory_free_mib: 15360,
            vms_running: 1,
            domain_type: "kvm".into(),
            vcpus_free: 7,
            tags: vec!["ssd".into()],
            ..Default::default()
        };
        let json = serde_json::to_value(HostView::from(host)).unwrap();
        assert_eq!(json["memory_free_mib"], 15360);
        assert_eq!(json["vms_running"], 1);
        assert_eq!(json["domain_type"], "kvm");
        assert_eq!(json["vcpus_free"], 7);
        assert_eq!(json["memory_mib"], 16384);
        assert_eq!(json["tags"], serde_json::json!(["ssd"]));
    }
}
