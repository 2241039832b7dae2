//! EventService: the cluster's event log, listed or followed as new events are applied.
//! Following reads this node's own copy and wakes on every apply; it never polls on a timer.

use std::sync::Arc;

use corral_proto::{Event, FollowEventsRequest, ListEventsRequest, ListEventsResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Caller, Handles};
use corral_raft::ClusterError;

pub struct Api(pub Arc<Handles>);

fn to_proto(e: &corral_raft::model::Event) -> Event {
    Event {
        index: e.index,
        time_unix_ms: e.time_ms,
        kind: e.kind.as_str().into(),
        kind_enum: e.kind.wire(),
        message: e.message.clone(),
    }
}

impl Api {
    pub async fn list(&self, _cx: &Caller, req: ListEventsRequest) -> Result<ListEventsResponse, ClusterError> {
        let ListEventsRequest { limit, stale } = req;
        let events = self
            .0
            .cluster
            .read(stale, |s| {
                let skip = if limit == 0 { 0 } else { s.events.len().saturating_sub(limit as usize) };
                s.events.iter().skip(skip).map(to_proto).collect()
            })
            .await?;
        Ok(ListEventsResponse { events })
    }

    /// The events after `after_index` (or the last `tail`), then each new one as it is applied.
    pub async fn follow(&self, _cx: &Caller, req: FollowEventsRequest) -> Result<ReceiverStream<Event>, ClusterError> {
        let FollowEventsRequest { after_index, tail } = req;
        let state = self.0.cluster.state()?.clone();
        let mut applied = state.subscribe();
        let mut last = if tail > 0 {
            state.read(|s| s.next_event_index.saturating_sub(tail as u64).max(after_index))
        } else {
            after_index
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let batch: Vec<Event> = state.read(|s| s.events_after(last).map(to_proto).collect());
                for e in batch {
                    last = e.index;
                    if tx.send(e).await.is_err() {
                        return; // the client went away
                    }
                }
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
