//! One corrald: its identity, its store, its Raft instance (made at bootstrap or join, or at
//! start-up when the data dir already holds an identity), and the few operations the API
//! layer builds on: write through the leader, read linearizably, bootstrap, join, admit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use corral_raft::command::{NewHost, Op, Outcome};
use corral_raft::forward::{LeaderRequest, LeaderResponse, MAX_HOPS};
use corral_raft::model::{HostFacts, HostState};
use corral_raft::network::Network;
use corral_raft::typ::{ClientWriteError, Raft, RaftError, StateHandle};
use corral_raft::{ClusterError, ClusterState, Command, NodeId, NodeInfo, Reply};
use corral_storage::Store;
use openraft::error::ForwardToLeader;
use openraft::{ChangeMembers, SnapshotPolicy};
use tokio::sync::{Mutex, OnceCell};
use uuid::Uuid;

use crate::agent::libvirt::Hypervisor;
use crate::config::Config;
use crate::token;

/// How long a request waits for a leader to exist (elections take well under a second).
const LEADER_WAIT: Duration = Duration::from_secs(3);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const READ_WAIT: Duration = Duration::from_secs(5);
pub const DEFAULT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

pub struct Node {
    pub config: Config,
    pub facts: HostFacts,
    pub hypervisor: Hypervisor,
    pub images: crate::images::StorageDomain,
    store: Store,
    pub network: Network,
    raft: OnceCell<RaftParts>,
    /// Serializes membership changes on the leader: openraft allows one at a time.
    admit_lock: Mutex<()>,
    /// Heartbeat times, as the leader sees them.
    pub liveness: crate::controller::liveness::Liveness,
    /// This host's lease, as its agent holds it.
    pub lease: Arc<crate::agent::lease::Lease>,
}

#[derive(Clone)]
pub struct RaftParts {
    pub id: NodeId,
    pub raft: Raft,
    pub state: StateHandle,
    batcher: crate::batcher::Batcher,
}

impl Node {
    pub async fn open(config: Config, facts: HostFacts, hypervisor: Hypervisor) -> anyhow::Result<Arc<Node>> {
        let crate::identity::Opened { store, node_id } = crate::identity::open(&config)?;
        let config_lease = config.clone();
        let node = Arc::new(Node {
            images: crate::images::StorageDomain::new(&config.storage_dir),
            hypervisor,
            config,
            facts,
            network: Network::new(store.write_format()),
            store,
            raft: OnceCell::new(),
            admit_lock: Mutex::new(()),
            liveness: Default::default(),
            lease: Arc::new(crate::agent::lease::Lease::new(&config_lease)),
        });
        if let Some(id) = node_id {
            node.start_raft(id).await.map_err(|e| {
                anyhow::anyhow!(
                    "the data dir {} could not be read: {e}. If it is damaged, run corrald again with --rejoin to \
                     set it aside and catch up from the cluster as the same member",
                    node.config.data_dir.display()
                )
            })?;
            tracing::info!(node_id = id, "resumed from the data dir");
        } else {
            tracing::info!("no identity in the data dir: waiting for `cluster bootstrap` or `cluster join`");
        }
        Ok(node)
    }

    /// Creates this node's Raft instance under `id`; once per process.
    async fn start_raft(self: &Arc<Self>, id: NodeId) -> Result<&RaftParts, ClusterError> {
        self.raft
            .get_or_try_init(|| async {
                let c = &self.config;
                let raft_config = openraft::Config {
                    cluster_name: "corral".into(),
                    heartbeat_interval: c.heartbeat_ms,
                    election_timeout_min: c.election_timeout_ms,
                    election_timeout_max: c.election_timeout_ms * 2,
                    snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
                    max_in_snapshot_log_to_keep: c.keep_logs,
                    install_snapshot_timeout: 2000,
                    ..Default::default()
                }
                .validate()
                .map_err(|e| ClusterError::Internal(format!("bad Raft settings: {e}")))?;
                let internal = |e: corral_storage::Error| ClusterError::Internal(corral_storage::error_chain(&e));
                let log = self.store.log_store().map_err(internal)?;
                let sm = self.store.state_machine::<_, ClusterState>().map_err(internal)?;
                let state = sm.handle();
                let raft = Raft::new(id, Arc::new(raft_config), self.network.clone(), log, sm)
                    .await
                    .map_err(|e| ClusterError::Internal(format!("cannot start Raft: {e}")))?;
                crate::controller::spawn(self.clone(), raft.clone(), state.clone(), id);
                crate::agent::reconcile::spawn(self.clone(), self.hypervisor.clone(), id, state.clone());
                // Before the lease task: its first fencing must spare a hand-started engine VM.
                crate::agent::engine::restore(self);
                crate::agent::lease::spawn(self.clone(), id, state.clone());
                crate::agent::engine::spawn_scores(self.clone(), id, state.clone());
                let batcher = crate::batcher::Batcher::spawn(raft.clone());
                self.spawn_identity_keeper(id, raft.clone(), state.clone());
                Ok(RaftParts { id, raft, state, batcher })
            })
            .await
    }

    pub fn parts(&self) -> Result<&RaftParts, ClusterError> {
        self.raft.get().ok_or_else(|| {
            ClusterError::FailedPrecondition(
                "this node is not part of a cluster yet: run `corral cluster bootstrap` or `corral cluster join`"
                    .into(),
            )
        })
    }

    pub fn state(&self) -> Result<&StateHandle, ClusterError> {
        Ok(&self.parts()?.state)
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
        let docs = self.store.documents().map_err(|e| ClusterError::Internal(format!("OVF store: {e}")))?;
        Ok(docs.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect())
    }

    /// One document of this node's own OVF store, by VM id.
    pub fn local_ovf_document(&self, vm: uuid::Uuid) -> Result<Option<String>, ClusterError> {
        let key = corral_raft::documents::key(vm);
        let doc = self.store.document(&key).map_err(|e| ClusterError::Internal(format!("OVF store: {e}")))?;
        Ok(doc.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// A node-local fact, kept across restarts.
    pub fn local_fact(&self, key: &str) -> Option<Vec<u8>> {
        self.store.get_local(key).ok().flatten()
    }

    pub fn set_local_fact(&self, key: &str, value: &[u8]) -> Result<(), ClusterError> {
        self.store.set_local(key, value).map_err(|e| ClusterError::Internal(format!("local store: {e}")))
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
            match self.network.forward(&address, &req, hops + 1, FORWARD_TIMEOUT).await {
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
        match req {
            LeaderRequest::Write { request_id, op } => {
                if matches!(*op, Op::Batch(_)) {
                    return Err(ClusterError::invalid("op", "batches are made by the leader, not sent to it"));
                }
                match parts.batcher.propose(request_id, (*op).clone()).await {
                    Ok((reply, index)) => Ok(LeaderResponse::Written(reply, index)),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) if hops < MAX_HOPS => {
                        let address = self.leader_address(parts, f).await?;
                        let req = LeaderRequest::Write { request_id, op };
                        self.network.forward(&address, &req, hops + 1, FORWARD_TIMEOUT).await
                    }
                    Err(e) => Err(write_error(e)),
                }
            }
            LeaderRequest::ReadIndex => match parts.raft.ensure_linearizable().await {
                // openraft's read index is its committed index, which a leader restarted
                // without losing its term may hold stale (it was saved lazily); everything
                // in the leader's log commits while it leads, so reading after all of it
                // can never miss an acknowledged write.
                Ok(log_id) => {
                    let last_log = parts.raft.metrics().borrow().last_log_index.unwrap_or(0);
                    Ok(LeaderResponse::ReadIndex(log_id.map_or(0, |l| l.index).max(last_log)))
                }
                Err(e) => Err(ClusterError::Unavailable(format!("this node cannot serve a read index: {e}"))),
            },
            LeaderRequest::Admit { token_hash, id } => self.admit(parts, &token_hash, id).await,
            LeaderRequest::RemoveHost { name } => self.remove_host(parts, &name).await,
            LeaderRequest::Heartbeat { .. } => {
                Err(ClusterError::invalid("request", "heartbeats go straight to the leader, not through forwarding"))
            }
        }
    }

    /// On the leader: a host's heartbeat. Acknowledged (renewing the host's lease) only by a
    /// leader in office whose leadership a quorum confirmed within one heartbeat interval, so
    /// a leader cut off from the majority renews nobody's lease, its own host's included.
    pub fn heartbeat(
        self: &Arc<Self>,
        host: NodeId,
        self_fenced: bool,
        sent_ms: i64,
    ) -> Result<LeaderResponse, ClusterError> {
        let parts = self.parts()?;
        // Hosts' clocks are kept in step (NTP); a heartbeat older than half a lease was held
        // up in the network and says nothing about the host now.
        let age = now_ms() - sent_ms;
        if age > self.config.lease_ms as i64 / 2 {
            tracing::warn!(host, age_ms = age, "stale heartbeat refused (or this host's clock is behind)");
            return Err(ClusterError::Unavailable(format!(
                "the heartbeat is {age} ms old; it is refused (are the hosts' clocks in step?)"
            )));
        }
        let fresh = Duration::from_millis(self.config.host_heartbeat_ms);
        let Some(term) = crate::controller::liveness::in_office(&parts.raft, &parts.state, parts.id, fresh) else {
            return Err(ClusterError::Unavailable(
                "this node is not a leader in office with a quorum behind it; it renews no lease".into(),
            ));
        };
        let alive = parts
            .state
            .read(|s| s.hosts.get(&host).map(|h| h.state.is_alive() || h.state == HostState::Joining))
            .ok_or_else(|| ClusterError::NotFound(format!("host {host} is not a member of this cluster")))?;
        let revive = self.liveness.heartbeat(term, host, !alive || self_fenced)?;
        // Read after the heartbeat was recorded: a `down` committed before is in this index,
        // and one decided after it would have had to see this heartbeat first.
        let index = parts.raft.metrics().borrow().last_log_index.unwrap_or(0);
        if revive {
            let node = self.clone();
            tokio::spawn(async move {
                if let Err(e) = node.propose_as_leader(Op::HostAlive { id: host, self_fenced }).await {
                    tracing::debug!(host, "could not record the host as alive: {e}");
                }
                node.liveness.revived(host);
            });
        }
        Ok(LeaderResponse::HeartbeatAck { index })
    }

    /// Held while Raft membership changes, which openraft takes one at a time.
    pub async fn membership_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.admit_lock.lock().await
    }

    /// Proposes `op` on this node only if it leads now; never hands it on. For commands that
    /// speak for this node as leader (it must not be applied on another leader's behalf).
    pub async fn propose_as_leader(&self, op: Op) -> Result<Outcome, ClusterError> {
        let parts = self.parts()?;
        let cmd = Command { at_ms: now_ms(), request_id: None, op };
        parts.raft.client_write(cmd).await.map_err(write_error)?.data.0
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

    /// Writes the identity file once the state names the cluster, and keeps the members'
    /// addresses for `--rejoin`; lives as long as Raft does.
    fn spawn_identity_keeper(self: &Arc<Self>, id: NodeId, raft: Raft, state: StateHandle) {
        let node = self.clone();
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

    /// `cluster bootstrap`: a fresh node becomes a one-node cluster named `name`.
    pub async fn bootstrap(self: &Arc<Self>, name: &str) -> Result<(NodeId, String, i64), ClusterError> {
        corral_raft::validate::name("cluster name", name)?;
        if let Some(existing) = self.cluster_name() {
            return Err(ClusterError::FailedPrecondition(format!("this node already belongs to cluster '{existing}'")));
        }
        if let Some(was) = crate::identity::ever_member(&self.config, &self.store) {
            return Err(ClusterError::FailedPrecondition(format!(
                "this node was a member of {was}; it cannot bootstrap another. Rejoin it (corrald --rejoin), \
                 or move its data dir aside to make it a new node"
            )));
        }
        let id: NodeId = 1;
        if let Some(parts) = self.raft.get().filter(|p| p.id != id) {
            return Err(ClusterError::FailedPrecondition(format!(
                "this node already has identity {} from an unfinished join; it cannot bootstrap",
                parts.id
            )));
        }
        self.persist_id(id)?;
        let parts = self.start_raft(id).await?.clone();
        let me = NodeInfo { name: self.config.name.clone(), address: self.config.advertise.clone() };
        if !parts.raft.is_initialized().await.map_err(|e| ClusterError::Internal(e.to_string()))? {
            parts
                .raft
                .initialize(BTreeMap::from([(id, me.clone())]))
                .await
                .map_err(|e| ClusterError::Internal(format!("cannot initialize Raft: {e}")))?;
        }
        let token = token::generate();
        let expires = now_ms() + DEFAULT_TOKEN_TTL_MS;
        let op = Op::Bootstrap {
            cluster_name: name.to_string(),
            voters: self.config.voters,
            host: NewHost { id, name: me.name, address: me.address, facts: self.facts.clone() },
            token_hash: token::hash(&token),
            token_expires_ms: expires,
        };
        self.write(None, op).await?;
        // A new cluster runs at the newest level this build supports (oVirt's new clusters get
        // the newest compatibility version); as its own entry, so that every build applies the
        // bootstrap entry alike.
        self.write(None, Op::SetClusterLevel { level: corral_storage::codec::CURRENT }).await?;
        tracing::info!(cluster = name, "bootstrapped a new cluster");
        Ok((id, token, expires))
    }

    /// `cluster join`: this fresh node joins the cluster of `peer` with `token`.
    pub async fn join(self: &Arc<Self>, peer: &str, token: &str) -> Result<(NodeId, String, bool), ClusterError> {
        if let Some(existing) = self.cluster_name() {
            return Err(ClusterError::FailedPrecondition(format!("this node already belongs to cluster '{existing}'")));
        }
        if peer == self.config.advertise {
            return Err(ClusterError::invalid("peer", "must be another node, not this one"));
        }
        // A cluster of an older level reads only its own format: speak it from the first
        // message on (the state, once applied, keeps the format at the cluster's level).
        if let Some(format) = self.network.peer_format(peer).await {
            self.network.speak(format.min(corral_storage::codec::CURRENT));
        }
        let token_hash = token::hash(token);
        let register = LeaderRequest::Write {
            request_id: None,
            op: Box::new(Op::RegisterHost {
                token_hash: token_hash.clone(),
                name: self.config.name.clone(),
                address: self.config.advertise.clone(),
                facts: self.facts.clone(),
            }),
        };
        let (id, cluster_name) = match self.network.forward(peer, &register, 0, FORWARD_TIMEOUT).await? {
            LeaderResponse::Written(Reply(Ok(Outcome::HostRegistered { id, cluster_name })), _) => (id, cluster_name),
            LeaderResponse::Written(Reply(Err(e)), _) => return Err(e),
            other => return Err(unexpected(other)),
        };
        if let Some(parts) = self.raft.get() {
            if parts.id != id {
                return Err(ClusterError::FailedPrecondition(format!(
                    "this node already has identity {} but the cluster registered it as {id}",
                    parts.id
                )));
            }
        }
        self.persist_id(id)?;
        self.start_raft(id).await?;
        let voter = match self.network.forward(peer, &LeaderRequest::Admit { token_hash, id }, 0, ADMIT_TIMEOUT).await?
        {
            LeaderResponse::Admitted { voter } => voter,
            other => return Err(unexpected(other)),
        };
        tracing::info!(cluster = %cluster_name, node_id = id, voter, "joined the cluster");
        Ok((id, cluster_name, voter))
    }

    /// On the leader: adds a registered host as a learner, promotes it while voters are short.
    async fn admit(&self, parts: &RaftParts, token_hash: &str, id: NodeId) -> Result<LeaderResponse, ClusterError> {
        let _guard = self.admit_lock.lock().await;
        let now = now_ms();
        let (host, voters_wanted) = parts.state.read(|s| {
            let host = s.hosts.get(&id).cloned();
            (host, s.cluster.as_ref().map_or(3, |c| c.voters))
        });
        let host = host.ok_or_else(|| ClusterError::NotFound(format!("host {id} is not registered")))?;
        if !parts.state.read(|s| s.token_valid(token_hash, now)) {
            return Err(ClusterError::PermissionDenied("the join token is not valid or has expired".into()));
        }
        let info = NodeInfo { name: host.name.clone(), address: host.address.clone() };
        let membership = parts.raft.metrics().borrow().membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == id) {
            return Err(ClusterError::FailedPrecondition(format!("host '{}' is already a member", host.name)));
        }
        parts.raft.add_learner(id, info, true).await.map_err(write_error)?;
        let voters_now = membership.voter_ids().count();
        let voter = voters_now < voters_wanted as usize;
        if voter {
            parts.raft.change_membership(ChangeMembers::AddVoterIds([id].into()), false).await.map_err(write_error)?;
        }
        self.propose_as_leader(Op::HostJoined { id, voter }).await?;
        Ok(LeaderResponse::Admitted { voter })
    }

    /// On the leader: takes a host that runs no VM out of the cluster's records and out of
    /// Raft. A leaving voter is replaced by a learner when there is one, so the cluster keeps
    /// its number of voters. Safe to run again after a partial failure.
    async fn remove_host(&self, parts: &RaftParts, name: &str) -> Result<LeaderResponse, ClusterError> {
        let _guard = self.admit_lock.lock().await;
        let membership = parts.raft.metrics().borrow().membership_config.membership().clone();
        let in_state = parts.state.read(|s| s.host_by_name(name).map(|h| h.id));
        let in_raft = membership.nodes().find(|(_, n)| n.name == name).map(|(id, _)| *id);
        let id = in_state.or(in_raft).ok_or_else(|| ClusterError::NotFound(format!("host '{name}' not found")))?;
        if id == parts.id {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {name} leads the cluster; stop its corrald first (another host takes over), then remove it"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if in_state.is_some() {
            // Checks, atomically with the removal, that no VM is assigned to the host.
            self.propose_as_leader(Op::RemoveHost { id }).await?;
        }
        let mut promoted = None;
        if voters.contains(&id) {
            let learner = membership.learner_ids().filter(|l| *l != id).min();
            if let Some(l) = learner {
                parts
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds([l].into()), false)
                    .await
                    .map_err(write_error)?;
                promoted = membership.get_node(&l).map(|n| n.name.clone());
            }
            // Voter -> learner first (retain), then out: never drops other learners.
            parts.raft.change_membership(ChangeMembers::RemoveVoters([id].into()), true).await.map_err(write_error)?;
        }
        parts.raft.change_membership(ChangeMembers::RemoveNodes([id].into()), false).await.map_err(write_error)?;
        tracing::info!(host = name, ?promoted, "host removed from the cluster");
        Ok(LeaderResponse::HostRemoved { id, promoted })
    }

    /// `host remove`: runs on the leader, wherever it was asked.
    pub async fn remove_host_anywhere(&self, name: &str) -> Result<(NodeId, Option<String>), ClusterError> {
        match self.route(LeaderRequest::RemoveHost { name: name.to_string() }, 0).await? {
            LeaderResponse::HostRemoved { id, promoted } => Ok((id, promoted)),
            other => Err(unexpected(other)),
        }
    }

    pub fn cluster_name(&self) -> Option<String> {
        self.raft.get().and_then(|p| p.state.read(|s| s.cluster.as_ref().map(|c| c.name.clone())))
    }

    fn persist_id(&self, id: NodeId) -> Result<(), ClusterError> {
        self.store
            .set_local(crate::identity::LOCAL_NODE_ID, &id.to_be_bytes())
            .map_err(|e| ClusterError::Internal(format!("cannot store the node id: {e}")))
    }

    /// Stops Raft and flushes the store; the data dir is then consistent for a restart.
    pub async fn shutdown(&self) {
        self.lease.release(self).await;
        if let Some(p) = self.raft.get() {
            if let Err(e) = p.raft.shutdown().await {
                tracing::warn!("Raft did not shut down cleanly: {e}");
            }
        }
        if let Err(e) = self.store.flush() {
            tracing::warn!("final flush failed: {e}");
        }
    }
}

const ADMIT_TIMEOUT: Duration = Duration::from_secs(60);

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

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
