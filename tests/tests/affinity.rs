//! Scheduling rules on a 3-node cluster of libvirt test-driver hosts, driven by the CLI:
//! affinity groups spread or gather VMs, labels, pins and host tags bind VMs to hosts, and a
//! start that no host can take is refused naming the rule.

use std::collections::BTreeSet;

use corral_cli::views::{AffinityGroupView, AffinityLabelView, ClusterSettingsView, HostView, VmView};
use corral_tests::Cluster;

fn started_on(c: &Cluster, node: usize, vm: &str) -> String {
    let v: VmView = c.cli_json(node, &["vm", "start", vm]);
    v.host.unwrap_or_else(|| panic!("{vm} has no host"))
}

fn create(c: &Cluster, names: &[&str]) {
    for n in names {
        c.cli_json::<VmView>(0, &["vm", "create", n, "--memory", "256M", "--vcpus", "1"]);
    }
}

#[test]
fn affinity_groups_labels_pins_and_tags_are_honoured() {
    let c = Cluster::run(3, &[]);
    create(&c, &["db1", "db2", "db3", "db4", "web1", "app1", "t1"]);

    // A negative enforcing group of three spreads them over the three hosts.
    let g: AffinityGroupView = c.cli_json(
        1,
        &["affinity-group", "create", "db-spread", "--polarity", "negative", "--enforcing", "--vms", "db1,db2,db3"],
    );
    assert_eq!((g.polarity.as_str(), g.enforcing), ("negative", true));
    assert_eq!(g.vms, ["db1", "db2", "db3"]);
    let hosts: BTreeSet<String> = ["db1", "db2", "db3"].iter().map(|vm| started_on(&c, 2, vm)).collect();
    assert_eq!(hosts.len(), 3, "{hosts:?}");

    // A fourth member has nowhere to go, and the refusal names the rule.
    let g: AffinityGroupView = c.cli_json(0, &["affinity-group", "edit", "db-spread", "--add-vm", "db4"]);
    assert_eq!(g.vms.len(), 4);
    c.refused(
        0,
        &["vm", "start", "db4"],
        "no host can run vm 'db4' (256 MiB, 1 vCPU): 3 hosts excluded by enforcing affinity group db-spread (negative)",
    );
    c.refused(1, &["vm", "start", "db4", "--host", "host2"], "excluded by enforcing affinity group db-spread");
    c.refused(0, &["affinity-group", "create", "x", "--polarity", "positive", "--vms", "nope"], "vm 'nope' not found");

    // A label keeps web1 on host2; tags and a pin bind the others.
    let l: AffinityLabelView =
        c.cli_json(0, &["affinity-label", "create", "rack-b", "--vms", "web1", "--hosts", "host2"]);
    assert_eq!(l.hosts, ["host2"]);
    assert_eq!(started_on(&c, 0, "web1"), "host2");
    let h: HostView = c.cli_json(1, &["host", "edit", "host3", "--tags", "ssd,gpu"]);
    assert_eq!(h.tags, ["ssd", "gpu"]);
    let vm: VmView = c.cli_json(0, &["vm", "edit", "t1", "--host-tags", "ssd", "--migration", "none"]);
    assert_eq!((vm.host_tags, vm.migration_policy.as_str()), (vec!["ssd".to_string()], "none"));
    assert_eq!(started_on(&c, 0, "t1"), "host3");
    c.refused(0, &["vm", "edit", "t1", "--host-tags", "nvme"], "lacks tag(s) nvme");
    let vm: VmView = c.cli_json(2, &["vm", "edit", "app1", "--pin", "host1"]);
    assert_eq!(vm.pinned_hosts, ["host1"]);
    assert_eq!(started_on(&c, 0, "app1"), "host1");
    c.wait_status(1, "t1", "up");
    c.refused(0, &["vm", "migrate", "t1"], "the migration policy of vm 't1' is 'none'");

    // What the CLI shows: lists, one rule, a host's tags.
    let groups: Vec<AffinityGroupView> = c.cli_json(2, &["affinity-group", "list"]);
    assert_eq!(groups.len(), 1);
    assert_eq!(c.cli_json::<AffinityLabelView>(0, &["affinity-label", "show", "rack-b"]).vms, ["web1"]);
    let hosts: Vec<HostView> = c.cli_json(0, &["host", "list"]);
    let host3 = hosts.iter().find(|h| h.name == "host3").unwrap();
    assert_eq!(host3.tags, ["ssd", "gpu"]);

    // Cluster-wide settings, shown in the status.
    let settings: ClusterSettingsView =
        c.cli_json(0, &["cluster", "edit", "--scheduling", "pack", "--cpu-overcommit", "2"]);
    assert_eq!((settings.scheduling.as_str(), settings.cpu_overcommit), ("pack", 2));
    let status = c.status(1);
    assert_eq!((status.scheduling.as_str(), status.cpu_overcommit), ("pack", 2));

    // Deleting the group frees db4 to start.
    c.must_ok(0, &["affinity-group", "delete", "db-spread"]);
    c.refused(0, &["affinity-group", "show", "db-spread"], "affinity group 'db-spread' not found");
    assert!(!started_on(&c, 0, "db4").is_empty());
    let events = c.events(0);
    for want in [
        "Affinity group db-spread (negative, enforcing) was created with VMs db1, db2, db3 by admin.",
        "Affinity label rack-b was created by admin: VMs web1 run only on hosts host2.",
        "Host host3 was edited by admin: tags ssd, gpu.",
        "Affinity group db-spread was deleted by admin.",
    ] {
        assert!(events.iter().any(|m| m == want), "{want} not in {events:#?}");
    }
}
