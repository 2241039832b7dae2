//! Changing a running VM (cluster level 3): each now/next-run decision, the migrate-then-scale
//! decision, the level gate, device commands and a host's report of a hot-plug it could not do.

use super::*;
use crate::apply::edit::{memory_decision, vcpus_decision, Decision};
use crate::command::StartOrder;
use crate::model::{Attachment, DiskInterface, DomainType, LiveDevices, Nic, Observed, VmStatus, HOTPLUG_LEVEL};

fn level3(memory_mib: [u64; 3], cpus: u32) -> ClusterState {
    let mut s = super::three_hosts(memory_mib, cpus, DomainType::Kvm);
    s.cluster.as_mut().unwrap().level = HOTPLUG_LEVEL;
    s
}

fn ok(s: &mut ClusterState, op: Op) -> Outcome {
    s.apply_command(&cmd(T0 + 10, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

fn vm<'a>(s: &'a ClusterState, name: &str) -> &'a Vm {
    s.find_vm(name).unwrap()
}

/// A VM of `memory_mib` and `vcpus` up on `host` (its limits the defaults).
fn running(s: &mut ClusterState, name: &str, memory_mib: u64, vcpus: u32, host: &str) {
    let spec = VmSpec { memory_mib, vcpus, ..super::spec(name) };
    ok(s, Op::CreateVm { id: Uuid::new_v4(), spec, disks: vec![], start: None });
    ok(s, Op::StartVm { vm: name.into(), order: StartOrder { host: Some(host.into()) } });
    let v = vm(s, name);
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    ok(s, Op::ReportVm { vm: id, host, epoch, observed: Observed::Up });
}

fn edit(s: &mut ClusterState, name: &str, changes: VmChanges) -> Result<Outcome, crate::ClusterError> {
    s.apply_command(&cmd(T0 + 20, Op::EditVm { vm: name.into(), changes })).0
}

#[test]
fn new_vms_get_default_limits_at_level_3_only() {
    let mut s = level3([8192; 3], 4);
    running(&mut s, "web1", 1024, 1, "host1");
    let v = vm(&s, "web1");
    assert_eq!((v.config.max_memory_mib, v.config.max_vcpus), (Some(4096), Some(4)));
    let l = v.runtime.run_limits.unwrap();
    assert_eq!((l.boot_memory_mib, l.max_memory_mib, l.max_vcpus), (1024, 4096, 4));
    let mut old = super::three_hosts([8192; 3], 4, DomainType::Kvm);
    running(&mut old, "web1", 1024, 1, "host1");
    assert_eq!(vm(&old, "web1").config.max_memory_mib, None);
    assert_eq!(vm(&old, "web1").runtime.run_limits, None);
}

#[test]
fn each_hot_plug_decision() {
    let mut s = level3([8192; 3], 4);
    running(&mut s, "web1", 1024, 1, "host1");
    let v = vm(&s, "web1").clone();
    assert_eq!(memory_decision(&v, 2048, false), Decision::HotPlug);
    assert_eq!(memory_decision(&v, 2048, true), Decision::NextRun(None));
    let more = memory_decision(&v, 8192, false);
    assert_eq!(more, Decision::NextRun(Some("8192 MiB is more than its max memory of 4096 MiB".into())));
    assert!(matches!(memory_decision(&v, 512, false), Decision::NextRun(Some(w)) if w.contains("only hot-plugged")));
    assert!(matches!(memory_decision(&v, 1100, false), Decision::NextRun(Some(w)) if w.contains("steps of 128 MiB")));
    assert_eq!(vcpus_decision(&v, 3, false), Decision::HotPlug);
    assert!(matches!(vcpus_decision(&v, 5, false), Decision::NextRun(Some(w)) if w.contains("max vCPUs of 4")));
    // A VM started before level 3 has no room: every hot-plug field waits, saying why.
    let mut old = v.clone();
    old.runtime.run_limits = None;
    assert!(matches!(memory_decision(&old, 2048, false), Decision::NextRun(Some(w)) if w.contains("without room")));
    assert!(matches!(vcpus_decision(&old, 2, false), Decision::NextRun(Some(_))));
}

#[test]
fn hot_changes_bump_the_sequence_and_next_run_ones_do_not() {
    let mut s = level3([8192; 3], 4);
    running(&mut s, "web1", 1024, 1, "host1");
    edit(&mut s, "web1", VmChanges { memory_mib: Some(2048), vcpus: Some(2), ..Default::default() }).unwrap();
    let v = vm(&s, "web1");
    assert_eq!((v.config.memory_mib, v.config.vcpus, v.runtime.hot_seq), (2048, 2, 1));
    assert_eq!(v.config.next_run, None);
    edit(&mut s, "web1", VmChanges { memory_mib: Some(3072), next_run: true, ..Default::default() }).unwrap();
    let v = vm(&s, "web1");
    assert_eq!((v.config.memory_mib, v.runtime.hot_seq), (2048, 1));
    assert_eq!(v.config.next_run.as_ref().and_then(|n| n.memory_mib), Some(3072));
    // The OS is a next-run field, and checked against oVirt's names.
    edit(&mut s, "web1", VmChanges { os: Some("rhel_9x64".into()), ..Default::default() }).unwrap();
    assert_eq!(vm(&s, "web1").config.os, "other_linux");
    let e = edit(&mut s, "web1", VmChanges { os: Some("banana".into()), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("'banana' is not an OS name"), "{e}");
    // Asking for what it runs with clears the pending change, with an event.
    edit(&mut s, "web1", VmChanges { memory_mib: Some(2048), os: Some("other_linux".into()), ..Default::default() })
        .unwrap();
    assert_eq!(vm(&s, "web1").config.next_run, None);
    assert!(s.events.iter().any(|e| e.message.contains("its pending next-run configuration cleared")));
}

#[test]
fn a_scale_up_its_host_cannot_hold_migrates_first_or_is_refused() {
    // 4 CPUs x overcommit 4 = 16 vCPUs a host.
    let mut s = level3([8192; 3], 4);
    running(&mut s, "big", 1024, 14, "host1");
    running(&mut s, "web1", 1024, 2, "host1");
    edit(&mut s, "web1", VmChanges { max_vcpus: Some(8), ..Default::default() }).unwrap();
    // The limits a running VM has are those it started with: raise them for this test.
    s.vms.values_mut().find(|v| v.config.name == "web1").unwrap().runtime.run_limits.as_mut().unwrap().max_vcpus = 8;
    let out = edit(&mut s, "web1", VmChanges { vcpus: Some(4), ..Default::default() }).unwrap();
    let Outcome::Vm(v) = out else { panic!() };
    assert_eq!(v.runtime.status, VmStatus::Migrating);
    assert!(v.migration_state.migrating_to.is_some_and(|h| h != 1));
    assert_eq!((v.config.vcpus, v.runtime.hot_seq), (4, 1));
    // Nowhere has room: refused with the numbers, nothing changed.
    let mut s = level3([8192; 3], 4);
    for (name, host) in [("a", "host1"), ("b", "host2"), ("c", "host3")] {
        running(&mut s, name, 1024, 14, host);
    }
    running(&mut s, "web1", 1024, 2, "host1");
    let before = s.clone();
    let e = edit(&mut s, "web1", VmChanges { vcpus: Some(3), ..Default::default() }).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("host host1 has room for") && text.contains("needs 1024 MiB and 3 vCPUs"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(s, before);
}

#[test]
fn device_commands_need_level_3_and_keep_their_rules() {
    let mut old = super::three_hosts([8192; 3], 4, DomainType::Kvm);
    create(&mut old, "web1");
    let nic = Nic::new("default", "52:54:00:00:00:09");
    refused(
        &mut old,
        Op::AddNic { vm: "web1".into(), nic: nic.clone() },
        "vm nic add needs cluster level 3: run `corral cluster upgrade` first",
    );
    let mut s = level3([8192; 3], 4);
    create(&mut s, "web1");
    ok(&mut s, Op::AddNic { vm: "web1".into(), nic: nic.clone() });
    ok(&mut s, Op::AddNic { vm: "web1".into(), nic: Nic::new("default", "52:54:00:00:00:0a") });
    assert_eq!((0..2).map(|i| vm(&s, "web1").nic_name(i)).collect::<Vec<_>>(), ["nic1", "nic2"]);
    refused(&mut s, Op::AddNic { vm: "web1".into(), nic }, "MAC 52:54:00:00:00:09 is in use by vm 'web1'");
    let disk = Disk {
        id: Uuid::new_v4(),
        name: "data1".into(),
        size_mib: 64,
        file: "data1.qcow2".into(),
        format: "qcow2".into(),
        vm: None,
        created_ms: 0,
        base: None,
    };
    ok(&mut s, Op::CreateDisk { disk: disk.clone() });
    let scsi = Attachment { interface: DiskInterface::Scsi, optional: true, ..Attachment::default() };
    ok(&mut s, Op::AttachDisk { vm: "web1".into(), disk: "data1".into(), new: None, attachment: scsi });
    let a = vm(&s, "web1").attachment(disk.id);
    // The first disk of a VM boots, unless it is optional.
    assert_eq!((a.interface, a.optional, a.bootable, a.unplugged), (DiskInterface::Scsi, true, false, false));
    refused(
        &mut s,
        Op::DeleteDisk { disk: "data1".into() },
        "disk 'data1' is attached to vm 'web1'; detach it first (`corral vm disk detach web1 data1`)",
    );
    refused(
        &mut s,
        Op::ResizeDisk { disk: "data1".into(), size_mib: 32 },
        "size: disks only grow: disk 'data1' has 64 MiB (got 32 MiB)",
    );
    ok(&mut s, Op::DetachDisk { vm: "web1".into(), disk: "data1".into() });
    ok(&mut s, Op::DeleteDisk { disk: "data1".into() });
    assert!(s.disks.is_empty());
}

#[test]
fn a_failed_hot_plug_leaves_the_configuration_as_what_runs() {
    let mut s = level3([8192; 3], 4);
    running(&mut s, "web1", 1024, 1, "host1");
    ok(&mut s, Op::AddNic { vm: "web1".into(), nic: Nic::new("default", "52:54:00:00:00:09") });
    let v = vm(&s, "web1").clone();
    assert!(!v.config.nics[0].unplugged && v.runtime.hot_seq == 1);
    // The host could not plug it: the report says what runs, and apply follows it.
    let live = LiveDevices { memory_mib: 1024, vcpus: 1, disks: vec![], nics: vec![], cdrom: None };
    let observed = Observed::Hotplug { seq: 1, error: Some("no PCI slot".into()), live };
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    let applied = s.apply_entry(&cmd(T0 + 30, Op::ReportVm { vm: id, host, epoch, observed }));
    assert!(applied.touched.contains(&id), "its OVF document changes");
    let v = vm(&s, "web1");
    assert!(v.config.nics[0].unplugged, "{v:?}");
    assert_eq!((v.runtime.hot_done, v.runtime.hot_error.as_deref()), (1, Some("no PCI slot")));
    assert!(s.events.iter().any(|e| e.message.starts_with("Could not change VM web1 on host host1: no PCI slot.")));
}
