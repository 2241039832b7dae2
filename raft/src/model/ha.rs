//! High availability: a VM's HA settings and priority, and the back-off of a pending restart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A pending HA restart: retried with back-off while no host can take the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaRestart {
    /// When the VM failed (Unix ms).
    pub failed_ms: i64,
    /// Placement attempts made so far.
    pub attempts: u32,
    /// Not tried again before this time (Unix ms).
    pub next_try_ms: i64,
    /// Why the last attempt could not place it.
    pub last_error: Option<String>,
    /// Never tried before this time, whatever makes restarts due sooner (a hosted engine's
    /// window for a hand-started copy to be claimed); 0: no such bound.
    #[serde(default)]
    pub not_before_ms: i64,
}

/// An HA-restarted VM that runs this long is stable again: its failure count starts over.
pub const HA_STABLE_MS: i64 = 10 * 60 * 1000;

/// How long the HA restart of a hosted engine that died on a live host waits, so that a host
/// that runs a hand-started copy (`engine start --local`) can claim it first.
pub const ENGINE_CLAIM_MS: i64 = 3_000;

/// The longest wait between two HA restart attempts of one VM.
pub const HA_RETRY_MAX_MS: i64 = 30_000;

impl HaRestart {
    pub fn new(now: i64) -> HaRestart {
        HaRestart { failed_ms: now, attempts: 0, next_try_ms: now, last_error: None, not_before_ms: 0 }
    }

    /// The wait after `attempts` failed attempts: 1 s, 2 s, 4 s, ... at most 30 s.
    /// Makes the restart due at `now` at the latest, but never before `not_before_ms`.
    pub fn due_by(&mut self, now: i64) {
        self.next_try_ms = self.next_try_ms.min(now).max(self.not_before_ms);
    }

    pub fn backoff_ms(attempts: u32) -> i64 {
        (1000i64 << attempts.saturating_sub(1).min(5)).min(HA_RETRY_MAX_MS)
    }
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
