//! Requests that only the leader may carry out, as a follower hands them over, and the
//! leader's answers. They travel in `RaftService.Forward` encoded with the storage codec.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{Op, Reply};
use crate::error::ClusterError;
use crate::typ::NodeId;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    /// Propose a command; the leader stamps its own clock on it.
    Write { request_id: Option<Uuid>, op: Box<Op> },
    /// Confirm leadership with a quorum and return the index a linearizable read must wait for.
    ReadIndex,
    /// Make a registered host a Raft member: learner first, then voter while the cluster has
    /// fewer voters than its setting.
    Admit { token_hash: String, id: NodeId },
    /// Take a host out of Raft and of the cluster, promoting a learner if a voter leaves.
    RemoveHost { name: String },
    /// `RemoveHost` for a user or the host's root (cluster level 2): apply checks host.manage
    /// again, and the removal's events name them.
    RemoveHostFor { name: String, actor: crate::model::auth::Actor },
    /// A host's heartbeat, sent straight to the leader (never forwarded, never a log entry).
    /// `self_fenced`: the host lost its lease since its last acknowledged heartbeat and
    /// destroyed its VMs.
    /// `sent_ms`: the host's clock when it sent it; a heartbeat held up in the network (TCP
    /// retransmits after a partition heals) arrives late and is refused as stale.
    Heartbeat { host: NodeId, self_fenced: bool, sent_ms: i64 },
    /// A node joins a cluster with a CA: it sends the token itself (only over TLS to a node
    /// whose CA the token pins) and a CSR; the leader checks the token, registers the host and
    /// signs its certificate.
    Join { token: String, name: String, address: String, facts: crate::model::HostFacts, csr: String },
    /// Sign a certificate: a member's renewal (or its first, when the level that requires TLS
    /// is prepared), or a user's (`cluster credentials`).
    Sign { csr: String, role: SignFor },
    /// Make the cluster CA if there is none yet (the leader keeps its key), and return it.
    EnsureCa,
    /// A member whose key or certificate was lost (`corrald --rejoin --token-file`) proves
    /// itself with a join token, as a joining node does, and gets a new certificate.
    Recertify { token: String, name: String, csr: String },
}

/// Whose certificate a CSR asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SignFor {
    Member { host: NodeId },
    User { name: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderResponse {
    /// The reply, and the log index of the entry, so the asking node can wait until it has
    /// applied it too (read-your-writes on every node).
    Written(Reply, u64),
    ReadIndex(u64),
    Admitted {
        voter: bool,
    },
    HostRemoved {
        id: NodeId,
        promoted: Option<String>,
    },
    /// The heartbeat renewed the host's lease. `index`: the leader's last log index; the host
    /// uses its lease only once it has applied that much, so it never acts on a state older
    /// than the leader's decision to renew it (a `host down` it missed, for one).
    HeartbeatAck {
        index: u64,
    },
    Joined {
        id: NodeId,
        cluster_name: String,
        ca_pem: String,
        cert_pem: String,
    },
    Signed {
        cert_pem: String,
        ca_pem: String,
    },
    Ca {
        ca_pem: String,
    },
}

pub type ForwardResult = Result<LeaderResponse, ClusterError>;

/// A forwarded request with the number of times it was handed on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    pub hops: u8,
    pub request: LeaderRequest,
}

/// Beyond this many hand-overs a node answers itself or says it is unavailable.
pub const MAX_HOPS: u8 = 2;
