//! Host liveness on the leader: heartbeat times (the one thing a leader keeps only in memory),
//! the decisions `non_responsive` and `down`, HA restart passes, and the replacement of a
//! voter that stays down.
//!
//! The safety rule (DESIGN.md): a host is declared down only when its lease has certainly
//! ended, that is `lease + margin` after the last heartbeat this leader received from it (the
//! host counts its lease from the moment it *sent* that heartbeat, so its lease ends first). A
//! new leader knows no heartbeat times and counts from the moment it took office, so it waits a
//! full lease before declaring anyone down. While a host is being declared down, its heartbeats
//! are refused, so no lease is granted between the decision and the committed entry; every
//! later acknowledgement carries an index past that entry.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_raft::command::Op;
use corral_raft::model::HostState;
use corral_raft::peer::{PeerBody, PeerRequest};
use corral_raft::typ::StateHandle;
use corral_raft::{ClusterError, HostDownCause, NodeId};
use openraft::ServerState;

use super::Leader;
use crate::cluster::RaftParts;
use crate::metrics::meters::Meters;
use crate::now_ms;

/// How often the leader looks at heartbeat times and pending HA restarts.
const TICK: Duration = Duration::from_millis(100);
/// Every this many ticks, maintenance evacuations that are stuck are tried again.
const EVACUATE_EVERY: u64 = 20;
/// The longest a voter replacement may take before this tick gives up on it (tried again later).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a fence agent command may run.
const FENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// The leader's heartbeat book, reset whenever its term changes, and its silence counts
/// started again whenever this process stood still (SIGSTOP, a stalled machine): a leader
/// that was frozen must not take its own freeze for every host's silence.
#[derive(Clone)]
pub struct Liveness {
    inner: Arc<Mutex<Book>>,
}

#[derive(Default)]
struct Book {
    term: u64,
    /// When this node took office in `term`, or when its counts last started again.
    since: Option<Instant>,
    /// When this process was last seen running (a beat every tick, and every use of the book).
    awake: Option<Instant>,
    /// A gap between two beats longer than this means the process stood still.
    stall_after: Duration,
    last_seen: HashMap<NodeId, Instant>,
    /// Hosts whose `down` is being committed: their heartbeats are refused meanwhile.
    declaring: HashSet<NodeId>,
    /// Hosts whose "alive again" entry is being proposed.
    reviving: HashSet<NodeId>,
    /// Hosts the fence agent was run for in this term, and whether it succeeded.
    fenced_by_agent: HashMap<NodeId, bool>,
}

impl Book {
    fn for_term(&mut self, term: u64) -> &mut Book {
        self.wake(Instant::now());
        if self.term != term || self.since.is_none() {
            let (awake, stall_after) = (self.awake, self.stall_after);
            *self = Book { term, since: Some(Instant::now()), awake, stall_after, ..Book::default() };
        }
        self
    }

    /// Notes that the process runs at `now`; after a stand-still, every host's silence is
    /// counted again from now (as a new leader counts from taking office).
    fn wake(&mut self, now: Instant) {
        let stood_still = self.awake.map(|a| now.saturating_duration_since(a)).filter(|gap| *gap > self.stall_after);
        if let (Some(gap), Some(_)) = (stood_still, self.since) {
            tracing::warn!(
                "this process stood still for {:.1} s (paused or starved): every host's silence is counted again from now",
                gap.as_secs_f64()
            );
            self.since = Some(now);
            self.last_seen.clear();
        }
        self.awake = Some(now);
    }

    fn silence(&self, host: NodeId, now: Instant) -> Duration {
        let since = self.since.unwrap_or(now);
        let last = self.last_seen.get(&host).map_or(since, |t| (*t).max(since));
        now.saturating_duration_since(last)
    }
}

impl Liveness {
    /// A book that takes a gap of more than `stall_after` between two beats for a stand-still.
    pub fn new(stall_after: Duration) -> Liveness {
        Liveness { inner: Arc::new(Mutex::new(Book { stall_after, ..Book::default() })) }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.lock().expect("liveness book")
    }

    /// Beats every `TICK` for as long as the process runs, so that a stand-still shows as a gap.
    pub async fn beat(self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.book().wake(Instant::now());
        }
    }

    /// Records a heartbeat from `host` to the leader of `term`; refused while the host is
    /// being declared down. Returns whether an "alive again" entry should be proposed by the
    /// caller (it is then marked as being proposed).
    pub fn heartbeat(&self, term: u64, host: NodeId, needs_revival: bool) -> Result<bool, ClusterError> {
        let mut book = self.book();
        let book = book.for_term(term);
        if book.declaring.contains(&host) {
            return Err(ClusterError::Unavailable(format!(
                "host {host} is being declared down; it renews no lease until that is committed"
            )));
        }
        book.last_seen.insert(host, Instant::now());
        Ok(needs_revival && book.reviving.insert(host))
    }

    /// Marks an "alive again" entry for `host` as being proposed; false if one already is.
    pub fn start_reviving(&self, term: u64, host: NodeId) -> bool {
        let mut book = self.book();
        book.for_term(term).reviving.insert(host)
    }

    pub fn revived(&self, host: NodeId) {
        self.book().reviving.remove(&host);
    }

    /// Time since `host` was last heard from by this leader (or since it took office).
    fn silence(&self, term: u64, host: NodeId) -> Duration {
        let mut book = self.book();
        book.for_term(term).silence(host, Instant::now())
    }

    /// Starts declaring `host` down if it has still been silent for `at_least`; from now until
    /// [`Liveness::declared`], its heartbeats are refused.
    fn begin_declaring(&self, term: u64, host: NodeId, at_least: Duration) -> bool {
        let mut book = self.book();
        let book = book.for_term(term);
        let fenced = book.fenced_by_agent.get(&host) == Some(&true);
        if book.silence(host, Instant::now()) < at_least && !fenced {
            return false;
        }
        book.declaring.insert(host)
    }

    fn declared(&self, host: NodeId) {
        let mut book = self.book();
        book.declaring.remove(&host);
        book.fenced_by_agent.remove(&host);
    }

    fn fence_result(&self, term: u64, host: NodeId) -> Option<bool> {
        let mut book = self.book();
        book.for_term(term).fenced_by_agent.get(&host).copied()
    }

    /// Marks the fence agent as started for `host`; false if it ran already in this term.
    fn start_fencing(&self, term: u64, host: NodeId) -> bool {
        let mut book = self.book();
        let book = book.for_term(term);
        if book.fenced_by_agent.contains_key(&host) {
            return false;
        }
        book.fenced_by_agent.insert(host, false);
        true
    }

    fn fenced(&self, term: u64, host: NodeId, ok: bool) {
        let mut book = self.book();
        if book.term == term {
            book.fenced_by_agent.insert(host, ok);
        }
    }
}

/// Whether this node leads in `term`, took office (its election is applied) and heard from a
/// quorum within `fresh`: only then may it grant leases or declare hosts down.
pub fn in_office(parts: &RaftParts, fresh: Duration) -> Option<u64> {
    parts.leads_with_quorum(fresh)
}

/// Runs the leader's liveness loop once per term this node leads: started when it takes office,
/// stopped (aborted) as soon as leadership or the term changes, so no decision of an old term
/// is ever acted on and a hang in one term cannot outlive it.
pub async fn run(leader: Arc<Leader>, parts: RaftParts) {
    let mut server = parts.server_metrics();
    let mut running: Option<(u64, tokio::task::JoinHandle<()>)> = None;
    loop {
        let leads_in = {
            let m = server.borrow_and_update();
            (m.state == ServerState::Leader).then(|| m.vote.leader_id().get_term())
        };
        if running.as_ref().map(|(t, _)| *t) != leads_in {
            if let Some((_, task)) = running.take() {
                task.abort();
            }
            if let Some(term) = leads_in {
                running = Some((term, tokio::spawn(term_loop(leader.clone(), parts.clone(), term))));
            }
        }
        if server.changed().await.is_err() {
            if let Some((_, task)) = running {
                task.abort();
            }
            return;
        }
    }
}

/// What a term's loop remembers between ticks.
#[derive(Default)]
struct TermLoop {
    /// Fencing is being skipped because too many hosts are silent (said once per episode).
    skipping: bool,
}

async fn term_loop(leader: Arc<Leader>, parts: RaftParts, term: u64) {
    let c = &leader.config;
    let heartbeat = Duration::from_millis(c.host_heartbeat_ms);
    // A tick this much later than its period means the process stood still: this tick only
    // looks again (the silence counts restart, in the book and in every voter's witness).
    let stall_after = heartbeat * 2;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    let mut last = Instant::now();
    let mut memory = TermLoop::default();
    loop {
        tick.tick().await;
        ticks += 1;
        // The gap since the end of the last tick's work: its own waits (a fence vote, a
        // write) are not a stand-still of the process.
        let gap = Instant::now().saturating_duration_since(last);
        if gap > stall_after {
            last = Instant::now();
            tracing::warn!(
                "the liveness loop stood still for {:.1} s: it looks again before it acts",
                gap.as_secs_f64()
            );
            continue;
        }
        last = Instant::now();
        let Some(in_term) = in_office(&parts, heartbeat) else { continue };
        if in_term != term {
            return;
        }
        let majority = parts.state.read(|s| s.cluster.as_ref().is_some_and(|c| c.level >= 1));
        if majority {
            majority_tick(&leader, &parts, term, &mut memory).await;
        } else {
            leader_book_tick(&leader, &parts, term).await;
        }
        if parts.state.read(|s| s.next_ha_restart_ms()).is_some_and(|due| due <= now_ms()) {
            restart_ha_vms(&leader, &parts.state).await;
        }
        if ticks.is_multiple_of(EVACUATE_EVERY) {
            retry_evacuations(&leader, &parts.state).await;
            expire_snapshot_jobs(&leader, &parts.state).await;
        }
        replace_dead_voter(&leader, &parts).await;
        last = Instant::now();
    }
}

/// Proposes an HA restart pass, and counts the VMs it ordered restarted with how long after
/// their failure (from the state before and after: apply decides which it places).
async fn restart_ha_vms(leader: &Leader, state: &StateHandle) {
    let pending: HashMap<uuid::Uuid, i64> = state.read(|s| {
        let pending = s.vms.ha_pending();
        pending
            .iter()
            .filter_map(|id| s.vms.get(id)?.ha_state.ha_restart.as_ref().map(|r| (*id, r.failed_ms)))
            .collect()
    });
    if let Err(e) = leader.cluster.propose_as_leader(Op::RestartHaVms).await {
        return tracing::debug!("HA restart pass not proposed: {e}");
    }
    let restarted: Vec<(i64, i64)> = state.read(|s| {
        pending
            .iter()
            .filter_map(|(id, failed)| s.vms.get(id).map(|v| (v, *failed)))
            .filter(|(v, _)| v.ha_state.ha_restart.is_none() && v.ha_state.ha_restarting)
            .map(|(v, failed)| (failed, v.ha_state.ha_restarted_ms.unwrap_or(failed)))
            .collect()
    });
    let meters = leader.cluster.meters();
    for (failed, ordered) in restarted {
        meters.ha_restarts.inc();
        meters.ha_restart_delay_seconds.observe((ordered - failed).max(0) as f64 / 1000.0);
    }
}

/// The hosts the liveness loop judges: members that have joined and are not down yet, with
/// their state, name and address.
fn judged_hosts(state: &StateHandle) -> Vec<(NodeId, HostState, String, String)> {
    state.read(|s| {
        s.hosts
            .values()
            .filter(|h| !matches!(h.state, HostState::Joining | HostState::Down))
            .map(|h| (h.id, h.state, h.name.clone(), h.address.clone()))
            .collect()
    })
}

/// Cluster level 1 and up: a host's silence is what a majority of the voters say (each counts
/// from its own last acknowledgement), and a host is declared down only after a majority of
/// them agreed in a fence vote, which also stops them renewing its lease until the decision is
/// applied. Too many silent hosts at once: nobody is declared down or fenced.
async fn majority_tick(leader: &Arc<Leader>, parts: &RaftParts, term: u64, memory: &mut TermLoop) {
    let c = &leader.config;
    let lease = Duration::from_millis(c.lease_ms);
    let down_after = lease + Duration::from_millis(c.lease_margin_ms);
    let non_responsive_after = lease / 2;
    let hosts = judged_hosts(&parts.state);
    if hosts.is_empty() {
        return;
    }
    let silences = majority_silence(leader, parts).await;
    let silence = |h: NodeId| silences.get(&h).copied().unwrap_or_default();
    let silent: Vec<&str> =
        hosts.iter().filter(|(h, ..)| silence(*h) >= non_responsive_after).map(|(_, _, n, _)| n.as_str()).collect();
    let skip = !silent.is_empty() && silent.len() as u64 * 100 > c.skip_fencing_percent * hosts.len() as u64;
    if skip && !memory.skipping {
        let message = format!(
            "{} of {} hosts are not responding ({}): none of them is declared down or fenced, since more than {}%              of the hosts silent at once points to a network failure rather than to failed hosts. Hosts that              cannot reach a majority of the voters stop their VMs themselves.",
            silent.len(),
            hosts.len(),
            silent.join(", "),
            c.skip_fencing_percent
        );
        tracing::warn!("{message}");
        let op = Op::RecordEvent { kind: corral_raft::model::EventKind::HostStateChanged, message };
        let _ = leader.cluster.propose_as_leader(op).await;
    }
    memory.skipping = skip;
    // Hosts found down this tick are voted on side by side, so that ten lost at once are
    // declared down together (their HostDown proposals share a batch, and one restart pass
    // orders all their HA VMs by priority) rather than one vote round after another.
    let mut down = Vec::new();
    for (host, host_state, name, address) in hosts {
        let silent = silence(host);
        if !skip && silent >= non_responsive_after {
            if let Some(cmd) = c.fence_command.clone() {
                if leader.book.start_fencing(term, host) {
                    tokio::spawn(fence(leader.clone(), term, host, name.clone(), address, cmd));
                }
            }
        }
        let by_agent = leader.book.fence_result(term, host) == Some(true);
        // Leases granted by a leader alone (level 0) may still run for a lease after the level
        // was raised: the majority rule decides nothing before they have ended.
        let settled = parts.state.read(|s| s.cluster.as_ref().map_or(0, |c| c.level_raised_ms))
            + down_after.as_millis() as i64
            <= now_ms();
        if !skip && settled && (silent >= down_after || by_agent) {
            let how = if by_agent && silent < down_after {
                HostDownCause::fence_agent(silent.as_millis() as u64)
            } else {
                HostDownCause::lease_ended(silent.as_millis() as u64, lease.as_millis() as u64)
            };
            // Powered off by the fence agent: no lease to wait out, only the vote's ordering.
            let at_least = if by_agent { Duration::ZERO } else { down_after };
            down.push((host, name, at_least, how));
        } else if silent >= non_responsive_after && host_state.is_alive() {
            let op = Op::HostNonResponsive { id: host, silent_ms: silent.as_millis() as u64 };
            if let Err(e) = leader.cluster.propose_as_leader(op).await {
                tracing::debug!(host = %name, "could not mark the host non responsive: {e}");
            }
        }
    }
    let votes = down.into_iter().map(|(host, name, at_least, how)| async move {
        declare_down(leader, parts, term, host, &name, at_least, how).await
    });
    futures::future::join_all(votes).await;
}

/// The voters now, as the configurations of a (possibly joint) membership, with their addresses.
fn voters(parts: &RaftParts) -> (Vec<BTreeSet<NodeId>>, BTreeMap<NodeId, String>) {
    let m = parts.metrics();
    let membership = m.membership_config.membership();
    let configs = membership.get_joint_config().clone();
    let addresses =
        configs.iter().flatten().filter_map(|v| membership.get_node(v).map(|n| (*v, n.address.clone()))).collect();
    (configs, addresses)
}

/// Asks every voter (this node too) the same question side by side, each within `within`;
/// voters that do not answer in time are left out.
async fn ask_voters(
    leader: &Leader,
    parts: &RaftParts,
    body: PeerBody,
    within: Duration,
) -> BTreeMap<NodeId, corral_raft::peer::PeerResponse> {
    let (configs, addresses) = voters(parts);
    let all: BTreeSet<NodeId> = configs.into_iter().flatten().collect();
    let asks = all.into_iter().map(|v| {
        let req = PeerRequest { from: parts.id, body: body.clone() };
        let address = addresses.get(&v).cloned();
        async move {
            let ask = async {
                match address {
                    _ if v == parts.id => leader.cluster.peer(req).await,
                    Some(a) => leader.cluster.network().peer(&a, &req, within).await,
                    None => Err(ClusterError::Unavailable(format!("voter {v} has no address"))),
                }
            };
            // Each voter on its own deadline: one that is cut off must not cost the answers
            // of the others.
            let answer = tokio::time::timeout(within, ask).await.unwrap_or_else(|_| {
                Err(ClusterError::Unavailable(format!("voter {v} did not answer within {} ms", within.as_millis())))
            });
            (v, answer)
        }
    });
    let answers = futures::future::join_all(asks).await;
    answers.into_iter().filter_map(|(v, a)| a.ok().map(|a| (v, a))).collect()
}

/// Per host, the longest silence that a majority of the voters (in every configuration) report:
/// a voter that does not answer counts as having just heard every host.
async fn majority_silence(leader: &Leader, parts: &RaftParts) -> HashMap<NodeId, Duration> {
    let answers = ask_voters(leader, parts, PeerBody::Silence, TICK * 2).await;
    let (configs, _) = voters(parts);
    let mut reports: HashMap<NodeId, HashMap<NodeId, u64>> = HashMap::new();
    for (voter, answer) in answers {
        if let corral_raft::peer::PeerResponse::Silence { silent_ms } = answer {
            for (host, ms) in silent_ms {
                reports.entry(host).or_default().insert(voter, ms);
            }
        }
    }
    reports
        .into_iter()
        .map(|(host, by_voter)| {
            let ms = configs.iter().map(|c| majority_value(c, &by_voter)).min().unwrap_or(0);
            (host, Duration::from_millis(ms))
        })
        .collect()
}

/// The largest value that more than half of `voters` report at least (missing reports are 0).
pub fn majority_value(voters: &BTreeSet<NodeId>, reports: &HashMap<NodeId, u64>) -> u64 {
    let mut values: Vec<u64> = voters.iter().map(|v| reports.get(v).copied().unwrap_or(0)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    let quorum = values.len() / 2 + 1;
    values.get(quorum - 1).copied().unwrap_or(0)
}

/// Declares `host` down: leadership confirmed by a quorum (bounded), then a fence vote of the
/// voters, then the entry. If the vote fails, the voters that agreed are told to forget it.
async fn declare_down(
    leader: &Leader,
    parts: &RaftParts,
    term: u64,
    host: NodeId,
    name: &str,
    at_least: Duration,
    how: HostDownCause,
) {
    let heartbeat = Duration::from_millis(leader.config.host_heartbeat_ms);
    match leader.cluster.confirm_leadership(heartbeat * 2).await {
        Ok(t) if t == term => {}
        Ok(t) => return tracing::debug!(host = %name, "not declared down: this node now leads term {t}"),
        Err(e) => return tracing::debug!(host = %name, "not declared down: {e}"),
    }
    let applied = parts.state.last_applied().map_or(0, |l| l.index);
    let vote = PeerBody::FenceVote { host, term, applied, at_least_ms: at_least.as_millis() as u64 };
    let answers = ask_voters(leader, parts, vote, heartbeat * 2).await;
    let granted: BTreeSet<NodeId> = answers
        .iter()
        .filter(|(_, a)| matches!(a, corral_raft::peer::PeerResponse::FenceVote { granted: true, .. }))
        .map(|(v, _)| *v)
        .collect();
    let (configs, addresses) = voters(parts);
    let majority = configs.iter().all(|c| crate::cluster::majority_of(c, &granted));
    let meters = leader.cluster.meters();
    Meters::count(&meters.fence_votes, if majority { "granted" } else { "refused" });
    if !majority {
        tracing::info!(host = %name, granted = granted.len(), "not declared down: no majority of the voters agreed");
        for v in granted {
            let req = PeerRequest { from: parts.id, body: PeerBody::Unfreeze { host, term } };
            let answer = match addresses.get(&v) {
                _ if v == parts.id => leader.cluster.peer(req).await,
                Some(a) => leader.cluster.network().peer(a, &req, heartbeat * 2).await,
                None => continue,
            };
            if let Err(e) = answer {
                tracing::debug!(voter = v, "could not withdraw the fence vote: {e}");
            }
        }
        return;
    }
    tracing::warn!(host = %name, "declaring the host down: {how}");
    if let Err(e) = leader.cluster.propose_as_leader(Op::HostDown { id: host, how }).await {
        // It may still commit; the voters' promise holds until it is applied or a later term's entry is.
        tracing::warn!(host = %name, "could not declare the host down: {e}");
    }
}

/// Cluster level 0 (a rolling upgrade from release 3f21f51): the leader alone grants leases, so
/// its own heartbeat book decides, as that release did; a new leader waits a full lease.
async fn leader_book_tick(leader: &Arc<Leader>, parts: &RaftParts, term: u64) {
    let c = &leader.config;
    let lease = Duration::from_millis(c.lease_ms);
    let down_after = lease + Duration::from_millis(c.lease_margin_ms);
    let non_responsive_after = lease / 2;
    for (host, host_state, name, address) in judged_hosts(&parts.state) {
        let silent = leader.book.silence(term, host);
        if silent >= non_responsive_after {
            if let Some(cmd) = leader.config.fence_command.clone() {
                if leader.book.start_fencing(term, host) {
                    tokio::spawn(fence(leader.clone(), term, host, name.clone(), address, cmd));
                }
            }
        }
        let by_agent = leader.book.fence_result(term, host) == Some(true);
        if (silent >= down_after || by_agent) && leader.book.begin_declaring(term, host, down_after) {
            let silent_ms = silent.as_millis() as u64;
            let how = if by_agent && silent < down_after {
                HostDownCause::fence_agent(silent_ms)
            } else {
                HostDownCause::lease_ended(silent_ms, lease.as_millis() as u64)
            };
            tracing::warn!(host = %name, "declaring the host down: {how}");
            let r = leader.cluster.propose_as_leader(Op::HostDown { id: host, how }).await;
            leader.book.declared(host);
            if let Err(e) = r {
                tracing::warn!(host = %name, "could not declare the host down: {e}");
            }
        } else if silent >= non_responsive_after && host_state.is_alive() {
            let op = Op::HostNonResponsive { id: host, silent_ms: silent.as_millis() as u64 };
            if let Err(e) = leader.cluster.propose_as_leader(op).await {
                tracing::debug!(host = %name, "could not mark the host non responsive: {e}");
            }
        }
    }
}

/// Hosts preparing for maintenance with VMs that could not move yet: tried again (capacity
/// may have come back, a VM may be up now).
async fn retry_evacuations(leader: &Leader, state: &StateHandle) {
    let waiting: Vec<NodeId> = state.read(|s| {
        s.hosts
            .values()
            .filter(|h| h.state == HostState::PreparingForMaintenance)
            .filter(|h| {
                let on = s.vms.on_host(h.id);
                on.iter().filter_map(|id| s.vms.get(id)).any(|v| v.migration_state.migrating_to.is_none())
            })
            .map(|h| h.id)
            .collect()
    });
    for id in waiting {
        if let Err(e) = leader.cluster.propose_as_leader(Op::EvacuateHost { id }).await {
            tracing::debug!(host = id, "evacuation retry not proposed: {e}");
        }
    }
}

/// Snapshot jobs whose host has not reported within the deadline: failed, so that their VMs are
/// not locked for good (a report that comes later is for a job that is no longer there).
async fn expire_snapshot_jobs(leader: &Leader, state: &StateHandle) {
    let now = now_ms();
    let late: Vec<(uuid::Uuid, u64, String)> = state.read(|s| {
        s.vms
            .with_jobs()
            .iter()
            .filter_map(|id| s.vms.get(id))
            .filter_map(|v| v.snapshot_state.snapshot_job.as_ref().map(|j| (v.id, j)))
            .filter(|(_, j)| now - j.started_ms > corral_raft::model::SNAPSHOT_JOB_DEADLINE_MS)
            .map(|(id, j)| (id, j.seq, s.host_name(j.host)))
            .collect()
    });
    for (vm, seq, host) in late {
        let minutes = corral_raft::model::SNAPSHOT_JOB_DEADLINE_MS / 60_000;
        let error = Some(format!("host {host} did not report on the work in {minutes} minutes; try again"));
        let op = Op::SnapshotJobDone { vm, seq, error, domain_xml: None, memory_mib: 0 };
        if let Err(e) = leader.cluster.propose_as_leader(op).await {
            tracing::debug!(%vm, "could not fail a late snapshot job: {e}");
        }
    }
}

/// Runs the fence agent command for `host` (environment: CORRAL_FENCE_HOST, CORRAL_FENCE_ADDRESS);
/// exit status 0 means the host is powered off.
async fn fence(leader: Arc<Leader>, term: u64, host: NodeId, name: String, address: String, cmd: String) {
    tracing::warn!(host = %name, "running the fence agent");
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env("CORRAL_FENCE_HOST", &name)
        .env("CORRAL_FENCE_ADDRESS", &address)
        .kill_on_drop(true)
        .output();
    let (ok, detail) = match tokio::time::timeout(FENCE_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => (true, "it succeeded".to_string()),
        Ok(Ok(out)) => (false, format!("it failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
        Ok(Err(e)) => (false, format!("it could not run: {e}")),
        Err(_) => (false, format!("it did not finish within {} s", FENCE_TIMEOUT.as_secs())),
    };
    leader.book.fenced(term, host, ok);
    Meters::count(&leader.cluster.meters().fence_agent_runs, if ok { "ok" } else { "failed" });
    let message = format!("The fence agent was run for host {name}: {detail}.");
    let op = Op::RecordEvent { kind: corral_raft::model::EventKind::HostStateChanged, message };
    let _ = leader.cluster.propose_as_leader(op).await;
}

/// A voter whose host has been down for `voter_down_ms` is replaced by a healthy learner, so
/// the cluster keeps its number of voters (and its tolerance of failures).
async fn replace_dead_voter(leader: &Leader, parts: &RaftParts) {
    let membership = parts.metrics().membership_config.membership().clone();
    let voters: HashSet<NodeId> = membership.voter_ids().collect();
    let now = now_ms();
    let down_for = leader.config.voter_down_ms as i64;
    let (dead, healthy) = parts.state.read(|s| {
        let dead = s
            .hosts
            .values()
            .find(|h| voters.contains(&h.id) && h.state == HostState::Down && now - h.state_since_ms >= down_for)
            .map(|h| (h.id, h.name.clone()));
        let healthy = membership
            .learner_ids()
            .filter_map(|l| s.hosts.get(&l))
            .find(|h| h.state == HostState::Up)
            .map(|h| (h.id, h.name.clone()));
        (dead, healthy)
    });
    let (Some((dead, dead_name)), Some((learner, learner_name))) = (dead, healthy) else { return };
    tracing::warn!(dead = %dead_name, promoted = %learner_name, "replacing a voter that stays down");
    let replaced = tokio::time::timeout(MEMBERSHIP_TIMEOUT, leader.cluster.replace_voter(dead, learner)).await;
    let replaced = replaced.unwrap_or_else(|_| {
        Err(ClusterError::Unavailable(format!("not done within {} s", MEMBERSHIP_TIMEOUT.as_secs())))
    });
    let message = match replaced {
        Ok(_) => format!(
            "Voter host {dead_name} has been down for {} s; host {learner_name} became a voter in its place.",
            down_for / 1000
        ),
        Err(e) => {
            tracing::warn!("voter replacement failed: {e}");
            return;
        }
    };
    let op = Op::RecordEvent { kind: corral_raft::model::EventKind::HostStateChanged, message };
    let _ = leader.cluster.propose_as_leader(op).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_majority_value_is_what_more_than_half_report_at_least() {
        let voters = set(&[1, 2, 3]);
        let reports: HashMap<NodeId, u64> = [(1, 5000), (2, 100), (3, 4000)].into();
        assert_eq!(majority_value(&voters, &reports), 4000);
        // A voter that did not answer counts as having just heard the host.
        let reports: HashMap<NodeId, u64> = [(1, 5000)].into();
        assert_eq!(majority_value(&voters, &reports), 0);
        let five = set(&[1, 2, 3, 4, 5]);
        let reports: HashMap<NodeId, u64> = [(1, 9), (2, 8), (3, 7), (4, 1), (5, 2)].into();
        assert_eq!(majority_value(&five, &reports), 7);
        assert_eq!(majority_value(&set(&[1]), &[(1, 3)].into()), 3);
    }

    #[test]
    fn a_majority_is_more_than_half_of_one_configuration() {
        use crate::cluster::majority_of;
        assert!(majority_of(&set(&[1, 2, 3]), &set(&[1, 3])));
        assert!(!majority_of(&set(&[1, 2, 3]), &set(&[3, 4, 5])));
        assert!(!majority_of(&set(&[1, 2, 3, 4]), &set(&[1, 2])));
        assert!(majority_of(&set(&[7]), &set(&[7])));
    }
}
