//! The openraft type configuration and short aliases for openraft's generic types, so the
//! rest of the workspace never spells out `RaftError<u64, ClientWriteError<u64, NodeInfo>>`.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Reply};

pub type NodeId = u64;

/// What every member knows about another: enough to dial it and to show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// `host:port` of the node's gRPC listener (public API and Raft RPCs share it).
    pub address: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Reply,
        Node = NodeInfo,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, NodeInfo>;

pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type RpcError<E = openraft::error::Infallible> = openraft::error::RPCError<NodeId, NodeInfo, RaftError<E>>;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, NodeInfo>;
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, NodeInfo>;
pub type InstallSnapshotError = openraft::error::InstallSnapshotError;

pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;

/// The state machine store over sled, holding Corral's model.
pub type StateMachineStore = corral_storage::StateMachineStore<TypeConfig, crate::ClusterState>;
pub type StateHandle = corral_storage::StateHandle<TypeConfig, crate::ClusterState>;
pub type LogStore = corral_storage::LogStore<TypeConfig>;
