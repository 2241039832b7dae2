//! Snapshot jobs given to this host (`SnapshotJob::host`): the work on a VM's images, each
//! job in a task of its own (a memory snapshot of a large guest takes a while), reported back
//! with `SnapshotJobDone`. A disk the VM's running domain holds is changed through QEMU (live);
//! any other (the VM down, an unplugged disk, the test driver, whose domains open no image)
//! with `qemu-img`. The VM is left alone by the reconcile loop while its job runs here.
//!
//! Also the start that loads a snapshot's memory (`resume_from`): the snapshot's domain
//! definition started paused, the snapshot loaded into it, the guest resumed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_raft::command::Op;
use corral_raft::model::{SnapshotJob, SnapshotJobKind, SnapshotStep, Vm, UNDO_PREFIX};
use uuid::Uuid;

use super::super::libvirt::{DomainState, DriverError, Hypervisor};
use super::super::HostAgent;
use super::{Agent, View, REPORT_PATIENCE};
use crate::images::StorageDomain;

/// One job as the task needs it, copied out of the state.
#[derive(Clone)]
pub(super) struct JobWork {
    pub vm: Uuid,
    pub name: String,
    pub job: SnapshotJob,
    /// Image files by disk id (inside the storage domain).
    pub files: HashMap<Uuid, String>,
    /// The VM is down and on no host.
    pub down: bool,
}

/// What a finished job reports besides success.
#[derive(Default)]
struct Made {
    domain_xml: Option<String>,
    memory_mib: u64,
}

impl Agent {
    /// Starts each job given to this host that is not running here yet.
    /// `only_down`: libvirt does not answer, so only the jobs of VMs the state has down (whose
    /// images no domain here can hold) start.
    pub(super) fn start_snapshot_jobs(&self, view: &View, running: &HashMap<Uuid, bool>, only_down: bool) {
        for work in view.snapshot_jobs.iter().filter(|w| w.down || !only_down) {
            let key = (work.vm, work.job.seq);
            if !self.snapshotting.lock().expect("snapshot set").insert(key) {
                continue;
            }
            let live = running.get(&work.vm).copied().unwrap_or(false) && !self.hv.is_test_driver();
            let (hv, node, set) = (self.hv.clone(), self.node.clone(), self.snapshotting.clone());
            let work = JobWork { down: work.down, ..work.clone() };
            tokio::spawn(async move {
                tracing::info!(vm = %work.name, job = ?work.job.kind, "snapshot work starting");
                let still = || job_there(&node, work.vm, work.job.seq);
                let result = run_job(&hv, &node.images, &work, live, &still).await;
                if let Err(e) = &result {
                    tracing::warn!(vm = %work.name, "snapshot work failed: {e}");
                }
                report(&node, &work, result).await;
                // Kept in the set until the state has the job done: a pass in between must not
                // start it again.
                wait_until_gone(&node, work.vm, work.job.seq).await;
                set.lock().expect("snapshot set").remove(&(work.vm, work.job.seq));
            });
        }
    }

    /// Whether a job of this VM runs here now (the reconcile loop leaves the VM alone).
    pub(super) fn snapshot_running(&self, vm: Uuid) -> bool {
        self.snapshotting.lock().expect("snapshot set").iter().any(|(id, _)| *id == vm)
    }

    /// Starts `vm` from the memory of snapshot `snap` (its definition, paused; the snapshot
    /// loaded; resumed). The caller holds the lease's acting guard.
    pub(super) async fn start_from_memory(&self, vm: &Vm, snap: Uuid) -> Result<(), DriverError> {
        let refuse = |message: String| DriverError::Libvirt { uri: self.hv.uri().to_string(), message };
        let Some(s) = vm.snapshot_state.get(snap) else {
            return Err(refuse(format!("snapshot {snap} is gone")));
        };
        let Some(xml) = s.domain_xml.clone() else {
            return Err(refuse(format!("snapshot {snap} has no domain definition to load its memory into")));
        };
        if self.hv.is_test_driver() {
            return Err(refuse("the test driver cannot load a guest's memory".into()));
        }
        let files: Vec<String> = self.state.read(|st| {
            s.disks
                .iter()
                .filter_map(|d| st.disks.get(d))
                .map(|d| self.node.images.path(&d.file).display().to_string())
                .collect()
        });
        let tag = s.tag();
        self.hv.start_paused_from(vm.id, xml).await?;
        let loaded = async {
            let nodes = self.hv.block_nodes(vm.id).await?;
            let devices: Vec<String> = files.iter().filter_map(|f| nodes.get(f).cloned()).collect();
            let mut vmstate = None;
            for f in &files {
                let rel = self.node.images.relative(std::path::Path::new(f));
                if self.node.images.snapshot_memory_mib(&rel, &tag).await.ok().flatten().is_some_and(|m| m > 0) {
                    vmstate = nodes.get(f).cloned();
                    break;
                }
            }
            let vmstate = vmstate.ok_or_else(|| refuse(format!("no disk of snapshot {snap} holds its memory")))?;
            self.hv.load_memory_snapshot(vm.id, &tag, &vmstate, &devices).await?;
            self.hv.resume(vm.id).await
        }
        .await;
        if loaded.is_err() {
            let _ = self.hv.destroy(vm.id).await;
        }
        loaded
    }
}

/// The job's steps in order; a preview that fails after saving the undo point is put back.
async fn run_job(
    hv: &Hypervisor,
    images: &StorageDomain,
    work: &JobWork,
    live: bool,
    still: &(dyn Fn() -> bool + Sync),
) -> Result<Made, String> {
    let mut made = Made::default();
    let mut undo_taken = false;
    for step in &work.job.steps {
        // A job the cluster gave up on (its deadline passed) is not carried on.
        let result = match still() {
            true => run_step(hv, images, work, live, step, &mut made).await,
            false => Err("the cluster no longer waits for this work".to_string()),
        };
        if let Err(e) = result {
            // A snapshot that could not be taken leaves nothing behind in the images.
            if let (SnapshotJobKind::Create { snapshot, .. }, Some(SnapshotStep::Take { disks, .. })) =
                (&work.job.kind, work.job.steps.first())
            {
                let drop = SnapshotStep::Drop { tag: snapshot.to_string(), disks: disks.clone() };
                let _ = run_step(hv, images, work, live, &drop, &mut Made::default()).await;
            }
            if undo_taken && matches!(work.job.kind, SnapshotJobKind::Preview(_)) {
                if let SnapshotJobKind::Preview(p) = &work.job.kind {
                    let back = SnapshotStep::Revert { tag: p.undo_tag.clone(), disks: p.undo_disks.clone() };
                    let _ = run_step(hv, images, work, live, &back, &mut Made::default()).await;
                    let drop = SnapshotStep::Drop { tag: p.undo_tag.clone(), disks: p.undo_disks.clone() };
                    let _ = run_step(hv, images, work, live, &drop, &mut Made::default()).await;
                }
            }
            return Err(e);
        }
        undo_taken |= matches!(step, SnapshotStep::Take { tag, .. } if tag.starts_with(UNDO_PREFIX));
    }
    Ok(made)
}

async fn run_step(
    hv: &Hypervisor,
    images: &StorageDomain,
    work: &JobWork,
    live: bool,
    step: &SnapshotStep,
    made: &mut Made,
) -> Result<(), String> {
    let nodes = if live { hv.block_nodes(work.vm).await.map_err(|e| e.to_string())? } else { HashMap::new() };
    let file = |d: &Uuid| work.files.get(d).cloned().ok_or_else(|| format!("disk {d} has no image record"));
    // The undo point is taken once: a job run again (its report lost) must not take it anew
    // from disks it already brought back to the snapshot.
    let undo = |tag: &str| tag.starts_with(UNDO_PREFIX);
    let node_of = |f: &str| nodes.get(&images.path(f).display().to_string()).cloned();
    match step {
        SnapshotStep::Take { tag, disks, .. } if undo(tag) => {
            for d in disks {
                let f = file(d)?;
                let tags = images.snapshot_tags(&f).await.map_err(|e| e.to_string())?;
                // The undo points of earlier previews that failed are of no use any more.
                for stale in tags.iter().filter(|t| undo(t) && *t != tag) {
                    images.snapshot_drop(&f, stale).await.map_err(|e| e.to_string())?;
                }
                if !tags.iter().any(|t| t == tag) {
                    images.snapshot_take(&f, tag).await.map_err(|e| e.to_string())?;
                }
            }
        }
        SnapshotStep::Take { tag, disks, memory } => {
            // A tag left by an earlier try is removed first: qemu-img would add a second one.
            for d in disks {
                let f = file(d)?;
                match node_of(&f) {
                    Some(n) => hv.drop_snapshot_live(work.vm, &n, tag).await.map_err(|e| e.to_string())?,
                    None => images.snapshot_drop(&f, tag).await.map_err(|e| e.to_string())?,
                }
            }
            let mut held = Vec::new();
            for d in disks {
                let f = file(d)?;
                match node_of(&f) {
                    Some(n) => held.push((f, n)),
                    None => images.snapshot_take(&f, tag).await.map_err(|e| e.to_string())?,
                }
            }
            if *memory {
                if !live {
                    return Err(if hv.is_test_driver() {
                        "the test driver cannot save a guest's memory (take the snapshot without --memory)".into()
                    } else {
                        format!("VM {} does not run on this host, so its memory cannot be saved", work.name)
                    });
                }
                let Some((vmstate_file, vmstate)) = held.first().cloned() else {
                    return Err("no plugged disk of the snapshot is open in the running VM to hold its memory".into());
                };
                let devices: Vec<String> = held.iter().map(|(_, n)| n.clone()).collect();
                hv.save_memory_snapshot(work.vm, tag, &vmstate, &devices).await.map_err(|e| e.to_string())?;
                made.domain_xml = Some(hv.migratable_xml(work.vm).await.map_err(|e| e.to_string())?);
                made.memory_mib = images.snapshot_memory_mib(&vmstate_file, tag).await.ok().flatten().unwrap_or(0);
            } else if !held.is_empty() {
                // All of the running VM's disks at one instant (one QMP transaction).
                let nodes: Vec<String> = held.iter().map(|(_, n)| n.clone()).collect();
                hv.snapshot_disks_live(work.vm, &nodes, tag).await.map_err(|e| e.to_string())?;
            }
        }
        SnapshotStep::Revert { tag, disks } => {
            // Every disk is checked before any is brought back, so a failure changes none.
            let mut todo = Vec::new();
            for d in disks {
                let f = file(d)?;
                if node_of(&f).is_some() {
                    return Err(format!(
                        "disk {d} is open in the running VM; it is brought back only while the VM is down"
                    ));
                }
                let has = images.snapshot_tags(&f).await.map_err(|e| e.to_string())?.iter().any(|t| t == tag);
                match has {
                    true => todo.push(f),
                    // An undo run again: this disk was brought back and its undo point dropped.
                    false if undo(tag) => {}
                    false => return Err(format!("the image of disk {d} holds no snapshot {tag}")),
                }
            }
            for f in todo {
                images.snapshot_revert(&f, tag).await.map_err(|e| e.to_string())?;
            }
        }
        SnapshotStep::Drop { tag, disks } => {
            // A disk deleted meanwhile took the snapshot along.
            for f in disks.iter().filter_map(|d| work.files.get(d).cloned()) {
                match node_of(&f) {
                    Some(n) => hv.drop_snapshot_live(work.vm, &n, tag).await.map_err(|e| e.to_string())?,
                    None => images.snapshot_drop(&f, tag).await.map_err(|e| e.to_string())?,
                }
            }
        }
    }
    Ok(())
}

/// Reports the job's end until the report lands, the job is no longer there to report on, or
/// REPORT_PATIENCE has passed.
async fn report(node: &Arc<HostAgent>, work: &JobWork, result: Result<Made, String>) {
    let (error, made) = match result {
        Ok(m) => (None, m),
        Err(e) => (Some(e), Made::default()),
    };
    let op = Op::SnapshotJobDone {
        vm: work.vm,
        seq: work.job.seq,
        error,
        domain_xml: made.domain_xml,
        memory_mib: made.memory_mib,
    };
    let give_up = tokio::time::Instant::now() + REPORT_PATIENCE;
    while tokio::time::Instant::now() < give_up {
        if node.cluster.write(None, op.clone()).await.is_ok() || !job_there(node, work.vm, work.job.seq) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn job_there(node: &Arc<HostAgent>, vm: Uuid, seq: u64) -> bool {
    node.cluster.state().ok().is_some_and(|s| {
        s.read(|s| s.vms.get(&vm).and_then(|v| v.snapshot_state.snapshot_job.as_ref()).is_some_and(|j| j.seq == seq))
    })
}

/// Waits (bounded) until this node's state no longer has the job.
async fn wait_until_gone(node: &Arc<HostAgent>, vm: Uuid, seq: u64) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while job_there(node, vm, seq) && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether libvirt runs the domain (its images are open in QEMU).
pub(super) fn is_running(state: DomainState) -> bool {
    !matches!(state, DomainState::Shutoff | DomainState::Crashed)
}
