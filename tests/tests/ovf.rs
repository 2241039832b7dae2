//! The OVF store and OVF export/import, between real corrald processes: every node's own store
//! holds the same document as soon as an edit returns, a node that missed changes (in its log,
//! or behind a snapshot) catches up, a node's store is readable with no quorum, and a VM goes
//! out and back in as an OVF document.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_cli::views::{DeletedVmView, DiskView, ImportView, OvfListView, VmView};
use corral_tests::{wait_until, Cluster};

fn create(c: &Cluster, name: &str) -> VmView {
    c.cli_json(0, &["vm", "create", name, "--memory", "128M", "--vcpus", "1", "--disk", "64M", "--nic", "default"])
}

fn edit(c: &Cluster, i: usize, args: &[&str]) -> VmView {
    c.cli_json(i, &[&["vm", "edit"][..], args].concat())
}

fn delete(c: &Cluster, i: usize, args: &[&str]) -> DeletedVmView {
    c.cli_json(i, &[&["vm", "delete"][..], args].concat())
}

/// Node `i`'s own copy of a VM's document (no quorum needed).
fn local_doc(c: &Cluster, i: usize, vm: &str) -> Result<String, String> {
    let out = c.corral(i, &["ovf", "dump", vm, "--local"]);
    if out.code != 0 {
        return Err(out.stderr);
    }
    Ok(out.stdout)
}

/// Node `i`'s own store: VM name -> document size.
fn local_list(c: &Cluster, i: usize) -> Result<BTreeMap<String, u64>, String> {
    let out = c.corral(i, &["-o", "json", "ovf", "list", "--local"]);
    if out.code != 0 {
        return Err(out.stderr);
    }
    let list: OvfListView = out.view();
    Ok(list.entries.into_iter().map(|e| (e.name, e.bytes)).collect())
}

#[test]
fn every_node_holds_the_same_document_soon_after_an_edit_returns() {
    let c = Cluster::run(3, &[]);
    create(&c, "web1");
    for round in 0..5 {
        let text = format!("round {round} <&> \"quoted\"");
        // Through a follower as well as the leader: the edit returns once applied on the node
        // that answered; the others write the document as they apply it (milliseconds later).
        let via = round % 3;
        edit(&c, via, &["web1", "--description", &text]);
        let want = format!("round {round}");
        let docs: Vec<String> = wait_until(Duration::from_secs(5), "every node's document of the edit", || {
            let docs: Vec<String> = (0..3).map(|i| local_doc(&c, i, "web1")).collect::<Result<_, _>>()?;
            if docs.iter().all(|d| d.contains(&want)) {
                Ok(docs)
            } else {
                Err(format!("not every store has {want} yet"))
            }
        });
        assert!(docs[0].contains("round") && docs[0].contains("&lt;&amp;&gt;"), "{}", docs[0]);
        assert!(docs[0].contains(&format!("round {round}")), "node 1 lags behind round {round}: {}", docs[0]);
        assert_eq!(docs[0], docs[1], "host1 and host2 differ after round {round}");
        assert_eq!(docs[0], docs[2], "host1 and host3 differ after round {round}");
    }
    // The document is oVirt's shape, and the cluster-wide read gives the same bytes.
    let doc = local_doc(&c, 1, "web1").unwrap();
    for part in ["ovf:Envelope", "References", "ovf:NetworkSection_Type", "ovf:DiskSection_Type", "Content"] {
        assert!(doc.contains(part), "no {part} in {doc}");
    }
    for rt in ["3", "4", "17", "10", "15"] {
        assert!(doc.contains(&format!("<rasd:ResourceType>{rt}</rasd:ResourceType>")), "no ResourceType {rt}");
    }
    assert_eq!(c.must_ok(2, &["ovf", "dump", "web1"]), doc);
    // A deleted VM's document is removed everywhere.
    delete(&c, 0, &["web1"]);
    for i in 0..3 {
        wait_until(Duration::from_secs(5), "the deleted VM's document to go", || match local_list(&c, i) {
            Ok(l) if l.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
}

/// A node that was down while VMs were created, edited and deleted: its store follows the
/// log when it comes back, or the snapshot it is sent when the log behind it was purged.
fn catch_up(extra: &[&str], writes: usize) {
    let mut c = Cluster::run(3, extra);
    create(&c, "keep");
    create(&c, "gone");
    let lagging = (0..3).find(|i| *i != c.leader()).unwrap();
    let other = (0..3).find(|i| *i != lagging).unwrap();
    c.kill(lagging);
    delete(&c, other, &["gone"]);
    create(&c, "new");
    for n in 0..writes {
        edit(&c, other, &["keep", "--description", &format!("edit {n}")]);
    }
    c.restart(lagging);
    let want = local_list(&c, other).unwrap();
    assert_eq!(want.keys().cloned().collect::<Vec<_>>(), ["keep", "new"]);
    wait_until(Duration::from_secs(20), "the restarted node's OVF store to catch up", || {
        let have = local_list(&c, lagging)?;
        if have != want {
            return Err(format!("{have:?}"));
        }
        let (a, b) = (local_doc(&c, lagging, "keep")?, local_doc(&c, other, "keep")?);
        if a == b {
            Ok(())
        } else {
            Err("documents of 'keep' differ".into())
        }
    });
}

#[test]
fn a_node_restarted_with_a_stale_store_catches_up_from_the_log() {
    catch_up(&[], 3);
}

#[test]
fn a_node_restarted_with_a_stale_store_catches_up_from_a_snapshot() {
    // Snapshots every 10 entries and only 2 kept behind: 40 edits leave the lagging node
    // nothing to replay but a snapshot.
    catch_up(&["--snapshot-every", "10", "--keep-logs", "2"], 40);
}

#[test]
fn a_local_dump_works_with_two_of_three_nodes_down() {
    let mut c = Cluster::run(3, &[]);
    create(&c, "web1");
    edit(&c, 0, &["web1", "--description", "last word"]);
    let survivor = 2;
    // An edit returns once applied where it was answered; the others write the document as
    // they apply the entry, a moment later.
    wait_until(Duration::from_secs(5), "the survivor's store to hold the edit", || {
        match local_doc(&c, survivor, "web1") {
            Ok(doc) if doc.contains("last word") => Ok(()),
            Ok(_) => Err("an older document".to_string()),
            Err(e) => Err(e),
        }
    });
    c.kill(0);
    c.kill(1);
    let doc = local_doc(&c, survivor, "web1").unwrap();
    assert!(doc.contains("last word"), "{doc}");
    assert_eq!(local_list(&c, survivor).unwrap().keys().cloned().collect::<Vec<_>>(), ["web1"]);
    // Without --local the read needs the cluster, which has no quorum.
    let out = c.corral(survivor, &["ovf", "dump", "web1"]);
    assert_ne!(out.code, 0, "a linearizable read without quorum succeeded: {}", out.stdout);
}

#[test]
fn a_vm_goes_out_and_comes_back_as_an_ovf_document() {
    let c = Cluster::run(3, &[]);
    let web1 = create(&c, "web1");
    edit(&c, 0, &["web1", "--description", "exported", "--ha", "true", "--ha-priority", "high"]);
    let file = c.dir().join("web1.ovf");
    let file = file.to_str().unwrap();
    c.must_ok(1, &["vm", "export", "web1", "-f", file]);
    let xml = std::fs::read_to_string(file).unwrap();
    assert!(xml.contains("<ExportDate>"), "an export says when it was made");
    let out = c.corral(1, &["vm", "export", "web1", "-f", file]);
    assert_ne!(out.code, 0, "an export overwrote {file} without --force");

    // A clone: new id, new MAC, its own copy of the disk.
    let v: ImportView = c.cli_json(2, &["vm", "import", file, "--name", "web2", "--clone"]);
    let web2 = &v.vm;
    assert_eq!(web2.name, "web2");
    assert_eq!(web2.description, "exported");
    assert_eq!(web2.ha.priority, "high");
    assert_ne!(web2.id, web1.id);
    assert_ne!(web2.nics[0].mac, web1.nics[0].mac);
    let (d1, d2) = (&web1.disks[0].path, &web2.disks[0].path);
    assert_ne!(d1, d2);
    assert!(std::path::Path::new(d2).exists(), "the clone's disk copy {d2} exists");

    // The same VM again: refused, naming why; nothing is made.
    c.refused(0, &["vm", "import", file], "already exists");
    c.refused(0, &["vm", "import", file, "--name", "web3"], "already has id");

    // Deleted with its disk kept, it comes back as it was: same id, same MAC, same disk.
    delete(&c, 0, &["web1", "--keep-disks"]);
    let back: ImportView = c.cli_json(0, &["vm", "import", file]);
    assert_eq!(back.vm.id, web1.id);
    assert_eq!(back.vm.nics[0].mac, web1.nics[0].mac);
    assert_eq!(back.vm.disks[0].path, web1.disks[0].path);
    assert!(back.ignored.is_empty(), "our own export has nothing to ignore");
    let disks: Vec<DiskView> = c.cli_json(0, &["disk", "list"]);
    assert_eq!(disks.len(), 2, "no disk was duplicated: {disks:?}");
}

#[test]
fn an_ovirt_document_is_imported_and_a_broken_one_is_refused_with_where_and_what() {
    let c = Cluster::run(1, &[]);
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../raft/tests/ovf/ovirt-hosted-engine.ovf"))
            .expect("the oVirt sample document");
    // oVirt keeps images as <image group>/<volume> under its storage domain: put the sample's
    // disk there so that the import finds it.
    let href = sample.split("ovf:href=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let image = c.storage_dir().join(&href);
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    let made =
        std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&image).arg("64M").status();
    assert!(made.unwrap().success());
    let file = c.dir().join("ovirt.ovf");
    std::fs::write(&file, &sample).unwrap();
    let file = file.to_str().unwrap();
    let v: ImportView = c.cli_json(0, &["vm", "import", file, "--name", "from-ovirt"]);
    assert_eq!(v.vm.name, "from-ovirt");
    assert!(!v.vm.hosted_engine, "an imported engine is an ordinary VM here");
    let ignored = v.ignored;
    assert!(ignored.iter().any(|s| s.contains("IsSmartcardEnabled")), "{ignored:?}");
    assert!(ignored.iter().any(|s| s.contains("hosted engine")), "{ignored:?}");
    // What was not modelled is carried on in the VM's own document.
    let doc = c.must_ok(0, &["ovf", "dump", "from-ovirt"]);
    assert!(doc.contains("IsSmartcardEnabled"), "{doc}");

    let broken = c.dir().join("broken.ovf");
    let cases = [
        ("<domain type='kvm'></domain>", "root element is 'domain'"),
        ("<ovf:Envelope xmlns:ovf='x'><Content>", "XML syntax error"),
        (&sample.replace("<rasd:VirtualQuantity>", "<rasd:VirtualQuantity>lots"), "not a number"),
    ];
    for (xml, want) in cases {
        std::fs::write(&broken, xml).unwrap();
        c.refused(0, &["vm", "import", broken.to_str().unwrap()], want);
    }
    let missing = c.dir().join("missing.ovf");
    c.refused(0, &["vm", "import", missing.to_str().unwrap()], "missing.ovf");
    let vms: Vec<VmView> = c.cli_json(0, &["vm", "list"]);
    assert_eq!(vms.len(), 1, "refused imports made nothing: {vms:?}");
}
