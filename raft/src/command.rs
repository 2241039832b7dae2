//! Commands: the only way the replicated state changes. Each carries the proposing leader's
//! clock reading and, for client writes, a request id for de-duplication, so applying the
//! same log on any node at any time gives the same state.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ClusterError;
use crate::model::auth::{Actor, Perm, Permission, Target};
use crate::model::{
    AffinityGroup, AffinityLabel, ClusterInfo, Disk, DomainType, EngineScore, EventKind, HaPriority, Host, HostFacts,
    KernelBoot, MigrationOverrides, MigrationPolicy, Nic, Observed, Polarity, ResumeBehavior, SchedulingPolicy, Vm,
};
use crate::typ::NodeId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Wall-clock time at the leader when it proposed this command (Unix ms).
    pub at_ms: i64,
    /// Set by clients that may retry; a second command with the same id is not applied again.
    pub request_id: Option<Uuid>,
    pub op: Op,
}

/// One client write inside a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub request_id: Option<Uuid>,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Client writes the leader gathered while earlier entries were in flight: one log entry,
    /// each applied in order as if it were its own command (de-duplication included).
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
    /// A node asks to join with a token: checked here, atomically with the id assignment.
    RegisterHost {
        token_hash: String,
        name: String,
        address: String,
        facts: HostFacts,
    },
    /// The registered node is now a Raft member.
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
    /// The leader has missed the host's heartbeats for `silent_ms`.
    HostNonResponsive {
        id: NodeId,
        silent_ms: u64,
    },
    /// The host's lease has certainly ended; `how` says what fenced it. Its VMs are down,
    /// and its HA VMs wait to be restarted elsewhere.
    HostDown {
        id: NodeId,
        how: crate::HostDownCause,
    },
    /// Heartbeats arrive again from a host that was not up. `self_fenced`: it says it lost its
    /// lease meanwhile and destroyed its VMs.
    HostAlive {
        id: NodeId,
        self_fenced: bool,
    },
    /// Heartbeats arrive again from a host that lost its lease and destroyed its VMs at
    /// `fenced_ms` (its clock), which the events then show rather than the time it said so.
    HostAliveAfterFencing {
        id: NodeId,
        fenced_ms: i64,
    },
    /// Places every HA VM whose restart is due, highest priority first; the ones that find no
    /// host are tried again later with back-off.
    RestartHaVms,
    /// `disks` are images the proposing node already made in the storage domain.
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
    /// Only a down VM; its disks are deleted unless `keep_disks` (then they float).
    DeleteVm {
        vm: String,
        keep_disks: bool,
    },
    /// Only a down VM; `disks` are the copies the proposing node made, in the source's order.
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
    /// Graceful (ACPI) shutdown; power off once `timeout_s` has passed.
    ShutdownVm {
        vm: String,
        reason: Option<String>,
        timeout_s: u64,
    },
    /// Power off at once.
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
    /// An operator's migration; without `to`, placement picks the destination.
    MigrateVm {
        vm: String,
        to: Option<String>,
    },
    /// Stops a queued or running migration; the VM keeps running on its source.
    CancelMigration {
        vm: String,
    },
    /// Moves every VM off the host, highest priority first, and keeps it out of placement.
    HostMaintenance {
        host: String,
        reason: Option<String>,
    },
    /// Tries again to move what still keeps a host from maintenance (capacity may be back).
    EvacuateHost {
        id: NodeId,
    },
    ActivateHost {
        host: String,
    },
    SetMigrationDefaults {
        changes: MigrationSettingsChange,
    },
    /// A host agent's report on one VM assigned to it. Ignored unless it comes from the
    /// VM's current host and assignment epoch.
    ReportVm {
        vm: Uuid,
        host: NodeId,
        epoch: u64,
        observed: Observed,
    },
    /// An event a host agent saw that concerns no assignment it holds (a cluster VM found
    /// running on the wrong host, for example).
    RecordEvent {
        kind: EventKind,
        message: String,
    },
    /// Disk records whose files are gone (a failed create cleaned up) or to be forgotten.
    DeleteDisks {
        ids: Vec<Uuid>,
    },
    /// VMs by name or id. Refused if an enforcing group would be broken at once by VMs that run.
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
    /// VMs by name or id, hosts by name.
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
    /// `tags` replaces the host's tags when given.
    EditHost {
        host: String,
        tags: Option<Vec<String>>,
    },
    /// Cluster-wide scheduling settings; `None` leaves a setting as it is.
    SetSchedulingPolicy {
        policy: Option<SchedulingPolicy>,
        cpu_overcommit: Option<u32>,
    },
    /// A VM read from an OVF document (its configuration only). `disks` are its disk records
    /// in guest order: one that exists already must be floating and is attached, the others
    /// (copies the proposing node made, or images it found in the storage domain) are added.
    /// `engine`: it becomes the cluster's hosted engine (delete-protected, HA first).
    ImportVm {
        vm: Box<Vm>,
        disks: Vec<Disk>,
        engine: bool,
        start: Option<StartOrder>,
    },
    /// Hosted-engine maintenance: `global` stops HA from acting on the engine VM; `local`
    /// makes one host (by name) ineligible to run it.
    SetEngineMaintenance {
        global: Option<bool>,
        local: Option<(String, bool)>,
    },
    /// A host's engine score, reported when it changes.
    ReportEngineScore {
        host: NodeId,
        score: EngineScore,
    },
    /// A host reports that it runs a VM the state has on no live host (the engine VM an
    /// operator started there by hand while the cluster had no quorum). It is taken as the
    /// VM's host if the VM is down, or its host is down; otherwise the host must destroy its
    /// copy.
    AdoptVm {
        vm: Uuid,
        host: NodeId,
    },
    /// `cluster upgrade`: every member was seen to support `level`. Never lowers it.
    SetClusterLevel {
        level: u8,
    },
    /// The cluster CA's certificate, made at bootstrap or when the level that requires TLS is
    /// prepared. Set once.
    SetCa {
        ca_pem: String,
    },
    /// `cluster token revoke ID`.
    RevokeToken {
        id: String,
    },
    /// A floating disk (cluster level 3): its image the proposing node made already.
    CreateDisk {
        disk: Disk,
    },
    /// Grows a disk (by name or id); a running VM's host grows it live, else the proposing node
    /// grew the image already.
    ResizeDisk {
        disk: String,
        size_mib: u64,
    },
    /// Deletes a floating disk (its image is the proposing node's to remove).
    DeleteDisk {
        disk: String,
    },
    /// Attaches a disk to a VM: `new`, made by the proposing node, or the floating disk named
    /// `disk`. It is plugged unless the attachment says otherwise (hot-plugged into a running VM).
    AttachDisk {
        vm: String,
        disk: String,
        new: Option<Disk>,
        attachment: crate::model::Attachment,
    },
    /// The disk floats again (only unplugged, or the VM down).
    DetachDisk {
        vm: String,
        disk: String,
    },
    /// Plugs or unplugs an attached disk (hot, when the VM runs).
    PlugDisk {
        vm: String,
        disk: String,
        plugged: bool,
    },
    /// Adds a NIC (plugged; hot when the VM runs); its name is given by apply when empty.
    AddNic {
        vm: String,
        nic: Nic,
    },
    /// Removes a NIC (only unplugged, or the VM down).
    RemoveNic {
        vm: String,
        nic: String,
    },
    PlugNic {
        vm: String,
        nic: String,
        plugged: bool,
    },
    /// Takes snapshot `id` of a VM (cluster level 4): `disks` by name or id (`None`: all of
    /// them), `memory` only while it runs. A host works on the images: the VM's host, or
    /// `worker` (the proposing node) for a VM that is down.
    CreateSnapshot {
        vm: String,
        id: Uuid,
        description: String,
        memory: bool,
        disks: Option<Vec<String>>,
        worker: NodeId,
    },
    /// The VM (down) runs from a snapshot until commit or undo: `memory` (its next start
    /// resumes the guest), `disks` (by name or id; `None`: all the snapshot holds), `config`.
    PreviewSnapshot {
        vm: String,
        snapshot: String,
        memory: bool,
        disks: Option<Vec<String>>,
        config: bool,
        worker: NodeId,
    },
    /// Keeps the preview: snapshots taken after the previewed one are erased.
    CommitSnapshot {
        vm: String,
        worker: NodeId,
    },
    /// Ends the preview: the VM is as it was before it.
    UndoSnapshot {
        vm: String,
        worker: NodeId,
    },
    /// Preview and commit in one (CloudStack's revert); other snapshots stay. A snapshot with
    /// memory starts the VM from it.
    RestoreSnapshot {
        vm: String,
        snapshot: String,
        worker: NodeId,
    },
    /// Deletes a snapshot, also while the VM runs.
    DeleteSnapshot {
        vm: String,
        snapshot: String,
        worker: NodeId,
    },
    /// A host's report on a VM's snapshot job `seq`: done, or failed with `error`.
    /// `domain_xml` and `memory_mib`: the definition and saved memory of a memory snapshot.
    SnapshotJobDone {
        vm: Uuid,
        seq: u64,
        error: Option<String>,
        domain_xml: Option<String>,
        memory_mib: u64,
    },
    /// A new VM from a snapshot: its configuration, and `disks`, copies the proposing node made
    /// of the snapshot's disks (in the snapshot's order, those that still exist).
    CloneFromSnapshot {
        source: String,
        snapshot: String,
        id: Uuid,
        name: String,
        disks: Vec<Disk>,
        macs: Vec<String>,
    },
    /// `cluster edit --max-snapshots` (0: no cap).
    SetSnapshotCap {
        max: u32,
    },
    /// An ISO the proposing node received into the storage domain (cluster level 5, as the
    /// library commands below).
    AddIso {
        iso: crate::model::Iso,
    },
    /// Refused while a VM has it in its CD-ROM drive; answers with its file to remove.
    DeleteIso {
        iso: String,
    },
    /// A template of down VM `vm`, whose disks the proposing node copied into `template.disks`.
    CreateTemplate {
        vm: String,
        template: crate::model::Template,
    },
    /// Refused while a thin disk builds on it; answers with its bases' files to remove.
    DeleteTemplate {
        template: String,
    },
    CreateOffering {
        offering: crate::model::Offering,
    },
    EditOffering {
        offering: String,
        changes: crate::model::OfferingChanges,
    },
    /// VMs of it keep their size; their offering is cleared.
    DeleteOffering {
        offering: String,
    },
    /// A client's write made for a user or the host's root (cluster level 2): applied only if
    /// every one of `needs` holds for them now (checked here, so a permission removed by an
    /// earlier entry is respected whichever node took the request), and the events it records
    /// name them. A VM it makes gives its creator UserVmManager on it.
    /// `credential`: the SHA-256 of the session or API token that proved the actor, which must
    /// still be valid when this applies (a revocation is seen by every later write).
    OnBehalf {
        actor: Actor,
        credential: Option<String>,
        needs: Vec<(Perm, Target)>,
        op: Box<Op>,
    },
    /// `password_hash`: Argon2id, made by the node that took the request.
    CreateUser {
        name: String,
        password_hash: Option<String>,
    },
    /// Its permissions, sessions, API tokens and group memberships go with it.
    DeleteUser {
        name: String,
    },
    /// Ends the user's sessions (not its API tokens).
    SetPassword {
        name: String,
        password_hash: Option<String>,
    },
    CreateGroup {
        name: String,
        users: Vec<String>,
    },
    /// `users` replaces the members when given; then `add` and `remove` apply.
    EditGroup {
        name: String,
        users: Option<Vec<String>>,
        add: Vec<String>,
        remove: Vec<String>,
    },
    DeleteGroup {
        name: String,
    },
    CreateRole {
        name: String,
        permissions: Vec<Perm>,
    },
    EditRole {
        name: String,
        permissions: Vec<Perm>,
    },
    /// Refused while a permission uses the role.
    DeleteRole {
        name: String,
    },
    AddPermission {
        permission: Permission,
    },
    RemovePermission {
        permission: Permission,
    },
    /// A login: `hash` is the SHA-256 of the session's secret, which only the client holds.
    StartSession {
        hash: String,
        user: String,
        expires_ms: i64,
        source: String,
    },
    /// `logout`, or a session revoked.
    EndSession {
        hash: String,
    },
    CreateApiToken {
        hash: String,
        user: String,
        name: String,
        expires_ms: i64,
    },
    RevokeApiToken {
        user: String,
        name: String,
    },
    /// Wrong passwords for a user from one source, `failures` in a row (recorded, not all).
    LoginFailed {
        user: String,
        source: String,
        failures: u32,
    },
}

/// Where to start a VM: a named host, or wherever the leader finds room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub description: String,
    pub comment: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub ha_enabled: bool,
    pub ha_priority: HaPriority,
    #[serde(default)]
    pub resume_behavior: ResumeBehavior,
    pub nics: Vec<Nic>,
    pub domain_type: Option<DomainType>,
    pub boot: Option<KernelBoot>,
    /// Hot-plug limits (cluster level 3); unset: 4x the memory, and the largest host's CPUs.
    #[serde(default)]
    pub max_vcpus: Option<u32>,
    #[serde(default)]
    pub max_memory_mib: Option<u64>,
    /// Cluster level 5: the template whose configuration it gets (its `disks` are overlays on
    /// the bases, or copies of them, in the bases' order).
    #[serde(default)]
    pub template: Option<crate::model::FromTemplate>,
    /// The offering whose size (and HA) it gets, over `memory_mib`, `vcpus` and `ha_enabled`.
    #[serde(default)]
    pub offering: Option<String>,
    /// An ISO (a path in the storage domain) in its CD-ROM drive.
    #[serde(default)]
    pub cdrom: Option<String>,
    #[serde(default)]
    pub boot_order: Vec<crate::model::BootDevice>,
    #[serde(default)]
    pub cloud_init: Option<crate::model::CloudInit>,
    #[serde(default)]
    pub stateless: bool,
    /// The guest OS; `None`: the template's, or the default.
    #[serde(default)]
    pub os: Option<String>,
}

impl VmSpec {
    /// Whether it uses anything of cluster level 5.
    pub fn uses_library(&self) -> bool {
        self.template.is_some()
            || self.offering.is_some()
            || self.cdrom.is_some()
            || !self.boot_order.is_empty()
            || self.cloud_init.is_some()
            || self.stateless
            || self.os.is_some()
    }
}

/// Changes to the cluster's migration settings; `None` leaves a field as it is, and
/// `Some(None)` clears an optional limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSettingsChange {
    pub auto_converge: Option<bool>,
    pub compression: Option<bool>,
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub max_downtime_ms: Option<Option<u64>>,
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub bandwidth_mibps: Option<Option<u64>>,
    pub max_per_host: Option<u32>,
}

/// Fields that `vm edit` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Replaces the tags a host must have; empty clears them.
    pub host_tags: Option<Vec<String>>,
    /// Host names; empty unpins the VM.
    pub pinned_hosts: Option<Vec<String>>,
    pub migration: Option<MigrationPolicy>,
    /// Lifting it is refused for the hosted engine.
    pub delete_protected: Option<bool>,
    pub os: Option<String>,
    /// Hot-plug fields wait for the next run even when the VM could take them now (cluster
    /// level 3; before it, memory and vCPUs of a running VM always wait).
    #[serde(default)]
    pub next_run: bool,
    #[serde(default)]
    pub max_vcpus: Option<u32>,
    #[serde(default)]
    pub max_memory_mib: Option<u64>,
    /// `vm cd`: an ISO in the storage domain, or `Some(None)` to eject.
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub cdrom: Option<Option<String>>,
    /// Cluster level 5: takes the offering's size and HA (by the hot-plug rules).
    #[serde(default)]
    pub offering: Option<String>,
    /// Cluster level 5: stateless from its next run (at once when down).
    #[serde(default)]
    pub stateless: Option<bool>,
    /// Cluster level 5: the boot order.
    #[serde(default)]
    pub boot_order: Option<Vec<crate::model::BootDevice>>,
}

/// Changes to a VM's migration overrides: `None` leaves a field, `Some(None)` makes it follow
/// the cluster's setting again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationOverridesChange {
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub auto_converge: Option<Option<bool>>,
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub compression: Option<Option<bool>>,
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub max_downtime_ms: Option<Option<u64>>,
    #[serde(default, with = "corral_storage::codec::double_option")]
    pub bandwidth_mibps: Option<Option<u64>>,
}

impl MigrationOverridesChange {
    pub fn apply_to(&self, o: &MigrationOverrides) -> MigrationOverrides {
        MigrationOverrides {
            auto_converge: self.auto_converge.unwrap_or(o.auto_converge),
            compression: self.compression.unwrap_or(o.compression),
            max_downtime_ms: self.max_downtime_ms.unwrap_or(o.max_downtime_ms),
            bandwidth_mibps: self.bandwidth_mibps.unwrap_or(o.bandwidth_mibps),
        }
    }
}

impl Op {
    /// The VM whose configuration (and so its OVF document) an operation edits or removes,
    /// by name or id. Lifecycle operations change only runtime state; where one changes the
    /// configuration on the side (a next-run configuration taking effect), apply marks it.
    pub fn config_named(&self) -> Option<&str> {
        match self {
            Op::EditVm { vm, .. }
            | Op::DeleteVm { vm, .. }
            | Op::AttachDisk { vm, .. }
            | Op::DetachDisk { vm, .. }
            | Op::PlugDisk { vm, .. }
            | Op::AddNic { vm, .. }
            | Op::RemoveNic { vm, .. }
            | Op::PlugNic { vm, .. }
            | Op::CreateSnapshot { vm, .. }
            | Op::PreviewSnapshot { vm, .. }
            | Op::CommitSnapshot { vm, .. }
            | Op::UndoSnapshot { vm, .. }
            | Op::RestoreSnapshot { vm, .. }
            | Op::DeleteSnapshot { vm, .. } => Some(vm),
            Op::OnBehalf { op, .. } => op.config_named(),
            _ => None,
        }
    }

    /// The VM an operation acts on, by the name or id the client gave: the one whose
    /// configuration it changes, or the one it powers, moves or copies.
    pub fn vm_named(&self) -> Option<&str> {
        match self {
            Op::StartVm { vm, .. }
            | Op::ShutdownVm { vm, .. }
            | Op::StopVm { vm, .. }
            | Op::RebootVm { vm }
            | Op::SuspendVm { vm }
            | Op::ResumeVm { vm }
            | Op::MigrateVm { vm, .. }
            | Op::CancelMigration { vm } => Some(vm),
            Op::CloneVm { source, .. } | Op::CloneFromSnapshot { source, .. } => Some(source),
            Op::CreateTemplate { vm, .. } => Some(vm),
            // A write for a user names the VM of the op inside it (checked there).
            Op::OnBehalf { .. } => None,
            _ => self.config_named(),
        }
    }

    /// The VM an answer with a VM shows, by the name or id the client gave: the name of the
    /// one the op makes (a retry may carry a new id), else the one it names (inside a write for
    /// a user too).
    pub fn vm_answered(&self) -> Option<&str> {
        match self {
            Op::CreateVm { spec, .. } => Some(&spec.name),
            Op::CloneVm { name, .. } | Op::CloneFromSnapshot { name, .. } => Some(name),
            Op::ImportVm { vm, .. } => Some(&vm.config.name),
            Op::OnBehalf { op, .. } => op.vm_answered(),
            _ => self.vm_named(),
        }
    }

    /// Whether it is one of the library commands (cluster level 5).
    pub fn is_library_op(&self) -> bool {
        matches!(
            self,
            Op::AddIso { .. }
                | Op::DeleteIso { .. }
                | Op::CreateTemplate { .. }
                | Op::DeleteTemplate { .. }
                | Op::CreateOffering { .. }
                | Op::EditOffering { .. }
                | Op::DeleteOffering { .. }
        )
    }

    /// Whether it is one of the snapshot commands (which check a VM's snapshot lock themselves).
    pub fn is_snapshot_op(&self) -> bool {
        matches!(
            self,
            Op::CreateSnapshot { .. }
                | Op::PreviewSnapshot { .. }
                | Op::CommitSnapshot { .. }
                | Op::UndoSnapshot { .. }
                | Op::RestoreSnapshot { .. }
                | Op::DeleteSnapshot { .. }
                | Op::SnapshotJobDone { .. }
                | Op::CloneFromSnapshot { .. }
        )
    }

    /// The VM an operation makes, by id.
    pub fn vm_made(&self) -> Option<Uuid> {
        match self {
            Op::CreateVm { id, .. } | Op::CloneVm { id, .. } | Op::CloneFromSnapshot { id, .. } => Some(*id),
            Op::ImportVm { vm, .. } => Some(vm.id),
            Op::OnBehalf { op, .. } => op.vm_made(),
            _ => None,
        }
    }
}

impl VmChanges {
    pub fn is_empty(&self) -> bool {
        *self == VmChanges::default()
    }
}

/// What applying a command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Entries that carry no command (blank, membership) and commands with nothing to return.
    #[default]
    Done,
    HostRegistered {
        id: NodeId,
        cluster_name: String,
    },
    /// The VM as it is after the command (create, edit).
    Vm(Box<crate::model::Vm>),
    /// One reply per proposal of a batch, in order.
    Batch(Vec<Reply>),
    /// The id of a VM that no longer exists (delete), and the disk files it took along.
    VmDeleted {
        id: Uuid,
        files: Vec<String>,
    },
    /// The group as it is after the command (create, edit).
    AffinityGroup(Box<AffinityGroup>),
    AffinityLabel(Box<AffinityLabel>),
    Host(Box<Host>),
    /// The cluster's settings after a change.
    Cluster(Box<ClusterInfo>),
    /// The disk as it is after the command (disk create, resize, delete).
    Disk(Box<Disk>),
    Iso(Box<crate::model::Iso>),
    Template(Box<crate::model::Template>),
    Offering(Box<crate::model::Offering>),
    /// Files of the storage domain that a deleted library item leaves to remove.
    Removed {
        files: Vec<String>,
    },
}

/// The state machine's answer to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Result<Outcome, ClusterError>);

impl Default for Reply {
    fn default() -> Self {
        Reply(Ok(Outcome::Done))
    }
}
