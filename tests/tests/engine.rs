//! The hosted engine between real corrald processes on libvirt's test driver: a bootstrap that
//! makes the engine VM, engine scores (a host whose gateway does not answer scores lower), the
//! engine restarted first and on the best-scored host, global and local maintenance, delete
//! protection, and `engine start --local` on a host that lost quorum.

use std::time::Duration;

use corral_tests::{free_port, wait_until, Cluster};
use serde_json::Value;

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
    assert_eq!(out["engine"]["name"], ENGINE, "{out}");
    c
}

/// An address whose gateway check passes: a listener that lives as long as the test process.
fn c_listener() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::mem::forget(l);
    addr
}

fn engine_status(c: &Cluster, i: usize) -> Value {
    c.must_json(i, &["engine", "status"])
}

fn score_of(status: &Value, host: &str) -> Option<u64> {
    status["hosts"].as_array()?.iter().find(|h| h["host"] == host)?["score"].as_u64()
}

fn wait_scores(c: &Cluster, i: usize) -> Value {
    wait_until(Duration::from_secs(20), "every host to report an engine score", || {
        let s = engine_status(c, i);
        match (score_of(&s, "host1"), score_of(&s, "host2"), score_of(&s, "host3")) {
            (Some(a), Some(b), Some(x)) if x + 600 <= a.min(b) => Ok(s),
            _ => Err(s.to_string()),
        }
    })
}

fn wait_engine_on(c: &Cluster, i: usize, host: &str) -> Value {
    c.wait_vm(i, ENGINE, &format!("up on {host}"), |v| v["status"] == "up" && v["host"] == host)
}

fn event_index(events: &[String], what: &str) -> usize {
    events.iter().position(|e| e.contains(what)).unwrap_or_else(|| panic!("no event '{what}' in {events:#?}"))
}

#[test]
fn the_engine_is_made_protected_restarted_first_on_the_best_host_and_obeys_maintenance() {
    let mut c = engine_cluster();
    let vm = wait_engine_on(&c, 1, "host1");
    assert_eq!((vm["hosted_engine"].as_bool(), vm["delete_protected"].as_bool()), (Some(true), Some(true)));
    assert_eq!((vm["ha"]["enabled"].as_bool(), vm["ha"]["priority"].as_str()), (Some(true), Some("high")));
    assert_eq!(vm["nics"][0]["network"], "default", "{vm}");
    let listed = c.must_json(2, &["vm", "list"]);
    assert_eq!(listed[0]["hosted_engine"], true, "{listed}");

    // Protected: neither deleted nor unprotected; edited like any VM, everywhere at once.
    c.refused(1, &["vm", "delete", ENGINE], "hosted engine");
    c.refused(1, &["vm", "edit", ENGINE, "--delete-protected", "false"], "stays delete-protected");
    let edited = c.must_json(2, &["vm", "edit", ENGINE, "--memory", "384M", "--description", "managed"]);
    assert_eq!(edited["next_run"]["memory_mib"], 384, "a running VM's memory waits for its next run");
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
    assert_eq!(status["vm"], ENGINE);
    assert_eq!(status["host"], "host1");
    let host3 = status["hosts"].as_array().unwrap().iter().find(|h| h["host"] == "host3").unwrap().clone();
    assert!(host3["penalties"].to_string().contains("unreachable"), "{host3}");

    // An HA VM of the same priority on the same host: the engine comes back first.
    c.must_json(
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
        let up = s["hosts"].as_array().unwrap().iter().any(|h| h["host"] == "host1" && h["state"] == "up");
        if up {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let s = c.must_json(1, &["engine", "maintenance", "--mode", "global"]);
    assert_eq!(s["global_maintenance"], true);
    c.must_json(1, &["vm", "create", "web2", "--memory", "128M", "--vcpus", "1", "--ha", "--start", "--host", "host2"]);
    c.wait_status(1, "web2", "up");
    c.kill(1);
    let web2 = c.wait_vm(2, "web2", "restarted away from host2", |v| v["status"] == "up" && v["host"] != "host2");
    let engine = c.must_json(2, &["vm", "show", ENGINE]);
    assert_eq!(engine["status"], "down", "HA restarted the engine in global maintenance (web2: {web2}): {engine}");

    // Local maintenance makes host1 ineligible; lifting global maintenance lets HA act again,
    // and the engine goes to the only eligible host left, however poor its score.
    c.must_json(2, &["engine", "maintenance", "--mode", "local", "--host", "host1"]);
    c.must_json(2, &["engine", "maintenance", "--mode", "none", "--host", "host3"]);
    wait_engine_on(&c, 2, "host3");
    let s = engine_status(&c, 2);
    let host1 = s["hosts"].as_array().unwrap().iter().find(|h| h["host"] == "host1").unwrap().clone();
    assert_eq!(host1["local_maintenance"], true, "{s}");
    assert_eq!(s["global_maintenance"], false);
    // An operator may stop and start it like any VM, but not on a host in local maintenance.
    c.must_json(2, &["vm", "stop", ENGINE]);
    c.wait_status(2, ENGINE, "down");
    c.refused(2, &["vm", "start", ENGINE, "--host", "host1"], "local maintenance");
    c.must_json(2, &["vm", "start", ENGINE]);
    wait_engine_on(&c, 2, "host3");
}

#[test]
fn the_engine_is_started_by_hand_from_the_local_ovf_store_after_quorum_is_lost() {
    let mut c = engine_cluster();
    wait_engine_on(&c, 0, "host1");
    c.refused(2, &["engine", "start", "--local"], "has quorum");

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
    assert_eq!(vm["status"], "up");
    let events = c.events(2);
    let taken = event_index(&events, "started by hand on host host3");
    // Nothing started a second copy: no HA restart of the engine after the take-over, and it
    // stays up on host3 while host1 and host2 settle (their agents report what they run).
    let restarts: Vec<&String> =
        events[taken..].iter().filter(|e| e.contains(&format!("VM {ENGINE} is being restarted"))).collect();
    assert!(restarts.is_empty(), "the engine was restarted after the take-over: {restarts:?}");
    wait_until(Duration::from_secs(20), "host1 and host2 up again", || {
        let s = engine_status(&c, 0);
        let up = s["hosts"].as_array().unwrap().iter().filter(|h| h["state"] == "up").count();
        if up == 3 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let vm = c.must_json(0, &["vm", "show", ENGINE]);
    assert_eq!((vm["status"].as_str(), vm["host"].as_str()), (Some("up"), Some("host3")), "{vm}");
}

#[test]
fn a_cluster_is_bootstrapped_with_the_engine_of_an_ovf_document() {
    // The engine VM of one cluster, exported, becomes the engine of a new one (its disk copied
    // into the new cluster's storage domain, as an operator would).
    let first = engine_cluster();
    let ovf = first.dir().join("engine.ovf");
    first.must_ok(0, &["vm", "export", ENGINE, "-f", ovf.to_str().unwrap()]);
    let disk = first.must_json(0, &["vm", "show", ENGINE])["disks"][0]["path"].as_str().unwrap().to_string();

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
    let out = second.must_json(0, &["cluster", "bootstrap", "--name", "two", "--engine-ovf", ovf.to_str().unwrap()]);
    second.token = Some(out["token"].as_str().unwrap().to_string());
    assert_eq!(out["engine"]["hosted_engine"], true, "{out}");
    let vm = wait_engine_on(&second, 0, "host1");
    assert_eq!(vm["description"], "The cluster's management VM (hosted engine).");
    assert_eq!(vm["memory_mib"], 256);
}
