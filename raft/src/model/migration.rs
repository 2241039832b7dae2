//! Live migration: who may move a VM, the cluster's settings and a VM's overrides, and the
//! bookkeeping of a migration in flight.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Who may move a running VM to another host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationPolicy {
    /// Operators and the cluster (balancing, maintenance evacuation).
    #[default]
    Allow,
    /// Only an operator's explicit `vm migrate`.
    Manual,
    /// Never: the VM stays where it started until it is down.
    None,
}

impl MigrationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPolicy::Allow => "allow",
            MigrationPolicy::Manual => "manual",
            MigrationPolicy::None => "none",
        }
    }
}

impl FromStr for MigrationPolicy {
    type Err = crate::ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(MigrationPolicy::Allow),
            "manual" => Ok(MigrationPolicy::Manual),
            "none" => Ok(MigrationPolicy::None),
            other => Err(crate::ClusterError::invalid(
                "migration_policy",
                format!("must be allow, manual or none (got '{other}')"),
            )),
        }
    }
}

/// A migration ordered and not yet finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationJob {
    /// When it was ordered (Unix ms); the source's queue is ordered by VM priority, then this.
    pub queued_ms: i64,
    /// Ordered by the cluster (maintenance), not by an operator.
    pub automatic: bool,
    /// The operator asked to cancel it.
    pub cancel: bool,
    /// The last progress the source host reported; none while it waits in the queue.
    pub progress: Option<MigrationProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationProgress {
    pub percent: u8,
    pub memory_total_mib: u64,
    pub memory_remaining_mib: u64,
    /// Passes over the guest's memory so far (more than a few: it dirties memory fast).
    pub iteration: u64,
    pub elapsed_ms: u64,
}

/// How live migrations run: the cluster's defaults, which a VM may override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSettings {
    /// Throttle the guest's vCPUs when memory is dirtied faster than it is sent.
    pub auto_converge: bool,
    /// Compress repeated pages (xbzrle).
    pub compression: bool,
    /// The longest the guest may be paused at the switch-over (ms); None: libvirt's default.
    pub max_downtime_ms: Option<u64>,
    /// Bandwidth cap in MiB/s; None: unlimited.
    pub bandwidth_mibps: Option<u64>,
    /// Migrations one source host runs at once; the rest wait in its queue.
    pub max_per_host: u32,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            auto_converge: false,
            compression: false,
            max_downtime_ms: None,
            bandwidth_mibps: None,
            max_per_host: 2,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationOverrides {
    pub auto_converge: Option<bool>,
    pub compression: Option<bool>,
    pub max_downtime_ms: Option<u64>,
    pub bandwidth_mibps: Option<u64>,
}

impl MigrationSettings {
    /// These settings with a VM's overrides applied.
    pub fn with(&self, o: &MigrationOverrides) -> MigrationSettings {
        MigrationSettings {
            auto_converge: o.auto_converge.unwrap_or(self.auto_converge),
            compression: o.compression.unwrap_or(self.compression),
            max_downtime_ms: o.max_downtime_ms.or(self.max_downtime_ms),
            bandwidth_mibps: o.bandwidth_mibps.or(self.bandwidth_mibps),
            max_per_host: self.max_per_host,
        }
    }
}
