//! The bounded event log: what happened, when, of which kind.

use serde::{Deserialize, Serialize};

/// How many events the log keeps; older ones are dropped first.
pub const MAX_EVENTS: usize = 10_000;
/// How much text (messages and user names, plus a fixed part per event) the log keeps.
pub const MAX_EVENT_BYTES: u64 = 2 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    pub time_ms: i64,
    pub kind: EventKind,
    pub message: String,
    /// Whose request made it (a user, or `root@localhost`); `None` for the cluster's own acts.
    #[serde(default)]
    pub user: Option<String>,
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
    /// A user, group, password, session or API token was made, changed or removed.
    UserEdited,
    /// A role or a permission was made, changed or removed.
    PermissionChanged,
    /// Wrong passwords for a user.
    LoginFailed,
    /// A snapshot was taken, previewed, committed, undone, restored or deleted.
    VmSnapshot,
    /// An ISO, template or offering was added, changed or deleted.
    Library,
}
