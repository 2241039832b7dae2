//! EventService: the cluster's event log, listed or followed as new events are applied.
//! Following reads this node's own copy and wakes on every apply; it never polls on a timer.

use std::sync::Arc;

use corral_proto::{Event, FollowEventsRequest, ListEventsRequest, ListEventsResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::authz::Who;
use super::{Caller, Handles};
use corral_raft::model::auth::{Perm, Target};
use corral_raft::ClusterError;

pub struct Api(pub Arc<Handles>);

fn to_proto(e: &corral_raft::model::Event) -> Event {
    Event {
        index: e.index,
        time_unix_ms: e.time_ms,
        kind: e.kind.as_str().into(),
        kind_enum: e.kind.wire(),
        message: e.message.clone(),
        user: e.user.clone().unwrap_or_default(),
    }
}

/// Which events a caller reads: all with audit.read on the cluster, otherwise those of their
/// own requests.
fn reader(who: &Who, s: &corral_raft::ClusterState) -> Result<Option<String>, ClusterError> {
    let grants = who.grants(s)?;
    if grants.can(Perm::AuditRead, Target::Cluster) {
        return Ok(None);
    }
    Ok(Some(who.actor().map(|a| a.name().to_string()).unwrap_or_default()))
}

fn shown(e: &corral_raft::model::Event, only: &Option<String>) -> bool {
    only.as_ref().is_none_or(|u| e.user.as_ref() == Some(u))
}

impl Api {
    pub async fn list(&self, cx: &Caller, req: ListEventsRequest) -> Result<ListEventsResponse, ClusterError> {
        let ListEventsRequest { limit, stale, user } = req;
        let who = self.0.who(cx).await?;
        let user = Some(user.trim().to_string()).filter(|u| !u.is_empty());
        let events = self
            .0
            .cluster
            .read(stale, |s| {
                let only = reader(&who, s)?;
                let mut out: Vec<Event> = s
                    .events
                    .iter()
                    .rev()
                    .filter(|e| shown(e, &only) && shown(e, &user))
                    .take(if limit == 0 { usize::MAX } else { limit as usize })
                    .map(to_proto)
                    .collect();
                out.reverse();
                Ok::<_, ClusterError>(out)
            })
            .await??;
        Ok(ListEventsResponse { events })
    }

    /// The events after `after_index` (or the last `tail`), then each new one as it is applied.
    pub async fn follow(&self, cx: &Caller, req: FollowEventsRequest) -> Result<ReceiverStream<Event>, ClusterError> {
        let FollowEventsRequest { after_index, tail } = req;
        let who = self.0.who(cx).await?;
        let state = self.0.cluster.state()?.clone();
        // Decided once, when the stream starts (a revoked session ends with the next call).
        let only = state.read(|s| reader(&who, s))?;
        let mut applied = state.subscribe();
        let mut last = if tail > 0 {
            state.read(|s| s.next_event_index.saturating_sub(tail as u64).max(after_index))
        } else {
            after_index
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                // A session revoked or expired meanwhile ends the stream.
                let batch: Option<Vec<Event>> = state.read(|s| {
                    let still = who.grants(s).is_ok();
                    still.then(|| s.events_after(last).filter(|e| shown(e, &only)).map(to_proto).collect())
                });
                let Some(batch) = batch else { return };
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
