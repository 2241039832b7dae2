//! Commands: the only way the replicated state changes. Each carries the proposing leader's
//! clock reading and, for client writes, a request id for de-duplication, so applying the
//! same log on any node at any time gives the same state.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ClusterError;
use crate::model::{HaPriority, HostFacts};
use crate::typ::NodeId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Wall-clock time at the leader when it proposed this command (Unix ms).
    pub at_ms: i64,
    /// Set by clients that may retry; a second command with the same id is not applied again.
    pub request_id: Option<Uuid>,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Bootstrap {
        cluster_name: String,
        voters: u8,
        host: NewHost,
        token_hash: String,
        token_expires_ms: i64,
    },
    AddToken {
        token_hash: String,
        expires_ms: i64,
    },
    /// A node asks to join with a token: checked here, atomically with the id assignment.
    RegisterHost {
        token_hash: String,
        name: String,
        address: String,
        facts: HostFacts,
    },
    /// The registered node is now a Raft member.
    HostJoined {
        id: NodeId,
        voter: bool,
    },
    RemoveHost {
        id: NodeId,
    },
    LeaderElected {
        id: NodeId,
        term: u64,
    },
    CreateVm {
        id: Uuid,
        spec: VmSpec,
    },
    EditVm {
        vm: String,
        changes: VmChanges,
    },
    DeleteVm {
        vm: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewHost {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub facts: HostFacts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub description: String,
    pub comment: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub ha_enabled: bool,
    pub ha_priority: HaPriority,
}

/// Fields that `vm edit` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub comment: Option<String>,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub ha_enabled: Option<bool>,
    pub ha_priority: Option<HaPriority>,
}

impl VmChanges {
    pub fn is_empty(&self) -> bool {
        *self == VmChanges::default()
    }
}

/// What applying a command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Entries that carry no command (blank, membership) and commands with nothing to return.
    #[default]
    Done,
    HostRegistered {
        id: NodeId,
        cluster_name: String,
    },
    /// The VM as it is after the command (create, edit).
    Vm(Box<crate::model::Vm>),
    /// The id of a VM that no longer exists (delete).
    VmDeleted {
        id: Uuid,
    },
}

/// The state machine's answer to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Result<Outcome, ClusterError>);

impl Default for Reply {
    fn default() -> Self {
        Reply(Ok(Outcome::Done))
    }
}
