//! Messages between members that are neither Raft's own nor requests for the leader: a host's
//! heartbeat to each voter (the witnesses of its lease), the leader's questions to the voters
//! about a host's silence before it declares the host down, and pre-votes. Every message names
//! its sender, so that member certificates can later be checked against it. They are sent only
//! to members of this build (cluster level 1 and up), in the current format.

use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::typ::{LogId, NodeId};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRequest {
    /// The sending member's node id.
    pub from: NodeId,
    pub body: PeerBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerBody {
    /// A host's heartbeat to one voter. `sent_ms`: the host's clock when it sent it (a heartbeat
    /// held up in the network is refused as stale). `fenced_ms`: when the host, having lost its
    /// lease since its last renewal, destroyed its VMs (its clock).
    Heartbeat { sent_ms: i64, fenced_ms: Option<i64> },
    /// The leader asks how long this voter has not acknowledged each host's heartbeats.
    Silence,
    /// The leader of `term`, whose state (applied up to `applied`) shows `host` alive, is about
    /// to declare it down: this voter agrees if it has not acknowledged the host for
    /// `at_least_ms`, and then acknowledges none of its heartbeats until it has applied past
    /// `applied` a state with the host down, or an entry of a later term (or is told to forget).
    FenceVote { host: NodeId, term: u64, applied: u64, at_least_ms: u64 },
    /// The leader of `term` did not declare `host` down after all: its heartbeats count again.
    Unfreeze { host: NodeId, term: u64 },
    /// Would this member vote for `from` in `term`? Granted only if it has heard no leader for
    /// an election timeout and `from`'s log is at least as up to date as its own. Changes nothing.
    PreVote { term: u64, last_log: Option<LogId> },
    /// A voter without the cluster CA's key asks another voter for it (over TLS, where the
    /// answering voter checks that the asking certificate is a voter's).
    CaKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerResponse {
    /// The heartbeat was acknowledged. `index`: this voter's last log index; the host uses the
    /// renewal only once it has applied that much.
    HeartbeatAck {
        index: u64,
    },
    /// Per host, milliseconds since this voter last acknowledged it (counted at most from when
    /// this voter started or last stood still).
    Silence {
        silent_ms: Vec<(NodeId, u64)>,
    },
    FenceVote {
        granted: bool,
        silent_ms: u64,
    },
    Unfrozen,
    PreVote {
        granted: bool,
    },
    CaKey {
        key_pem: Option<String>,
    },
}

pub type PeerResult = Result<PeerResponse, ClusterError>;
