//! The library (cluster level 5): ISOs, templates and offerings, what a new VM takes from them,
//! stateless VMs, and the refusals (below level 5, in use, a running VM).

use super::*;
use crate::command::StartOrder;
use crate::model::{
    Attachment, BootDevice, CloudInit, DiskInterface, DomainType, FromTemplate, Iso, Observed, Offering,
    OfferingChanges, Template, TemplateDisk, VmStatus, LIBRARY_LEVEL, SNAPSHOT_LEVEL,
};

fn level5() -> ClusterState {
    let mut s = super::three_hosts([8192; 3], 4, DomainType::Kvm);
    s.cluster.as_mut().unwrap().level = LIBRARY_LEVEL;
    s
}

fn ok(s: &mut ClusterState, op: Op) -> Outcome {
    s.apply_command(&cmd(T0 + 10, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

fn disk(name: &str, base: Option<Uuid>) -> Disk {
    let id = Uuid::new_v4();
    Disk {
        id,
        name: name.into(),
        size_mib: 64,
        file: format!("{id}.qcow2"),
        format: "qcow2".into(),
        vm: None,
        created_ms: 0,
        base,
    }
}

fn iso(name: &str) -> Iso {
    let id = Uuid::new_v4();
    Iso {
        id,
        name: name.into(),
        description: String::new(),
        file: format!("iso-{id}.iso"),
        size_bytes: 1 << 20,
        sha256: "00".into(),
        bootable: true,
        os: "debian_12".into(),
        created_ms: 0,
    }
}

fn offering(name: &str, vcpus: u32, memory_mib: u64, ha: bool) -> Offering {
    Offering { id: Uuid::new_v4(), name: name.into(), description: String::new(), vcpus, memory_mib, ha, created_ms: 0 }
}

/// A down VM `src` (two disks, the second on SCSI) and template `t1` of it.
fn with_template() -> (ClusterState, Template) {
    let mut s = level5();
    let (d0, d1) = (disk("src-d0", None), disk("src-d1", None));
    let sp = VmSpec { os: Some("rhel_9x64".into()), ..spec("src") };
    ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: vec![d0.clone(), d1.clone()], start: None });
    let scsi = Attachment { interface: DiskInterface::Scsi, ..Attachment::default() };
    s.find_vm_mut("src").unwrap().config.attachments.insert(d1.id, scsi);
    let base = |d: &Disk, i| TemplateDisk {
        id: Uuid::new_v4(),
        name: format!("t1-base{i}"),
        file: format!("base-{}.qcow2", d.id),
        size_mib: d.size_mib,
        format: "qcow2".into(),
        attachment: Attachment::default(),
    };
    let t = Template {
        id: Uuid::new_v4(),
        name: "t1".into(),
        description: "golden".into(),
        config: Box::new(Vm::new(Uuid::nil(), "", 1, 1, 0).config),
        disks: vec![base(&d0, 0), base(&d1, 1)],
        from_vm: String::new(),
        created_ms: 0,
    };
    let Outcome::Template(t) = ok(&mut s, Op::CreateTemplate { vm: "src".into(), template: t }) else { panic!() };
    (s, *t)
}

#[test]
fn below_level_5_the_library_is_refused() {
    let mut s = super::three_hosts([8192; 3], 4, DomainType::Kvm);
    s.cluster.as_mut().unwrap().level = SNAPSHOT_LEVEL;
    let want = |what: &str| format!("{what} needs cluster level 5: run `corral cluster upgrade` first");
    refused(&mut s, Op::AddIso { iso: iso("deb") }, &want("iso add"));
    refused(&mut s, Op::CreateOffering { offering: offering("small", 1, 512, false) }, &want("offering create"));
    let sp = VmSpec { stateless: true, ..spec("w") };
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: vec![], start: None },
        &want("templates, offerings, ISOs, boot order, cloud-init and stateless VMs"),
    );
    // An imported document's level-5 fields are dropped, as an earlier member would.
    let mut vm = Vm::new(Uuid::new_v4(), "imp", 256, 1, T0);
    vm.config.stateless = true;
    vm.config.offering = Some("small".into());
    ok(&mut s, Op::ImportVm { vm: Box::new(vm), disks: vec![], engine: false, start: None });
    let imp = s.find_vm("imp").unwrap();
    assert!(!imp.config.stateless && imp.config.offering.is_none());
}

#[test]
fn isos_are_refused_while_a_vm_has_them() {
    let mut s = level5();
    let deb = iso("deb");
    ok(&mut s, Op::AddIso { iso: deb.clone() });
    refused(&mut s, Op::AddIso { iso: iso("deb") }, "iso 'deb' already exists");
    let sp = VmSpec { cdrom: Some(deb.file.clone()), ..spec("web1") };
    let Outcome::Vm(vm) = ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: vec![], start: None }) else {
        panic!()
    };
    assert_eq!(vm.config.boot_order, [BootDevice::Cdrom, BootDevice::Disk], "a new VM with an ISO boots from it");
    refused(
        &mut s,
        Op::DeleteIso { iso: "deb".into() },
        "iso 'deb' is in the CD-ROM drive of vm web1: eject it first (`corral vm cd VM --eject`)",
    );
    let eject = VmChanges { cdrom: Some(None), ..VmChanges::default() };
    ok(&mut s, Op::EditVm { vm: "web1".into(), changes: eject });
    assert_eq!(ok(&mut s, Op::DeleteIso { iso: "deb".into() }), Outcome::Removed { files: vec![deb.file] });
    assert!(s.library.isos.is_empty());
}

#[test]
fn a_template_gives_new_vms_its_configuration_and_bases() {
    let (mut s, t) = with_template();
    assert_eq!((t.config.memory_mib, t.config.vcpus, t.config.os.as_str()), (1024, 2, "rhel_9x64"));
    assert_eq!(t.disks[1].attachment.interface, DiskInterface::Scsi, "the bases keep their attachments");
    assert!(t.config.disks.is_empty() && t.config.attachments.is_empty());

    // Thin: overlays naming their bases; the configuration is the template's, the name its own.
    let disks: Vec<Disk> = t.disks.iter().enumerate().map(|(i, b)| disk(&format!("thin-d{i}"), Some(b.id))).collect();
    let from = FromTemplate { id: t.id, name: t.name.clone(), thin: true };
    let sp = VmSpec { template: Some(from.clone()), memory_mib: 1024, vcpus: 2, ..spec("thin1") };
    let Outcome::Vm(vm) = ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: disks.clone(), start: None })
    else {
        panic!()
    };
    assert_eq!(vm.config.os, "rhel_9x64");
    assert_eq!(vm.config.from_template, Some(from.clone()));
    assert_eq!(vm.attachment(disks[1].id).interface, DiskInterface::Scsi);
    // An overlay that names no base of the template is refused.
    let wrong = vec![disk("x0", None), disk("x1", None)];
    let sp = VmSpec { template: Some(from), ..spec("thin2") };
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: wrong, start: None },
        "template: disk x0 is no overlay of t1-base0",
    );

    refused(
        &mut s,
        Op::DeleteTemplate { template: "t1".into() },
        "template 't1' is the base of thin disks of vm thin1: delete them (or clone the VMs) first",
    );
    ok(&mut s, Op::DeleteVm { vm: "thin1".into(), keep_disks: true });
    refused(
        &mut s,
        Op::DeleteTemplate { template: "t1".into() },
        "template 't1' is the base of thin disks of disk thin-d0, disk thin-d1: delete them (or clone the VMs) first",
    );
    ok(&mut s, Op::DeleteDisks { ids: disks.iter().map(|d| d.id).collect() });
    let Outcome::Removed { files } = ok(&mut s, Op::DeleteTemplate { template: "t1".into() }) else { panic!() };
    assert_eq!(files, t.disks.iter().map(|d| d.file.clone()).collect::<Vec<_>>());
}

#[test]
fn a_template_is_made_of_a_down_vm_only() {
    let (mut s, t) = with_template();
    ok(&mut s, Op::StartVm { vm: "src".into(), order: StartOrder::default() });
    let again = Template { id: Uuid::new_v4(), name: "t2".into(), ..t.clone() };
    refused(
        &mut s,
        Op::CreateTemplate { vm: "src".into(), template: again },
        "vm 'src' is powering_up; a template is made of a down VM: shut it down first",
    );
    refused(&mut s, Op::CreateTemplate { vm: "src".into(), template: t }, "template 't1' already exists");
}

#[test]
fn offerings_size_vms_and_edits_scale_them() {
    let mut s = level5();
    ok(&mut s, Op::CreateOffering { offering: offering("small", 1, 512, false) });
    ok(&mut s, Op::CreateOffering { offering: offering("large", 2, 2048, true) });
    let sp = VmSpec { offering: Some("small".into()), ..spec("web1") };
    let Outcome::Vm(vm) = ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: vec![], start: None }) else {
        panic!()
    };
    assert_eq!((vm.config.memory_mib, vm.config.vcpus, vm.config.offering.as_deref()), (512, 1, Some("small")));
    let to_large = VmChanges { offering: Some("large".into()), ..VmChanges::default() };
    let Outcome::Vm(vm) = ok(&mut s, Op::EditVm { vm: "web1".into(), changes: to_large }) else { panic!() };
    assert_eq!((vm.config.memory_mib, vm.config.vcpus, vm.config.ha.enabled), (2048, 2, true));
    let both = VmChanges { offering: Some("small".into()), memory_mib: Some(256), ..VmChanges::default() };
    refused(
        &mut s,
        Op::EditVm { vm: "web1".into(), changes: both },
        "offering: an offering sets the memory and vCPUs: give --offering or --memory/--vcpus, not both",
    );
    let changes = OfferingChanges { vcpus: Some(4), ..OfferingChanges::default() };
    ok(&mut s, Op::EditOffering { offering: "large".into(), changes });
    assert_eq!(s.find_vm("web1").unwrap().config.vcpus, 2, "a VM keeps its size when its offering changes");
    ok(&mut s, Op::DeleteOffering { offering: "large".into() });
    assert_eq!(s.find_vm("web1").unwrap().config.offering, None);
}

#[test]
fn a_stateless_vm_has_no_snapshots_and_changes_at_its_next_run() {
    let mut s = level5();
    ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![disk("d0", None)], start: None });
    ok(&mut s, Op::StartVm { vm: "web1".into(), order: StartOrder::default() });
    let on = VmChanges { stateless: Some(true), ..VmChanges::default() };
    let Outcome::Vm(vm) = ok(&mut s, Op::EditVm { vm: "web1".into(), changes: on }) else { panic!() };
    assert!(!vm.config.stateless, "not while it runs");
    assert_eq!(vm.config.next_run.as_ref().and_then(|n| n.stateless), Some(true));
    let snap = Op::CreateSnapshot {
        vm: "web1".into(),
        id: Uuid::new_v4(),
        description: String::new(),
        memory: false,
        disks: None,
        worker: 1,
    };
    refused(
        &mut s,
        snap,
        "vm 'web1' is stateless: its disks go back to how they were at each start, so it has no snapshots \
         (`corral vm edit web1 --stateless false` first)",
    );
    // A disk it did not start with is neither attached nor plugged while it runs stateless.
    s.find_vm_mut("web1").unwrap().config.stateless = true;
    let extra = disk("d1", None);
    let attach = Op::AttachDisk {
        vm: "web1".into(),
        disk: extra.name.clone(),
        new: Some(extra),
        attachment: Attachment::default(),
    };
    let e = s.apply_command(&cmd(T0, attach)).0.unwrap_err();
    assert!(e.to_string().contains("is stateless and running"), "{e}");
    s.find_vm_mut("web1").unwrap().config.stateless = false;
    ok(&mut s, Op::StopVm { vm: "web1".into(), reason: None });
    let host = s.find_vm("web1").unwrap().runtime.host.unwrap();
    let epoch = s.find_vm("web1").unwrap().runtime.epoch;
    let down = Observed::Down { cause: crate::DownCause::PoweredOff, on_purpose: true };
    let id = s.vm_names["web1"];
    ok(&mut s, Op::ReportVm { vm: id, host, epoch, observed: down });
    let vm = s.find_vm("web1").unwrap();
    assert_eq!(vm.runtime.status, VmStatus::Down);
    assert!(vm.config.stateless, "stateless from the next run on");
}

#[test]
fn raw_disks_and_the_hosted_engine_are_never_stateless() {
    let mut s = level5();
    let raw = Disk { format: "raw".into(), ..disk("r0", None) };
    ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: spec("web1"), disks: vec![raw], start: None });
    let on = VmChanges { stateless: Some(true), ..VmChanges::default() };
    refused(
        &mut s,
        Op::EditVm { vm: "web1".into(), changes: on.clone() },
        "vm 'web1' has disks that are not qcow2 (r0), which cannot go back at each stop: it cannot be stateless",
    );
    ok(&mut s, Op::CreateVm { id: Uuid::new_v4(), spec: spec("engine"), disks: vec![], start: None });
    s.find_vm_mut("engine").unwrap().config.hosted_engine = true;
    refused(
        &mut s,
        Op::EditVm { vm: "engine".into(), changes: on },
        "vm 'engine' is the hosted engine, which keeps its disks: it cannot be stateless",
    );
}

#[test]
fn a_cloud_init_seed_is_bounded() {
    let mut s = level5();
    let big = CloudInit { user_data: "#cloud-config\n".to_string() + &"a: b\n".repeat(20_000), ..CloudInit::default() };
    let sp = VmSpec { cloud_init: Some(big), ..spec("web1") };
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: vec![], start: None },
        "cloud_init: must be at most 65536 bytes (got 100014)",
    );
    let bad_key =
        CloudInit { user_data: "#cloud-config\n".into(), ssh_keys: vec!["rsa xyz".into()], ..CloudInit::default() };
    let sp = VmSpec { cloud_init: Some(bad_key), ..spec("web1") };
    let e = s
        .apply_command(&cmd(T0, Op::CreateVm { id: Uuid::new_v4(), spec: sp, disks: vec![], start: None }))
        .0
        .unwrap_err();
    assert!(e.to_string().contains("must be one public key line"), "{e}");
}
