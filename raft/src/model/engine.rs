//! The hosted engine (the cluster's own management VM): which VM it is, global maintenance,
//! and the scores hosts report for running it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// The management VM, if the cluster has one.
    pub vm: Option<Uuid>,
    /// Global maintenance: HA neither restarts nor moves the engine VM (for upgrading it).
    pub global_maintenance: bool,
}

/// A host's fitness to run the engine VM, as ovirt-hosted-engine-ha computes it: a base score
/// minus penalties; 0 means it must not run the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineScore {
    pub score: u32,
    /// What was taken off the base score, each with why ("gateway 10.0.0.1 unreachable").
    pub penalties: Vec<(String, u32)>,
    /// When the host measured it (its clock, Unix ms).
    pub measured_ms: i64,
}

/// The score of a host with nothing wrong (ovirt-hosted-engine-ha's base score).
pub const ENGINE_BASE_SCORE: u32 = 3400;
