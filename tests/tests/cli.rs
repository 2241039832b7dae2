//! The CLI's own promises: endpoint lists that skip a dead node and say so, the
//! CORRAL_ENDPOINT variable, and `events --follow` streaming events as they are committed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use corral_cli::views::{ClusterStatusView, EventView, VmView};
use corral_tests::{bin, corral_at, wait_until, CliOutput, Cluster};

#[test]
fn a_dead_endpoint_is_skipped_and_named() {
    let mut c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "web1", "--memory", "256M", "--vcpus", "1"]);
    let dead = c.endpoint(0).to_string();
    c.kill(0);
    let list = format!("{dead},{},{}", c.endpoint(1), c.endpoint(2));
    let out = corral_at(&list, &["-o", "json", "vm", "show", "web1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.view::<VmView>().name, "web1");
    assert!(out.stderr.contains(&format!("warning: could not reach {dead}")), "{}", out.stderr);

    // Writes go on through the list too (the first write may wait for a new leader).
    let out = corral_at(&list, &["vm", "create", "web2", "--memory", "256M", "--vcpus", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Every endpoint down: one error line naming the last one tried.
    let only_dead = corral_at(&dead, &["vm", "list"]);
    assert_ne!(only_dead.code, 0);
    assert_eq!(only_dead.stderr.trim(), format!("error: could not reach {dead}: connection refused"));
}

#[test]
fn the_endpoint_can_come_from_the_environment() {
    let c = Cluster::run(1, &[]);
    let out = Command::new(bin("corral"))
        .args(["-o", "json", "cluster", "status"])
        .env("CORRAL_ENDPOINT", c.endpoint(0))
        .output()
        .unwrap();
    let out = CliOutput::from(out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.view::<ClusterStatusView>().cluster, "lab");
}

#[test]
fn events_follow_streams_new_events() {
    let c = Cluster::run(3, &[]);
    let mut child = Command::new(bin("corral"))
        .args(["--endpoint", c.endpoint(2), "-o", "json", "events", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The history first, then what happens while following.
    let mut seen = Vec::new();
    let next_line = |what: &str, seen: &mut Vec<String>| {
        wait_until(Duration::from_secs(10), what, || {
            while let Ok(l) = rx.try_recv() {
                seen.push(l);
            }
            if seen.iter().any(|l| l.contains(what)) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
    };
    next_line("cluster_bootstrapped", &mut seen);
    c.cli_json::<VmView>(0, &["vm", "create", "streamed", "--memory", "128M", "--vcpus", "1"]);
    next_line("VM streamed was created", &mut seen);
    let _ = child.kill();
    let _ = child.wait();
    for l in &seen {
        // Each line is one whole event, every field there.
        let parsed: Result<EventView, _> = serde_json::from_str(l);
        assert!(parsed.is_ok(), "not an event: {l}");
    }
}
