//! EventService: the cluster's event log, listed or followed as new events are applied.
//! Following reads this node's own copy and wakes on every apply; it never polls on a timer.

use std::pin::Pin;
use std::sync::Arc;

use corral_proto::event_service_server::EventService;
use corral_proto::{Event, FollowEventsRequest, ListEventsRequest, ListEventsResponse};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status;
use super::Handles;

pub struct Api(pub Arc<Handles>);

fn to_proto(e: &corral_raft::model::Event) -> Event {
    Event { index: e.index, time_unix_ms: e.time_ms, kind: e.kind.as_str().into(), message: e.message.clone() }
}

#[tonic::async_trait]
impl EventService for Api {
    async fn list(&self, req: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        let ListEventsRequest { limit, stale } = req.into_inner();
        let events = self
            .0
            .cluster
            .read(stale, |s| {
                let skip = if limit == 0 { 0 } else { s.events.len().saturating_sub(limit as usize) };
                s.events.iter().skip(skip).map(to_proto).collect()
            })
            .await
            .map_err(status)?;
        Ok(Response::new(ListEventsResponse { events }))
    }

    type FollowStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

    async fn follow(&self, req: Request<FollowEventsRequest>) -> Result<Response<Self::FollowStream>, Status> {
        let FollowEventsRequest { after_index, tail } = req.into_inner();
        let state = self.0.cluster.state().map_err(status)?.clone();
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
                    if tx.send(Ok(e)).await.is_err() {
                        return; // the client went away
                    }
                }
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
