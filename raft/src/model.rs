//! The replicated model of the cluster: hosts, VMs, affinity rules, join tokens, recent
//! requests and a bounded event log. Plain data; `apply.rs` is the only code that changes it, and only as
//! a function of (state, command).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::typ::NodeId;

/// How many events the log keeps; older ones are dropped first.
pub const MAX_EVENTS: usize = 10_000;
/// How many request ids are remembered for de-duplicating retried writes.
pub const MAX_RECENT_REQUESTS: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Set once, by bootstrap.
    pub cluster: Option<ClusterInfo>,
    pub hosts: BTreeMap<NodeId, Host>,
    pub vms: BTreeMap<Uuid, Vm>,
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
    /// VMs whose OVF documents the last applied entries may have changed (not replicated).
    #[serde(skip)]
    pub touched: crate::documents::Touched,
}

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
}

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

impl SchedulingPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulingPolicy::EvenDistribution => "even",
            SchedulingPolicy::Packing => "pack",
        }
    }
}

impl FromStr for SchedulingPolicy {
    type Err = crate::ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "even" => Ok(SchedulingPolicy::EvenDistribution),
            "pack" => Ok(SchedulingPolicy::Packing),
            other => Err(crate::ClusterError::invalid("scheduling", format!("must be even or pack (got '{other}')"))),
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub comment: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub ha: HaSettings,
    /// Disk ids, in the order the guest sees them (vda, vdb, ...).
    pub disks: Vec<Uuid>,
    pub nics: Vec<Nic>,
    /// Overrides the host's domain type for this VM.
    pub domain_type: Option<DomainType>,
    /// Direct kernel boot (a kernel and initrd in the storage domain).
    pub boot: Option<KernelBoot>,
    /// What the operator asked for; the host agent makes libvirt match it.
    pub desired: PowerState,
    /// What the host last reported, or the transition the cluster ordered.
    pub status: VmStatus,
    /// The host the VM is assigned to while it is not down.
    pub host: Option<NodeId>,
    /// Grows with every assignment, so that a report from an earlier assignment is ignored.
    pub epoch: u64,
    /// Why the VM was last stopped (oVirt's "Reason"), or what stopped it.
    pub stop_reason: Option<String>,
    /// A graceful shutdown in progress: power off once this time passes (Unix ms).
    pub shutdown_deadline_ms: Option<i64>,
    /// A reboot was ordered and the host has not done it yet.
    pub reboot_pending: bool,
    /// A live migration in progress (or queued on its source host), to this host.
    pub migrating_to: Option<NodeId>,
    /// The migration's bookkeeping while `migrating_to` is set.
    #[serde(default)]
    pub migration_job: Option<MigrationJob>,
    /// This VM's own migration settings; unset ones follow the cluster's.
    #[serde(default)]
    pub migration_settings: MigrationOverrides,
    /// When its last migration failed or was cancelled (maintenance waits before it orders
    /// another one).
    #[serde(default)]
    pub migration_failed_ms: Option<i64>,
    /// Changes made while the VM ran that need a restart (oVirt's "next run" configuration);
    /// they replace the running values when the VM is next down.
    pub next_run: Option<NextRun>,
    /// An HA VM that failed and waits to be restarted by the leader.
    #[serde(default)]
    pub ha_restart: Option<HaRestart>,
    /// Started by HA and not yet reported up (its "up" event says it was restarted).
    #[serde(default)]
    pub ha_restarting: bool,
    /// When HA last started it, and how many times in a row it failed soon after: a VM that
    /// keeps crashing waits longer and longer before each restart.
    #[serde(default)]
    pub ha_restarted_ms: Option<i64>,
    #[serde(default)]
    pub ha_failures: u32,
    /// What to do when the hypervisor pauses the VM on a storage I/O error.
    #[serde(default)]
    pub resume_behavior: ResumeBehavior,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Tags that a host must all have to run this VM.
    #[serde(default)]
    pub host_tags: Vec<String>,
    /// When not empty, the only hosts this VM may run on.
    #[serde(default)]
    pub pinned_hosts: Vec<NodeId>,
    #[serde(default)]
    pub migration: MigrationPolicy,
    /// The guest operating system, as oVirt names it in the OVF's OperatingSystemSection
    /// (`other_linux`, `rhel_9x64`, ...).
    pub os: String,
    /// An ISO image in the storage domain, inserted into the VM's CD-ROM drive.
    pub cdrom: Option<String>,
    /// The cluster's own management VM (oVirt's hosted engine): HA ahead of every other VM,
    /// placed by the hosts' engine scores, never deleted.
    pub hosted_engine: bool,
    /// `vm delete` is refused, and so is removing its disks.
    pub delete_protected: bool,
    /// Parts of an imported OVF document that Corral does not model, kept so that the VM's
    /// own document carries them on.
    pub ovf_unknown: Vec<OvfFragment>,
}

/// An element of an imported OVF that Corral does not model: where it was, and its XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvfFragment {
    /// The element that held it: `Envelope`, `Content`, `VirtualHardwareSection`, ...
    pub parent: String,
    /// The element itself, as XML text.
    pub xml: String,
}

/// The guest OS a VM gets unless it says otherwise (oVirt's default).
pub const DEFAULT_OS: &str = "other_linux";

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

/// oVirt's "resume behaviour" after a storage I/O error pause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResumeBehavior {
    /// Resume the guest once the storage answers again.
    #[default]
    AutoResume,
    /// Leave it paused for the operator.
    LeavePaused,
    /// Power it off; an HA VM is then restarted (elsewhere if need be).
    Kill,
}

impl ResumeBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeBehavior::AutoResume => "auto_resume",
            ResumeBehavior::LeavePaused => "leave_paused",
            ResumeBehavior::Kill => "kill",
        }
    }
}

impl FromStr for ResumeBehavior {
    type Err = crate::ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto_resume" => Ok(ResumeBehavior::AutoResume),
            "leave_paused" => Ok(ResumeBehavior::LeavePaused),
            "kill" => Ok(ResumeBehavior::Kill),
            other => Err(crate::ClusterError::invalid(
                "resume_behavior",
                format!("must be auto_resume, leave_paused or kill (got '{other}')"),
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextRun {
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub domain_type: Option<DomainType>,
}

impl NextRun {
    pub fn is_empty(&self) -> bool {
        *self == NextRun::default()
    }
}

impl Vm {
    /// A new VM, down and on no host, with every optional setting at its default.
    pub fn new(id: Uuid, name: &str, memory_mib: u64, vcpus: u32, now: i64) -> Vm {
        Vm {
            id,
            name: name.to_string(),
            description: String::new(),
            comment: String::new(),
            memory_mib,
            vcpus,
            ha: HaSettings::default(),
            disks: Vec::new(),
            nics: Vec::new(),
            domain_type: None,
            boot: None,
            desired: PowerState::Down,
            status: VmStatus::Down,
            host: None,
            epoch: 0,
            stop_reason: None,
            shutdown_deadline_ms: None,
            reboot_pending: false,
            migrating_to: None,
            migration_job: None,
            migration_settings: MigrationOverrides::default(),
            migration_failed_ms: None,
            next_run: None,
            ha_restart: None,
            ha_restarting: false,
            ha_restarted_ms: None,
            ha_failures: 0,
            resume_behavior: ResumeBehavior::default(),
            created_ms: now,
            updated_ms: now,
            host_tags: Vec::new(),
            pinned_hosts: Vec::new(),
            migration: MigrationPolicy::default(),
            os: DEFAULT_OS.to_string(),
            cdrom: None,
            hosted_engine: false,
            delete_protected: false,
            ovf_unknown: Vec::new(),
        }
    }

    /// Records that this HA VM failed at `now` and must be restarted. A failure of its own
    /// (a crash, a failed start) soon after an HA restart counts towards a longer back-off; the
    /// loss of its host does not.
    pub fn ha_failed(&mut self, now: i64, its_own: bool, error: Option<String>) {
        let recent = self.ha_restarted_ms.is_some_and(|t| now - t < HA_STABLE_MS);
        self.ha_failures = if its_own && recent { self.ha_failures + 1 } else { 0 };
        let wait = if self.ha_failures == 0 { 0 } else { HaRestart::backoff_ms(self.ha_failures) };
        // The hosted engine that died on a live host may have been started by hand elsewhere
        // while the cluster had no quorum: that host gets a moment to claim it first.
        let not_before_ms = if its_own && self.hosted_engine { now + ENGINE_CLAIM_MS } else { 0 };
        self.ha_restart = Some(HaRestart {
            failed_ms: now,
            attempts: self.ha_failures,
            next_try_ms: (now + wait).max(not_before_ms),
            last_error: error,
            not_before_ms,
        });
    }

    /// The VM no longer runs anywhere: down, desired down, holding no host, with no transition
    /// pending (what an HA restart needs is the caller's to set).
    pub fn release_host(&mut self) {
        self.desired = PowerState::Down;
        self.status = VmStatus::Down;
        self.host = None;
        self.migrating_to = None;
        self.migration_job = None;
        self.shutdown_deadline_ms = None;
        self.reboot_pending = false;
        self.ha_restarting = false;
    }

    /// Makes the next-run configuration the VM's configuration; returns what changed.
    pub fn settle_next_run(&mut self) -> Option<String> {
        let n = self.next_run.take()?;
        let mut what = Vec::new();
        if let Some(v) = n.memory_mib {
            self.memory_mib = v;
            what.push(format!("memory {v} MiB"));
        }
        if let Some(v) = n.vcpus {
            self.vcpus = v;
            what.push(format!("{v} vCPU{}", if v == 1 { "" } else { "s" }));
        }
        if let Some(v) = n.domain_type {
            self.domain_type = Some(v);
            what.push(format!("domain type {}", v.as_str()));
        }
        Some(what.join(", "))
    }
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
    /// File name inside the storage domain.
    pub file: String,
    pub format: String,
    pub vm: Option<Uuid>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    #[default]
    Down,
    Up,
    /// Paused in memory on its host (`vm suspend`).
    Suspended,
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmStatus {
    #[default]
    Down,
    PoweringUp,
    Up,
    /// Paused by the hypervisor, not by the operator (an I/O error, for example).
    Paused,
    Suspended,
    RebootInProgress,
    PoweringDown,
    Migrating,
    /// Its host's hypervisor does not answer; the VM may or may not run.
    NotResponding,
    Unknown,
}

impl VmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VmStatus::Down => "down",
            VmStatus::PoweringUp => "powering_up",
            VmStatus::Up => "up",
            VmStatus::Paused => "paused",
            VmStatus::Suspended => "suspended",
            VmStatus::RebootInProgress => "reboot_in_progress",
            VmStatus::PoweringDown => "powering_down",
            VmStatus::Migrating => "migrating",
            VmStatus::NotResponding => "not_responding",
            VmStatus::Unknown => "unknown",
        }
    }
}

/// What a host agent saw of one VM, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Observed {
    Up,
    /// Paused without being asked to.
    Paused,
    /// Paused by the hypervisor because its storage failed (libvirt's I/O error pause).
    PausedIoError,
    Suspended,
    /// Shut off; `cause` says how (guest shutdown, crash, power off, ...). `on_purpose` when
    /// the guest shut itself down cleanly (HA does not restart it then, as in oVirt).
    Down {
        cause: crate::DownCause,
        on_purpose: bool,
    },
    RebootDone,
    /// The VM now runs on host `to` (the report is the truth, whatever the state expected).
    MigrationDone {
        to: NodeId,
    },
    /// How far a running migration is.
    MigrationProgress(MigrationProgress),
    MigrationFailed {
        error: String,
    },
    /// libvirt refused an operation; the VM is in the state `now`.
    Failed {
        action: crate::VmAction,
        error: String,
    },
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

impl ClusterState {
    /// Finds a VM by name or by id.
    pub fn find_vm(&self, name_or_id: &str) -> Option<&Vm> {
        if let Some(id) = self.vm_names.get(name_or_id) {
            return self.vms.get(id);
        }
        Uuid::parse_str(name_or_id).ok().and_then(|id| self.vms.get(&id))
    }

    pub fn host_by_name(&self, name: &str) -> Option<&Host> {
        self.hosts.values().find(|h| h.name == name)
    }

    pub fn host_name(&self, id: NodeId) -> String {
        self.hosts.get(&id).map_or_else(|| format!("node {id}"), |h| h.name.clone())
    }

    /// Memory and vCPUs that VMs assigned to `host` hold (a VM holds its host's resources
    /// from the start order until it is down; a migrating VM holds both hosts').
    pub fn host_usage(&self, host: NodeId) -> Usage {
        let mut u = Usage::default();
        for vm in self.vms.values() {
            if vm.host == Some(host) || vm.migrating_to == Some(host) {
                u.memory_mib += vm.memory_mib;
                u.vcpus += vm.vcpus as u64;
                if vm.host == Some(host) && vm.status != VmStatus::Down {
                    u.vms_running += 1;
                }
            }
        }
        u
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
        ids.iter().map(|id| self.vms.get(id).map_or_else(|| id.to_string(), |v| v.name.clone())).collect()
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

/// Resources held on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_mib: u64,
    pub vcpus: u64,
    pub vms_running: u64,
}

/// vCPUs a host may hand out per physical CPU unless the cluster says otherwise.
pub const DEFAULT_CPU_OVERCOMMIT: u32 = 4;
