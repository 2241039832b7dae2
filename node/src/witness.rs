//! A voter's side of the hosts' leases: it acknowledges hosts' heartbeats, remembers when it
//! last did, tells the leader how long each host has been silent, and takes part in the
//! decision that a host is down (a fence vote, after which it acknowledges that host no more
//! until the decision is applied or can no longer be). Every voter keeps one; none of it is
//! replicated. DESIGN.md ("Safety") gives the argument this bookkeeping serves.
//!
//! Silence is counted conservatively: never from before this process started, and after the
//! process stood still (SIGSTOP, a starved machine) every count starts again, so a voter never
//! takes its own stand-still for a host's silence.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_raft::model::{ClusterState, HostState};
use corral_raft::peer::{PeerBody, PeerResponse, PeerResult};
use corral_raft::{ClusterError, NodeId};

use crate::cluster::{Cluster, Frozen, WitnessDesk};
use crate::config::Config;
use crate::now_ms;

/// How often the book notes that the process runs.
const BEAT: Duration = Duration::from_millis(100);

/// Told when a host that is down, or fenced itself (and when), is heard again (the leader
/// records it alive); the wiring hands the leader's part in.
pub type OnHeard = Box<dyn Fn(NodeId, Option<i64>) + Send + Sync>;

pub struct Witness {
    cluster: Cluster,
    config: Arc<Config>,
    book: Mutex<Book>,
    on_heard: OnHeard,
}

struct Book {
    /// When this process started, or last stood still: no silence is counted from before.
    since: Instant,
    awake: Instant,
    stall_after: Duration,
    /// When this voter last acknowledged each host's heartbeat.
    acked: HashMap<NodeId, Instant>,
    /// Hosts a leader is declaring down, with that leader's term and applied index: their
    /// heartbeats are refused until this voter has applied the decision or an entry of a later
    /// term. Kept on disk: a voter that restarted must not forget that it promised.
    frozen: BTreeMap<NodeId, Frozen>,
}

impl Book {
    fn wake(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.awake);
        if gap > self.stall_after {
            tracing::warn!(
                "this process stood still for {:.1} s (paused or starved): hosts' silence is counted again from now",
                gap.as_secs_f64()
            );
            self.since = now;
            self.acked.clear();
        }
        self.awake = now;
    }

    fn silence(&self, host: NodeId, now: Instant) -> Duration {
        let last = self.acked.get(&host).map_or(self.since, |t| (*t).max(self.since));
        now.saturating_duration_since(last)
    }
}

impl Witness {
    pub fn new(cluster: Cluster, config: Arc<Config>, on_heard: OnHeard) -> Arc<Witness> {
        let now = Instant::now();
        let frozen = cluster.frozen_hosts();
        if !frozen.is_empty() {
            tracing::info!(?frozen, "hosts being declared down when this node stopped: their heartbeats wait");
        }
        let stall_after = Duration::from_millis(config.host_heartbeat_ms * 2);
        let book = Book { since: now, awake: now, stall_after, acked: HashMap::new(), frozen };
        Arc::new(Witness { cluster, config, book: Mutex::new(book), on_heard })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        let mut b = self.book.lock().expect("witness book");
        b.wake(Instant::now());
        b
    }

    /// Beats every `BEAT` for as long as the process runs, so that a stand-still shows as a gap.
    pub async fn beat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            drop(self.book());
        }
    }

    /// Whether this node is a voter now (only voters witness leases).
    fn voter(&self) -> Result<(), ClusterError> {
        let parts = self.cluster.parts()?;
        let m = parts.metrics();
        if m.membership_config.membership().get_joint_config().iter().any(|c| c.contains(&parts.id)) {
            Ok(())
        } else {
            Err(ClusterError::FailedPrecondition(format!("node {} is not a voter; it witnesses no lease", parts.id)))
        }
    }

    fn heartbeat(&self, host: NodeId, sent_ms: i64, fenced_ms: Option<i64>) -> PeerResult {
        // Hosts' clocks are kept in step (NTP); a heartbeat older than half a lease was held up
        // in the network and says nothing about the host now.
        let age = now_ms() - sent_ms;
        if age > self.config.lease_ms as i64 / 2 {
            return Err(ClusterError::Unavailable(format!(
                "the heartbeat is {age} ms old; it is refused (are the hosts' clocks in step?)"
            )));
        }
        self.voter()?;
        let parts = self.cluster.parts()?;
        let (alive, down) = parts
            .state
            .read(|s: &ClusterState| s.hosts.get(&host).map(|h| (h.state.is_alive(), h.state == HostState::Down)))
            .ok_or_else(|| ClusterError::NotFound(format!("host {host} is not a member of this cluster")))?;
        let last_applied = parts.state.last_applied();
        let applied_term = last_applied.map_or(0, |l| l.leader_id.term);
        let applied_index = last_applied.map_or(0, |l| l.index);
        {
            let mut book = self.book();
            if let Some(&Frozen { term, applied }) = book.frozen.get(&host) {
                // The decision is applied here (every later acknowledgement carries an index
                // past it), or it can never be: an entry of a later term is applied, and an
                // entry of `term` after it would contradict Raft's log order. (A `down` at or
                // before `applied` is an older one: the leader saw the host alive there.)
                if (down && applied_index > applied) || applied_term > term {
                    book.frozen.remove(&host);
                    self.cluster.set_frozen_hosts(&book.frozen);
                } else {
                    return Err(ClusterError::Unavailable(format!(
                        "host {host} is being declared down by the leader of term {term}; this voter renews no lease \
                         for it until that is decided"
                    )));
                }
            }
            book.acked.insert(host, Instant::now());
        }
        // Read after the acknowledgement was recorded: an index only grows.
        let index = parts.metrics().last_log_index.unwrap_or(0);
        if !alive || fenced_ms.is_some() {
            (self.on_heard)(host, fenced_ms);
        }
        Ok(PeerResponse::HeartbeatAck { index })
    }

    fn silence(&self) -> PeerResult {
        self.voter()?;
        let hosts: Vec<NodeId> = self.cluster.state()?.read(|s: &ClusterState| s.hosts.keys().copied().collect());
        let book = self.book();
        let now = Instant::now();
        let silent_ms = hosts.into_iter().map(|h| (h, book.silence(h, now).as_millis() as u64)).collect();
        Ok(PeerResponse::Silence { silent_ms })
    }

    fn fence_vote(&self, from: NodeId, host: NodeId, term: u64, applied: u64, at_least_ms: u64) -> PeerResult {
        self.voter()?;
        let parts = self.cluster.parts()?;
        let current = parts.metrics().current_term;
        if term < current {
            return Err(ClusterError::FailedPrecondition(format!(
                "node {from} asks as the leader of term {term}, but this node is in term {current}"
            )));
        }
        let mut book = self.book();
        let silent = book.silence(host, Instant::now());
        let granted = silent >= Duration::from_millis(at_least_ms);
        if granted {
            let new = Frozen { term, applied };
            let kept = book.frozen.entry(host).or_insert(new);
            if (new.term, new.applied) > (kept.term, kept.applied) {
                *kept = new;
            }
            self.cluster.set_frozen_hosts(&book.frozen);
        }
        Ok(PeerResponse::FenceVote { granted, silent_ms: silent.as_millis() as u64 })
    }

    fn unfreeze(&self, host: NodeId, term: u64) -> PeerResult {
        let mut book = self.book();
        if book.frozen.get(&host).is_some_and(|f| f.term == term) {
            book.frozen.remove(&host);
            self.cluster.set_frozen_hosts(&book.frozen);
        }
        Ok(PeerResponse::Unfrozen)
    }
}

impl WitnessDesk for Witness {
    fn answer(&self, from: NodeId, body: PeerBody) -> PeerResult {
        match body {
            PeerBody::Heartbeat { sent_ms, fenced_ms } => self.heartbeat(from, sent_ms, fenced_ms),
            PeerBody::Silence => self.silence(),
            PeerBody::FenceVote { host, term, applied, at_least_ms } => {
                self.fence_vote(from, host, term, applied, at_least_ms)
            }
            PeerBody::Unfreeze { host, term } => self.unfreeze(host, term),
            PeerBody::PreVote { .. } | PeerBody::CaKey => {
                Err(ClusterError::invalid("message", "pre-votes and the CA key are not the witness's"))
            }
        }
    }
}
