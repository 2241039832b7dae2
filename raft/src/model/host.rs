//! Hosts: their facts, states and maintenance orders, and the join tokens that admit them.

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
    /// Whether VMs of this type can live-migrate (libvirt's test driver cannot).
    pub fn can_migrate(self) -> bool {
        self != DomainType::Test
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
    /// Whether the host answers its heartbeats (whatever the operator made of it).
    pub fn is_alive(self) -> bool {
        matches!(self, HostState::Up | HostState::PreparingForMaintenance | HostState::Maintenance)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Hosts that registered with it (counted from cluster level 1 on).
    #[serde(default)]
    pub uses: u32,
}

impl JoinToken {
    /// The id a token is listed and revoked by: a prefix of its hash.
    pub fn id_of(hash: &str) -> String {
        hash.chars().take(12).collect()
    }
}
