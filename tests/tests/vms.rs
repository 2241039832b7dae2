//! VM configurations through the CLI against a 3-node cluster: writes on one node, reads on
//! another, and bad input refused with one clear line and no change.

use corral_cli::views::VmView;
use corral_tests::Cluster;

fn event_count(c: &Cluster, node: usize) -> usize {
    c.event_log(node).len()
}

#[test]
fn write_on_one_follower_read_on_the_other() {
    let c = Cluster::run(3, &[]);
    let leader = c.leader();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (a, b) = (followers[0], followers[1]);

    let created: VmView = c.cli_json(
        a,
        &[
            "vm",
            "create",
            "web1",
            "--memory",
            "1G",
            "--vcpus",
            "2",
            "--description",
            "web",
            "--ha",
            "--ha-priority",
            "high",
        ],
    );
    assert_eq!(created.name, "web1");
    let shown = c.vm(b, "web1");
    assert_eq!(shown.id, created.id);
    assert_eq!(shown.memory_mib, 1024);
    assert_eq!(shown.vcpus, 2);
    assert_eq!(shown.description, "web");
    assert_eq!(shown.status, "down");
    assert_eq!(shown.host, None);
    assert!(shown.ha.enabled);
    assert_eq!(shown.ha.priority, "high");
    assert!(uuid::Uuid::parse_str(&shown.id).is_ok());

    c.cli_json::<VmView>(leader, &["vm", "edit", "web1", "--memory", "2G", "--description", "front end"]);
    let shown = c.vm(a, "web1");
    assert_eq!((shown.memory_mib, shown.description.as_str()), (2048, "front end"));

    c.cli_json::<VmView>(b, &["vm", "create", "db1", "--memory", "512M", "--vcpus", "1"]);
    let list: Vec<VmView> = c.cli_json(a, &["vm", "list"]);
    let names: Vec<&str> = list.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["db1", "web1"]);

    c.must_ok(a, &["vm", "delete", "web1"]);
    let out = c.corral(b, &["vm", "show", "web1"]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.trim(), "error: vm 'web1' not found");

    let events = c.event_log(leader);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for k in ["vm_created", "vm_edited", "vm_deleted"] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    let first = &events[0];
    assert!(first.index >= 1);
    assert!(chrono_like(&first.time), "{first:?}");
}

fn chrono_like(t: &str) -> bool {
    // RFC 3339 in UTC as the CLI prints it: 2026-11-22T04:20:34.020Z
    t.len() >= 20 && &t[4..5] == "-" && &t[10..11] == "T" && t.ends_with('Z')
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    let c = Cluster::run(3, &[]);
    c.cli_json::<VmView>(0, &["vm", "create", "web1", "--memory", "1G", "--vcpus", "2"]);
    let before: Vec<VmView> = c.cli_json(1, &["vm", "list"]);
    let events_before = event_count(&c, 1);

    let long = "x".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["vm", "create", "web1", "--memory", "1G", "--vcpus", "1"], "vm 'web1' already exists"),
        (vec!["vm", "create", "web2", "--memory", "abc", "--vcpus", "1"], "--memory"),
        (vec!["vm", "create", "web2", "--memory", "0", "--vcpus", "1"], "--memory"),
        (vec!["vm", "create", "web2", "--memory", "-1G", "--vcpus", "1"], "--memory"),
        (vec!["vm", "create", "web2", "--memory", "1G", "--vcpus", "0"], "--vcpus"),
        (vec!["vm", "create", "", "--memory", "1G", "--vcpus", "1"], "name: must not be empty"),
        (vec!["vm", "create", &long, "--memory", "1G", "--vcpus", "1"], "name: must be at most 63 characters"),
        (vec!["vm", "create", "Web_2", "--memory", "1G", "--vcpus", "1"], "name: may only contain a-z, 0-9 and '-'"),
        (vec!["vm", "edit", "nope", "--memory", "2G"], "vm 'nope' not found"),
        (vec!["vm", "edit", "web1", "--memory", "0"], "--memory"),
        (vec!["vm", "delete", "nope"], "vm 'nope' not found"),
        (vec!["vm", "show", "nope"], "vm 'nope' not found"),
    ];
    for (args, want) in cases {
        for node in 0..3 {
            let out = c.corral(node, &args);
            assert_ne!(out.code, 0, "{args:?} succeeded");
            let line = out.stderr.trim();
            assert_eq!(line.lines().count(), 1, "{args:?}: not one line: {line}");
            assert!(line.starts_with("error: ") && line.contains(want), "{args:?}: {line}");
            assert!(!line.contains("Status {") && !line.contains("code:"), "debug dump: {line}");
        }
    }
    assert_eq!(c.cli_json::<Vec<VmView>>(2, &["vm", "list"]), before);
    assert_eq!(event_count(&c, 2), events_before);
}
