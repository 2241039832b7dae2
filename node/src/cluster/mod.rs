//! The cluster handle: this node's Raft instance (made at bootstrap or join, or at start-up when
//! the data dir already holds an identity), its store and its network, and the few operations
//! everything else builds on: propose through the leader, read linearizably, route a
//! leader-only request, watch the applied state. It knows nothing of libvirt, leases or the
//! leader's heartbeat book; the parts that do are handed this handle by the wiring (`daemon`).

mod election;
mod membership;
mod pki;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use corral_raft::command::{Op, Outcome};
use corral_raft::forward::{LeaderRequest, LeaderResponse, MAX_HOPS};
use corral_raft::model::HostFacts;
use corral_raft::network::Network;
use corral_raft::peer::{PeerBody, PeerRequest, PeerResult};
use corral_raft::typ::{ClientWriteError, Raft, RaftError, RaftMetrics, StateHandle};
use corral_raft::{ClusterError, ClusterState, Command, NodeId, NodeInfo, Reply};
use corral_storage::Store;
use openraft::error::ForwardToLeader;
use openraft::metrics::RaftServerMetrics;
use openraft::SnapshotPolicy;
use tokio::sync::{watch, Mutex, OnceCell};
use uuid::Uuid;

use crate::config::Config;
use crate::metrics::meters::Meters;
use crate::now_ms;

pub use membership::DEFAULT_TOKEN_TTL_MS;

/// How long a request waits for a leader to exist (elections take well under a second).
const LEADER_WAIT: Duration = Duration::from_secs(3);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const READ_WAIT: Duration = Duration::from_secs(5);
/// The local store's key of the hand-started engine VM (the other keys are the identity's).
const HAND_STARTED_ENGINE: &str = "engine_hand_started";
/// The local store's key of the hosts this voter promised not to renew (`crate::witness`).
const FROZEN_HOSTS: &str = "witness_frozen_hosts";

/// The leader's side of a host's heartbeat. Only the leader's liveness part (`controller`)
/// knows heartbeat times, so it answers them; the wiring hands it to the cluster handle, which
/// passes heartbeats that reach this node on to it.
pub trait LeaseDesk: Send + Sync {
    fn heartbeat(&self, host: NodeId, self_fenced: bool, sent_ms: i64) -> Result<LeaderResponse, ClusterError>;
}

/// A voter's side of the hosts' leases (see `crate::witness`): heartbeats and the leader's
/// questions about a host's silence that reach this node; handed to the cluster handle by the
/// wiring, like the lease desk.
pub trait WitnessDesk: Send + Sync {
    fn answer(&self, from: NodeId, body: PeerBody) -> PeerResult;
}

/// A voter's promise not to renew a host's lease while a leader declares it down
/// (`crate::witness`), kept as a node-local fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frozen {
    /// The term of the leader that asked.
    pub term: u64,
    /// That leader's applied index when it asked: its state showed the host alive there.
    pub applied: u64,
}

/// A cheap, cloneable handle on this node's membership of the cluster.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

struct Inner {
    config: Arc<Config>,
    /// What this host tells the cluster about itself when it bootstraps or joins.
    facts: HostFacts,
    store: Store,
    network: Network,
    raft: OnceCell<RaftParts>,
    /// Published once Raft runs, for the parts that start with it.
    started: watch::Sender<Option<RaftParts>>,
    /// Serializes membership changes on the leader: openraft allows one at a time.
    admit_lock: Mutex<()>,
    desk: OnceLock<Arc<dyn LeaseDesk>>,
    witness: OnceLock<Arc<dyn WitnessDesk>>,
    /// This node's certificates in force (`pki`).
    tls: Arc<crate::tls::Live>,
    /// The instruments events are counted into where they happen (`crate::metrics`).
    meters: Arc<Meters>,
}

/// This node's running Raft: its id and applied state for everyone; openraft itself stays
/// inside the cluster handle, which offers what the other parts need of it.
#[derive(Clone)]
pub struct RaftParts {
    pub id: NodeId,
    pub state: StateHandle,
    raft: Raft,
    batcher: crate::batcher::Batcher,
    elections: Arc<election::Elections>,
}

impl RaftParts {
    /// openraft's metrics as last published (leader, term, membership, log indexes). A node
    /// frozen for a while reads what was published before the freeze.
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// A watch of leadership and membership only (it does not change with every write).
    pub fn server_metrics(&self) -> watch::Receiver<RaftServerMetrics<NodeId, NodeInfo>> {
        self.raft.server_metrics()
    }

    // The three Raft RPCs a peer sends, for the Raft transport, are in `election`: each notes
    // what it says about leaders.
}

impl Cluster {
    /// Opens the data dir; resumes Raft when it holds an identity.
    pub async fn open(config: Arc<Config>, facts: HostFacts, meters: Arc<Meters>) -> anyhow::Result<Cluster> {
        let crate::identity::Opened { store, node_id } = crate::identity::open(&config)?;
        let tls = Arc::new(crate::tls::Live::open(&config.data_dir));
        let network = Network::new(store.write_format());
        network.set_tls(tls.client_config());
        let cluster = Cluster(Arc::new(Inner {
            network,
            tls,
            config,
            facts,
            store,
            raft: OnceCell::new(),
            started: watch::Sender::new(None),
            admit_lock: Mutex::new(()),
            desk: OnceLock::new(),
            witness: OnceLock::new(),
            meters,
        }));
        if let Some(id) = node_id {
            cluster.start_raft(id).await.map_err(|e| {
                anyhow::anyhow!(
                    "the data dir {} could not be read: {e}. If it is damaged, run corrald again with --rejoin to \
                     set it aside and catch up from the cluster as the same member",
                    cluster.0.config.data_dir.display()
                )
            })?;
            if cluster.requires_tls() {
                cluster.0.network.set_secure(true);
            }
            tracing::info!(node_id = id, "resumed from the data dir");
        } else {
            tracing::info!("no identity in the data dir: waiting for `cluster bootstrap` or `cluster join`");
        }
        tokio::spawn(cluster.clone().keep_certificates());
        Ok(cluster)
    }

    /// Hands heartbeats to the leader's liveness part; once, by the wiring.
    pub fn set_lease_desk(&self, desk: Arc<dyn LeaseDesk>) {
        if self.0.desk.set(desk).is_err() {
            tracing::error!("the lease desk was set twice; the first one stays");
        }
    }

    /// Hands a voter's heartbeats and silence questions to its witness book; once, by the wiring.
    pub fn set_witness_desk(&self, desk: Arc<dyn WitnessDesk>) {
        if self.0.witness.set(desk).is_err() {
            tracing::error!("the witness desk was set twice; the first one stays");
        }
    }

    /// Answers a member-to-member message (see `corral_raft::peer`).
    pub async fn peer(&self, req: PeerRequest) -> PeerResult {
        let PeerRequest { from, body } = req;
        match body {
            PeerBody::PreVote { term, last_log } => self.parts()?.answer_pre_vote(from, term, last_log),
            PeerBody::CaKey => self.answer_ca_key(from),
            body => match self.0.witness.get() {
                Some(desk) => desk.answer(from, body),
                None => Err(ClusterError::Unavailable("this node does not witness leases yet".into())),
            },
        }
    }

    /// Answers a heartbeat sent to this node, which must lead to acknowledge it.
    pub fn heartbeat(&self, host: NodeId, self_fenced: bool, sent_ms: i64) -> Result<LeaderResponse, ClusterError> {
        match self.0.desk.get() {
            Some(desk) => desk.heartbeat(host, self_fenced, sent_ms),
            None => Err(ClusterError::Unavailable("this node does not answer heartbeats yet".into())),
        }
    }

    /// Waits until this node runs Raft (at once when it already does).
    pub async fn started(&self) -> Option<RaftParts> {
        let mut rx = self.0.started.subscribe();
        let parts = rx.wait_for(Option::is_some).await.ok()?;
        parts.clone()
    }

    pub fn network(&self) -> &Network {
        &self.0.network
    }

    /// The leader this node sees now (itself while it leads with a majority heard), within twice
    /// the election timeout; None before Raft runs. For health and metrics.
    pub fn sees_leader(&self) -> Option<NodeId> {
        let within = Duration::from_millis(2 * self.0.config.election_timeout_ms);
        self.parts().ok()?.sees_leader(within)
    }

    /// This node's instruments, for the parts that count events where they happen.
    pub fn meters(&self) -> &Arc<Meters> {
        &self.0.meters
    }

    /// Creates this node's Raft instance under `id`; once per process.
    async fn start_raft(&self, id: NodeId) -> Result<&RaftParts, ClusterError> {
        let parts = self
            .0
            .raft
            .get_or_try_init(|| async {
                let c = &self.0.config;
                // Elections are ours (`election`: pre-vote first); openraft's timer is off. Its
                // timeout settings then only set how long a voter refuses a real vote after
                // hearing a leader (its "leader lease", the maximum): one election timeout, as
                // long as a pre-vote is refused, so that a granted pre-vote is not then refused.
                let raft_config = openraft::Config {
                    cluster_name: "corral".into(),
                    heartbeat_interval: c.heartbeat_ms,
                    election_timeout_min: (c.election_timeout_ms / 2).max(c.heartbeat_ms + 1),
                    election_timeout_max: c.election_timeout_ms,
                    enable_elect: false,
                    snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
                    max_in_snapshot_log_to_keep: c.keep_logs,
                    install_snapshot_timeout: 2000,
                    // Bounds one AppendEntries under `MAX_RAFT_MESSAGE` (a batch entry holds at
                    // most 256 commands of bounded size); snapshots go in 3 MiB chunks.
                    max_payload_entries: 64,
                    snapshot_max_chunk_size: 3 << 20,
                    ..Default::default()
                }
                .validate()
                .map_err(|e| ClusterError::Internal(format!("bad Raft settings: {e}")))?;
                let internal = |e: corral_storage::Error| ClusterError::Internal(corral_storage::error_chain(&e));
                let log = self.0.store.log_store().map_err(internal)?;
                let sm = self.0.store.state_machine::<_, ClusterState>().map_err(internal)?;
                let state = sm.handle();
                let raft = Raft::new(id, Arc::new(raft_config), self.0.network.clone(), log, sm)
                    .await
                    .map_err(|e| ClusterError::Internal(format!("cannot start Raft: {e}")))?;
                let batcher = crate::batcher::Batcher::spawn(raft.clone());
                self.spawn_identity_keeper(id, raft.clone(), state.clone());
                let elections =
                    Arc::new(election::Elections::new(c.election_timeout_ms, c.heartbeat_ms, raft.metrics()));
                let parts = RaftParts { id, raft, state, batcher, elections };
                self.spawn_elections(&parts);
                self.spawn_election_meter(&parts);
                Ok::<_, ClusterError>(parts)
            })
            .await?;
        if self.0.started.borrow().is_none() {
            self.0.started.send_replace(Some(parts.clone()));
        }
        Ok(parts)
    }

    pub fn parts(&self) -> Result<&RaftParts, ClusterError> {
        self.0.raft.get().ok_or_else(|| {
            ClusterError::FailedPrecondition(
                "this node is not part of a cluster yet: run `corral --socket PATH cluster bootstrap` or `... cluster join` on its host"
                    .into(),
            )
        })
    }

    pub fn state(&self) -> Result<&StateHandle, ClusterError> {
        Ok(&self.parts()?.state)
    }

    /// Waits, at most `patience`, until VM `id` in this node's applied state satisfies `done`;
    /// returns it as it is then (`None`: the VM is gone).
    pub async fn wait_vm(
        &self,
        id: uuid::Uuid,
        patience: std::time::Duration,
        done: impl Fn(&corral_raft::model::Vm) -> bool,
    ) -> Result<Option<corral_raft::model::Vm>, ClusterError> {
        let state = self.state()?;
        let mut applied = state.subscribe();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let vm = state.read(|s| s.vms.get(&id).cloned());
            match vm {
                Some(v) if !done(&v) => {}
                other => return Ok(other),
            }
            // Each applied entry wakes this; a deadline bounds the wait.
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(state.read(|s| s.vms.get(&id).cloned())),
            }
        }
    }

    /// Reads the local state after making it linearizable (unless `stale`).
    pub async fn read<T>(&self, stale: bool, f: impl FnOnce(&ClusterState) -> T) -> Result<T, ClusterError> {
        let parts = self.parts()?;
        if !stale {
            self.read_barrier(parts).await?;
        }
        Ok(parts.state.read(f))
    }

    async fn read_barrier(&self, parts: &RaftParts) -> Result<(), ClusterError> {
        match self.route(LeaderRequest::ReadIndex, 0).await? {
            LeaderResponse::ReadIndex(index) => wait_applied(parts, index).await,
            other => Err(unexpected(other)),
        }
    }

    /// Proposes `op` through the leader and returns what applying it produced, once this node
    /// has applied it too.
    pub async fn write(&self, request_id: Option<Uuid>, op: Op) -> Result<Outcome, ClusterError> {
        let started = std::time::Instant::now();
        let written = self.write_routed(request_id, op).await;
        let meters = &self.0.meters;
        // A write refused by the rules (not found, invalid, ...) went through Raft like any
        // other; only a write the cluster could not take is an error of the write path.
        let failed = matches!(
            &written,
            Err(ClusterError::Internal(_) | ClusterError::Unavailable(_) | ClusterError::Unreachable(_))
        );
        if failed {
            meters.write_errors.inc();
        } else {
            meters.write_seconds.observe(started.elapsed().as_secs_f64());
        }
        written
    }

    async fn write_routed(&self, request_id: Option<Uuid>, op: Op) -> Result<Outcome, ClusterError> {
        match self.route(LeaderRequest::Write { request_id, op: Box::new(op) }, 0).await? {
            LeaderResponse::Written(Reply(r), index) => {
                // Whoever asked next reads this node's copy: let it include this write.
                wait_applied(self.parts()?, index).await?;
                r
            }
            other => Err(unexpected(other)),
        }
    }

    /// This node's own OVF store: every VM's last committed document, by VM id. Needs no
    /// quorum, no leader, not even a cluster.
    pub fn local_ovf_store(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let docs = self.0.store.documents().map_err(|e| ClusterError::Internal(format!("OVF store: {e}")))?;
        Ok(docs.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect())
    }

    /// This node's OVF store, for metrics: the documents it holds (None: unreadable), the
    /// documents this process wrote or removed, and when it last did (Unix ms; 0: not yet).
    pub fn local_ovf_stats(&self) -> (Option<usize>, u64, u64) {
        let (written, last_ms) = corral_storage::documents_written();
        (self.0.store.document_count().ok(), written, last_ms)
    }

    /// One document of this node's own OVF store, by VM id.
    pub fn local_ovf_document(&self, vm: uuid::Uuid) -> Result<Option<String>, ClusterError> {
        let key = corral_raft::documents::key(vm);
        let doc = self.0.store.document(&key).map_err(|e| ClusterError::Internal(format!("OVF store: {e}")))?;
        Ok(doc.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The engine VM an operator started here by hand (`engine start --local`) and the cluster
    /// has not taken over yet; a node-local fact, kept across restarts, never replicated.
    pub fn hand_started_engine(&self) -> Option<Uuid> {
        let value = self.0.store.get_local(HAND_STARTED_ENGINE).ok().flatten()?;
        Uuid::from_slice(&value).ok()
    }

    pub fn set_hand_started_engine(&self, vm: Option<Uuid>) -> Result<(), ClusterError> {
        let value = vm.as_ref().map_or(&[][..], |id| id.as_bytes());
        self.0
            .store
            .set_local(HAND_STARTED_ENGINE, value)
            .map_err(|e| ClusterError::Internal(format!("local store: {e}")))
    }

    /// The hosts this voter promised a leader not to renew (see `crate::witness`); a node-local
    /// fact, kept across restarts, never replicated. Unreadable entries are dropped with a log.
    pub fn frozen_hosts(&self) -> BTreeMap<NodeId, Frozen> {
        let Some(value) = self.0.store.get_local(FROZEN_HOSTS).ok().flatten() else { return BTreeMap::new() };
        let text = String::from_utf8_lossy(&value);
        let mut out = BTreeMap::new();
        for item in text.split(';').filter(|i| !i.is_empty()) {
            let nums: Vec<u64> = item.split(':').filter_map(|n| n.parse().ok()).collect();
            match nums[..] {
                [host, term, applied] => {
                    out.insert(host, Frozen { term, applied });
                }
                _ => tracing::warn!("an unreadable frozen-host entry '{item}' is dropped"),
            }
        }
        out
    }

    /// Saves the hosts this voter promised not to renew; on disk when this returns (logged if not:
    /// the promise then holds only until a restart).
    pub fn set_frozen_hosts(&self, frozen: &BTreeMap<NodeId, Frozen>) {
        let text: String = frozen.iter().map(|(h, f)| format!("{h}:{}:{};", f.term, f.applied)).collect();
        if let Err(e) = self.0.store.set_local(FROZEN_HOSTS, text.as_bytes()) {
            tracing::error!("cannot save the hosts being declared down: {e}");
        }
    }

    /// Runs `req` on the leader: here when this node leads, else handed to the leader, unless
    /// it was handed on `MAX_HOPS` times already. When the leader cannot even be connected to
    /// (it died), waits for the next leader and hands it there instead.
    pub async fn route(&self, req: LeaderRequest, hops: u8) -> Result<LeaderResponse, ClusterError> {
        let parts = self.parts()?;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut failed: Option<(NodeId, u64)> = None;
        loop {
            let (leader, term) = self.wait_for_leader(parts, deadline, failed).await?;
            if leader == parts.id {
                return self.leader_only(req, hops).await;
            }
            if hops >= MAX_HOPS {
                return Err(ClusterError::Unavailable(
                    "the leader moved while the request was forwarded; try again".into(),
                ));
            }
            let address = node_address(parts, leader)?;
            let forwarded = self.0.network.forward(&address, &req, hops + 1, FORWARD_TIMEOUT);
            // A leader that froze (SIGSTOP, a stalled machine) accepts the request and never
            // answers; once another node leads, a request that is safe to send twice (a read
            // index, a write the cluster de-duplicates by its id) goes there instead.
            let resendable =
                matches!(&req, LeaderRequest::ReadIndex | LeaderRequest::Write { request_id: Some(_), .. });
            let answer = tokio::select! {
                answer = forwarded => answer,
                () = leader_moved(parts, leader), if resendable => {
                    tracing::debug!("the leader changed while node {leader} had the request; sending it to the new one");
                    failed = Some((leader, term));
                    continue;
                }
            };
            match answer {
                Err(ClusterError::Unreachable(msg)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("{msg}; waiting for another leader");
                    failed = Some((leader, term));
                }
                other => return other,
            }
        }
    }

    /// Runs a leader-only request on this node; if leadership moved meanwhile, hands it on
    /// (within the hop limit).
    async fn leader_only(&self, req: LeaderRequest, hops: u8) -> Result<LeaderResponse, ClusterError> {
        let parts = self.parts()?;
        // Check-quorum: a leader that hears from no majority takes no writes and gives no reads.
        if matches!(req, LeaderRequest::Write { .. } | LeaderRequest::ReadIndex) {
            parts.check_quorum()?;
        }
        match req {
            LeaderRequest::Write { request_id, op } => {
                if matches!(*op, Op::Batch(_)) {
                    return Err(ClusterError::invalid("op", "batches are made by the leader, not sent to it"));
                }
                // Bounded like every wait on a write: openraft never answers an entry that a
                // deposed leader appended and then lost to an installed snapshot.
                let proposed = tokio::time::timeout(FORWARD_TIMEOUT, parts.batcher.propose(request_id, (*op).clone()));
                let Ok(proposed) = proposed.await else {
                    return Err(ClusterError::Unavailable(format!(
                        "the write was not answered within {} s; leadership may have moved, and it may still apply",
                        FORWARD_TIMEOUT.as_secs()
                    )));
                };
                match proposed {
                    Ok((reply, index)) => Ok(LeaderResponse::Written(reply, index)),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) if hops < MAX_HOPS => {
                        let address = self.leader_address(parts, f).await?;
                        let req = LeaderRequest::Write { request_id, op };
                        self.0.network.forward(&address, &req, hops + 1, FORWARD_TIMEOUT).await
                    }
                    Err(e) => Err(write_error(e)),
                }
            }
            LeaderRequest::ReadIndex => {
                let deadline = tokio::time::Instant::now() + READ_WAIT;
                loop {
                    match parts.raft.ensure_linearizable().await {
                        // openraft's read index is its committed index, which a leader restarted
                        // without losing its term may hold stale (it was saved lazily); everything
                        // in the leader's log commits while it leads, so reading after all of it
                        // can never miss an acknowledged write.
                        Ok(log_id) => {
                            let last_log = parts.raft.metrics().borrow().last_log_index.unwrap_or(0);
                            break Ok(LeaderResponse::ReadIndex(log_id.map_or(0, |l| l.index).max(last_log)));
                        }
                        // A leader that still hears a majority (check-quorum) but could not
                        // confirm it this once (members switching to TLS as they apply the level
                        // that requires it) asks again; one cut off refuses at once.
                        Err(_) if tokio::time::Instant::now() < deadline && parts.check_quorum().is_ok() => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => {
                            break Err(ClusterError::Unavailable(format!("this node cannot serve a read index: {e}")))
                        }
                    }
                }
            }
            LeaderRequest::Admit { token_hash, id } => self.admit(parts, &token_hash, id).await,
            LeaderRequest::RemoveHost { name } => self.remove_host(parts, &name, None).await,
            LeaderRequest::RemoveHostFor { name, actor } => self.remove_host(parts, &name, Some(actor)).await,
            LeaderRequest::Heartbeat { .. } => {
                Err(ClusterError::invalid("request", "heartbeats go straight to the leader, not through forwarding"))
            }
            LeaderRequest::Join { token, name, address, facts, csr } => {
                self.join_here(parts, &token, &name, &address, &facts, &csr).await
            }
            LeaderRequest::Sign { csr, role } => self.sign(parts, &csr, &role).await,
            LeaderRequest::EnsureCa => self.ensure_ca(parts).await,
            LeaderRequest::Recertify { token, name, csr } => self.recertify(parts, &token, &name, &csr).await,
        }
    }

    /// Proposes `op` on this node only if it leads now; never hands it on. For commands that
    /// speak for this node as leader (it must not be applied on another leader's behalf).
    ///
    /// Bounded by one lease: openraft never answers a write whose entry a deposed leader
    /// appended and then lost to an installed snapshot, and a caller that waited for it would
    /// hang for good (a leader's liveness loop did, once).
    pub async fn propose_as_leader(&self, op: Op) -> Result<Outcome, ClusterError> {
        let parts = self.parts()?;
        parts.check_quorum()?;
        let cmd = Command { at_ms: now_ms(), request_id: None, op };
        let bound = Duration::from_millis(self.0.config.lease_ms);
        match tokio::time::timeout(bound, parts.raft.client_write(cmd)).await {
            Ok(written) => written.map_err(write_error)?.data.0,
            Err(_) => Err(ClusterError::Unavailable(format!(
                "the write was not answered within {} ms; leadership may have moved",
                bound.as_millis()
            ))),
        }
    }

    /// Waits until some node is known to lead, other than `not` (a leader, term pair that
    /// could not be reached), and returns it with its term.
    async fn wait_for_leader(
        &self,
        parts: &RaftParts,
        deadline: tokio::time::Instant,
        not: Option<(NodeId, u64)>,
    ) -> Result<(NodeId, u64), ClusterError> {
        let mut rx = parts.raft.metrics();
        loop {
            let seen = {
                let m = rx.borrow_and_update();
                m.current_leader.map(|l| (l, m.current_term))
            };
            if let Some(found) = seen {
                if Some(found) != not {
                    return Ok(found);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(ClusterError::Unavailable("the cluster has no leader right now; try again".into())),
            }
        }
    }

    async fn leader_address(
        &self,
        parts: &RaftParts,
        f: ForwardToLeader<NodeId, NodeInfo>,
    ) -> Result<String, ClusterError> {
        match (f.leader_node, f.leader_id) {
            (Some(n), _) => Ok(n.address),
            (None, Some(id)) => node_address(parts, id),
            (None, None) => {
                let deadline = tokio::time::Instant::now() + LEADER_WAIT;
                node_address(parts, self.wait_for_leader(parts, deadline, None).await?.0)
            }
        }
    }

    /// Counts the terms that begin and the leader changes this node sees, from openraft's
    /// leadership metrics (they change only with those); lives as long as Raft does.
    fn spawn_election_meter(&self, parts: &RaftParts) {
        let meters = self.0.meters.clone();
        let mut rx = parts.server_metrics();
        tokio::spawn(async move {
            let seen = |m: &RaftServerMetrics<NodeId, NodeInfo>| (m.vote.leader_id.term, m.current_leader);
            let (mut term, mut leader) = seen(&rx.borrow_and_update());
            while rx.changed().await.is_ok() {
                let (t, l) = seen(&rx.borrow_and_update());
                if t > term {
                    meters.elections.inc_by(t - term);
                }
                if l != leader {
                    meters.leader_changes.inc();
                }
                (term, leader) = (t.max(term), l);
            }
        });
    }

    /// Writes the identity file once the state names the cluster, and keeps the members'
    /// addresses for `--rejoin`; lives as long as Raft does.
    fn spawn_identity_keeper(&self, id: NodeId, raft: Raft, state: StateHandle) {
        let node = self.0.clone();
        tokio::spawn(async move {
            let mut applied = state.subscribe();
            let mut has_identity = false;
            let mut metrics = raft.metrics();
            let mut known: Vec<String> = Vec::new();
            loop {
                if !has_identity {
                    match state.read(|s| crate::identity::ensure(&node.config, &node.store, id, s)) {
                        Ok(done) => has_identity = done,
                        Err(e) => tracing::error!("cannot write the identity file: {e:#}"),
                    }
                }
                let addresses: Vec<String> = {
                    let m = metrics.borrow_and_update();
                    m.membership_config.membership().nodes().map(|(_, n)| n.address.clone()).collect()
                };
                if addresses != known && !addresses.is_empty() {
                    crate::identity::remember_peers(&node.config.data_dir, &addresses);
                    known = addresses;
                }
                tokio::select! {
                    r = applied.changed(), if !has_identity => if r.is_err() { return },
                    r = metrics.changed() => if r.is_err() { return },
                }
            }
        });
    }

    /// Stops Raft and flushes the store; the data dir is then consistent for a restart.
    pub async fn shutdown(&self) {
        if let Some(p) = self.0.raft.get() {
            if let Err(e) = p.raft.shutdown().await {
                tracing::warn!("Raft did not shut down cleanly: {e}");
            }
        }
        if let Err(e) = self.0.store.flush() {
            tracing::warn!("final flush failed: {e}");
        }
    }
}

/// Whether `agreed` holds more than half of `voters` (one configuration of a membership).
pub fn majority_of(voters: &std::collections::BTreeSet<NodeId>, agreed: &std::collections::BTreeSet<NodeId>) -> bool {
    voters.intersection(agreed).count() * 2 > voters.len()
}

async fn wait_applied(parts: &RaftParts, index: u64) -> Result<(), ClusterError> {
    if parts.state.last_applied().map_or(0, |l| l.index) >= index {
        return Ok(());
    }
    parts
        .raft
        .wait(Some(READ_WAIT))
        .applied_index_at_least(Some(index), "linearizable read")
        .await
        .map(|_| ())
        .map_err(|e| ClusterError::Unavailable(format!("this node did not catch up with the leader: {e}")))
}

/// Returns once a node other than `leader` is known to lead (never, if none does).
async fn leader_moved(parts: &RaftParts, leader: NodeId) {
    let mut rx = parts.raft.metrics();
    loop {
        if rx.borrow_and_update().current_leader.is_some_and(|l| l != leader) {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn node_address(parts: &RaftParts, id: NodeId) -> Result<String, ClusterError> {
    let metrics = parts.raft.metrics().borrow().clone();
    metrics.membership_config.membership().get_node(&id).map(|n| n.address.clone()).ok_or_else(|| {
        ClusterError::Unavailable(format!("the leader (node {id}) is not in this node's membership yet"))
    })
}

fn write_error(e: RaftError<ClientWriteError>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            ClusterError::Unavailable("leadership changed while writing; try again".into())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ClusterError::FailedPrecondition(format!("membership change refused: {e}"))
        }
        RaftError::Fatal(e) => ClusterError::Unavailable(format!("Raft stopped on this node: {e}")),
    }
}

fn unexpected(resp: LeaderResponse) -> ClusterError {
    ClusterError::Internal(format!("the leader answered with an unexpected message: {resp:?}"))
}
