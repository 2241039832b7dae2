//! The cluster's certificates, as the cluster handle runs them: the CA made on the leader (its
//! key on the voters only), members' certificates signed on the leader from their CSRs (at
//! join, when the cluster prepares to require TLS, and before they expire), users' client
//! certificates, and the keeper task that makes this node's TLS follow the replicated state:
//! dial members with TLS once the cluster level requires it, fetch a certificate when the
//! cluster has a CA and this node has none, renew it, and fetch the CA key when this node is a
//! voter without it.

use std::sync::Arc;
use std::time::Duration;

use corral_raft::command::{Op, Outcome};
use corral_raft::forward::{LeaderRequest, LeaderResponse, SignFor};
use corral_raft::model::{HostFacts, TLS_LEVEL};
use corral_raft::peer::{PeerBody, PeerRequest, PeerResponse};
use corral_raft::{ClusterError, NodeId, Reply};

use super::{node_address, unexpected, Cluster, RaftParts};
use crate::tls::{self, Live, Role};
use crate::{now_ms, token};

/// How often the keeper looks at this node's certificates.
const KEEP_EVERY: Duration = Duration::from_secs(5);
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
const LEVEL_EVERY: Duration = Duration::from_millis(200);

fn internal(e: tls::TlsError) -> ClusterError {
    ClusterError::Internal(e.to_string())
}

impl Cluster {
    pub fn tls(&self) -> &Arc<Live> {
        &self.0.tls
    }

    /// The cluster CA's certificate, from the replicated state.
    pub fn ca_pem(&self) -> Option<String> {
        self.0.raft.get().and_then(|p| p.state.read(|s| s.cluster.as_ref().and_then(|c| c.ca_pem.clone())))
    }

    /// Whether the cluster requires TLS: its level, or, before this node has the state, a
    /// certificate it was given at join.
    pub fn requires_tls(&self) -> bool {
        match self.0.raft.get().and_then(|p| p.state.read(|s| s.cluster.as_ref().map(|c| c.level))) {
            Some(level) => level >= TLS_LEVEL,
            None => self.0.network.secure(),
        }
    }

    /// Makes this bootstrapping node the CA: a new CA, its key kept here, and this node's own
    /// certificate signed by it. Returns the CA's certificate.
    pub(super) fn make_ca_here(&self, cluster: &str, addresses: &[String]) -> Result<String, ClusterError> {
        let (ca, ca_key) = tls::make_ca(cluster).map_err(internal)?;
        self.0.tls.files().save_ca_key(&ca_key).map_err(internal)?;
        let (key, csr) = tls::key_and_csr().map_err(internal)?;
        let role = Role::Node { name: &self.0.config.name, addresses };
        let cert = tls::sign(&ca, &ca_key, &csr, role, self.0.config.cert_days).map_err(internal)?;
        self.0.tls.install(&ca, &cert, &key).map_err(internal)?;
        self.0.network.set_tls(self.0.tls.client_config());
        Ok(ca)
    }

    /// On the leader: the CA's key, from this node's disk or from another voter.
    async fn ca_key(&self, parts: &RaftParts) -> Result<String, ClusterError> {
        if let Some(k) = self.0.tls.files().ca_key() {
            return Ok(k);
        }
        self.fetch_ca_key(parts).await?.ok_or_else(|| {
            ClusterError::Unavailable("no voter that answered holds the cluster CA's key yet; try again".into())
        })
    }

    /// Fetches the CA key from the other voters now (a voter that just joined).
    pub(super) async fn fetch_ca_key_now(&self) -> Result<(), ClusterError> {
        let parts = self.parts()?;
        // The voters learn of this node's promotion as they apply it: give them a moment.
        for _ in 0..20 {
            if self.fetch_ca_key(parts).await?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ClusterError::Unavailable("no voter gave the CA key".into()))
    }

    /// Asks the other voters for the CA key and keeps it; `None` if none answered with it.
    async fn fetch_ca_key(&self, parts: &RaftParts) -> Result<Option<String>, ClusterError> {
        let voters: Vec<NodeId> = parts.metrics().membership_config.membership().voter_ids().collect();
        for v in voters.into_iter().filter(|v| *v != parts.id) {
            let Ok(address) = node_address(parts, v) else { continue };
            let req = PeerRequest { from: parts.id, body: PeerBody::CaKey };
            if let Ok(PeerResponse::CaKey { key_pem: Some(k) }) =
                self.0.network.peer(&address, &req, PEER_TIMEOUT).await
            {
                self.0.tls.install_ca_key(&k).map_err(internal)?;
                tracing::info!(from = v, "received the cluster CA's key");
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// Answers a voter's `CaKey`: only to a voter (the caller's certificate was checked against
    /// `from` by the transport).
    pub(super) fn answer_ca_key(&self, from: NodeId) -> Result<PeerResponse, ClusterError> {
        let parts = self.parts()?;
        if !parts.metrics().membership_config.membership().voter_ids().any(|v| v == from) {
            return Err(ClusterError::PermissionDenied(format!(
                "node {from} is not a voter: the CA key stays on voters"
            )));
        }
        Ok(PeerResponse::CaKey { key_pem: self.0.tls.files().ca_key() })
    }

    /// On the leader: makes the CA if the cluster has none (the key stays here, voters fetch
    /// it), and returns its certificate.
    pub(super) async fn ensure_ca(&self, parts: &RaftParts) -> Result<LeaderResponse, ClusterError> {
        let _guard = self.0.admit_lock.lock().await;
        if let Some(ca_pem) = self.ca_pem() {
            return Ok(LeaderResponse::Ca { ca_pem });
        }
        let name = parts.state.read(|s| s.cluster.as_ref().map(|c| c.name.clone())).unwrap_or_default();
        let (ca, ca_key) = tls::make_ca(&name).map_err(internal)?;
        self.0.tls.files().save_ca_key(&ca_key).map_err(internal)?;
        self.propose_as_leader(Op::SetCa { ca_pem: ca.clone() }).await?;
        tracing::info!("made the cluster CA");
        Ok(LeaderResponse::Ca { ca_pem: ca })
    }

    /// On the leader: signs a member's or a user's CSR.
    pub(super) async fn sign(
        &self,
        parts: &RaftParts,
        csr: &str,
        role: &SignFor,
    ) -> Result<LeaderResponse, ClusterError> {
        let ca_pem = self.ca_pem().ok_or_else(|| {
            ClusterError::FailedPrecondition("the cluster has no CA yet (`cluster upgrade` makes it)".into())
        })?;
        let ca_key = self.ca_key(parts).await?;
        let days = self.0.config.cert_days;
        let cert_pem = match role {
            SignFor::Member { host } => {
                let h = parts
                    .state
                    .read(|s| s.hosts.get(host).cloned())
                    .ok_or_else(|| ClusterError::NotFound(format!("host {host} is not a member")))?;
                tls::sign(
                    &ca_pem,
                    &ca_key,
                    csr,
                    Role::Node { name: &h.name, addresses: std::slice::from_ref(&h.address) },
                    days,
                )
            }
            SignFor::User { name } => {
                corral_raft::validate::name("user", name)?;
                let made_ms = parts.state.read(|s| s.auth.users.get(name).map_or(0, |u| u.created_ms));
                tls::sign(&ca_pem, &ca_key, csr, Role::User { name, made_ms }, days)
            }
        }
        .map_err(|e| ClusterError::invalid("csr", e.to_string()))?;
        Ok(LeaderResponse::Signed { cert_pem, ca_pem })
    }

    /// On the leader: a node joins with the token itself and a CSR.
    pub(super) async fn join_here(
        &self,
        parts: &RaftParts,
        token: &str,
        name: &str,
        address: &str,
        facts: &HostFacts,
        csr: &str,
    ) -> Result<LeaderResponse, ClusterError> {
        let token_hash = token::hash(token);
        if !parts.state.read(|s| s.token_valid(&token_hash, now_ms())) {
            return Err(ClusterError::PermissionDenied(
                "the join token is not valid or has expired, or was revoked".into(),
            ));
        }
        let op =
            Op::RegisterHost { token_hash, name: name.to_string(), address: address.to_string(), facts: facts.clone() };
        let write = LeaderRequest::Write { request_id: None, op: Box::new(op) };
        let (id, cluster_name) = match Box::pin(self.route(write, 0)).await? {
            LeaderResponse::Written(Reply(Ok(Outcome::HostRegistered { id, cluster_name })), _) => (id, cluster_name),
            LeaderResponse::Written(Reply(Err(e)), _) => return Err(e),
            other => return Err(unexpected(other)),
        };
        match self.sign(parts, csr, &SignFor::Member { host: id }).await? {
            LeaderResponse::Signed { cert_pem, ca_pem } => {
                Ok(LeaderResponse::Joined { id, cluster_name, ca_pem, cert_pem })
            }
            other => Err(unexpected(other)),
        }
    }

    /// On the leader: a member that lost its key proves itself with a token (`--rejoin
    /// --token-file`) and gets a new certificate for the host it still is.
    pub(super) async fn recertify(
        &self,
        parts: &RaftParts,
        token: &str,
        name: &str,
        csr: &str,
    ) -> Result<LeaderResponse, ClusterError> {
        if !parts.state.read(|s| s.token_valid(&token::hash(token), now_ms())) {
            return Err(ClusterError::PermissionDenied(
                "the join token is not valid or has expired, or was revoked".into(),
            ));
        }
        let id = parts.state.read(|s| s.host_by_name(name).map(|h| h.id)).ok_or_else(|| {
            ClusterError::NotFound(format!("host '{}' is not a member", corral_raft::error::quote(name)))
        })?;
        self.sign(parts, csr, &SignFor::Member { host: id }).await
    }

    /// A user's client certificate (`cluster credentials`), signed on the leader.
    pub async fn user_certificate(&self, user: &str, csr: &str) -> Result<(String, String), ClusterError> {
        let role = SignFor::User { name: user.to_string() };
        match self.route(LeaderRequest::Sign { csr: csr.to_string(), role }, 0).await? {
            LeaderResponse::Signed { cert_pem, ca_pem } => Ok((cert_pem, ca_pem)),
            other => Err(unexpected(other)),
        }
    }

    /// Runs for as long as this node does: see the module's doc.
    pub(super) async fn keep_certificates(self) {
        let mut last = tokio::time::Instant::now() - KEEP_EVERY;
        loop {
            // The level is looked at often: members must dial with TLS soon after it is raised.
            if !self.0.network.secure() && self.0.raft.get().is_some() && self.requires_tls() {
                tracing::info!("the cluster requires TLS: members are dialled with it from now on");
                self.0.network.set_secure(true);
            }
            if last.elapsed() >= KEEP_EVERY {
                last = tokio::time::Instant::now();
                if let Some(parts) = self.0.raft.get() {
                    if let Err(e) = self.keep_once(parts).await {
                        tracing::warn!("certificates: {e}");
                    }
                }
            }
            tokio::time::sleep(LEVEL_EVERY).await;
        }
    }

    async fn keep_once(&self, parts: &RaftParts) -> Result<(), ClusterError> {
        let Some(ca) = self.ca_pem() else { return Ok(()) };
        let due = match self.0.tls.material() {
            None => Some("this node has no certificate of the cluster"),
            Some(m) if m.ca_pem.trim() != ca.trim() => Some("this node's certificate is not of the cluster's CA"),
            Some(m) => {
                let (from, to) = tls::validity(&m.cert_pem).map_err(internal)?;
                tls::renewal_due(from, to, now_ms()).then_some("this node's certificate is due for renewal")
            }
        };
        if let Some(why) = due {
            tracing::info!("{why}: asking the leader for one");
            let (key, csr) = tls::key_and_csr().map_err(internal)?;
            let req = LeaderRequest::Sign { csr, role: SignFor::Member { host: parts.id } };
            match self.route(req, 0).await? {
                LeaderResponse::Signed { cert_pem, ca_pem } => {
                    self.0.tls.install(&ca_pem, &cert_pem, &key).map_err(internal)?;
                    self.0.network.set_tls(self.0.tls.client_config());
                    tracing::info!("installed a new certificate of the cluster");
                }
                other => return Err(unexpected(other)),
            }
        }
        let voter = parts.metrics().membership_config.membership().voter_ids().any(|v| v == parts.id);
        if voter && self.0.tls.files().ca_key().is_none() {
            self.fetch_ca_key(parts).await?;
        }
        Ok(())
    }
}
