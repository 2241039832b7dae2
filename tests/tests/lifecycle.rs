//! The VM lifecycle on a 3-node cluster of libvirt test-driver hosts: every host agent runs
//! what the cluster assigns to it, reports what runs, and the CLI drives it all. Refusals
//! name what to do and leave nothing half-done.

use std::collections::BTreeSet;

use corral_cli::views::{DiskView, HostView, VmView};
use corral_tests::Cluster;

#[test]
fn start_shutdown_reboot_suspend_resume_stop() {
    let c = Cluster::run(3, &[]);
    let vm: VmView = c
        .cli_json(0, &["vm", "create", "web1", "--memory", "256M", "--vcpus", "1", "--disk", "1G", "--nic", "default"]);
    let nic = &vm.nics[0];
    assert_eq!(nic.network, "default");
    assert!(nic.mac.starts_with("52:54:00:"), "{nic:?}");
    let vm: VmView = c.cli_json(1, &["vm", "start", "web1", "--host", "host2"]);
    assert_eq!(vm.host.as_deref(), Some("host2"));
    let up = c.wait_status(2, "web1", "up");
    assert_eq!(up.host.as_deref(), Some("host2"));
    assert_eq!(up.disks.len(), 1);

    let hosts: Vec<HostView> = c.cli_json(0, &["host", "list"]);
    let host2 = hosts.iter().find(|h| h.name == "host2").unwrap();
    assert_eq!(host2.vms_running, 1);
    assert_eq!(host2.memory_free_mib, host2.memory_mib - 256);

    c.cli_json::<VmView>(0, &["vm", "reboot", "web1"]);
    c.wait_status(0, "web1", "up");
    c.cli_json::<VmView>(0, &["vm", "suspend", "web1"]);
    c.wait_status(1, "web1", "suspended");
    c.cli_json::<VmView>(2, &["vm", "resume", "web1"]);
    c.wait_status(1, "web1", "up");

    c.cli_json::<VmView>(2, &["vm", "shutdown", "web1", "--reason", "kernel update", "--timeout", "30s"]);
    let down = c.wait_status(0, "web1", "down");
    assert_eq!(down.stop_reason.as_deref(), Some("kernel update"));
    assert_eq!(down.host, None);
    let ev = c.events(1);
    assert!(ev.iter().any(|m| m == "VM web1 is shutting down (reason: kernel update) by admin."), "{ev:?}");
    assert!(ev.iter().any(|m| m == "VM web1 is down on host host2 (reason: kernel update)."), "{ev:?}");

    // Placement without --host, then a power off.
    let vm: VmView = c.cli_json(0, &["vm", "start", "web1"]);
    assert!(vm.host.is_some());
    c.wait_status(0, "web1", "up");
    c.cli_json::<VmView>(0, &["vm", "stop", "web1"]);
    c.wait_status(2, "web1", "down");
    let hosts: Vec<HostView> = c.cli_json(0, &["host", "list"]);
    assert!(hosts.iter().all(|h| h.vms_running == 0), "{hosts:?}");
}

#[test]
fn create_with_start_and_refusals_that_change_nothing() {
    let c = Cluster::run(3, &[]);
    let vm: VmView =
        c.cli_json(0, &["vm", "create", "db1", "--memory", "512M", "--vcpus", "2", "--start", "--host", "host3"]);
    assert_eq!((vm.status.as_str(), vm.host.as_deref()), ("powering_up", Some("host3")));
    c.wait_status(1, "db1", "up");

    c.refused(0, &["vm", "delete", "db1"], "vm 'db1' is up; shut it down before deleting it");
    c.refused(0, &["vm", "clone", "db1", "db2"], "only a down VM can be cloned");
    c.refused(0, &["vm", "start", "db1"], "vm 'db1' is up on host host3; it can only be started when down");
    c.refused(0, &["vm", "migrate", "db1", "--to", "host1"], "the test driver cannot migrate VMs");
    c.refused(0, &["vm", "migrate", "db1", "--to", "host3"], "the test driver cannot migrate VMs");
    c.refused(0, &["vm", "create", "x", "--memory", "64M", "--disk", "abc"], "--disk");
    c.refused(0, &["vm", "start", "nope"], "vm 'nope' not found");
    c.refused(0, &["vm", "start", "db1", "--host", "host9"], "vm 'db1' is up");

    // Capacity: test-driver hosts have 3 GiB each, and say so when full.
    c.cli_json::<VmView>(0, &["vm", "create", "big", "--memory", "3G", "--vcpus", "1"]);
    c.refused(
        0,
        &["vm", "start", "big", "--host", "host3"],
        "host host3 has not enough room for vm 'big' (3072 MiB, 1 vCPU): 2560 MiB",
    );
    for h in ["host1", "host2"] {
        let name = format!("fill-{h}");
        c.cli_json::<VmView>(0, &["vm", "create", &name, "--memory", "3G", "--start", "--host", h]);
    }
    c.refused(0, &["vm", "start", "big"], "not enough capacity for vm 'big' (3072 MiB, 1 vCPU)");
    let disks_before: Vec<DiskView> = c.cli_json(0, &["disk", "list"]);
    let files_before = std::fs::read_dir(c.storage_dir()).unwrap().count();
    c.refused(0, &["vm", "create", "huge", "--memory", "3G", "--disk", "1G", "--start"], "not enough capacity");
    assert_eq!(c.cli_json::<Vec<DiskView>>(0, &["disk", "list"]), disks_before);
    assert_eq!(std::fs::read_dir(c.storage_dir()).unwrap().count(), files_before, "no image left behind");
    c.refused(0, &["vm", "show", "huge"], "vm 'huge' not found");
}

#[test]
fn clone_and_delete_with_and_without_disks() {
    let c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "tpl", "--memory", "256M", "--disk", "64M", "--disk", "32M"]);
    let clone: VmView = c.cli_json(1, &["vm", "clone", "tpl", "tpl-copy"]);
    assert_eq!(clone.name, "tpl-copy");
    assert_eq!(clone.memory_mib, 256);
    let tpl = c.vm(2, "tpl");
    assert_ne!(clone.id, tpl.id);
    let paths = |v: &VmView| -> BTreeSet<String> { v.disks.iter().map(|d| d.path.clone()).collect() };
    assert_eq!(paths(&clone).len(), 2);
    assert!(paths(&clone).is_disjoint(&paths(&tpl)), "the clone has its own copies");
    for p in paths(&clone).iter().chain(paths(&tpl).iter()) {
        assert!(std::path::Path::new(p).exists(), "{p} exists");
    }
    assert_eq!(c.cli_json::<Vec<DiskView>>(0, &["disk", "list"]).len(), 4);

    c.must_ok(0, &["vm", "delete", "tpl", "--keep-disks"]);
    let disks: Vec<DiskView> = c.cli_json(1, &["disk", "list"]);
    let floating: Vec<&DiskView> = disks.iter().filter(|d| d.vm.is_none()).collect();
    assert_eq!(floating.len(), 2, "{disks:#?}");
    for p in paths(&tpl) {
        assert!(std::path::Path::new(&p).exists(), "kept disk {p} still exists");
    }

    c.must_ok(1, &["vm", "delete", "tpl-copy"]);
    for p in paths(&clone) {
        assert!(!std::path::Path::new(&p).exists(), "deleted disk {p} is gone");
    }
    assert_eq!(c.cli_json::<Vec<DiskView>>(2, &["disk", "list"]).len(), 2);
}

#[test]
fn editing_a_running_vm_waits_for_its_next_run() {
    let c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "app", "--memory", "512M", "--vcpus", "1", "--start"]);
    c.wait_status(1, "app", "up");
    // At cluster level 3 memory and vCPUs would be hot-plugged: --next-run keeps them for later
    // (hotplug.rs has the hot-plug paths).
    let edited: VmView =
        c.cli_json(2, &["vm", "edit", "app", "--memory", "1G", "--vcpus", "2", "--description", "now", "--next-run"]);
    assert_eq!((edited.memory_mib, edited.vcpus), (512, 1), "{edited:#?}");
    assert_eq!(edited.description, "now", "description changes at once");
    let next_run = edited.next_run.expect("a next-run configuration");
    assert_eq!((next_run.memory_mib, next_run.vcpus), (Some(1024), Some(2)));
    let hosts: Vec<HostView> = c.cli_json(0, &["host", "list"]);
    let used: u64 = hosts.iter().map(|h| h.memory_mib - h.memory_free_mib).sum();
    assert_eq!(used, 512, "the running VM holds what it runs with");

    c.cli_json::<VmView>(0, &["vm", "shutdown", "app"]);
    let down = c.wait_status(1, "app", "down");
    assert_eq!((down.memory_mib, down.vcpus), (1024, 2), "{down:#?}");
    assert_eq!(down.next_run, None);
    assert!(c.events(0).iter().any(|m| m == "VM app now has its next-run configuration: memory 1024 MiB, 2 vCPUs."));
}
