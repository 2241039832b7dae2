//! Affinity groups and labels, host tags, pins, migration and scheduling policy as commands:
//! what they change, the events they record, and refusals that change nothing.

use super::*;
use crate::command::StartOrder;
use crate::model::{MigrationPolicy, Observed, Polarity, SchedulingPolicy, VmStatus};

/// host1..host3 with 4 GiB and 4 CPUs each, and VMs `names` (1 GiB, 2 vCPUs), all down.
fn cluster(names: &[&str]) -> ClusterState {
    let mut s = bootstrapped();
    let facts = HostFacts { cpus: 4, memory_mib: 4096, libvirt_uri: "x".into(), domain_type: Default::default() };
    s.hosts.get_mut(&1).unwrap().facts = facts.clone();
    for (id, name) in [(2, "host2"), (3, "host3")] {
        let op = Op::RegisterHost {
            token_hash: "good".into(),
            name: name.into(),
            address: format!("a:{id}"),
            facts: facts.clone(),
        };
        assert!(s.apply_command(&cmd(T0, op)).0.is_ok());
        s.apply_command(&cmd(T0, Op::HostJoined { id, voter: true }));
    }
    for n in names {
        assert!(create(&mut s, n).0.is_ok());
    }
    s
}

fn ok(s: &mut ClusterState, op: Op) -> Outcome {
    s.apply_command(&cmd(T0 + 10, op)).0.unwrap_or_else(|e| panic!("refused: {e}"))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn start_on(s: &mut ClusterState, vm: &str, host: Option<&str>) -> Result<Outcome, ClusterError> {
    s.apply_command(&cmd(T0 + 10, Op::StartVm { vm: vm.into(), order: StartOrder { host: host.map(String::from) } })).0
}

fn host_of(s: &ClusterState, vm: &str) -> String {
    s.host_name(s.find_vm(vm).unwrap().runtime.host.unwrap())
}

fn new_group(name: &str, polarity: Polarity, enforcing: bool, vms: &[&str]) -> Op {
    Op::CreateAffinityGroup { name: name.into(), polarity, enforcing, vms: strings(vms) }
}

fn edit_group(name: &str, add: &[&str], remove: &[&str]) -> Op {
    Op::EditAffinityGroup {
        name: name.into(),
        add_vms: strings(add),
        remove_vms: strings(remove),
        enforcing: None,
        polarity: None,
    }
}

fn edit_vm(vm: &str, changes: VmChanges) -> Op {
    Op::EditVm { vm: vm.into(), changes }
}

#[test]
fn groups_are_created_edited_and_deleted_with_events() {
    let mut s = cluster(&["db1", "db2", "db3", "web1"]);
    let Outcome::AffinityGroup(g) =
        ok(&mut s, new_group("db-spread", Polarity::Negative, true, &["db1", "db2", "db1"]))
    else {
        panic!("no group")
    };
    assert_eq!(g.vms, vec![s.vm_names["db1"], s.vm_names["db2"]], "each VM once");
    assert_eq!(s.affinity_groups["db-spread"], *g);
    ok(&mut s, edit_group("db-spread", &["db3"], &["db1"]));
    ok(
        &mut s,
        Op::EditAffinityGroup {
            name: "db-spread".into(),
            add_vms: vec![],
            remove_vms: vec![],
            enforcing: Some(false),
            polarity: Some(Polarity::Positive),
        },
    );
    let g = &s.affinity_groups["db-spread"];
    assert_eq!(
        (g.vms.clone(), g.polarity, g.enforcing),
        (vec![s.vm_names["db2"], s.vm_names["db3"]], Polarity::Positive, false)
    );
    ok(&mut s, Op::DeleteAffinityGroup { name: "db-spread".into() });
    assert!(s.affinity_groups.is_empty());
    let msgs: Vec<&str> =
        s.events.iter().filter(|e| e.kind == EventKind::AffinityChanged).map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "Affinity group db-spread (negative, enforcing) was created with VMs db1, db2.",
            "Affinity group db-spread was edited: added VM db3, removed VM db1.",
            "Affinity group db-spread was edited: polarity negative -> positive, now soft.",
            "Affinity group db-spread was deleted.",
        ]
    );
}

#[test]
fn group_refusals_name_the_problem_and_change_nothing() {
    let mut s = cluster(&["db1", "db2", "web1"]);
    ok(&mut s, new_group("g", Polarity::Negative, true, &["db1"]));
    refused(&mut s, new_group("g", Polarity::Negative, true, &[]), "affinity group 'g' already exists");
    refused(
        &mut s,
        new_group("G_1", Polarity::Negative, true, &[]),
        "name: may only contain a-z, 0-9 and '-' (got 'G_1')",
    );
    refused(&mut s, new_group("h", Polarity::Positive, false, &["db1", "nope"]), "vm 'nope' not found");
    refused(&mut s, edit_group("x", &["db2"], &[]), "affinity group 'x' not found");
    refused(&mut s, edit_group("g", &[], &[]), "edit: nothing to change: give at least one field");
    refused(&mut s, edit_group("g", &["db1"], &[]), "vm 'db1' is already in affinity group 'g'");
    refused(&mut s, edit_group("g", &["db2"], &["web1"]), "vm 'web1' is not in affinity group 'g'");
    refused(&mut s, Op::DeleteAffinityGroup { name: "x".into() }, "affinity group 'x' not found");
}

#[test]
fn an_enforcing_group_that_running_vms_break_is_refused() {
    let mut s = cluster(&["db1", "db2", "app1", "app2"]);
    for (vm, host) in [("db1", "host1"), ("db2", "host1"), ("app1", "host1"), ("app2", "host2")] {
        start_on(&mut s, vm, Some(host)).unwrap();
    }
    refused(
        &mut s,
        new_group("db-spread", Polarity::Negative, true, &["db1", "db2"]),
        "enforcing affinity group db-spread (negative) would be broken at once: VMs db1 and db2 both run on host host1",
    );
    refused(
        &mut s,
        new_group("stack", Polarity::Positive, true, &["app1", "app2"]),
        "enforcing affinity group stack (positive) would be broken at once: VM app1 runs on host host1 and VM app2 on host host2",
    );
    // Soft, it is a preference; made enforcing later, it is checked again.
    ok(&mut s, new_group("db-spread", Polarity::Negative, false, &["db1", "db2"]));
    refused(
        &mut s,
        Op::EditAffinityGroup {
            name: "db-spread".into(),
            add_vms: vec![],
            remove_vms: vec![],
            enforcing: Some(true),
            polarity: None,
        },
        "enforcing affinity group db-spread (negative) would be broken at once: VMs db1 and db2 both run on host host1",
    );
    ok(&mut s, new_group("apart", Polarity::Negative, true, &["db1", "app2"]));
    refused(
        &mut s,
        edit_group("apart", &["app1"], &[]),
        "enforcing affinity group apart (negative) would be broken at once: VMs db1 and app1 both run on host host1",
    );
}

#[test]
fn starts_follow_groups_and_a_fourth_member_is_refused_naming_the_rule() {
    let mut s = cluster(&["db1", "db2", "db3", "db4"]);
    ok(&mut s, new_group("db-spread", Polarity::Negative, true, &["db1", "db2", "db3", "db4"]));
    for vm in ["db1", "db2", "db3"] {
        start_on(&mut s, vm, None).unwrap();
    }
    let hosts: std::collections::BTreeSet<String> = ["db1", "db2", "db3"].iter().map(|v| host_of(&s, v)).collect();
    assert_eq!(hosts.len(), 3);
    let before = s.clone();
    let err = start_on(&mut s, "db4", None).unwrap_err().to_string();
    assert_eq!(
        err,
        "no host can run vm 'db4' (1024 MiB, 2 vCPUs): 3 hosts excluded by enforcing affinity group db-spread (negative)"
    );
    assert_eq!(s, before);
}

#[test]
fn labels_bind_vms_to_hosts() {
    let mut s = cluster(&["db1", "web1"]);
    let Outcome::AffinityLabel(l) =
        ok(&mut s, Op::CreateAffinityLabel { name: "fast".into(), vms: strings(&["db1"]), hosts: strings(&["host3"]) })
    else {
        panic!("no label")
    };
    assert_eq!((l.vms.clone(), l.hosts.clone()), (vec![s.vm_names["db1"]], vec![3]));
    start_on(&mut s, "db1", None).unwrap();
    assert_eq!(host_of(&s, "db1"), "host3");
    refused(
        &mut s,
        Op::CreateAffinityLabel { name: "fast".into(), vms: vec![], hosts: vec![] },
        "affinity label 'fast' already exists",
    );
    refused(
        &mut s,
        Op::CreateAffinityLabel { name: "x".into(), vms: vec![], hosts: strings(&["host9"]) },
        "host 'host9' not found",
    );
    refused(
        &mut s,
        Op::EditAffinityLabel {
            name: "fast".into(),
            add_vms: vec![],
            remove_vms: vec![],
            add_hosts: strings(&["host1"]),
            remove_hosts: strings(&["host3"]),
        },
        "affinity label fast would be broken at once: VM db1 runs on host host3, which the label does not include; \
         migrate or stop it first",
    );
    ok(
        &mut s,
        Op::EditAffinityLabel {
            name: "fast".into(),
            add_vms: strings(&["web1"]),
            remove_vms: vec![],
            add_hosts: strings(&["host2"]),
            remove_hosts: vec![],
        },
    );
    assert_eq!(s.events.back().unwrap().message, "Affinity label fast was edited: added VM web1, added host host2.");
    start_on(&mut s, "web1", None).unwrap();
    assert_eq!(host_of(&s, "web1"), "host2", "host1 has as much room, but the label excludes it");
    ok(&mut s, Op::DeleteAffinityLabel { name: "fast".into() });
    refused(&mut s, Op::DeleteAffinityLabel { name: "fast".into() }, "affinity label 'fast' not found");
}

#[test]
fn deleted_vms_and_removed_hosts_leave_the_rules() {
    let mut s = cluster(&["a", "b"]);
    ok(&mut s, new_group("g", Polarity::Positive, false, &["a", "b"]));
    ok(
        &mut s,
        Op::CreateAffinityLabel { name: "l".into(), vms: strings(&["a", "b"]), hosts: strings(&["host2", "host3"]) },
    );
    ok(&mut s, edit_vm("b", VmChanges { pinned_hosts: Some(strings(&["host1", "host3"])), ..Default::default() }));
    ok(&mut s, Op::DeleteVm { vm: "a".into(), keep_disks: false });
    let b = s.vm_names["b"];
    assert_eq!(s.affinity_groups["g"].vms, vec![b]);
    assert_eq!(s.affinity_labels["l"].vms, vec![b]);
    ok(&mut s, Op::RemoveHost { id: 3 });
    assert_eq!(s.affinity_labels["l"].hosts, vec![2]);
    assert_eq!(s.vms[&b].config.pinned_hosts, vec![1]);
}

#[test]
fn host_tags_and_vm_tags_pins_and_migration_policy() {
    let mut s = cluster(&["web1", "web2"]);
    let Outcome::Host(h) =
        ok(&mut s, Op::EditHost { host: "host2".into(), tags: Some(strings(&["ssd", "gpu", "ssd"])) })
    else {
        panic!("no host")
    };
    assert_eq!(h.tags, ["ssd", "gpu"]);
    assert_eq!(s.events.back().unwrap().message, "Host host2 was edited: tags ssd, gpu.");
    refused(&mut s, Op::EditHost { host: "nope".into(), tags: Some(vec![]) }, "host 'nope' not found");
    refused(
        &mut s,
        Op::EditHost { host: "host2".into(), tags: Some(strings(&["SSD"])) },
        "tags: may only contain a-z, 0-9 and '-' (got 'SSD')",
    );

    let changes =
        VmChanges { host_tags: Some(strings(&["gpu"])), migration: Some(MigrationPolicy::None), ..Default::default() };
    let Outcome::Vm(vm) = ok(&mut s, edit_vm("web1", changes)) else { panic!("no vm") };
    assert_eq!((vm.config.host_tags.clone(), vm.config.migration), (strings(&["gpu"]), MigrationPolicy::None));
    assert_eq!(s.events.back().unwrap().message, "VM web1 was edited: host tags gpu, migration policy allow -> none.");
    start_on(&mut s, "web1", None).unwrap();
    assert_eq!(host_of(&s, "web1"), "host2");
    refused(
        &mut s,
        Op::EditHost { host: "host2".into(), tags: Some(strings(&["ssd"])) },
        "vm 'web1' runs on host host2 and needs its tag gpu; migrate or stop the VM first",
    );
    refused(
        &mut s,
        edit_vm("web1", VmChanges { host_tags: Some(strings(&["gpu", "nvme"])), ..Default::default() }),
        "vm 'web1' runs on host host2, which lacks tag(s) nvme; migrate or stop it first",
    );
    refused(
        &mut s,
        edit_vm("web1", VmChanges { pinned_hosts: Some(strings(&["host1"])), ..Default::default() }),
        "vm 'web1' runs on host host2, which is not among its new pinned hosts host1; migrate or stop it first",
    );
    refused(
        &mut s,
        edit_vm("web1", VmChanges { pinned_hosts: Some(strings(&["host7"])), ..Default::default() }),
        "host 'host7' not found",
    );
    let v = s.find_vm("web1").unwrap();
    let (id, epoch) = (v.id, v.runtime.epoch);
    ok(&mut s, Op::ReportVm { vm: id, host: 2, epoch, observed: Observed::Up });
    assert_eq!(s.find_vm("web1").unwrap().runtime.status, VmStatus::Up);
    refused(
        &mut s,
        Op::MigrateVm { vm: "web1".into(), to: None },
        "the migration policy of vm 'web1' is 'none': it is never migrated",
    );

    ok(&mut s, edit_vm("web2", VmChanges { pinned_hosts: Some(strings(&["host3"])), ..Default::default() }));
    start_on(&mut s, "web2", None).unwrap();
    assert_eq!(host_of(&s, "web2"), "host3");
    ok(
        &mut s,
        edit_vm("web2", VmChanges { pinned_hosts: Some(vec![]), host_tags: Some(vec![]), ..Default::default() }),
    );
    assert!(s.find_vm("web2").unwrap().config.pinned_hosts.is_empty());
}

#[test]
fn the_scheduling_policy_and_overcommit_are_cluster_wide() {
    let mut s = cluster(&["a", "b", "wide"]);
    let Outcome::Cluster(info) =
        ok(&mut s, Op::SetSchedulingPolicy { policy: Some(SchedulingPolicy::Packing), cpu_overcommit: Some(1) })
    else {
        panic!("no cluster")
    };
    assert_eq!((info.scheduling, info.cpu_overcommit), (SchedulingPolicy::Packing, 1));
    assert_eq!(
        s.events.back().unwrap().message,
        "Cluster settings were changed: scheduling even -> pack, CPU overcommit 4 -> 1 vCPUs per CPU."
    );
    start_on(&mut s, "a", None).unwrap();
    start_on(&mut s, "b", None).unwrap();
    assert_eq!(host_of(&s, "a"), host_of(&s, "b"), "packing fills one host first");
    refused(
        &mut s,
        Op::SetSchedulingPolicy { policy: None, cpu_overcommit: Some(0) },
        "cpu_overcommit: must be 1 to 64 vCPUs per physical CPU (got 0)",
    );
    refused(
        &mut s,
        Op::SetSchedulingPolicy { policy: None, cpu_overcommit: None },
        "edit: nothing to change: give --scheduling or --cpu-overcommit",
    );
    ok(&mut s, edit_vm("wide", VmChanges { vcpus: Some(5), ..Default::default() }));
    let err = start_on(&mut s, "wide", None).unwrap_err().to_string();
    assert!(err.starts_with("not enough capacity for vm 'wide' (1024 MiB, 5 vCPUs)"), "{err}");
    ok(&mut s, Op::SetSchedulingPolicy { policy: None, cpu_overcommit: Some(2) });
    start_on(&mut s, "wide", None).unwrap();
}
