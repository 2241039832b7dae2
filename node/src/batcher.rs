//! Group proposals on the leader: client writes that arrive while earlier entries are still in
//! flight go into Raft as one entry (`Op::Batch`), so a burst of writes costs one trip through
//! openraft, one log append and one replication round instead of one each. A lone write goes
//! alone, at once. Replies and errors go back to each writer; nothing is retried here.

use std::sync::Arc;

use corral_raft::command::{Op, Outcome, Proposal};
use corral_raft::typ::{ClientWriteError, Raft, RaftError};
use corral_raft::{Command, Reply};
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use crate::now_ms;

/// Batches in flight at once; more writes wait and join the next batch.
const IN_FLIGHT: usize = 4;
/// The longest a batch holds its slot waiting for openraft's answer.
const SLOT_HELD_AT_MOST: std::time::Duration = std::time::Duration::from_secs(15);
/// Writes per batch at most (keeps one log entry small).
const MAX_BATCH: usize = 256;

pub type Written = Result<(Reply, u64), RaftError<ClientWriteError>>;

struct Pending {
    request_id: Option<Uuid>,
    op: Op,
    done: oneshot::Sender<Written>,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl Batcher {
    pub fn spawn(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Proposes one write (through a batch when others are waiting) and returns its reply and
    /// the index of the log entry that carried it.
    pub async fn propose(&self, request_id: Option<Uuid>, op: Op) -> Written {
        let (done, rx) = oneshot::channel();
        let stopped = || RaftError::Fatal(openraft::error::Fatal::Stopped);
        self.tx.send(Pending { request_id, op, done }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // While every slot is busy, later writes queue up and join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // openraft never answers an entry that a deposed leader appended and then lost to
            // an installed snapshot: such a batch gives its slot back after a while (its
            // writers, who wait less long, have been told already).
            let _ = tokio::time::timeout(SLOT_HELD_AT_MOST, propose(&raft, batch)).await;
        });
    }
}

async fn propose(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one");
        let cmd = Command { at_ms: now_ms(), request_id: p.request_id, op: p.op };
        let _ = p.done.send(raft.client_write(cmd).await.map(|r| (r.data, r.log_id.index)));
        return;
    }
    let (proposals, waiters): (Vec<Proposal>, Vec<oneshot::Sender<Written>>) =
        batch.into_iter().map(|p| (Proposal { request_id: p.request_id, op: p.op }, p.done)).unzip();
    let cmd = Command { at_ms: now_ms(), request_id: None, op: Op::Batch(proposals) };
    match raft.client_write(cmd).await {
        Ok(resp) => {
            let index = resp.log_id.index;
            let replies = match resp.data {
                Reply(Ok(Outcome::Batch(replies))) if replies.len() == waiters.len() => replies,
                other => {
                    let e = corral_raft::ClusterError::Internal(format!("a batch came back as {other:?}"));
                    vec![Reply(Err(e)); waiters.len()]
                }
            };
            for (w, r) in waiters.into_iter().zip(replies) {
                let _ = w.send(Ok((r, index)));
            }
        }
        Err(e) => {
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}
