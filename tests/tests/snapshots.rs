//! Snapshots (issue 16) on libvirt's test driver: real qcow2 images in the storage domain,
//! written and read with qemu-io, so every preview, commit, undo, restore, delete and clone is
//! checked against the data in the images. The test driver's domains open no image (their
//! snapshots are taken with qemu-img) and have no memory to save; memory snapshots and live
//! QEMU run on sandbox hosts (`sandbox/snapshots.rs`).

use std::process::Command;

use corral_cli::views::{SnapshotDetailView, SnapshotView, VmView};
use corral_tests::Cluster;

/// Writes byte `pattern` over the first 64 KiB of an image.
fn write(path: &str, pattern: u8) {
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", &format!("write -P {pattern} 0 64k"), path])
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-io write: {}", String::from_utf8_lossy(&out.stderr));
}

/// Whether the first 64 KiB of an image hold byte `pattern`.
fn holds(path: &str, pattern: u8) -> bool {
    let out = Command::new("qemu-io")
        .args(["-r", "-U", "-f", "qcow2", "-c", &format!("read -P {pattern} 0 64k"), path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !text.contains("Pattern verification failed")
}

/// The internal snapshots in an image.
fn tags(path: &str) -> Vec<String> {
    let out = Command::new("qemu-img").args(["info", "-U", "--output=json", path]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["snapshots"].as_array().into_iter().flatten().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// `vm snapshot create`; returns the id, the last word of the last line.
fn take(c: &Cluster, i: usize, args: &[&str]) -> String {
    let mut all = vec!["vm", "snapshot", "create"];
    all.extend(args);
    let out = c.must_ok(i, &all);
    out.trim().lines().last().unwrap().split_whitespace().last().unwrap().to_string()
}

fn list(c: &Cluster, i: usize) -> Vec<SnapshotView> {
    c.cli_json(i, &["vm", "snapshot", "list", "web1"])
}

#[test]
fn snapshots_of_a_vm_on_the_test_driver() {
    let c = Cluster::run(3, &[]);
    let vm: VmView = c.cli_json(0, &["vm", "create", "web1", "--memory", "256M", "--disk", "64M", "--disk", "64M"]);
    let (d0, d1) = (vm.disks[0].path.clone(), vm.disks[1].path.clone());
    write(&d0, 1);
    write(&d1, 1);

    // A: both disks, taken by the node that took the request (the VM is down).
    let a = take(&c, 1, &["web1", "--description", "before upgrade"]);
    assert!(tags(&d0).contains(&a) && tags(&d1).contains(&a), "{:?}", tags(&d0));
    let snaps = list(&c, 2);
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    assert_eq!(
        (s.id.as_str(), s.parent.as_deref(), s.description.as_str(), s.memory, s.status.as_str()),
        (a.as_str(), None, "before upgrade", false, "ok")
    );
    assert_eq!(s.disks, ["web1-disk0", "web1-disk1"]);
    assert!(s.current);
    let table = c.must_ok(0, &["vm", "snapshot", "list", "web1"]);
    assert!(table.contains("you are here (down)") && table.contains(&a), "{table}");

    // B: one disk only, while the VM runs (the test driver holds no image: qemu-img takes it).
    write(&d0, 2);
    write(&d1, 2);
    c.must_ok(0, &["vm", "start", "web1"]);
    c.wait_status(0, "web1", "up");
    c.refused(0, &["vm", "snapshot", "create", "web1", "--memory"], "the test driver cannot save a guest's memory");
    assert_eq!(list(&c, 0).len(), 1, "a failed snapshot leaves no record");
    let b = take(&c, 0, &["web1", "--disks", "web1-disk1"]);
    let snaps = list(&c, 0);
    let sb = snaps.iter().find(|s| s.id == b).unwrap();
    assert_eq!((sb.parent.as_deref(), sb.disks.clone()), (Some(a.as_str()), vec!["web1-disk1".to_string()]));
    assert!(!tags(&d0).contains(&b) && tags(&d1).contains(&b));
    let shown: SnapshotDetailView = c.cli_json(1, &["vm", "snapshot", "show", "web1", &b[..8]]);
    assert_eq!(shown.snapshot.id, b);
    assert!(shown.disk_sizes[0].image_mib.is_some_and(|m| m > 0), "{shown:?}");
    assert_eq!(shown.config.as_ref().unwrap().memory_mib, 256);

    // Preview, commit and undo need the VM down.
    c.refused(0, &["vm", "snapshot", "preview", "web1", &a], "a snapshot is previewed while the VM is down");
    c.must_ok(0, &["vm", "stop", "web1"]);
    c.wait_status(0, "web1", "down");
    write(&d0, 3);
    write(&d1, 3);
    c.must_ok(0, &["vm", "edit", "web1", "--memory", "512M"]);

    // Preview A then undo: back to the latest data and configuration.
    c.must_ok(2, &["vm", "snapshot", "preview", "web1", &a]);
    assert!(holds(&d0, 1) && holds(&d1, 1));
    assert_eq!(c.vm(0, "web1").memory_mib, 256, "the preview runs A's configuration");
    assert_eq!(list(&c, 0).iter().find(|s| s.id == a).unwrap().status, "in_preview");
    c.refused(0, &["vm", "snapshot", "create", "web1"], "is in preview of a snapshot");
    c.refused(0, &["vm", "snapshot", "delete", "web1", &a], "commit or undo the preview first");
    c.must_ok(2, &["vm", "snapshot", "undo", "web1"]);
    assert!(holds(&d0, 3) && holds(&d1, 3));
    assert_eq!(c.vm(0, "web1").memory_mib, 512);
    assert!(
        !tags(&d0).iter().any(|t| t.starts_with("corral-before-preview")),
        "the undo point is gone: {:?}",
        tags(&d0)
    );

    // Restore B (disk1 only): A stays; disk0, which B does not have, is detached (oVirt: the VM
    // is left without it) and floats with its data.
    let out = c.must_ok(1, &["vm", "snapshot", "restore", "web1", &b]);
    assert!(out.contains(&format!("restored to snapshot {b}")), "{out}");
    assert!(out.contains("does not have disk(s) web1-disk0: they are detached"), "{out}");
    assert!(holds(&d0, 3) && holds(&d1, 2));
    assert_eq!(list(&c, 0).len(), 2);
    let vm = c.vm(0, "web1");
    assert_eq!(vm.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["web1-disk1"]);
    c.must_ok(0, &["vm", "disk", "attach", "web1", "web1-disk0"]);

    // A custom preview of A's disk0 alone, committed: B, taken after A, is erased.
    write(&d1, 4);
    c.must_ok(0, &["vm", "snapshot", "preview", "web1", &a, "--disks", "web1-disk0"]);
    assert!(holds(&d0, 1) && holds(&d1, 4));
    let out = c.must_ok(0, &["vm", "snapshot", "commit", "web1"]);
    assert!(out.contains("erased"), "{out}");
    let snaps = list(&c, 0);
    assert_eq!(snaps.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![a.clone()]);
    assert!(!tags(&d1).contains(&b), "B's snapshot is gone from the image");

    // Clone from A: its data, A's configuration; the source may run.
    c.must_ok(0, &["vm", "start", "web1"]);
    let clone: VmView = c.cli_json(1, &["vm", "clone", "web1", "web1-old", "--from-snapshot", &a]);
    assert_eq!((clone.memory_mib, clone.disks.len(), clone.status.as_str()), (256, 2, "down"));
    assert!(holds(&clone.disks[0].path, 1) && holds(&clone.disks[1].path, 1));
    assert!(tags(&clone.disks[0].path).is_empty(), "a clone has no snapshots");

    // The cap: 2 per VM; the third removes the oldest, with an event.
    let out = c.must_ok(0, &["cluster", "edit", "--max-snapshots", "2"]);
    assert!(out.contains("snapshots per vm") && out.contains('2'), "{out}");
    let s2 = take(&c, 0, &["web1"]);
    let s3 = take(&c, 0, &["web1", "--description", "third"]);
    let ids: Vec<String> = list(&c, 0).into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![s2.clone(), s3.clone()]);
    assert!(c.events(0).iter().any(|e| e.contains(&format!("The oldest ({a}) was removed"))), "{:?}", c.events(0));
    assert!(!tags(&d0).contains(&a));

    // A live delete with --wait (the VM runs): gone from the list and the images.
    let out = c.must_ok(2, &["vm", "snapshot", "delete", "web1", &s2, "--wait"]);
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(list(&c, 0).len(), 1);
    assert!(!tags(&d0).contains(&s2) && tags(&d0).contains(&s3));
    c.refused(0, &["vm", "snapshot", "show", "web1", "nope"], "vm 'web1' has no snapshot 'nope'");
    c.refused(0, &["vm", "snapshot", "delete", "web1", &s2], "has no snapshot");

    // The OVF document carries them (oVirt's SnapshotsSection): a VM deleted with --keep-disks
    // and imported from its document has its snapshots back, and can restore them.
    c.must_ok(0, &["vm", "stop", "web1"]);
    c.wait_status(0, "web1", "down");
    // A snapshot without disks (`--disks` with none) previews its configuration; the output says
    // the VM runs without its disks, and that a commit would leave it without them.
    let bare = take(&c, 0, &["web1", "--disks"]);
    assert!(list(&c, 0).iter().any(|s| s.id == bare && s.disks.is_empty()));
    let out = c.must_ok(0, &["vm", "snapshot", "preview", "web1", &bare]);
    assert!(out.contains("does not have disk(s) web1-disk1, web1-disk0: the VM runs without them"), "{out}");
    assert!(c.vm(0, "web1").disks.iter().all(|d| !d.plugged));
    let out = c.must_ok(0, &["vm", "snapshot", "undo", "web1"]);
    assert!(out.contains("undone"), "{out}");
    assert!(c.vm(0, "web1").disks.iter().all(|d| d.plugged));
    c.must_ok(0, &["vm", "snapshot", "delete", "web1", &bare, "--wait"]);

    let doc = c.dir().join("web1.ovf");
    c.must_ok(0, &["vm", "export", "web1", "-f", doc.to_str().unwrap()]);
    let xml = std::fs::read_to_string(&doc).unwrap();
    assert!(xml.contains("ovf:SnapshotsSection_Type") && xml.contains(&s3), "{xml}");
    c.must_ok(0, &["vm", "delete", "web1", "--keep-disks"]);
    c.must_ok(1, &["vm", "import", doc.to_str().unwrap()]);
    assert_eq!(list(&c, 1).into_iter().map(|s| s.id).collect::<Vec<_>>(), vec![s3.clone()]);
    write(&d0, 9);
    c.must_ok(1, &["vm", "snapshot", "restore", "web1", &s3]);
    assert!(holds(&d0, 1), "the imported snapshot restores the data it holds");

    // Deleting the VM deletes its snapshots' files with its disks.
    c.must_ok(0, &["vm", "delete", "web1"]);
    assert!(!std::path::Path::new(&d0).exists() && !std::path::Path::new(&d1).exists());
    let events = c.events(0);
    assert!(events.iter().any(|e| e.contains(&format!("Snapshot {a} of VM web1 was taken."))), "{events:?}");
}
