//! Hosts: their facts, states and maintenance orders, and the join tokens that admit them.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::EngineScore;
use crate::typ::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub state: HostState,
    pub facts: HostFacts,
    pub joined_ms: i64,
    /// When the host entered its current state (Unix ms, the leader's clock).
    #[serde(default)]
    pub state_since_ms: i64,
    /// Set by `host maintenance`, cleared by `host activate`; kept while the host is down so
    /// that it comes back in maintenance.
    #[serde(default)]
    pub maintenance: Option<MaintenanceOrder>,
    /// What an operator says this host offers (`ssd`, `gpu`); VMs may require tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Hosted-engine local maintenance: this host may not run the engine VM.
    pub engine_local_maintenance: bool,
    /// The engine score the host last reported (only changes are reported).
    pub engine_score: Option<EngineScore>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceOrder {
    pub reason: Option<String>,
    pub since_ms: i64,
    /// VMs that keep the host from entering maintenance, each with why.
    #[serde(default)]
    pub blocked: Vec<(String, String)>,
}

/// What a host reports about itself when it joins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_mib: u64,
    pub libvirt_uri: String,
    /// The libvirt domain type this host runs VMs as unless a VM says otherwise.
    pub domain_type: DomainType,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainType {
    /// Hardware virtualization.
    #[default]
    Kvm,
    /// QEMU's software emulation (TCG): slower, but runs where KVM cannot.
    Qemu,
    /// libvirt's in-process test hypervisor.
    Test,
}

impl DomainType {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
            DomainType::Test => "test",
        }
    }

    /// Whether VMs of this type can live-migrate (libvirt's test driver cannot).
    pub fn can_migrate(self) -> bool {
        self != DomainType::Test
    }
}

impl FromStr for DomainType {
    type Err = crate::ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(DomainType::Kvm),
            "qemu" => Ok(DomainType::Qemu),
            "test" => Ok(DomainType::Test),
            other => Err(crate::ClusterError::invalid("domain_type", format!("must be kvm or qemu (got '{other}')"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    /// Registered with a valid token, not yet a Raft member.
    Joining,
    Up,
    /// The leader has missed its heartbeats; its lease may still be running, so its VMs are
    /// left alone until it comes back or is declared down.
    NonResponsive,
    /// Its lease has certainly ended (it fenced itself, or its watchdog or a fence agent did):
    /// none of its VMs runs, and its HA VMs were handed to the other hosts.
    Down,
    /// Ordered into maintenance; its VMs are being migrated away.
    PreparingForMaintenance,
    /// In maintenance: runs no VM and is given none.
    Maintenance,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Joining => "joining",
            HostState::Up => "up",
            HostState::NonResponsive => "non_responsive",
            HostState::Down => "down",
            HostState::PreparingForMaintenance => "preparing_for_maintenance",
            HostState::Maintenance => "maintenance",
        }
    }

    /// Whether the host answers its heartbeats (whatever the operator made of it).
    pub fn is_alive(self) -> bool {
        matches!(self, HostState::Up | HostState::PreparingForMaintenance | HostState::Maintenance)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub created_ms: i64,
    pub expires_ms: i64,
}
