//! The VM lifecycle on a 3-node cluster of libvirt test-driver hosts: every host agent runs
//! what the cluster assigns to it, reports what runs, and the CLI drives it all. Refusals
//! name what to do and leave nothing half-done.

use std::collections::BTreeSet;

use corral_tests::Cluster;
use serde_json::Value;

#[test]
fn start_shutdown_reboot_suspend_resume_stop() {
    let c = Cluster::run(3, &[]);
    let vm = c.must_json(
        0,
        &["vm", "create", "web1", "--memory", "256M", "--vcpus", "1", "--disk", "1G", "--nic", "default"],
    );
    let nic = &vm["nics"][0];
    assert_eq!(nic["network"], "default");
    assert!(nic["mac"].as_str().unwrap().starts_with("52:54:00:"), "{nic}");
    let vm = c.must_json(1, &["vm", "start", "web1", "--host", "host2"]);
    assert_eq!(vm["host"], "host2");
    let up = c.wait_status(2, "web1", "up");
    assert_eq!(up["host"], "host2");
    assert_eq!(up["disks"].as_array().unwrap().len(), 1);

    let hosts = c.must_json(0, &["host", "list"]);
    let host2 = hosts.as_array().unwrap().iter().find(|h| h["name"] == "host2").unwrap();
    assert_eq!(host2["vms_running"], 1);
    assert_eq!(host2["memory_free_mib"].as_u64().unwrap(), host2["memory_mib"].as_u64().unwrap() - 256);

    c.must_json(0, &["vm", "reboot", "web1"]);
    c.wait_status(0, "web1", "up");
    c.must_json(0, &["vm", "suspend", "web1"]);
    c.wait_status(1, "web1", "suspended");
    c.must_json(2, &["vm", "resume", "web1"]);
    c.wait_status(1, "web1", "up");

    c.must_json(2, &["vm", "shutdown", "web1", "--reason", "kernel update", "--timeout", "30s"]);
    let down = c.wait_status(0, "web1", "down");
    assert_eq!(down["stop_reason"], "kernel update");
    assert_eq!(down["host"], Value::Null);
    let ev = c.events(1);
    assert!(ev.iter().any(|m| m == "VM web1 is shutting down (reason: kernel update)."), "{ev:?}");
    assert!(ev.iter().any(|m| m == "VM web1 is down on host host2 (reason: kernel update)."), "{ev:?}");

    // Placement without --host, then a power off.
    let vm = c.must_json(0, &["vm", "start", "web1"]);
    assert!(vm["host"].is_string());
    c.wait_status(0, "web1", "up");
    c.must_json(0, &["vm", "stop", "web1"]);
    c.wait_status(2, "web1", "down");
    let hosts = c.must_json(0, &["host", "list"]);
    assert!(hosts.as_array().unwrap().iter().all(|h| h["vms_running"] == 0), "{hosts}");
}

#[test]
fn create_with_start_and_refusals_that_change_nothing() {
    let c = Cluster::run(3, &[]);
    let vm = c.must_json(0, &["vm", "create", "db1", "--memory", "512M", "--vcpus", "2", "--start", "--host", "host3"]);
    assert_eq!((vm["status"].as_str(), vm["host"].as_str()), (Some("powering_up"), Some("host3")));
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
    c.must_json(0, &["vm", "create", "big", "--memory", "3G", "--vcpus", "1"]);
    c.refused(
        0,
        &["vm", "start", "big", "--host", "host3"],
        "host host3 has not enough room for vm 'big' (3072 MiB, 1 vCPU): 2560 MiB",
    );
    for h in ["host1", "host2"] {
        let name = format!("fill-{h}");
        c.must_json(0, &["vm", "create", &name, "--memory", "3G", "--start", "--host", h]);
    }
    c.refused(0, &["vm", "start", "big"], "not enough capacity for vm 'big' (3072 MiB, 1 vCPU)");
    let disks_before = c.must_json(0, &["disk", "list"]);
    let files_before = std::fs::read_dir(c.storage_dir()).unwrap().count();
    c.refused(0, &["vm", "create", "huge", "--memory", "3G", "--disk", "1G", "--start"], "not enough capacity");
    assert_eq!(c.must_json(0, &["disk", "list"]), disks_before);
    assert_eq!(std::fs::read_dir(c.storage_dir()).unwrap().count(), files_before, "no image left behind");
    c.refused(0, &["vm", "show", "huge"], "vm 'huge' not found");
}

#[test]
fn clone_and_delete_with_and_without_disks() {
    let c = Cluster::run(3, &[]);
    c.must_json(0, &["vm", "create", "tpl", "--memory", "256M", "--disk", "64M", "--disk", "32M"]);
    let clone = c.must_json(1, &["vm", "clone", "tpl", "tpl-copy"]);
    assert_eq!(clone["name"], "tpl-copy");
    assert_eq!(clone["memory_mib"], 256);
    let tpl = c.must_json(2, &["vm", "show", "tpl"]);
    assert_ne!(clone["id"], tpl["id"]);
    let paths = |v: &Value| -> BTreeSet<String> {
        v["disks"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(paths(&clone).len(), 2);
    assert!(paths(&clone).is_disjoint(&paths(&tpl)), "the clone has its own copies");
    for p in paths(&clone).iter().chain(paths(&tpl).iter()) {
        assert!(std::path::Path::new(p).exists(), "{p} exists");
    }
    assert_eq!(c.must_json(0, &["disk", "list"]).as_array().unwrap().len(), 4);

    c.must_ok(0, &["vm", "delete", "tpl", "--keep-disks"]);
    let disks = c.must_json(1, &["disk", "list"]);
    let floating: Vec<&Value> = disks.as_array().unwrap().iter().filter(|d| d["vm"].is_null()).collect();
    assert_eq!(floating.len(), 2, "{disks:#}");
    for p in paths(&tpl) {
        assert!(std::path::Path::new(&p).exists(), "kept disk {p} still exists");
    }

    c.must_ok(1, &["vm", "delete", "tpl-copy"]);
    for p in paths(&clone) {
        assert!(!std::path::Path::new(&p).exists(), "deleted disk {p} is gone");
    }
    assert_eq!(c.must_json(2, &["disk", "list"]).as_array().unwrap().len(), 2);
}

#[test]
fn editing_a_running_vm_waits_for_its_next_run() {
    let c = Cluster::run(3, &[]);
    c.must_json(0, &["vm", "create", "app", "--memory", "512M", "--vcpus", "1", "--start"]);
    c.wait_status(1, "app", "up");
    let edited = c.must_json(2, &["vm", "edit", "app", "--memory", "1G", "--vcpus", "2", "--description", "now"]);
    assert_eq!((edited["memory_mib"].as_u64(), edited["vcpus"].as_u64()), (Some(512), Some(1)), "{edited:#}");
    assert_eq!(edited["description"], "now", "description changes at once");
    assert_eq!(edited["next_run"]["memory_mib"], 1024);
    assert_eq!(edited["next_run"]["vcpus"], 2);
    let hosts = c.must_json(0, &["host", "list"]);
    let used: u64 = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["memory_mib"].as_u64().unwrap() - h["memory_free_mib"].as_u64().unwrap())
        .sum();
    assert_eq!(used, 512, "the running VM holds what it runs with");

    c.must_json(0, &["vm", "shutdown", "app"]);
    let down = c.wait_status(1, "app", "down");
    assert_eq!((down["memory_mib"].as_u64(), down["vcpus"].as_u64()), (Some(1024), Some(2)), "{down:#}");
    assert_eq!(down["next_run"], Value::Null);
    assert!(c.events(0).iter().any(|m| m == "VM app now has its next-run configuration: memory 1024 MiB, 2 vCPUs."));
}
