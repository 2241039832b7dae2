//! The VM lifecycle as commands on two hosts: placement, shutdown and unexpected downs,
//! capacity refusals, migration's host switch, delete and clone, next-run edits, and
//! reboot, suspend and resume.

use super::*;
use crate::command::StartOrder;
use crate::model::{DomainType, Observed, PowerState, VmStatus};

/// A cluster of two hosts with 2 GiB and 2 CPUs each, of the given domain type.
fn two_hosts(domain_type: DomainType) -> ClusterState {
    let mut s = bootstrapped();
    let facts = HostFacts { cpus: 2, memory_mib: 2048, libvirt_uri: "x".into(), domain_type };
    s.hosts.get_mut(&1).unwrap().facts = facts.clone();
    let r = s.apply_command(&cmd(
        T0,
        Op::RegisterHost { token_hash: "good".into(), name: "host2".into(), address: "a:2".into(), facts },
    ));
    assert!(r.0.is_ok());
    s.apply_command(&cmd(T0, Op::HostJoined { id: 2, voter: true }));
    s
}

fn op(s: &mut ClusterState, op: Op) -> Result<Outcome, ClusterError> {
    s.apply_command(&cmd(T0 + 100, op)).0
}

fn vm<'a>(s: &'a ClusterState, name: &str) -> &'a Vm {
    s.find_vm(name).unwrap()
}

fn report(s: &mut ClusterState, name: &str, observed: Observed) {
    let v = vm(s, name);
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    op(s, Op::ReportVm { vm: id, host, epoch, observed }).unwrap();
}

fn start(s: &mut ClusterState, name: &str, host: Option<&str>) -> Result<Outcome, ClusterError> {
    op(s, Op::StartVm { vm: name.into(), order: StartOrder { host: host.map(String::from) } })
}

#[test]
fn start_places_on_the_host_with_most_free_memory_and_reports_drive_status() {
    let mut s = two_hosts(DomainType::Kvm);
    create(&mut s, "a");
    create(&mut s, "b");
    start(&mut s, "a", Some("host1")).unwrap();
    assert_eq!((vm(&s, "a").runtime.status, vm(&s, "a").runtime.host), (VmStatus::PoweringUp, Some(1)));
    start(&mut s, "b", None).unwrap();
    assert_eq!(vm(&s, "b").runtime.host, Some(2), "host2 has more free memory");
    report(&mut s, "a", Observed::Up);
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::Up);
    assert_eq!(s.events.back().unwrap().message, "VM a is up on host host1.");

    // A report from an older assignment changes nothing.
    let before = s.clone();
    let id = vm(&s, "a").id;
    op(
        &mut s,
        Op::ReportVm { vm: id, host: 1, epoch: 0, observed: Observed::Down { cause: "x".into(), on_purpose: false } },
    )
    .unwrap();
    op(
        &mut s,
        Op::ReportVm { vm: id, host: 2, epoch: 1, observed: Observed::Down { cause: "x".into(), on_purpose: false } },
    )
    .unwrap();
    assert_eq!(s, before);

    refused(
        &mut s,
        Op::StartVm { vm: "a".into(), order: StartOrder::default() },
        "vm 'a' is up on host host1; it can only be started when down",
    );
    refused(
        &mut s,
        Op::DeleteVm { vm: "a".into(), keep_disks: false },
        "vm 'a' is up; shut it down before deleting it",
    );
}

#[test]
fn shutdown_keeps_its_reason_and_down_releases_the_host() {
    let mut s = two_hosts(DomainType::Kvm);
    create(&mut s, "a");
    start(&mut s, "a", None).unwrap();
    report(&mut s, "a", Observed::Up);
    op(&mut s, Op::ShutdownVm { vm: "a".into(), reason: Some("kernel update".into()), timeout_s: 120 }).unwrap();
    let v = vm(&s, "a");
    assert_eq!(
        (v.runtime.status, v.runtime.desired, v.runtime.shutdown_deadline_ms),
        (VmStatus::PoweringDown, PowerState::Down, Some(T0 + 100 + 120_000))
    );
    // A power off while shutting down moves the deadline to now.
    op(&mut s, Op::StopVm { vm: "a".into(), reason: Some("kernel update".into()) }).unwrap();
    assert_eq!(vm(&s, "a").runtime.shutdown_deadline_ms, Some(T0 + 100));
    report(&mut s, "a", Observed::Down { cause: "powered off".into(), on_purpose: false });
    let v = vm(&s, "a");
    assert_eq!(
        (v.runtime.status, v.runtime.host, v.runtime.stop_reason.as_deref()),
        (VmStatus::Down, None, Some("kernel update"))
    );
    assert_eq!(s.events.back().unwrap().message, "VM a is down on host host1 (reason: kernel update).");
    refused(&mut s, Op::StopVm { vm: "a".into(), reason: None }, "vm 'a' is already down");
}

#[test]
fn an_unexpected_down_is_recorded_with_its_cause() {
    let mut s = two_hosts(DomainType::Kvm);
    create(&mut s, "a");
    start(&mut s, "a", None).unwrap();
    report(&mut s, "a", Observed::Up);
    let host = vm(&s, "a").runtime.host.unwrap();
    report(&mut s, "a", Observed::Down { cause: "shut down from inside the guest".into(), on_purpose: true });
    let v = vm(&s, "a");
    assert_eq!((v.runtime.status, v.runtime.desired, v.runtime.host), (VmStatus::Down, PowerState::Down, None));
    assert_eq!(
        s.events.back().unwrap().message,
        format!("VM a went down unexpectedly on host {}: shut down from inside the guest.", s.host_name(host))
    );
}

#[test]
fn capacity_refusals_give_the_numbers_and_change_nothing() {
    let mut s = two_hosts(DomainType::Kvm);
    for (name, mem) in [("big1", 1536), ("big2", 1536), ("big3", 1024)] {
        s.apply_command(&cmd(
            T0,
            Op::CreateVm {
                id: Uuid::new_v4(),
                spec: VmSpec { memory_mib: mem, ..spec(name) },
                disks: vec![],
                start: None,
            },
        ));
    }
    start(&mut s, "big1", None).unwrap();
    start(&mut s, "big2", None).unwrap();
    refused(
        &mut s,
        Op::StartVm { vm: "big3".into(), order: StartOrder::default() },
        "not enough capacity for vm 'big3' (1024 MiB, 2 vCPUs): host1 has 512 MiB and 6 vCPUs free; host2 has 512 MiB and 6 vCPUs free",
    );
    refused(
        &mut s,
        Op::StartVm { vm: "big3".into(), order: StartOrder { host: Some("host2".into()) } },
        "host host2 has not enough room for vm 'big3' (1024 MiB, 2 vCPUs): 512 MiB and 6 vCPUs free",
    );
    refused(
        &mut s,
        Op::StartVm { vm: "big3".into(), order: StartOrder { host: Some("nope".into()) } },
        "host 'nope' not found",
    );
    // create --start that cannot be placed creates nothing.
    refused(
        &mut s,
        Op::CreateVm { id: Uuid::new_v4(), spec: VmSpec { memory_mib: 1024, ..spec("big4") }, disks: vec![], start: Some(StartOrder::default()) },
        "not enough capacity for vm 'big4' (1024 MiB, 2 vCPUs): host1 has 512 MiB and 6 vCPUs free; host2 has 512 MiB and 6 vCPUs free",
    );
}

#[test]
fn migration_switches_the_host_only_on_success() {
    let mut s = two_hosts(DomainType::Kvm);
    create(&mut s, "a");
    start(&mut s, "a", Some("host1")).unwrap();
    refused(&mut s, Op::MigrateVm { vm: "a".into(), to: None }, "vm 'a' is powering_up; only an up VM can be migrated");
    report(&mut s, "a", Observed::Up);
    refused(&mut s, Op::MigrateVm { vm: "a".into(), to: Some("host1".into()) }, "vm 'a' already runs on host host1");
    op(&mut s, Op::MigrateVm { vm: "a".into(), to: None }).unwrap();
    assert_eq!((vm(&s, "a").runtime.status, vm(&s, "a").migration_state.migrating_to), (VmStatus::Migrating, Some(2)));
    report(&mut s, "a", Observed::Up); // the source still runs it: no change
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::Migrating);
    report(&mut s, "a", Observed::MigrationFailed { error: "unable to connect".into() });
    assert_eq!((vm(&s, "a").runtime.status, vm(&s, "a").runtime.host), (VmStatus::Up, Some(1)));
    op(&mut s, Op::MigrateVm { vm: "a".into(), to: Some("host2".into()) }).unwrap();
    let epoch = vm(&s, "a").runtime.epoch;
    report(&mut s, "a", Observed::MigrationDone { to: 2 });
    let v = vm(&s, "a");
    assert_eq!(
        (v.runtime.status, v.runtime.host, v.runtime.epoch, v.migration_state.migrating_to),
        (VmStatus::Up, Some(2), epoch + 1, None)
    );
    assert_eq!(s.events.back().unwrap().message, "VM a migrated from host host1 to host host2.");
}

#[test]
fn the_test_driver_cannot_migrate() {
    let mut s = two_hosts(DomainType::Test);
    create(&mut s, "a");
    start(&mut s, "a", Some("host1")).unwrap();
    report(&mut s, "a", Observed::Up);
    refused(
        &mut s,
        Op::MigrateVm { vm: "a".into(), to: None },
        "vm 'a' runs on host host1, which uses libvirt's test driver; the test driver cannot migrate VMs",
    );
}

#[test]
fn deleting_with_keep_disks_leaves_floating_disks_and_clone_needs_a_down_vm() {
    let mut s = two_hosts(DomainType::Kvm);
    let disk = |name: &str| Disk {
        id: Uuid::new_v4(),
        name: name.into(),
        size_mib: 1024,
        file: format!("{name}.qcow2"),
        format: "qcow2".into(),
        vm: None,
        created_ms: 0,
        base: None,
    };
    let id = Uuid::new_v4();
    op(&mut s, Op::CreateVm { id, spec: spec("a"), disks: vec![disk("a-disk0")], start: None }).unwrap();
    assert_eq!(s.disks.values().next().unwrap().vm, Some(id));
    start(&mut s, "a", None).unwrap();
    refused(
        &mut s,
        Op::CloneVm {
            source: "a".into(),
            id: Uuid::new_v4(),
            name: "b".into(),
            disks: vec![disk("b-disk0")],
            macs: vec![],
        },
        "vm 'a' is powering_up; only a down VM can be cloned",
    );
    report(&mut s, "a", Observed::Down { cause: "x".into(), on_purpose: false });
    op(
        &mut s,
        Op::CloneVm {
            source: "a".into(),
            id: Uuid::new_v4(),
            name: "b".into(),
            disks: vec![disk("b-disk0")],
            macs: vec![],
        },
    )
    .unwrap();
    assert_eq!(vm(&s, "b").config.disks.len(), 1);
    assert_ne!(vm(&s, "b").config.disks, vm(&s, "a").config.disks);
    let r = op(&mut s, Op::DeleteVm { vm: "a".into(), keep_disks: true }).unwrap();
    assert_eq!(r, Outcome::VmDeleted { id, files: vec![] });
    assert_eq!(s.find_disk("a-disk0").unwrap().vm, None, "floating");
    let r = op(&mut s, Op::DeleteVm { vm: "b".into(), keep_disks: false }).unwrap();
    assert!(matches!(r, Outcome::VmDeleted { files, .. } if files == ["b-disk0.qcow2"]));
    assert!(s.find_disk("b-disk0").is_none());
}

#[test]
fn edits_of_a_running_vm_wait_for_its_next_run() {
    let mut s = two_hosts(DomainType::Kvm);
    create(&mut s, "a");
    start(&mut s, "a", Some("host1")).unwrap();
    report(&mut s, "a", Observed::Up);
    let changes = VmChanges { memory_mib: Some(2048), description: Some("bigger".into()), ..Default::default() };
    op(&mut s, Op::EditVm { vm: "a".into(), changes }).unwrap();
    let v = vm(&s, "a");
    assert_eq!(
        (v.config.memory_mib, v.config.description.as_str()),
        (1024, "bigger"),
        "description at once, memory later"
    );
    assert_eq!(v.config.next_run.as_ref().unwrap().memory_mib, Some(2048));
    assert_eq!(s.host_usage(1).memory_mib, 1024, "the running VM holds what it runs with");
    assert_eq!(
        s.events.back().unwrap().message,
        "VM a was edited: memory 1024 -> 2048 MiB on its next run, description."
    );
    // Setting it back to the running value drops the pending change.
    op(&mut s, Op::EditVm { vm: "a".into(), changes: VmChanges { memory_mib: Some(1024), ..Default::default() } })
        .unwrap();
    assert_eq!(vm(&s, "a").config.next_run, None);
    op(&mut s, Op::EditVm { vm: "a".into(), changes: VmChanges { vcpus: Some(1), ..Default::default() } }).unwrap();
    report(&mut s, "a", Observed::Down { cause: "powered off".into(), on_purpose: false });
    let v = vm(&s, "a");
    assert_eq!((v.config.vcpus, v.config.next_run.clone()), (1, None));
    assert_eq!(s.events.back().unwrap().message, "VM a now has its next-run configuration: 1 vCPU.");
    // A down VM changes at once.
    op(&mut s, Op::EditVm { vm: "a".into(), changes: VmChanges { memory_mib: Some(512), ..Default::default() } })
        .unwrap();
    assert_eq!((vm(&s, "a").config.memory_mib, vm(&s, "a").config.next_run.clone()), (512, None));
}

#[test]
fn reboot_suspend_and_resume() {
    let mut s = two_hosts(DomainType::Kvm);
    create(&mut s, "a");
    refused(&mut s, Op::RebootVm { vm: "a".into() }, "vm 'a' is down; only an up VM can be rebooted");
    start(&mut s, "a", None).unwrap();
    report(&mut s, "a", Observed::Up);
    op(&mut s, Op::RebootVm { vm: "a".into() }).unwrap();
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::RebootInProgress);
    report(&mut s, "a", Observed::Up);
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::RebootInProgress, "up before the reboot is done changes nothing");
    report(&mut s, "a", Observed::RebootDone);
    assert_eq!((vm(&s, "a").runtime.status, vm(&s, "a").runtime.reboot_pending), (VmStatus::Up, false));
    op(&mut s, Op::SuspendVm { vm: "a".into() }).unwrap();
    assert_eq!(vm(&s, "a").runtime.desired, PowerState::Suspended);
    report(&mut s, "a", Observed::Suspended);
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::Suspended);
    refused(&mut s, Op::SuspendVm { vm: "a".into() }, "vm 'a' is suspended; only a VM that is up can be suspended");
    op(&mut s, Op::ResumeVm { vm: "a".into() }).unwrap();
    report(&mut s, "a", Observed::Up);
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::Up);
}
