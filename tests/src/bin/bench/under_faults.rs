//! Write availability of a loopback cluster under node faults (issue 12): many gRPC clients edit
//! VMs while the leader is killed or a follower is frozen and thawed, and every acknowledgement
//! is timed. It prints what it measured and asserts nothing; every loop is bounded in count and time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::vm_service_client::VmServiceClient;
use corral_proto::{CreateVmRequest, EditVmRequest, PingRequest, PingResponse};
use corral_tests::client::channel;
use corral_tests::{wait_until, Cluster};

/// How long one edit may take before its client gives up on it and tries the next node.
const CALL_DEADLINE: Duration = Duration::from_secs(2);
/// After a failed call the next node is tried at once, but a refused connection must not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// A bound on every wait for the cluster to recover, and on how long a client runs at all.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
const MAX_CALLS_PER_CLIENT: u64 = 10_000_000;

/// One acknowledged edit: when it was sent and when its reply came.
#[derive(Clone, Copy)]
struct Ack {
    sent: Instant,
    acked: Instant,
}

/// Clients editing one VM each in a loop, each call bounded by `CALL_DEADLINE`; a client moves
/// to the next node after a failed call and stays on a node while it answers.
struct Load {
    acks: Arc<Vec<Mutex<Vec<Ack>>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Load {
    /// Starts one client per VM; client `i` first talks to `endpoints[first(i)]`. Clients stop by
    /// themselves after `run_for` even if nobody stops them.
    fn start(
        rt: &tokio::runtime::Runtime,
        endpoints: &[String],
        vms: &[String],
        first: impl Fn(usize) -> usize,
        run_for: Duration,
    ) -> Load {
        let acks: Arc<Vec<Mutex<Vec<Ack>>>> = Arc::new(vms.iter().map(|_| Mutex::new(Vec::new())).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let until = Instant::now() + run_for;
        let tasks = vms
            .iter()
            .enumerate()
            .map(|(i, vm)| {
                let _guard = rt.enter();
                let clients: Vec<_> = endpoints.iter().map(|e| VmServiceClient::new(channel(e))).collect();
                let (acks, stop, vm) = (acks.clone(), stop.clone(), vm.clone());
                let mut at = first(i) % clients.len();
                rt.spawn(async move {
                    let mut failed = 0u64;
                    for n in 0..MAX_CALLS_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) || Instant::now() >= until {
                            break;
                        }
                        let req = EditVmRequest {
                            vm: vm.clone(),
                            description: Some(format!("edit {n}")),
                            ..Default::default()
                        };
                        let mut client = clients[at].clone();
                        let sent = Instant::now();
                        match tokio::time::timeout(CALL_DEADLINE, client.edit(req)).await {
                            Ok(Ok(_)) => acks[i].lock().unwrap().push(Ack { sent, acked: Instant::now() }),
                            _ => {
                                failed += 1;
                                at = (at + 1) % clients.len();
                                tokio::time::sleep(RETRY_PAUSE).await;
                            }
                        }
                    }
                    failed
                })
            })
            .collect();
        Load { acks, stop, tasks }
    }

    /// For each client, when its first edit sent at or after `since` was acknowledged.
    fn first_acks_since(&self, since: Instant) -> Vec<Option<Instant>> {
        self.acks.iter().map(|a| a.lock().unwrap().iter().find(|a| a.sent >= since).map(|a| a.acked)).collect()
    }

    /// Every acknowledgement time so far, of all clients, in order.
    fn all_acked(&self) -> Vec<Instant> {
        let mut all: Vec<Instant> =
            self.acks.iter().flat_map(|a| a.lock().unwrap().iter().map(|a| a.acked).collect::<Vec<_>>()).collect();
        all.sort();
        all
    }

    fn count(&self) -> usize {
        self.acks.iter().map(|a| a.lock().unwrap().len()).sum()
    }

    /// Forgets what was recorded so far (a round's figures are taken), keeping memory bounded.
    fn clear(&self) {
        for a in self.acks.iter() {
            a.lock().unwrap().clear();
        }
    }

    /// Waits until every client has had an edit acknowledged (the load runs everywhere).
    fn wait_all_writing(&self) {
        let since = Instant::now();
        wait_until(RECOVERY_BOUND, "every client to have an edit acknowledged", || {
            let firsts = self.first_acks_since(since);
            let waiting = firsts.iter().filter(|f| f.is_none()).count();
            if waiting == 0 {
                Ok(())
            } else {
                Err(format!("{waiting} of {} clients without an acknowledged edit", firsts.len()))
            }
        });
    }

    /// Stops the clients; returns how many calls failed or timed out in all.
    fn stop(self, rt: &tokio::runtime::Runtime) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            let mut failed = 0;
            for t in self.tasks {
                // A client finishes its current call within the call deadline.
                if let Ok(Ok(n)) = tokio::time::timeout(CALL_DEADLINE * 2, t).await {
                    failed += n;
                }
            }
            failed
        })
    }
}

/// Set by SIGINT or SIGTERM: the rounds end at the next step, and the cluster's drop kills its
/// nodes (a paused one too) instead of leaving them behind. Once set, no later benchmark of this
/// process starts a cluster.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Catches SIGINT and SIGTERM into `INTERRUPTED` (once per process); returns whether the run was
/// already interrupted.
fn catch_interrupts(rt: &tokio::runtime::Runtime) -> bool {
    static CAUGHT: std::sync::Once = std::sync::Once::new();
    CAUGHT.call_once(|| {
        corral_tests::flag_on_signals(rt, &INTERRUPTED, "corral-bench: interrupted; ending after this step")
    });
    interrupted()
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// The node's own view (id, leader, term, applied index), or `None` if it does not answer within 500 ms.
fn ping(rt: &tokio::runtime::Runtime, addr: &str) -> Option<PingResponse> {
    rt.block_on(async {
        let mut client = RaftServiceClient::new(channel(addr));
        let reply = tokio::time::timeout(Duration::from_millis(500), client.ping(PingRequest {})).await;
        reply.ok()?.ok().map(|r| r.into_inner())
    })
}

/// The highest term any of `nodes` reports.
fn max_term(rt: &tokio::runtime::Runtime, c: &Cluster, nodes: &[usize]) -> u64 {
    nodes.iter().filter_map(|i| ping(rt, c.endpoint(*i))).map(|p| p.term).max().unwrap_or(0)
}

/// Waits until node `i` has a leader and has applied everything the other running nodes had
/// applied when it was called (it caught up after a restart or a pause).
fn wait_caught_up(rt: &tokio::runtime::Runtime, c: &Cluster, i: usize) {
    let others: Vec<usize> = c.running().into_iter().filter(|n| *n != i).collect();
    let target = others.iter().filter_map(|n| ping(rt, c.endpoint(*n))).map(|p| p.applied).max().unwrap_or(0);
    let name = c.nodes[i].name.clone();
    wait_until(RECOVERY_BOUND, &format!("{name} to catch up to index {target}"), || match ping(rt, c.endpoint(i)) {
        Some(p) if p.leader_id != 0 && p.applied >= target => Ok(()),
        Some(p) => Err(format!("leader {}, applied {}", p.leader_id, p.applied)),
        None => Err("no answer to a ping".into()),
    });
}

/// Creates `count` VMs named `{prefix}-{i}` through node `at`; returns their names.
fn create_vms(rt: &tokio::runtime::Runtime, c: &Cluster, at: usize, prefix: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    rt.block_on(async {
        let mut client = VmServiceClient::new(channel(c.endpoint(at)));
        for name in &names {
            let req = CreateVmRequest { name: name.clone(), memory_mib: 64, vcpus: 1, ..Default::default() };
            client.create(req).await.unwrap_or_else(|e| panic!("create {name}: {}", e.message()));
        }
    });
    names
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// "median X, worst Y" of what was measured (`None`: nothing came within the bound).
fn summary(values: &[Option<Duration>]) -> String {
    let mut v: Vec<Duration> = values.iter().map(|d| d.unwrap_or(RECOVERY_BOUND)).collect();
    v.sort();
    let missing = values.iter().filter(|d| d.is_none()).count();
    let more =
        if missing > 0 { format!(" ({missing} rounds without one within {RECOVERY_BOUND:?})") } else { String::new() };
    match (v.get(v.len().saturating_sub(1) / 2), v.last()) {
        (Some(median), Some(worst)) => format!("median {}, worst {}{more}", ms(*median), ms(*worst)),
        _ => "no rounds".into(),
    }
}

/// SIGKILL of the leader while 64 clients edit, `rounds` times: from the kill to the first
/// acknowledged edit sent after it (any client), and to the moment every client has had one.
pub fn leader_failover_load(rt: &tokio::runtime::Runtime, rounds: usize) {
    const CLIENTS: usize = 64;
    if catch_interrupts(rt) {
        return;
    }
    let mut c = Cluster::run(3, &[]);
    let endpoints: Vec<String> = (0..3).map(|i| c.endpoint(i).to_string()).collect();
    let vms = create_vms(rt, &c, c.leader(), "load", CLIENTS);
    // Clients spread over the three nodes, as clients given every endpoint would be.
    let load = Load::start(rt, &endpoints, &vms, |i| i % 3, RECOVERY_BOUND * (2 * rounds as u32 + 2));
    load.wait_all_writing();
    println!(
        "\n## leader failover under load: SIGKILL of the leader while {CLIENTS} clients edit \
         (call deadline {CALL_DEADLINE:?}), {rounds} rounds"
    );
    let (mut first, mut all, mut writes) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        if interrupted() {
            break;
        }
        let leader = c.leader();
        let term_before = max_term(rt, &c, &[0, 1, 2]);
        writes += load.count();
        load.clear();
        let signalled = Instant::now();
        c.kill(leader);
        // Only an edit sent once the process is gone proves a new leader: an earlier one may
        // have been committed by the old leader, its reply still on its way.
        let dead = Instant::now();
        let deadline = dead + RECOVERY_BOUND;
        let (mut any, mut every) = (None, None);
        // Bounded by the deadline; each pass only reads what the clients recorded.
        while Instant::now() < deadline && every.is_none() {
            let firsts = load.first_acks_since(dead);
            any = any.or_else(|| firsts.iter().flatten().min().map(|t| *t - signalled));
            if firsts.iter().all(Option::is_some) {
                every = firsts.iter().flatten().max().map(|t| *t - signalled);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let term_after = max_term(rt, &c, &survivors);
        let show = |d: Option<Duration>| d.map_or(format!("none within {RECOVERY_BOUND:?}"), ms);
        println!(
            "round {round:>2}: killed {} (term {term_before} -> {term_after}): first edit acknowledged {}, \
             every client {}",
            c.nodes[leader].name,
            show(any),
            show(every)
        );
        first.push(any);
        all.push(every);
        c.restart(leader);
        wait_caught_up(rt, &c, leader);
    }
    writes += load.count();
    let failed = load.stop(rt);
    println!("first acknowledged edit after the kill: {}", summary(&first));
    println!("every client acknowledged again: {}", summary(&all));
    println!("(edits acknowledged over the run: {writes}; calls that failed or timed out: {failed})");
}

/// The longest time without an acknowledged edit around `[from, to]`: from the last one at or
/// before `from` to the first one after `to` (the window's edges where there is none), so that a
/// gap across an edge counts whole. `acked` is in order.
fn longest_gap(acked: &[Instant], from: Instant, to: Instant) -> Duration {
    let inside_from = acked.partition_point(|t| *t <= from);
    let inside_to = acked.partition_point(|t| *t <= to);
    let before = inside_from.checked_sub(1).map_or(from, |i| acked[i]);
    let after = acked.get(inside_to).copied().unwrap_or(to);
    let points: Vec<Instant> =
        std::iter::once(before).chain(acked[inside_from..inside_to].iter().copied()).chain([after]).collect();
    points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// A follower frozen (SIGSTOP) for 5 s and thawed, `rounds` times, while 8 clients edit through
/// the leader: whether the term changed, and the longest gap between acknowledged edits from the
/// SIGSTOP and from the SIGCONT to 3 s after each (and in the 2 s before, for the noise floor).
pub fn follower_resume(rt: &tokio::runtime::Runtime, rounds: usize) {
    const CLIENTS: usize = 8;
    const QUIET: Duration = Duration::from_secs(2);
    const FROZEN: Duration = Duration::from_secs(5);
    const WATCH: Duration = Duration::from_secs(3);
    if catch_interrupts(rt) {
        return;
    }
    let mut c = Cluster::run(3, &[]);
    let leader = c.leader();
    let endpoints: Vec<String> = (0..3).map(|i| c.endpoint(i).to_string()).collect();
    let vms = create_vms(rt, &c, leader, "resume", CLIENTS);
    let per_round = QUIET + FROZEN + WATCH + RECOVERY_BOUND * 2;
    let load = Load::start(rt, &endpoints, &vms, |_| leader, per_round * (rounds as u32 + 1));
    load.wait_all_writing();
    println!(
        "\n## a paused follower's return: SIGSTOP of a follower for {FROZEN:?}, SIGCONT, while {CLIENTS} clients \
         edit through the leader, {rounds} rounds"
    );
    println!("longest gap between acknowledged edits (any client), from the fault to {WATCH:?} after it");
    let (mut before, mut at_stop, mut at_cont) = (Vec::new(), Vec::new(), Vec::new());
    let (mut elections, mut writes) = (0, 0);
    for round in 0..rounds {
        if interrupted() {
            break;
        }
        let leader = c.leader();
        let follower = (0..3).filter(|i| *i != leader).nth(round % 2).expect("a 3-node cluster has two followers");
        let term_before = max_term(rt, &c, &[0, 1, 2]);
        writes += load.count();
        load.clear();
        // The sleeps below are the fault's length and the measuring windows, not waits for a state.
        let quiet_from = Instant::now();
        std::thread::sleep(QUIET);
        let stopped = Instant::now();
        c.pause(follower);
        std::thread::sleep(FROZEN);
        let continued = Instant::now();
        c.resume(follower);
        std::thread::sleep(WATCH);
        wait_caught_up(rt, &c, follower);
        let term_after = max_term(rt, &c, &[0, 1, 2]);
        let new_leader = c.leader();
        let acked = load.all_acked();
        let quiet = longest_gap(&acked, quiet_from, stopped);
        let stop_gap = longest_gap(&acked, stopped, stopped + WATCH);
        let cont_gap = longest_gap(&acked, continued, continued + WATCH);
        if term_after != term_before {
            elections += 1;
        }
        println!(
            "round {round:>2}: froze {} (leader {} -> {}), term {term_before} -> {term_after}; gap before {}, \
             at SIGSTOP {}, at SIGCONT {}",
            c.nodes[follower].name,
            c.nodes[leader].name,
            c.nodes[new_leader].name,
            ms(quiet),
            ms(stop_gap),
            ms(cont_gap)
        );
        before.push(Some(quiet));
        at_stop.push(Some(stop_gap));
        at_cont.push(Some(cont_gap));
    }
    writes += load.count();
    let failed = load.stop(rt);
    println!("term changed in {elections} of {} rounds", at_cont.len());
    println!("longest gap in the {QUIET:?} before the SIGSTOP (the noise floor): {}", summary(&before));
    println!("longest gap at SIGSTOP: {}", summary(&at_stop));
    println!("longest gap at SIGCONT: {}", summary(&at_cont));
    println!("(edits acknowledged over the run: {writes}; calls that failed or timed out: {failed})");
}
