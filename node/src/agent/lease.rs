//! This host's lease: a majority of the voters renew it by acknowledging its heartbeats (at
//! cluster level 0, during a rolling upgrade from release 3f21f51, the leader alone does); a
//! host that cannot renew it destroys its VMs before it ends (self-fencing), and starts nothing
//! while it does not hold it. DESIGN.md ("The lease protocol") gives the safety argument.
//!
//! The lease is counted from the moment the acknowledged round of heartbeats was *sent*, so it
//! ends before any voter's count (from when it *acknowledged*) does; a host is declared down
//! only when a majority of voters have not acknowledged it for `lease + margin`. A renewal is
//! used only once this node has applied the log up to the highest index the voters gave, so it
//! never acts on a state older than theirs (a `host down` it missed while cut off, for one).
//!
//! The watchdog (when configured) is fed while the lease is held or the VMs are fenced: a
//! daemon that dies or hangs stops feeding it, and the watchdog powers the host off before
//! the lease ends. That is how a host whose corrald cannot fence itself is still fenced.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_raft::forward::{LeaderRequest, LeaderResponse, MAX_HOPS};
use corral_raft::model::ClusterState;
use corral_raft::peer::{PeerBody, PeerRequest, PeerResponse};
use corral_raft::typ::StateHandle;
use corral_raft::ClusterError;
use corral_raft::NodeId;
use uuid::Uuid;

use super::libvirt::DomainState;
use super::HostAgent;
use crate::config::Config;

/// Lease to spare, beyond the fencing point, for starting a VM or a migration.
const START_GUARD: Duration = Duration::from_millis(1000);
/// How soon an unacknowledged heartbeat is sent again.
const RETRY: Duration = Duration::from_millis(100);

pub struct Lease {
    inner: Mutex<Held>,
    /// Starting a VM (or resuming, or starting a migration) holds this for reading, fencing
    /// for writing: a start under a valid lease ends before fencing looks, and none begins
    /// while it runs.
    pub acting: tokio::sync::RwLock<()>,
    /// Opened by the lease task; disarmed only by a clean stop with no VM running here.
    watchdog: Mutex<Option<super::watchdog::Watchdog>>,
    length: Duration,
    /// The host fences this long before its lease would end.
    fence_ahead: Duration,
}

struct Held {
    /// Set by an acknowledged heartbeat.
    until: Option<Instant>,
    started: Instant,
    /// VMs destroyed by self-fencing (their "down" report says so).
    fenced: HashSet<Uuid>,
    /// Fenced since the last acknowledged heartbeat: the next heartbeat says so.
    fenced_unreported: bool,
    /// When the VMs were first destroyed since the last report (Unix ms).
    fenced_at_ms: Option<i64>,
    /// corrald is stopping: no renewal counts any more.
    stopping: bool,
    /// The hosted engine VM an operator started here by hand while the cluster had no quorum
    /// (`engine start --local`): fencing leaves it alone until the cluster takes it over.
    hand_started: Option<Uuid>,
    /// When this host first asked the cluster to take the hand-started VM over.
    claimed_since: Option<Instant>,
}

impl Lease {
    pub fn new(config: &Config) -> Lease {
        let length = Duration::from_millis(config.lease_ms);
        Lease {
            inner: Mutex::new(Held {
                until: None,
                started: Instant::now(),
                fenced: HashSet::new(),
                fenced_unreported: false,
                fenced_at_ms: None,
                stopping: false,
                hand_started: None,
                claimed_since: None,
            }),
            watchdog: Mutex::new(None),
            acting: tokio::sync::RwLock::new(()),
            length,
            // Destroying VMs takes a fraction of a second (they are destroyed side by side),
            // and the leader waits a margin on top of the lease: half a second ahead leaves a
            // host 2.5 s (default lease) to renew, enough to ride out a leader election.
            fence_ahead: (length / 6).max(Duration::from_millis(200)),
        }
    }

    fn held_state(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner.lock().expect("lease")
    }

    /// Whether this host may start, resume or migrate VMs now: it holds its lease and is not
    /// yet in the window where it must fence.
    pub fn held(&self) -> bool {
        self.held_state().until.is_some_and(|u| Instant::now() + self.fence_ahead < u)
    }

    /// Whether this host may start something that takes a while (a VM, a migration): the
    /// lease is held with `START_GUARD` to spare beyond the fencing point, so the start ends
    /// well before fencing would have to undo it.
    pub fn may_start(&self) -> bool {
        self.held_state().until.is_some_and(|u| Instant::now() + self.fence_ahead + START_GUARD < u)
    }

    /// Whether the host must fence now: its lease (or, before the first one, the grace after
    /// start-up) ends within `fence_ahead`.
    fn fence_due(&self) -> bool {
        let h = self.held_state();
        let end = h.until.unwrap_or(h.started + self.length);
        Instant::now() + self.fence_ahead >= end
    }

    fn renew(&self, sent: Instant) {
        let mut h = self.held_state();
        if h.stopping {
            return;
        }
        let until = sent + self.length;
        if h.until.is_none_or(|u| u < until) {
            h.until = Some(until);
        }
    }

    /// The leader has recorded this host as alive again: its self-fencing has been told.
    fn fence_reported(&self) {
        let mut h = self.held_state();
        h.fenced_unreported = false;
        h.fenced_at_ms = None;
    }

    /// The VM an operator started here by hand, which fencing spares.
    pub fn hand_started(&self) -> Option<Uuid> {
        self.held_state().hand_started
    }

    pub fn set_hand_started(&self, vm: Option<Uuid>) {
        let mut h = self.held_state();
        h.hand_started = vm;
        h.claimed_since = None;
    }

    /// How long this host has been asking the cluster to take the hand-started VM over.
    pub fn claiming_for(&self) -> Duration {
        let mut h = self.held_state();
        h.claimed_since.get_or_insert_with(Instant::now).elapsed()
    }

    /// Whether VM `id` was destroyed by self-fencing (and forgets it).
    pub fn take_fenced(&self, id: Uuid) -> bool {
        self.held_state().fenced.remove(&id)
    }

    /// How much of the lease is left (zero when none is held).
    pub fn remaining(&self) -> Duration {
        self.held_state().until.map_or(Duration::ZERO, |u| u.saturating_duration_since(Instant::now()))
    }
}

impl HostAgent {
    /// A clean stop of corrald. Once this daemon stops heartbeating, the leader restarts this
    /// host's HA VMs elsewhere after the lease, so none may run on here: the lease is given up
    /// (nothing starts any more), the cluster's VMs still running here are destroyed, and only
    /// then is the watchdog disarmed (magic close). If they cannot be destroyed it stays armed
    /// and powers the host off. Put a host into maintenance before stopping its corrald.
    pub async fn release(&self) {
        {
            let mut h = self.lease.held_state();
            h.until = None;
            h.stopping = true;
        }
        let Ok(state) = self.cluster.state() else { return };
        let ok = fence(self, state, "corrald is stopping").await;
        let Some(w) = self.lease.watchdog.lock().expect("watchdog").take() else { return };
        if ok {
            match w.disarm() {
                Ok(()) => tracing::info!("watchdog disarmed: no cluster VM runs here"),
                Err(e) => tracing::warn!("could not disarm the watchdog: {e}"),
            }
        } else {
            tracing::error!("VMs could not be stopped: the watchdog stays armed and powers this host off");
            // Dropped without the magic close: the device keeps counting.
            drop(w);
        }
    }
}

pub fn spawn(node: Arc<HostAgent>, me: NodeId, state: StateHandle) {
    tokio::spawn(run(node, me, state));
}

async fn run(node: Arc<HostAgent>, me: NodeId, state: StateHandle) {
    let period = Duration::from_millis(node.config.host_heartbeat_ms);
    let margin = Duration::from_millis(node.config.lease_margin_ms);
    let wd = Duration::from_millis(node.config.watchdog_timeout_ms);
    // Armed with the first lease (or the first fencing), not at start-up: a cluster starting
    // cold may take a few seconds to elect a leader, and an armed watchdog nobody may feed
    // yet would power the host off.
    let mut armed = node.config.watchdog.is_none();
    loop {
        // Fencing comes first: after a pause (SIGSTOP, a stalled machine) the lease may have
        // ended long ago, and nothing may run here before the next renewal says otherwise.
        let mut fenced_ok = true;
        if node.lease.fence_due() {
            fenced_ok = fence(&node, &state, "lease lost").await;
        }
        let sent = Instant::now();
        let fenced = {
            let h = node.lease.held_state();
            h.fenced_unreported.then(|| h.fenced_at_ms.unwrap_or_else(crate::now_ms))
        };
        let mut next = sent + period;
        match heartbeat(&node, me, fenced, period).await {
            Ok(index) => {
                // Use the renewal only with a state as new as the voters' when they granted it.
                // It counts from `sent` whenever it is used, so a host catching up (just
                // restarted, a log to apply) may take a while longer than one period.
                let catch_up = period.max(node.lease.length / 3);
                let caught_up = tokio::time::timeout(catch_up, wait_applied(&state, index)).await.is_ok();
                if caught_up {
                    node.lease.renew(sent);
                    // Said with every heartbeat until the state shows this host alive again:
                    // a leader change may lose the first "alive again" proposal.
                    if state.read(|s: &ClusterState| s.hosts.get(&me).is_some_and(|h| h.state.is_alive())) {
                        node.lease.fence_reported();
                    }
                }
            }
            Err(e) => {
                // Not acknowledged (the leader died, an election runs, the leader is not in
                // office yet): tried again soon, so the lease is renewed as soon as a leader
                // can renew it.
                tracing::debug!("heartbeat not acknowledged: {e}");
                next = sent + RETRY;
            }
        }
        if node.lease.fence_due() {
            fenced_ok = fence(&node, &state, "lease lost").await;
        }
        // Fed only when a freeze from now on would still power the host off before the leader
        // may declare it down (lease end + margin), or when nothing runs here to protect.
        let safe_to_feed = if node.lease.fence_due() { fenced_ok } else { node.lease.remaining() + margin >= wd };
        if !armed && safe_to_feed && (node.lease.held() || node.lease.fence_due()) {
            *node.lease.watchdog.lock().expect("watchdog") = open_watchdog(&node.config);
            armed = true;
        }
        if let Some(w) = node.lease.watchdog.lock().expect("watchdog").as_mut() {
            if safe_to_feed {
                if let Err(e) = w.feed() {
                    tracing::warn!("cannot feed the watchdog: {e}");
                }
            } else {
                tracing::warn!("the lease is running out and not renewed: the watchdog is not fed");
            }
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

fn open_watchdog(config: &Config) -> Option<super::watchdog::Watchdog> {
    let path = config.watchdog.as_ref()?;
    match super::watchdog::Watchdog::open(path) {
        Ok(w) => {
            tracing::info!(path = %path.display(), "watchdog armed");
            Some(w)
        }
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    }
}

/// Sends one round of heartbeats; returns the index this host must apply before it uses the
/// renewal. From cluster level 1 on, to every voter, renewed by a majority of them (in every
/// configuration of a joint membership); at level 0 (a rolling upgrade from release 3f21f51,
/// whose nodes witness nothing) to the leader alone, as that release did.
async fn heartbeat(node: &HostAgent, me: NodeId, fenced: Option<i64>, timeout: Duration) -> Result<u64, String> {
    let parts = node.cluster.parts().map_err(|e| e.to_string())?;
    let majority = parts.state.read(|s: &ClusterState| s.cluster.as_ref().is_some_and(|c| c.level >= 1));
    if majority {
        witnessed(node, me, fenced, timeout).await
    } else {
        leader_heartbeat(node, me, fenced.is_some(), timeout).await
    }
}

/// Heartbeats to every voter, side by side; done as soon as a majority acknowledged. The ones
/// still on their way are left to finish (within `timeout`), so that every voter hears the
/// host even when it answers late.
async fn witnessed(node: &HostAgent, me: NodeId, fenced: Option<i64>, timeout: Duration) -> Result<u64, String> {
    let parts = node.cluster.parts().map_err(|e| e.to_string())?;
    let membership = parts.metrics().membership_config.membership().clone();
    let configs: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
    let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
    let req = PeerRequest { from: me, body: PeerBody::Heartbeat { sent_ms: crate::now_ms(), fenced_ms: fenced } };
    let (tx, mut rx) = tokio::sync::mpsc::channel(voters.len().max(1));
    for voter in &voters {
        let (voter, tx, req, cluster) = (*voter, tx.clone(), req.clone(), node.cluster.clone());
        let address = membership.get_node(&voter).map(|n| n.address.clone());
        tokio::spawn(async move {
            let answer = match address {
                _ if voter == me => cluster.peer(req).await,
                Some(address) => cluster.network().peer(&address, &req, timeout).await,
                None => Err(ClusterError::Unavailable(format!("voter {voter} has no address"))),
            };
            let _ = tx.send((voter, answer)).await;
        });
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut acked = BTreeSet::new();
    let mut index = 0;
    let mut refused = Vec::new();
    while let Ok(Some((voter, answer))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match answer {
            Ok(PeerResponse::HeartbeatAck { index: i }) => {
                acked.insert(voter);
                index = index.max(i);
            }
            Ok(other) => refused.push(format!("node {voter}: unexpected answer {other:?}")),
            Err(e) => refused.push(format!("node {voter}: {e}")),
        }
        if configs.iter().all(|c| crate::cluster::majority_of(c, &acked)) {
            return Ok(index);
        }
    }
    Err(format!(
        "{} of {} voters acknowledged, not a majority{}{}",
        acked.len(),
        voters.len(),
        if refused.is_empty() { "" } else { ": " },
        refused.join("; ")
    ))
}

/// Sends one heartbeat to the leader (locally when this node leads); returns the index the
/// leader acknowledged with. Level 0 only.
async fn leader_heartbeat(node: &HostAgent, me: NodeId, self_fenced: bool, timeout: Duration) -> Result<u64, String> {
    let parts = node.cluster.parts().map_err(|e| e.to_string())?;
    let m = parts.metrics();
    let leader = m.current_leader.ok_or("no leader known")?;
    let sent_ms = crate::now_ms();
    let resp = if leader == me {
        node.cluster.heartbeat(me, self_fenced, sent_ms)
    } else {
        let address = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.address.clone())
            .ok_or("the leader is not in this node's membership")?;
        let req = LeaderRequest::Heartbeat { host: me, self_fenced, sent_ms };
        match tokio::time::timeout(timeout, node.cluster.network().forward(&address, &req, MAX_HOPS, timeout)).await {
            Ok(r) => r,
            Err(_) => return Err(format!("the leader at {address} did not answer within {timeout:?}")),
        }
    };
    match resp {
        Ok(LeaderResponse::HeartbeatAck { index }) => Ok(index),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn wait_applied(state: &StateHandle, index: u64) {
    let mut applied = state.subscribe();
    while state.last_applied().map_or(0, |l| l.index) < index {
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// Self-fencing: destroys every cluster VM running here. Returns whether all are gone.
async fn fence(node: &HostAgent, state: &StateHandle, why: &str) -> bool {
    let _no_starts = node.lease.acting.write().await;
    let domains = match node.hv.domains().await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("cannot fence: libvirt does not answer: {e}");
            return false;
        }
    };
    let mut cluster_vms: HashSet<Uuid> =
        state.read(|s: &ClusterState| domains.iter().map(|d| d.uuid).filter(|id| s.vms.contains_key(id)).collect());
    // A VM an operator started here by hand while the cluster had no quorum is spared until
    // the cluster has taken it over; the host agent then forgets it (with a lease, so with a
    // fresh state: the state here without one may be old and still give the VM to this host).
    if let Some(spared) = node.lease.hand_started() {
        cluster_vms.remove(&spared);
    }
    let running = domains
        .iter()
        .filter(|d| cluster_vms.contains(&d.uuid))
        .filter(|d| !matches!(d.state, DomainState::Shutoff | DomainState::Crashed));
    // All at once: the time left before the lease ends must not grow with the VM count.
    let destroys = running.map(|d| async move {
        tracing::error!(vm = %d.name, "{why}: destroying the VM (self-fencing)");
        (d, node.hv.destroy(d.uuid).await)
    });
    let mut ok = true;
    for (d, result) in futures::future::join_all(destroys).await {
        match result {
            Ok(()) => {
                node.cluster.meters().self_fenced_vms.inc();
                let mut h = node.lease.held_state();
                h.fenced.insert(d.uuid);
                h.fenced_unreported = true;
                h.fenced_at_ms.get_or_insert_with(crate::now_ms);
            }
            Err(e) => {
                tracing::error!(vm = %d.name, "could not destroy it: {e}");
                ok = false;
            }
        }
    }
    ok
}
