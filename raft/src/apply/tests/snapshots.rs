//! Snapshots (cluster level 4): the tree, each job's states (locked, done, failed), preview with
//! commit and undo, restore, the cap, the lock, a host that dies mid-job, and the refusals.

use super::*;
use crate::command::StartOrder;
use crate::model::{
    DomainType, Observed, SnapshotJobKind, SnapshotStatus, SnapshotStep, VmStatus, SNAPSHOT_LEVEL, UNDO_PREFIX,
};

fn level4() -> ClusterState {
    let mut s = super::three_hosts([8192; 3], 4, DomainType::Kvm);
    s.cluster.as_mut().unwrap().level = SNAPSHOT_LEVEL;
    s
}

fn ok(s: &mut ClusterState, op: Op) -> Outcome {
    s.apply_command(&cmd(T0 + 10, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

fn vm<'a>(s: &'a ClusterState, name: &str) -> &'a Vm {
    s.find_vm(name).unwrap()
}

fn disk(name: &str) -> Disk {
    let id = Uuid::new_v4();
    Disk {
        id,
        name: name.into(),
        size_mib: 64,
        file: format!("{id}.qcow2"),
        format: "qcow2".into(),
        vm: None,
        created_ms: 0,
        base: None,
    }
}

/// A down VM `web1` with disks d1 and d2.
fn with_vm() -> ClusterState {
    let mut s = level4();
    ok(
        &mut s,
        Op::CreateVm {
            id: Uuid::new_v4(),
            spec: super::spec("web1"),
            disks: vec![disk("d1"), disk("d2")],
            start: None,
        },
    );
    s
}

fn start(s: &mut ClusterState) {
    ok(s, Op::StartVm { vm: "web1".into(), order: StartOrder { host: Some("host1".into()) } });
    let v = vm(s, "web1");
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    ok(s, Op::ReportVm { vm: id, host, epoch, observed: Observed::Up });
}

fn stop(s: &mut ClusterState) {
    ok(s, Op::StopVm { vm: "web1".into(), reason: None });
    let v = vm(s, "web1");
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    let observed = Observed::Down { cause: crate::DownCause::PoweredOff, on_purpose: true };
    ok(s, Op::ReportVm { vm: id, host, epoch, observed });
}

/// The host's report that the VM's job is done (or failed).
fn done(s: &mut ClusterState, error: Option<&str>) {
    let v = vm(s, "web1");
    let seq = v.snapshot_state.snapshot_job.as_ref().expect("a job").seq;
    let op = Op::SnapshotJobDone {
        vm: v.id,
        seq,
        error: error.map(str::to_string),
        domain_xml: Some("<domain/>".into()),
        memory_mib: 98,
    };
    ok(s, op);
}

/// `CreateSnapshot` of web1 with a new id, proposed by node `worker`.
fn create_op(memory: bool, disks: Option<Vec<String>>, worker: crate::NodeId) -> Op {
    Op::CreateSnapshot { vm: "web1".into(), id: Uuid::new_v4(), description: String::new(), memory, disks, worker }
}

/// A full preview (configuration and disks, no memory) of web1's snapshot `snap`.
fn preview_op(snap: Uuid, worker: crate::NodeId) -> Op {
    Op::PreviewSnapshot {
        vm: "web1".into(),
        snapshot: snap.to_string(),
        memory: false,
        disks: None,
        config: true,
        worker,
    }
}

fn take(s: &mut ClusterState, memory: bool) -> Uuid {
    let id = Uuid::new_v4();
    let op = Op::CreateSnapshot { vm: "web1".into(), id, description: "d".into(), memory, disks: None, worker: 2 };
    ok(s, op);
    done(s, None);
    id
}

fn ids(s: &ClusterState) -> Vec<Uuid> {
    vm(s, "web1").snapshot_state.snapshots.iter().map(|x| x.id).collect()
}

#[test]
fn snapshots_need_level_4() {
    let mut s = with_vm();
    s.cluster.as_mut().unwrap().level = 3;
    let op = create_op(false, None, 1);
    refused(&mut s, op, "snapshots need cluster level 4: run `corral cluster upgrade` first");
}

#[test]
fn a_snapshot_is_locked_until_its_host_is_done_and_the_vm_with_it() {
    let mut s = with_vm();
    let id = Uuid::new_v4();
    ok(
        &mut s,
        Op::CreateSnapshot {
            vm: "web1".into(),
            id,
            description: "before".into(),
            memory: false,
            disks: None,
            worker: 2,
        },
    );
    let v = vm(&s, "web1");
    let job = v.snapshot_state.snapshot_job.clone().unwrap();
    // A down VM: the proposing node works on the images.
    assert_eq!(job.host, 2);
    let SnapshotStep::Take { tag, disks, memory } = &job.steps[0] else { panic!("{job:?}") };
    assert_eq!((tag.as_str(), disks.len(), *memory), (id.to_string().as_str(), 2, false));
    assert_eq!(v.snapshot_state.snapshots[0].status, SnapshotStatus::Locked);
    // Locked: every other change to the VM is refused, naming why.
    let want = format!(
        "vm 'web1' is locked: snapshot {id} is being taken; try again when it is done (`corral vm \
         snapshot list web1`)"
    );
    refused(&mut s, Op::StartVm { vm: "web1".into(), order: StartOrder::default() }, &want);
    refused(&mut s, Op::DeleteVm { vm: "web1".into(), keep_disks: false }, &want);
    done(&mut s, None);
    let v = vm(&s, "web1");
    assert!(v.snapshot_state.snapshot_job.is_none());
    assert_eq!(v.snapshot_state.snapshots[0].status, SnapshotStatus::Ok);
    assert_eq!(v.snapshot_state.current_snapshot, Some(id));
    // A report of an earlier job is ignored.
    let stale = Op::SnapshotJobDone { vm: v.id, seq: 0, error: Some("x".into()), domain_xml: None, memory_mib: 0 };
    let before = s.clone();
    ok(&mut s, stale);
    assert_eq!(s.vms, before.vms);
}

#[test]
fn a_failed_snapshot_leaves_nothing_and_says_why() {
    let mut s = with_vm();
    ok(&mut s, create_op(false, None, 2));
    done(&mut s, Some("qemu-img snapshot failed: no space"));
    let v = vm(&s, "web1");
    assert!(v.snapshot_state.snapshots.is_empty());
    assert_eq!(v.snapshot_state.snapshot_error.as_deref(), Some("qemu-img snapshot failed: no space"));
    assert!(s.events.back().unwrap().message.contains("could not be taken: qemu-img snapshot failed: no space"));
}

#[test]
fn the_tree_grows_from_where_the_vm_is() {
    let mut s = with_vm();
    let a = take(&mut s, false);
    let b = take(&mut s, false);
    let snaps = &vm(&s, "web1").snapshot_state;
    assert_eq!((snaps.get(a).unwrap().parent, snaps.get(b).unwrap().parent), (None, Some(a)));
    // Restore A: B stays; the next snapshot is A's child, beside B.
    ok(&mut s, Op::RestoreSnapshot { vm: "web1".into(), snapshot: a.to_string(), worker: 1 });
    assert!(matches!(
        vm(&s, "web1").snapshot_state.snapshot_job.as_ref().unwrap().steps[0],
        SnapshotStep::Revert { .. }
    ));
    done(&mut s, None);
    assert_eq!(vm(&s, "web1").snapshot_state.current_snapshot, Some(a));
    let c = take(&mut s, false);
    let snaps = &vm(&s, "web1").snapshot_state;
    assert_eq!(snaps.get(c).unwrap().parent, Some(a));
    assert_eq!(snaps.descendants(a), vec![b, c]);
    // Deleting A: its children take its parent.
    ok(&mut s, Op::DeleteSnapshot { vm: "web1".into(), snapshot: a.to_string()[..8].to_string(), worker: 1 });
    done(&mut s, None);
    let snaps = &vm(&s, "web1").snapshot_state;
    assert_eq!(ids(&s), vec![b, c]);
    assert_eq!(
        (snaps.get(b).unwrap().parent, snaps.get(c).unwrap().parent, snaps.current_snapshot),
        (None, None, Some(c))
    );
}

#[test]
fn memory_needs_a_running_vm_and_is_taken_by_its_host() {
    let mut s = with_vm();
    let op = create_op(true, None, 2);
    refused(&mut s, op, "vm 'web1' is down: --memory saves a running guest's memory; take the snapshot without it");
    start(&mut s);
    let b = Uuid::new_v4();
    ok(
        &mut s,
        Op::CreateSnapshot {
            vm: "web1".into(),
            id: b,
            description: String::new(),
            memory: true,
            disks: None,
            worker: 2,
        },
    );
    // Its host, not the proposer.
    assert_eq!(vm(&s, "web1").snapshot_state.snapshot_job.as_ref().unwrap().host, 1);
    done(&mut s, None);
    let snap = vm(&s, "web1").snapshot_state.get(b).unwrap().clone();
    assert_eq!((snap.memory, snap.memory_mib, snap.domain_xml.as_deref()), (true, 98, Some("<domain/>")));
    assert!(snap.run_limits.is_some());
    // Restoring it needs the VM down, then starts it from the memory with the limits it had.
    refused(
        &mut s,
        Op::RestoreSnapshot { vm: "web1".into(), snapshot: b.to_string(), worker: 1 },
        "vm 'web1' is up: a snapshot is restored while the VM is down (`corral vm stop web1` first)",
    );
    stop(&mut s);
    ok(&mut s, Op::RestoreSnapshot { vm: "web1".into(), snapshot: b.to_string(), worker: 1 });
    let v = vm(&s, "web1");
    assert_eq!((v.runtime.status, v.snapshot_state.resume_from), (VmStatus::PoweringUp, Some(b)));
    assert_eq!(v.runtime.run_limits, snap.run_limits);
    // Once up, the memory is loaded: a later start boots.
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    ok(&mut s, Op::ReportVm { vm: id, host, epoch, observed: Observed::Up });
    assert_eq!(vm(&s, "web1").snapshot_state.resume_from, None);
}

#[test]
fn preview_commit_erases_later_snapshots() {
    let mut s = with_vm();
    let a = take(&mut s, false);
    let b = take(&mut s, false);
    ok(&mut s, preview_op(a, 1));
    let job = vm(&s, "web1").snapshot_state.snapshot_job.clone().unwrap();
    // The present disks are saved for an undo before anything goes back.
    assert!(matches!(&job.steps[0], SnapshotStep::Take { tag, .. } if tag.starts_with(UNDO_PREFIX)));
    assert!(matches!(&job.steps[1], SnapshotStep::Revert { tag, .. } if *tag == a.to_string()));
    done(&mut s, None);
    let v = vm(&s, "web1");
    assert_eq!(v.snapshot_state.get(a).unwrap().status, SnapshotStatus::InPreview);
    // Nothing new while in preview, and the one in preview cannot be deleted.
    let op = create_op(false, None, 1);
    assert!(s.clone().apply_command(&cmd(T0, op)).0.unwrap_err().to_string().contains("is in preview"));
    let del = Op::DeleteSnapshot { vm: "web1".into(), snapshot: a.to_string(), worker: 1 };
    assert!(s
        .clone()
        .apply_command(&cmd(T0, del))
        .0
        .unwrap_err()
        .to_string()
        .contains("commit or undo the preview first"));
    ok(&mut s, Op::CommitSnapshot { vm: "web1".into(), worker: 1 });
    let steps = vm(&s, "web1").snapshot_state.snapshot_job.clone().unwrap().steps;
    assert!(matches!(&steps[0], SnapshotStep::Drop { tag, .. } if *tag == b.to_string()));
    done(&mut s, None);
    let v = vm(&s, "web1");
    assert_eq!(ids(&s), vec![a]);
    assert_eq!((v.snapshot_state.preview.clone(), v.snapshot_state.current_snapshot), (None, Some(a)));
}

#[test]
fn undo_puts_the_configuration_back() {
    let mut s = with_vm();
    let a = take(&mut s, false);
    ok(&mut s, Op::EditVm { vm: "web1".into(), changes: VmChanges { memory_mib: Some(2048), ..Default::default() } });
    ok(&mut s, preview_op(a, 1));
    done(&mut s, None);
    assert_eq!(vm(&s, "web1").config.memory_mib, 1024);
    ok(&mut s, Op::UndoSnapshot { vm: "web1".into(), worker: 1 });
    let steps = vm(&s, "web1").snapshot_state.snapshot_job.clone().unwrap().steps;
    assert!(matches!(&steps[0], SnapshotStep::Revert { tag, .. } if tag.starts_with(UNDO_PREFIX)));
    done(&mut s, None);
    let v = vm(&s, "web1");
    assert_eq!((v.config.memory_mib, v.snapshot_state.preview.is_none()), (2048, true));
    assert_eq!(v.snapshot_state.get(a).unwrap().status, SnapshotStatus::Ok);
}

#[test]
fn a_snapshot_without_a_disk_previews_without_it_and_a_commit_floats_it() {
    let mut s = with_vm();
    let d1 = s.find_disk("d1").unwrap().id;
    let id = Uuid::new_v4();
    ok(
        &mut s,
        Op::CreateSnapshot {
            vm: "web1".into(),
            id,
            description: String::new(),
            memory: false,
            disks: Some(vec!["d2".into()]),
            worker: 1,
        },
    );
    done(&mut s, None);
    // The snapshot's configuration had d1 too; make one that did not (as if d1 came later).
    s.vms.values_mut().next().unwrap().snapshot_state.snapshots[0].config.disks.retain(|d| *d != d1);
    ok(&mut s, preview_op(id, 1));
    done(&mut s, None);
    let v = vm(&s, "web1");
    assert!(v.attachment(d1).unplugged, "d1 runs unplugged in the preview");
    assert!(s.events.back().unwrap().message.contains("in preview"));
    ok(&mut s, Op::CommitSnapshot { vm: "web1".into(), worker: 1 });
    done(&mut s, None);
    assert!(!vm(&s, "web1").config.disks.contains(&d1));
    assert_eq!(s.disks[&d1].vm, None, "d1 floats");
    assert!(s.events.back().unwrap().message.contains("they were detached from the VM and float"));
}

#[test]
fn the_cap_removes_the_oldest_never_one_in_preview() {
    let mut s = with_vm();
    ok(&mut s, Op::SetSnapshotCap { max: 2 });
    let a = take(&mut s, false);
    let b = take(&mut s, false);
    let c = Uuid::new_v4();
    ok(
        &mut s,
        Op::CreateSnapshot {
            vm: "web1".into(),
            id: c,
            description: String::new(),
            memory: false,
            disks: None,
            worker: 1,
        },
    );
    let job = vm(&s, "web1").snapshot_state.snapshot_job.clone().unwrap();
    assert_eq!(job.kind, SnapshotJobKind::Create { snapshot: c, dropped: vec![a] });
    done(&mut s, None);
    assert_eq!(ids(&s), vec![b, c]);
    assert!(s
        .events
        .back()
        .unwrap()
        .message
        .contains(&format!("The oldest ({a}) was removed: the cluster keeps 2 per VM.")));
    refused(&mut s, Op::SetSnapshotCap { max: 65 }, "max_snapshots: must be 0 (no cap) to 64 (got 65)");
}

#[test]
fn a_host_that_dies_mid_job_unlocks_the_vm() {
    let mut s = with_vm();
    start(&mut s);
    ok(&mut s, create_op(true, None, 2));
    ok(&mut s, Op::HostDown { id: 1, how: crate::HostDownCause::LeaseEnded { silent_ms: 9000, lease_ms: 5000 } });
    let v = vm(&s, "web1");
    assert!(v.snapshot_state.snapshot_job.is_none() && v.snapshot_state.snapshots.is_empty());
    assert!(v.snapshot_state.snapshot_error.as_deref().unwrap().contains("went down while it worked on the images"));
}

#[test]
fn clone_from_a_snapshot_takes_its_configuration() {
    let mut s = with_vm();
    let a = take(&mut s, false);
    ok(&mut s, Op::EditVm { vm: "web1".into(), changes: VmChanges { memory_mib: Some(4096), ..Default::default() } });
    start(&mut s);
    let copies = vec![disk("c1"), disk("c2")];
    let id = Uuid::new_v4();
    let op = Op::CloneFromSnapshot {
        source: "web1".into(),
        snapshot: a.to_string(),
        id,
        name: "old".into(),
        disks: copies,
        macs: vec![],
    };
    ok(&mut s, op);
    let c = vm(&s, "old");
    assert_eq!((c.config.memory_mib, c.config.disks.len(), c.runtime.status), (1024, 2, VmStatus::Down));
    assert!(c.snapshot_state.snapshots.is_empty());
}

#[test]
fn memory_holds_every_plugged_disk_and_a_restore_without_room_changes_nothing() {
    let mut s = with_vm();
    start(&mut s);
    let op = create_op(true, Some(vec!["d1".into()]), 1);
    let e = s.clone().apply_command(&cmd(T0, op)).0.unwrap_err().to_string();
    assert!(e.contains("holds every disk the guest has plugged; disk 'd2' is left out"), "{e}");
    let b = take(&mut s, true);
    stop(&mut s);
    // The snapshot's configuration needs more memory than any host has: refused, nothing changed.
    s.vms.values_mut().next().unwrap().snapshot_state.snapshots[0].config.memory_mib = 64 * 1024;
    let before = s.clone();
    let r =
        s.apply_command(&cmd(T0 + 5, Op::RestoreSnapshot { vm: "web1".into(), snapshot: b.to_string(), worker: 1 }));
    assert!(r.0.is_err(), "{r:?}");
    assert_eq!(s, before, "a refused restore changed the state");
}

#[test]
fn a_locked_ha_vm_waits_and_one_waiting_for_ha_is_not_previewed() {
    let mut s = with_vm();
    ok(&mut s, Op::EditVm { vm: "web1".into(), changes: VmChanges { ha_enabled: Some(true), ..Default::default() } });
    let a = take(&mut s, false);
    start(&mut s);
    ok(&mut s, create_op(false, None, 2));
    // Its host dies mid-job: the job fails, and HA restarts it once nothing works on its images.
    ok(&mut s, Op::HostDown { id: 1, how: crate::HostDownCause::LeaseEnded { silent_ms: 9000, lease_ms: 5000 } });
    assert!(vm(&s, "web1").snapshot_state.snapshot_job.is_none());
    let e = s.clone().apply_command(&cmd(T0, preview_op(a, 2))).0.unwrap_err().to_string();
    assert!(e.contains("waits for its HA restart"), "{e}");
    // A snapshot of it while it waits: the restart waits for the work on its images.
    ok(&mut s, create_op(false, None, 2));
    ok(&mut s, Op::RestartHaVms);
    assert_eq!(vm(&s, "web1").runtime.status, VmStatus::Down, "restarted while its images were worked on");
    done(&mut s, None);
    ok(&mut s, Op::RestartHaVms);
    assert_eq!(vm(&s, "web1").runtime.status, VmStatus::PoweringUp);
}

#[test]
fn a_disk_unplugged_when_a_memory_snapshot_was_taken_stays_after_a_restore() {
    let mut s = with_vm();
    let d2 = s.find_disk("d2").unwrap().id;
    ok(&mut s, Op::PlugDisk { vm: "web1".into(), disk: "d2".into(), plugged: false });
    start(&mut s);
    let b = take(&mut s, true);
    assert_eq!(vm(&s, "web1").snapshot_state.get(b).unwrap().disks.len(), 1, "memory goes with plugged disks");
    stop(&mut s);
    ok(&mut s, Op::RestoreSnapshot { vm: "web1".into(), snapshot: b.to_string(), worker: 1 });
    let v = vm(&s, "web1");
    assert!(v.config.disks.contains(&d2) && v.attachment(d2).unplugged, "d2 stays attached, unplugged");
    assert_eq!(s.disks[&d2].vm, Some(v.id));
}
