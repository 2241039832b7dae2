//! How far other nodes have applied the log, as an edit that must be in every host's OVF store
//! before it returns needs to know. Each peer (by node id and address) has one task with at
//! most one `WaitApplied` call in flight, asking for the highest index anyone waits for;
//! concurrent edits share its answer instead of each asking every peer. The task asks only
//! while someone waits, and backs off from a peer that does not answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use corral_proto::raft_service_client::RaftServiceClient;
use corral_proto::WaitAppliedRequest;
use corral_raft::network::Network;
use corral_raft::NodeId;
use tokio::sync::watch;

/// How long one `WaitApplied` call may wait on the peer.
const CALL_WAIT: Duration = Duration::from_secs(2);
/// After a failed call the next waits this long, doubling up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

struct Peer {
    /// The highest index someone waits for.
    wanted: watch::Sender<u64>,
    /// The highest index the peer said it applied.
    seen: watch::Sender<u64>,
    /// Callers waiting now; the task asks nothing while there are none.
    waiters: AtomicUsize,
}

#[derive(Default)]
pub struct PeersApplied {
    peers: Mutex<HashMap<(NodeId, String), Arc<Peer>>>,
}

/// Counts a waiter for as long as it lives.
struct Waiting<'a>(&'a Peer);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PeersApplied {
    /// Waits until node `id` at `address` has applied `index`; false when `timeout` passed first.
    pub async fn wait(&self, network: &Network, id: NodeId, address: &str, index: u64, timeout: Duration) -> bool {
        let peer = self.peer(network, id, address);
        if *peer.seen.borrow() >= index {
            return true;
        }
        peer.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&peer);
        let mut seen = peer.seen.subscribe();
        // Raised after the waiter is counted, so the task, woken by it, sees someone waiting.
        peer.wanted.send_if_modified(|w| {
            let more = index > *w;
            *w = (*w).max(index);
            more
        });
        let reached = tokio::time::timeout(timeout, seen.wait_for(|s| *s >= index)).await;
        matches!(reached, Ok(Ok(_)))
    }

    fn peer(&self, network: &Network, id: NodeId, address: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("peers");
        let key = (id, address.to_string());
        if let Some(p) = peers.get(&key) {
            return p.clone();
        }
        let peer =
            Arc::new(Peer { wanted: watch::channel(0).0, seen: watch::channel(0).0, waiters: AtomicUsize::new(0) });
        peers.insert(key, peer.clone());
        tokio::spawn(follow(network.clone(), address.to_string(), Arc::downgrade(&peer)));
        peer
    }
}

/// The peer's task: while someone waits for an index beyond what the peer said, asks for it.
async fn follow(network: Network, address: String, peer: Weak<Peer>) {
    let mut wanted = match peer.upgrade() {
        Some(p) => p.wanted.subscribe(),
        None => return,
    };
    let mut gap = RETRY_FIRST;
    loop {
        let Some(p) = peer.upgrade() else { return };
        let target = *wanted.borrow_and_update();
        if target <= *p.seen.borrow() || p.waiters.load(Ordering::SeqCst) == 0 {
            drop(p);
            if wanted.changed().await.is_err() {
                return;
            }
            continue;
        }
        match ask(&network, &address, target).await {
            Some(applied) => {
                gap = RETRY_FIRST;
                p.seen.send_if_modified(|s| {
                    let more = applied > *s;
                    *s = (*s).max(applied);
                    more
                });
            }
            None => {
                drop(p);
                tokio::time::sleep(gap).await;
                gap = (gap * 2).min(RETRY_MAX);
            }
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
