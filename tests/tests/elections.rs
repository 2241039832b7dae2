//! Elections under faults while clients write: a follower frozen and thawed deposes nobody
//! (pre-vote), a frozen leader is replaced and, thawed, follows the new one, and a killed leader
//! is replaced within a bounded wait. Outcomes are asserted; times are printed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{CreateVmRequest, PingRequest};
use corral_tests::client::{channel, Writer};
use corral_tests::{wait_until, Cluster};

/// Writes from a few clients in the background (VM creates through any node, each retried with
/// its request id), each write's start and acknowledgement kept; stops when dropped.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<(Instant, Instant)>>>,
    failed: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// At most this many writes per client, so that the load ends even if nobody stops it.
const MAX_WRITES: usize = 5000;
const CLIENTS: usize = 2;

impl Load {
    fn start(c: &Cluster, tag: &str) -> Load {
        let endpoints: Vec<String> = (0..c.nodes.len()).map(|i| c.endpoint(i).to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let done: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, d, f, tag) = (stop.clone(), done.clone(), failed.clone(), tag.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for client in 0..CLIENTS {
                    let (endpoints, s, d, f, tag) = (endpoints.clone(), s.clone(), d.clone(), f.clone(), tag.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut w = Writer::new(&endpoints);
                        w.prefer(client);
                        for n in 0..MAX_WRITES {
                            if s.load(Ordering::Relaxed) {
                                return;
                            }
                            let name = format!("{tag}-c{client}-{n}");
                            let rid = uuid::Uuid::new_v4().to_string();
                            let start = Instant::now();
                            match w.create(&name, &rid, Duration::from_secs(20)).await {
                                Ok(_) => d.lock().unwrap().push((start, Instant::now())),
                                Err(e) => f.lock().unwrap().push(format!("{name}: {}", e.message())),
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Load { stop, done, failed, thread: Some(thread) }
    }

    fn count(&self) -> usize {
        self.done.lock().unwrap().len()
    }

    /// Waits until `more` writes beyond those done now have succeeded.
    fn wait_for_more(&self, more: usize, what: &str) {
        let from = self.count();
        wait_until(Duration::from_secs(30), what, || {
            let n = self.count();
            if n >= from + more {
                Ok(())
            } else {
                Err(format!("{} of {more} more writes", n - from))
            }
        });
    }

    /// How long after `t` the first write started after `t` was acknowledged.
    fn next_write_after(&self, t: Instant) -> Option<Duration> {
        self.done.lock().unwrap().iter().filter(|(s, _)| *s > t).map(|(_, d)| *d - t).min()
    }

    /// The longest time between two acknowledged writes (or from `from` to the first) in
    /// `from..to`.
    fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> =
            self.done.lock().unwrap().iter().map(|(_, d)| *d).filter(|d| *d > from && *d <= to).collect();
        times.sort();
        let mut last = from;
        let mut gap = Duration::ZERO;
        for t in times {
            gap = gap.max(t - last);
            last = t;
        }
        gap
    }

    fn failures(&self) -> Vec<String> {
        self.failed.lock().unwrap().clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Node `i`'s own view: (its id, the leader it knows, its term), by the gRPC ping (no CLI
/// process, so that it can be polled fast); `None` if it does not answer within 500 ms.
fn ping(c: &Cluster, i: usize) -> Option<(u64, u64, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = c.endpoint(i).to_string();
    rt.block_on(async move {
        let mut client = RaftServiceClient::new(channel(&addr));
        let mut req = tonic::Request::new(PingRequest {});
        req.set_timeout(Duration::from_millis(500));
        let p = tokio::time::timeout(Duration::from_millis(600), client.ping(req)).await.ok()?.ok()?.into_inner();
        Some((p.node_id, p.leader_id, p.term))
    })
}

/// Waits until every node in `nodes` answers and names the same leader in the same term, and
/// returns (leader id, term).
fn agreed(c: &Cluster, nodes: &[usize], what: &str) -> (u64, u64) {
    wait_until(Duration::from_secs(20), what, || {
        let seen: Vec<Option<(u64, u64, u64)>> = nodes.iter().map(|i| ping(c, *i)).collect();
        let views: Vec<(u64, u64)> = seen.iter().flatten().map(|(_, l, t)| (*l, *t)).collect();
        if views.len() == nodes.len() && views[0].0 != 0 && views.iter().all(|v| *v == views[0]) {
            Ok(views[0])
        } else {
            Err(format!("{seen:?}"))
        }
    })
}

fn index_of(c: &Cluster, id: u64) -> usize {
    (0..c.nodes.len()).find(|i| ping(c, *i).is_some_and(|(me, _, _)| me == id)).expect("the leader's node")
}

#[test]
fn a_frozen_follower_that_thaws_deposes_nobody() {
    let mut c = Cluster::run(3, &[]);
    let all = [0, 1, 2];
    let (first_leader, _) = agreed(&c, &all, "one leader");
    let first_leader = index_of(&c, first_leader);
    let follower = (0..3).find(|i| *i != first_leader).unwrap();
    let load = Load::start(&c, "ff");
    load.wait_for_more(20, "writes under way");

    let started = Instant::now();
    load.wait_for_more(100, "writes before the freeze");
    // The leader and term just before the freeze: what the thaw must not change.
    let (leader_id, term) = agreed(&c, &all, "one leader before the freeze");
    assert_ne!(index_of(&c, leader_id), follower, "the node to freeze is a follower");
    c.pause(follower);
    let paused = Instant::now();
    // The fault lasts 5 s (many election timeouts); the writes go on meanwhile.
    std::thread::sleep(Duration::from_secs(5));
    load.wait_for_more(10, "writes while the follower is frozen");
    c.resume(follower);
    let resumed = Instant::now();
    load.wait_for_more(50, "writes after the follower thawed");
    let after = agreed(&c, &all, "the thawed follower to agree on the leader");

    let baseline = load.longest_gap(started, paused);
    let gap = load.longest_gap(resumed - Duration::from_millis(500), Instant::now());
    eprintln!(
        "follower frozen {:?}: term {term} -> {}, leader {leader_id} -> {}; longest write gap from 0.5 s before \
         the thaw on: {gap:?} (before the freeze: {baseline:?}); writes {}",
        resumed - paused,
        after.1,
        after.0,
        load.count()
    );
    assert_eq!(after, (leader_id, term), "the thawed follower forced no election");
    assert!(load.failures().is_empty(), "writes that gave up: {:?}", load.failures());
}

#[test]
fn a_frozen_leader_is_replaced_and_follows_when_it_thaws() {
    let mut c = Cluster::run(3, &[]);
    let all = [0, 1, 2];
    let (old_id, term) = agreed(&c, &all, "one leader");
    let old = index_of(&c, old_id);
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let load = Load::start(&c, "fl");
    load.wait_for_more(20, "writes under way");

    c.pause(old);
    let paused = Instant::now();
    let (new_id, new_term) =
        wait_until(Duration::from_secs(20), "a new leader among the others", || match agreed_now(&c, &others) {
            Some((l, t)) if l != old_id && t > term => Ok((l, t)),
            seen => Err(format!("{seen:?}")),
        });
    let elected = paused.elapsed();
    load.wait_for_more(20, "writes through the new leader");
    let resumed_writes = load.next_write_after(paused);

    c.resume(old);
    let after = agreed(&c, &all, "the thawed leader to follow the new one");
    load.wait_for_more(20, "writes after the old leader thawed");
    let last = agreed(&c, &all, "one leader after the thaw");
    eprintln!(
        "leader frozen: new leader {new_id} (term {term} -> {new_term}) seen after {elected:?}, first write \
         started after the freeze acknowledged after {resumed_writes:?}; after the thaw: leader {} term {}",
        last.0, last.1
    );
    assert_eq!(after, (new_id, new_term), "the thawed leader follows the new leader and forced no election");
    assert_eq!(last, (new_id, new_term), "one leader, the same, while writes go on");
    assert!(load.failures().is_empty(), "writes that gave up: {:?}", load.failures());
}

/// (leader, term) if all of `nodes` answer and agree on a known leader now.
fn agreed_now(c: &Cluster, nodes: &[usize]) -> Option<(u64, u64)> {
    let views: Vec<(u64, u64)> = nodes.iter().filter_map(|i| ping(c, *i)).map(|(_, l, t)| (l, t)).collect();
    (views.len() == nodes.len() && views[0].0 != 0 && views.iter().all(|v| *v == views[0])).then(|| views[0])
}

#[test]
fn a_killed_leader_is_replaced_within_a_bounded_wait() {
    const ROUNDS: usize = 3;
    let mut c = Cluster::run(3, &[]);
    let all = [0, 1, 2];
    let load = Load::start(&c, "kl");
    let mut elections = Vec::new();
    let mut writes = Vec::new();
    for round in 0..ROUNDS {
        let (old_id, term) = agreed(&c, &all, "one leader");
        let old = index_of(&c, old_id);
        let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        load.wait_for_more(20, "writes under way");
        c.kill(old);
        let killed = Instant::now();
        let (new_id, new_term) =
            wait_until(Duration::from_secs(15), "a new leader after the kill", || match agreed_now(&c, &others) {
                Some((l, t)) if l != old_id && t > term => Ok((l, t)),
                seen => Err(format!("{seen:?}")),
            });
        let elected = killed.elapsed();
        load.wait_for_more(5, "writes through the new leader");
        let written = load.next_write_after(killed).unwrap_or_default();
        eprintln!(
            "round {round}: leader {old_id} killed; leader {new_id} (term {term} -> {new_term}) seen after \
             {elected:?}; first write started after the kill acknowledged after {written:?}"
        );
        elections.push(elected);
        writes.push(written);
        c.restart(old);
    }
    elections.sort();
    writes.sort();
    eprintln!(
        "leader kill, {ROUNDS} rounds: new leader seen after {elections:?} (median {:?}); next write after \
         {writes:?} (median {:?})",
        elections[ROUNDS / 2],
        writes[ROUNDS / 2]
    );
    agreed(&c, &all, "one leader at the end");
    assert!(load.failures().is_empty(), "writes that gave up: {:?}", load.failures());
}

/// In a rolling upgrade a voter of the previous release answers no pre-vote (it does not serve
/// member-to-member messages): a voter of this build counts that as granted, as openraft's own
/// election would have, so that it can still be elected with the old voter's vote.
#[test]
fn a_voter_of_the_previous_release_does_not_block_a_pre_vote() {
    let Some(prev) = corral_tests::previous_release() else {
        eprintln!("SKIPPED: CORRAL_PREVIOUS_BIN is not set (make test builds the previous release and sets it)");
        return;
    };
    let old = prev.join("corrald");
    let mut c = Cluster::start(0, &[]);
    c.add_node_running(&old, &[]);
    c.add_node(&[]);
    c.add_node_running(&old, &[]);
    c.bootstrap();
    c.join(1);
    c.join(2);
    let (leader_id, term) = agreed(&c, &[0, 1, 2], "one leader");
    assert_eq!(index_of(&c, leader_id), 0, "the bootstrap node leads");

    c.kill(0);
    let killed = Instant::now();
    let (new_id, new_term) =
        wait_until(Duration::from_secs(20), "a new leader of the other two", || match agreed_now(&c, &[1, 2]) {
            Some((l, t)) if l != leader_id && t > term => Ok((l, t)),
            seen => Err(format!("{seen:?}")),
        });
    eprintln!("mixed versions: leader {new_id} (term {new_term}) after {:?}", killed.elapsed());
    let log = c.nodes[1].log();
    assert!(
        log.contains("a majority granted a pre-vote"),
        "host2 (this build) counted the old voter's answer as a granted pre-vote"
    );
    c.must_ok(1, &["vm", "create", "after", "--memory", "64M"]);
}

/// A create sent straight to node `i`, answered within `within` or given up (`Err` names the
/// status or the timeout).
fn create_at(c: &Cluster, i: usize, name: &str, within: Duration) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = c.endpoint(i).to_string();
    rt.block_on(async move {
        let mut client = VmServiceClient::new(channel(&addr));
        let mut req =
            tonic::Request::new(CreateVmRequest { name: name.into(), memory_mib: 64, vcpus: 1, ..Default::default() });
        req.set_timeout(within);
        match tokio::time::timeout(within + Duration::from_millis(100), client.create(req)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
            Err(_) => Err(format!("no answer within {within:?}")),
        }
    })
}

/// Check-quorum: a leader that hears from no majority (both followers frozen) refuses writes
/// and says why, instead of holding them; once the followers thaw, writes go through again.
#[test]
fn a_leader_cut_off_from_its_majority_refuses_writes() {
    let mut c = Cluster::run(3, &[]);
    let (leader_id, term) = agreed(&c, &[0, 1, 2], "one leader");
    let leader = index_of(&c, leader_id);
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    create_at(&c, leader, "before", Duration::from_secs(5)).expect("a write with a majority");

    for f in &followers {
        c.pause(*f);
    }
    let paused = Instant::now();
    let mut n = 0;
    let refusal = wait_until(Duration::from_secs(15), "the leader to refuse writes", || {
        n += 1;
        match create_at(&c, leader, &format!("cut-off-{n}"), Duration::from_secs(1)) {
            Err(e) if e.contains("has not heard from a majority") => Ok(e),
            other => Err(format!("{other:?}")),
        }
    });
    eprintln!("leader of term {term} cut off: refuses writes {:?} after the freeze: {refusal}", paused.elapsed());
    assert!(refusal.starts_with("Unavailable"), "{refusal}");

    for f in &followers {
        c.resume(*f);
    }
    wait_until(Duration::from_secs(20), "writes to go through again", || {
        n += 1;
        create_at(&c, leader, &format!("after-{n}"), Duration::from_secs(2))
            .or_else(|_| create_at(&c, followers[0], &format!("after-f-{n}"), Duration::from_secs(2)))
    });
    let after = agreed(&c, &[0, 1, 2], "one leader after the thaw");
    eprintln!("after the thaw: leader {} term {} (was {leader_id}, {term})", after.0, after.1);
}
