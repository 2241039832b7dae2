//! Migration orders, cancel, maintenance evacuation and the cluster's migration settings.

use super::*;
use crate::command::{MigrationSettingsChange, StartOrder};
use crate::model::{DomainType, HostState, MigrationProgress, Observed, VmStatus};

fn hosts(memory_mib: [u64; 3]) -> ClusterState {
    super::three_hosts(memory_mib, 4, DomainType::Kvm)
}

fn at(s: &mut ClusterState, ms: i64, op: Op) -> Outcome {
    s.apply_command(&cmd(ms, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

fn vm<'a>(s: &'a ClusterState, name: &str) -> &'a Vm {
    s.find_vm(name).unwrap()
}

fn running(s: &mut ClusterState, name: &str, memory_mib: u64, priority: HaPriority, host: &str) {
    let spec = VmSpec { memory_mib, vcpus: 1, ha_priority: priority, ..super::spec(name) };
    at(s, T0, Op::CreateVm { id: Uuid::new_v4(), spec, disks: vec![], start: None });
    at(s, T0, Op::StartVm { vm: name.into(), order: StartOrder { host: Some(host.into()) } });
    report(s, name, Observed::Up);
}

fn report(s: &mut ClusterState, name: &str, observed: Observed) {
    let v = vm(s, name);
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    at(s, T0 + 50, Op::ReportVm { vm: id, host, epoch, observed });
}

#[test]
fn maintenance_moves_every_vm_away_then_the_host_is_in_maintenance() {
    let mut s = hosts([8192, 8192, 8192]);
    running(&mut s, "low", 512, HaPriority::Low, "host2");
    running(&mut s, "high", 512, HaPriority::High, "host2");
    at(&mut s, T0 + 100, Op::HostMaintenance { host: "host2".into(), reason: Some("firmware".into()) });
    assert_eq!(s.hosts[&2].state, HostState::PreparingForMaintenance);
    for name in ["low", "high"] {
        let v = vm(&s, name);
        assert_eq!(v.runtime.status, VmStatus::Migrating, "{name}");
        assert!(v.migration_state.migration_job.as_ref().unwrap().automatic);
        assert_ne!(v.migration_state.migrating_to, Some(2));
    }
    let ordered: Vec<&str> = s
        .events
        .iter()
        .filter(|e| e.message.starts_with("Migration of VM"))
        .map(|e| e.message.split(' ').nth(3).unwrap())
        .collect();
    assert_eq!(ordered, ["high", "low"], "highest priority first");
    // Nothing is placed on a host in maintenance.
    at(&mut s, T0 + 110, Op::CreateVm { id: Uuid::new_v4(), spec: super::spec("new"), disks: vec![], start: None });
    assert!(s
        .apply_command(&cmd(
            T0 + 110,
            Op::StartVm { vm: "new".into(), order: StartOrder { host: Some("host2".into()) } }
        ))
        .0
        .is_err());

    let to = vm(&s, "high").migration_state.migrating_to.unwrap();
    report(&mut s, "high", Observed::MigrationProgress(MigrationProgress { percent: 40, ..Default::default() }));
    assert_eq!(vm(&s, "high").migration_state.migration_job.as_ref().unwrap().progress.as_ref().unwrap().percent, 40);
    report(&mut s, "high", Observed::MigrationDone { to });
    assert_eq!(s.hosts[&2].state, HostState::PreparingForMaintenance, "low still there");
    let to = vm(&s, "low").migration_state.migrating_to.unwrap();
    report(&mut s, "low", Observed::MigrationDone { to });
    assert_eq!(s.hosts[&2].state, HostState::Maintenance);
    assert_eq!(s.events.back().unwrap().message, "Host host2 is in maintenance.");

    at(&mut s, T0 + 200, Op::ActivateHost { host: "host2".into() });
    assert_eq!((s.hosts[&2].state, s.hosts[&2].maintenance.is_none()), (HostState::Up, true));
}

#[test]
fn a_vm_that_cannot_move_keeps_the_host_preparing_and_says_why() {
    let mut s = hosts([8192, 1024, 1024]);
    running(&mut s, "big", 4096, HaPriority::Medium, "host1");
    running(&mut s, "small", 256, HaPriority::Medium, "host1");
    at(&mut s, T0 + 100, Op::SuspendVm { vm: "small".into() });
    report(&mut s, "small", Observed::Suspended);
    at(&mut s, T0 + 200, Op::HostMaintenance { host: "host1".into(), reason: None });
    assert_eq!(s.hosts[&1].state, HostState::PreparingForMaintenance);
    let blocked = &s.hosts[&1].maintenance.as_ref().unwrap().blocked;
    assert_eq!(blocked.len(), 2, "{blocked:?}");
    assert_eq!(blocked[0].0, "big");
    assert!(blocked[0].1.contains("not enough capacity for vm 'big'"), "{}", blocked[0].1);
    assert_eq!(blocked[1], ("small".into(), "it is suspended; resume or stop it".into()));
    assert!(s.events.back().unwrap().message.starts_with("Host host1 cannot enter maintenance yet. VM big:"));
    // Asking again changes nothing and says nothing new.
    let events = s.events.len();
    at(&mut s, T0 + 300, Op::EvacuateHost { id: 1 });
    assert_eq!(s.events.len(), events);
    // The operator stops them: the host settles into maintenance.
    at(&mut s, T0 + 400, Op::StopVm { vm: "big".into(), reason: None });
    report(&mut s, "big", Observed::Down { cause: "powered off".into(), on_purpose: true });
    at(&mut s, T0 + 400, Op::StopVm { vm: "small".into(), reason: None });
    report(&mut s, "small", Observed::Down { cause: "powered off".into(), on_purpose: true });
    assert_eq!(s.hosts[&1].state, HostState::Maintenance);
}

#[test]
fn cancel_and_late_completion_and_settings() {
    let mut s = hosts([8192, 8192, 8192]);
    running(&mut s, "a", 512, HaPriority::Medium, "host1");
    refused_with(&mut s, Op::CancelMigration { vm: "a".into() }, "vm 'a' is not migrating");
    at(&mut s, T0 + 100, Op::MigrateVm { vm: "a".into(), to: None });
    let target = vm(&s, "a").migration_state.migrating_to.unwrap();
    assert_ne!(target, 1, "placement picks another host");
    at(&mut s, T0 + 110, Op::CancelMigration { vm: "a".into() });
    assert!(vm(&s, "a").migration_state.migration_job.as_ref().unwrap().cancel);
    report(&mut s, "a", Observed::MigrationFailed { error: "operation aborted".into() });
    assert_eq!(
        (vm(&s, "a").runtime.status, vm(&s, "a").runtime.host, vm(&s, "a").migration_state.migration_job.is_none()),
        (VmStatus::Up, Some(1), true)
    );
    assert_eq!(s.events.back().unwrap().message, "Migration of VM a was cancelled; it keeps running on host host1.");
    // A migration that finished although the state no longer expected it still moves the VM.
    report(&mut s, "a", Observed::MigrationDone { to: 3 });
    assert_eq!(vm(&s, "a").runtime.host, Some(3));

    let change = MigrationSettingsChange { max_per_host: Some(0), ..Default::default() };
    refused_with(&mut s, Op::SetMigrationDefaults { changes: change }, "max_per_host: must be at least 1");
    let change = MigrationSettingsChange {
        auto_converge: Some(true),
        bandwidth_mibps: Some(Some(100)),
        max_per_host: Some(3),
        ..Default::default()
    };
    at(&mut s, T0 + 200, Op::SetMigrationDefaults { changes: change });
    assert!(s.migration_defaults.auto_converge);
    assert_eq!((s.migration_defaults.bandwidth_mibps, s.migration_defaults.max_per_host), (Some(100), 3));
}

fn refused_with(s: &mut ClusterState, op: Op, want: &str) {
    let before = s.clone();
    match s.apply_command(&cmd(T0 + 5, op)).0 {
        Err(e) => assert_eq!(e.to_string(), want),
        Ok(o) => panic!("expected refusal '{want}', got {o:?}"),
    }
    assert_eq!(*s, before);
}

#[test]
fn maintenance_waits_before_it_orders_a_failed_migration_again() {
    let mut s = hosts([8192, 8192, 8192]);
    running(&mut s, "a", 512, HaPriority::Medium, "host1");
    at(&mut s, T0 + 100, Op::HostMaintenance { host: "host1".into(), reason: None });
    report(&mut s, "a", Observed::MigrationFailed { error: "connection reset".into() });
    at(&mut s, T0 + 2_000, Op::EvacuateHost { id: 1 });
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::Up, "not ordered again at once");
    let blocked = &s.hosts[&1].maintenance.as_ref().unwrap().blocked;
    assert_eq!(blocked[0].1, "its last migration failed or was cancelled; another is ordered 30 s after that");
    let events = s.events.len();
    at(&mut s, T0 + 4_000, Op::EvacuateHost { id: 1 });
    assert_eq!(s.events.len(), events, "the same reason is not said again");
    at(&mut s, T0 + 31_000, Op::EvacuateHost { id: 1 });
    assert_eq!(vm(&s, "a").runtime.status, VmStatus::Migrating);
}
