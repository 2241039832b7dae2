//! The bounded event log: what happened, when, of which kind.

use serde::{Deserialize, Serialize};

/// How many events the log keeps; older ones are dropped first.
pub const MAX_EVENTS: usize = 10_000;

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
    HostStateChanged,
    HostMaintenance,
    LeaderChanged,
    TokenCreated,
    VmCreated,
    VmEdited,
    VmDeleted,
    VmStateChanged,
    VmHighAvailability,
    VmMigration,
    DiskCreated,
    DiskDeleted,
    /// An affinity group or label was created, changed or deleted.
    AffinityChanged,
    HostEdited,
    /// Cluster-wide settings (scheduling policy, overcommit) changed.
    ClusterEdited,
}
