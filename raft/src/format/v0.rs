//! Format v0: the data types exactly as release 3f21f51 wrote them, in positional bincode 2
//! (serde, `bincode::config::standard()`), and the conversions between them and the current types.
//!
//! **FROZEN. Never change a type in this module**: not a field, not a field's type, not the order
//! of fields or variants, not a `#[serde(skip)]`. Bincode is positional, so any such change makes
//! these types read something other than what v0 nodes wrote. A new feature changes the current
//! types (in `model`, `command`, ...) and the conversions at the bottom of this file, never the
//! frozen types.
//!
//! - Upgrade (the v0 -> v1 migration step): `From<v0::X> for X`, infallible. A current field
//!   that v0 lacks takes its default.
//! - Downgrade (writing v0 while the cluster still runs at level 0): `TryFrom<&X> for v0::X`,
//!   which fails with [`Unrepresentable`] for a value that only a later level can express.
//!
//! The conversions name every field and variant, so a change to a current type does not compile
//! until its conversion says what v0 makes of it (see `both_ways!`).
//!
//! One idea, however long: the whole frozen v0 format and its two conversions, kept in one file
//! so that a change to it shows as a change to this file.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;

use openraft::{EntryPayload, Membership, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub type NodeId = u64;

// ---------------------------------------------------------------------------------------------
// model.rs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster: Option<ClusterInfo>,
    pub hosts: BTreeMap<NodeId, Host>,
    pub vms: BTreeMap<Uuid, Vm>,
    pub disks: BTreeMap<Uuid, Disk>,
    pub vm_names: BTreeMap<String, Uuid>,
    pub tokens: BTreeMap<String, JoinToken>,
    pub events: VecDeque<Event>,
    pub next_event_index: u64,
    pub leader: Option<(NodeId, u64)>,
    pub migration_defaults: MigrationSettings,
    pub recent_requests: BTreeMap<Uuid, Reply>,
    pub recent_order: VecDeque<Uuid>,
    pub affinity_groups: BTreeMap<String, AffinityGroup>,
    pub affinity_labels: BTreeMap<String, AffinityLabel>,
    pub engine: EngineState,
    /// Not encoded (in 3f21f51 a `documents::Touched`, also skipped; the current state has no
    /// such field: an apply returns what it touched).
    #[serde(skip)]
    pub touched: (),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    pub vm: Option<Uuid>,
    pub global_maintenance: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineScore {
    pub score: u32,
    pub penalties: Vec<(String, u32)>,
    pub measured_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub voters: u8,
    pub created_ms: i64,
    pub scheduling: SchedulingPolicy,
    pub cpu_overcommit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulingPolicy {
    EvenDistribution,
    Packing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub state: HostState,
    pub facts: HostFacts,
    pub joined_ms: i64,
    pub state_since_ms: i64,
    pub maintenance: Option<MaintenanceOrder>,
    pub tags: Vec<String>,
    pub engine_local_maintenance: bool,
    pub engine_score: Option<EngineScore>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceOrder {
    pub reason: Option<String>,
    pub since_ms: i64,
    pub blocked: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_mib: u64,
    pub libvirt_uri: String,
    pub domain_type: DomainType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainType {
    Kvm,
    Qemu,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    Joining,
    Up,
    NonResponsive,
    Down,
    PreparingForMaintenance,
    Maintenance,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub created_ms: i64,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub comment: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub ha: HaSettings,
    pub disks: Vec<Uuid>,
    pub nics: Vec<Nic>,
    pub domain_type: Option<DomainType>,
    pub boot: Option<KernelBoot>,
    pub desired: PowerState,
    pub status: VmStatus,
    pub host: Option<NodeId>,
    pub epoch: u64,
    pub stop_reason: Option<String>,
    pub shutdown_deadline_ms: Option<i64>,
    pub reboot_pending: bool,
    pub migrating_to: Option<NodeId>,
    pub migration_job: Option<MigrationJob>,
    pub migration_settings: MigrationOverrides,
    pub migration_failed_ms: Option<i64>,
    pub next_run: Option<NextRun>,
    pub ha_restart: Option<HaRestart>,
    pub ha_restarting: bool,
    pub ha_restarted_ms: Option<i64>,
    pub ha_failures: u32,
    pub resume_behavior: ResumeBehavior,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub host_tags: Vec<String>,
    pub pinned_hosts: Vec<NodeId>,
    pub migration: MigrationPolicy,
    pub os: String,
    pub cdrom: Option<String>,
    pub hosted_engine: bool,
    pub delete_protected: bool,
    pub ovf_unknown: Vec<OvfFragment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvfFragment {
    pub parent: String,
    pub xml: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationPolicy {
    Allow,
    Manual,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Polarity {
    Positive,
    Negative,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityGroup {
    pub name: String,
    pub polarity: Polarity,
    pub enforcing: bool,
    pub vms: Vec<Uuid>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityLabel {
    pub name: String,
    pub vms: Vec<Uuid>,
    pub hosts: Vec<NodeId>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationJob {
    pub queued_ms: i64,
    pub automatic: bool,
    pub cancel: bool,
    pub progress: Option<MigrationProgress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationProgress {
    pub percent: u8,
    pub memory_total_mib: u64,
    pub memory_remaining_mib: u64,
    pub iteration: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSettings {
    pub auto_converge: bool,
    pub compression: bool,
    pub max_downtime_ms: Option<u64>,
    pub bandwidth_mibps: Option<u64>,
    pub max_per_host: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationOverrides {
    pub auto_converge: Option<bool>,
    pub compression: Option<bool>,
    pub max_downtime_ms: Option<u64>,
    pub bandwidth_mibps: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaRestart {
    pub failed_ms: i64,
    pub attempts: u32,
    pub next_try_ms: i64,
    pub last_error: Option<String>,
    pub not_before_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResumeBehavior {
    AutoResume,
    LeavePaused,
    Kill,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextRun {
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub domain_type: Option<DomainType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub network: String,
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBoot {
    pub kernel: String,
    pub initrd: Option<String>,
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub id: Uuid,
    pub name: String,
    pub size_mib: u64,
    pub file: String,
    pub format: String,
    pub vm: Option<Uuid>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    Down,
    Up,
    Suspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaSettings {
    pub enabled: bool,
    pub priority: HaPriority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaPriority {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmStatus {
    Down,
    PoweringUp,
    Up,
    Paused,
    Suspended,
    RebootInProgress,
    PoweringDown,
    Migrating,
    NotResponding,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Observed {
    Up,
    Paused,
    PausedIoError,
    Suspended,
    Down { cause: String, on_purpose: bool },
    RebootDone,
    MigrationDone { to: NodeId },
    MigrationProgress(MigrationProgress),
    MigrationFailed { error: String },
    Failed { action: String, error: String },
    NotResponding,
}

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
    AffinityChanged,
    HostEdited,
    ClusterEdited,
}

// ---------------------------------------------------------------------------------------------
// command.rs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub at_ms: i64,
    pub request_id: Option<Uuid>,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub request_id: Option<Uuid>,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Batch(Vec<Proposal>),
    Bootstrap {
        cluster_name: String,
        voters: u8,
        host: NewHost,
        token_hash: String,
        token_expires_ms: i64,
    },
    AddToken {
        token_hash: String,
        expires_ms: i64,
    },
    RegisterHost {
        token_hash: String,
        name: String,
        address: String,
        facts: HostFacts,
    },
    HostJoined {
        id: NodeId,
        voter: bool,
    },
    RemoveHost {
        id: NodeId,
    },
    LeaderElected {
        id: NodeId,
        term: u64,
    },
    HostNonResponsive {
        id: NodeId,
        silent_ms: u64,
    },
    HostDown {
        id: NodeId,
        how: String,
    },
    HostAlive {
        id: NodeId,
        self_fenced: bool,
    },
    RestartHaVms,
    CreateVm {
        id: Uuid,
        spec: VmSpec,
        disks: Vec<Disk>,
        start: Option<StartOrder>,
    },
    EditVm {
        vm: String,
        changes: VmChanges,
    },
    DeleteVm {
        vm: String,
        keep_disks: bool,
    },
    CloneVm {
        source: String,
        id: Uuid,
        name: String,
        disks: Vec<Disk>,
        macs: Vec<String>,
    },
    StartVm {
        vm: String,
        order: StartOrder,
    },
    ShutdownVm {
        vm: String,
        reason: Option<String>,
        timeout_s: u64,
    },
    StopVm {
        vm: String,
        reason: Option<String>,
    },
    RebootVm {
        vm: String,
    },
    SuspendVm {
        vm: String,
    },
    ResumeVm {
        vm: String,
    },
    MigrateVm {
        vm: String,
        to: Option<String>,
    },
    CancelMigration {
        vm: String,
    },
    HostMaintenance {
        host: String,
        reason: Option<String>,
    },
    EvacuateHost {
        id: NodeId,
    },
    ActivateHost {
        host: String,
    },
    SetMigrationDefaults {
        changes: MigrationSettingsChange,
    },
    ReportVm {
        vm: Uuid,
        host: NodeId,
        epoch: u64,
        observed: Observed,
    },
    RecordEvent {
        kind: EventKind,
        message: String,
    },
    DeleteDisks {
        ids: Vec<Uuid>,
    },
    CreateAffinityGroup {
        name: String,
        polarity: Polarity,
        enforcing: bool,
        vms: Vec<String>,
    },
    EditAffinityGroup {
        name: String,
        add_vms: Vec<String>,
        remove_vms: Vec<String>,
        enforcing: Option<bool>,
        polarity: Option<Polarity>,
    },
    DeleteAffinityGroup {
        name: String,
    },
    CreateAffinityLabel {
        name: String,
        vms: Vec<String>,
        hosts: Vec<String>,
    },
    EditAffinityLabel {
        name: String,
        add_vms: Vec<String>,
        remove_vms: Vec<String>,
        add_hosts: Vec<String>,
        remove_hosts: Vec<String>,
    },
    DeleteAffinityLabel {
        name: String,
    },
    EditHost {
        host: String,
        tags: Option<Vec<String>>,
    },
    SetSchedulingPolicy {
        policy: Option<SchedulingPolicy>,
        cpu_overcommit: Option<u32>,
    },
    ImportVm {
        vm: Box<Vm>,
        disks: Vec<Disk>,
        engine: bool,
        start: Option<StartOrder>,
    },
    SetEngineMaintenance {
        global: Option<bool>,
        local: Option<(String, bool)>,
    },
    ReportEngineScore {
        host: NodeId,
        score: EngineScore,
    },
    AdoptVm {
        vm: Uuid,
        host: NodeId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartOrder {
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewHost {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub facts: HostFacts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub description: String,
    pub comment: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub ha_enabled: bool,
    pub ha_priority: HaPriority,
    pub resume_behavior: ResumeBehavior,
    pub nics: Vec<Nic>,
    pub domain_type: Option<DomainType>,
    pub boot: Option<KernelBoot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSettingsChange {
    pub auto_converge: Option<bool>,
    pub compression: Option<bool>,
    pub max_downtime_ms: Option<Option<u64>>,
    pub bandwidth_mibps: Option<Option<u64>>,
    pub max_per_host: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub comment: Option<String>,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub ha_enabled: Option<bool>,
    pub ha_priority: Option<HaPriority>,
    pub domain_type: Option<DomainType>,
    pub resume_behavior: Option<ResumeBehavior>,
    pub migration_settings: Option<MigrationOverridesChange>,
    pub host_tags: Option<Vec<String>>,
    pub pinned_hosts: Option<Vec<String>>,
    pub migration: Option<MigrationPolicy>,
    pub delete_protected: Option<bool>,
    pub os: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationOverridesChange {
    pub auto_converge: Option<Option<bool>>,
    pub compression: Option<Option<bool>>,
    pub max_downtime_ms: Option<Option<u64>>,
    pub bandwidth_mibps: Option<Option<u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    HostRegistered { id: NodeId, cluster_name: String },
    Vm(Box<Vm>),
    Batch(Vec<Reply>),
    VmDeleted { id: Uuid, files: Vec<String> },
    AffinityGroup(Box<AffinityGroup>),
    AffinityLabel(Box<AffinityLabel>),
    Host(Box<Host>),
    Cluster(Box<ClusterInfo>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Result<Outcome, ClusterError>);

// ---------------------------------------------------------------------------------------------
// error.rs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterError {
    NotFound(String),
    AlreadyExists(String),
    InvalidArgument { field: String, rule: String },
    FailedPrecondition(String),
    PermissionDenied(String),
    Unavailable(String),
    Unreachable(String),
    Internal(String),
}

// ---------------------------------------------------------------------------------------------
// forward.rs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderRequest {
    Write { request_id: Option<Uuid>, op: Box<Op> },
    ReadIndex,
    Admit { token_hash: String, id: NodeId },
    RemoveHost { name: String },
    Heartbeat { host: NodeId, self_fenced: bool, sent_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderResponse {
    Written(Reply, u64),
    ReadIndex(u64),
    Admitted { voter: bool },
    HostRemoved { id: NodeId, promoted: Option<String> },
    HeartbeatAck { index: u64 },
}

pub type ForwardResult = Result<LeaderResponse, ClusterError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forwarded {
    pub hops: u8,
    pub request: LeaderRequest,
}

// ---------------------------------------------------------------------------------------------
// typ.rs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub address: String,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of format v0: its log entries carry v0 commands.
    pub V0Config:
        D = Command,
        R = Reply,
        Node = NodeInfo,
);

// =============================================================================================
// Conversions. Everything below may change; everything above may not.
// =============================================================================================

/// A current value that format v0 cannot express (a feature of a later cluster level).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot be written in format v0")]
pub struct Unrepresentable {
    pub what: String,
}

/// The current types, under one name so that `cur::Host` and `Host` (v0) sit side by side.
mod cur {
    pub use crate::command::*;
    pub use crate::error::ClusterError;
    pub use crate::forward::*;
    pub use crate::model::*;
    pub use crate::typ::NodeInfo;
}

/// v0 -> current, for every shape a frozen type's field has.
trait Up {
    type Cur;
    fn up(self) -> Self::Cur;
}

/// current -> v0, for every shape a current type's field has.
trait Down {
    type V0;
    fn down(&self) -> Result<Self::V0, Unrepresentable>;
}

/// Types that are the same in both formats.
macro_rules! same {
    ($($t:ty),*) => {$(
        impl Up for $t {
            type Cur = $t;
            fn up(self) -> $t {
                self
            }
        }
        impl Down for $t {
            type V0 = $t;
            fn down(&self) -> Result<$t, Unrepresentable> {
                Ok(self.clone())
            }
        }
    )*};
}
same!(bool, u8, u32, u64, i64, String, Uuid);

/// Values v0 kept as a `String` and this build types (`crate::causes`): the same text either
/// way. Upgrading goes through `From<String>` (`both_ways!` converts every field with `into`
/// after `up`), which keeps a string it does not know as `Other`.
macro_rules! typed_text {
    ($($t:ident),*) => {$(
        impl Down for crate::causes::$t {
            type V0 = String;
            fn down(&self) -> Result<String, Unrepresentable> {
                Ok(self.to_string())
            }
        }
    )*};
}
typed_text!(VmAction, DownCause, HostDownCause);

impl<T: Up> Up for Option<T> {
    type Cur = Option<T::Cur>;
    fn up(self) -> Self::Cur {
        self.map(Up::up)
    }
}
impl<T: Down> Down for Option<T> {
    type V0 = Option<T::V0>;
    fn down(&self) -> Result<Self::V0, Unrepresentable> {
        self.as_ref().map(Down::down).transpose()
    }
}

impl<T: Up> Up for Box<T> {
    type Cur = Box<T::Cur>;
    fn up(self) -> Self::Cur {
        Box::new((*self).up())
    }
}
impl<T: Down> Down for Box<T> {
    type V0 = Box<T::V0>;
    fn down(&self) -> Result<Self::V0, Unrepresentable> {
        Ok(Box::new((**self).down()?))
    }
}

impl<T: Up> Up for Vec<T> {
    type Cur = Vec<T::Cur>;
    fn up(self) -> Self::Cur {
        self.into_iter().map(Up::up).collect()
    }
}
impl<T: Down> Down for Vec<T> {
    type V0 = Vec<T::V0>;
    fn down(&self) -> Result<Self::V0, Unrepresentable> {
        self.iter().map(Down::down).collect()
    }
}

impl<T: Up> Up for VecDeque<T> {
    type Cur = VecDeque<T::Cur>;
    fn up(self) -> Self::Cur {
        self.into_iter().map(Up::up).collect()
    }
}
impl<T: Down> Down for VecDeque<T> {
    type V0 = VecDeque<T::V0>;
    fn down(&self) -> Result<Self::V0, Unrepresentable> {
        self.iter().map(Down::down).collect()
    }
}

impl<K: Up, V: Up> Up for BTreeMap<K, V>
where
    K::Cur: Ord,
{
    type Cur = BTreeMap<K::Cur, V::Cur>;
    fn up(self) -> Self::Cur {
        self.into_iter().map(|(k, v)| (k.up(), v.up())).collect()
    }
}
impl<K: Down, V: Down> Down for BTreeMap<K, V>
where
    K::V0: Ord,
{
    type V0 = BTreeMap<K::V0, V::V0>;
    fn down(&self) -> Result<Self::V0, Unrepresentable> {
        self.iter().map(|(k, v)| Ok((k.down()?, v.down()?))).collect()
    }
}

impl<A: Up, B: Up> Up for (A, B) {
    type Cur = (A::Cur, B::Cur);
    fn up(self) -> Self::Cur {
        (self.0.up(), self.1.up())
    }
}
impl<A: Down, B: Down> Down for (A, B) {
    type V0 = (A::V0, B::V0);
    fn down(&self) -> Result<Self::V0, Unrepresentable> {
        Ok((self.0.down()?, self.1.down()?))
    }
}

impl<T: Up, E: Up> Up for Result<T, E> {
    type Cur = Result<T::Cur, E::Cur>;
    fn up(self) -> Self::Cur {
        self.map(Up::up).map_err(Up::up)
    }
}
impl<T: Down, E: Down> Down for Result<T, E> {
    type V0 = Result<T::V0, E::V0>;
    fn down(&self) -> Result<Self::V0, Unrepresentable> {
        Ok(match self {
            Ok(t) => Ok(t.down()?),
            Err(e) => Err(e.down()?),
        })
    }
}

/// For `both_ways!`'s `added`: whether a current-only field holds what v0 implies.
#[allow(dead_code)] // until a current struct has a field that v0 lacks
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `From<v0::X> for cur::X` and `TryFrom<&cur::X> for v0::X`, naming every field or variant, so
/// that a change to the current type breaks the build here until the conversion accounts for it.
///
/// - `both_ways! { struct X { a, b } }`: fields in both formats, each converted.
///   - `added { c }`: current-only fields; upgrading gives them their default, and downgrading a
///     value whose `c` is not the default is `Unrepresentable("X.c")`.
///   - `skipped { d }`: frozen-only `#[serde(skip)]` fields (never encoded, gone from the current
///     type): upgrading drops them, downgrading gives them their default.
///   - `parts { p: P { d, e } }` (instead of `added`/`skipped`): v0's flat fields `d` and `e` are
///     the current type's part `p` (of type `P`).
/// - `both_ways! { enum X { A, B(a, b), C { f, g } } }`: variants in both formats, with their fields
///   (tuple fields under any names).
///   - `later { D, E }`: current-only variants; downgrading one is `Unrepresentable("X::D")`.
///
/// Invoked with braces, which rustfmt leaves as written (it would reflow some of the lists).
macro_rules! both_ways {
    (struct $name:ident { $($f:ident),* $(,)? }
        $(added { $($a:ident),* $(,)? })?
        $(skipped { $($s:ident),* $(,)? })?
    ) => {
        impl From<$name> for cur::$name {
            fn from(v: $name) -> Self {
                let $name { $($f,)* $($($s: _,)*)? } = v;
                cur::$name {
                    $($f: $f.up().into(),)*
                    $($($a: Default::default(),)*)?
                }
            }
        }
        impl TryFrom<&cur::$name> for $name {
            type Error = Unrepresentable;
            fn try_from(v: &cur::$name) -> Result<Self, Unrepresentable> {
                let cur::$name { $($f,)* $($($a,)*)? } = v;
                $($(if !is_default($a) {
                    return Err(Unrepresentable { what: concat!(stringify!($name), ".", stringify!($a)).into() });
                })*)?
                Ok($name { $($f: $f.down()?,)* $($($s: Default::default(),)*)? })
            }
        }
        both_ways!(link $name);
    };
    (struct $name:ident { $($f:ident),* $(,)? }
        parts { $($part:ident: $pty:ident { $($pf:ident),* $(,)? } $(added { $($pa:ident),* $(,)? })?),* $(,)? }
    ) => {
        impl From<$name> for cur::$name {
            fn from(v: $name) -> Self {
                let $name { $($f,)* $($($pf,)*)* } = v;
                cur::$name {
                    $($f: $f.up(),)*
                    $($part: cur::$pty { $($pf: $pf.up(),)* $($($pa: Default::default(),)*)? },)*
                }
            }
        }
        impl TryFrom<&cur::$name> for $name {
            type Error = Unrepresentable;
            fn try_from(v: &cur::$name) -> Result<Self, Unrepresentable> {
                let cur::$name { $($f,)* $($part: cur::$pty { $($pf,)* $($($pa,)*)? },)* } = v;
                $($($(if !is_default($pa) {
                    return Err(Unrepresentable { what: concat!(stringify!($pty), ".", stringify!($pa)).into() });
                })*)?)*
                Ok($name { $($f: $f.down()?,)* $($($pf: $pf.down()?,)*)* })
            }
        }
        both_ways!(link $name);
    };
    (enum $name:ident {
        $($v:ident $(( $($t:ident),* $(,)? ))? $({ $($f:ident),* $(,)? })?),* $(,)?
    } $(later { $($l:ident),* $(,)? })?) => {
        impl From<$name> for cur::$name {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$v $(($($t),*))? $({ $($f),* })? =>
                        cur::$name::$v $(($($t.up().into()),*))? $({ $($f: $f.up().into()),* })?,)*
                }
            }
        }
        impl TryFrom<&cur::$name> for $name {
            type Error = Unrepresentable;
            fn try_from(v: &cur::$name) -> Result<Self, Unrepresentable> {
                Ok(match v {
                    $(cur::$name::$v $(($($t),*))? $({ $($f),* })? =>
                        $name::$v $(($($t.down()?),*))? $({ $($f: $f.down()?),* })?,)*
                    $($(cur::$name::$l { .. } => {
                        return Err(Unrepresentable { what: concat!(stringify!($name), "::", stringify!($l)).into() })
                    })*)?
                })
            }
        }
        both_ways!(link $name);
    };
    (link $name:ident) => {
        impl Up for $name {
            type Cur = cur::$name;
            fn up(self) -> cur::$name {
                self.into()
            }
        }
        impl Down for cur::$name {
            type V0 = $name;
            fn down(&self) -> Result<$name, Unrepresentable> {
                self.try_into()
            }
        }
    };
}

// model.rs
both_ways! { struct ClusterState {
    cluster, hosts, vms, disks, vm_names, tokens, events, next_event_index, leader, migration_defaults,
    recent_requests, recent_order, affinity_groups, affinity_labels, engine,
} added { auth, library, tallies } skipped { touched } }
both_ways! { struct EngineState { vm, global_maintenance } }
both_ways! { struct EngineScore { score, penalties, measured_ms } }
both_ways! { struct ClusterInfo {
    name, voters, created_ms, scheduling, cpu_overcommit,
} added { level, level_raised_ms, ca_pem, max_snapshots } }
both_ways! { enum SchedulingPolicy { EvenDistribution, Packing } }
both_ways! { struct Host {
    id, name, address, state, facts, joined_ms, state_since_ms, maintenance, tags, engine_local_maintenance,
    engine_score,
} }
both_ways! { struct MaintenanceOrder { reason, since_ms, blocked } }
both_ways! { struct HostFacts { cpus, memory_mib, libvirt_uri, domain_type } }
both_ways! { enum DomainType { Kvm, Qemu, Test } }
both_ways! { enum HostState { Joining, Up, NonResponsive, Down, PreparingForMaintenance, Maintenance } }
both_ways! { struct JoinToken { created_ms, expires_ms } added { uses } }
both_ways! { struct Vm { id } parts {
    config: VmConfig {
        name, description, comment, memory_mib, vcpus, ha, disks, nics, domain_type, boot, migration_settings,
        next_run, resume_behavior, created_ms, updated_ms, host_tags, pinned_hosts, migration, os, cdrom,
        hosted_engine, delete_protected, ovf_unknown,
    } added { attachments, max_vcpus, max_memory_mib, from_template, offering, stateless, cloud_init, boot_order },
    runtime: VmRuntime { desired, status, host, epoch, stop_reason, shutdown_deadline_ms, reboot_pending }
        added { run_limits, hot_seq, hot_done, hot_error },
    ha_state: VmHa { ha_restart, ha_restarting, ha_restarted_ms, ha_failures },
    migration_state: VmMigration { migrating_to, migration_job, migration_failed_ms },
    snapshot_state: VmSnapshots {}
        added { snapshots, current_snapshot, preview, snapshot_job, snapshot_seq, snapshot_error, resume_from },
} }
both_ways! { struct OvfFragment { parent, xml } }
both_ways! { enum MigrationPolicy { Allow, Manual, None } }
both_ways! { enum Polarity { Positive, Negative } }
both_ways! { struct AffinityGroup { name, polarity, enforcing, vms, created_ms } }
both_ways! { struct AffinityLabel { name, vms, hosts, created_ms } }
both_ways! { struct MigrationJob { queued_ms, automatic, cancel, progress } }
both_ways! { struct MigrationProgress { percent, memory_total_mib, memory_remaining_mib, iteration, elapsed_ms } }
both_ways! { struct MigrationSettings { auto_converge, compression, max_downtime_ms, bandwidth_mibps, max_per_host } }
both_ways! { struct MigrationOverrides { auto_converge, compression, max_downtime_ms, bandwidth_mibps } }
both_ways! { struct HaRestart { failed_ms, attempts, next_try_ms, last_error, not_before_ms } }
both_ways! { enum ResumeBehavior { AutoResume, LeavePaused, Kill } }
both_ways! { struct NextRun { memory_mib, vcpus, domain_type } added { os, max_vcpus, max_memory_mib, cdrom, stateless } }
both_ways! { struct Nic { network, mac } added { name, unplugged } }
both_ways! { struct KernelBoot { kernel, initrd, cmdline } }
both_ways! { struct Disk { id, name, size_mib, file, format, vm, created_ms } added { base } }
both_ways! { enum PowerState { Down, Up, Suspended } }
both_ways! { struct HaSettings { enabled, priority } }
both_ways! { enum HaPriority { Low, Medium, High } }
both_ways! { enum VmStatus {
    Down, PoweringUp, Up, Paused, Suspended, RebootInProgress, PoweringDown, Migrating, NotResponding, Unknown,
} }
both_ways! { enum Observed {
    Up,
    Paused,
    PausedIoError,
    Suspended,
    Down { cause, on_purpose },
    RebootDone,
    MigrationDone { to },
    MigrationProgress(progress),
    MigrationFailed { error },
    Failed { action, error },
    NotResponding,
} later { Hotplug } }
both_ways! { struct Event { index, time_ms, kind, message } added { user } }
both_ways! { enum EventKind {
    ClusterBootstrapped, HostJoined, HostLeft, HostStateChanged, HostMaintenance, LeaderChanged, TokenCreated,
    VmCreated, VmEdited, VmDeleted, VmStateChanged, VmHighAvailability, VmMigration, DiskCreated, DiskDeleted,
    AffinityChanged, HostEdited, ClusterEdited,
} later { UserEdited, PermissionChanged, LoginFailed, VmSnapshot, Library } }

// command.rs
both_ways! { struct Command { at_ms, request_id, op } }
both_ways! { struct Proposal { request_id, op } }
both_ways! { enum Op {
    Batch(proposals),
    Bootstrap { cluster_name, voters, host, token_hash, token_expires_ms },
    AddToken { token_hash, expires_ms },
    RegisterHost { token_hash, name, address, facts },
    HostJoined { id, voter },
    RemoveHost { id },
    LeaderElected { id, term },
    HostNonResponsive { id, silent_ms },
    HostDown { id, how },
    HostAlive { id, self_fenced },
    RestartHaVms,
    CreateVm { id, spec, disks, start },
    EditVm { vm, changes },
    DeleteVm { vm, keep_disks },
    CloneVm { source, id, name, disks, macs },
    StartVm { vm, order },
    ShutdownVm { vm, reason, timeout_s },
    StopVm { vm, reason },
    RebootVm { vm },
    SuspendVm { vm },
    ResumeVm { vm },
    MigrateVm { vm, to },
    CancelMigration { vm },
    HostMaintenance { host, reason },
    EvacuateHost { id },
    ActivateHost { host },
    SetMigrationDefaults { changes },
    ReportVm { vm, host, epoch, observed },
    RecordEvent { kind, message },
    DeleteDisks { ids },
    CreateAffinityGroup { name, polarity, enforcing, vms },
    EditAffinityGroup { name, add_vms, remove_vms, enforcing, polarity },
    DeleteAffinityGroup { name },
    CreateAffinityLabel { name, vms, hosts },
    EditAffinityLabel { name, add_vms, remove_vms, add_hosts, remove_hosts },
    DeleteAffinityLabel { name },
    EditHost { host, tags },
    SetSchedulingPolicy { policy, cpu_overcommit },
    ImportVm { vm, disks, engine, start },
    SetEngineMaintenance { global, local },
    ReportEngineScore { host, score },
    AdoptVm { vm, host },
} later {
    SetClusterLevel, HostAliveAfterFencing, SetCa, RevokeToken, OnBehalf, CreateUser, DeleteUser, SetPassword,
    CreateGroup, EditGroup, DeleteGroup, CreateRole, EditRole, DeleteRole, AddPermission, RemovePermission,
    StartSession, EndSession, CreateApiToken, RevokeApiToken, LoginFailed, CreateDisk, ResizeDisk, DeleteDisk,
    AttachDisk, DetachDisk, PlugDisk, AddNic, RemoveNic, PlugNic, CreateSnapshot, PreviewSnapshot, CommitSnapshot,
    UndoSnapshot, RestoreSnapshot, DeleteSnapshot, SnapshotJobDone, CloneFromSnapshot, SetSnapshotCap, AddIso,
    DeleteIso, CreateTemplate, DeleteTemplate, CreateOffering, EditOffering, DeleteOffering,
} }
both_ways! { struct StartOrder { host } }
both_ways! { struct NewHost { id, name, address, facts } }
both_ways! { struct VmSpec {
    name, description, comment, memory_mib, vcpus, ha_enabled, ha_priority, resume_behavior, nics, domain_type,
    boot,
} added { max_vcpus, max_memory_mib, template, offering, cdrom, boot_order, cloud_init, stateless, os } }
both_ways! { struct MigrationSettingsChange {
    auto_converge, compression, max_downtime_ms, bandwidth_mibps, max_per_host,
} }
both_ways! { struct VmChanges {
    name, description, comment, memory_mib, vcpus, ha_enabled, ha_priority, domain_type, resume_behavior,
    migration_settings, host_tags, pinned_hosts, migration, delete_protected, os,
} added { next_run, max_vcpus, max_memory_mib, cdrom, offering, stateless, boot_order } }
both_ways! { struct MigrationOverridesChange { auto_converge, compression, max_downtime_ms, bandwidth_mibps } }
both_ways! { enum Outcome {
    Done,
    HostRegistered { id, cluster_name },
    Vm(vm),
    Batch(replies),
    VmDeleted { id, files },
    AffinityGroup(group),
    AffinityLabel(label),
    Host(host),
    Cluster(cluster),
} later { Disk, Iso, Template, Offering, Removed } }

impl From<Reply> for cur::Reply {
    fn from(Reply(r): Reply) -> Self {
        cur::Reply(r.up())
    }
}
impl TryFrom<&cur::Reply> for Reply {
    type Error = Unrepresentable;
    fn try_from(cur::Reply(r): &cur::Reply) -> Result<Self, Unrepresentable> {
        Ok(Reply(r.down()?))
    }
}
both_ways!(link Reply);

// error.rs
both_ways! { enum ClusterError {
    NotFound(m),
    AlreadyExists(m),
    InvalidArgument { field, rule },
    FailedPrecondition(m),
    PermissionDenied(m),
    Unavailable(m),
    Unreachable(m),
    Internal(m),
} later { Unauthenticated } }

// forward.rs
both_ways! { enum LeaderRequest {
    Write { request_id, op },
    ReadIndex,
    Admit { token_hash, id },
    RemoveHost { name },
    Heartbeat { host, self_fenced, sent_ms },
} later { Join, Sign, EnsureCa, Recertify, RemoveHostFor } }
both_ways! { enum LeaderResponse {
    Written(reply, index),
    ReadIndex(index),
    Admitted { voter },
    HostRemoved { id, promoted },
    HeartbeatAck { index },
} later { Joined, Signed, Ca } }
both_ways! { struct Forwarded { hops, request } }

/// A leader's answer to a forwarded request, v0 -> current.
pub fn forward_result_up(r: ForwardResult) -> crate::forward::ForwardResult {
    r.up()
}

/// A leader's answer to a forwarded request, current -> v0.
pub fn forward_result_down(r: &crate::forward::ForwardResult) -> Result<ForwardResult, Unrepresentable> {
    r.down()
}

// typ.rs
both_ways! { struct NodeInfo { name, address } }

// openraft's generic types, over the v0 and the current type configuration.

/// A log entry as a v0 node wrote it, as the current types hold it.
pub fn entry_up(e: openraft::Entry<V0Config>) -> crate::typ::Entry {
    let payload = match e.payload {
        EntryPayload::Blank => EntryPayload::Blank,
        EntryPayload::Normal(c) => EntryPayload::Normal(c.into()),
        EntryPayload::Membership(m) => EntryPayload::Membership(membership_up(&m)),
    };
    openraft::Entry { log_id: e.log_id, payload }
}

/// A log entry in format v0.
pub fn entry_down(e: &crate::typ::Entry) -> Result<openraft::Entry<V0Config>, Unrepresentable> {
    let payload = match &e.payload {
        EntryPayload::Blank => EntryPayload::Blank,
        EntryPayload::Normal(c) => EntryPayload::Normal(c.try_into()?),
        EntryPayload::Membership(m) => EntryPayload::Membership(membership_down(m)?),
    };
    Ok(openraft::Entry { log_id: e.log_id, payload })
}

pub fn membership_up(m: &Membership<NodeId, NodeInfo>) -> crate::typ::Membership {
    let nodes: BTreeMap<NodeId, cur::NodeInfo> = m.nodes().map(|(id, n)| (*id, n.clone().into())).collect();
    Membership::new(m.get_joint_config().clone(), nodes)
}

pub fn membership_down(m: &crate::typ::Membership) -> Result<Membership<NodeId, NodeInfo>, Unrepresentable> {
    let nodes = m.nodes().map(|(id, n)| Ok((*id, n.try_into()?))).collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(Membership::new(m.get_joint_config().clone(), nodes))
}

pub fn stored_membership_up(m: &StoredMembership<NodeId, NodeInfo>) -> StoredMembership<NodeId, cur::NodeInfo> {
    StoredMembership::new(*m.log_id(), membership_up(m.membership()))
}

pub fn stored_membership_down(
    m: &StoredMembership<NodeId, cur::NodeInfo>,
) -> Result<StoredMembership<NodeId, NodeInfo>, Unrepresentable> {
    Ok(StoredMembership::new(*m.log_id(), membership_down(m.membership())?))
}

pub fn snapshot_meta_up(m: &SnapshotMeta<NodeId, NodeInfo>) -> SnapshotMeta<NodeId, cur::NodeInfo> {
    SnapshotMeta {
        last_log_id: m.last_log_id,
        last_membership: stored_membership_up(&m.last_membership),
        snapshot_id: m.snapshot_id.clone(),
    }
}

pub fn snapshot_meta_down(
    m: &SnapshotMeta<NodeId, cur::NodeInfo>,
) -> Result<SnapshotMeta<NodeId, NodeInfo>, Unrepresentable> {
    Ok(SnapshotMeta {
        last_log_id: m.last_log_id,
        last_membership: stored_membership_down(&m.last_membership)?,
        snapshot_id: m.snapshot_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership};
    use serde::Serialize;
    use uuid::Uuid;

    use super::Unrepresentable;
    use crate::command::{
        Command, MigrationOverridesChange, MigrationSettingsChange, NewHost, Op, Outcome, Proposal, Reply, StartOrder,
        VmChanges, VmSpec,
    };
    use crate::error::ClusterError;
    use crate::forward::{ForwardResult, Forwarded, LeaderRequest, LeaderResponse};
    use crate::model::{
        ClusterState, Disk, DomainType, EngineScore, HaPriority, HostFacts, KernelBoot, MigrationPolicy, Nic, Observed,
        OvfFragment, Polarity, ResumeBehavior, SchedulingPolicy, Vm,
    };
    use crate::typ::{Entry, NodeInfo};

    const T0: i64 = 1_700_000_000_000;

    fn apply(s: &mut ClusterState, at_ms: i64, request_id: Option<Uuid>, op: Op) -> Reply {
        s.apply_command(&Command { at_ms, request_id, op })
    }

    fn ok(s: &mut ClusterState, op: Op) -> Outcome {
        let what = format!("{op:?}");
        apply(s, T0 + 10, None, op).0.unwrap_or_else(|e| panic!("{what} refused: {e}"))
    }

    fn facts() -> HostFacts {
        HostFacts { cpus: 8, memory_mib: 16384, libvirt_uri: "qemu:///system".into(), domain_type: DomainType::Kvm }
    }

    fn spec(name: &str, ha: Option<HaPriority>) -> VmSpec {
        VmSpec {
            name: name.into(),
            description: format!("{name} description"),
            comment: "a comment".into(),
            memory_mib: 1024,
            vcpus: 2,
            ha_enabled: ha.is_some(),
            ha_priority: ha.unwrap_or_default(),
            resume_behavior: ResumeBehavior::LeavePaused,
            nics: vec![Nic::new("default", "52:54:00:00:00:01")],
            domain_type: Some(DomainType::Kvm),
            boot: Some(KernelBoot {
                kernel: "vmlinuz".into(),
                initrd: Some("initrd.img".into()),
                cmdline: "quiet".into(),
            }),
            max_vcpus: None,
            max_memory_mib: None,
            ..VmSpec::default()
        }
    }

    fn disk(name: &str) -> Disk {
        Disk {
            id: Uuid::new_v4(),
            name: name.into(),
            size_mib: 2048,
            file: format!("{name}.qcow2"),
            format: "qcow2".into(),
            vm: None,
            created_ms: T0,
            base: None,
        }
    }

    fn on(host: &str) -> Option<StartOrder> {
        Some(StartOrder { host: Some(host.into()) })
    }

    fn report(s: &mut ClusterState, name: &str, observed: Observed) {
        let v = s.find_vm(name).unwrap_or_else(|| panic!("no vm {name}"));
        let (vm, host, epoch) = (v.id, v.runtime.host.expect("assigned"), v.runtime.epoch);
        ok(s, Op::ReportVm { vm, host, epoch, observed });
    }

    fn overrides_change() -> MigrationOverridesChange {
        MigrationOverridesChange {
            auto_converge: Some(Some(true)),
            compression: Some(None),
            max_downtime_ms: Some(Some(300)),
            bandwidth_mibps: Some(None),
        }
    }

    fn engine_vm() -> Box<Vm> {
        let mut vm = Vm::new(Uuid::new_v4(), "engine", 4096, 2, T0);
        vm.config.cdrom = Some("tools.iso".into());
        vm.config.os = "rhel_9x64".into();
        vm.config.ovf_unknown = vec![OvfFragment { parent: "Content".into(), xml: "<Foo a=\"1\"/>".into() }];
        Box::new(vm)
    }

    /// Three hosts, VMs running, migrating, waiting for an HA restart and with a next-run
    /// configuration, affinity rules, the hosted engine, a host in maintenance, recent requests.
    fn rich_state() -> ClusterState {
        let mut s = ClusterState::default();
        let host = NewHost { id: 1, name: "host1".into(), address: "10.0.0.1:7001".into(), facts: facts() };
        let op = Op::Bootstrap {
            cluster_name: "lab".into(),
            voters: 3,
            host,
            token_hash: "good".into(),
            token_expires_ms: T0 + 3_600_000,
        };
        ok(&mut s, op);
        for id in 2..=3u64 {
            let (name, address) = (format!("host{id}"), format!("10.0.0.{id}:7001"));
            ok(&mut s, Op::RegisterHost { token_hash: "good".into(), name, address, facts: facts() });
            ok(&mut s, Op::HostJoined { id, voter: true });
        }
        ok(&mut s, Op::AddToken { token_hash: "second".into(), expires_ms: T0 + 60_000 });
        ok(&mut s, Op::LeaderElected { id: 1, term: 2 });

        let id = Uuid::new_v4();
        let op = Op::CreateVm { id, spec: spec("web", Some(HaPriority::High)), disks: vec![], start: on("host1") };
        assert!(apply(&mut s, T0 + 20, Some(Uuid::new_v4()), op).0.is_ok());
        report(&mut s, "web", Observed::Up);
        let changes = VmChanges {
            memory_mib: Some(2048),
            migration_settings: Some(overrides_change()),
            host_tags: Some(vec![]),
            migration: Some(MigrationPolicy::Allow),
            ..Default::default()
        };
        ok(&mut s, Op::EditVm { vm: "web".into(), changes });
        ok(&mut s, Op::MigrateVm { vm: "web".into(), to: Some("host2".into()) });
        let progress = crate::model::MigrationProgress {
            percent: 40,
            memory_total_mib: 2048,
            memory_remaining_mib: 1200,
            iteration: 2,
            elapsed_ms: 1500,
        };
        report(&mut s, "web", Observed::MigrationProgress(progress));

        ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: spec("db", None), disks: vec![], start: None });
        let ha = spec("ha1", Some(HaPriority::Low));
        ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: ha, disks: vec![], start: on("host2") });
        report(&mut s, "ha1", Observed::Up);
        report(&mut s, "ha1", Observed::Down { cause: "crashed".into(), on_purpose: false });

        let (name, vms) = ("apart".to_string(), vec!["web".to_string(), "db".to_string()]);
        ok(&mut s, Op::CreateAffinityGroup { name, polarity: Polarity::Negative, enforcing: false, vms });
        let (name, vms, hosts) = ("fast".to_string(), vec!["db".to_string()], vec!["host3".to_string()]);
        ok(&mut s, Op::CreateAffinityLabel { name, vms, hosts });
        ok(&mut s, Op::EditHost { host: "host3".into(), tags: Some(vec!["ssd".into()]) });
        let changes = MigrationSettingsChange {
            auto_converge: Some(true),
            compression: None,
            max_downtime_ms: Some(Some(500)),
            bandwidth_mibps: Some(None),
            max_per_host: Some(3),
        };
        ok(&mut s, Op::SetMigrationDefaults { changes });
        ok(&mut s, Op::SetSchedulingPolicy { policy: Some(SchedulingPolicy::Packing), cpu_overcommit: Some(8) });

        let score = EngineScore { score: 2400, penalties: vec![("gateway unreachable".into(), 1000)], measured_ms: T0 };
        ok(&mut s, Op::ReportEngineScore { host: 2, score });
        let d = disk("engine-disk0");
        let mut vm = engine_vm();
        vm.config.disks = vec![d.id];
        ok(&mut s, Op::ImportVm { vm, disks: vec![d], engine: true, start: None });
        ok(&mut s, Op::SetEngineMaintenance { global: Some(true), local: Some(("host3".into(), true)) });
        ok(&mut s, Op::HostMaintenance { host: "host3".into(), reason: Some("disk swap".into()) });

        let web = s.find_vm("web").unwrap();
        assert!(
            web.config.next_run.is_some()
                && web.migration_state.migration_job.as_ref().is_some_and(|j| j.progress.is_some())
        );
        assert_eq!(web.config.migration_settings.auto_converge, Some(true));
        assert!(s.find_vm("ha1").unwrap().ha_state.ha_restart.is_some());
        assert!(s.engine.vm.is_some() && s.engine.global_maintenance);
        assert!(s.hosts[&3].maintenance.is_some() && s.hosts[&2].engine_score.is_some());
        assert!(!s.affinity_groups.is_empty() && !s.affinity_labels.is_empty() && !s.recent_requests.is_empty());
        s
    }

    fn commands() -> Vec<Command> {
        let vm = engine_vm();
        let d = disk("d0");
        let ops = vec![
            Op::RestartHaVms,
            Op::EditVm {
                vm: "web".into(),
                changes: VmChanges {
                    name: Some("web2".into()),
                    ha_priority: Some(HaPriority::High),
                    migration_settings: Some(overrides_change()),
                    pinned_hosts: Some(vec!["host1".into()]),
                    delete_protected: Some(false),
                    ..Default::default()
                },
            },
            Op::ImportVm { vm, disks: vec![d.clone()], engine: true, start: on("host2") },
            Op::CreateVm { id: Uuid::new_v4(), spec: spec("x", None), disks: vec![d], start: None },
            Op::ReportVm { vm: Uuid::new_v4(), host: 2, epoch: 7, observed: Observed::MigrationDone { to: 3 } },
            Op::EditAffinityGroup {
                name: "g".into(),
                add_vms: vec!["a".into()],
                remove_vms: vec![],
                enforcing: Some(true),
                polarity: Some(Polarity::Positive),
            },
            Op::SetEngineMaintenance { global: None, local: Some(("host1".into(), false)) },
            Op::Batch(vec![
                Proposal {
                    request_id: Some(Uuid::new_v4()),
                    op: Op::StartVm { vm: "a".into(), order: StartOrder::default() },
                },
                Proposal { request_id: None, op: Op::Batch(vec![]) },
                Proposal { request_id: None, op: Op::ShutdownVm { vm: "b".into(), reason: None, timeout_s: 30 } },
            ]),
        ];
        ops.into_iter()
            .zip(0..)
            .map(|(op, i)| Command { at_ms: T0 + i, request_id: Some(Uuid::new_v4()), op })
            .collect()
    }

    fn replies() -> Vec<Reply> {
        let mut s = rich_state();
        let web = Box::new(s.find_vm("web").unwrap().clone());
        let host = Box::new(s.hosts[&3].clone());
        let cluster = Box::new(s.cluster.clone().unwrap());
        let group = Box::new(s.affinity_groups["apart"].clone());
        let label = Box::new(s.affinity_labels["fast"].clone());
        let refused = apply(&mut s, T0 + 99, None, Op::DeleteVm { vm: "nope".into(), keep_disks: false });
        assert!(refused.0.is_err());
        vec![
            Reply(Ok(Outcome::Done)),
            Reply(Ok(Outcome::HostRegistered { id: 4, cluster_name: "lab".into() })),
            Reply(Ok(Outcome::Vm(web))),
            Reply(Ok(Outcome::VmDeleted { id: Uuid::new_v4(), files: vec!["a.qcow2".into()] })),
            Reply(Ok(Outcome::AffinityGroup(group))),
            Reply(Ok(Outcome::AffinityLabel(label))),
            Reply(Ok(Outcome::Host(host))),
            Reply(Ok(Outcome::Cluster(cluster))),
            Reply(Ok(Outcome::Batch(vec![refused.clone(), Reply(Ok(Outcome::Done))]))),
            refused,
            Reply(Err(ClusterError::invalid("memory", "must be at least 1 MiB"))),
            Reply(Err(ClusterError::Unreachable("host2 is not reachable".into()))),
        ]
    }

    fn requests() -> Vec<Forwarded> {
        let op = Box::new(commands().pop().unwrap().op);
        [
            LeaderRequest::Write { request_id: Some(Uuid::new_v4()), op },
            LeaderRequest::ReadIndex,
            LeaderRequest::Admit { token_hash: "t".into(), id: 4 },
            LeaderRequest::RemoveHost { name: "host3".into() },
            LeaderRequest::Heartbeat { host: 2, self_fenced: true, sent_ms: T0 },
        ]
        .into_iter()
        .zip(0..)
        .map(|(request, hops)| Forwarded { hops, request })
        .collect()
    }

    fn forward_results() -> Vec<ForwardResult> {
        vec![
            Ok(LeaderResponse::Written(replies().swap_remove(2), 41)),
            Ok(LeaderResponse::ReadIndex(40)),
            Ok(LeaderResponse::Admitted { voter: false }),
            Ok(LeaderResponse::HostRemoved { id: 3, promoted: Some("host4".into()) }),
            Ok(LeaderResponse::HeartbeatAck { index: 42 }),
            Err(ClusterError::Unavailable("no leader".into())),
        ]
    }

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn membership() -> crate::typ::Membership {
        let node = |n: u64| NodeInfo { name: format!("host{n}"), address: format!("10.0.0.{n}:7001") };
        let nodes: BTreeMap<u64, NodeInfo> = (1..=4).map(|n| (n, node(n))).collect();
        Membership::new(vec![BTreeSet::from([1, 2]), BTreeSet::from([1, 2, 3])], nodes)
    }

    fn entries() -> Vec<Entry> {
        let mut v = vec![
            Entry { log_id: log_id(1, 1), payload: EntryPayload::Blank },
            Entry { log_id: log_id(1, 2), payload: EntryPayload::Membership(membership()) },
        ];
        for (c, i) in commands().into_iter().zip(3..) {
            v.push(Entry { log_id: log_id(2, i), payload: EntryPayload::Normal(c) });
        }
        v
    }

    /// Down to v0 and back up.
    fn round_trip<C, V>(c: &C) -> C
    where
        C: From<V>,
        V: for<'a> TryFrom<&'a C, Error = Unrepresentable>,
    {
        C::from(V::try_from(c).expect("representable in v0"))
    }

    fn bincode<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encodes")
    }

    #[test]
    fn cluster_state_goes_down_and_up_unchanged() {
        let s = rich_state();
        assert_eq!(round_trip::<_, super::ClusterState>(&s), s);
        assert_eq!(round_trip::<_, super::ClusterState>(&ClusterState::default()), ClusterState::default());
    }

    #[test]
    fn commands_and_replies_go_down_and_up_unchanged() {
        for c in commands() {
            assert_eq!(round_trip::<_, super::Command>(&c), c);
        }
        for r in replies() {
            assert_eq!(round_trip::<_, super::Reply>(&r), r);
        }
    }

    #[test]
    fn forwarded_requests_and_results_go_down_and_up_unchanged() {
        // The current forwarding types have no PartialEq: their Debug form stands in.
        for f in requests() {
            assert_eq!(format!("{:?}", round_trip::<_, super::Forwarded>(&f)), format!("{f:?}"));
        }
        for r in forward_results() {
            let back = super::forward_result_up(super::forward_result_down(&r).unwrap());
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }

    #[test]
    fn openraft_types_go_down_and_up_unchanged() {
        for e in entries() {
            assert_eq!(super::entry_up(super::entry_down(&e).unwrap()), e);
        }
        let m = membership();
        assert_eq!(super::membership_up(&super::membership_down(&m).unwrap()), m);
        let stored = StoredMembership::new(Some(log_id(1, 2)), m);
        assert_eq!(super::stored_membership_up(&super::stored_membership_down(&stored).unwrap()), stored);
        let meta =
            SnapshotMeta { last_log_id: Some(log_id(2, 9)), last_membership: stored, snapshot_id: "2-9-1".into() };
        assert_eq!(super::snapshot_meta_up(&super::snapshot_meta_down(&meta).unwrap()), meta);
    }

    /// Decodes one golden fixture (written by release 3f21f51 itself) with the frozen types,
    /// requires every byte used and the same bytes back from encoding it again.
    fn golden<V: Serialize + serde::de::DeserializeOwned>(name: &str) -> V {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v0").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (v, used): (V, usize) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(used, bytes.len(), "{name}: trailing bytes");
        assert_eq!(bincode(&v), bytes, "{name}: encodes differently");
        v
    }

    /// All the files of one kind: `entry-01.bin`, `entry-02.bin`, ... until one is missing.
    fn golden_all<V: Serialize + serde::de::DeserializeOwned>(prefix: &str) -> Vec<V> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v0");
        let names = (1..).map(|i| format!("{prefix}-{i:02}.bin")).take_while(|n| dir.join(n).exists());
        let all: Vec<V> = names.map(|n| golden(&n)).collect();
        assert!(!all.is_empty(), "no {prefix}-NN.bin fixtures");
        all
    }

    /// The frozen types read and write exactly what release 3f21f51 wrote, and every such value
    /// goes up to the current types and back down unchanged. (Unlike the test above, this one
    /// holds for good.)
    #[test]
    fn release_fixtures_decode_with_the_frozen_types() {
        let (applied, stored, state): (
            Option<LogId<u64>>,
            StoredMembership<u64, super::NodeInfo>,
            super::ClusterState,
        ) = golden("snapshot-data.bin");
        assert!(applied.is_some() && !state.vms.is_empty());
        let up = ClusterState::from(state.clone());
        assert_eq!(super::ClusterState::try_from(&up), Ok(state));
        assert_eq!(super::stored_membership_down(&super::stored_membership_up(&stored)), Ok(stored));
        let meta: SnapshotMeta<u64, super::NodeInfo> = golden("snapshot-meta.bin");
        assert_eq!(super::snapshot_meta_down(&super::snapshot_meta_up(&meta)), Ok(meta));
        for e in golden_all::<openraft::Entry<super::V0Config>>("entry") {
            assert_eq!(super::entry_down(&super::entry_up(e.clone())), Ok(e));
        }
        for r in golden_all::<super::Reply>("reply") {
            assert_eq!(super::Reply::try_from(&Reply::from(r.clone())), Ok(r));
        }
        for f in golden_all::<super::Forwarded>("forward") {
            assert_eq!(super::Forwarded::try_from(&Forwarded::from(f.clone())), Ok(f));
        }
        for r in golden_all::<super::ForwardResult>("forward-result") {
            assert_eq!(super::forward_result_down(&super::forward_result_up(r.clone())), Ok(r));
        }
    }

    /// `both_ways!` for the later levels: a field or a variant that only the current types have.
    mod later_levels {
        use super::super::{is_default, Down, Unrepresentable, Up};

        mod cur {
            #[derive(Debug, PartialEq)]
            pub struct Probe {
                pub a: u64,
                pub added: Option<String>,
            }
            #[derive(Debug, PartialEq)]
            pub enum Kind {
                Old(u64),
                NewThing { x: u64 },
            }
        }

        #[derive(Debug, PartialEq)]
        pub struct Probe {
            pub a: u64,
            pub cache: (),
        }
        #[derive(Debug, PartialEq)]
        pub enum Kind {
            Old(u64),
        }

        both_ways! { struct Probe { a } added { added } skipped { cache } }
        both_ways! { enum Kind { Old(n) } later { NewThing } }

        #[test]
        fn current_only_fields_and_variants() {
            let up: cur::Probe = Probe { a: 1, cache: () }.into();
            assert_eq!(up, cur::Probe { a: 1, added: None });
            let down = Probe::try_from(&cur::Probe { a: 2, added: None });
            assert_eq!(down, Ok(Probe { a: 2, cache: () }));
            let down = Probe::try_from(&cur::Probe { a: 2, added: Some("x".into()) });
            assert_eq!(down, Err(Unrepresentable { what: "Probe.added".into() }));
            assert_eq!(Kind::try_from(&cur::Kind::Old(3)), Ok(Kind::Old(3)));
            let e = Kind::try_from(&cur::Kind::NewThing { x: 1 }).unwrap_err();
            assert_eq!(e.to_string(), "Kind::NewThing cannot be written in format v0");
        }
    }
}
