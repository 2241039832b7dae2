//! How far other nodes have applied the log, as an edit that must be in every host's OVF store
//! before it returns needs to know. Each peer has one task with at most one `WaitApplied` call
//! in flight, asking for the highest index anyone waits for; concurrent edits share its answer
//! instead of each asking every peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::WaitAppliedRequest;
use corral_raft::network::Network;
use tokio::sync::watch;

/// How long one `WaitApplied` call may wait on the peer.
const CALL_WAIT: Duration = Duration::from_secs(2);
/// After a failed call, the next one waits this long (the peer may be gone).
const RETRY_GAP: Duration = Duration::from_millis(50);

struct Peer {
    /// The highest index someone waits for.
    wanted: watch::Sender<u64>,
    /// The highest index the peer said it applied.
    seen: watch::Sender<u64>,
}

#[derive(Default)]
pub struct PeersApplied {
    peers: Mutex<HashMap<String, Arc<Peer>>>,
}

impl PeersApplied {
    /// Waits until the node at `address` has applied `index`; false when `timeout` passed first.
    pub async fn wait(&self, network: &Network, address: &str, index: u64, timeout: Duration) -> bool {
        let peer = self.peer(network, address);
        peer.wanted.send_if_modified(|w| {
            let more = index > *w;
            *w = (*w).max(index);
            more
        });
        let mut seen = peer.seen.subscribe();
        let reached = tokio::time::timeout(timeout, seen.wait_for(|s| *s >= index)).await;
        matches!(reached, Ok(Ok(_)))
    }

    fn peer(&self, network: &Network, address: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("peers");
        if let Some(p) = peers.get(address) {
            return p.clone();
        }
        let peer = Arc::new(Peer { wanted: watch::channel(0).0, seen: watch::channel(0).0 });
        peers.insert(address.to_string(), peer.clone());
        tokio::spawn(follow(network.clone(), address.to_string(), Arc::downgrade(&peer)));
        peer
    }
}

/// The peer's task: asks for the wanted index whenever it is beyond what the peer said; ends
/// when nobody holds the peer any more (never, in practice: peers are kept).
async fn follow(network: Network, address: String, peer: std::sync::Weak<Peer>) {
    let mut wanted = match peer.upgrade() {
        Some(p) => p.wanted.subscribe(),
        None => return,
    };
    loop {
        let Some(p) = peer.upgrade() else { return };
        let target = *wanted.borrow_and_update();
        if target <= *p.seen.borrow() {
            drop(p);
            if wanted.changed().await.is_err() {
                return;
            }
            continue;
        }
        match ask(&network, &address, target).await {
            Some(applied) => {
                p.seen.send_if_modified(|s| {
                    let more = applied > *s;
                    *s = (*s).max(applied);
                    more
                });
            }
            None => tokio::time::sleep(RETRY_GAP).await,
        }
    }
}

async fn ask(network: &Network, address: &str, index: u64) -> Option<u64> {
    let channel = network.channel(address).ok()?;
    let mut req = tonic::Request::new(WaitAppliedRequest { index, timeout_ms: CALL_WAIT.as_millis() as u64 });
    req.set_timeout(CALL_WAIT + Duration::from_millis(500));
    let mut client = RaftServiceClient::new(channel);
    let call = client.wait_applied(req);
    let r = tokio::time::timeout(CALL_WAIT + Duration::from_millis(500), call).await.ok()?.ok()?;
    Some(r.into_inner().applied)
}
