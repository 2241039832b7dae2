//! Affinity rules: VM-to-VM groups (together or apart) and VM-to-host labels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::typ::NodeId;

/// Whether the VMs of an affinity group should share a host or keep apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Polarity {
    /// On the same host as the group's other running members.
    Positive,
    /// Never on a host where another member runs.
    Negative,
}

impl Polarity {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarity::Positive => "positive",
            Polarity::Negative => "negative",
        }
    }
}

impl fmt::Display for Polarity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Polarity {
    type Err = crate::ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "positive" => Ok(Polarity::Positive),
            "negative" => Ok(Polarity::Negative),
            other => {
                Err(crate::ClusterError::invalid("polarity", format!("must be positive or negative (got '{other}')")))
            }
        }
    }
}

/// A VM-to-VM rule. An enforcing group is a filter: a host that breaks it is never chosen.
/// A soft one only weighs: hosts that keep it are preferred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityGroup {
    pub name: String,
    pub polarity: Polarity,
    pub enforcing: bool,
    /// Member VMs by id, so that renaming a VM leaves its groups as they are.
    pub vms: Vec<Uuid>,
    pub created_ms: i64,
}

impl AffinityGroup {
    /// "g1 (negative)" or "g1 (positive, soft)" as messages name the rule.
    pub fn describe(&self) -> String {
        let soft = if self.enforcing { "" } else { ", soft" };
        format!("{} ({}{soft})", self.name, self.polarity)
    }
}

/// A hard, positive VM-to-host rule: each of `vms` runs only on one of `hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityLabel {
    pub name: String,
    pub vms: Vec<Uuid>,
    pub hosts: Vec<NodeId>,
    #[serde(default)]
    pub created_ms: i64,
}
