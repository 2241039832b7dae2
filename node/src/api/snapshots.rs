//! Snapshots through VmService (cluster level 4): each command is checked here (level,
//! permission vm.snapshot, room in the storage domain) and again by apply, which records it and
//! gives a host the work on the images; the answer waits for that work unless the command is
//! one that may take long (create and delete, unless `wait`). Clone from a snapshot copies its
//! disks here, as a clone does.

use std::collections::BTreeSet;
use std::time::Duration;

use corral_proto::*;
use corral_raft::apply::snapshots::find_snapshot;
use corral_raft::command::{Op, Outcome};
use corral_raft::model::auth::Operation;
use corral_raft::model::{self, ClusterState};
use corral_raft::{validate, ClusterError};
use uuid::Uuid;

use super::authz::Obj;
use super::vms::{replayed, require_snapshot_level, to_proto, Api};
use super::{Caller, Handles};

/// How long a command waits for its host's work on the images (a memory snapshot of a large
/// guest takes a while; commit, undo, preview and restore are quick offline steps).
const JOB_PATIENCE: Duration = Duration::from_secs(600);
/// Room a snapshot needs beyond the memory it saves: qcow2 metadata and the first copies on
/// write. Deleting an internal snapshot needs no room for a merge (there is none); the same
/// floor is kept for the metadata it rewrites.
const SNAPSHOT_ROOM_MIB: u64 = 64;

impl Api {
    /// This node: it works on the images of a VM that is down.
    fn worker(&self) -> Result<corral_raft::NodeId, ClusterError> {
        Ok(self.0.cluster.parts()?.id)
    }

    pub async fn create_snapshot(
        &self,
        cx: &Caller,
        req: CreateSnapshotRequest,
    ) -> Result<SnapshotResult, ClusterError> {
        let rid = cx.request_id()?;
        require_snapshot_level(&self.0)?;
        let CreateSnapshotRequest { vm, description, memory, disks, wait } = req;
        validate::text("description", &description)?;
        let memory_mib = self.0.cluster.state()?.read(|s| s.find_vm(&vm).map(|v| v.config.memory_mib)).unwrap_or(0);
        let needed = SNAPSHOT_ROOM_MIB + if memory { memory_mib } else { 0 };
        self.room(needed, if memory { "a snapshot with memory" } else { "a snapshot" })?;
        let op = Op::CreateSnapshot {
            vm: vm.clone(),
            id: Uuid::new_v4(),
            description,
            memory,
            disks: disks.map(|l| l.values),
            worker: self.worker()?,
        };
        let Op::CreateSnapshot { id, .. } = op else { unreachable!("made above") };
        let op = self.0.permit(cx, &[(Operation::VmSnapshot, Obj::Vm(&vm))], op).await?;
        let after = self.written(rid, op).await?;
        // A retried request made its snapshot the first time: that one is the answer.
        let id = after.snapshot_state.snapshot_job.as_ref().map_or(id, |j| match &j.kind {
            model::SnapshotJobKind::Create { snapshot, .. } => *snapshot,
            _ => id,
        });
        let after = if wait { self.job_ended(&after).await? } else { after };
        self.result(&after, Some(id), Vec::new())
    }

    pub async fn list_snapshots(&self, cx: &Caller, req: VmRef) -> Result<SnapshotList, ClusterError> {
        let vm = req.vm;
        self.0.check(cx, &[(Operation::VmShow, Obj::Vm(&vm))]).await?;
        let node = self.0.clone();
        self.0
            .cluster
            .read(false, move |s| {
                let v = s.find_vm(&vm).ok_or_else(|| ClusterError::vm_not_found(&vm))?;
                let st = &v.snapshot_state;
                let p = st.preview.as_ref();
                Ok(SnapshotList {
                    vm: v.config.name.clone(),
                    snapshots: st.snapshots.iter().map(|snap| snapshot_to_proto(&node, s, v, snap)).collect(),
                    current: st.current_snapshot.map(|id| id.to_string()),
                    preview: p.map(|p| p.snapshot.to_string()),
                    preview_memory: p.is_some_and(|p| p.memory),
                    preview_config: p.is_some_and(|p| p.config),
                    preview_disks: p.map(|p| disk_names(s, &p.disks)).unwrap_or_default(),
                    job: st.snapshot_job.as_ref().map(|j| job_words(&j.kind)),
                    last_error: st.snapshot_error.clone(),
                    resume_from: st.resume_from.map(|id| id.to_string()),
                    vm_status: v.runtime.status.as_str().to_string(),
                })
            })
            .await?
    }

    pub async fn get_snapshot(&self, cx: &Caller, req: SnapshotRef) -> Result<Snapshot, ClusterError> {
        let SnapshotRef { vm, snapshot } = req;
        self.0.check(cx, &[(Operation::VmShow, Obj::Vm(&vm))]).await?;
        let node = self.0.clone();
        let (mut out, files) = self
            .0
            .cluster
            .read(false, move |s| {
                let v = s.find_vm(&vm).ok_or_else(|| ClusterError::vm_not_found(&vm))?;
                let snap = find_snapshot(v, &snapshot)?;
                let files: Vec<Option<String>> =
                    snap.disks.iter().map(|d| s.disks.get(d).map(|d| d.file.clone())).collect();
                Ok::<_, ClusterError>((snapshot_to_proto(&node, s, v, snap), files))
            })
            .await??;
        for (d, file) in out.disks.iter_mut().zip(files) {
            if let Some(file) = file {
                d.image_mib = self.0.images.allocated_mib_shared(&file).await.ok();
            }
        }
        Ok(out)
    }

    pub async fn preview_snapshot(
        &self,
        cx: &Caller,
        req: PreviewSnapshotRequest,
    ) -> Result<SnapshotResult, ClusterError> {
        let rid = cx.request_id()?;
        require_snapshot_level(&self.0)?;
        let PreviewSnapshotRequest { vm, snapshot, memory, disks, config } = req;
        // None of the three: the configuration and every disk.
        let everything = !memory && disks.is_none() && !config;
        let disks = disks.map(|l| l.values);
        let config_too = config || everything || memory;
        let notes = self.0.cluster.state()?.read(|s| preview_notes(s, &vm, &snapshot, config_too, false));
        let op = Op::PreviewSnapshot {
            vm: vm.clone(),
            snapshot: snapshot.clone(),
            memory,
            disks,
            config: config || everything || memory,
            worker: self.worker()?,
        };
        self.job_command(cx, rid, &vm, op, Some(&snapshot), notes).await
    }

    pub async fn commit_snapshot(&self, cx: &Caller, req: VmRef) -> Result<SnapshotResult, ClusterError> {
        let rid = cx.request_id()?;
        require_snapshot_level(&self.0)?;
        let vm = req.vm;
        let notes = self.0.cluster.state()?.read(|s| commit_notes(s, &vm));
        let op = Op::CommitSnapshot { vm: vm.clone(), worker: self.worker()? };
        self.job_command(cx, rid, &vm, op, None, notes).await
    }

    pub async fn undo_snapshot(&self, cx: &Caller, req: VmRef) -> Result<SnapshotResult, ClusterError> {
        let rid = cx.request_id()?;
        require_snapshot_level(&self.0)?;
        let vm = req.vm;
        let op = Op::UndoSnapshot { vm: vm.clone(), worker: self.worker()? };
        self.job_command(cx, rid, &vm, op, None, Vec::new()).await
    }

    pub async fn restore_snapshot(&self, cx: &Caller, req: SnapshotRef) -> Result<SnapshotResult, ClusterError> {
        let rid = cx.request_id()?;
        require_snapshot_level(&self.0)?;
        let SnapshotRef { vm, snapshot } = req;
        let mut notes = self.0.cluster.state()?.read(|s| preview_notes(s, &vm, &snapshot, true, true));
        notes.extend(self.0.cluster.state()?.read(|s| restore_floats(s, &vm, &snapshot)));
        // One with memory starts the VM: that needs vm.power as well.
        let memory = self
            .0
            .cluster
            .state()?
            .read(|s| s.find_vm(&vm).and_then(|v| find_snapshot(v, &snapshot).ok()).is_some_and(|s| s.memory));
        let op = Op::RestoreSnapshot { vm: vm.clone(), snapshot: snapshot.clone(), worker: self.worker()? };
        if memory {
            let needs = [(Operation::VmSnapshot, Obj::Vm(&vm)), (Operation::VmStart, Obj::Vm(&vm))];
            let op = self.0.permit(cx, &needs, op).await?;
            let after = self.written(rid, op).await?;
            let id = find_snapshot(&after, &snapshot).ok().map(|s| s.id);
            return self.result(&after, id, notes);
        }
        self.job_command(cx, rid, &vm, op, Some(&snapshot), notes).await
    }

    pub async fn delete_snapshot(
        &self,
        cx: &Caller,
        req: DeleteSnapshotRequest,
    ) -> Result<SnapshotResult, ClusterError> {
        let rid = cx.request_id()?;
        require_snapshot_level(&self.0)?;
        let DeleteSnapshotRequest { vm, snapshot, wait } = req;
        self.room(SNAPSHOT_ROOM_MIB, "deleting a snapshot")?;
        let op = Op::DeleteSnapshot { vm: vm.clone(), snapshot: snapshot.clone(), worker: self.worker()? };
        let op = self.0.permit(cx, &[(Operation::VmSnapshot, Obj::Vm(&vm))], op).await?;
        let after = self.written(rid, op).await?;
        let after = if wait { self.job_ended(&after).await? } else { after };
        let id = find_snapshot(&after, &snapshot).ok().map(|s| s.id);
        self.result(&after, id, Vec::new())
    }

    /// `vm clone SOURCE NAME --from-snapshot SNAP`: copies of the snapshot's disks as they were
    /// then (read shared: the source may run), and the snapshot's configuration.
    pub(super) async fn clone_from_snapshot(
        &self,
        cx: &Caller,
        source: String,
        name: String,
        snapshot: String,
    ) -> Result<Vm, ClusterError> {
        let rid = cx.request_id()?;
        require_snapshot_level(&self.0)?;
        validate::name("name", &name)?;
        let needs = [
            (Operation::VmSnapshot, Obj::Vm(&source)),
            (Operation::VmCreate, Obj::Cluster),
            (Operation::DiskCreate, Obj::Cluster),
        ];
        self.0.check(cx, &needs).await?;
        let found = self
            .0
            .cluster
            .read(false, |s| {
                let v = s.find_vm(&source).ok_or_else(|| ClusterError::vm_not_found(&source))?;
                let snap = find_snapshot(v, &snapshot)?;
                let disks: Vec<model::Disk> = snap
                    .disks
                    .iter()
                    .filter(|d| v.config.disks.contains(d))
                    .filter_map(|d| s.disks.get(d))
                    .cloned()
                    .collect();
                Ok::<_, ClusterError>((
                    snap.tag(),
                    disks,
                    snap.config.nics.len(),
                    s.vm_names.contains_key(&name),
                    replayed(s, rid),
                ))
            })
            .await??;
        let (tag, source_disks, nics, taken, replay) = found;
        let op = |disks, macs| Op::CloneFromSnapshot {
            source: source.clone(),
            snapshot: snapshot.clone(),
            id: Uuid::new_v4(),
            name: name.clone(),
            disks,
            macs,
        };
        if replay {
            let op = self.0.permit(cx, &needs, op(Vec::new(), Vec::new())).await?;
            let outcome = self.0.cluster.write(rid, op).await?;
            return self.vm_of(outcome);
        }
        if taken {
            return Err(ClusterError::AlreadyExists(format!("vm '{name}' already exists")));
        }
        self.clone_with_copies(cx, rid, &needs, &name, &source_disks, Some(&tag), nics, op).await
    }

    /// A command whose work on the images is waited for; refused with the host's reason when
    /// that work failed.
    async fn job_command(
        &self,
        cx: &Caller,
        rid: Option<Uuid>,
        vm: &str,
        op: Op,
        snapshot: Option<&str>,
        notes: Vec<String>,
    ) -> Result<SnapshotResult, ClusterError> {
        let op = self.0.permit(cx, &[(Operation::VmSnapshot, Obj::Vm(vm))], op).await?;
        let after = self.written(rid, op).await?;
        let after = self.job_ended(&after).await?;
        let id = snapshot.and_then(|n| find_snapshot(&after, n).ok()).map(|s| s.id);
        self.result(&after, id, notes)
    }

    /// The VM a command returned.
    async fn written(&self, rid: Option<Uuid>, op: Op) -> Result<model::Vm, ClusterError> {
        match self.0.cluster.write(rid, op).await? {
            Outcome::Vm(vm) => Ok(*vm),
            _ => Err(ClusterError::Internal("the write returned no VM".into())),
        }
    }

    fn vm_of(&self, outcome: Outcome) -> Result<Vm, ClusterError> {
        let Outcome::Vm(vm) = outcome else { return Err(ClusterError::Internal("the write returned no VM".into())) };
        Ok(self.0.cluster.state()?.read(|s| to_proto(&self.0, s, &vm)))
    }

    /// Waits (bounded) until the job the VM has now is done, and says why when it failed.
    async fn job_ended(&self, vm: &model::Vm) -> Result<model::Vm, ClusterError> {
        let Some(seq) = vm.snapshot_state.snapshot_job.as_ref().map(|j| j.seq) else { return Ok(vm.clone()) };
        let done = |v: &model::Vm| v.snapshot_state.snapshot_job.as_ref().is_none_or(|j| j.seq != seq);
        let Some(after) = self.0.cluster.wait_vm(vm.id, JOB_PATIENCE, done).await? else {
            return Err(ClusterError::NotFound(format!("vm '{}' was deleted meanwhile", vm.config.name)));
        };
        if !done(&after) {
            return Err(ClusterError::Unavailable(format!(
                "the host has not finished the work on the images of vm '{}' in {} s; `corral vm snapshot list {}` \
                 shows when it has",
                vm.config.name,
                JOB_PATIENCE.as_secs(),
                vm.config.name
            )));
        }
        if let Some(error) = after.snapshot_state.snapshot_error.clone() {
            return Err(ClusterError::FailedPrecondition(format!("vm '{}': {error}", after.config.name)));
        }
        Ok(after)
    }

    fn result(
        &self,
        vm: &model::Vm,
        snapshot: Option<Uuid>,
        notes: Vec<String>,
    ) -> Result<SnapshotResult, ClusterError> {
        let node = self.0.clone();
        self.0.cluster.state()?.read(|s| {
            Ok(SnapshotResult {
                vm: Some(to_proto(&node, s, vm)),
                snapshot: snapshot
                    .and_then(|id| vm.snapshot_state.get(id))
                    .map(|snap| snapshot_to_proto(&node, s, vm, snap)),
                notes,
            })
        })
    }

    /// Refuses when the storage domain has less than `needed` MiB free, with both numbers.
    fn room(&self, needed: u64, what: &str) -> Result<(), ClusterError> {
        let free = self.0.images.free_mib()?;
        if free < needed {
            return Err(ClusterError::FailedPrecondition(format!(
                "{what} needs {needed} MiB free in the storage domain, which has {free} MiB"
            )));
        }
        Ok(())
    }
}

fn snapshot_to_proto(node: &Handles, s: &ClusterState, vm: &model::Vm, snap: &model::Snapshot) -> Snapshot {
    let config_vm = model::Vm { id: vm.id, config: (*snap.config).clone(), ..model::Vm::new(vm.id, "", 0, 0, 0) };
    let mut config = to_proto(node, s, &config_vm);
    // The snapshot's configuration, not a VM that runs.
    config.status = String::new();
    config.status_enum = 0;
    config.host = None;
    Snapshot {
        id: snap.id.to_string(),
        parent: snap.parent.map(|p| p.to_string()),
        description: snap.description.clone(),
        created_unix_ms: snap.created_ms,
        memory: snap.memory,
        disks: snap
            .disks
            .iter()
            .map(|d| SnapshotDisk {
                id: d.to_string(),
                name: s.disks.get(d).map_or_else(|| d.to_string(), |d| d.name.clone()),
                present: vm.config.disks.contains(d),
                image_mib: None,
            })
            .collect(),
        status: snap.status.as_str().to_string(),
        config: Some(config),
        memory_mib: snap.memory_mib,
        current: vm.snapshot_state.current_snapshot == Some(snap.id),
    }
}

fn disk_names(s: &ClusterState, ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(|d| s.disks.get(d).map_or_else(|| d.to_string(), |d| d.name.clone())).collect()
}

fn job_words(kind: &model::SnapshotJobKind) -> String {
    match kind {
        model::SnapshotJobKind::Create { snapshot, .. } => format!("taking snapshot {snapshot}"),
        model::SnapshotJobKind::Preview(p) => format!("bringing up snapshot {} for a preview", p.snapshot),
        model::SnapshotJobKind::Commit => "committing the preview".into(),
        model::SnapshotJobKind::Undo => "undoing the preview".into(),
        model::SnapshotJobKind::Restore { snapshot } => format!("restoring snapshot {snapshot}"),
        model::SnapshotJobKind::Delete { snapshot } => format!("deleting snapshot {snapshot}"),
    }
}

/// What a preview (or restore) of `snapshot` will say about disks: those the VM no longer has
/// are left out; with the configuration, those the snapshot lacks are unplugged (and float
/// after a commit).
fn preview_notes(s: &ClusterState, vm: &str, snapshot: &str, config: bool, restore: bool) -> Vec<String> {
    let Some(v) = s.find_vm(vm) else { return Vec::new() };
    let Ok(snap) = find_snapshot(v, snapshot) else { return Vec::new() };
    let mut notes = Vec::new();
    let lost: Vec<Uuid> = snap.disks.iter().copied().filter(|d| !v.config.disks.contains(d)).collect();
    if !lost.is_empty() {
        notes.push(format!(
            "the VM no longer has disk(s) {} of snapshot {}: they are left out",
            disk_names(s, &lost).join(", "),
            snap.id
        ));
    }
    let kept =
        |d: &Uuid| snap.disks.contains(d) || (snap.config.disks.contains(d) && snap.config.attachment(*d).unplugged);
    let absent: Vec<Uuid> = v.config.disks.iter().copied().filter(|d| !kept(d)).collect();
    if config && !absent.is_empty() {
        let names = disk_names(s, &absent).join(", ");
        notes.push(if restore {
            format!(
                "snapshot {} does not have disk(s) {names}: they are detached from the VM and float (kept)",
                snap.id
            )
        } else {
            format!(
                "snapshot {} does not have disk(s) {names}: the VM runs without them (unplugged); committing it \
                 detaches them from the VM (they float, kept)",
                snap.id
            )
        });
    }
    notes
}

fn restore_floats(s: &ClusterState, vm: &str, snapshot: &str) -> Vec<String> {
    let Some(v) = s.find_vm(vm) else { return Vec::new() };
    let Ok(snap) = find_snapshot(v, snapshot) else { return Vec::new() };
    if snap.memory {
        vec![format!("snapshot {} holds memory: the VM starts and resumes from it", snap.id)]
    } else {
        Vec::new()
    }
}

fn commit_notes(s: &ClusterState, vm: &str) -> Vec<String> {
    let Some(v) = s.find_vm(vm) else { return Vec::new() };
    let Some(p) = &v.snapshot_state.preview else { return Vec::new() };
    let later: BTreeSet<Uuid> = v.snapshot_state.descendants(p.snapshot).into_iter().collect();
    let mut notes = Vec::new();
    if !later.is_empty() {
        let ids: Vec<String> = later.iter().map(Uuid::to_string).collect();
        notes.push(format!("snapshots taken after {} are erased: {}", p.snapshot, ids.join(", ")));
    }
    if let Some(snap) = v.snapshot_state.get(p.snapshot).filter(|_| p.config) {
        let before = p.saved_config.as_ref().map(|c| c.disks.clone()).unwrap_or_default();
        let kept = |d: &Uuid| {
            snap.disks.contains(d) || (snap.config.disks.contains(d) && snap.config.attachment(*d).unplugged)
        };
        let absent: Vec<Uuid> = v.config.disks.iter().copied().filter(|d| before.contains(d) && !kept(d)).collect();
        if !absent.is_empty() {
            notes.push(format!(
                "the VM no longer has disk(s) {}: the snapshot does not have them; they float (`corral disk list`)",
                disk_names(s, &absent).join(", ")
            ));
        }
    }
    notes
}
