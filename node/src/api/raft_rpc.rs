//! The internal service between nodes: openraft's three RPCs, forwarding of leader-only
//! requests, and a ping for reachability. Payloads are codec-encoded openraft types.

use std::sync::Arc;

use corral_proto::raft_service_server::RaftService;
use corral_proto::{PingRequest, PingResponse, RaftPayload, WaitAppliedRequest};
use corral_raft::command::Op;
use corral_raft::format::wire::Wire;
use corral_raft::forward::{ForwardResult, Forwarded, LeaderRequest, SignFor};
use corral_raft::network::{decode, payload};
use corral_raft::peer::{PeerRequest, PeerResult};
use corral_raft::typ::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use corral_raft::ClusterError;
use corral_raft::NodeId;
use tonic::{Request, Response, Status};

use super::listen::{ConnInfo, Via};
use super::Handles;
use crate::tls::CertIdentity;

pub struct Api(pub Arc<Handles>);

/// The answer, in the format the request came in (so a node of an older build understands it).
fn reply<T: Wire>(v: &T, format: u8) -> Result<Response<RaftPayload>, Status> {
    payload(v, format).map(Response::new).map_err(Status::internal)
}

fn parse<T: Wire>(req: Request<RaftPayload>) -> Result<(T, u8), Status> {
    decode(&req.into_inner().data).map_err(Status::invalid_argument)
}

/// Which member sends a request, as its certificate proves: `Some(id)` for a member's
/// certificate (checked against the replicated hosts: a removed node's is refused from the
/// moment its removal is applied); `None` where no certificate is needed (the local socket, a
/// cluster that does not require TLS yet, or a node that is joining and holds no state yet,
/// whose TLS already checked the CA). Everyone else is refused before anything is decoded.
fn sender<T>(node: &Handles, req: &Request<T>) -> Result<Option<NodeId>, Status> {
    let via = req.extensions().get::<ConnInfo>().map(|c| c.via.clone()).unwrap_or(Via::Plain);
    match via {
        Via::Local => Ok(None),
        Via::Tls(Some(CertIdentity::Node(name))) => {
            let Ok(parts) = node.cluster.parts() else { return Ok(None) };
            let (known, id) = parts.state.read(|s| (s.cluster.is_some(), s.host_by_name(&name).map(|h| h.id)));
            match (known, id) {
                (_, Some(id)) => Ok(Some(id)),
                (false, None) => Ok(None),
                (true, None) => Err(Status::permission_denied(format!(
                    "the certificate of '{}' belongs to no member of this cluster",
                    corral_raft::error::quote(&name)
                ))),
            }
        }
        _ if node.cluster.requires_tls() => Err(Status::unauthenticated(
            "members only: this cluster takes Raft and member messages only over TLS, from a member's certificate",
        )),
        _ => Ok(None),
    }
}

/// Refuses a message that speaks for a member other than the one whose certificate sent it.
fn same(sender: Option<NodeId>, claimed: NodeId, what: &str) -> Result<(), Status> {
    match sender {
        Some(id) if id != claimed => {
            Err(Status::permission_denied(format!("member {id} sent a {what} in the name of member {claimed}")))
        }
        _ => Ok(()),
    }
}

#[tonic::async_trait]
impl RaftService for Api {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let from = sender(&self.0, &req)?;
        let parts = self.0.cluster.parts().map_err(super::status)?;
        let (rpc, format): (AppendEntriesRequest, u8) = parse(req)?;
        sane::vote(&rpc.vote)?;
        same(from, rpc.vote.leader_id().voted_for().unwrap_or_default(), "log replication")?;
        sane::log_id("prev_log_id", rpc.prev_log_id.as_ref())?;
        sane::log_id("leader_commit", rpc.leader_commit.as_ref())?;
        for e in &rpc.entries {
            sane::log_id("entry", Some(&e.log_id))?;
        }
        reply(&parts.append_entries(rpc).await, format)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let from = sender(&self.0, &req)?;
        let parts = self.0.cluster.parts().map_err(super::status)?;
        let (rpc, format): (VoteRequest, u8) = parse(req)?;
        sane::vote(&rpc.vote)?;
        same(from, rpc.vote.leader_id().voted_for().unwrap_or_default(), "vote request")?;
        sane::log_id("last_log_id", rpc.last_log_id.as_ref())?;
        // Only a voter of this node's membership may ask for its vote: a stranger's (or a removed
        // node's) higher term would depose a healthy leader.
        let candidate = rpc.vote.leader_id().voted_for().unwrap_or_default();
        if !parts.metrics().membership_config.membership().voter_ids().any(|v| v == candidate) {
            return Err(Status::permission_denied(format!(
                "node {candidate} is not a voter of this cluster: its vote request is refused"
            )));
        }
        reply(&parts.vote(rpc).await, format)
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let from = sender(&self.0, &req)?;
        let parts = self.0.cluster.parts().map_err(super::status)?;
        let (rpc, format): (InstallSnapshotRequest, u8) = parse(req)?;
        sane::vote(&rpc.vote)?;
        same(from, rpc.vote.leader_id().voted_for().unwrap_or_default(), "snapshot")?;
        sane::log_id("last_log_id", rpc.meta.last_log_id.as_ref())?;
        sane::log_id("membership log id", rpc.meta.last_membership.log_id().as_ref())?;
        reply(&parts.install_snapshot(rpc).await, format)
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        // A joining node is no member yet: its Join goes through over TLS (the secret must never
        // travel in plaintext once the cluster has a CA), and the token decides.
        let via = req.extensions().get::<ConnInfo>().map(|c| c.via.clone()).unwrap_or(Via::Plain);
        let from = sender(&self.0, &req);
        // Only a joining node, over TLS without a certificate, may send what the transport
        // refused otherwise (its Join); anyone else is refused before a byte is decoded.
        if let (Err(e), false) = (&from, matches!(via, Via::Tls(None) | Via::Local)) {
            return Err(e.clone());
        }
        let (Forwarded { hops, request }, format) = parse(req)?;
        let from = match (&request, from) {
            (LeaderRequest::Join { .. } | LeaderRequest::Recertify { .. }, _)
                if matches!(via, Via::Tls(None) | Via::Local) =>
            {
                None
            }
            (LeaderRequest::Join { .. }, Err(_)) => {
                return Err(Status::unauthenticated("a join to a cluster with a CA is sent over TLS only"))
            }
            (_, from) => from?,
        };
        match &request {
            LeaderRequest::Heartbeat { host, .. } => same(from, *host, "heartbeat")?,
            LeaderRequest::Admit { id, .. } if hops == 0 => same(from, *id, "join")?,
            LeaderRequest::Sign { role: SignFor::Member { host }, .. } if hops == 0 => {
                same(from, *host, "certificate request")?
            }
            _ => {}
        }
        let level = self.0.cluster.parts().ok().and_then(|p| p.state.read(|s| s.cluster.as_ref().map(|c| c.level)));
        let result: ForwardResult = match request {
            // A node of release 3f21f51 speaks v0: it cannot follow a cluster that raised its
            // level, so it is refused before it is registered (it would hang as a learner).
            LeaderRequest::Write { op, .. }
                if format == 0 && level.is_some_and(|l| l > 0) && matches!(*op, Op::RegisterHost { .. }) =>
            {
                Err(ClusterError::FailedPrecondition(format!(
                    "this cluster runs at level {}; a node of release 3f21f51 (format v0) cannot join it: upgrade \
                     the joining node",
                    level.unwrap_or_default()
                )))
            }
            // Straight to this node: a heartbeat is answered by the leader it was sent to or
            // refused at once, never handed on or held while an election runs.
            LeaderRequest::Heartbeat { host, self_fenced, sent_ms } => {
                self.0.cluster.heartbeat(host, self_fenced, sent_ms)
            }
            request => self.0.cluster.route(request, hops).await,
        };
        reply(&result, format)
    }

    async fn peer(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let from = sender(&self.0, &req)?;
        let (request, format): (PeerRequest, u8) = parse(req)?;
        sane::peer(&request)?;
        same(from, request.from, "member message")?;
        let result: PeerResult = self.0.cluster.peer(request).await;
        reply(&result, format)
    }

    async fn ping(&self, _req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let (node_id, leader_id, term, applied) = match self.0.cluster.parts() {
            Ok(p) => {
                let m = p.metrics();
                (p.id, m.current_leader.unwrap_or(0), m.current_term, *p.state.subscribe().borrow())
            }
            Err(_) => (0, 0, 0, 0),
        };
        let cluster_level =
            self.0.cluster.parts().ok().and_then(|p| p.state.read(|s| s.cluster.as_ref().map(|c| c.level)));
        Ok(Response::new(PingResponse {
            node_id,
            leader_id,
            term,
            applied,
            cluster_level: cluster_level.map(u32::from),
            ..this_build()
        }))
    }

    async fn wait_applied(&self, req: Request<WaitAppliedRequest>) -> Result<Response<PingResponse>, Status> {
        sender(&self.0, &req)?;
        let WaitAppliedRequest { index, timeout_ms } = req.into_inner();
        let parts = self.0.cluster.parts().map_err(super::status)?;
        let mut applied = parts.state.subscribe();
        let wait = applied.wait_for(|a| *a >= index);
        let _ = tokio::time::timeout(std::time::Duration::from_millis(timeout_ms.min(10_000)), wait).await;
        let m = parts.metrics();
        let now = *parts.state.subscribe().borrow();
        Ok(Response::new(PingResponse {
            node_id: parts.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            applied: now,
            ..this_build()
        }))
    }
}

/// What a ping says of this build: its version and the highest cluster level it supports.
fn this_build() -> PingResponse {
    PingResponse {
        version: crate::VERSION.to_string(),
        max_level: corral_raft::model::MAX_LEVEL.into(),
        ..Default::default()
    }
}

/// Bounds on what a Raft message may say, checked before openraft sees it. No cluster reaches
/// these terms or indexes (a term a second would take nine million years to reach 2^48), and
/// openraft adds one to a term unchecked: a vote of term 2^64-1 that it saved would panic the
/// node at every start.
mod sane {
    use corral_raft::peer::{PeerBody, PeerRequest};
    use corral_raft::typ::{LogId, NodeId};
    use openraft::Vote;
    use tonic::Status;

    pub const MAX_TERM: u64 = 1 << 48;
    pub const MAX_INDEX: u64 = 1 << 56;

    fn term(what: &str, t: u64) -> Result<(), Status> {
        if t > MAX_TERM {
            return Err(Status::invalid_argument(format!(
                "{what}: term {t} is beyond {MAX_TERM}, the most a cluster reaches"
            )));
        }
        Ok(())
    }

    pub fn vote(v: &Vote<NodeId>) -> Result<(), Status> {
        term("vote", v.leader_id().get_term())
    }

    pub fn log_id(what: &str, id: Option<&LogId>) -> Result<(), Status> {
        let Some(id) = id else { return Ok(()) };
        term(what, id.leader_id.term)?;
        if id.index > MAX_INDEX {
            return Err(Status::invalid_argument(format!(
                "{what}: index {} is beyond {MAX_INDEX}, the most a cluster reaches",
                id.index
            )));
        }
        Ok(())
    }

    pub fn peer(req: &PeerRequest) -> Result<(), Status> {
        match &req.body {
            PeerBody::FenceVote { term: t, applied, .. } => {
                term("fence vote", *t)?;
                if *applied > MAX_INDEX {
                    return Err(Status::invalid_argument(format!("fence vote: index {applied} is beyond {MAX_INDEX}")));
                }
                Ok(())
            }
            PeerBody::Unfreeze { term: t, .. } => term("unfreeze", *t),
            PeerBody::PreVote { term: t, last_log } => {
                term("pre-vote", *t)?;
                log_id("pre-vote", last_log.as_ref())
            }
            PeerBody::Heartbeat { .. } | PeerBody::Silence | PeerBody::CaKey => Ok(()),
        }
    }
}
