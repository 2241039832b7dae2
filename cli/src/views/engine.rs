//! `engine status` and `engine start-local`: the hosted engine VM and each host's fitness to run it.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::{non_empty, word};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatusView {
    /// The engine VM's name.
    pub vm: String,
    pub vm_id: String,
    /// The host it runs on; null when it runs nowhere.
    pub host: Option<String>,
    pub state: String,
    pub global_maintenance: bool,
    pub hosts: Vec<EngineHostView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineHostView {
    pub host: String,
    pub state: String,
    /// Null when the host has not reported one.
    pub score: Option<u32>,
    pub penalties: Vec<String>,
    pub local_maintenance: bool,
    pub engine_here: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStartView {
    pub vm: String,
    pub host: String,
    /// What was checked, and what --force overrode.
    pub notes: Vec<String>,
}

impl From<proto::EngineStatus> for EngineStatusView {
    fn from(s: proto::EngineStatus) -> Self {
        EngineStatusView {
            vm: s.vm,
            vm_id: s.vm_id,
            host: non_empty(s.host),
            state: word::<proto::VmStatus>(s.state_enum, s.state),
            global_maintenance: s.global_maintenance,
            hosts: s.hosts.into_iter().map(EngineHostView::from).collect(),
        }
    }
}

impl From<proto::EngineHost> for EngineHostView {
    fn from(h: proto::EngineHost) -> Self {
        let (score, penalties) = match h.score {
            Some(s) => (Some(s.score), s.penalties),
            None => (None, Vec::new()),
        };
        EngineHostView {
            host: h.host,
            state: word::<proto::HostState>(h.state_enum, h.state),
            score,
            penalties,
            local_maintenance: h.local_maintenance,
            engine_here: h.engine_here,
        }
    }
}

impl From<proto::EngineStartLocalResponse> for EngineStartView {
    fn from(r: proto::EngineStartLocalResponse) -> Self {
        EngineStartView { vm: r.vm, host: r.host, notes: r.notes }
    }
}
