//! Forming a cluster: bootstrap, join with tokens, voters and learners, and the refusals
//! that must leave the cluster exactly as it was.

use std::time::Duration;

use corral_cli::views::{ClusterStatusView, HostView, JoinView, VmView};
use corral_tests::{wait_until, Cluster};
use serde_json::Value;

fn roles(status: &ClusterStatusView) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = status.members.iter().map(|m| (m.name.clone(), m.role.clone(), m.reachable)).collect();
    v.sort();
    v
}

#[test]
fn three_nodes_bootstrap_join_and_agree() {
    let c = Cluster::run(3, &[]);
    for i in 0..3 {
        let status = c.status(i);
        assert_eq!(status.cluster, "lab");
        assert!(status.leader_id > 0);
        assert!(status.term > 0);
        assert_eq!(
            roles(&status),
            vec![
                ("host1".into(), "voter".into(), true),
                ("host2".into(), "voter".into(), true),
                ("host3".into(), "voter".into(), true)
            ]
        );
    }
    let hosts: Vec<HostView> = c.cli_json(2, &["host", "list"]);
    assert_eq!(hosts.len(), 3);
    for (h, want) in hosts.iter().zip(["host1", "host2", "host3"]) {
        assert_eq!(h.name, want);
        assert_eq!(h.state, "up");
        assert!(h.id > 0);
        assert!(h.address.starts_with("127.0.0.1:"));
    }
    let kinds: Vec<String> = c.event_log(1).into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "host_joined").count(), 2, "{kinds:?}");
    assert_eq!(kinds[0], "cluster_bootstrapped");
}

#[test]
fn five_nodes_are_three_voters_and_two_learners() {
    let c = Cluster::run(5, &[]);
    let status = c.status(4);
    let r = roles(&status);
    let voters = r.iter().filter(|m| m.1 == "voter").count();
    let learners = r.iter().filter(|m| m.1 == "learner").count();
    assert_eq!((voters, learners), (3, 2), "{r:?}");
    assert!(r.iter().all(|m| m.2), "all reachable: {r:?}");
    // A learner serves writes (forwarded) and linearizable reads too.
    c.cli_json::<VmView>(4, &["vm", "create", "from-learner", "--memory", "256M", "--vcpus", "1"]);
    assert_eq!(c.vm(3, "from-learner").memory_mib, 256);
}

#[test]
fn the_voters_setting_of_the_bootstrap_node_counts() {
    let c = Cluster::run(5, &["--voters", "5"]);
    let r = roles(&c.status(3));
    assert!(r.iter().all(|m| m.1 == "voter" && m.2), "five reachable voters: {r:?}");
}

#[test]
fn refused_membership_changes_change_nothing() {
    let mut c = Cluster::run(2, &[]);
    let before_hosts: Vec<HostView> = c.cli_json(0, &["host", "list"]);
    let before_status = roles(&c.status(0));

    // Bootstrap of an initialized node.
    let out = c.corral(1, &["cluster", "bootstrap", "--name", "again"]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.trim(), "error: this node already belongs to cluster 'lab'");

    // Join of a node that is already a member.
    let token = c.token.clone().unwrap();
    let peer = c.endpoint(0).to_string();
    let out = c.corral(1, &["cluster", "join", "--peer", &peer, "--token", &token]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.trim(), "error: this node already belongs to cluster 'lab'");

    // A fresh node with a wrong token: permission denied, nothing added.
    let fresh = c.add_node(&[]);
    // Well formed, pinning the right CA, with a secret the cluster never made.
    let wrong = format!("{}{}", &token[..token.len() - 64], "0".repeat(64));
    let out = c.corral(fresh, &["cluster", "join", "--peer", &peer, "--token", &wrong]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(out.stderr.contains("join token is not valid or has expired"), "{}", out.stderr);

    // An expired token: also refused.
    let out = c.must_ok(0, &["cluster", "token", "create", "--ttl", "1s"]);
    let short = out.lines().last().unwrap().trim().to_string();
    let expiry_passed = std::time::Instant::now() + Duration::from_millis(1100);
    wait_until(Duration::from_secs(5), "the 1 s token to expire", || {
        if std::time::Instant::now() >= expiry_passed {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let out = c.corral(fresh, &["cluster", "join", "--peer", &peer, "--token", &short]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("join token is not valid or has expired"), "{}", out.stderr);

    assert_eq!(c.cli_json::<Vec<HostView>>(0, &["host", "list"]), before_hosts);
    assert_eq!(roles(&c.status(0)), before_status);

    // A new token works for the same fresh node afterwards.
    let out = c.must_ok(1, &["cluster", "token", "create", "--ttl", "1h"]);
    let good = out.lines().last().unwrap().trim().to_string();
    let joined: JoinView = c.cli_json(fresh, &["cluster", "join", "--peer", &peer, "--token", &good]);
    assert_eq!(joined.role, "voter");
    assert_eq!(c.cli_json::<Vec<HostView>>(0, &["host", "list"]).len(), 3);
    c.stop(fresh);
}

#[test]
fn an_uninitialized_node_says_what_to_do() {
    let c = Cluster::start(1, &[]);
    let out = c.corral(0, &["vm", "list"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not part of a cluster yet"), "{}", out.stderr);
    let out = c.corral(0, &["cluster", "bootstrap", "--name", "Bad_Name"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.starts_with("error: cluster name:"), "{}", out.stderr);
    // The refused bootstrap left the node fresh: a good one works.
    let out = c.corral(0, &["cluster", "bootstrap", "--name", "good"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn removing_a_host_promotes_a_learner_and_refuses_busy_hosts() {
    let mut c = Cluster::run(4, &[]);
    let leader = c.leader();
    // A voter that is not the leader leaves; host4 (the learner) takes its place.
    let leaving = (0..3).find(|i| *i != leader).unwrap();
    let name = c.nodes[leaving].name.clone();
    c.cli_json::<VmView>(0, &["vm", "create", "busy", "--memory", "128M", "--start", "--host", &name]);
    c.wait_status(0, "busy", "up");
    let before: Vec<HostView> = c.cli_json(0, &["host", "list"]);
    let out = c.corral(leader, &["host", "remove", &name]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.trim(), format!("error: host {name} still runs VM(s) busy: stop or migrate them first"));
    assert_eq!(c.cli_json::<Vec<HostView>>(0, &["host", "list"]), before, "a refused removal changes nothing");

    c.cli_json::<VmView>(0, &["vm", "stop", "busy"]);
    c.wait_status(0, "busy", "down");
    // `host remove` has no view type: {"id", "removed", "promoted"}.
    let removed: Value = c.must_json(3, &["host", "remove", &name]);
    assert_eq!(removed["promoted"], "host4");
    c.stop(leaving);

    let r = roles(&c.status(3));
    let names: Vec<&str> = r.iter().map(|m| m.0.as_str()).collect();
    assert!(!names.contains(&name.as_str()), "{r:?}");
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|m| m.1 == "voter" && m.2), "three reachable voters: {r:?}");
    let hosts: Vec<HostView> = c.cli_json(0, &["host", "list"]);
    assert!(hosts.iter().all(|h| h.name != name), "{hosts:?}");
    let events = c.must_ok(3, &["events"]);
    assert!(events.contains(&format!("Host {name} was removed from the cluster by admin.")), "{events}");
    // The cluster goes on with its new voter set.
    c.cli_json::<VmView>(3, &["vm", "create", "after-removal", "--memory", "64M"]);

    // The leader's own host cannot remove itself.
    let leader = c.leader();
    let leader_name = c.nodes[leader].name.clone();
    let out = c.corral(leader, &["host", "remove", &leader_name]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("leads the cluster; stop its corrald first"), "{}", out.stderr);
    let out = c.corral(leader, &["host", "remove", "nope"]);
    assert_eq!(out.stderr.trim(), "error: host 'nope' not found");
}
