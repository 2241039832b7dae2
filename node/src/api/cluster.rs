//! ClusterService: bootstrap, join, status, join tokens and the cluster-wide scheduling
//! settings.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::cluster_service_server::ClusterService;
use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::*;
use corral_raft::command::{MigrationSettingsChange, Op, Outcome};
use corral_raft::model::{ClusterInfo, ClusterState, SchedulingPolicy};
use corral_raft::validate;
use corral_raft::ClusterError;
use futures::future::join_all;
use tonic::{Request, Response, Status};

use super::{request_id, status};
use super::Handles;
use crate::cluster::DEFAULT_TOKEN_TTL_MS;
use crate::now_ms;
use crate::token;

const PING_TIMEOUT: Duration = Duration::from_millis(700);
const MAX_TOKEN_TTL_S: u64 = 30 * 24 * 3600;

pub struct Api(pub Arc<Handles>);

#[tonic::async_trait]
impl ClusterService for Api {
    async fn bootstrap(&self, req: Request<BootstrapRequest>) -> Result<Response<BootstrapResponse>, Status> {
        let r = req.into_inner();
        let name = r.cluster_name.clone();
        // Everything about the engine is checked (and its image copied into the storage
        // domain) before the cluster is made, so bad engine options make no cluster either.
        let engine = super::engine::EngineRequest::check(&self.0, &r).await.map_err(status)?;
        let (node_id, token, expires) = match self.0.cluster.bootstrap(&name).await {
            Ok(done) => done,
            Err(e) => {
                if let Some(engine) = &engine {
                    engine.discard(&self.0).await;
                }
                return Err(status(e));
            }
        };
        let engine = match engine {
            Some(engine) => Some(engine.create(&self.0).await.map_err(status)?),
            None => None,
        };
        Ok(Response::new(BootstrapResponse { node_id, token, token_expires_unix_ms: expires, engine }))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let JoinRequest { peer, token } = req.into_inner();
        if peer.trim().is_empty() {
            return Err(status(ClusterError::invalid("peer", "must be the address of a cluster member")));
        }
        if token.trim().is_empty() {
            return Err(status(ClusterError::invalid("token", "must not be empty")));
        }
        let (node_id, cluster_name, voter) = self.0.cluster.join(peer.trim(), &token).await.map_err(status)?;
        let role = if voter { "voter" } else { "learner" }.to_string();
        Ok(Response::new(JoinResponse { node_id, cluster_name, role }))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<ClusterStatus>, Status> {
        self.cluster_status(req.into_inner().stale).await.map(Response::new)
    }

    /// Scheduling and migration settings; each part is checked before either is written.
    async fn edit(&self, req: Request<EditClusterRequest>) -> Result<Response<ClusterSettings>, Status> {
        let rid = request_id(&req)?;
        let r = req.into_inner();
        let policy = r.scheduling.as_deref().map(str::parse::<SchedulingPolicy>).transpose().map_err(status)?;
        if let Some(v) = r.cpu_overcommit {
            validate::cpu_overcommit(v).map_err(status)?;
        }
        if r.migrations_per_host == Some(0) {
            return Err(status(ClusterError::invalid("migrations_per_host", "must be at least 1")));
        }
        let changes = MigrationSettingsChange {
            auto_converge: r.migration_auto_converge,
            compression: r.migration_compression,
            max_downtime_ms: r.migration_max_downtime_ms.map(|v| Some(v).filter(|v| *v > 0)),
            bandwidth_mibps: r.migration_bandwidth_mibps.map(|v| Some(v).filter(|v| *v > 0)),
            max_per_host: r.migrations_per_host,
        };
        let scheduling = policy.is_some() || r.cpu_overcommit.is_some();
        let migration = changes != MigrationSettingsChange::default();
        if !scheduling && !migration {
            return Err(status(ClusterError::invalid("edit", "nothing to change: give at least one setting")));
        }
        if scheduling {
            let op = Op::SetSchedulingPolicy { policy, cpu_overcommit: r.cpu_overcommit };
            match self.0.cluster.write(rid, op).await.map_err(status)? {
                Outcome::Cluster(_) => {}
                _ => return Err(Status::internal("the write returned no settings")),
            }
        }
        if migration {
            // A second request id: the first one already names the scheduling write.
            let rid = rid.map(|_| uuid::Uuid::new_v4());
            self.0.cluster.write(rid, Op::SetMigrationDefaults { changes }).await.map_err(status)?;
        }
        let settings = self.0.cluster.read(true, settings).await.map_err(status)?;
        Ok(Response::new(settings))
    }

    async fn create_token(&self, req: Request<CreateTokenRequest>) -> Result<Response<CreateTokenResponse>, Status> {
        self.token(req).await
    }

    async fn upgrade(&self, _req: Request<UpgradeRequest>) -> Result<Response<UpgradeResponse>, Status> {
        let from = self.0.cluster.read(false, |s| s.cluster.as_ref().map(|c| c.level)).await.map_err(status)?;
        let from = from.ok_or_else(|| status(ClusterError::FailedPrecondition("there is no cluster yet".into())))?;
        let to = corral_storage::codec::CURRENT;
        if from >= to {
            return Err(status(ClusterError::FailedPrecondition(format!(
                "the cluster is already at level {from}, the highest this build ({}) supports",
                crate::VERSION
            ))));
        }
        // Every member must be seen to support the new level: one that is silent may be an old
        // build that would fail on the first entry it cannot read.
        let behind: Vec<String> = self
            .members()
            .await
            .map_err(status)?
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
            return Err(status(ClusterError::FailedPrecondition(format!(
                "the cluster level stays at {from}: raising it to {to} needs every member on version {} or later, \
                 and {} {} not; upgrade {} first",
                crate::VERSION,
                behind.join(", "),
                if behind.len() == 1 { "is" } else { "are" },
                if behind.len() == 1 { "it" } else { "them" },
            ))));
        }
        self.0.cluster.write(None, Op::SetClusterLevel { level: to }).await.map_err(status)?;
        tracing::info!(from, to, "cluster level raised");
        Ok(Response::new(UpgradeResponse { from_level: from.into(), to_level: to.into() }))
    }

    async fn backup(&self, _req: Request<BackupRequest>) -> Result<Response<BackupResponse>, Status> {
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
            .await
            .map_err(status)?;
        let (cluster, level) =
            cluster.ok_or_else(|| status(ClusterError::FailedPrecondition("there is no cluster yet".into())))?;
        let applied_index = self.0.cluster.parts().map_err(status)?.state.last_applied().map_or(0, |l| l.index);
        let backup = corral_raft::format::backup::Backup { applied_index, ..backup };
        let data = backup.encode().map_err(|e| {
            Status::internal(format!("the backup could not be encoded: {}", corral_storage::error_chain(&e)))
        })?;
        Ok(Response::new(BackupResponse { data, cluster, applied_index, cluster_level: level.into() }))
    }
}

impl Api {
    /// Every Raft member with its role, whether it answers, its version and the highest cluster
    /// level it supports (release 3f21f51 answers pings without saying: version 0.1.0, level 0).
    async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        let parts = self.0.cluster.parts()?;
        let metrics = parts.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<_> = membership.voter_ids().collect();
        let probes = membership.nodes().map(|(id, info)| {
            let node = self.0.clone();
            let (id, info, this) = (*id, info.clone(), parts.id);
            let voter = voters.contains(&id);
            async move {
                let answer = if id == this {
                    Some((crate::VERSION.to_string(), corral_storage::codec::CURRENT.into()))
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
                    role: if voter { "voter" } else { "learner" }.into(),
                    reachable,
                    version,
                    max_level,
                }
            }
        });
        Ok(join_all(probes).await)
    }

    async fn cluster_status(&self, stale: bool) -> Result<ClusterStatus, Status> {
        let (cluster, settings) = self
            .0
            .cluster
            .read(stale, |s| {
                (
                    s.cluster.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
                    s.cluster.as_ref().map(|_| settings(s)),
                )
            })
            .await
            .map_err(status)?;
        let cluster_level = self.0.cluster.read(true, |s| s.cluster.as_ref().map_or(0, |c| c.level)).await.map_err(status)?;
        let parts = self.0.cluster.parts().map_err(status)?;
        let metrics = parts.raft.metrics().borrow().clone();
        let members = self.members().await.map_err(status)?;
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

    async fn token(&self, req: Request<CreateTokenRequest>) -> Result<Response<CreateTokenResponse>, Status> {
        let ttl_s = req.into_inner().ttl_seconds;
        if ttl_s > MAX_TOKEN_TTL_S {
            return Err(status(ClusterError::invalid("ttl", format!("must be at most 30 days (got {ttl_s} s)"))));
        }
        let ttl_ms = if ttl_s == 0 { DEFAULT_TOKEN_TTL_MS } else { ttl_s as i64 * 1000 };
        let token = token::generate();
        // The leader stamps its own clock on the command; the expiry is relative to ours,
        // which is close enough for a lifetime measured in minutes or more.
        let expires_ms = now_ms() + ttl_ms;
        self.0.cluster.write(None, Op::AddToken { token_hash: token::hash(&token), expires_ms }).await.map_err(status)?;
        Ok(Response::new(CreateTokenResponse { token, expires_unix_ms: expires_ms }))
    }
}

fn settings(s: &ClusterState) -> ClusterSettings {
    let info: Option<&ClusterInfo> = s.cluster.as_ref();
    let m = &s.migration_defaults;
    ClusterSettings {
        scheduling: info.map(|c| c.scheduling.as_str().to_string()).unwrap_or_default(),
        cpu_overcommit: info.map_or(0, |c| c.cpu_overcommit),
        migration: Some(MigrationSettings {
            auto_converge: m.auto_converge,
            compression: m.compression,
            max_downtime_ms: m.max_downtime_ms,
            bandwidth_mibps: m.bandwidth_mibps,
            max_per_host: m.max_per_host,
        }),
    }
}

/// The version of release 3f21f51, whose pings do not say it.
const PREVIOUS_RELEASE: &str = "0.1.0";

async fn ping(node: &Handles, address: &str) -> Option<PingResponse> {
    let channel = node.cluster.network().channel(address).ok()?;
    let mut req = Request::new(PingRequest {});
    req.set_timeout(PING_TIMEOUT);
    match tokio::time::timeout(PING_TIMEOUT, RaftServiceClient::new(channel).ping(req)).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        _ => None,
    }
}
