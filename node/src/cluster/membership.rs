//! Membership: `cluster bootstrap` makes a fresh node a one-node cluster, `cluster join` makes
//! it a member of another's, and on the leader a registered host is admitted (learner, then
//! voter while voters are short) or removed. Membership changes go one at a time.

use corral_raft::model::auth::{Actor, Perm, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use corral_raft::command::{NewHost, Op, Outcome};
use corral_raft::forward::{LeaderRequest, LeaderResponse};
use corral_raft::{ClusterError, NodeId, NodeInfo, Reply};
use openraft::ChangeMembers;

use std::sync::Arc;

use super::{unexpected, write_error, Cluster, RaftParts, FORWARD_TIMEOUT};
use crate::{now_ms, token};

pub const DEFAULT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;
const ADMIT_TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    /// `cluster bootstrap`: a fresh node becomes a one-node cluster named `name`.
    /// At `level` (1: no CA, plaintext; 2: TLS).
    pub async fn bootstrap(&self, name: &str, level: u8) -> Result<(NodeId, String, i64), ClusterError> {
        corral_raft::validate::name("cluster name", name)?;
        if let Some(existing) = self.cluster_name() {
            return Err(ClusterError::FailedPrecondition(format!("this node already belongs to cluster '{existing}'")));
        }
        if let Some(was) = crate::identity::ever_member(&self.0.config, &self.0.store) {
            return Err(ClusterError::FailedPrecondition(format!(
                "this node was a member of {was}; it cannot bootstrap another. Rejoin it (corrald --rejoin), \
                 or move its data dir aside to make it a new node"
            )));
        }
        let id: NodeId = 1;
        if let Some(parts) = self.0.raft.get().filter(|p| p.id != id) {
            return Err(ClusterError::FailedPrecondition(format!(
                "this node already has identity {} from an unfinished join; it cannot bootstrap",
                parts.id
            )));
        }
        self.persist_id(id)?;
        let parts = self.start_raft(id).await?.clone();
        let me = NodeInfo { name: self.0.config.name.clone(), address: self.0.config.advertise.clone() };
        if !parts.raft.is_initialized().await.map_err(|e| ClusterError::Internal(e.to_string()))? {
            parts
                .raft
                .initialize(BTreeMap::from([(id, me.clone())]))
                .await
                .map_err(|e| ClusterError::Internal(format!("cannot initialize Raft: {e}")))?;
        }
        // The CA first: the first token pins it, and this node serves TLS from the start.
        let tls = level >= corral_raft::model::TLS_LEVEL;
        let ca =
            if tls { Some(self.make_ca_here(name, std::slice::from_ref(&self.0.config.advertise))?) } else { None };
        let pin = ca
            .as_deref()
            .map(crate::tls::ca_fingerprint)
            .transpose()
            .map_err(|e| ClusterError::Internal(e.to_string()))?;
        let token = token::generate(pin.as_deref());
        let expires = now_ms() + DEFAULT_TOKEN_TTL_MS;
        let op = Op::Bootstrap {
            cluster_name: name.to_string(),
            voters: self.0.config.voters,
            host: NewHost { id, name: me.name, address: me.address, facts: self.0.facts.clone() },
            token_hash: token::hash(&token),
            token_expires_ms: expires,
        };
        self.write(None, op).await?;
        // A new cluster runs at the newest level this build supports (oVirt's new clusters get
        // the newest compatibility version); as its own entry, so that every build applies the
        // bootstrap entry alike.
        if let Some(ca_pem) = ca {
            self.write(None, Op::SetCa { ca_pem }).await?;
        }
        self.write(None, Op::SetClusterLevel { level }).await?;
        self.0.network.set_secure(tls);
        tracing::info!(cluster = name, "bootstrapped a new cluster");
        Ok((id, token, expires))
    }

    /// `cluster join`: this fresh node joins the cluster of `peer` with `token`.
    pub async fn join(&self, peer: &str, token: &str) -> Result<(NodeId, String, bool), ClusterError> {
        if let Some(existing) = self.cluster_name() {
            return Err(ClusterError::FailedPrecondition(format!("this node already belongs to cluster '{existing}'")));
        }
        if peer == self.0.config.advertise {
            return Err(ClusterError::invalid("peer", "must be another node, not this one"));
        }
        let parsed = token::parse(token)?;
        if let Some(pin) = parsed.ca {
            return self.join_with_ca(peer, token, &pin).await;
        }
        // A cluster of an older level reads only its own format: speak it from the first
        // message on (the state, once applied, keeps the format at the cluster's level).
        if let Some(format) = self.0.network.peer_format(peer).await {
            self.0.network.speak(format.min(corral_storage::codec::CURRENT));
        }
        let token_hash = token::hash(token);
        let register = LeaderRequest::Write {
            request_id: None,
            op: Box::new(Op::RegisterHost {
                token_hash: token_hash.clone(),
                name: self.0.config.name.clone(),
                address: self.0.config.advertise.clone(),
                facts: self.0.facts.clone(),
            }),
        };
        let (id, cluster_name) = match self.0.network.forward(peer, &register, 0, FORWARD_TIMEOUT).await? {
            LeaderResponse::Written(Reply(Ok(Outcome::HostRegistered { id, cluster_name })), _) => (id, cluster_name),
            LeaderResponse::Written(Reply(Err(e)), _) => return Err(e),
            other => return Err(unexpected(other)),
        };
        if let Some(parts) = self.0.raft.get() {
            if parts.id != id {
                return Err(ClusterError::FailedPrecondition(format!(
                    "this node already has identity {} but the cluster registered it as {id}",
                    parts.id
                )));
            }
        }
        self.persist_id(id)?;
        self.start_raft(id).await?;
        let voter =
            match self.0.network.forward(peer, &LeaderRequest::Admit { token_hash, id }, 0, ADMIT_TIMEOUT).await? {
                LeaderResponse::Admitted { voter } => voter,
                other => return Err(unexpected(other)),
            };
        tracing::info!(cluster = %cluster_name, node_id = id, voter, "joined the cluster");
        Ok((id, cluster_name, voter))
    }

    /// Joins a cluster with a CA: dials `peer` with TLS and accepts it only if its CA is the one
    /// the token pins, then sends the token and a CSR; the leader registers this host and signs
    /// its certificate. From then on this node speaks to members with TLS.
    async fn join_with_ca(&self, peer: &str, token: &str, pin: &str) -> Result<(NodeId, String, bool), ClusterError> {
        let (key, csr) = crate::tls::key_and_csr().map_err(|e| ClusterError::Internal(e.to_string()))?;
        let verifier = corral_proto::tls::PinnedVerifier::new(pin);
        let config = corral_proto::tls::client_config(verifier.clone(), None)
            .map_err(|e| ClusterError::Internal(format!("TLS: {e}")))?;
        let channel = corral_raft::network::dial(peer, Some(Arc::new(config)))?;
        let join = LeaderRequest::Join {
            token: token.trim().to_string(),
            name: self.0.config.name.clone(),
            address: self.0.config.advertise.clone(),
            facts: self.0.facts.clone(),
            csr,
        };
        let answer = self.0.network.forward_on(channel, peer, &join, 0, FORWARD_TIMEOUT).await;
        let (id, cluster_name, ca_pem, cert_pem) = match answer {
            Ok(LeaderResponse::Joined { id, cluster_name, ca_pem, cert_pem }) => (id, cluster_name, ca_pem, cert_pem),
            Ok(other) => return Err(unexpected(other)),
            // The handshake failed before anything was sent: say why when it was the CA.
            Err(e) if verifier.ca().is_none() => {
                return Err(ClusterError::PermissionDenied(format!(
                "{peer} did not prove it belongs to the cluster the token names ({pin}); the token was not sent: {e}"
            )))
            }
            Err(e) => return Err(e),
        };
        let got = crate::tls::ca_fingerprint(&ca_pem).map_err(|e| ClusterError::Internal(e.to_string()))?;
        if got != pin {
            return Err(ClusterError::PermissionDenied(format!(
                "the leader's CA is {got}, not the {pin} the token names"
            )));
        }
        if let Some(parts) = self.0.raft.get() {
            if parts.id != id {
                return Err(ClusterError::FailedPrecondition(format!(
                    "this node already has identity {} but the cluster registered it as {id}",
                    parts.id
                )));
            }
        }
        self.0.tls.install(&ca_pem, &cert_pem, &key).map_err(|e| ClusterError::Internal(e.to_string()))?;
        self.0.network.set_tls(self.0.tls.client_config());
        self.0.network.set_secure(true);
        self.0.network.speak(corral_storage::codec::CURRENT);
        self.persist_id(id)?;
        self.start_raft(id).await?;
        let admit = LeaderRequest::Admit { token_hash: token::hash(token), id };
        let voter = match self.0.network.forward(peer, &admit, 0, ADMIT_TIMEOUT).await? {
            LeaderResponse::Admitted { voter } => voter,
            other => return Err(unexpected(other)),
        };
        // A voter may lead, and a leader signs: it holds the CA key from the start (the keeper
        // tries again if this fails).
        if voter {
            if let Err(e) = self.fetch_ca_key_now().await {
                tracing::warn!("the CA key: {e}; trying again later");
            }
        }
        tracing::info!(cluster = %cluster_name, node_id = id, voter, "joined the cluster");
        Ok((id, cluster_name, voter))
    }

    /// On the leader: adds a registered host as a learner, promotes it while voters are short.
    pub(super) async fn admit(
        &self,
        parts: &RaftParts,
        token_hash: &str,
        id: NodeId,
    ) -> Result<LeaderResponse, ClusterError> {
        let _guard = self.0.admit_lock.lock().await;
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
    /// `actor`: whom it is done for (their host.manage is checked again by apply, and the events
    /// name them).
    pub(super) async fn remove_host(
        &self,
        parts: &RaftParts,
        name: &str,
        actor: Option<Actor>,
    ) -> Result<LeaderResponse, ClusterError> {
        let _guard = self.0.admit_lock.lock().await;
        let membership = parts.raft.metrics().borrow().membership_config.membership().clone();
        let in_state = parts.state.read(|s| s.host_by_name(name).map(|h| h.id));
        let in_raft = membership.nodes().find(|(_, n)| n.name == name).map(|(id, _)| *id);
        let id = in_state
            .or(in_raft)
            .ok_or_else(|| ClusterError::NotFound(format!("host '{}' not found", corral_raft::error::quote(name))))?;
        if id == parts.id {
            return Err(ClusterError::FailedPrecondition(format!(
                "host {name} leads the cluster; stop its corrald first (another host takes over), then remove it"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if in_state.is_some() {
            // Checks, atomically with the removal, that no VM is assigned to the host.
            let op = match actor {
                Some(actor) => Op::OnBehalf {
                    actor,
                    credential: None,
                    needs: vec![(Perm::HostManage, Target::Host(id))],
                    op: Box::new(Op::RemoveHost { id }),
                },
                None => Op::RemoveHost { id },
            };
            self.propose_as_leader(op).await?;
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
    /// Removes a host through the leader; `actor`: whom it is done for (cluster level 2).
    pub async fn remove_host_anywhere(
        &self,
        name: &str,
        actor: Option<Actor>,
    ) -> Result<(NodeId, Option<String>), ClusterError> {
        let name = name.to_string();
        let request = match actor {
            Some(actor) => LeaderRequest::RemoveHostFor { name, actor },
            None => LeaderRequest::RemoveHost { name },
        };
        match self.route(request, 0).await? {
            LeaderResponse::HostRemoved { id, promoted } => Ok((id, promoted)),
            other => Err(unexpected(other)),
        }
    }

    pub fn cluster_name(&self) -> Option<String> {
        self.0.raft.get().and_then(|p| p.state.read(|s| s.cluster.as_ref().map(|c| c.name.clone())))
    }

    fn persist_id(&self, id: NodeId) -> Result<(), ClusterError> {
        self.0
            .store
            .set_local(crate::identity::LOCAL_NODE_ID, &id.to_be_bytes())
            .map_err(|e| ClusterError::Internal(format!("cannot store the node id: {e}")))
    }

    /// On the leader: a learner becomes a voter in place of voter `dead`, which stays a
    /// learner (it catches up when it comes back), so the cluster keeps its number of voters.
    pub async fn replace_voter(&self, dead: NodeId, learner: NodeId) -> Result<(), ClusterError> {
        let parts = self.parts()?;
        let _guard = self.0.admit_lock.lock().await;
        parts.raft.change_membership(ChangeMembers::AddVoterIds([learner].into()), false).await.map_err(write_error)?;
        parts.raft.change_membership(ChangeMembers::RemoveVoters([dead].into()), true).await.map_err(write_error)?;
        Ok(())
    }
}
