//! Records "host X is the new leader (term N)" in the event log each time this node wins an
//! election, so operators see failovers in `corral events`. It writes only as leader and
//! only for its own term; apply ignores a term that is not newer than the last recorded.

use std::time::Duration;

use corral_raft::command::Op;
use openraft::ServerState;

use crate::cluster::{Cluster, RaftParts};

pub async fn record_leader_changes(cluster: Cluster, parts: RaftParts) {
    let (id, state) = (parts.id, &parts.state);
    // Server metrics change only with leadership and membership, not with every write.
    let mut server = parts.server_metrics();
    let mut applied = state.subscribe();
    let mut recorded_term = 0u64;
    loop {
        let (is_leader, term) = {
            let m = server.borrow_and_update();
            (m.state == ServerState::Leader, m.vote.leader_id().get_term())
        };
        let bootstrapped = state.read(|s| s.cluster.is_some());
        if is_leader && bootstrapped && term != recorded_term {
            match cluster.propose_as_leader(Op::LeaderElected { id, term }).await {
                Ok(_) => {
                    tracing::info!(term, "this node is the leader");
                    recorded_term = term;
                }
                Err(e) => {
                    tracing::debug!("could not record leadership yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        // A node leads before the bootstrap command is applied: then wake on applies too.
        let waiting_for_bootstrap = is_leader && !bootstrapped;
        tokio::select! {
            r = server.changed() => if r.is_err() { return },
            r = applied.changed(), if waiting_for_bootstrap => if r.is_err() { return },
        }
    }
}
