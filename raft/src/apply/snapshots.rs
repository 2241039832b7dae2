//! Snapshots (cluster level 4): taken, previewed, committed, undone, restored, deleted and
//! cloned from. Each command records what it means at once (a snapshot being taken is `locked`,
//! and so is its VM) and gives a host the work on the images (`SnapshotJob`); the host's report
//! (`SnapshotJobDone`) makes the state final, or puts it back as it was when the work failed.
//! Previews, commits, undos and restores need the VM down; taking and deleting work while it
//! runs (the VM's host does those live).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OpResult;
use crate::command::{Outcome, StartOrder};
use crate::error::{quote, ClusterError};
use crate::model::{
    Attachment, ClusterState, Disk, EventKind, HostState, Preview, Snapshot, SnapshotJob, SnapshotJobKind,
    SnapshotStatus, SnapshotStep, Vm, VmConfig, VmStatus, SNAPSHOT_LEVEL,
};
use crate::typ::NodeId;
use crate::validate;

/// The most snapshots one VM keeps, whatever the cap says: each is a full configuration in the
/// replicated state and a document inside the VM's OVF document, which must stay under the
/// reader's 1 MiB (a VM with many devices and kept oVirt fragments: 11.5 KB a snapshot).
pub const MAX_SNAPSHOTS_PER_VM: usize = 64;

/// What a snapshot command asks for, once its names are resolved against the state.
struct Target {
    vm: Vm,
    /// The node that works on the images: the VM's host while it runs, else the proposer.
    host: NodeId,
}

impl ClusterState {
    pub(super) fn snapshot_level(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.level >= SNAPSHOT_LEVEL)
    }

    fn require_snapshots(&self) -> Result<(), ClusterError> {
        self.require_cluster()?;
        if !self.snapshot_level() {
            return Err(ClusterError::FailedPrecondition(format!(
                "snapshots need cluster level {SNAPSHOT_LEVEL}: run `corral cluster upgrade` first"
            )));
        }
        Ok(())
    }

    /// A VM that no snapshot work holds, and the host that will work on its images.
    fn snapshot_target(&self, name: &str, worker: NodeId) -> Result<Target, ClusterError> {
        self.require_snapshots()?;
        let vm = self.find_vm(name).ok_or_else(|| ClusterError::vm_not_found(name))?.clone();
        if let Some(job) = &vm.snapshot_state.snapshot_job {
            return Err(locked(&vm, job));
        }
        if vm.config.stateless || vm.config.next_run.as_ref().is_some_and(|n| n.stateless == Some(true)) {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{}' is stateless: its disks go back to how they were at each start, so it has no snapshots \
                 (`corral vm edit {} --stateless false` first)",
                vm.config.name, vm.config.name
            )));
        }
        let host = if vm.is_running() { vm.runtime.host.unwrap_or(worker) } else { worker };
        let state = self.hosts.get(&host).map(|h| h.state);
        if state == Some(HostState::Maintenance) {
            // Not a moment's trouble: asking again changes nothing until the host is activated.
            return Err(ClusterError::FailedPrecondition(format!(
                "host {} is in maintenance and works on no VM's images (vm '{}'): ask through another host, or \
                 `corral host activate {}` first",
                self.host_name(host),
                vm.config.name,
                self.host_name(host)
            )));
        }
        if !matches!(state, Some(HostState::Up | HostState::PreparingForMaintenance)) {
            return Err(ClusterError::Unavailable(format!(
                "host {} cannot work on the images of vm '{}' now; try again",
                self.host_name(host),
                vm.config.name
            )));
        }
        Ok(Target { vm, host })
    }

    fn snapshot_of<'a>(&self, vm: &'a Vm, name: &str) -> Result<&'a Snapshot, ClusterError> {
        find_snapshot(vm, name)
    }

    /// Starts `job` on `vm` (recorded with the next sequence number).
    fn start_job(&mut self, now: i64, vm: Uuid, host: NodeId, kind: SnapshotJobKind, steps: Vec<SnapshotStep>) {
        if let Some(v) = self.vms.get_mut(&vm) {
            v.snapshot_state.snapshot_seq += 1;
            v.snapshot_state.snapshot_error = None;
            v.snapshot_state.snapshot_job =
                Some(SnapshotJob { seq: v.snapshot_state.snapshot_seq, host, started_ms: now, kind, steps });
        }
    }

    fn vm_outcome(&self, id: Uuid) -> OpResult {
        self.vms
            .get(&id)
            .map(|v| Outcome::Vm(Box::new(v.clone())))
            .ok_or_else(|| ClusterError::Internal(format!("vm {id} vanished while it was changed")))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_snapshot(
        &mut self,
        now: i64,
        name: &str,
        id: Uuid,
        description: &str,
        memory: bool,
        disks: Option<&[String]>,
        worker: NodeId,
    ) -> OpResult {
        let Target { vm, host } = self.snapshot_target(name, worker)?;
        validate::text("description", description)?;
        let vname = vm.config.name.clone();
        if vm.snapshot_state.preview.is_some() {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}' is in preview of a snapshot: commit or undo it first (`corral vm snapshot commit|undo {vname}`)"
            )));
        }
        if vm.snapshot_state.get(id).is_some() {
            return Err(ClusterError::AlreadyExists(format!("snapshot {id} of vm '{vname}' already exists")));
        }
        let running = vm.is_running();
        if running && vm.runtime.status != VmStatus::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}' is {}; a snapshot is taken of a VM that is up or down",
                vm.runtime.status.as_str()
            )));
        }
        if memory && !running {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}' is down: --memory saves a running guest's memory; take the snapshot without it"
            )));
        }
        let chosen = match disks {
            None => vm.config.disks.clone(),
            Some(names) => self.disks_of_vm(&vm, names)?,
        };
        for d in &chosen {
            let disk = self.disks.get(d).ok_or_else(|| ClusterError::Internal(format!("disk {d} has no record")))?;
            if disk.format != "qcow2" {
                return Err(ClusterError::FailedPrecondition(format!(
                    "disk '{}' of vm '{vname}' is {}: snapshots need qcow2 images (leave it out with --disks)",
                    disk.name, disk.format
                )));
            }
        }
        // Memory goes with every disk the guest has open (loading it over disks that stayed as
        // they are would break the guest's file systems), and only those: it is saved into the
        // first of them.
        let plugged: Vec<Uuid> = vm.config.disks.iter().copied().filter(|d| !vm.attachment(*d).unplugged).collect();
        if memory {
            if let Some(left) = plugged.iter().find(|d| !chosen.contains(d)) {
                return Err(ClusterError::FailedPrecondition(format!(
                    "vm '{vname}': a snapshot with memory holds every disk the guest has plugged; disk '{}' is left \
                     out (leave out --disks, or take it without --memory)",
                    self.disks.get(left).map_or_else(|| left.to_string(), |d| d.name.clone())
                )));
            }
        }
        let chosen = if memory { plugged.clone() } else { chosen };
        if memory && plugged.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}': a snapshot with memory needs at least one of its plugged qcow2 disks (the memory is \
                 saved in it)"
            )));
        }
        if vm.snapshot_state.snapshots.len() >= MAX_SNAPSHOTS_PER_VM {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}' has {MAX_SNAPSHOTS_PER_VM} snapshots, the most a VM keeps; delete one first"
            )));
        }
        // The cap: the oldest that nothing holds go (never one in preview or being worked on).
        let cap = self.cluster.as_ref().map_or(0, |c| c.max_snapshots) as usize;
        let mut dropped = Vec::new();
        if cap > 0 {
            let over = (vm.snapshot_state.snapshots.len() + 1).saturating_sub(cap);
            dropped = vm
                .snapshot_state
                .snapshots
                .iter()
                .filter(|s| s.status == SnapshotStatus::Ok)
                .take(over)
                .map(|s| s.id)
                .collect();
        }
        let mut steps = vec![SnapshotStep::Take { tag: id.to_string(), disks: chosen.clone(), memory }];
        for old in &dropped {
            if let Some(s) = vm.snapshot_state.get(*old) {
                steps.push(SnapshotStep::Drop { tag: s.tag(), disks: present(&vm, &s.disks) });
            }
        }
        let snapshot = Snapshot {
            id,
            parent: vm.snapshot_state.current_snapshot,
            description: description.to_string(),
            created_ms: now,
            memory,
            disks: chosen,
            status: SnapshotStatus::Locked,
            config: Box::new(vm.config.clone()),
            domain_xml: None,
            run_limits: if memory { vm.runtime.run_limits } else { None },
            memory_mib: 0,
        };
        let v = self.vm_mut(name)?;
        v.snapshot_state.snapshots.push(snapshot);
        for old in &dropped {
            if let Some(s) = v.snapshot_state.get_mut(*old) {
                s.status = SnapshotStatus::Locked;
            }
        }
        self.start_job(now, vm.id, host, SnapshotJobKind::Create { snapshot: id, dropped }, steps);
        let what = if memory { "with memory" } else { "of its disks" };
        let on = self.host_name(host);
        self.record(
            now,
            EventKind::VmSnapshot,
            format!("Snapshot {id} of VM {vname} ({what}) is being taken on host {on}."),
        );
        self.vm_outcome(vm.id)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn preview_snapshot(
        &mut self,
        now: i64,
        name: &str,
        snapshot: &str,
        memory: bool,
        disks: Option<&[String]>,
        config: bool,
        worker: NodeId,
    ) -> OpResult {
        let Target { vm, host } = self.snapshot_target(name, worker)?;
        let vname = vm.config.name.clone();
        require_down(&vm, "previewed")?;
        if let Some(p) = &vm.snapshot_state.preview {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}' is in preview of snapshot {} already: commit or undo it first",
                p.snapshot
            )));
        }
        let snap = usable(self.snapshot_of(&vm, snapshot)?, &vname)?.clone();
        if memory && !snap.memory {
            return Err(ClusterError::FailedPrecondition(format!(
                "snapshot {} of vm '{vname}' holds no memory (it was taken without --memory)",
                snap.id
            )));
        }
        // Memory comes with the disks and configuration it was saved with.
        let (config, chosen) = if memory {
            if disks.is_some() {
                return Err(ClusterError::invalid(
                    "disks",
                    "a preview with --memory brings back every disk of the snapshot (leave out --disks)",
                ));
            }
            (true, present(&vm, &snap.disks))
        } else {
            let chosen = match disks {
                None => present(&vm, &snap.disks),
                Some(names) => {
                    let ids = self.disks_of_vm(&vm, names)?;
                    if let Some(d) = ids.iter().find(|d| !snap.disks.contains(d)) {
                        return Err(ClusterError::FailedPrecondition(format!(
                            "snapshot {} of vm '{vname}' does not hold disk '{}'",
                            snap.id,
                            self.disks.get(d).map_or_else(|| d.to_string(), |d| d.name.clone())
                        )));
                    }
                    ids
                }
            };
            (config, chosen)
        };
        if memory && chosen.len() != snap.disks.len() {
            return Err(ClusterError::FailedPrecondition(format!(
                "snapshot {} of vm '{vname}' holds memory and disks the VM no longer has: its memory cannot be \
                 loaded without them (preview without --memory)",
                snap.id
            )));
        }
        let undo_disks: Vec<Uuid> = vm
            .config
            .disks
            .iter()
            .copied()
            .filter(|d| self.disks.get(d).is_some_and(|d| d.format == "qcow2"))
            .collect();
        let undo_tag = crate::model::undo_tag(vm.snapshot_state.snapshot_seq + 1);
        let preview = Preview {
            snapshot: snap.id,
            memory,
            disks: chosen.clone(),
            config,
            saved_config: config.then(|| Box::new(vm.config.clone())),
            undo_disks: undo_disks.clone(),
            undo_tag: undo_tag.clone(),
        };
        let mut steps = vec![SnapshotStep::Take { tag: undo_tag, disks: undo_disks, memory: false }];
        // With memory the start loads the snapshot, disks included.
        if !memory && !chosen.is_empty() {
            steps.push(SnapshotStep::Revert { tag: snap.tag(), disks: chosen });
        }
        self.start_job(now, vm.id, host, SnapshotJobKind::Preview(preview), steps);
        self.record(
            now,
            EventKind::VmSnapshot,
            format!("VM {vname} is being brought to snapshot {} for a preview.", snap.id),
        );
        self.vm_outcome(vm.id)
    }

    pub(super) fn commit_snapshot(&mut self, now: i64, name: &str, worker: NodeId) -> OpResult {
        let Target { vm, host } = self.snapshot_target(name, worker)?;
        require_down(&vm, "committed")?;
        let p = in_preview(&vm)?.clone();
        let mut steps = Vec::new();
        for later in vm.snapshot_state.descendants(p.snapshot) {
            if let Some(s) = vm.snapshot_state.get(later) {
                steps.push(SnapshotStep::Drop { tag: s.tag(), disks: present(&vm, &s.disks) });
            }
        }
        // The undo point last: a commit that fails half-way can still be undone. (Disks deleted
        // meanwhile took it along.)
        steps.push(SnapshotStep::Drop { tag: p.undo_tag.clone(), disks: present(&vm, &p.undo_disks) });
        self.start_job(now, vm.id, host, SnapshotJobKind::Commit, steps);
        self.vm_outcome(vm.id)
    }

    pub(super) fn undo_snapshot(&mut self, now: i64, name: &str, worker: NodeId) -> OpResult {
        let Target { vm, host } = self.snapshot_target(name, worker)?;
        require_down(&vm, "undone")?;
        let p = in_preview(&vm)?.clone();
        let undo = present(&vm, &p.undo_disks);
        let steps = vec![
            SnapshotStep::Revert { tag: p.undo_tag.clone(), disks: undo.clone() },
            SnapshotStep::Drop { tag: p.undo_tag.clone(), disks: undo },
        ];
        self.start_job(now, vm.id, host, SnapshotJobKind::Undo, steps);
        self.vm_outcome(vm.id)
    }

    pub(super) fn restore_snapshot(
        &mut self,
        now: i64,
        name: &str,
        snapshot: &str,
        worker: NodeId,
        touched: &mut BTreeSet<Uuid>,
    ) -> OpResult {
        let Target { vm, host } = self.snapshot_target(name, worker)?;
        let vname = vm.config.name.clone();
        require_down(&vm, "restored")?;
        if vm.snapshot_state.preview.is_some() {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}' is in preview of a snapshot: commit or undo it first"
            )));
        }
        let snap = usable(self.snapshot_of(&vm, snapshot)?, &vname)?.clone();
        if snap.memory {
            if present(&vm, &snap.disks).len() != snap.disks.len() {
                return Err(ClusterError::FailedPrecondition(format!(
                    "snapshot {} of vm '{vname}' holds memory and disks the VM no longer has: its memory cannot be \
                     loaded without them",
                    snap.id
                )));
            }
            if snap.domain_xml.is_none() {
                return Err(ClusterError::FailedPrecondition(format!(
                    "snapshot {} of vm '{vname}' has no domain definition to load its memory into (an imported \
                     one): restore it by preview --config --disks, without its memory",
                    snap.id
                )));
            }
            // Placed first, on a copy: a VM that no host can take is refused with nothing changed.
            let mut restored = vm.clone();
            let (config, _) = snapshot_config(&vm.config, &snap, &self.disks, vm.id);
            restored.config = config;
            restored.snapshot_state.resume_from = Some(snap.id);
            self.start_placement(&restored, &StartOrder::default())?;
            // The start loads the snapshot (memory and disks): no work on the images first.
            let floated = self.take_config(vm.id, &snap, now);
            touched.insert(vm.id);
            let v = self.vms.get_mut(&vm.id).ok_or_else(|| ClusterError::vm_not_found(name))?;
            v.snapshot_state.current_snapshot = Some(snap.id);
            v.snapshot_state.resume_from = Some(snap.id);
            self.record(
                now,
                EventKind::VmSnapshot,
                format!("VM {vname} was restored to snapshot {} and resumes from its memory.{floated}", snap.id),
            );
            return self.start_vm(now, &vm.id.to_string(), &StartOrder::default());
        }
        let steps = vec![SnapshotStep::Revert { tag: snap.tag(), disks: present(&vm, &snap.disks) }];
        self.start_job(now, vm.id, host, SnapshotJobKind::Restore { snapshot: snap.id }, steps);
        self.vm_outcome(vm.id)
    }

    pub(super) fn delete_snapshot(&mut self, now: i64, name: &str, snapshot: &str, worker: NodeId) -> OpResult {
        let Target { vm, host } = self.snapshot_target(name, worker)?;
        let vname = vm.config.name.clone();
        let snap = self.snapshot_of(&vm, snapshot)?.clone();
        if snap.status != SnapshotStatus::Ok {
            return Err(ClusterError::FailedPrecondition(format!(
                "snapshot {} of vm '{vname}' is {}{}",
                snap.id,
                snap.status.as_str(),
                if snap.status == SnapshotStatus::InPreview { ": commit or undo the preview first" } else { "" }
            )));
        }
        if vm.is_running() && vm.runtime.status != VmStatus::Up {
            return Err(ClusterError::FailedPrecondition(format!(
                "vm '{vname}' is {}; a snapshot is deleted while the VM is up or down",
                vm.runtime.status.as_str()
            )));
        }
        let steps = vec![SnapshotStep::Drop { tag: snap.tag(), disks: present(&vm, &snap.disks) }];
        if let Some(s) = self.vm_mut(name)?.snapshot_state.get_mut(snap.id) {
            s.status = SnapshotStatus::Locked;
        }
        self.start_job(now, vm.id, host, SnapshotJobKind::Delete { snapshot: snap.id }, steps);
        self.record(now, EventKind::VmSnapshot, format!("Snapshot {} of VM {vname} is being deleted.", snap.id));
        self.vm_outcome(vm.id)
    }

    /// A host's report on snapshot job `seq` of `vm`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn snapshot_job_done(
        &mut self,
        now: i64,
        vm: Uuid,
        seq: u64,
        error: Option<&str>,
        domain_xml: Option<&str>,
        memory_mib: u64,
        touched: &mut BTreeSet<Uuid>,
    ) -> OpResult {
        let Some(v) = self.vms.get_mut(&vm) else { return Ok(Outcome::Done) };
        let Some(job) = v.snapshot_state.snapshot_job.take_if(|j| j.seq == seq) else { return Ok(Outcome::Done) };
        let vname = v.config.name.clone();
        touched.insert(vm);
        let msg = match error {
            Some(error) => failed(v, &job.kind, error),
            None => self.job_succeeded(now, vm, job.kind, domain_xml, memory_mib)?,
        };
        let _ = vname;
        self.record(now, EventKind::VmSnapshot, msg);
        Ok(Outcome::Done)
    }

    /// Makes the state what a job that succeeded means; returns the event's message.
    fn job_succeeded(
        &mut self,
        now: i64,
        vm: Uuid,
        kind: SnapshotJobKind,
        domain_xml: Option<&str>,
        memory_mib: u64,
    ) -> Result<String, ClusterError> {
        let cap = self.cluster.as_ref().map_or(0, |c| c.max_snapshots);
        let v = self.vms.get_mut(&vm).ok_or_else(|| ClusterError::Internal(format!("vm {vm} vanished")))?;
        let vname = v.config.name.clone();
        let st = &mut v.snapshot_state;
        Ok(match kind {
            SnapshotJobKind::Create { snapshot, dropped } => {
                if let Some(s) = st.get_mut(snapshot) {
                    s.status = SnapshotStatus::Ok;
                    s.domain_xml = domain_xml.map(str::to_string);
                    s.memory_mib = memory_mib;
                }
                st.current_snapshot = Some(snapshot);
                for d in &dropped {
                    st.remove(*d);
                }
                let mut msg = format!("Snapshot {snapshot} of VM {vname} was taken.");
                if !dropped.is_empty() {
                    let ids: Vec<String> = dropped.iter().map(Uuid::to_string).collect();
                    msg.push_str(&format!(
                        " The oldest ({}) {} removed: the cluster keeps {cap} per VM.",
                        ids.join(", "),
                        if ids.len() == 1 { "was" } else { "were" }
                    ));
                }
                msg
            }
            SnapshotJobKind::Preview(p) => {
                let id = p.snapshot;
                if let Some(s) = st.get_mut(id) {
                    s.status = SnapshotStatus::InPreview;
                }
                // A start after it loads this snapshot's memory, or none at all.
                st.resume_from = p.memory.then_some(id);
                let config = p.config;
                let snap = st.get(id).cloned();
                st.preview = Some(p);
                let notes = match snap.filter(|_| config) {
                    Some(snap) => self.preview_config(vm, &snap, now),
                    None => String::new(),
                };
                format!(
                    "VM {vname} is in preview of snapshot {id}: start it to run from it, then commit or undo.{notes}"
                )
            }
            SnapshotJobKind::Commit => {
                let p =
                    st.preview.take().ok_or_else(|| ClusterError::Internal(format!("vm {vname} has no preview")))?;
                let erased = st.descendants(p.snapshot);
                for id in &erased {
                    st.remove(*id);
                }
                if let Some(s) = st.get_mut(p.snapshot) {
                    s.status = SnapshotStatus::Ok;
                }
                st.current_snapshot = Some(p.snapshot);
                let before = p.saved_config.as_ref().map(|c| c.disks.clone()).unwrap_or_default();
                let floated = if p.config { self.float_absent(vm, p.snapshot, &before) } else { String::new() };
                let later = if erased.is_empty() {
                    String::new()
                } else {
                    format!(" {} later snapshot(s) were erased.", erased.len())
                };
                format!("The preview of snapshot {} of VM {vname} was committed.{later}{floated}", p.snapshot)
            }
            SnapshotJobKind::Undo => {
                let p =
                    st.preview.take().ok_or_else(|| ClusterError::Internal(format!("vm {vname} has no preview")))?;
                if let Some(s) = st.get_mut(p.snapshot) {
                    s.status = SnapshotStatus::Ok;
                }
                if st.resume_from == Some(p.snapshot) {
                    st.resume_from = None;
                }
                if let Some(saved) = p.saved_config {
                    let now_config = v.config.clone();
                    v.config = with_disks_of(&saved, &now_config);
                    v.config.updated_ms = now;
                }
                format!("The preview of snapshot {} of VM {vname} was undone: it is as it was before.", p.snapshot)
            }
            SnapshotJobKind::Restore { snapshot } => {
                st.current_snapshot = Some(snapshot);
                st.resume_from = None;
                let notes = match st.get(snapshot).cloned() {
                    Some(snap) => self.take_config(vm, &snap, now),
                    None => String::new(),
                };
                format!("VM {vname} was restored to snapshot {snapshot}.{notes}")
            }
            SnapshotJobKind::Delete { snapshot } => {
                st.remove(snapshot);
                format!("Snapshot {snapshot} of VM {vname} was deleted.")
            }
        })
    }

    /// The VM's configuration becomes the snapshot's for a preview: disks the VM has that the
    /// snapshot does not stay attached, unplugged; disks the snapshot names that the VM no
    /// longer has are left out. Returns what the preview says about disks.
    fn preview_config(&mut self, vm: Uuid, snap: &Snapshot, now: i64) -> String {
        let Some(v) = self.vms.get_mut(&vm) else { return String::new() };
        let (config, notes) = snapshot_config(&v.config, snap, &self.disks, vm);
        v.config = config;
        v.config.updated_ms = now;
        notes
    }

    /// A restore: the configuration becomes the snapshot's for good; the VM's disks that the
    /// snapshot does not have float (detached, kept).
    fn take_config(&mut self, vm: Uuid, snap: &Snapshot, now: i64) -> String {
        let before = self.vms.get(&vm).map(|v| v.config.disks.clone()).unwrap_or_default();
        let mut notes = self.preview_config(vm, snap, now);
        notes.push_str(&self.float_absent(vm, snap.id, &before));
        notes
    }

    /// After a commit or restore: of the disks the VM had before (`before`), those the
    /// snapshot does not hold are detached and float (oVirt: the VM is left without them).
    fn float_absent(&mut self, vm: Uuid, snapshot: Uuid, before: &[Uuid]) -> String {
        let Some(v) = self.vms.get(&vm) else { return String::new() };
        let Some(snap) = v.snapshot_state.get(snapshot) else { return String::new() };
        let kept = kept_by(snap);
        let gone: Vec<Uuid> =
            v.config.disks.iter().copied().filter(|d| before.contains(d) && !kept.contains(d)).collect();
        if gone.is_empty() {
            return String::new();
        }
        let mut names = Vec::new();
        for d in &gone {
            if let Some(disk) = self.disks.get_mut(d) {
                disk.vm = None;
                names.push(disk.name.clone());
            }
        }
        if let Some(v) = self.vms.get_mut(&vm) {
            v.config.disks.retain(|d| !gone.contains(d));
            for d in &gone {
                v.config.attachments.remove(d);
            }
        }
        format!(
            " The snapshot does not have disk(s) {}: they were detached from the VM and float (`corral disk list`).",
            names.join(", ")
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn clone_from_snapshot(
        &mut self,
        now: i64,
        source: &str,
        snapshot: &str,
        id: Uuid,
        name: &str,
        disks: &[Disk],
        macs: &[String],
    ) -> OpResult {
        self.require_snapshots()?;
        let src = self.find_vm(source).ok_or_else(|| ClusterError::vm_not_found(source))?.clone();
        let snap = find_snapshot(&src, snapshot)?.clone();
        if snap.status == SnapshotStatus::Locked {
            return Err(ClusterError::FailedPrecondition(format!(
                "snapshot {} of vm '{}' is locked (being taken or deleted); try again when it is done",
                snap.id, src.config.name
            )));
        }
        validate::name("name", name)?;
        if self.vm_names.contains_key(name) {
            return Err(ClusterError::AlreadyExists(format!("vm '{name}' already exists")));
        }
        let held = present(&src, &snap.disks);
        if disks.len() != held.len() || macs.len() != snap.config.nics.len() {
            return Err(ClusterError::Internal(
                "a clone from a snapshot must copy each of its disks and give every NIC a new MAC".into(),
            ));
        }
        self.check_new_disks(disks)?;
        let mut vm = Vm::new(id, name, snap.config.memory_mib, snap.config.vcpus, now);
        vm.config = (*snap.config).clone();
        vm.config.name = name.to_string();
        vm.config.hosted_engine = false;
        // Its disks are copies, whatever its source's were.
        if let Some(t) = &mut vm.config.from_template {
            t.thin = false;
        }
        vm.config.next_run = None;
        vm.config.disks = disks.iter().map(|d| d.id).collect();
        vm.config.attachments =
            held.iter().zip(disks).map(|(old, new)| (new.id, snap.config.attachment(*old))).collect();
        for (nic, mac) in vm.config.nics.iter_mut().zip(macs) {
            nic.mac = mac.clone();
        }
        vm.config.created_ms = now;
        vm.config.updated_ms = now;
        for d in disks {
            self.disks.insert(d.id, Disk { vm: Some(id), created_ms: now, ..d.clone() });
        }
        self.vm_names.insert(name.to_string(), id);
        self.vms.insert(id, vm.clone());
        let left_out = snap.disks.len() - held.len();
        let note = if left_out > 0 {
            format!(" {left_out} disk(s) of the snapshot no longer exist and were left out.")
        } else {
            String::new()
        };
        self.record(
            now,
            EventKind::VmCreated,
            format!("VM {name} was created from snapshot {} of {}.{note}", snap.id, src.config.name),
        );
        Ok(Outcome::Vm(Box::new(vm)))
    }

    pub(super) fn set_snapshot_cap(&mut self, now: i64, max: u32) -> OpResult {
        self.require_snapshots()?;
        if max as usize > MAX_SNAPSHOTS_PER_VM {
            return Err(ClusterError::invalid(
                "max_snapshots",
                format!("must be 0 (no cap) to {MAX_SNAPSHOTS_PER_VM} (got {max})"),
            ));
        }
        let mut info = self.require_cluster()?.clone();
        if info.max_snapshots != max {
            let was = info.max_snapshots;
            info.max_snapshots = max;
            self.cluster = Some(info.clone());
            let cap = |n: u32| if n == 0 { "no cap".to_string() } else { n.to_string() };
            self.record(
                now,
                EventKind::ClusterEdited,
                format!("Cluster settings were changed: snapshots per VM {} -> {}.", cap(was), cap(max)),
            );
        }
        Ok(Outcome::Cluster(Box::new(info)))
    }

    /// Disks of `vm` by name or id, refused when one is not the VM's.
    fn disks_of_vm(&self, vm: &Vm, names: &[String]) -> Result<Vec<Uuid>, ClusterError> {
        let mut out = Vec::new();
        for n in names {
            let d = self
                .find_disk(n)
                .filter(|d| vm.config.disks.contains(&d.id))
                .ok_or_else(|| ClusterError::NotFound(format!("vm '{}' has no disk '{}'", vm.config.name, quote(n))))?;
            if !out.contains(&d.id) {
                out.push(d.id);
            }
        }
        Ok(out)
    }

    /// A host went down while it worked on snapshots: the work is taken as failed (the VM is
    /// unlocked; what the host may have done to the images is said in the event).
    pub(super) fn fail_snapshot_jobs_of(&mut self, now: i64, host: NodeId, touched: &mut BTreeSet<Uuid>) {
        let held: Vec<(Uuid, u64)> = self
            .vms
            .jobs_on(host)
            .iter()
            .filter_map(|id| self.vms.get(id))
            .filter_map(|v| v.snapshot_state.snapshot_job.as_ref().filter(|j| j.host == host).map(|j| (v.id, j.seq)))
            .collect();
        let name = self.host_name(host);
        for (vm, seq) in held {
            let error = format!("host {name} went down while it worked on the images; try again");
            let _ = self.snapshot_job_done(now, vm, seq, Some(&error), None, 0, touched);
        }
    }
}

/// Puts the state back after a job that failed; returns the event's message.
fn failed(v: &mut Vm, kind: &SnapshotJobKind, error: &str) -> String {
    let vname = v.config.name.clone();
    let st = &mut v.snapshot_state;
    st.snapshot_error = Some(error.to_string());
    let what = match kind {
        SnapshotJobKind::Create { snapshot, dropped } => {
            st.remove(*snapshot);
            for d in dropped {
                if let Some(s) = st.get_mut(*d) {
                    s.status = SnapshotStatus::Ok;
                }
            }
            format!("Snapshot {snapshot} of VM {vname} could not be taken")
        }
        SnapshotJobKind::Preview(p) => format!("VM {vname} could not preview snapshot {}", p.snapshot),
        SnapshotJobKind::Commit => format!("The preview of VM {vname} could not be committed"),
        SnapshotJobKind::Undo => format!("The preview of VM {vname} could not be undone"),
        SnapshotJobKind::Restore { snapshot } => format!("VM {vname} could not be restored to snapshot {snapshot}"),
        SnapshotJobKind::Delete { snapshot } => {
            if let Some(s) = st.get_mut(*snapshot) {
                s.status = SnapshotStatus::Ok;
            }
            format!("Snapshot {snapshot} of VM {vname} could not be deleted")
        }
    };
    format!("{what}: {error}.")
}

/// `saved` (the configuration before a preview) with the disks the VM has now: those it had
/// then, in that order, and those attached since at the end.
fn with_disks_of(saved: &VmConfig, now_config: &VmConfig) -> VmConfig {
    let mut c = saved.clone();
    c.disks.retain(|d| now_config.disks.contains(d));
    for d in &now_config.disks {
        if !c.disks.contains(d) {
            c.disks.push(*d);
            if let Some(a) = now_config.attachments.get(d) {
                c.attachments.insert(*d, *a);
            }
        }
    }
    c.attachments.retain(|d, _| c.disks.contains(d));
    c
}

/// The refusal of a change to a VM whose images a snapshot job holds.
pub(super) fn locked(vm: &Vm, job: &SnapshotJob) -> ClusterError {
    let what = match &job.kind {
        SnapshotJobKind::Create { snapshot, .. } => format!("snapshot {snapshot} is being taken"),
        SnapshotJobKind::Preview(p) => format!("snapshot {} is being brought up for a preview", p.snapshot),
        SnapshotJobKind::Commit => "its preview is being committed".to_string(),
        SnapshotJobKind::Undo => "its preview is being undone".to_string(),
        SnapshotJobKind::Restore { snapshot } => format!("it is being restored to snapshot {snapshot}"),
        SnapshotJobKind::Delete { snapshot } => format!("snapshot {snapshot} is being deleted"),
    };
    ClusterError::FailedPrecondition(format!(
        "vm '{}' is locked: {what}; try again when it is done (`corral vm snapshot list {}`)",
        vm.config.name, vm.config.name
    ))
}

/// The disks a VM keeps when it takes a snapshot's configuration: those the snapshot holds, and
/// those attached unplugged when it was taken (not in the guest's view, so not in a memory
/// snapshot; they stay unplugged, as they were). Others go (oVirt: a snapshot without a disk
/// gives a VM without it).
fn kept_by(snap: &Snapshot) -> Vec<Uuid> {
    let mut kept = snap.disks.clone();
    kept.extend(snap.config.disks.iter().copied().filter(|d| snap.config.attachment(*d).unplugged));
    kept
}

/// A snapshot that nothing holds (not locked, not in preview), to preview or restore.
fn usable<'a>(snap: &'a Snapshot, vm: &str) -> Result<&'a Snapshot, ClusterError> {
    if snap.status != SnapshotStatus::Ok {
        return Err(ClusterError::FailedPrecondition(format!(
            "snapshot {} of vm '{vm}' is {}",
            snap.id,
            snap.status.as_str()
        )));
    }
    Ok(snap)
}

/// A snapshot by id, or by a unique start of its id (at least 4 characters).
pub fn find_snapshot<'a>(vm: &'a Vm, name: &str) -> Result<&'a Snapshot, ClusterError> {
    let name = name.trim();
    if let Some(s) = Uuid::parse_str(name).ok().and_then(|id| vm.snapshot_state.get(id)) {
        return Ok(s);
    }
    let not_found = || ClusterError::NotFound(format!("vm '{}' has no snapshot '{}'", vm.config.name, quote(name)));
    if name.len() < 4 {
        return Err(not_found());
    }
    let mut found = vm.snapshot_state.snapshots.iter().filter(|s| s.id.to_string().starts_with(name));
    match (found.next(), found.next()) {
        (Some(s), None) => Ok(s),
        (Some(_), Some(_)) => Err(ClusterError::invalid(
            "snapshot",
            format!("'{}' starts more than one snapshot id of vm '{}'; give more of it", quote(name), vm.config.name),
        )),
        _ => Err(not_found()),
    }
}

fn require_down(vm: &Vm, what: &str) -> Result<(), ClusterError> {
    if vm.ha_state.ha_restart.is_some() {
        return Err(ClusterError::FailedPrecondition(format!(
            "vm '{}' waits for its HA restart: a snapshot is {what} while the VM is down (`corral vm stop {}` \
             cancels the restart)",
            vm.config.name, vm.config.name
        )));
    }
    if vm.runtime.status != VmStatus::Down || vm.runtime.host.is_some() {
        return Err(ClusterError::FailedPrecondition(format!(
            "vm '{}' is {}: a snapshot is {what} while the VM is down (`corral vm stop {}` first)",
            vm.config.name,
            vm.runtime.status.as_str(),
            vm.config.name
        )));
    }
    Ok(())
}

fn in_preview(vm: &Vm) -> Result<&Preview, ClusterError> {
    vm.snapshot_state.preview.as_ref().ok_or_else(|| {
        ClusterError::FailedPrecondition(format!(
            "vm '{}' is not in preview of a snapshot (`corral vm snapshot preview {} SNAP` first)",
            vm.config.name, vm.config.name
        ))
    })
}

/// The disks of `ids` the VM still has, in that order.
fn present(vm: &Vm, ids: &[Uuid]) -> Vec<Uuid> {
    ids.iter().copied().filter(|d| vm.config.disks.contains(d)).collect()
}

/// The configuration a VM gets from a snapshot: the snapshot's, keeping what identifies the VM
/// now (name, engine role, delete protection, creation time, pending next-run changes); disks
/// the snapshot names that the VM no longer has are left out, disks the VM has that the
/// snapshot does not stay attached but unplugged. Returns it, and a note on the disks.
fn snapshot_config(
    now_config: &VmConfig,
    snapshot: &Snapshot,
    disks: &std::collections::BTreeMap<Uuid, Disk>,
    vm: Uuid,
) -> (VmConfig, String) {
    let snap = &snapshot.config;
    let mut c = (**snap).clone();
    c.name = now_config.name.clone();
    c.hosted_engine = now_config.hosted_engine;
    c.delete_protected = now_config.delete_protected;
    c.created_ms = now_config.created_ms;
    c.next_run = None;
    let mut notes = String::new();
    let lost: Vec<Uuid> = snap.disks.iter().copied().filter(|d| !now_config.disks.contains(d)).collect();
    if !lost.is_empty() {
        let names: Vec<String> = lost
            .iter()
            .map(|d| disks.get(d).filter(|d| d.vm != Some(vm)).map_or_else(|| d.to_string(), |d| d.name.clone()))
            .collect();
        notes.push_str(&format!(" The VM no longer has disk(s) {} of the snapshot: left out.", names.join(", ")));
    }
    // The snapshot's disks the VM still has; the others it has run unplugged (oVirt: a snapshot
    // without a disk gives a VM without it).
    let kept = kept_by(snapshot);
    c.disks.retain(|d| now_config.disks.contains(d) && kept.contains(d));
    c.attachments.retain(|d, _| c.disks.contains(d));
    for d in &now_config.disks {
        if !c.disks.contains(d) {
            c.disks.push(*d);
            let a = now_config.attachments.get(d).copied().unwrap_or_default();
            c.attachments.insert(*d, Attachment { unplugged: true, bootable: false, ..a });
        }
    }
    (c, notes)
}
