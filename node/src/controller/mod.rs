//! Leader controllers: tasks that act only while this node leads, decide from the replicated
//! state, and write commands. What only the leader knows (heartbeat times) lives here, in the
//! `Leader` part, and nowhere else; a new leader starts afresh and keeps nothing that matters.
//! They reach the cluster only through its handle.

mod leadership;
pub mod liveness;

use std::sync::Arc;
use std::time::Duration;

use corral_raft::command::Op;
use corral_raft::forward::LeaderResponse;
use corral_raft::model::HostState;
use corral_raft::typ::StateHandle;
use corral_raft::{ClusterError, NodeId};

use crate::cluster::{Cluster, LeaseDesk, RaftParts};
use crate::config::Config;
use crate::now_ms;

/// The leader's part of this node: the heartbeat book and the settings it judges hosts by.
pub struct Leader {
    cluster: Cluster,
    config: Arc<Config>,
    book: liveness::Liveness,
}

impl Leader {
    pub fn new(cluster: Cluster, config: Arc<Config>) -> Arc<Leader> {
        // Two heartbeat periods without a beat: the process stood still, not a host.
        let stall_after = Duration::from_millis(config.host_heartbeat_ms * 2);
        Arc::new(Leader { cluster, config, book: liveness::Liveness::new(stall_after) })
    }

    /// Starts the controllers of a node whose Raft now runs; they act only while it leads.
    pub fn spawn(self: &Arc<Self>, parts: &RaftParts) {
        tokio::spawn(leadership::record_leader_changes(self.cluster.clone(), parts.clone()));
        tokio::spawn(liveness::run(self.clone(), parts.clone()));
        tokio::spawn(self.book.clone().beat());
    }
}

impl Leader {
    /// A voter on this node heard `host`, which is down or fenced itself: the leader in office
    /// records it alive (once at a time; the host says so with every heartbeat until it is).
    pub fn heard(&self, host: NodeId, fenced_ms: Option<i64>) {
        let Ok(parts) = self.cluster.parts() else { return };
        let fresh = Duration::from_millis(self.config.host_heartbeat_ms);
        let Some(term) = liveness::in_office(parts, fresh) else { return };
        if !self.book.start_reviving(term, host) {
            return;
        }
        let cluster = self.cluster.clone();
        let book = self.book.clone();
        tokio::spawn(async move {
            let op = match fenced_ms {
                Some(fenced_ms) => Op::HostAliveAfterFencing { id: host, fenced_ms },
                None => Op::HostAlive { id: host, self_fenced: false },
            };
            if let Err(e) = cluster.propose_as_leader(op).await {
                tracing::debug!(host, "could not record the host as alive: {e}");
            }
            book.revived(host);
        });
    }
}

impl LeaseDesk for Leader {
    /// On the leader: a host's heartbeat. Acknowledged (renewing the host's lease) only by a
    /// leader in office whose leadership a quorum confirmed within one heartbeat interval, so
    /// a leader cut off from the majority renews nobody's lease, its own host's included.
    fn heartbeat(&self, host: NodeId, self_fenced: bool, sent_ms: i64) -> Result<LeaderResponse, ClusterError> {
        let parts = self.cluster.parts()?;
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
        let Some(term) = liveness::in_office(parts, fresh) else {
            return Err(ClusterError::Unavailable(
                "this node is not a leader in office with a quorum behind it; it renews no lease".into(),
            ));
        };
        let state: &StateHandle = &parts.state;
        if let Some(level) = state.read(|s| s.cluster.as_ref().map(|c| c.level)).filter(|l| *l >= 1) {
            return Err(ClusterError::FailedPrecondition(format!(
                "this cluster runs at level {level}: a majority of the voters renews leases, not the leader alone"
            )));
        }
        let alive = state
            .read(|s| s.hosts.get(&host).map(|h| h.state.is_alive() || h.state == HostState::Joining))
            .ok_or_else(|| ClusterError::NotFound(format!("host {host} is not a member of this cluster")))?;
        let revive = self.book.heartbeat(term, host, !alive || self_fenced)?;
        // Read after the heartbeat was recorded: a `down` committed before is in this index,
        // and one decided after it would have had to see this heartbeat first.
        let index = parts.metrics().last_log_index.unwrap_or(0);
        if revive {
            let cluster = self.cluster.clone();
            let book = self.book.clone();
            tokio::spawn(async move {
                if let Err(e) = cluster.propose_as_leader(Op::HostAlive { id: host, self_fenced }).await {
                    tracing::debug!(host, "could not record the host as alive: {e}");
                }
                book.revived(host);
            });
        }
        Ok(LeaderResponse::HeartbeatAck { index })
    }
}
