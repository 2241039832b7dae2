//! The hosted engine between real corrald processes on libvirt's test driver: a bootstrap that
//! makes the engine VM, engine scores (a host whose gateway does not answer scores lower), the
//! engine restarted first and on the best-scored host, global and local maintenance, delete
//! protection, and `engine start --local` on a host that lost quorum.

use std::time::Duration;

use corral_cli::views::{BootstrapView, EngineStatusView, VmView};
use corral_tests::{free_port, wait_until, Cluster};

const ENGINE: &str = "hosted-engine";

/// Three nodes; host3's gateway never answers (a closed port on loopback), so it scores 1600
/// below the others. The cluster is bootstrapped on host1 with an engine image.
fn engine_cluster() -> Cluster {
    let mut c = Cluster::start(0, &[]);
    let closed = format!("127.0.0.1:{}", free_port());
    for gateway in [c_listener(), c_listener(), closed] {
        c.add_node(&["--engine-gateway", &gateway, "--engine-score-ms", "200"]);
    }
    let out = c.bootstrap_with_engine();
    assert_eq!(out.engine.as_ref().map(|e| e.name.as_str()), Some(ENGINE), "{out:?}");
    c
}

/// An address whose gateway check passes: a listener that lives as long as the test process.
fn c_listener() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::mem::forget(l);
    addr
}

fn engine_status(c: &Cluster, i: usize) -> EngineStatusView {
    c.cli_json(i, &["engine", "status"])
}

fn score_of(status: &EngineStatusView, host: &str) -> Option<u32> {
    status.hosts.iter().find(|h| h.host == host)?.score
}

fn wait_scores(c: &Cluster, i: usize) -> EngineStatusView {
    wait_until(Duration::from_secs(20), "every host to report an engine score", || {
        let s = engine_status(c, i);
        match (score_of(&s, "host1"), score_of(&s, "host2"), score_of(&s, "host3")) {
            (Some(a), Some(b), Some(x)) if x + 600 <= a.min(b) => Ok(s),
            _ => Err(format!("{s:?}")),
        }
    })
}

fn wait_engine_on(c: &Cluster, i: usize, host: &str) -> VmView {
    c.wait_vm(i, ENGINE, &format!("up on {host}"), |v| v.status == "up" && v.host.as_deref() == Some(host))
}

fn event_index(events: &[String], what: &str) -> usize {
    events.iter().position(|e| e.contains(what)).unwrap_or_else(|| panic!("no event '{what}' in {events:#?}"))
}

#[test]
fn the_engine_is_made_protected_restarted_first_on_the_best_host_and_obeys_maintenance() {
    let mut c = engine_cluster();
    let vm = wait_engine_on(&c, 1, "host1");
    assert_eq!((vm.hosted_engine, vm.delete_protected), (true, true));
    assert_eq!((vm.ha.enabled, vm.ha.priority.as_str()), (true, "high"));
    assert_eq!(vm.nics[0].network, "default", "{vm:?}");
    let listed: Vec<VmView> = c.cli_json(2, &["vm", "list"]);
    assert!(listed[0].hosted_engine, "{listed:?}");

    // Protected: neither deleted nor unprotected; edited like any VM, everywhere at once.
    c.refused(1, &["vm", "delete", ENGINE], "hosted engine");
    c.refused(1, &["vm", "edit", ENGINE, "--delete-protected", "false"], "stays delete-protected");
    let edited: VmView = c.cli_json(2, &["vm", "edit", ENGINE, "--memory", "384M", "--description", "managed"]);
    assert_eq!(edited.next_run.and_then(|n| n.memory_mib), Some(384), "a running VM's memory waits for its next run");
    for i in 0..3 {
        wait_until(Duration::from_secs(5), &format!("host{}'s OVF store to hold the edit", i + 1), || {
            let doc = c.must_ok(i, &["ovf", "dump", ENGINE, "--local"]);
            if doc.contains("managed") {
                Ok(())
            } else {
                Err(doc)
            }
        });
    }

    let status = wait_scores(&c, 0);
    assert_eq!(status.vm, ENGINE);
    assert_eq!(status.host.as_deref(), Some("host1"));
    let host3 = status.hosts.iter().find(|h| h.host == "host3").unwrap();
    assert!(host3.penalties.iter().any(|p| p.contains("unreachable")), "{host3:?}");

    // An HA VM of the same priority on the same host: the engine comes back first.
    c.cli_json::<VmView>(
        0,
        &[
            "vm",
            "create",
            "web",
            "--memory",
            "128M",
            "--vcpus",
            "1",
            "--ha",
            "--ha-priority",
            "high",
            "--start",
            "--host",
            "host1",
        ],
    );
    c.wait_status(0, "web", "up");
    c.kill(0);
    wait_engine_on(&c, 1, "host2");
    c.wait_status(1, "web", "up");
    let events = c.events(1);
    let engine_back = event_index(&events, &format!("VM {ENGINE} is being restarted"));
    let web_back = event_index(&events, "VM web is being restarted");
    assert!(engine_back < web_back, "the engine restarts before every other HA VM: {events:#?}");

    // Global maintenance: HA leaves the engine alone when its host dies, not the others.
    c.restart(0);
    wait_until(Duration::from_secs(20), "host1 to be up again", || {
        let s = engine_status(&c, 1);
        let up = s.hosts.iter().any(|h| h.host == "host1" && h.state == "up");
        if up {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    let s: EngineStatusView = c.cli_json(1, &["engine", "maintenance", "--mode", "global"]);
    assert!(s.global_maintenance);
    c.cli_json::<VmView>(
        1,
        &["vm", "create", "web2", "--memory", "128M", "--vcpus", "1", "--ha", "--start", "--host", "host2"],
    );
    c.wait_status(1, "web2", "up");
    c.kill(1);
    let web2 =
        c.wait_vm(2, "web2", "restarted away from host2", |v| v.status == "up" && v.host.as_deref() != Some("host2"));
    let engine = c.vm(2, ENGINE);
    assert_eq!(engine.status, "down", "HA restarted the engine in global maintenance (web2: {web2:?}): {engine:?}");

    // Local maintenance makes host1 ineligible; lifting global maintenance lets HA act again,
    // and the engine goes to the only eligible host left, however poor its score.
    c.cli_json::<EngineStatusView>(2, &["engine", "maintenance", "--mode", "local", "--host", "host1"]);
    c.cli_json::<EngineStatusView>(2, &["engine", "maintenance", "--mode", "none", "--host", "host3"]);
    wait_engine_on(&c, 2, "host3");
    let s = engine_status(&c, 2);
    let host1 = s.hosts.iter().find(|h| h.host == "host1").unwrap();
    assert!(host1.local_maintenance, "{s:?}");
    assert!(!s.global_maintenance);
    // An operator may stop and start it like any VM, but not on a host in local maintenance.
    c.cli_json::<VmView>(2, &["vm", "stop", ENGINE]);
    c.wait_status(2, ENGINE, "down");
    c.refused(2, &["vm", "start", ENGINE, "--host", "host1"], "local maintenance");
    c.cli_json::<VmView>(2, &["vm", "start", ENGINE]);
    wait_engine_on(&c, 2, "host3");
}

#[test]
fn the_engine_is_started_by_hand_from_the_local_ovf_store_after_quorum_is_lost() {
    let mut c = engine_cluster();
    wait_engine_on(&c, 0, "host1");
    c.refused(2, &["engine", "start", "--local"], "has quorum");
    c.refused(2, &["engine", "start", "--local", "--force"], "only for a host whose cluster has lost quorum");

    // host1 (the engine's) and host2 die: host3 alone has no quorum and fences nothing of its own.
    c.kill(0);
    c.kill(1);
    let out = c.corral(2, &["engine", "start", "--local"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(ENGINE) && out.stdout.contains("host3"), "{}", out.stdout);
    assert!(out.stdout.contains("does not answer"), "it says which hosts it could not ask: {}", out.stdout);
    c.refused(2, &["engine", "start", "--local"], "already runs on this host");

    // Quorum is back: the cluster takes the hand-started engine over where it runs, and the
    // returning host1 does not start a second copy.
    c.restart(0);
    c.restart(1);
    let vm = wait_engine_on(&c, 2, "host3");
    assert_eq!(vm.status, "up");
    let events = c.events(2);
    let taken = event_index(&events, "started by hand on host host3");
    // Nothing started a second copy: no HA restart of the engine after the take-over, and it
    // stays up on host3 while host1 and host2 settle (their agents report what they run).
    let restarts: Vec<&String> =
        events[taken..].iter().filter(|e| e.contains(&format!("VM {ENGINE} is being restarted"))).collect();
    assert!(restarts.is_empty(), "the engine was restarted after the take-over: {restarts:?}");
    wait_until(Duration::from_secs(20), "host1 and host2 up again", || {
        let s = engine_status(&c, 0);
        let up = s.hosts.iter().filter(|h| h.state == "up").count();
        if up == 3 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    let vm = c.vm(0, ENGINE);
    assert_eq!((vm.status.as_str(), vm.host.as_deref()), ("up", Some("host3")), "{vm:?}");
}

#[test]
fn a_cluster_is_bootstrapped_with_the_engine_of_an_ovf_document() {
    // The engine VM of one cluster, exported, becomes the engine of a new one (its disk copied
    // into the new cluster's storage domain, as an operator would).
    let first = engine_cluster();
    let ovf = first.dir().join("engine.ovf");
    first.must_ok(0, &["vm", "export", ENGINE, "-f", ovf.to_str().unwrap()]);
    let disk = first.vm(0, ENGINE).disks[0].path.clone();

    let mut second = Cluster::start(1, &[]);
    std::fs::create_dir_all(second.storage_dir()).unwrap();
    let name = std::path::Path::new(&disk).file_name().unwrap();
    std::fs::copy(&disk, second.storage_dir().join(name)).unwrap();
    // Too big for the host: refused before any cluster is made.
    let out = second.corral(
        0,
        &["cluster", "bootstrap", "--name", "two", "--engine-ovf", ovf.to_str().unwrap(), "--engine-memory", "1T"],
    );
    assert!(out.code != 0 && out.stderr.contains("needs"), "{out:?}");
    let out: BootstrapView =
        second.cli_json(0, &["cluster", "bootstrap", "--name", "two", "--engine-ovf", ovf.to_str().unwrap()]);
    second.token = Some(out.token.clone());
    assert!(out.engine.as_ref().is_some_and(|e| e.hosted_engine), "{out:?}");
    let vm = wait_engine_on(&second, 0, "host1");
    assert_eq!(vm.description, "The cluster's management VM (hosted engine).");
    assert_eq!(vm.memory_mib, 256);
}

#[test]
fn a_refused_engine_bootstrap_leaves_no_cluster_and_no_image_behind() {
    let mut c = Cluster::start(1, &[]);
    let image = c.dir().join("engine.qcow2");
    let made =
        std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&image).arg("64M").status();
    assert!(made.is_ok_and(|s| s.success()));
    let image = image.to_str().unwrap().to_string();
    let images = |c: &Cluster| -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(c.storage_dir()) else { return Vec::new() };
        let names = dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned());
        names.filter(|n| n.ends_with(".qcow2")).collect()
    };
    #[rustfmt::skip]
    let refusals: [(&[&str], &str); 2] = [
        // A NIC name that breaks the naming rule: refused before the image is copied.
        (&["--engine-memory", "256M", "--engine-nic", "bad name!"], "engine_nics"),
        // Too big for the host: refused after the copy, which is then removed.
        (&["--engine-memory", "1T"], "needs"),
    ];
    for (extra, says) in refusals {
        let mut args = vec!["cluster", "bootstrap", "--name", "lab", "--engine-image", image.as_str()];
        args.extend_from_slice(extra);
        let out = c.corral(0, &args);
        assert!(out.code != 0 && out.stderr.contains(says), "{extra:?}: {out:?}");
        assert_eq!(images(&c), Vec::<String>::new(), "{extra:?} left an image behind");
    }
    // Nothing was made: the node can still be bootstrapped.
    c.bootstrap_with_engine();
    assert_eq!(images(&c).len(), 1);
}
