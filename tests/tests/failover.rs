//! Losing nodes: the leader killed with SIGKILL, nodes restarted from their data dirs,
//! a node that missed so much that only a snapshot can catch it up, the whole cluster
//! stopped and started, and acknowledged writes surviving a leader kill under load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_cli::views::{ClusterStatusView, VmView};
use corral_tests::client::Writer;
use corral_tests::{wait_until, Cluster};

fn vm_names(c: &Cluster, node: usize, stale: bool) -> Result<BTreeSet<String>, String> {
    let mut args = vec!["-o", "json"];
    if stale {
        args.push("--stale");
    }
    args.extend(["vm", "list"]);
    let out = c.corral(node, &args);
    if out.code != 0 {
        return Err(out.stderr);
    }
    Ok(out.view::<Vec<VmView>>().into_iter().map(|v| v.name).collect())
}

fn create(c: &Cluster, node: usize, name: &str) {
    c.cli_json::<VmView>(node, &["vm", "create", name, "--memory", "128M", "--vcpus", "1"]);
}

#[test]
fn killing_the_leader_elects_another_and_the_node_catches_up_after_restart() {
    let mut c = Cluster::run(3, &[]);
    create(&c, 0, "before");
    let old = c.leader();
    c.kill(old);

    let new = c.leader();
    assert_ne!(new, old);
    let survivor = (0..3).find(|i| *i != old && *i != new).unwrap();
    create(&c, survivor, "after");
    assert_eq!(vm_names(&c, new, false).unwrap(), BTreeSet::from(["before".into(), "after".into()]));
    let status = c.status(survivor);
    let dead = status.members.iter().find(|m| !m.reachable);
    assert!(dead.is_some(), "the killed node shows as unreachable: {status:?}");

    c.restart(old);
    wait_until(Duration::from_secs(15), "the restarted node to catch up", || {
        let names = vm_names(&c, old, true)?;
        if names.contains("after") {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    let events = c.must_ok(old, &["-o", "json", "--stale", "events"]);
    assert!(events.contains("leader_changed"), "{events}");
}

#[test]
fn a_frozen_leader_is_replaced_and_catches_up_when_it_thaws() {
    let mut c = Cluster::run(3, &[]);
    create(&c, 0, "before");
    let old = c.leader();
    c.pause(old);
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    // The frozen leader keeps its sockets open; the others elect a new one and go on.
    let new = wait_until(Duration::from_secs(15), "a new leader among the others", || {
        let s: ClusterStatusView = c.cli_json(others[0], &["--stale", "cluster", "status"]);
        let id = s.leader_id;
        match c.index_of_node_id(id) {
            Some(i) if i != old => Ok(i),
            other => Err(format!("leader {id} -> {other:?}")),
        }
    });
    create(&c, new, "while-frozen");
    c.resume(old);
    assert_eq!(c.leader(), new, "the thawed node follows the new leader");
    wait_until(Duration::from_secs(15), "the thawed node to catch up", || {
        let names = vm_names(&c, old, true)?;
        if names.contains("while-frozen") {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    assert_eq!(vm_names(&c, old, false).unwrap(), BTreeSet::from(["before".into(), "while-frozen".into()]));
}

#[test]
fn a_node_behind_a_purged_log_gets_a_snapshot() {
    let mut c = Cluster::run(3, &["--snapshot-every", "20", "--keep-logs", "5"]);
    let leader = c.leader();
    let lagging = (0..3).find(|i| *i != leader).unwrap();
    c.stop(lagging);
    for i in 0..60 {
        create(&c, leader, &format!("vm{i}"));
    }
    let status = c.status(leader);
    assert!(status.purged_index > 0, "the leader purged its log behind a snapshot: {status:?}");

    c.restart(lagging);
    wait_until(Duration::from_secs(20), "the lagging node to catch up from a snapshot", || {
        let names = vm_names(&c, lagging, true)?;
        if names.len() == 60 {
            Ok(())
        } else {
            Err(format!("{} VMs", names.len()))
        }
    });
    let status: ClusterStatusView = c.cli_json(lagging, &["--stale", "cluster", "status"]);
    assert!(status.snapshot_index > 0, "{status:?}");
}

#[test]
fn the_whole_cluster_stopped_and_started_keeps_its_state() {
    let mut c = Cluster::run(3, &[]);
    for i in 0..5 {
        create(&c, i % 3, &format!("keep{i}"));
    }
    c.cli_json::<VmView>(1, &["vm", "edit", "keep0", "--description", "still here"]);
    let before = vm_names(&c, 0, false).unwrap();
    let events_before = c.event_log(0).len();

    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.leader();
    assert_eq!(vm_names(&c, 2, false).unwrap(), before);
    assert_eq!(c.vm(0, "keep0").description, "still here");
    let events_after = c.event_log(0).len();
    assert!(events_after >= events_before, "{events_after} < {events_before}");

    // SIGKILL of every node at once: everything committed is still there.
    create(&c, 0, "last");
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.leader();
    let after = vm_names(&c, 1, false).unwrap();
    assert!(after.contains("last") && before.is_subset(&after), "{after:?}");
}

#[test]
fn acknowledged_writes_survive_a_leader_kill_under_load_and_apply_once() {
    const CLIENTS: usize = 8;
    const WRITES_PER_CLIENT: usize = 40;
    let mut c = Cluster::run(3, &[]);
    let endpoints: Vec<String> = (0..3).map(|i| c.endpoint(i).to_string()).collect();
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (endpoints, acked, progress) = (endpoints.clone(), acked.clone(), progress.clone());
        tasks.push(rt.spawn(async move {
            let mut w = Writer::new(&endpoints);
            w.prefer(client);
            let mut failed = Vec::new();
            for n in 0..WRITES_PER_CLIENT {
                let name = format!("c{client}-w{n}");
                let rid = uuid::Uuid::new_v4().to_string();
                match w.create(&name, &rid, Duration::from_secs(20)).await {
                    Ok(a) => {
                        acked.lock().unwrap().insert(name, a.vm.id);
                    }
                    Err(s) => failed.push(format!("{name}: {}", s.message())),
                }
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            failed
        }));
    }
    // Kill the leader once the writers are well under way.
    wait_until(Duration::from_secs(60), "a quarter of the writes", || {
        let done = progress.load(std::sync::atomic::Ordering::Relaxed);
        if done >= CLIENTS * WRITES_PER_CLIENT / 4 {
            Ok(())
        } else {
            Err(format!("{done} done"))
        }
    });
    let leader = c.leader();
    c.kill(leader);
    let failures: Vec<String> = rt.block_on(async {
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert!(failures.is_empty(), "writes that gave up: {failures:?}");

    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let list: Vec<VmView> = c.cli_json(survivor, &["vm", "list"]);
    let present: BTreeMap<String, String> = list.into_iter().map(|v| (v.name, v.id)).collect();
    let acked = acked.lock().unwrap();
    assert_eq!(acked.len(), CLIENTS * WRITES_PER_CLIENT);
    for (name, id) in acked.iter() {
        assert_eq!(present.get(name), Some(id), "acknowledged write {name} is missing or changed");
    }
    // Applied once: exactly one creation event per VM.
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for e in c.event_log(survivor) {
        if e.kind == "vm_created" {
            let name = e.message.split_whitespace().nth(1).unwrap().to_string();
            *created.entry(name).or_default() += 1;
        }
    }
    for name in acked.keys() {
        assert_eq!(created.get(name), Some(&1), "{name} created {:?} times", created.get(name));
    }
    assert_eq!(present.len(), acked.len());
}

/// A client that resends a create whose answer it lost (same request id) after the first one
/// was applied gets the first answer back, through any node: not "already exists", and no
/// second VM.
#[test]
fn a_resent_create_is_answered_as_the_first_time() {
    let c = Cluster::run(3, &[]);
    let endpoints: Vec<String> = (0..3).map(|i| c.endpoint(i).to_string()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rid = uuid::Uuid::new_v4().to_string();
    let (first, again) = rt.block_on(async {
        let mut w = Writer::new(&endpoints);
        let first = w.create("once", &rid, Duration::from_secs(10)).await.expect("the first create");
        w.prefer(2);
        let again = w.create("once", &rid, Duration::from_secs(10)).await.expect("the resent create");
        (first.vm, again.vm)
    });
    assert_eq!(first.id, again.id);
    let names = vm_names(&c, 1, false).unwrap();
    assert_eq!(names.iter().filter(|n| *n == "once").count(), 1);
    assert_eq!(c.cli_json::<Vec<VmView>>(0, &["vm", "list"]).len(), 1);
}
