//! Liveness and HA restarts: host down, priorities under short capacity, back-off, oVirt's
//! restart rule, and a migration cut by its source's death.

use super::*;
use crate::command::StartOrder;
use crate::model::{HaRestart, HostState, Observed, PowerState, VmStatus};

fn hosts(memory_mib: [u64; 3]) -> ClusterState {
    super::three_hosts(memory_mib, 2, Default::default())
}

fn at(s: &mut ClusterState, ms: i64, op: Op) -> Outcome {
    s.apply_command(&cmd(ms, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

fn vm<'a>(s: &'a ClusterState, name: &str) -> &'a Vm {
    s.find_vm(name).unwrap()
}

/// Creates `name` (memory, HA priority or None) and starts it on `host`, reported up.
fn running(s: &mut ClusterState, name: &str, memory_mib: u64, ha: Option<HaPriority>, host: &str) {
    let spec = VmSpec {
        memory_mib,
        vcpus: 1,
        ha_enabled: ha.is_some(),
        ha_priority: ha.unwrap_or_default(),
        ..super::spec(name)
    };
    at(s, T0, Op::CreateVm { id: Uuid::new_v4(), spec, disks: vec![], start: None });
    at(s, T0, Op::StartVm { vm: name.into(), order: StartOrder { host: Some(host.into()) } });
    report(s, T0, name, Observed::Up);
}

fn report(s: &mut ClusterState, now: i64, name: &str, observed: Observed) {
    let v = vm(s, name);
    let (id, host, epoch) = (v.id, v.runtime.host.unwrap(), v.runtime.epoch);
    at(s, now, Op::ReportVm { vm: id, host, epoch, observed });
}

fn messages(s: &ClusterState) -> Vec<String> {
    s.events.iter().map(|e| e.message.clone()).collect()
}

#[test]
fn a_dead_host_takes_its_vms_down_and_ha_restarts_them_by_priority_as_capacity_allows() {
    // host2 and host3 have room for one 1 GiB VM each once "filler" VMs are there.
    let mut s = hosts([4096, 2048, 2048]);
    running(&mut s, "filler2", 1024, None, "host2");
    running(&mut s, "filler3", 1024, None, "host3");
    running(&mut s, "low", 1024, Some(HaPriority::Low), "host1");
    running(&mut s, "high", 1024, Some(HaPriority::High), "host1");
    running(&mut s, "medium", 1024, Some(HaPriority::Medium), "host1");
    running(&mut s, "plain", 512, None, "host1");

    at(&mut s, T0 + 10, Op::HostNonResponsive { id: 1, silent_ms: 1600 });
    assert_eq!(s.hosts[&1].state, HostState::NonResponsive);
    assert_eq!(vm(&s, "high").runtime.status, VmStatus::Up, "a non-responsive host's VMs are left alone");

    at(&mut s, T0 + 20, Op::HostDown { id: 1, how: "its lease ended".into() });
    assert_eq!(s.hosts[&1].state, HostState::Down);
    for name in ["low", "high", "medium", "plain"] {
        let v = vm(&s, name);
        assert_eq!((v.runtime.status, v.runtime.host), (VmStatus::Down, None), "{name}");
    }
    assert_eq!(vm(&s, "plain").ha_state.ha_restart, None, "a VM that is not HA stays down");
    assert_eq!(vm(&s, "plain").runtime.stop_reason.as_deref(), Some("its host host1 went down"));
    assert!(messages(&s).contains(&"Highly Available VM high failed. It will be restarted automatically.".into()));

    at(&mut s, T0 + 30, Op::RestartHaVms);
    assert_eq!(vm(&s, "high").runtime.status, VmStatus::PoweringUp);
    assert_eq!(vm(&s, "medium").runtime.status, VmStatus::PoweringUp);
    assert_ne!(vm(&s, "high").runtime.host, vm(&s, "medium").runtime.host);
    let low = vm(&s, "low").ha_state.ha_restart.clone().expect("low waits");
    assert_eq!((low.attempts, low.next_try_ms), (1, T0 + 30 + 1000));
    assert!(messages(&s).iter().any(|m| m.starts_with("Highly Available VM low cannot be restarted yet")));

    report(&mut s, T0 + 40, "high", Observed::Up);
    let host = s.host_name(vm(&s, "high").runtime.host.unwrap());
    assert_eq!(s.events.back().unwrap().message, format!("VM high was restarted on host {host}."));
    assert_eq!(s.events.back().unwrap().kind, EventKind::VmHighAvailability);

    // Not due yet: nothing happens; a second failure doubles the wait and says nothing new.
    let events = s.events.len();
    at(&mut s, T0 + 500, Op::RestartHaVms);
    assert_eq!(vm(&s, "low").ha_state.ha_restart.as_ref().unwrap().attempts, 1);
    at(&mut s, T0 + 1030, Op::RestartHaVms);
    let low = vm(&s, "low").ha_state.ha_restart.clone().unwrap();
    assert_eq!((low.attempts, low.next_try_ms), (2, T0 + 1030 + 2000));
    assert_eq!(s.events.len(), events, "the same reason is not repeated");

    // host1 comes back: capacity returns, the restart is due at once.
    at(&mut s, T0 + 1100, Op::HostAlive { id: 1, self_fenced: true });
    assert_eq!(s.hosts[&1].state, HostState::Up);
    at(&mut s, T0 + 1100, Op::RestartHaVms);
    assert_eq!((vm(&s, "low").runtime.status, vm(&s, "low").runtime.host), (VmStatus::PoweringUp, Some(1)));
    assert_eq!(vm(&s, "low").ha_state.ha_restart, None);
}

#[test]
fn ha_restarts_a_vm_that_died_but_not_one_shut_down_on_purpose() {
    let mut s = hosts([4096, 4096, 4096]);
    running(&mut s, "crashed", 512, Some(HaPriority::Medium), "host1");
    running(&mut s, "guest-off", 512, Some(HaPriority::Medium), "host1");
    running(&mut s, "operator-off", 512, Some(HaPriority::Medium), "host1");

    report(&mut s, T0 + 10, "crashed", Observed::Down { cause: "QEMU died".into(), on_purpose: false });
    assert!(vm(&s, "crashed").ha_state.ha_restart.is_some());
    report(&mut s, T0 + 10, "guest-off", Observed::Down { cause: "guest shut down".into(), on_purpose: true });
    assert_eq!(vm(&s, "guest-off").ha_state.ha_restart, None);
    at(&mut s, T0 + 10, Op::StopVm { vm: "operator-off".into(), reason: None });
    report(&mut s, T0 + 20, "operator-off", Observed::Down { cause: "powered off".into(), on_purpose: false });
    assert_eq!(vm(&s, "operator-off").ha_state.ha_restart, None);

    at(&mut s, T0 + 30, Op::RestartHaVms);
    assert_eq!(vm(&s, "crashed").runtime.status, VmStatus::PoweringUp);
    assert_eq!(vm(&s, "guest-off").runtime.status, VmStatus::Down);
    // A start that fails on the chosen host is retried after a back-off, not given up.
    report(&mut s, T0 + 40, "crashed", Observed::Failed { action: "start".into(), error: "no disk".into() });
    let r = vm(&s, "crashed").ha_state.ha_restart.clone().expect("retried");
    assert_eq!((r.attempts, r.next_try_ms, r.last_error.as_deref()), (1, T0 + 1040, Some("no disk")));
}

#[test]
fn stopping_a_vm_that_waits_for_ha_cancels_the_restart_and_a_start_replaces_it() {
    let mut s = hosts([1024, 1024, 1024]);
    running(&mut s, "a", 1024, Some(HaPriority::High), "host1");
    running(&mut s, "b", 1024, Some(HaPriority::High), "host2");
    running(&mut s, "c", 1024, Some(HaPriority::High), "host3");
    at(&mut s, T0 + 10, Op::HostDown { id: 1, how: "fenced".into() });
    at(&mut s, T0 + 10, Op::RestartHaVms);
    assert!(vm(&s, "a").ha_state.ha_restart.is_some(), "no room anywhere");
    at(&mut s, T0 + 20, Op::StopVm { vm: "a".into(), reason: None });
    assert_eq!(vm(&s, "a").ha_state.ha_restart, None);
    assert_eq!(s.events.back().unwrap().message, "The pending HA restart of VM a was cancelled.");
    // Stopping it again is the usual refusal.
    assert!(s.apply_command(&cmd(T0 + 30, Op::StopVm { vm: "a".into(), reason: None })).0.is_err());
}

#[test]
fn reports_from_a_host_declared_down_change_nothing() {
    let mut s = hosts([4096, 4096, 4096]);
    running(&mut s, "a", 512, Some(HaPriority::Medium), "host1");
    let (id, epoch) = (vm(&s, "a").id, vm(&s, "a").runtime.epoch);
    at(&mut s, T0 + 10, Op::HostDown { id: 1, how: "fenced".into() });
    at(&mut s, T0 + 10, Op::RestartHaVms);
    let before = s.clone();
    at(&mut s, T0 + 20, Op::ReportVm { vm: id, host: 1, epoch, observed: Observed::Up });
    assert_eq!(s, before, "a late report from the dead host is ignored");
}

#[test]
fn a_vm_migrating_away_from_a_dead_host_is_handed_to_its_destination() {
    let mut s = hosts([4096, 4096, 4096]);
    for h in s.hosts.values_mut() {
        h.facts.domain_type = crate::model::DomainType::Kvm;
    }
    running(&mut s, "m", 512, Some(HaPriority::Medium), "host1");
    at(&mut s, T0 + 10, Op::MigrateVm { vm: "m".into(), to: Some("host3".into()) });
    let epoch = vm(&s, "m").runtime.epoch;
    at(&mut s, T0 + 20, Op::HostDown { id: 1, how: "fenced".into() });
    let v = vm(&s, "m");
    assert_eq!(
        (v.runtime.host, v.migration_state.migrating_to, v.runtime.status, v.runtime.epoch),
        (Some(3), None, VmStatus::Unknown, epoch + 1)
    );
    assert_eq!(v.ha_state.ha_restart, None, "host3 says whether it runs there before HA acts");
    report(&mut s, T0 + 30, "m", Observed::Up);
    assert_eq!(vm(&s, "m").runtime.status, VmStatus::Up);
}

#[test]
fn a_host_in_maintenance_comes_back_in_maintenance() {
    let mut s = hosts([4096, 4096, 4096]);
    s.hosts.get_mut(&2).unwrap().maintenance =
        Some(crate::model::MaintenanceOrder { reason: None, since_ms: T0, blocked: vec![] });
    s.hosts.get_mut(&2).unwrap().state = HostState::Maintenance;
    at(&mut s, T0 + 10, Op::HostNonResponsive { id: 2, silent_ms: 2000 });
    at(&mut s, T0 + 20, Op::HostDown { id: 2, how: "fenced".into() });
    at(&mut s, T0 + 30, Op::HostAlive { id: 2, self_fenced: false });
    assert_eq!(s.hosts[&2].state, HostState::Maintenance);
}

#[test]
fn backoff_doubles_up_to_thirty_seconds() {
    let waits: Vec<i64> = (1..=8).map(HaRestart::backoff_ms).collect();
    assert_eq!(waits, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert_eq!(PowerState::default(), PowerState::Down);
}

#[test]
fn an_ha_vm_that_keeps_crashing_waits_longer_each_time_until_it_runs_steadily() {
    let mut s = hosts([4096, 4096, 4096]);
    running(&mut s, "flaky", 512, Some(HaPriority::Medium), "host1");
    let crash = |s: &mut ClusterState, at: i64| {
        report(s, at, "flaky", Observed::Down { cause: "QEMU died".into(), on_purpose: false });
        s.find_vm("flaky").unwrap().ha_state.ha_restart.clone().expect("waits for HA")
    };
    // The first crash (it was never restarted by HA): at once.
    let r = crash(&mut s, T0 + 100);
    assert_eq!((r.attempts, r.next_try_ms), (0, T0 + 100));
    let mut now = T0 + 100;
    for want in [1000, 2000, 4000, 8000] {
        let due = r_next(&s);
        at(&mut s, due, Op::RestartHaVms);
        now = due.max(now) + 500;
        report(&mut s, now, "flaky", Observed::Up);
        let r = crash(&mut s, now + 100);
        assert_eq!(r.next_try_ms - (now + 100), want, "{r:?}");
        now += 100;
    }
    // Restarted, then up for longer than HA_STABLE_MS: the next crash is restarted at once.
    let due = r_next(&s);
    at(&mut s, due, Op::RestartHaVms);
    let later = due + crate::model::HA_STABLE_MS + 1;
    report(&mut s, later - 1, "flaky", Observed::Up);
    let r = crash(&mut s, later);
    assert_eq!((r.attempts, r.next_try_ms), (0, later));
}

/// When the pending HA restart of "flaky" is due.
fn r_next(s: &ClusterState) -> i64 {
    s.find_vm("flaky").unwrap().ha_state.ha_restart.as_ref().map_or(T0, |r| r.next_try_ms)
}

#[test]
fn a_host_that_fenced_itself_is_recorded_with_the_time_it_fenced() {
    let mut s = hosts([4096, 4096, 4096]);
    at(&mut s, T0, Op::HostDown { id: 2, how: crate::HostDownCause::lease_ended(4000, 3000) });
    // A whole number of days plus 01:02:03.456.
    let fenced = 86_400_000 * 20_000 + 3_723_456;
    at(&mut s, fenced + 6100, Op::HostAliveAfterFencing { id: 2, fenced_ms: fenced });
    assert_eq!(s.hosts[&2].state, HostState::Up);
    let last = &s.events.back().unwrap().message;
    assert!(
        last.ends_with(
            "It had lost its lease and stopped its VMs itself at 01:02:03.456 UTC, 6.1 s before it said so."
        ),
        "{last}"
    );
    // A host that stayed up and only lost its lease for a while says so the same way.
    at(&mut s, fenced + 9000, Op::HostAliveAfterFencing { id: 2, fenced_ms: fenced + 8000 });
    let last = &s.events.back().unwrap().message;
    assert_eq!(
        last,
        "Host host2 lost its lease and stopped its VMs itself at 01:02:11.456 UTC, 1.0 s before it said so."
    );
}
