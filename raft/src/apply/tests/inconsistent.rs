//! A state that contradicts itself (a record that another names is missing) never makes apply
//! panic: a command that needs the missing record is refused with an internal error and an
//! event; one that does not need it goes on. Also what an apply says it touched.

use super::*;
use crate::command::StartOrder;
use crate::model::{DomainType, Observed, VmStatus};

fn at(s: &mut ClusterState, ms: i64, op: Op) -> Outcome {
    s.apply_command(&cmd(ms, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

/// Three KVM hosts and VM `web` up on host2.
fn web_up_on_host2() -> (ClusterState, Uuid) {
    let mut s = three_hosts([8192, 8192, 8192], 4, DomainType::Kvm);
    let id = Uuid::new_v4();
    at(&mut s, T0, Op::CreateVm { id, spec: spec("web"), disks: vec![], start: None });
    at(&mut s, T0, Op::StartVm { vm: "web".into(), order: StartOrder { host: Some("host2".into()) } });
    let epoch = s.vms[&id].runtime.epoch;
    at(&mut s, T0 + 1, Op::ReportVm { vm: id, host: 2, epoch, observed: Observed::Up });
    (s, id)
}

#[test]
fn migrating_a_vm_up_on_a_host_that_is_not_in_hosts_is_refused_with_an_event() {
    let (mut s, id) = web_up_on_host2();
    s.vms.get_mut(&id).unwrap().runtime.host = Some(99);
    let before = s.clone();
    let r = s.apply_command(&cmd(T0 + 5, Op::MigrateVm { vm: "web".into(), to: None }));
    let want = "the cluster's state is inconsistent: vm 'web' is up on no host of the cluster";
    assert_eq!(r.0, Err(ClusterError::Internal(want.into())));
    let last = s.events.back().unwrap();
    assert_eq!(last.kind, EventKind::VmMigration);
    assert_eq!(last.message, format!("A command was refused: {want}."));
    // Nothing but the event changed.
    s.events.pop_back();
    s.next_event_index -= 1;
    assert_eq!(s, before);
}

#[test]
fn a_vm_pinned_to_a_host_that_is_not_in_hosts_is_refused_a_start_in_words() {
    let mut s = three_hosts([8192, 8192, 8192], 4, DomainType::Kvm);
    let id = Uuid::new_v4();
    at(&mut s, T0, Op::CreateVm { id, spec: spec("web"), disks: vec![], start: None });
    s.vms.get_mut(&id).unwrap().config.pinned_hosts = vec![99];
    refused(
        &mut s,
        Op::StartVm { vm: "web".into(), order: StartOrder { host: None } },
        "vm 'web' is pinned to node 99; none of them is up",
    );
}

#[test]
fn a_host_going_down_while_its_vm_migrates_to_a_host_not_in_hosts_takes_the_vm_down() {
    let (mut s, id) = web_up_on_host2();
    let vm = s.vms.get_mut(&id).unwrap();
    vm.migration_state.migrating_to = Some(99);
    vm.runtime.status = VmStatus::Migrating;
    at(&mut s, T0 + 5, Op::HostDown { id: 2, how: "its lease ended".into() });
    let vm = &s.vms[&id];
    assert_eq!((vm.runtime.status, vm.runtime.host, vm.migration_state.migrating_to), (VmStatus::Down, None, None));
}

#[test]
fn reports_about_a_vm_on_a_host_not_in_hosts_are_applied_with_its_id_for_a_name() {
    let (mut s, id) = web_up_on_host2();
    s.vms.get_mut(&id).unwrap().runtime.host = Some(99);
    let epoch = s.vms[&id].runtime.epoch;
    let down = Observed::Down { cause: "crashed".into(), on_purpose: false };
    at(&mut s, T0 + 5, Op::ReportVm { vm: id, host: 99, epoch, observed: down });
    assert_eq!(s.vms[&id].runtime.status, VmStatus::Down);
    assert_eq!(s.events.back().unwrap().message, "VM web went down unexpectedly on host node 99: crashed.");
}

#[test]
fn a_vm_whose_disk_record_is_missing_is_edited_and_deleted_without_a_panic() {
    let mut s = bootstrapped();
    let (id, disk) = (Uuid::new_v4(), Uuid::new_v4());
    let d = Disk {
        id: disk,
        name: "web-disk".into(),
        size_mib: 1024,
        file: "web-disk.qcow2".into(),
        format: "qcow2".into(),
        vm: None,
        created_ms: 0,
        base: None,
    };
    at(&mut s, T0, Op::CreateVm { id, spec: spec("web"), disks: vec![d], start: None });
    s.disks.remove(&disk);
    let changes = VmChanges { description: Some("orphaned".into()), ..Default::default() };
    at(&mut s, T0 + 1, Op::EditVm { vm: "web".into(), changes });
    assert!(s.ovf_document(id).is_some_and(|doc| !doc.contains("web-disk")));
    let Outcome::VmDeleted { files, .. } = at(&mut s, T0 + 2, Op::DeleteVm { vm: "web".into(), keep_disks: false })
    else {
        panic!("not deleted")
    };
    assert!(files.is_empty(), "no record, no file to remove");
    assert!(s.vms.is_empty());
}

#[test]
fn an_apply_returns_the_vms_whose_documents_it_changed() {
    let (mut s, id) = web_up_on_host2();
    let changes = VmChanges { memory_mib: Some(2048), ..Default::default() };
    let edit = s.apply_entry(&cmd(T0 + 5, Op::EditVm { vm: "web".into(), changes }));
    assert_eq!(edit.touched, BTreeSet::from([id]), "the edited VM");
    let epoch = s.vms[&id].runtime.epoch;
    let up = s.apply_entry(&cmd(T0 + 6, Op::ReportVm { vm: id, host: 2, epoch, observed: Observed::Up }));
    assert!(up.touched.is_empty(), "a report changes no configuration");
    // Losing its host makes the pending next-run memory the VM's own: a new document.
    let down = s.apply_entry(&cmd(T0 + 7, Op::HostDown { id: 2, how: "its lease ended".into() }));
    assert_eq!(down.touched, BTreeSet::from([id]));
    assert_eq!(s.vms[&id].config.memory_mib, 2048);
}

#[test]
fn removing_a_host_returns_the_vms_that_were_pinned_to_it() {
    let mut s = three_hosts([8192, 8192, 8192], 4, DomainType::Kvm);
    let id = Uuid::new_v4();
    at(&mut s, T0, Op::CreateVm { id, spec: spec("web"), disks: vec![], start: None });
    s.vms.get_mut(&id).unwrap().config.pinned_hosts = vec![3, 1];
    let removed = s.apply_entry(&cmd(T0 + 5, Op::RemoveHost { id: 3 }));
    assert!(removed.reply.0.is_ok());
    assert_eq!(removed.touched, BTreeSet::from([id]));
    assert_eq!(s.vms[&id].config.pinned_hosts, [1]);
}
