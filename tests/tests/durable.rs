//! State that survives: a damaged data dir refuses to start (one line, no panic) and never
//! passes for a new node; `--rejoin` brings the same member back with all data; a node that
//! was a member cannot bootstrap another cluster; a backup restores a cluster with its VMs
//! and rules; a lone survivor can be forced into a cluster of its own.

use std::path::Path;
use std::time::Duration;

use corral_cli::views::{AffinityGroupView, AffinityLabelView, HostView, VmView};
use corral_tests::{wait_until, Cluster};
use serde_json::Value;

fn vm_names(c: &Cluster, i: usize, stale: bool) -> Result<Vec<String>, String> {
    let mut args = vec!["-o", "json"];
    if stale {
        args.push("--stale");
    }
    args.extend(["vm", "list"]);
    let out = c.corral(i, &args);
    if out.code != 0 {
        return Err(out.stderr);
    }
    let mut names: Vec<String> = out.view::<Vec<VmView>>().into_iter().map(|v| v.name).collect();
    names.sort();
    Ok(names)
}

/// Flips 16 bytes near the end of sled's file, where its latest writes are (a flip where it
/// keeps nothing live changes nothing, and is rightly not noticed).
fn flip_bytes_near_the_end(file: &Path) {
    let mut b = std::fs::read(file).unwrap();
    let at = b.len() - 48;
    for x in &mut b[at..at + 16] {
        *x ^= 0xff;
    }
    std::fs::write(file, b).unwrap();
}

fn truncate(file: &Path, len: u64) {
    std::fs::File::options().write(true).open(file).unwrap().set_len(len).unwrap();
}

#[test]
fn a_damaged_data_dir_refuses_with_one_line_and_rejoin_brings_the_member_back() {
    let mut c = Cluster::run(3, &[]);
    for i in 0..6 {
        c.must_ok(i % 3, &["vm", "create", &format!("vm{i}"), "--memory", "64M"]);
    }
    let want: Vec<String> = (0..6).map(|i| format!("vm{i}")).collect();
    let db = c.nodes[2].data_dir.join("db");
    type Damage = Box<dyn Fn()>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "truncated to half",
            Box::new({
                let f = db.join("db");
                move || truncate(&f, std::fs::metadata(&f).unwrap().len() / 2)
            }),
        ),
        (
            "bytes flipped",
            Box::new({
                let f = db.join("db");
                move || flip_bytes_near_the_end(&f)
            }),
        ),
        (
            "truncated to 0",
            Box::new({
                let f = db.join("db");
                move || truncate(&f, 0)
            }),
        ),
        (
            "identity file missing",
            Box::new({
                let f = c.nodes[2].data_dir.join("identity");
                move || std::fs::remove_file(&f).unwrap()
            }),
        ),
        (
            "sled file missing",
            Box::new({
                let f = db.join("db");
                move || std::fs::remove_file(&f).unwrap()
            }),
        ),
    ];
    for (round, (what, damage)) in damages.iter().enumerate() {
        // Each round writes more, so the member has something new to catch up on.
        c.must_ok(0, &["vm", "create", &format!("round{round}"), "--memory", "64M"]);
        let mut want = want.clone();
        want.extend((0..=round).map(|r| format!("round{r}")));
        want.sort();
        wait_until(Duration::from_secs(10), "host3 to have applied every create", || {
            vm_names(&c, 2, true).and_then(|n| if n == want { Ok(()) } else { Err(format!("{n:?}")) })
        });
        c.stop(2);
        eprintln!("round {round}: {what}");
        damage();
        match c.start_or_refusal(2) {
            Err(printed) => {
                let last = printed.trim().lines().last().unwrap_or_default().to_string();
                assert!(last.starts_with("corrald: error: the data dir"), "{what}: {last}");
                assert!(last.contains("is damaged"), "{what}: {last}");
                assert!(last.contains("--rejoin"), "{what}: {last}");
                assert!(!printed.contains("panicked") && !printed.contains("backtrace"), "{what}: {printed}");
                assert!(!printed.contains("waiting for `cluster bootstrap`"), "{what}: taken for a new node");
            }
            // sled kept nothing live where the damage landed (after a rejoin its latest state
            // may sit in a snapshot file of its own): then nothing may be missing.
            Ok(()) => {
                assert!(round > 0, "{what}: corrald started on the damaged original data dir");
                assert_eq!(vm_names(&c, 2, true).unwrap(), want, "{what}: started with data missing");
                c.stop(2);
            }
        }
        c.restart_with(2, &["--rejoin"]);
        let seen = wait_until(Duration::from_secs(20), &format!("{what}: host3 to catch up after --rejoin"), || {
            vm_names(&c, 2, true).and_then(|n| if n == want { Ok(n) } else { Err(format!("{n:?}")) })
        });
        assert_eq!(seen, want);
        let status = c.status(2);
        assert_eq!(status.this_node_id, 3, "{what}: rejoined as another member: {status:?}");
        let set_aside = std::fs::read_dir(&c.nodes[2].data_dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("db.damaged-"))
            .count();
        assert!(set_aside >= 1, "{what}: the damaged database was not kept aside");
    }
    // The member votes and replicates again: a write goes through with host1 stopped.
    c.stop(0);
    c.must_ok(2, &["vm", "create", "after", "--memory", "64M"]);
}

#[test]
fn rejoin_is_refused_when_the_cluster_no_longer_lists_the_member() {
    let mut c = Cluster::run(3, &[]);
    c.stop(2);
    c.must_ok(0, &["host", "remove", "host3"]);
    truncate(&c.nodes[2].data_dir.join("db").join("db"), 0);
    let out = c.corrald_refuses(2, &["--rejoin"]);
    assert_ne!(out.code, 0);
    let last = out.stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains("no longer lists host3 (node 3)"), "{last}");
}

#[test]
fn bootstrap_is_refused_on_a_member() {
    let c = Cluster::run(1, &[]);
    c.refused(0, &["cluster", "bootstrap", "--name", "other"], "already belongs to cluster 'lab'");
}

fn groups(c: &Cluster, i: usize) -> Vec<AffinityGroupView> {
    c.cli_json(i, &["affinity-group", "list"])
}

#[test]
fn a_backup_restores_the_cluster_with_its_vms_and_rules_after_every_node_is_wiped() {
    let mut c = Cluster::run(3, &[]);
    c.must_ok(0, &["vm", "create", "web1", "--memory", "128M", "--ha", "--ha-priority", "high"]);
    c.must_ok(1, &["vm", "create", "web2", "--memory", "128M"]);
    c.must_ok(2, &["vm", "create", "db1", "--memory", "256M", "--vcpus", "2"]);
    c.must_ok(0, &["affinity-group", "create", "apart", "--polarity", "negative", "--vms", "web1,web2"]);
    c.must_ok(0, &["affinity-label", "create", "fast", "--vms", "db1", "--hosts", "host2"]);
    c.must_ok(0, &["host", "edit", "host2", "--tags", "ssd"]);
    c.must_ok(0, &["vm", "start", "web1", "--host", "host1"]);
    let file = c.dir().join("lab.backup");
    // `cluster backup` has no view type: {"file", "cluster", "applied_index", ...}.
    let out: Value = c.must_json(1, &["cluster", "backup", "-f", file.to_str().unwrap()]);
    assert_eq!(out["cluster"], "lab");
    c.refused(1, &["cluster", "backup", "-f", file.to_str().unwrap()], "exists already");
    let before_groups = groups(&c, 0);
    let before_vm = c.vm(0, "db1");
    let cluster_id = std::fs::read_to_string(c.nodes[0].data_dir.join("identity")).unwrap();

    for i in 0..3 {
        c.kill(i);
        std::fs::remove_dir_all(&c.nodes[i].data_dir).unwrap();
    }
    // A restore wants an empty data dir and a host of the backup.
    c.nodes[0].name = "nohost".into();
    let out = c.corrald_refuses(0, &["--restore", file.to_str().unwrap()]);
    assert!(
        out.stderr.contains("the backup has no host named 'nohost' (it has host1, host2, host3)"),
        "{}",
        out.stderr
    );
    c.nodes[0].name = "host1".into();
    std::fs::remove_dir_all(&c.nodes[0].data_dir).ok();
    c.restart_with(0, &["--restore", file.to_str().unwrap()]);
    // The CA's key was on the wiped voters only: the restored cluster has a new CA, and the
    // admin fetches new credentials on the host.
    c.fetch_credentials(0);
    c.leader();
    assert_eq!(vm_names(&c, 0, false).unwrap(), vec!["db1", "web1", "web2"]);
    assert_eq!(groups(&c, 0), before_groups);
    let after_vm = c.vm(0, "db1");
    assert_eq!(after_vm.id, before_vm.id);
    assert_eq!(after_vm.memory_mib, before_vm.memory_mib);
    let labels: Vec<AffinityLabelView> = c.cli_json(0, &["affinity-label", "list"]);
    assert_eq!(labels.len(), 1, "{labels:?}");
    // The identity file is the node's own, not CLI output: read untyped.
    let restored_id: Value =
        serde_json::from_str(&std::fs::read_to_string(c.nodes[0].data_dir.join("identity")).unwrap()).unwrap();
    let old_id: Value = serde_json::from_str(&cluster_id).unwrap();
    assert_eq!(restored_id["cluster_id"], old_id["cluster_id"], "the restored cluster is the same cluster");
    // The HA VM of host1 runs there again; the other hosts join again with a token.
    c.wait_status(0, "web1", "up");
    let token = c.must_ok(0, &["cluster", "token", "create"]).lines().last().unwrap().trim().to_string();
    c.token = Some(token);
    for i in 1..3 {
        c.restart(i);
        c.join(i);
    }
    let status = c.status(2);
    assert_eq!(status.members.len(), 3, "{status:?}");
    let host2: HostView = c.cli_json(1, &["host", "show", "host2"]);
    assert_eq!(host2.tags, ["ssd"], "{host2:?}");
}

#[test]
fn force_new_cluster_makes_a_lone_survivor_a_cluster_and_is_refused_while_others_answer() {
    let mut c = Cluster::run(3, &[]);
    c.must_ok(0, &["vm", "create", "keep", "--memory", "64M"]);
    wait_until(Duration::from_secs(10), "host3 to have the VM", || {
        vm_names(&c, 2, true).and_then(|n| if n == ["keep"] { Ok(()) } else { Err(format!("{n:?}")) })
    });
    c.stop(2);
    let out = c.corrald_refuses(2, &["--force-new-cluster"]);
    assert!(out.stderr.contains("--force-new-cluster refused"), "{}", out.stderr);
    assert!(out.stderr.contains("two clusters"), "{}", out.stderr);
    // The majority is lost for good.
    c.kill(0);
    c.kill(1);
    c.restart_with(2, &["--force-new-cluster"]);
    c.leader();
    assert_eq!(vm_names(&c, 2, false).unwrap(), vec!["keep"]);
    c.must_ok(2, &["vm", "create", "new", "--memory", "64M"]);
    let status = c.status(2);
    assert_eq!(status.members.len(), 1, "{status:?}");
}

#[test]
fn rejoin_with_its_key_and_certificate_gone_needs_a_token() {
    let mut c = Cluster::run(3, &[]);
    c.must_ok(0, &["vm", "create", "web1", "--memory", "64M"]);
    c.stop(2);
    truncate(&c.nodes[2].data_dir.join("db").join("db"), 0);
    std::fs::remove_dir_all(c.nodes[2].data_dir.join("tls")).unwrap();
    let out = c.corrald_refuses(2, &["--rejoin"]);
    assert_ne!(out.code, 0);
    let last = out.stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains("missing or damaged") && last.contains("--token-file"), "{last}");
    let token =
        c.must_ok(0, &["cluster", "token", "create", "--ttl", "10m"]).lines().last().unwrap().trim().to_string();
    let file = c.dir().join("rejoin.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    c.restart_with(2, &["--rejoin", "--token-file", file.to_str().unwrap()]);
    wait_until(Duration::from_secs(20), "host3 to catch up with a new certificate", || {
        vm_names(&c, 2, true).and_then(|n| if n == ["web1"] { Ok(n) } else { Err(format!("{n:?}")) })
    });
    assert!(c.nodes[2].data_dir.join("tls/node.pem").exists());
    assert_eq!(c.status(2).this_node_id, 3);
}
