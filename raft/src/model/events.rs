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

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ClusterBootstrapped => "cluster_bootstrapped",
            EventKind::HostJoined => "host_joined",
            EventKind::HostLeft => "host_left",
            EventKind::HostStateChanged => "host_state_changed",
            EventKind::HostMaintenance => "host_maintenance",
            EventKind::LeaderChanged => "leader_changed",
            EventKind::TokenCreated => "token_created",
            EventKind::VmCreated => "vm_created",
            EventKind::VmEdited => "vm_edited",
            EventKind::VmDeleted => "vm_deleted",
            EventKind::VmStateChanged => "vm_state_changed",
            EventKind::VmHighAvailability => "vm_high_availability",
            EventKind::VmMigration => "vm_migration",
            EventKind::DiskCreated => "disk_created",
            EventKind::DiskDeleted => "disk_deleted",
            EventKind::AffinityChanged => "affinity_changed",
            EventKind::HostEdited => "host_edited",
            EventKind::ClusterEdited => "cluster_edited",
        }
    }
}
