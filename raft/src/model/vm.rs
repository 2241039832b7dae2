//! VMs and what they are made of (disks, NICs, kernel boot), their power states, and what a
//! host agent reports about them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    DomainType, HaRestart, HaSettings, MigrationJob, MigrationOverrides, MigrationPolicy, MigrationProgress,
    VmSnapshots, ENGINE_CLAIM_MS, HA_STABLE_MS,
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
    /// Its snapshots (cluster level 4).
    #[serde(flatten)]
    pub snapshot_state: VmSnapshots,
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
    /// How each disk of `disks` is attached, by disk id; a disk without an entry is the default
    /// attachment (virtio, plugged, required; the first one boots).
    #[serde(default)]
    pub attachments: BTreeMap<Uuid, Attachment>,
    /// The most vCPUs it may be given while it runs (cluster level 3); `None`: no vCPU hot-plug.
    #[serde(default)]
    pub max_vcpus: Option<u32>,
    /// The most memory it may be given while it runs, in DIMMs; `None`: no memory hot-plug.
    #[serde(default)]
    pub max_memory_mib: Option<u64>,
    /// The template it was made from (cluster level 5).
    #[serde(default)]
    pub from_template: Option<super::FromTemplate>,
    /// The service offering that gave it its size; cleared when the offering is deleted.
    #[serde(default)]
    pub offering: Option<String>,
    /// Every change to its disks is discarded when it stops (oVirt's stateless VM).
    #[serde(default)]
    pub stateless: bool,
    /// Its cloud-init seed, attached as a second CD-ROM drive when it starts.
    #[serde(default)]
    pub cloud_init: Option<super::CloudInit>,
    /// What it boots from, in order; empty: its bootable disk (direct kernel boot ignores it).
    #[serde(default)]
    pub boot_order: Vec<super::BootDevice>,
}

impl VmConfig {
    /// How disk `id` is attached (the default attachment when none is recorded: the first disk
    /// boots).
    pub fn attachment(&self, id: Uuid) -> Attachment {
        self.attachments
            .get(&id)
            .copied()
            .unwrap_or(Attachment { bootable: self.disks.first() == Some(&id), ..Attachment::default() })
    }
}

/// A disk's bus in the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DiskInterface {
    #[default]
    Virtio,
    /// virtio-scsi.
    Scsi,
}

/// How one disk is attached to its VM (oVirt's disk attachment): each is plugged or unplugged,
/// and an unplugged disk stays attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub interface: DiskInterface,
    /// Attached but not plugged: the guest does not see it (oVirt's `IsPlugged` false).
    pub unplugged: bool,
    /// The VM starts without it when its image cannot be opened (an event says so).
    pub optional: bool,
    pub bootable: bool,
}

/// What a running VM was defined with, so apply knows what it may hot-plug: recorded when it
/// is ordered up, kept by a migration (the domain moves as it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLimits {
    /// The memory it booted with; only memory above it (plugged DIMMs) can be unplugged.
    pub boot_memory_mib: u64,
    pub max_memory_mib: u64,
    pub max_vcpus: u32,
}

/// Memory is hot-plugged and unplugged in steps of this size (the guest's memory block).
pub const MEMORY_STEP_MIB: u64 = 128;
/// The least memory a new VM must have to get room for memory hot-plug by default.
pub const MIN_HOTPLUG_MEMORY_MIB: u64 = 256;

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
    /// What the running domain was defined with; `None`: down, or started without hot-plug.
    #[serde(default)]
    pub run_limits: Option<RunLimits>,
    /// Changes to the running VM ordered so far (each bumps it); its host makes the domain
    /// match the configuration and reports the number it reached in `hot_done`.
    #[serde(default)]
    pub hot_seq: u64,
    #[serde(default)]
    pub hot_done: u64,
    /// Why the last change to the running VM failed (it runs on as it was).
    #[serde(default)]
    pub hot_error: Option<String>,
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
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub max_vcpus: Option<u32>,
    #[serde(default)]
    pub max_memory_mib: Option<u64>,
    /// `Some(None)`: the CD is ejected at the next run.
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub cdrom: Option<Option<String>>,
    /// Stateless from the next run on (or no longer).
    #[serde(default)]
    pub stateless: Option<bool>,
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
                attachments: BTreeMap::new(),
                max_vcpus: None,
                max_memory_mib: None,
                from_template: None,
                offering: None,
                stateless: false,
                cloud_init: None,
                boot_order: Vec::new(),
            },
            runtime: VmRuntime::default(),
            ha_state: VmHa::default(),
            migration_state: VmMigration::default(),
            snapshot_state: VmSnapshots::default(),
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
        self.runtime.run_limits = None;
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
        if let Some(v) = n.os {
            what.push(format!("operating system {v}"));
            self.config.os = v;
        }
        if let Some(v) = n.max_vcpus {
            self.config.max_vcpus = Some(v);
            what.push(format!("max vCPUs {v}"));
        }
        if let Some(v) = n.max_memory_mib {
            self.config.max_memory_mib = Some(v);
            what.push(format!("max memory {v} MiB"));
        }
        // Limits never below what the VM gets.
        if let Some(m) = self.config.max_memory_mib.filter(|m| *m < self.config.memory_mib) {
            self.config.max_memory_mib = Some(self.config.memory_mib);
            what.push(format!("max memory {m} -> {} MiB", self.config.memory_mib));
        }
        if let Some(m) = self.config.max_vcpus.filter(|m| *m < self.config.vcpus) {
            self.config.max_vcpus = Some(self.config.vcpus);
            what.push(format!("max vCPUs {m} -> {}", self.config.vcpus));
        }
        if let Some(v) = n.cdrom {
            what.push(match &v {
                Some(iso) => format!("CD {iso}"),
                None => "CD ejected".to_string(),
            });
            self.config.cdrom = v;
        }
        if let Some(v) = n.stateless {
            self.config.stateless = v;
            what.push(if v { "stateless" } else { "no longer stateless" }.to_string());
        }
        Some(what.join(", "))
    }

    /// Orders the VM up on `host` as a new assignment; at cluster level 3 (`hotplug`) records
    /// the hot-plug limits its domain will be defined with.
    pub fn order_up(&mut self, host: NodeId, hotplug: bool) {
        self.runtime.order_up(host);
        // A start that loads a snapshot's memory runs the domain the snapshot was taken of.
        let resumed = self.snapshot_state.resume_from.and_then(|id| self.snapshot_state.get(id)).map(|s| s.run_limits);
        self.runtime.run_limits = match resumed {
            Some(limits) => limits,
            None => hotplug.then(|| self.limits()),
        };
        self.runtime.hot_error = None;
    }

    /// The hot-plug limits a domain defined now from this configuration has (none above what
    /// it has when the configuration sets no maximum).
    pub fn limits(&self) -> RunLimits {
        RunLimits {
            boot_memory_mib: self.config.memory_mib,
            max_memory_mib: self.config.max_memory_mib.unwrap_or(0).max(self.config.memory_mib),
            max_vcpus: self.config.max_vcpus.unwrap_or(0).max(self.config.vcpus),
        }
    }

    /// How disk `id` is attached (the default attachment when none is recorded: the first disk
    /// boots).
    pub fn attachment(&self, id: Uuid) -> Attachment {
        self.config.attachment(id)
    }

    /// Whether the VM runs somewhere (its domain exists on its host).
    pub fn is_running(&self) -> bool {
        self.runtime.host.is_some() && self.runtime.status != VmStatus::Down
    }

    /// The name of NIC `i` (`nic1`, `nic2`, ... as oVirt names them, for NICs made before
    /// names were kept).
    pub fn nic_name(&self, i: usize) -> String {
        match self.config.nics.get(i) {
            Some(n) if !n.name.is_empty() => n.name.clone(),
            _ => format!("nic{}", i + 1),
        }
    }

    /// The index of the NIC named `name`.
    pub fn nic_index(&self, name: &str) -> Option<usize> {
        (0..self.config.nics.len()).find(|&i| self.nic_name(i) == name)
    }

    /// The lowest free NIC name.
    pub fn next_nic_name(&self) -> String {
        let taken: Vec<String> = (0..self.config.nics.len()).map(|i| self.nic_name(i)).collect();
        (1..).map(|n| format!("nic{n}")).find(|n| !taken.contains(n)).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub network: String,
    pub mac: String,
    /// `nic1`, `nic2`, ...; empty for NICs made before names were kept (named by position).
    #[serde(default)]
    pub name: String,
    /// Attached but not plugged (oVirt's `IsPlugged` false).
    #[serde(default)]
    pub unplugged: bool,
}

impl Nic {
    pub fn new(network: impl Into<String>, mac: impl Into<String>) -> Nic {
        Nic { network: network.into(), mac: mac.into(), name: String::new(), unplugged: false }
    }
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
    /// A thin disk: a qcow2 overlay on this base of a template (its id), which must stay.
    #[serde(default)]
    pub base: Option<Uuid>,
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
    /// The host made the running domain match the configuration as of change `seq`, or failed
    /// to (`error`); `live` is what the domain has now either way.
    Hotplug {
        seq: u64,
        error: Option<String>,
        live: LiveDevices,
    },
}

/// What a running domain has, as its host read it after changing it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDevices {
    pub memory_mib: u64,
    pub vcpus: u32,
    /// The cluster disks plugged in it.
    pub disks: Vec<Uuid>,
    /// The MACs of the NICs plugged in it.
    pub nics: Vec<String>,
    /// The medium in its CD-ROM drive (a path inside the storage domain).
    pub cdrom: Option<String>,
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
            "attachments",
            "max_vcpus",
            "max_memory_mib",
            "from_template",
            "offering",
            "stateless",
            "cloud_init",
            "boot_order",
            "run_limits",
            "hot_seq",
            "hot_done",
            "hot_error",
            "snapshots",
            "current_snapshot",
            "preview",
            "snapshot_job",
            "snapshot_seq",
            "snapshot_error",
            "resume_from",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(codec::decode_plain::<Vm>(&bytes).unwrap(), vm);
    }
}
