//! Leader controllers: tasks that act only while this node leads, decide from the replicated
//! state, and write commands. A new leader starts them afresh; they keep nothing that
//! matters in memory.

mod leadership;
pub mod liveness;

use std::sync::Arc;

use corral_raft::typ::{Raft, StateHandle};
use corral_raft::NodeId;

use crate::node::Node;

pub fn spawn(node: Arc<Node>, raft: Raft, state: StateHandle, id: NodeId) {
    tokio::spawn(leadership::record_leader_changes(node.clone(), raft.clone(), state.clone(), id));
    tokio::spawn(liveness::run(node, raft, state, id));
}
