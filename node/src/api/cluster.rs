//! ClusterService: bootstrap, join, status, join tokens and the cluster-wide scheduling
//! settings.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::*;
use corral_raft::command::{MigrationSettingsChange, Op, Outcome};
use corral_raft::model::{ClusterInfo, ClusterState, SchedulingPolicy};
use corral_raft::ClusterError;
use corral_raft::{validate, vocab};
use futures::future::join_all;

use super::authz::Obj;
use super::{Caller, Handles};
use crate::cluster::DEFAULT_TOKEN_TTL_MS;
use crate::now_ms;
use crate::token;
use corral_raft::model::auth::Operation;

const PING_TIMEOUT: Duration = Duration::from_millis(700);
const MAX_TOKEN_TTL_S: u64 = 30 * 24 * 3600;
/// How long `cluster upgrade` waits for every member to hold a certificate of the new CA.
const TLS_READY_WAIT: Duration = Duration::from_secs(30);

pub struct Api(pub Arc<Handles>);

impl Api {
    pub async fn bootstrap(&self, _cx: &Caller, req: BootstrapRequest) -> Result<BootstrapResponse, ClusterError> {
        let r = req;
        let name = r.cluster_name.clone();
        // Everything about the engine is checked (and its image copied into the storage
        // domain) before the cluster is made, so bad engine options make no cluster either.
        let engine = super::engine::EngineRequest::check(&self.0, &r).await?;
        let level = match r.level {
            None => corral_raft::model::MAX_LEVEL,
            Some(l) if (1..=u32::from(corral_raft::model::MAX_LEVEL)).contains(&l) => l as u8,
            Some(l) => {
                return Err(ClusterError::invalid(
                    "level",
                    format!("must be 1 to {} (got {l})", corral_raft::model::MAX_LEVEL),
                ))
            }
        };
        let (node_id, token, expires) = match self.0.cluster.bootstrap(&name, level).await {
            Ok(done) => done,
            Err(e) => {
                if let Some(engine) = &engine {
                    engine.discard(&self.0).await;
                }
                return Err(e);
            }
        };
        let engine = match engine {
            Some(engine) => Some(engine.create(&self.0).await?),
            None => None,
        };
        let token_id = corral_raft::model::JoinToken::id_of(&token::hash(&token));
        Ok(BootstrapResponse { node_id, token, token_expires_unix_ms: expires, engine, token_id })
    }

    pub async fn join(&self, _cx: &Caller, req: JoinRequest) -> Result<JoinResponse, ClusterError> {
        let JoinRequest { peer, token } = req;
        if peer.trim().is_empty() {
            return Err(ClusterError::invalid("peer", "must be the address of a cluster member"));
        }
        if token.trim().is_empty() {
            return Err(ClusterError::invalid("token", "must not be empty"));
        }
        let (node_id, cluster_name, voter) = self.0.cluster.join(peer.trim(), &token).await?;
        let (role, role_enum) = (role(voter).word().to_string(), role(voter).into());
        Ok(JoinResponse { node_id, cluster_name, role, role_enum })
    }

    pub async fn status(&self, cx: &Caller, req: StatusRequest) -> Result<ClusterStatus, ClusterError> {
        self.0.check(cx, &[(Operation::ClusterStatus, Obj::Cluster)]).await?;
        self.cluster_status(req.stale).await
    }

    /// Scheduling and migration settings; each part is checked before either is written.
    pub async fn edit(&self, cx: &Caller, req: EditClusterRequest) -> Result<ClusterSettings, ClusterError> {
        let rid = cx.request_id()?;
        let r = req;
        let policy: Option<SchedulingPolicy> =
            vocab::read_change("scheduling", r.scheduling_enum, r.scheduling.as_deref())?;
        if let Some(v) = r.cpu_overcommit {
            validate::cpu_overcommit(v)?;
        }
        if r.migrations_per_host == Some(0) {
            return Err(ClusterError::invalid("migrations_per_host", "must be at least 1"));
        }
        let changes = MigrationSettingsChange {
            auto_converge: r.migration_auto_converge,
            compression: r.migration_compression,
            max_downtime_ms: r.migration_max_downtime_ms.map(|v| Some(v).filter(|v| *v > 0)),
            bandwidth_mibps: r.migration_bandwidth_mibps.map(|v| Some(v).filter(|v| *v > 0)),
            max_per_host: r.migrations_per_host,
        };
        let need = [(Operation::ClusterEdit, Obj::Cluster)];
        self.0.check(cx, &need).await?;
        let scheduling = policy.is_some() || r.cpu_overcommit.is_some();
        let migration = changes != MigrationSettingsChange::default();
        if !scheduling && !migration && r.max_snapshots.is_none() {
            return Err(ClusterError::invalid("edit", "nothing to change: give at least one setting"));
        }
        if r.max_snapshots.is_some() {
            super::vms::require_snapshot_level(&self.0)?;
        }
        if scheduling {
            let op = Op::SetSchedulingPolicy { policy, cpu_overcommit: r.cpu_overcommit };
            let op = self.0.permit(cx, &need, op).await?;
            match self.0.cluster.write(rid, op).await? {
                Outcome::Cluster(_) => {}
                _ => return Err(ClusterError::Internal("the write returned no settings".into())),
            }
        }
        if migration {
            // A second request id: the first one already names the scheduling write.
            let rid = rid.map(|_| uuid::Uuid::new_v4());
            let op = self.0.permit(cx, &need, Op::SetMigrationDefaults { changes }).await?;
            self.0.cluster.write(rid, op).await?;
        }
        if let Some(max) = r.max_snapshots {
            let rid = rid.map(|_| uuid::Uuid::new_v4());
            let op = self.0.permit(cx, &need, Op::SetSnapshotCap { max }).await?;
            self.0.cluster.write(rid, op).await?;
        }
        let settings = self.0.cluster.read(true, settings).await?;
        Ok(settings)
    }

    pub async fn create_token(
        &self,
        cx: &Caller,
        req: CreateTokenRequest,
    ) -> Result<CreateTokenResponse, ClusterError> {
        self.token(cx, req).await
    }

    pub async fn upgrade(&self, cx: &Caller, _req: UpgradeRequest) -> Result<UpgradeResponse, ClusterError> {
        self.0.check(cx, &[(Operation::ClusterEdit, Obj::Cluster)]).await?;
        let from = self.0.cluster.read(false, |s| s.cluster.as_ref().map(|c| c.level)).await?;
        let from = from.ok_or_else(|| ClusterError::FailedPrecondition("there is no cluster yet".into()))?;
        let to = corral_raft::model::MAX_LEVEL;
        if from >= to {
            return Err(ClusterError::FailedPrecondition(format!(
                "the cluster is already at level {from}, the highest this build ({}) supports",
                crate::VERSION
            )));
        }
        // Every member must be seen to support the new level: one that is silent may be an old
        // build that would fail on the first entry it cannot read.
        let behind: Vec<String> = self
            .members()
            .await?
            .into_iter()
            .filter(|m| !m.reachable || m.max_level < to as u32)
            .map(|m| {
                if m.reachable {
                    format!("{} (version {}, level {})", m.name, m.version, m.max_level)
                } else {
                    format!("{} (not answering)", m.name)
                }
            })
            .collect();
        if !behind.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "the cluster level stays at {from}: raising it to {to} needs every member on version {} or later, \
                 and {} {} not; upgrade {} first",
                crate::VERSION,
                behind.join(", "),
                if behind.len() == 1 { "is" } else { "are" },
                if behind.len() == 1 { "it" } else { "them" },
            )));
        }
        if to >= corral_raft::model::TLS_LEVEL {
            self.prepare_tls().await?;
        }
        let op =
            self.0.permit(cx, &[(Operation::ClusterEdit, Obj::Cluster)], Op::SetClusterLevel { level: to }).await?;
        self.0.cluster.write(None, op).await?;
        tracing::info!(from, to, "cluster level raised");
        if to >= corral_raft::model::TLS_LEVEL {
            // Members switch to TLS as they apply the level (within a fraction of a second);
            // plaintext between them is refused from then on, so for that moment the leader may
            // not hear a quorum. Answer once it does again.
            let deadline = tokio::time::Instant::now() + TLS_READY_WAIT;
            while self.0.cluster.read(false, |_| ()).await.is_err() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(UpgradeResponse { from_level: from.into(), to_level: to.into() })
    }

    /// Before the level that requires TLS: the CA made, and every member holding a certificate
    /// of it and answering over TLS (each node's keeper asks for one once it sees the CA).
    async fn prepare_tls(&self) -> Result<(), ClusterError> {
        use corral_raft::forward::{LeaderRequest, LeaderResponse};
        match self.0.cluster.route(LeaderRequest::EnsureCa, 0).await? {
            LeaderResponse::Ca { .. } => {}
            other => return Err(ClusterError::Internal(format!("unexpected answer {other:?}"))),
        }
        let deadline = tokio::time::Instant::now() + TLS_READY_WAIT;
        loop {
            let mut missing = Vec::new();
            let client = self.0.cluster.tls().client_config();
            for m in self.members().await? {
                let ok = match &client {
                    Some(c) => tls_ping(&m.address, c.clone()).await,
                    None => false,
                };
                if !ok {
                    missing.push(m.name);
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Unavailable(format!(
                    "the cluster CA is made, but {} did not answer over TLS with a certificate of it within {} s; \
                     the level stays as it is: run `cluster upgrade` again",
                    missing.join(", "),
                    TLS_READY_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn backup(&self, cx: &Caller, _req: BackupRequest) -> Result<BackupResponse, ClusterError> {
        self.0.check(cx, &[(Operation::ClusterTokens, Obj::System)]).await?;
        self.0.check_everything(cx, "back up the cluster").await?;
        let (backup, cluster) = self
            .0
            .cluster
            .read(false, |s| {
                let backup = corral_raft::format::backup::Backup {
                    cluster_id: crate::identity::cluster_id(s).unwrap_or_default(),
                    taken_ms: now_ms(),
                    applied_index: 0,
                    state: s.clone(),
                };
                (backup, s.cluster.as_ref().map(|c| (c.name.clone(), c.level)))
            })
            .await?;
        let (cluster, level) =
            cluster.ok_or_else(|| ClusterError::FailedPrecondition("there is no cluster yet".into()))?;
        let applied_index = self.0.cluster.parts()?.state.last_applied().map_or(0, |l| l.index);
        let backup = corral_raft::format::backup::Backup { applied_index, ..backup };
        let data = backup.encode().map_err(|e| {
            ClusterError::Internal(format!("the backup could not be encoded: {}", corral_storage::error_chain(&e)))
        })?;
        Ok(BackupResponse { data, cluster, applied_index, cluster_level: level.into() })
    }

    /// Every Raft member with its role, whether it answers, its version and the highest cluster
    /// level it supports (release 3f21f51 answers pings without saying: version 0.1.0, level 0).
    async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        let parts = self.0.cluster.parts()?;
        let metrics = parts.metrics();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<_> = membership.voter_ids().collect();
        let probes = membership.nodes().map(|(id, info)| {
            let node = self.0.clone();
            let (id, info, this) = (*id, info.clone(), parts.id);
            let voter = voters.contains(&id);
            async move {
                let answer = if id == this {
                    Some((crate::VERSION.to_string(), corral_raft::model::MAX_LEVEL.into()))
                } else {
                    ping(&node, &info.address).await.map(|p| {
                        if p.version.is_empty() {
                            (PREVIOUS_RELEASE.to_string(), 0)
                        } else {
                            (p.version, p.max_level)
                        }
                    })
                };
                let reachable = answer.is_some();
                let (version, max_level) = answer.unwrap_or_default();
                Member {
                    id,
                    name: info.name,
                    address: info.address,
                    role: role(voter).word().into(),
                    role_enum: role(voter).into(),
                    reachable,
                    version,
                    max_level,
                }
            }
        });
        Ok(join_all(probes).await)
    }

    async fn cluster_status(&self, stale: bool) -> Result<ClusterStatus, ClusterError> {
        let (cluster, settings) = self
            .0
            .cluster
            .read(stale, |s| {
                (
                    s.cluster.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
                    s.cluster.as_ref().map(|_| settings(s)),
                )
            })
            .await?;
        let cluster_level = self.0.cluster.read(true, |s| s.cluster.as_ref().map_or(0, |c| c.level)).await?;
        let parts = self.0.cluster.parts()?;
        let metrics = parts.metrics();
        let members = self.members().await?;
        Ok(ClusterStatus {
            cluster_level: cluster_level.into(),
            settings,
            cluster,
            leader_id: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            members,
            last_applied: metrics.last_applied.map_or(0, |l| l.index),
            this_node_id: parts.id,
            snapshot_index: metrics.snapshot.map_or(0, |l| l.index),
            purged_index: metrics.purged.map_or(0, |l| l.index),
        })
    }

    pub async fn token(&self, cx: &Caller, req: CreateTokenRequest) -> Result<CreateTokenResponse, ClusterError> {
        let need = [(Operation::ClusterTokens, Obj::System)];
        self.0.check(cx, &need).await?;
        self.0.check_everything(cx, "make join tokens").await?;
        let ttl_s = req.ttl_seconds;
        if ttl_s > MAX_TOKEN_TTL_S {
            return Err(ClusterError::invalid("ttl", format!("must be at most 30 days (got {ttl_s} s)")));
        }
        let ttl_ms = if ttl_s == 0 { DEFAULT_TOKEN_TTL_MS } else { ttl_s as i64 * 1000 };
        // A cluster with a CA gives tokens that pin it: a joining node checks the node it dials.
        let ca = self.0.cluster.read(false, |s| s.cluster.as_ref().and_then(|c| c.ca_pem.clone())).await?;
        let pin = ca
            .map(|c| crate::tls::ca_fingerprint(&c))
            .transpose()
            .map_err(|e| ClusterError::Internal(e.to_string()))?;
        let token = token::generate(pin.as_deref());
        // The leader stamps its own clock on the command; the expiry is relative to ours,
        // which is close enough for a lifetime measured in minutes or more.
        let expires_ms = now_ms() + ttl_ms;
        let token_hash = token::hash(&token);
        let id = corral_raft::model::JoinToken::id_of(&token_hash);
        let op = self.0.permit(cx, &need, Op::AddToken { token_hash, expires_ms }).await?;
        self.0.cluster.write(None, op).await?;
        Ok(CreateTokenResponse { token, expires_unix_ms: expires_ms, id })
    }

    pub async fn list_tokens(&self, cx: &Caller, _req: ListTokensRequest) -> Result<ListTokensResponse, ClusterError> {
        self.0.check(cx, &[(Operation::ClusterTokens, Obj::System)]).await?;
        let now = now_ms();
        let tokens = self
            .0
            .cluster
            .read(false, |s| {
                s.tokens
                    .iter()
                    .filter(|(_, t)| t.expires_ms > now)
                    .map(|(hash, t)| JoinTokenInfo {
                        id: corral_raft::model::JoinToken::id_of(hash),
                        created_unix_ms: t.created_ms,
                        expires_unix_ms: t.expires_ms,
                        uses: t.uses,
                    })
                    .collect()
            })
            .await?;
        Ok(ListTokensResponse { tokens })
    }

    pub async fn revoke_token(
        &self,
        cx: &Caller,
        req: RevokeTokenRequest,
    ) -> Result<RevokeTokenResponse, ClusterError> {
        let id = req.id.trim().to_string();
        if id.is_empty() {
            return Err(ClusterError::invalid("id", "must name a token (`cluster token list` shows their ids)"));
        }
        let op =
            self.0.permit(cx, &[(Operation::ClusterTokens, Obj::System)], Op::RevokeToken { id: id.clone() }).await?;
        self.0.cluster.write(None, op).await?;
        Ok(RevokeTokenResponse { id })
    }

    /// A user's client certificate from the caller's CSR.
    /// The cluster CA's certificate: public, answered to anyone (users check its fingerprint
    /// before they trust a node with a password).
    pub async fn ca(&self, _cx: &Caller, _req: CaRequest) -> Result<CaResponse, ClusterError> {
        let ca = self.0.cluster.read(true, |s| s.cluster.as_ref().and_then(|c| c.ca_pem.clone())).await?;
        let ca = ca.ok_or_else(|| {
            ClusterError::FailedPrecondition("this cluster has no CA yet (cluster level 2 makes one)".into())
        })?;
        let fingerprint =
            crate::tls::ca_fingerprint(&ca).map_err(|e| ClusterError::Internal(format!("the cluster CA: {e}")))?;
        Ok(CaResponse { ca, fingerprint })
    }

    pub async fn credentials(&self, cx: &Caller, req: CredentialsRequest) -> Result<CredentialsResponse, ClusterError> {
        let user = if req.user.trim().is_empty() { "admin".to_string() } else { req.user.trim().to_string() };
        validate::name("user", &user)?;
        let who = self.0.check(cx, &[(Operation::ClusterTokens, Obj::System)]).await?;
        // With users, a certificate names one that exists (it is that user), and only someone
        // who holds all that user holds may have one made.
        self.0
            .cluster
            .read(false, |s| {
                if !s.has_users() {
                    return Ok(());
                }
                if !s.auth.users.contains_key(&user) {
                    return Err(ClusterError::NotFound(format!(
                        "user '{user}' not found: create it first (`corral user create {user}`)"
                    )));
                }
                s.covers(who.actor(), &s.auth.subjects_of(&user), &format!("have a certificate made for {user}"))
            })
            .await??;
        if req.csr.len() > 16 * 1024 {
            return Err(ClusterError::invalid("csr", "must be a PEM certificate request of at most 16 KiB"));
        }
        let (certificate, ca) = self.0.cluster.user_certificate(&user, &req.csr).await?;
        let expires_unix_ms = crate::tls::validity(&certificate).map(|v| v.1).unwrap_or_default();
        Ok(CredentialsResponse { certificate, ca, expires_unix_ms })
    }
}

fn role(voter: bool) -> MemberRole {
    if voter {
        MemberRole::Voter
    } else {
        MemberRole::Learner
    }
}

fn settings(s: &ClusterState) -> ClusterSettings {
    let info: Option<&ClusterInfo> = s.cluster.as_ref();
    let m = &s.migration_defaults;
    ClusterSettings {
        scheduling: info.map(|c| c.scheduling.as_str().to_string()).unwrap_or_default(),
        scheduling_enum: info.map(|c| c.scheduling.wire()).unwrap_or_default(),
        cpu_overcommit: info.map_or(0, |c| c.cpu_overcommit),
        migration: Some(MigrationSettings {
            auto_converge: m.auto_converge,
            compression: m.compression,
            max_downtime_ms: m.max_downtime_ms,
            bandwidth_mibps: m.bandwidth_mibps,
            max_per_host: m.max_per_host,
        }),
        max_snapshots: info.map_or(0, |c| c.max_snapshots),
    }
}

/// The version of release 3f21f51, whose pings do not say it.
const PREVIOUS_RELEASE: &str = "0.1.0";

/// Whether the node at `address` answers a ping over TLS with a certificate of the cluster CA.
async fn tls_ping(address: &str, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(channel) = corral_raft::network::dial(address, Some(config)) else { return false };
    let mut req = tonic::Request::new(PingRequest {});
    req.set_timeout(PING_TIMEOUT);
    matches!(tokio::time::timeout(PING_TIMEOUT, RaftServiceClient::new(channel).ping(req)).await, Ok(Ok(_)))
}

async fn ping(node: &Handles, address: &str) -> Option<PingResponse> {
    let channel = node.cluster.network().channel(address).ok()?;
    let mut req = tonic::Request::new(PingRequest {});
    req.set_timeout(PING_TIMEOUT);
    match tokio::time::timeout(PING_TIMEOUT, RaftServiceClient::new(channel).ping(req)).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        _ => None,
    }
}
