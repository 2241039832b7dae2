//! Mixed versions: nodes of the previous release (format v0, commit in
//! deploy/upgrade/PREVIOUS_RELEASE, built by `make previous`) and of this build in one cluster
//! at the old cluster level, Raft traffic both ways; `cluster upgrade` refused while an old node
//! remains, then the level raised; a rolling upgrade of a whole cluster with VMs, rules and an
//! engine while writes go on (repeated by `make check-long`).
//!
//! Without `CORRAL_PREVIOUS_BIN` (set by `make test`) these tests say so and check nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_cli::views::{
    AffinityGroupView, AffinityLabelView, ClusterStatusView, EngineStatusView, MemberView, VmView,
};
use corral_tests::{previous_release, wait_until, Cluster};
use serde_json::Value;

fn previous() -> Option<PathBuf> {
    let dir = previous_release();
    if dir.is_none() {
        eprintln!("SKIPPED: CORRAL_PREVIOUS_BIN is not set (make test builds the previous release and sets it)");
    }
    dir
}

fn vm_names(c: &Cluster, i: usize) -> Result<Vec<String>, String> {
    let out = c.corral(i, &["-o", "json", "--stale", "vm", "list"]);
    if out.code != 0 {
        return Err(out.stderr);
    }
    let mut v: Vec<String> = out.view::<Vec<VmView>>().into_iter().map(|v| v.name).collect();
    v.sort();
    Ok(v)
}

fn wait_names(c: &Cluster, i: usize, want: &[String]) {
    wait_until(Duration::from_secs(15), &format!("{} to have {} VMs", c.nodes[i].name, want.len()), || {
        vm_names(c, i).and_then(|n| if n == want { Ok(()) } else { Err(format!("{n:?}")) })
    });
}

fn member<'a>(status: &'a ClusterStatusView, name: &str) -> &'a MemberView {
    status.members.iter().find(|m| m.name == name).unwrap()
}

/// Replaces node `i`'s corrald with `corrald` (None: this build), keeping its data dir.
fn replace(c: &mut Cluster, i: usize, corrald: Option<&Path>) {
    c.stop(i);
    c.nodes[i].corrald = corrald.map(Path::to_path_buf);
    c.restart(i);
}

#[test]
fn old_and_new_nodes_replicate_at_level_0_and_the_level_rises_once_the_last_old_node_is_replaced() {
    let Some(prev) = previous() else { return };
    let old = prev.join("corrald");
    let mut c = Cluster::start(0, &[]);
    c.add_node_running(&old, &[]);
    c.add_node(&[]);
    c.add_node(&[]);
    // An old node bootstraps: the cluster is at level 0; new nodes join it and follow it.
    c.bootstrap();
    c.join(1);
    c.join(2);
    let mut want = Vec::new();
    for (i, name) in [(0, "a"), (1, "b"), (2, "c")] {
        c.must_ok(i, &["vm", "create", name, "--memory", "64M"]);
        want.push(name.to_string());
    }
    c.must_ok(1, &["affinity-group", "create", "ab", "--polarity", "positive", "--vms", "a,b"]);
    for i in 0..3 {
        wait_names(&c, i, &want);
    }
    let status = c.status(2);
    assert_eq!(status.cluster_level, 0, "{status:?}");
    assert_eq!(member(&status, "host1").version, "0.1.0", "{status:?}");
    assert_eq!(member(&status, "host1").max_level, 0, "{status:?}");
    assert_eq!(member(&status, "host2").max_level, 5, "{status:?}");
    c.refused(2, &["cluster", "upgrade"], "host1 (version 0.1.0, level 0) is not");

    // The old leader goes; a new node leads and the old one, back, follows it at level 0.
    c.kill(0);
    let leader = c.leader();
    assert_ne!(leader, 0);
    c.must_ok(leader, &["vm", "create", "d", "--memory", "64M"]);
    want.push("d".into());
    c.restart(0);
    wait_names(&c, 0, &want);
    c.must_ok(0, &["vm", "edit", "a", "--description", "edited through the old node"]);
    wait_until(Duration::from_secs(10), "the edit made through the old node on host3", || {
        let v: VmView = c.cli_json(2, &["--stale", "vm", "show", "a"]);
        if v.description == "edited through the old node" {
            Ok(())
        } else {
            Err(v.description)
        }
    });
    // A new node whose state comes in a snapshot from a new leader, at level 0, reads it.
    c.refused(1, &["cluster", "upgrade"], "upgrade it first");

    replace(&mut c, 0, None);
    wait_until(Duration::from_secs(10), "every member on this build", || {
        let s = c.status(1);
        let all = s.members.iter().all(|m| m.max_level == 5);
        if all {
            Ok(())
        } else {
            Err(format!("{:?}", s.members))
        }
    });
    // `cluster upgrade` has no view type: {"from_level", "cluster_level"}.
    // Level 2 requires TLS: the upgrade makes the CA and every member's certificate first.
    let up: Value = c.must_json(1, &["cluster", "upgrade"]);
    assert_eq!(up["cluster_level"], 5, "{up}");
    let plain = c.corral(1, &["vm", "list"]);
    assert!(plain.stderr.contains("answers only callers with credentials"), "{}", plain.stderr);
    c.fetch_credentials(1);
    c.refused(1, &["cluster", "upgrade"], "already at level 5");
    c.must_ok(0, &["vm", "create", "e", "--memory", "64M"]);
    want.push("e".into());
    for i in 0..3 {
        wait_names(&c, i, &want);
        assert_eq!(c.status(i).cluster_level, 5);
    }
    let groups: Vec<AffinityGroupView> = c.cli_json(0, &["affinity-group", "list"]);
    assert_eq!(groups[0].vms, ["a", "b"], "{groups:?}");
    assert!(c.events(0).iter().any(|e| e == "The cluster level was raised from 0 to 5."));
}

/// Three nodes of the previous release with VMs (HA ones running), affinity rules and a hosted
/// engine, replaced one by one by this build while a writer keeps editing; every acknowledged
/// write is there, HA still restarts a killed host's VMs half-way, and the level is raised at
/// the end. `make check-long` runs it again and again.
#[test]
fn rolling_upgrade_of_a_whole_cluster_while_writes_go_on() {
    let Some(prev) = previous() else { return };
    let old = prev.join("corrald");
    let mut c = Cluster::start(0, &[]);
    for _ in 0..3 {
        c.add_node_running(&old, &[]);
    }
    c.bootstrap_with_engine();
    for (name, host) in [("web1", "host1"), ("web2", "host2"), ("web3", "host3")] {
        c.must_ok(0, &["vm", "create", name, "--memory", "64M", "--ha", "--ha-priority", "high"]);
        c.must_ok(0, &["vm", "start", name, "--host", host]);
    }
    c.must_ok(0, &["vm", "create", "db1", "--memory", "128M"]);
    c.must_ok(0, &["affinity-group", "create", "webs", "--polarity", "negative", "--vms", "web1,web2,web3"]);
    c.must_ok(0, &["affinity-label", "create", "fast", "--vms", "db1", "--hosts", "host2,host3"]);
    for name in ["web1", "web2", "web3"] {
        c.wait_status(0, name, "up");
    }

    // One writer edits db1's description through whichever node answers, recording each
    // acknowledged value; a bounded number of rounds.
    let endpoints: Vec<String> = (0..3).map(|i| c.endpoint(i).to_string()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let started = Instant::now();
            for n in 0..100_000u32 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() > Duration::from_secs(600) {
                    break;
                }
                let ep = endpoints.join(",");
                let value = format!("edit-{n}");
                let out = corral_tests::corral_at(&ep, &["vm", "edit", "db1", "--description", &value]);
                if out.code == 0 {
                    acked.push(value);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            acked
        })
    };

    for i in 0..3 {
        replace(&mut c, i, None);
        c.leader();
        if i == 1 {
            // Half-way (one old node left): HA still works. host3 (old) loses power.
            c.kill(2);
            c.wait_vm(0, "web3", "web3 restarted elsewhere", |v| {
                v.status == "up" && v.host.as_deref() != Some("host3")
            });
            c.restart(2);
            // Serving, not just listening: a corrald that listens has not set up its signal
            // handling yet, and the next replacement stops it.
            wait_until(Duration::from_secs(15), "host3 to serve again", || {
                let out = c.corral(2, &["--stale", "cluster", "status"]);
                if out.code == 0 {
                    Ok(())
                } else {
                    Err(out.stderr)
                }
            });
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert!(acked.len() > 10, "too few writes went through: {}", acked.len());
    let last = acked.last().unwrap();
    let seen = c.vm(0, "db1");
    assert_eq!(&seen.description, last, "the last acknowledged edit is lost");
    let up: Value = c.must_json(0, &["cluster", "upgrade"]);
    assert_eq!(up["cluster_level"], 5);
    c.fetch_credentials(0);
    for name in ["web1", "web2", "web3", "db1"] {
        c.vm(1, name);
    }
    let labels: Vec<AffinityLabelView> = c.cli_json(2, &["affinity-label", "list"]);
    assert_eq!(labels.len(), 1);
    let engine: EngineStatusView = c.cli_json(2, &["engine", "status"]);
    assert!(["hosted-engine", "HostedEngine"].contains(&engine.vm.as_str()), "{engine:?}");
}

/// A data dir that release 3f21f51 wrote (tests/fixtures/v0-datadir.tar.gz: host1 of a one-node
/// cluster "legacy" with VMs web1 and db1, an affinity group and host tags) opens in this build
/// at level 0, with everything in it, and gets its identity file.
#[test]
fn a_data_dir_written_by_the_previous_release_opens_at_level_0() {
    let mut c = Cluster::start(0, &[]);
    let i = c.add_stopped_node(&[]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v0-datadir.tar.gz");
    // The archive holds the release's data dir as h1/.
    let dir = c.nodes[i].data_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let untar = std::process::Command::new("tar")
        .args(["xzf"])
        .arg(&fixture)
        .args(["--strip-components=1", "-C"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(untar.success());
    assert!(dir.join("db").exists(), "the fixture holds h1/db");
    assert!(!c.nodes[i].data_dir.join("identity").exists());
    c.restart(i);
    wait_until(Duration::from_secs(15), "the old data dir's VMs", || {
        vm_names(&c, i).and_then(|n| if n == ["db1", "web1"] { Ok(()) } else { Err(format!("{n:?}")) })
    });
    let status = c.status(i);
    assert_eq!(status.cluster, "legacy", "{status:?}");
    assert_eq!(status.cluster_level, 0, "{status:?}");
    let db1 = c.vm(i, "db1");
    assert_eq!(db1.description, "the database", "{db1:?}");
    let groups: Vec<AffinityGroupView> = c.cli_json(i, &["affinity-group", "list"]);
    assert_eq!(groups[0].name, "apart", "{groups:?}");
    wait_until(Duration::from_secs(10), "the identity file", || {
        std::fs::read_to_string(c.nodes[i].data_dir.join("identity")).map_err(|e| e.to_string())
    });
    // Still at level 0, it writes v0: the release's own binary, if there is one, reads it back.
    c.must_ok(i, &["vm", "create", "new", "--memory", "64M"]);
    if let Some(prev) = previous_release() {
        c.stop(i);
        c.nodes[i].corrald = Some(prev.join("corrald"));
        c.restart(i);
        wait_until(Duration::from_secs(15), "the release's corrald to read it back", || {
            vm_names(&c, i).and_then(|n| if n == ["db1", "new", "web1"] { Ok(()) } else { Err(format!("{n:?}")) })
        });
    }
}
