use super::*;
use crate::model::{ClusterInfo, DomainType, HostFacts, PowerState, VmStatus, DEFAULT_CPU_OVERCOMMIT};

/// A cluster of up hosts named by `(name, memory MiB, cpus)`, ids 1, 2, ... in order.
fn cluster(hosts: &[(&str, u64, u32)]) -> ClusterState {
    let mut s = ClusterState {
        cluster: Some(ClusterInfo {
            name: "lab".into(),
            voters: 3,
            created_ms: 0,
            scheduling: SchedulingPolicy::EvenDistribution,
            cpu_overcommit: DEFAULT_CPU_OVERCOMMIT,
            level: 0,
            level_raised_ms: 0,
            ca_pem: None,
            max_snapshots: 0,
        }),
        ..Default::default()
    };
    for (i, (name, memory_mib, cpus)) in hosts.iter().enumerate() {
        let id = i as NodeId + 1;
        let facts = HostFacts {
            cpus: *cpus,
            memory_mib: *memory_mib,
            libvirt_uri: String::new(),
            domain_type: DomainType::Kvm,
        };
        let host = Host {
            id,
            name: name.to_string(),
            address: format!("127.0.0.1:{}", 7000 + id),
            state: HostState::Up,
            facts,
            joined_ms: 0,
            state_since_ms: 0,
            maintenance: None,
            tags: vec![],
            engine_local_maintenance: false,
            engine_score: None,
        };
        s.hosts.insert(id, host);
    }
    s
}

fn three() -> ClusterState {
    cluster(&[("host1", 8192, 4), ("host2", 8192, 4), ("host3", 8192, 4)])
}

fn add_vm(s: &mut ClusterState, name: &str, memory_mib: u64, vcpus: u32) -> Uuid {
    let id = Uuid::from_u128(s.vms.len() as u128 + 1);
    let vm = Vm::new(id, name, memory_mib, vcpus, 0);
    s.vm_names.insert(name.into(), id);
    s.vms.insert(id, vm);
    id
}

fn host_id(s: &ClusterState, name: &str) -> NodeId {
    s.host_by_name(name).unwrap().id
}

/// Marks VM `name` up on host `host`.
fn run_on(s: &mut ClusterState, name: &str, host: &str) {
    let h = host_id(s, host);
    let id = s.vm_names[name];
    let vm = s.vms.get_mut(&id).unwrap();
    (vm.runtime.host, vm.runtime.status, vm.runtime.desired) = (Some(h), VmStatus::Up, PowerState::Up);
}

fn vm_mut<'a>(s: &'a mut ClusterState, name: &str) -> &'a mut Vm {
    let id = s.vm_names[name];
    s.vms.get_mut(&id).unwrap()
}

fn group(s: &mut ClusterState, name: &str, polarity: Polarity, enforcing: bool, vms: &[&str]) {
    let vms = vms.iter().map(|v| s.vm_names[*v]).collect();
    s.affinity_groups.insert(name.into(), AffinityGroup { name: name.into(), polarity, enforcing, vms, created_ms: 0 });
}

fn label(s: &mut ClusterState, name: &str, vms: &[&str], hosts: &[&str]) {
    let vms = vms.iter().map(|v| s.vm_names[*v]).collect();
    let hosts = hosts.iter().map(|h| host_id(s, h)).collect();
    s.affinity_labels.insert(name.into(), AffinityLabel { name: name.into(), vms, hosts, created_ms: 0 });
}

/// The chosen host's name, or the refusal's message.
fn pick(s: &ClusterState, vm: &str, wanted: Option<&str>, purpose: Purpose) -> Result<String, String> {
    let vm = s.find_vm(vm).unwrap();
    let exclude: Vec<NodeId> = vm.runtime.host.filter(|_| purpose.is_migration()).into_iter().collect();
    choose(s, vm, wanted, &exclude, purpose).map(|h| s.host_name(h)).map_err(|e| {
        assert!(matches!(e, ClusterError::FailedPrecondition(_) | ClusterError::NotFound(_)), "{e:?}");
        e.to_string()
    })
}

fn start(s: &ClusterState, vm: &str) -> Result<String, String> {
    pick(s, vm, None, Purpose::Start)
}

#[test]
fn only_up_hosts_are_candidates() {
    let mut s = three();
    s.hosts.get_mut(&1).unwrap().state = HostState::Joining;
    s.hosts.get_mut(&2).unwrap().facts.memory_mib = 4096;
    add_vm(&mut s, "web1", 1024, 1);
    assert_eq!(start(&s, "web1"), Ok("host3".into()));
    assert_eq!(
        pick(&s, "web1", Some("host1"), Purpose::Start),
        Err("host host1 is joining, not up; choose another host".into())
    );
    assert_eq!(pick(&s, "web1", Some("nope"), Purpose::Start), Err("host 'nope' not found".into()));
    for h in s.hosts.values_mut() {
        h.state = HostState::Joining;
    }
    assert_eq!(start(&s, "web1"), Err("no host is up to run vm 'web1' (1024 MiB, 1 vCPU)".into()));
}

#[test]
fn even_distribution_takes_the_most_free_memory_and_packing_the_least_that_fits() {
    let mut s = cluster(&[("host1", 4096, 4), ("host2", 8192, 4), ("host3", 2048, 4)]);
    add_vm(&mut s, "web1", 1024, 1);
    add_vm(&mut s, "big", 3072, 1);
    assert_eq!(start(&s, "web1"), Ok("host2".into()));
    s.cluster.as_mut().unwrap().scheduling = SchedulingPolicy::Packing;
    assert_eq!(start(&s, "web1"), Ok("host3".into()), "host3 has the least free memory that fits");
    assert_eq!(start(&s, "big"), Ok("host1".into()), "host3 is too small for 3 GiB");
}

#[test]
fn ties_go_to_fewer_running_vms_then_to_the_lower_id() {
    let mut s = cluster(&[("host1", 4096, 4), ("host2", 4096, 4), ("host3", 4096, 4)]);
    add_vm(&mut s, "web1", 512, 1);
    assert_eq!(start(&s, "web1"), Ok("host1".into()));
    // host1 and host2 both have 3 GiB free; host1 runs two VMs, host2 one.
    s.hosts.get_mut(&3).unwrap().facts.memory_mib = 1024;
    for (name, host, mem) in [("a", "host1", 512), ("b", "host1", 512), ("c", "host2", 1024)] {
        add_vm(&mut s, name, mem, 1);
        run_on(&mut s, name, host);
    }
    assert_eq!(start(&s, "web1"), Ok("host2".into()));
    s.cluster.as_mut().unwrap().scheduling = SchedulingPolicy::Packing;
    assert_eq!(start(&s, "web1"), Ok("host3".into()));
}

#[test]
fn memory_and_vcpus_are_checked_with_the_cluster_overcommit() {
    let mut s = cluster(&[("host1", 4096, 2), ("host2", 4096, 2)]);
    add_vm(&mut s, "wide", 512, 6);
    add_vm(&mut s, "fat", 5000, 1);
    assert_eq!(start(&s, "wide"), Ok("host1".into()), "2 CPUs x 4 = 8 vCPUs");
    s.cluster.as_mut().unwrap().cpu_overcommit = 2;
    assert_eq!(
        start(&s, "wide"),
        Err("not enough capacity for vm 'wide' (512 MiB, 6 vCPUs): host1 has 4096 MiB and 4 vCPUs free; \
             host2 has 4096 MiB and 4 vCPUs free"
            .into())
    );
    assert_eq!(
        pick(&s, "fat", Some("host2"), Purpose::Start),
        Err("host host2 has not enough room for vm 'fat' (5000 MiB, 1 vCPU): 4096 MiB and 4 vCPUs free".into())
    );
    s.cluster.as_mut().unwrap().cpu_overcommit = 3;
    assert_eq!(start(&s, "wide"), Ok("host1".into()));
}

#[test]
fn host_tags_must_all_be_present() {
    let mut s = three();
    s.hosts.get_mut(&1).unwrap().tags = vec!["ssd".into()];
    s.hosts.get_mut(&3).unwrap().tags = vec!["gpu".into(), "ssd".into()];
    s.hosts.get_mut(&3).unwrap().facts.memory_mib = 2048;
    add_vm(&mut s, "web1", 1024, 1);
    vm_mut(&mut s, "web1").config.host_tags = vec!["ssd".into()];
    assert_eq!(start(&s, "web1"), Ok("host1".into()));
    vm_mut(&mut s, "web1").config.host_tags = vec!["ssd".into(), "gpu".into()];
    assert_eq!(start(&s, "web1"), Ok("host3".into()), "the only host with both, though it has the least memory");
    assert_eq!(
        pick(&s, "web1", Some("host1"), Purpose::Start),
        Err("host host1 lacks tag(s) gpu that vm 'web1' needs".into())
    );
    vm_mut(&mut s, "web1").config.host_tags = vec!["ssd".into(), "nvme".into()];
    assert_eq!(start(&s, "web1"), Err("no host has tags ssd, nvme, which vm 'web1' needs".into()));
}

#[test]
fn a_pinned_vm_runs_only_on_its_hosts() {
    let mut s = three();
    s.hosts.get_mut(&1).unwrap().facts.memory_mib = 16384;
    add_vm(&mut s, "web1", 1024, 1);
    vm_mut(&mut s, "web1").config.pinned_hosts = vec![2, 3];
    let chosen = start(&s, "web1").unwrap();
    assert_eq!(chosen, "host2", "host1 has the most memory but is not pinned");
    assert_eq!(
        pick(&s, "web1", Some("host1"), Purpose::Start),
        Err("vm 'web1' is pinned to host2, host3; host host1 is not one of them".into())
    );
    s.hosts.get_mut(&2).unwrap().state = HostState::Joining;
    s.hosts.get_mut(&3).unwrap().state = HostState::Joining;
    assert_eq!(start(&s, "web1"), Err("vm 'web1' is pinned to host2, host3; none of them is up".into()));
    // Pins are hard for HA restarts too.
    assert_eq!(pick(&s, "web1", None, Purpose::HaRestart), start(&s, "web1"));
}

#[test]
fn an_affinity_label_keeps_its_vms_on_its_hosts() {
    let mut s = three();
    add_vm(&mut s, "db1", 1024, 1);
    add_vm(&mut s, "other", 1024, 1);
    s.hosts.get_mut(&3).unwrap().facts.memory_mib = 2048;
    label(&mut s, "fast-disks", &["db1"], &["host3"]);
    assert_eq!(start(&s, "db1"), Ok("host3".into()));
    assert_eq!(start(&s, "other"), Ok("host1".into()), "a label binds only its own VMs");
    assert_eq!(
        pick(&s, "db1", Some("host1"), Purpose::Start),
        Err("host host1 is excluded by affinity label fast-disks: vm 'db1' may run only on host3".into())
    );
    add_vm(&mut s, "filler", 2048, 1);
    run_on(&mut s, "filler", "host3");
    assert_eq!(
        start(&s, "db1"),
        Err("no host can run vm 'db1' (1024 MiB, 1 vCPU): 2 hosts excluded by affinity label fast-disks, \
             1 host has not enough memory (at most 0 MiB free)"
            .into())
    );
}

#[test]
fn an_enforcing_negative_group_spreads_its_members() {
    let mut s = three();
    for name in ["db1", "db2", "db3", "db4"] {
        add_vm(&mut s, name, 1024, 1);
    }
    add_vm(&mut s, "loner", 1024, 1);
    s.hosts.get_mut(&1).unwrap().facts.memory_mib = 16384;
    group(&mut s, "db-spread", Polarity::Negative, true, &["db1", "db2", "db3", "db4"]);
    run_on(&mut s, "db1", "host1");
    run_on(&mut s, "db2", "host2");
    assert_eq!(start(&s, "db3"), Ok("host3".into()), "host1 has most memory but runs db1");
    assert_eq!(
        pick(&s, "db3", Some("host1"), Purpose::Start),
        Err("host host1 is excluded by enforcing affinity group db-spread (negative): VM db1 runs there".into())
    );
    run_on(&mut s, "db3", "host3");
    assert_eq!(
        start(&s, "db4"),
        Err("no host can run vm 'db4' (1024 MiB, 1 vCPU): 3 hosts excluded by enforcing affinity group \
             db-spread (negative)"
            .into())
    );
    assert_eq!(start(&s, "loner"), Ok("host1".into()));
    // A member on its way to a host counts there already.
    vm_mut(&mut s, "db3").runtime.status = VmStatus::Migrating;
    vm_mut(&mut s, "db3").migration_state.migrating_to = Some(2);
    vm_mut(&mut s, "db2").runtime.host = None;
    vm_mut(&mut s, "db2").runtime.status = VmStatus::Down;
    assert!(start(&s, "db2").unwrap_err().contains("3 hosts excluded by enforcing affinity group db-spread"));
}

#[test]
fn an_enforcing_positive_group_keeps_its_members_together() {
    let mut s = three();
    for name in ["app", "cache", "web"] {
        add_vm(&mut s, name, 2048, 1);
    }
    group(&mut s, "stack", Polarity::Positive, true, &["app", "cache", "web"]);
    s.hosts.get_mut(&1).unwrap().facts.memory_mib = 16384;
    assert_eq!(start(&s, "app"), Ok("host1".into()), "no member runs yet: no constraint");
    s.hosts.get_mut(&2).unwrap().facts.memory_mib = 4096;
    run_on(&mut s, "app", "host2");
    assert_eq!(start(&s, "cache"), Ok("host2".into()));
    assert_eq!(
        pick(&s, "cache", Some("host1"), Purpose::Start),
        Err("host host1 is excluded by enforcing affinity group stack (positive): its other members run on host host2"
            .into())
    );
    run_on(&mut s, "cache", "host2");
    assert_eq!(
        start(&s, "web"),
        Err("no host can run vm 'web' (2048 MiB, 1 vCPU): 2 hosts excluded by enforcing affinity group stack \
             (positive), 1 host has not enough memory (at most 0 MiB free)"
            .into())
    );
}

#[test]
fn soft_groups_change_the_choice_but_never_refuse() {
    let mut s = cluster(&[("host1", 16384, 4), ("host2", 8192, 4), ("host3", 4096, 4)]);
    for name in ["a", "b", "c", "d"] {
        add_vm(&mut s, name, 1024, 1);
    }
    assert_eq!(start(&s, "b"), Ok("host1".into()), "without rules: the most free memory");
    group(&mut s, "near", Polarity::Positive, false, &["a", "b"]);
    run_on(&mut s, "a", "host3");
    assert_eq!(start(&s, "b"), Ok("host3".into()), "soft positive: next to a");
    s.hosts.get_mut(&3).unwrap().facts.memory_mib = 1024;
    assert_eq!(start(&s, "b"), Ok("host1".into()), "soft: when a's host is full, anywhere else");

    group(&mut s, "apart", Polarity::Negative, false, &["c", "d"]);
    run_on(&mut s, "c", "host1");
    assert_eq!(start(&s, "d"), Ok("host2".into()), "soft negative: away from c");
    s.cluster.as_mut().unwrap().scheduling = SchedulingPolicy::Packing;
    assert_eq!(start(&s, "d"), Ok("host2".into()), "host3 is full; host1 holds c");
    s.hosts.get_mut(&2).unwrap().state = HostState::Joining;
    assert_eq!(start(&s, "d"), Ok("host1".into()), "soft: with c if nothing else is left");
}

#[test]
fn the_migration_policy_depends_on_who_migrates() {
    let mut s = three();
    add_vm(&mut s, "web1", 1024, 1);
    run_on(&mut s, "web1", "host1");
    let all = [Purpose::Start, Purpose::HaRestart, Purpose::MigrateByOperator, Purpose::MigrateAutomatic];
    let allowed = |s: &ClusterState| all.map(|p| pick(s, "web1", None, p).is_ok());
    assert_eq!(allowed(&s), [true; 4]);
    assert_eq!(pick(&s, "web1", None, Purpose::MigrateAutomatic), Ok("host2".into()), "never its own host");
    vm_mut(&mut s, "web1").config.migration = MigrationPolicy::Manual;
    assert_eq!(allowed(&s), [true, true, true, false]);
    assert_eq!(
        pick(&s, "web1", None, Purpose::MigrateAutomatic),
        Err("the migration policy of vm 'web1' is 'manual': only an operator may migrate it".into())
    );
    vm_mut(&mut s, "web1").config.migration = MigrationPolicy::None;
    assert_eq!(allowed(&s), [true, true, false, false]);
    assert_eq!(
        pick(&s, "web1", Some("host2"), Purpose::MigrateByOperator),
        Err("the migration policy of vm 'web1' is 'none': it is never migrated".into())
    );
    vm_mut(&mut s, "web1").config.migration = MigrationPolicy::Allow;
    assert_eq!(
        pick(&s, "web1", Some("host1"), Purpose::MigrateByOperator),
        Err("vm 'web1' already runs on host host1".into())
    );
}

#[test]
fn conflicting_rules_are_refused_naming_each_rule() {
    let mut s = three();
    for name in ["db1", "db2"] {
        add_vm(&mut s, name, 1024, 1);
    }
    group(&mut s, "spread", Polarity::Negative, true, &["db1", "db2"]);
    label(&mut s, "rack-a", &["db2"], &["host1"]);
    run_on(&mut s, "db1", "host1");
    assert_eq!(
        start(&s, "db2"),
        Err("no host can run vm 'db2' (1024 MiB, 1 vCPU): 2 hosts excluded by affinity label rack-a, \
             1 host excluded by enforcing affinity group spread (negative)"
            .into())
    );
    vm_mut(&mut s, "db2").config.pinned_hosts = vec![1, 2];
    s.hosts.get_mut(&3).unwrap().state = HostState::Joining;
    assert_eq!(
        start(&s, "db2"),
        Err("no host can run vm 'db2' (1024 MiB, 1 vCPU): 1 host is not up, 1 host excluded by affinity label \
             rack-a, 1 host excluded by enforcing affinity group spread (negative)"
            .into())
    );
}

#[test]
fn the_incremental_scheduler_places_as_choose_would_one_by_one() {
    let mut s = cluster(&[("host1", 8192, 4), ("host2", 6144, 2), ("host3", 4096, 8), ("host4", 8192, 4)]);
    s.hosts.get_mut(&4).unwrap().tags = vec!["ssd".into()];
    let names: Vec<String> = (0..24).map(|i| format!("vm{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        add_vm(&mut s, n, 256 * (1 + i as u64 % 4), 1 + i as u32 % 3);
    }
    group(&mut s, "g-neg", Polarity::Negative, true, &["vm0", "vm1", "vm2", "vm3"]);
    group(&mut s, "g-pos", Polarity::Positive, true, &["vm4", "vm5", "vm6"]);
    group(&mut s, "g-soft", Polarity::Negative, false, &["vm7", "vm8", "vm9"]);
    label(&mut s, "l", &["vm10", "vm11"], &["host2", "host3"]);
    vm_mut(&mut s, "vm12").config.host_tags = vec!["ssd".into()];
    vm_mut(&mut s, "vm13").config.pinned_hosts = vec![3];

    let mut batch = Vec::new();
    {
        let mut sched = Scheduler::new(&s);
        for n in &names {
            let vm = s.find_vm(n).unwrap();
            let got = sched.place(vm, Purpose::Start).map_err(|e| e.to_string());
            if let Ok(h) = &got {
                sched.assign(vm.id, *h);
            }
            batch.push(got);
        }
    }
    let mut one_by_one = Vec::new();
    for n in &names {
        let vm = s.find_vm(n).unwrap().clone();
        let got = choose(&s, &vm, None, &[], Purpose::Start).map_err(|e| e.to_string());
        if let Ok(h) = got {
            let v = s.vms.get_mut(&vm.id).unwrap();
            (v.runtime.host, v.runtime.status) = (Some(h), VmStatus::PoweringUp);
        }
        one_by_one.push(got);
    }
    assert_eq!(batch, one_by_one);
    assert!(batch.iter().filter(|r| r.is_ok()).count() >= 20, "{batch:?}");
    let hosts_of =
        |names: &[&str]| -> Vec<Option<NodeId>> { names.iter().map(|n| s.find_vm(n).unwrap().runtime.host).collect() };
    let spread = hosts_of(&["vm0", "vm1", "vm2", "vm3"]);
    let distinct: std::collections::BTreeSet<_> = spread.iter().collect();
    assert_eq!(distinct.len(), 4, "{spread:?}");
    let together = hosts_of(&["vm4", "vm5", "vm6"]);
    assert!(together.iter().all(|h| *h == together[0]), "{together:?}");
    assert!(hosts_of(&["vm10", "vm11"]).iter().all(|h| matches!(h, Some(2 | 3))));
    assert_eq!(hosts_of(&["vm12", "vm13"]), [Some(4), Some(3)]);
}

#[test]
fn assign_moves_a_vm_and_its_resources() {
    let mut s = cluster(&[("host1", 2048, 4), ("host2", 2048, 4)]);
    add_vm(&mut s, "a", 2048, 1);
    add_vm(&mut s, "b", 2048, 1);
    let (a, b) = (s.vm_names["a"], s.vm_names["b"]);
    let mut sched = Scheduler::new(&s);
    sched.assign(a, 1);
    assert_eq!(sched.place(&s.vms[&b], Purpose::Start).unwrap(), 2);
    sched.assign(a, 2);
    assert_eq!(sched.place(&s.vms[&b], Purpose::Start).unwrap(), 1, "a left host1");
    sched.assign(b, 1);
    assert!(sched.place(&s.vms[&b], Purpose::MigrateByOperator).unwrap_err().to_string().contains("not enough"));
}

/// Makes VM `name` the hosted engine.
fn engine(s: &mut ClusterState, name: &str) {
    vm_mut(s, name).config.hosted_engine = true;
}

fn score(s: &mut ClusterState, host: &str, score: u32, penalties: &[(&str, u32)]) {
    let penalties = penalties.iter().map(|(w, n)| (w.to_string(), *n)).collect();
    let id = host_id(s, host);
    s.hosts.get_mut(&id).unwrap().engine_score = Some(crate::model::EngineScore { score, penalties, measured_ms: 0 });
}

#[test]
fn the_hosted_engine_goes_to_the_best_scored_host_that_may_run_it() {
    let mut s = cluster(&[("host1", 16384, 4), ("host2", 8192, 4), ("host3", 4096, 4)]);
    add_vm(&mut s, "engine", 1024, 1);
    engine(&mut s, "engine");
    add_vm(&mut s, "plain", 1024, 1);
    assert_eq!(start(&s, "engine"), Ok("host1".into()), "no scores yet: as any VM, the most free memory");

    score(&mut s, "host2", 2400, &[("cpu load", 1000)]);
    score(&mut s, "host3", 3400, &[]);
    assert_eq!(start(&s, "engine"), Ok("host3".into()), "the best score wins over free memory");
    assert_eq!(start(&s, "plain"), Ok("host1".into()), "an ordinary VM ignores scores");
    assert_eq!(pick(&s, "engine", None, Purpose::HaRestart), Ok("host3".into()));

    score(&mut s, "host3", 0, &[("gateway 10.0.0.1 unreachable", 3400)]);
    assert_eq!(start(&s, "engine"), Ok("host2".into()));
    assert_eq!(
        pick(&s, "engine", Some("host3"), Purpose::Start),
        Err("host host3 may not run the hosted engine: its engine score is 0 (gateway 10.0.0.1 unreachable (-3400))"
            .into())
    );
    assert_eq!(pick(&s, "plain", Some("host3"), Purpose::Start), Ok("host3".into()), "a score binds only the engine");

    s.hosts.get_mut(&2).unwrap().engine_local_maintenance = true;
    assert_eq!(start(&s, "engine"), Ok("host1".into()), "a host with no score is eligible when no scored one is");
    assert_eq!(
        pick(&s, "engine", Some("host2"), Purpose::Start),
        Err("host host2 may not run the hosted engine: it is in hosted-engine local maintenance".into())
    );
    assert_eq!(start(&s, "plain"), Ok("host1".into()));

    score(&mut s, "host1", 0, &[]);
    assert_eq!(
        start(&s, "engine"),
        Err("no host can run vm 'engine' (1024 MiB, 1 vCPU): 3 hosts may not run the hosted engine (local \
             maintenance or score 0)"
            .into())
    );
}

#[test]
fn a_host_without_an_engine_score_comes_after_every_scored_host() {
    let mut s = cluster(&[("host1", 16384, 8), ("host2", 2048, 1), ("host3", 8192, 4)]);
    add_vm(&mut s, "engine", 1024, 1);
    engine(&mut s, "engine");
    score(&mut s, "host2", 1, &[("everything", 3399)]);
    assert_eq!(start(&s, "engine"), Ok("host2".into()), "the lowest score above 0 beats no score");
    s.cluster.as_mut().unwrap().scheduling = SchedulingPolicy::Packing;
    score(&mut s, "host3", 1, &[("everything", 3399)]);
    assert_eq!(start(&s, "engine"), Ok("host2".into()), "equal scores: the policy decides (packing)");
    s.cluster.as_mut().unwrap().scheduling = SchedulingPolicy::EvenDistribution;
    assert_eq!(start(&s, "engine"), Ok("host3".into()), "equal scores: the policy decides (even)");
    // Running on host3, it migrates to the best-scored other host, never back to its own.
    run_on(&mut s, "engine", "host3");
    score(&mut s, "host3", 3400, &[]);
    assert_eq!(pick(&s, "engine", None, Purpose::MigrateAutomatic), Ok("host2".into()));
}
