//! The hosted engine and OVF imports as commands: what an import refuses (changing nothing) and
//! what it makes, engine maintenance, engine scores, adopting a hand-started engine, HA's
//! engine-first rule, and the engine's delete protection.

use super::*;
use crate::command::StartOrder;
use crate::model::{Disk, DomainType, EngineScore, HaSettings, HostState, Nic, Observed, PowerState, VmStatus};
use crate::model::{ENGINE_BASE_SCORE, ENGINE_CLAIM_MS};

/// host1..host3 with 8 GiB and 4 CPUs each, KVM (so VMs can migrate), all up.
fn hosts() -> ClusterState {
    super::three_hosts([8192; 3], 4, DomainType::Kvm)
}

fn at(s: &mut ClusterState, ms: i64, op: Op) -> Outcome {
    s.apply_command(&cmd(ms, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

/// Applies `op`, which must be refused without changing anything; returns the refusal.
fn refusal(s: &mut ClusterState, op: Op) -> ClusterError {
    let before = s.clone();
    let e = s.apply_command(&cmd(T0 + 5, op)).0.expect_err("the command was applied");
    assert_eq!(*s, before, "the refusal '{e}' changed the state");
    e
}

fn vm<'a>(s: &'a ClusterState, name: &str) -> &'a Vm {
    s.find_vm(name).unwrap_or_else(|| panic!("no vm {name}"))
}

fn report(s: &mut ClusterState, now: i64, name: &str, observed: Observed) {
    let v = vm(s, name);
    let (id, host, epoch) = (v.id, v.runtime.host.expect("assigned"), v.runtime.epoch);
    at(s, now, Op::ReportVm { vm: id, host, epoch, observed });
}

/// A VM as an OVF document describes it: 1 GiB, 1 vCPU, down, a fresh id.
fn ovf_vm(name: &str) -> Vm {
    Vm::new(Uuid::new_v4(), name, 1024, 1, T0)
}

fn disk(name: &str) -> Disk {
    Disk {
        id: Uuid::new_v4(),
        name: name.into(),
        size_mib: 1024,
        file: format!("{name}.qcow2"),
        format: "qcow2".into(),
        vm: None,
        created_ms: T0,
        base: None,
    }
}

fn nic(mac: &str) -> Nic {
    Nic::new("default", mac)
}

fn on(host: &str) -> Option<StartOrder> {
    Some(StartOrder { host: Some(host.into()) })
}

/// An import of `vm` whose disk list is `disks`, in that order.
fn import(mut vm: Vm, disks: Vec<Disk>, engine: bool, start: Option<StartOrder>) -> Op {
    vm.config.disks = disks.iter().map(|d| d.id).collect();
    Op::ImportVm { vm: Box::new(vm), disks, engine, start }
}

/// Creates `name` (HA with `priority`, or not HA) and runs it on `host`.
fn running(s: &mut ClusterState, name: &str, ha: Option<HaPriority>, host: &str) {
    let spec = VmSpec { vcpus: 1, ha_enabled: ha.is_some(), ha_priority: ha.unwrap_or_default(), ..super::spec(name) };
    at(s, T0, Op::CreateVm { id: Uuid::new_v4(), spec, disks: vec![], start: on(host) });
    report(s, T0, name, Observed::Up);
}

/// `hosts()` with the hosted engine "engine" imported and up on host1.
fn with_engine() -> ClusterState {
    let mut s = hosts();
    at(&mut s, T0, import(ovf_vm("engine"), vec![disk("engine-disk")], true, on("host1")));
    report(&mut s, T0, "engine", Observed::Up);
    s
}

fn score(score: u32, penalties: &[(&str, u32)]) -> EngineScore {
    EngineScore { score, penalties: penalties.iter().map(|(w, n)| (w.to_string(), *n)).collect(), measured_ms: T0 }
}

fn set_score(s: &mut ClusterState, host: NodeId, points: u32) {
    at(s, T0 + 1, Op::ReportEngineScore { host, score: score(points, &[]) });
}

fn maintenance(global: Option<bool>, local: Option<(&str, bool)>) -> Op {
    Op::SetEngineMaintenance { global, local: local.map(|(h, on)| (h.to_string(), on)) }
}

fn protect(vm: &str, on: bool) -> Op {
    Op::EditVm { vm: vm.into(), changes: VmChanges { delete_protected: Some(on), ..Default::default() } }
}

/// The VMs that HA restart events name, in the order they were recorded.
fn ha_restarted(s: &ClusterState) -> Vec<String> {
    s.events
        .iter()
        .filter_map(|e| e.message.strip_prefix("VM ")?.split_once(" is being restarted on host ").map(|(n, _)| n))
        .map(String::from)
        .collect()
}

#[test]
fn an_import_that_breaks_a_rule_is_refused_and_changes_nothing() {
    let mut s = hosts();
    let mut web = ovf_vm("web");
    web.config.nics = vec![nic("52:54:00:00:00:01")];
    let web_disk = disk("web-disk");
    at(&mut s, T0, import(web.clone(), vec![web_disk.clone()], false, None));
    // A floating disk: its VM was deleted and the disk kept.
    let spare = disk("spare");
    at(&mut s, T0, import(ovf_vm("old"), vec![spare.clone()], false, None));
    at(&mut s, T0, Op::DeleteVm { vm: "old".into(), keep_disks: true });
    assert_eq!(s.disks[&spare.id].vm, None);

    let e = refusal(&mut s, import(ovf_vm("web"), vec![], false, None));
    assert!(matches!(e, ClusterError::AlreadyExists(_)), "{e:?}");
    assert!(e.to_string().starts_with("vm 'web' already exists"), "{e}");

    let mut same_id = web.clone();
    (same_id.config.name, same_id.config.nics) = ("web-again".into(), vec![]);
    let e = refusal(&mut s, import(same_id, vec![], false, None));
    assert!(e.to_string().contains(&format!("vm 'web' already has id {}", web.id)), "{e}");

    let mut twice = ovf_vm("twice");
    twice.config.nics = vec![nic("52:54:00:00:00:02"), nic("52:54:00:00:00:02")];
    let e = refusal(&mut s, import(twice, vec![], false, None));
    assert_eq!(e, ClusterError::invalid("nics", "two NICs of the VM have the same MAC address"));

    let mut thief = ovf_vm("thief");
    thief.config.nics = vec![nic("52:54:00:00:00:03"), nic("52:54:00:00:00:01")];
    let e = refusal(&mut s, import(thief, vec![], false, None));
    assert!(e.to_string().starts_with("MAC address 52:54:00:00:00:01 is already used by vm 'web'"), "{e}");

    let mut pinned = ovf_vm("pinned");
    pinned.config.pinned_hosts = vec![2, 9];
    let e = refusal(&mut s, import(pinned, vec![], false, None));
    assert_eq!(e, ClusterError::NotFound("vm 'pinned' is pinned to host 9, which is not in this cluster".into()));

    let a = disk("a");
    let same_id_disk = Disk { name: "b".into(), file: "b.qcow2".into(), ..a.clone() };
    let e = refusal(&mut s, import(ovf_vm("dups"), vec![a.clone(), same_id_disk], false, None));
    assert_eq!(e, ClusterError::invalid("disks", "two disks of the VM have the same id or image file"));
    let same_file = Disk { id: Uuid::new_v4(), name: "c".into(), ..a.clone() };
    let e = refusal(&mut s, import(ovf_vm("dups"), vec![a, same_file], false, None));
    assert_eq!(e, ClusterError::invalid("disks", "two disks of the VM have the same id or image file"));

    let e = refusal(&mut s, import(ovf_vm("grab"), vec![disk("new"), web_disk.clone()], false, None));
    assert!(matches!(e, ClusterError::FailedPrecondition(_)), "{e:?}");
    assert!(e.to_string().starts_with("disk 'web-disk' is attached to vm 'web'"), "{e}");

    let moved = Disk { file: "elsewhere.qcow2".into(), ..spare.clone() };
    let e = refusal(&mut s, import(ovf_vm("moved"), vec![moved], false, None));
    assert_eq!(
        e,
        ClusterError::AlreadyExists(format!(
            "disk id {} is already disk 'spare' (spare.qcow2), not elsewhere.qcow2",
            spare.id
        ))
    );

    at(&mut s, T0, import(ovf_vm("engine"), vec![], true, None));
    let e = refusal(&mut s, import(ovf_vm("engine2"), vec![disk("e2")], true, None));
    assert_eq!(e, ClusterError::AlreadyExists("the cluster already has a hosted engine: vm 'engine'".into()));

    // A start that cannot be placed refuses the whole import: no VM, no disk records.
    let huge = Vm::new(Uuid::new_v4(), "huge", 65536, 1, T0);
    let e = refusal(&mut s, import(huge.clone(), vec![disk("huge-disk")], false, Some(StartOrder::default())));
    assert!(e.to_string().starts_with("not enough capacity for vm 'huge'"), "{e}");
    let e = refusal(&mut s, import(huge, vec![disk("huge-disk")], false, on("host2")));
    assert!(e.to_string().starts_with("host host2 has not enough room for vm 'huge'"), "{e}");
    // The floating disk survived every refusal as it was.
    assert_eq!(s.disks[&spare.id], spare);
}

#[test]
fn an_import_attaches_a_floating_disk_as_recorded_and_adds_new_ones() {
    let mut s = hosts();
    let data = disk("data");
    at(&mut s, T0, import(ovf_vm("old"), vec![data.clone()], false, None));
    at(&mut s, T0, Op::DeleteVm { vm: "old".into(), keep_disks: true });

    // The document names the floating disk differently; the record in the state wins.
    let described = Disk { name: "data-from-ovf".into(), size_mib: 5, created_ms: T0 + 99, ..data.clone() };
    let boot = disk("boot");
    let mut web = ovf_vm("web");
    web.config.hosted_engine = true;
    web.config.nics = vec![nic("52:54:00:00:00:10")];
    let Outcome::Vm(out) = at(&mut s, T0 + 10, import(web, vec![boot.clone(), described], false, None)) else {
        panic!("an import returns the VM")
    };
    let v = vm(&s, "web");
    assert_eq!(*v, *out);
    assert_eq!(v.config.disks, [boot.id, data.id]);
    assert!(!v.config.hosted_engine, "only an engine import makes the hosted engine");
    assert_eq!((v.runtime.status, v.runtime.host, v.runtime.desired), (VmStatus::Down, None, PowerState::Down));
    assert_eq!(s.engine.vm, None);
    assert_eq!(s.disks[&data.id], Disk { vm: Some(v.id), ..data });
    assert_eq!(s.disks[&boot.id], Disk { vm: Some(v.id), ..boot });
    assert_eq!(
        s.events.back().unwrap().message,
        "VM web was imported from an OVF document (1024 MiB, 1 vCPU, 2 disks)."
    );
    // Its OVF document lists both disks, the attached one under its recorded name.
    let doc = s.ovf_document(v.id).unwrap();
    assert!(doc.contains("data.qcow2") && doc.contains("boot.qcow2"), "{doc}");
    assert!(!doc.contains("data-from-ovf"), "{doc}");
}

#[test]
fn an_engine_import_makes_the_clusters_hosted_engine_and_may_start_it() {
    let mut s = hosts();
    let mut e = ovf_vm("engine");
    e.config.ha = HaSettings { enabled: false, priority: HaPriority::Low };
    let Outcome::Vm(out) = at(&mut s, T0, import(e, vec![disk("engine-disk")], true, on("host2"))) else {
        panic!("an import returns the VM")
    };
    let v = vm(&s, "engine");
    assert_eq!(*v, *out);
    assert!(v.config.hosted_engine && v.config.delete_protected);
    assert_eq!(v.config.ha, HaSettings { enabled: true, priority: HaPriority::High });
    assert_eq!((v.runtime.status, v.runtime.host, v.runtime.desired), (VmStatus::PoweringUp, Some(2), PowerState::Up));
    assert_eq!(s.engine.vm, Some(v.id));
    assert_eq!(s.engine_vm().map(|v| v.config.name.as_str()), Some("engine"));
    assert!(s.events.iter().any(|e| e.message.starts_with("Hosted engine VM engine was created (1024 MiB, 1 vCPU)")));
    report(&mut s, T0 + 1, "engine", Observed::Up);
    assert_eq!(vm(&s, "engine").runtime.status, VmStatus::Up);
}

#[test]
fn global_maintenance_holds_the_engine_back_from_ha_while_other_vms_restart() {
    let mut s = hosts();
    let e = refusal(&mut s, maintenance(Some(true), None));
    assert!(e.to_string().contains("has no hosted engine"), "{e}");

    at(&mut s, T0, import(ovf_vm("engine"), vec![], true, on("host1")));
    report(&mut s, T0, "engine", Observed::Up);
    running(&mut s, "app", Some(HaPriority::Low), "host1");
    at(&mut s, T0 + 5, maintenance(Some(true), None));
    assert!(s.engine.global_maintenance);
    assert_eq!(
        s.events.back().unwrap().message,
        "Hosted engine global maintenance is on: HA does not start, restart or move the engine VM."
    );

    at(&mut s, T0 + 10, Op::HostDown { id: 1, how: "fenced".into() });
    assert!(vm(&s, "engine").ha_state.ha_restart.is_some() && vm(&s, "app").ha_state.ha_restart.is_some());
    assert_eq!(s.next_ha_restart_ms(), Some(T0 + 10), "app's restart is due; the engine's is ignored");
    at(&mut s, T0 + 20, Op::RestartHaVms);
    assert_eq!(vm(&s, "app").runtime.status, VmStatus::PoweringUp);
    let engine = vm(&s, "engine");
    assert_eq!((engine.runtime.status, engine.runtime.host), (VmStatus::Down, None), "held off");
    assert!(engine.ha_state.ha_restart.is_some(), "held, not forgotten");
    assert_eq!(s.next_ha_restart_ms(), None, "nothing is due while the engine is held");
    assert_eq!(ha_restarted(&s), ["app"]);

    at(&mut s, T0 + 30, maintenance(Some(false), None));
    assert!(!s.engine.global_maintenance);
    assert!(s.next_ha_restart_ms().is_some_and(|t| t <= T0 + 30), "due again at once");
    at(&mut s, T0 + 30, Op::RestartHaVms);
    let engine = vm(&s, "engine");
    assert_eq!(engine.runtime.status, VmStatus::PoweringUp);
    assert!(matches!(engine.runtime.host, Some(2 | 3)), "{:?}", engine.runtime.host);
    assert_eq!(ha_restarted(&s), ["app", "engine"]);
}

#[test]
fn local_maintenance_of_the_engines_host_migrates_it_and_placement_avoids_that_host() {
    let mut s = with_engine();
    // host1 has the best score, host3 the next: host1 is never chosen while in local maintenance.
    set_score(&mut s, 1, ENGINE_BASE_SCORE);
    set_score(&mut s, 2, 2000);
    set_score(&mut s, 3, 3000);
    let e = refusal(&mut s, maintenance(None, Some(("nope", true))));
    assert_eq!(e, ClusterError::NotFound("host 'nope' not found".into()));

    at(&mut s, T0 + 10, maintenance(None, Some(("host1", true))));
    assert!(s.hosts[&1].engine_local_maintenance);
    let v = vm(&s, "engine");
    assert_eq!(
        (v.runtime.status, v.runtime.host, v.migration_state.migrating_to),
        (VmStatus::Migrating, Some(1), Some(3))
    );
    assert_eq!(
        s.events.back().unwrap().message,
        "Migration of VM engine from host host1 to host host3 was ordered to leave a host in local maintenance."
    );
    report(&mut s, T0 + 20, "engine", Observed::MigrationDone { to: 3 });
    assert_eq!((vm(&s, "engine").runtime.host, vm(&s, "engine").runtime.status), (Some(3), VmStatus::Up));

    // Stopped and started again: never on host1, though it has the best score.
    at(&mut s, T0 + 30, Op::StopVm { vm: "engine".into(), reason: None });
    report(&mut s, T0 + 31, "engine", Observed::Down { cause: "powered off".into(), on_purpose: false });
    let e = refusal(&mut s, Op::StartVm { vm: "engine".into(), order: StartOrder { host: Some("host1".into()) } });
    assert_eq!(
        e,
        ClusterError::FailedPrecondition(
            "host host1 may not run the hosted engine: it is in hosted-engine local maintenance".into()
        )
    );
    at(&mut s, T0 + 40, Op::StartVm { vm: "engine".into(), order: StartOrder::default() });
    assert_eq!(vm(&s, "engine").runtime.host, Some(3));
    // An ordinary VM may still run there.
    running(&mut s, "plain", None, "host1");
    assert_eq!(vm(&s, "plain").runtime.host, Some(1));

    at(&mut s, T0 + 50, maintenance(None, Some(("host1", false))));
    assert!(!s.hosts[&1].engine_local_maintenance);
    assert_eq!(s.events.back().unwrap().message, "Host host1 left hosted-engine local maintenance.");
    let engine = vm(&s, "engine").clone();
    assert_eq!(crate::scheduler::choose(&s, &engine, None, &[], crate::scheduler::Purpose::Start), Ok(1));
}

#[test]
fn an_engine_score_is_stored_and_only_crossing_zero_is_news() {
    let mut s = hosts();
    let events = s.events.len();
    at(&mut s, T0, Op::ReportEngineScore { host: 2, score: score(ENGINE_BASE_SCORE, &[]) });
    at(&mut s, T0, Op::ReportEngineScore { host: 2, score: score(2400, &[("cpu load", 1000)]) });
    assert_eq!(s.hosts[&2].engine_score, Some(score(2400, &[("cpu load", 1000)])));
    assert_eq!(s.events.len(), events, "a score that stays above 0 is not news");

    let down = score(0, &[("gateway 10.0.0.1 unreachable", 3400)]);
    at(&mut s, T0 + 1, Op::ReportEngineScore { host: 2, score: down.clone() });
    assert_eq!(s.hosts[&2].engine_score, Some(down.clone()));
    assert_eq!(
        s.events.back().unwrap().message,
        "Host host2 may not run the hosted engine: its score is 0 (gateway 10.0.0.1 unreachable (-3400))."
    );
    let events = s.events.len();
    at(&mut s, T0 + 2, Op::ReportEngineScore { host: 2, score: down });
    assert_eq!(s.events.len(), events);
    at(&mut s, T0 + 3, Op::ReportEngineScore { host: 2, score: score(3000, &[]) });
    assert_eq!(s.events.back().unwrap().message, "Host host2 may run the hosted engine again (score 3000).");
    assert_eq!(s.events.len(), events + 1);

    let e = refusal(&mut s, Op::ReportEngineScore { host: 9, score: score(1, &[]) });
    assert_eq!(e, ClusterError::NotFound("host 9 not found".into()));
}

#[test]
fn a_hand_started_engine_is_adopted_when_no_live_host_holds_it() {
    // Its host is silent: the claim wins.
    let mut s = with_engine();
    let (id, epoch) = (vm(&s, "engine").id, vm(&s, "engine").runtime.epoch);
    at(&mut s, T0 + 10, Op::HostNonResponsive { id: 1, silent_ms: 2000 });
    at(&mut s, T0 + 20, Op::AdoptVm { vm: id, host: 2 });
    let v = vm(&s, "engine");
    assert_eq!(
        (v.runtime.host, v.runtime.status, v.runtime.desired, v.runtime.epoch),
        (Some(2), VmStatus::Up, PowerState::Up, epoch + 1)
    );
    assert_eq!(
        s.events.back().unwrap().message,
        "VM engine was started by hand on host host2 while the cluster had no quorum; the cluster takes it over there."
    );
    // Claimed again by the host that now holds it: nothing changes.
    let before = s.clone();
    assert!(s.apply_command(&cmd(T0 + 30, Op::AdoptVm { vm: id, host: 2 })).0.is_ok());
    assert_eq!(s, before);

    // Its host went down: the engine is down, waiting for HA; the claim replaces the restart.
    let mut s = with_engine();
    let epoch = vm(&s, "engine").runtime.epoch;
    at(&mut s, T0 + 10, Op::HostDown { id: 1, how: "fenced".into() });
    assert!(vm(&s, "engine").ha_state.ha_restart.is_some());
    let id = vm(&s, "engine").id;
    at(&mut s, T0 + 20, Op::AdoptVm { vm: id, host: 3 });
    let v = vm(&s, "engine");
    assert_eq!(
        (v.runtime.host, v.runtime.status, v.runtime.desired, v.ha_state.ha_restart.clone()),
        (Some(3), VmStatus::Up, PowerState::Up, None)
    );
    assert!(v.runtime.epoch > epoch);
    assert_eq!(s.next_ha_restart_ms(), None);

    // Still assigned to a host the state has as down (what HostDown normally clears).
    let mut s = with_engine();
    let (id, epoch) = (vm(&s, "engine").id, vm(&s, "engine").runtime.epoch);
    s.hosts.get_mut(&1).unwrap().state = HostState::Down;
    at(&mut s, T0 + 20, Op::AdoptVm { vm: id, host: 2 });
    assert_eq!((vm(&s, "engine").runtime.host, vm(&s, "engine").runtime.epoch), (Some(2), epoch + 1));
}

#[test]
fn a_claim_is_refused_while_a_live_host_holds_or_restarts_the_engine() {
    let mut s = with_engine();
    let id = vm(&s, "engine").id;
    let e = refusal(&mut s, Op::AdoptVm { vm: id, host: 2 });
    assert!(matches!(e, ClusterError::Unavailable(_)), "{e:?}");
    assert_eq!(e.to_string(), "vm 'engine' is assigned to host host1, which has not reported it down");

    // HA already restarts it on a live host: the hand-started copy must go.
    at(&mut s, T0 + 10, Op::HostDown { id: 1, how: "fenced".into() });
    at(&mut s, T0 + 10, Op::RestartHaVms);
    let v = vm(&s, "engine");
    assert!(v.ha_state.ha_restarting && v.runtime.status == VmStatus::PoweringUp);
    let (holder, claimer) = if v.runtime.host == Some(2) { (2, 3) } else { (3, 2) };
    let e = refusal(&mut s, Op::AdoptVm { vm: id, host: claimer });
    assert!(matches!(e, ClusterError::FailedPrecondition(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("vm 'engine' is being started on host host{holder}; the copy on host host{claimer} must go")
    );

    let e = refusal(&mut s, Op::AdoptVm { vm: Uuid::new_v4(), host: 2 });
    assert!(matches!(e, ClusterError::NotFound(_)), "{e:?}");
    let e = refusal(&mut s, Op::AdoptVm { vm: id, host: 9 });
    assert_eq!(e, ClusterError::NotFound("host 9 not found".into()));
}

#[test]
fn ha_restarts_the_engine_before_every_other_vm_even_one_of_higher_priority() {
    let mut s = hosts();
    // Named to sort last, and given the lowest priority: only its being the engine puts it first.
    at(&mut s, T0, import(ovf_vm("zz-engine"), vec![], true, on("host1")));
    report(&mut s, T0, "zz-engine", Observed::Up);
    let low = VmChanges { ha_priority: Some(HaPriority::Low), ..Default::default() };
    at(&mut s, T0, Op::EditVm { vm: "zz-engine".into(), changes: low });
    running(&mut s, "app", Some(HaPriority::Medium), "host1");
    running(&mut s, "db", Some(HaPriority::High), "host1");

    at(&mut s, T0 + 10, Op::HostDown { id: 1, how: "fenced".into() });
    at(&mut s, T0 + 10, Op::RestartHaVms);
    assert_eq!(ha_restarted(&s), ["zz-engine", "db", "app"]);
    assert!(["zz-engine", "db", "app"].iter().all(|n| vm(&s, n).runtime.status == VmStatus::PoweringUp));
}

#[test]
fn an_engine_that_died_on_a_live_host_waits_for_a_claim_before_ha_restarts_it() {
    let mut s = with_engine();
    running(&mut s, "app", Some(HaPriority::High), "host2");
    let died = T0 + 100;
    // app first: a VM going down afterwards would cut the engine's wait short (see the ignored
    // test below).
    report(&mut s, died, "app", Observed::Down { cause: "QEMU died".into(), on_purpose: false });
    report(&mut s, died, "engine", Observed::Down { cause: "QEMU died".into(), on_purpose: false });
    let r = vm(&s, "engine").ha_state.ha_restart.clone().expect("waits for HA");
    assert_eq!(r.next_try_ms, died + ENGINE_CLAIM_MS);
    assert_eq!(vm(&s, "app").ha_state.ha_restart.as_ref().unwrap().next_try_ms, died, "an ordinary VM is due at once");

    at(&mut s, died + ENGINE_CLAIM_MS - 1, Op::RestartHaVms);
    assert_eq!(vm(&s, "engine").runtime.status, VmStatus::Down, "not before the claim window closes");
    assert_eq!(vm(&s, "app").runtime.status, VmStatus::PoweringUp);
    assert_eq!(s.next_ha_restart_ms(), Some(died + ENGINE_CLAIM_MS));
    at(&mut s, died + ENGINE_CLAIM_MS, Op::RestartHaVms);
    assert_eq!(vm(&s, "engine").runtime.status, VmStatus::PoweringUp);
    assert_eq!(ha_restarted(&s), ["app", "engine"]);
}

#[test]
fn the_engines_claim_window_survives_capacity_coming_back() {
    let mut s = with_engine();
    running(&mut s, "plain", None, "host3");
    let died = T0 + 100;
    report(&mut s, died, "engine", Observed::Down { cause: "QEMU died".into(), on_purpose: false });
    assert_eq!(s.next_ha_restart_ms(), Some(died + ENGINE_CLAIM_MS));
    // An unrelated VM on another host is shut down by its operator a moment later.
    at(&mut s, died + 10, Op::StopVm { vm: "plain".into(), reason: None });
    report(&mut s, died + 20, "plain", Observed::Down { cause: "powered off".into(), on_purpose: true });
    assert_eq!(s.next_ha_restart_ms(), Some(died + ENGINE_CLAIM_MS), "the claim window was cut short");
    at(&mut s, died + 20, Op::RestartHaVms);
    assert_eq!(
        vm(&s, "engine").runtime.status,
        VmStatus::Down,
        "restarted while a hand-started copy may still claim it"
    );
}

#[test]
fn the_engine_and_delete_protected_vms_keep_their_vm_and_disks() {
    let mut s = hosts();
    let engine_disk = disk("engine-disk");
    at(&mut s, T0, import(ovf_vm("engine"), vec![engine_disk.clone()], true, None));
    let e = refusal(&mut s, Op::DeleteVm { vm: "engine".into(), keep_disks: true });
    assert_eq!(
        e,
        ClusterError::FailedPrecondition("vm 'engine' is the cluster's hosted engine and cannot be deleted".into())
    );
    let e = refusal(&mut s, protect("engine", false));
    assert_eq!(
        e,
        ClusterError::FailedPrecondition(
            "vm 'engine' is the cluster's hosted engine; it stays delete-protected".into()
        )
    );
    let e = refusal(&mut s, Op::DeleteDisks { ids: vec![Uuid::new_v4(), engine_disk.id] });
    assert_eq!(
        e,
        ClusterError::FailedPrecondition(
            "disk 'engine-disk' belongs to delete-protected vm 'engine' and cannot be removed".into()
        )
    );

    // An ordinary VM: protected by hand, and the protection lifted by hand.
    let web_disk = disk("web-disk");
    at(&mut s, T0, Op::CreateVm { id: Uuid::new_v4(), spec: spec("web"), disks: vec![web_disk.clone()], start: None });
    at(&mut s, T0, protect("web", true));
    assert!(vm(&s, "web").config.delete_protected);
    let e = refusal(&mut s, Op::DeleteVm { vm: "web".into(), keep_disks: false });
    assert!(e.to_string().starts_with("vm 'web' is delete-protected"), "{e}");
    let e = refusal(&mut s, Op::DeleteDisks { ids: vec![web_disk.id] });
    assert!(e.to_string().contains("delete-protected vm 'web'"), "{e}");
    at(&mut s, T0, protect("web", false));
    at(&mut s, T0, Op::DeleteVm { vm: "web".into(), keep_disks: false });
    assert!(s.find_vm("web").is_none() && !s.disks.contains_key(&web_disk.id));

    // A clone of the (down) engine is an ordinary VM, still protected until lifted.
    let copy_disk = disk("copy-disk");
    let copy = Uuid::new_v4();
    let clone =
        Op::CloneVm { source: "engine".into(), id: copy, name: "copy".into(), disks: vec![copy_disk], macs: vec![] };
    at(&mut s, T0, clone);
    let c = vm(&s, "copy");
    assert!(!c.config.hosted_engine && c.config.delete_protected);
    assert_eq!(s.engine.vm, Some(vm(&s, "engine").id), "the cluster keeps its engine");
    at(&mut s, T0, protect("copy", false));
    at(&mut s, T0, Op::DeleteVm { vm: "copy".into(), keep_disks: false });
    assert!(s.find_vm("copy").is_none());
}
