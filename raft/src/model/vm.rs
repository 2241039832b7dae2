//! VMs and what they are made of (disks, NICs, kernel boot), their power states, and what a
//! host agent reports about them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    DomainType, HaRestart, HaSettings, MigrationJob, MigrationOverrides, MigrationPolicy, MigrationProgress,
    ENGINE_CLAIM_MS, HA_STABLE_MS,
};
use crate::typ::NodeId;

/// A VM: its configuration, how it runs, and what HA and migration keep about it. The parts are
/// flattened when encoded, so that stored and replicated VMs keep one map of named fields
/// whatever part a field lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub id: Uuid,
    #[serde(flatten)]
    pub config: VmConfig,
    #[serde(flatten)]
    pub runtime: VmRuntime,
    #[serde(flatten)]
    pub ha_state: VmHa,
    #[serde(flatten)]
    pub migration_state: VmMigration,
}

/// What an operator configures, and what the VM's OVF document carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
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
    /// This VM's own migration settings; unset ones follow the cluster's.
    #[serde(default)]
    pub migration_settings: MigrationOverrides,
    /// Changes made while the VM ran that need a restart (oVirt's "next run" configuration);
    /// they replace the running values when the VM is next down.
    pub next_run: Option<NextRun>,
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

/// Where the VM runs and what it does there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRuntime {
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
}

impl VmRuntime {
    /// Orders the VM up on `host`, as a new assignment (reports of an earlier one are ignored).
    pub fn order_up(&mut self, host: NodeId) {
        self.desired = PowerState::Up;
        self.host = Some(host);
        self.epoch += 1;
        self.status = VmStatus::PoweringUp;
        self.stop_reason = None;
    }
}

/// What HA keeps about a highly available VM's failures and restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmHa {
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
}

/// A live migration in flight, and when the last one failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmMigration {
    /// A live migration in progress (or queued on its source host), to this host.
    pub migrating_to: Option<NodeId>,
    /// The migration's bookkeeping while `migrating_to` is set.
    #[serde(default)]
    pub migration_job: Option<MigrationJob>,
    /// When its last migration failed or was cancelled (maintenance waits before it orders
    /// another one).
    #[serde(default)]
    pub migration_failed_ms: Option<i64>,
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
            config: VmConfig {
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
                migration_settings: MigrationOverrides::default(),
                next_run: None,
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
            },
            runtime: VmRuntime::default(),
            ha_state: VmHa::default(),
            migration_state: VmMigration::default(),
        }
    }

    /// Records that this HA VM failed at `now` and must be restarted. A failure of its own
    /// (a crash, a failed start) soon after an HA restart counts towards a longer back-off; the
    /// loss of its host does not.
    pub fn ha_failed(&mut self, now: i64, its_own: bool, error: Option<String>) {
        let recent = self.ha_state.ha_restarted_ms.is_some_and(|t| now - t < HA_STABLE_MS);
        self.ha_state.ha_failures = if its_own && recent { self.ha_state.ha_failures + 1 } else { 0 };
        let wait = if self.ha_state.ha_failures == 0 { 0 } else { HaRestart::backoff_ms(self.ha_state.ha_failures) };
        // The hosted engine that died on a live host may have been started by hand elsewhere
        // while the cluster had no quorum: that host gets a moment to claim it first.
        let not_before_ms = if its_own && self.config.hosted_engine { now + ENGINE_CLAIM_MS } else { 0 };
        self.ha_state.ha_restart = Some(HaRestart {
            failed_ms: now,
            attempts: self.ha_state.ha_failures,
            next_try_ms: (now + wait).max(not_before_ms),
            last_error: error,
            not_before_ms,
        });
    }

    /// The VM no longer runs anywhere: down, desired down, holding no host, with no transition
    /// pending (what an HA restart needs is the caller's to set).
    pub fn release_host(&mut self) {
        self.runtime.desired = PowerState::Down;
        self.runtime.status = VmStatus::Down;
        self.runtime.host = None;
        self.migration_state.migrating_to = None;
        self.migration_state.migration_job = None;
        self.runtime.shutdown_deadline_ms = None;
        self.runtime.reboot_pending = false;
        self.ha_state.ha_restarting = false;
    }

    /// Makes the next-run configuration the VM's configuration; returns what changed.
    pub fn settle_next_run(&mut self) -> Option<String> {
        let n = self.config.next_run.take()?;
        let mut what = Vec::new();
        if let Some(v) = n.memory_mib {
            self.config.memory_mib = v;
            what.push(format!("memory {v} MiB"));
        }
        if let Some(v) = n.vcpus {
            self.config.vcpus = v;
            what.push(format!("{v} vCPU{}", if v == 1 { "" } else { "s" }));
        }
        if let Some(v) = n.domain_type {
            self.config.domain_type = Some(v);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use corral_storage::codec;
    use serde::de::IgnoredAny;

    use super::*;

    /// The parts are flattened: a VM is one map with the field names it had before it had parts,
    /// so that v1 bytes written before the split read as they are.
    #[test]
    fn a_vm_encodes_as_one_map_of_its_fields() {
        let vm = Vm::new(Uuid::nil(), "web", 1024, 2, 1);
        let bytes = codec::encode(&vm).unwrap();
        let keys: Vec<String> =
            codec::decode_plain::<BTreeMap<String, IgnoredAny>>(&bytes).unwrap().into_keys().collect();
        let mut want = vec![
            "id",
            "name",
            "description",
            "comment",
            "memory_mib",
            "vcpus",
            "ha",
            "disks",
            "nics",
            "domain_type",
            "boot",
            "desired",
            "status",
            "host",
            "epoch",
            "stop_reason",
            "shutdown_deadline_ms",
            "reboot_pending",
            "migrating_to",
            "migration_job",
            "migration_settings",
            "migration_failed_ms",
            "next_run",
            "ha_restart",
            "ha_restarting",
            "ha_restarted_ms",
            "ha_failures",
            "resume_behavior",
            "created_ms",
            "updated_ms",
            "host_tags",
            "pinned_hosts",
            "migration",
            "os",
            "cdrom",
            "hosted_engine",
            "delete_protected",
            "ovf_unknown",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(codec::decode_plain::<Vm>(&bytes).unwrap(), vm);
    }
}
