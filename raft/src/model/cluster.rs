//! The cluster as a whole: the replicated state's root, its settings, and the read-only
//! look-ups that every part of the daemon shares. Plain data; only apply changes it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AffinityGroup, AffinityLabel, Disk, EngineState, Event, Host, JoinToken, MigrationSettings, Vm};
use crate::typ::NodeId;

/// How many request ids are remembered for de-duplicating retried writes.
pub const MAX_RECENT_REQUESTS: usize = 10_000;
/// How many bytes of replies (encoded) they may hold together.
pub const MAX_RECENT_REQUEST_BYTES: u64 = 2 << 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Set once, by bootstrap.
    pub cluster: Option<ClusterInfo>,
    pub hosts: BTreeMap<NodeId, Host>,
    /// The VMs, with the indexes the scheduler, agents and leader read (`VmMap`).
    pub vms: super::VmMap,
    /// Disk images in the storage domain, attached to a VM or floating.
    pub disks: BTreeMap<Uuid, Disk>,
    /// Name -> id; kept in step with `vms` by apply.
    pub vm_names: BTreeMap<String, Uuid>,
    /// Join tokens by their SHA-256 (hex); the token itself is never stored.
    pub tokens: BTreeMap<String, JoinToken>,
    pub events: VecDeque<Event>,
    pub next_event_index: u64,
    /// The last leader that recorded itself, with its term.
    pub leader: Option<(NodeId, u64)>,
    /// How live migrations run, unless a VM says otherwise.
    #[serde(default)]
    pub migration_defaults: MigrationSettings,
    /// Replies of recent writes by request id, so that a client retrying a write after a
    /// failover gets the first reply instead of applying it twice.
    pub recent_requests: BTreeMap<Uuid, crate::Reply>,
    pub recent_order: VecDeque<Uuid>,
    /// VM-to-VM rules by name (oVirt's affinity groups).
    #[serde(default)]
    pub affinity_groups: BTreeMap<String, AffinityGroup>,
    /// VM-to-host rules by name: a labelled VM runs only on the label's hosts.
    #[serde(default)]
    pub affinity_labels: BTreeMap<String, AffinityLabel>,
    /// The hosted engine: which VM it is, and whether HA leaves it alone (global maintenance).
    pub engine: EngineState,
    /// Users, groups, roles, permissions, sessions and API tokens (cluster level 2).
    #[serde(default)]
    pub auth: super::auth::AuthState,
    /// ISOs, templates and offerings (cluster level 5).
    #[serde(default)]
    pub library: super::Library,
    /// The sizes of the event log and the reply cache, counted as they change (derived: never
    /// stored, worked out again after a load).
    #[serde(skip)]
    pub tallies: Tallies,
}

/// Running totals derived from the state, worked out from it when first needed. Two states
/// that differ only here are equal.
#[derive(Debug, Clone, Default)]
pub struct Tallies {
    events: Option<u64>,
    replies: Option<u64>,
}

impl PartialEq for Tallies {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Tallies {
    /// The bytes the event log counts (`weight_of_event`), to change along with it.
    pub(crate) fn events(&mut self, events: &VecDeque<Event>) -> &mut u64 {
        self.events.get_or_insert_with(|| events.iter().map(crate::apply::weight_of_event).sum())
    }

    /// The bytes the reply cache counts (`weight_of_reply`), to change along with it.
    pub(crate) fn replies(&mut self, replies: &BTreeMap<Uuid, crate::Reply>) -> &mut u64 {
        self.replies.get_or_insert_with(|| replies.values().map(crate::apply::weight_of_reply).sum())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    /// How many voters the cluster keeps (3 or 5); further nodes stay learners.
    pub voters: u8,
    pub created_ms: i64,
    /// How the scheduler spreads VMs over the hosts that can run them.
    #[serde(default)]
    pub scheduling: SchedulingPolicy,
    /// vCPUs a host may hand out per physical CPU.
    #[serde(default = "default_cpu_overcommit")]
    pub cpu_overcommit: u32,
    /// The cluster level (oVirt's cluster compatibility version): the format every node writes
    /// and the features it may use. 0 is release 3f21f51's; `cluster upgrade` raises it once
    /// every member runs a build that supports more. A new cluster starts at the newest level.
    #[serde(default)]
    pub level: u8,
    /// When the level was last raised (the leader's clock; 0 for a cluster created at its
    /// level): the lease rule of the new level applies a full lease after it (DESIGN.md).
    #[serde(default)]
    pub level_raised_ms: i64,
    /// The cluster CA's certificate (PEM), from level 2 on: members and clients trust it, and
    /// accept from other members only certificates it signed. Its key stays on the voters.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Snapshots kept per VM (CloudStack's `vmsnapshots.max`); 0: no cap. Taking one more
    /// removes the oldest (never one in preview).
    #[serde(default)]
    pub max_snapshots: u32,
}

/// The highest cluster level this build runs: 5, the library (ISOs, templates, offerings),
/// cloud-init and stateless VMs (level 4: VMs have snapshots; level 3: running VMs are
/// changed by hot-plug and disks and NICs are managed on their own; level 2: members prove who they are with certificates of
/// the cluster CA, users and permissions; level 1: majority leases, format v1).
pub const MAX_LEVEL: u8 = 5;
/// The level from which TLS is required.
pub const TLS_LEVEL: u8 = 2;
/// The level from which running VMs are changed in place and disks, NICs and CDs have their
/// own commands (a member of an earlier build cannot read those commands).
pub const HOTPLUG_LEVEL: u8 = 3;
/// The level from which VMs have snapshots (commands and VM fields an earlier build cannot read).
pub const SNAPSHOT_LEVEL: u8 = 4;

fn default_cpu_overcommit() -> u32 {
    DEFAULT_CPU_OVERCOMMIT
}

/// Which of the hosts that can run a VM the scheduler prefers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulingPolicy {
    /// The host with the most free memory: load spread evenly (oVirt's "evenly_distributed").
    #[default]
    EvenDistribution,
    /// The host with the least free memory that still fits: fewer hosts busy, the others
    /// free to power down (oVirt's "power_saving").
    Packing,
}

impl ClusterState {
    /// Finds a VM by name or by id.
    pub fn find_vm(&self, name_or_id: &str) -> Option<&Vm> {
        self.vm_id_of(name_or_id).and_then(|id| self.vms.get(&id))
    }

    /// Finds a VM by name or by id, to change it.
    pub fn find_vm_mut(&mut self, name_or_id: &str) -> Option<&mut Vm> {
        self.vm_id_of(name_or_id).and_then(|id| self.vms.get_mut(&id))
    }

    /// The id a VM name stands for, or the id written out (a name wins over an id).
    pub(crate) fn vm_id_of(&self, name_or_id: &str) -> Option<Uuid> {
        match self.vm_names.get(name_or_id) {
            Some(id) => Some(*id),
            None => Uuid::parse_str(name_or_id).ok(),
        }
    }

    pub fn host_by_name(&self, name: &str) -> Option<&Host> {
        self.hosts.values().find(|h| h.name == name)
    }

    pub fn host_name(&self, id: NodeId) -> String {
        host_name_in(&self.hosts, id)
    }

    /// Memory and vCPUs that VMs assigned to `host` hold (a VM holds its host's resources
    /// from the start order until it is down; a migrating VM holds both hosts').
    pub fn host_usage(&self, host: NodeId) -> Usage {
        self.vms.usage_of(host)
    }

    /// vCPUs a host may hand out per physical CPU in this cluster.
    pub fn cpu_overcommit(&self) -> u64 {
        self.cluster.as_ref().map_or(DEFAULT_CPU_OVERCOMMIT, |c| c.cpu_overcommit) as u64
    }

    pub fn scheduling(&self) -> SchedulingPolicy {
        self.cluster.as_ref().map_or_else(SchedulingPolicy::default, |c| c.scheduling)
    }

    /// Names of VMs by id, in the given order; an id without a VM shows as the id.
    pub fn vm_names_of(&self, ids: &[Uuid]) -> Vec<String> {
        ids.iter().map(|id| self.vms.get(id).map_or_else(|| id.to_string(), |v| v.config.name.clone())).collect()
    }

    pub fn find_disk(&self, name_or_id: &str) -> Option<&Disk> {
        Uuid::parse_str(name_or_id)
            .ok()
            .and_then(|id| self.disks.get(&id))
            .or_else(|| self.disks.values().find(|d| d.name == name_or_id))
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

/// The name of host `id`, or "node {id}" for one that `hosts` does not hold. A function of the
/// hosts alone, so that it can be used while a VM of the same state is borrowed to change it.
pub fn host_name_in(hosts: &BTreeMap<NodeId, Host>, id: NodeId) -> String {
    hosts.get(&id).map_or_else(|| format!("node {id}"), |h| h.name.clone())
}

/// Resources held on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_mib: u64,
    pub vcpus: u64,
    pub vms_running: u64,
}

/// vCPUs a host may hand out per physical CPU unless the cluster says otherwise.
pub const DEFAULT_CPU_OVERCOMMIT: u32 = 4;
