//! The replicated model of the cluster: hosts, VMs, join tokens, recent requests and a
//! bounded event log. Plain data; `apply.rs` is the only code that changes it, and only as
//! a function of (state, command).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::typ::NodeId;

/// How many events the log keeps; older ones are dropped first.
pub const MAX_EVENTS: usize = 10_000;
/// How many request ids are remembered for de-duplicating retried writes.
pub const MAX_RECENT_REQUESTS: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Set once, by bootstrap.
    pub cluster: Option<ClusterInfo>,
    pub hosts: BTreeMap<NodeId, Host>,
    pub vms: BTreeMap<Uuid, Vm>,
    /// Name -> id; kept in step with `vms` by apply.
    pub vm_names: BTreeMap<String, Uuid>,
    /// Join tokens by their SHA-256 (hex); the token itself is never stored.
    pub tokens: BTreeMap<String, JoinToken>,
    pub events: VecDeque<Event>,
    pub next_event_index: u64,
    /// The last leader that recorded itself, with its term.
    pub leader: Option<(NodeId, u64)>,
    /// Replies of recent writes by request id, so that a client retrying a write after a
    /// failover gets the first reply instead of applying it twice.
    pub recent_requests: BTreeMap<Uuid, crate::Reply>,
    pub recent_order: VecDeque<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    /// How many voters the cluster keeps (3 or 5); further nodes stay learners.
    pub voters: u8,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub state: HostState,
    pub facts: HostFacts,
    pub joined_ms: i64,
}

/// What a host reports about itself when it joins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_mib: u64,
    pub libvirt_uri: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    /// Registered with a valid token, not yet a Raft member.
    Joining,
    Up,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Joining => "joining",
            HostState::Up => "up",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub created_ms: i64,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub comment: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub ha: HaSettings,
    pub status: VmStatus,
    pub host: Option<NodeId>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaSettings {
    pub enabled: bool,
    pub priority: HaPriority,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HaPriority {
    Low,
    #[default]
    Medium,
    High,
}

impl HaPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            HaPriority::Low => "low",
            HaPriority::Medium => "medium",
            HaPriority::High => "high",
        }
    }
}

impl fmt::Display for HaPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HaPriority {
    type Err = crate::ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(HaPriority::Low),
            "medium" => Ok(HaPriority::Medium),
            "high" => Ok(HaPriority::High),
            other => {
                Err(crate::ClusterError::invalid("ha_priority", format!("must be low, medium or high (got '{other}')")))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmStatus {
    #[default]
    Down,
}

impl VmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VmStatus::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    pub time_ms: i64,
    pub kind: EventKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    ClusterBootstrapped,
    HostJoined,
    HostLeft,
    LeaderChanged,
    TokenCreated,
    VmCreated,
    VmEdited,
    VmDeleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ClusterBootstrapped => "cluster_bootstrapped",
            EventKind::HostJoined => "host_joined",
            EventKind::HostLeft => "host_left",
            EventKind::LeaderChanged => "leader_changed",
            EventKind::TokenCreated => "token_created",
            EventKind::VmCreated => "vm_created",
            EventKind::VmEdited => "vm_edited",
            EventKind::VmDeleted => "vm_deleted",
        }
    }
}

impl ClusterState {
    /// Finds a VM by name or by id.
    pub fn find_vm(&self, name_or_id: &str) -> Option<&Vm> {
        if let Some(id) = self.vm_names.get(name_or_id) {
            return self.vms.get(id);
        }
        Uuid::parse_str(name_or_id).ok().and_then(|id| self.vms.get(&id))
    }

    pub fn host_by_name(&self, name: &str) -> Option<&Host> {
        self.hosts.values().find(|h| h.name == name)
    }

    /// Whether a join token with this hash exists and has not expired at `now_ms`.
    pub fn token_valid(&self, token_hash: &str, now_ms: i64) -> bool {
        self.tokens.get(token_hash).is_some_and(|t| t.expires_ms > now_ms)
    }

    /// Events with an index greater than `after`, oldest first.
    pub fn events_after(&self, after: u64) -> impl Iterator<Item = &Event> {
        let start = self.events.partition_point(|e| e.index <= after);
        self.events.range(start..)
    }
}
