//! `corral events`: the cluster's event log, once (EventService.List) or followed as events
//! are committed (EventService.Follow). A followed stream that breaks resumes on the next
//! node after the last event printed, so no event is shown twice or skipped.

use std::time::Duration;

use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use proto::event_service_client::EventServiceClient;

use super::Context;
use crate::connect::{answer, Failure};
use crate::output::{self, Format, Table};
use crate::views::EventView;

/// Pause before reopening a broken stream, so a node that keeps failing is not hammered.
const RESUME_PAUSE: Duration = Duration::from_millis(500);
/// Width of the KIND column while following, when the widest kind is not known in advance.
const FOLLOW_KIND_WIDTH: usize = 16;

pub async fn run(ctx: &Context, args: crate::args::EventsArgs) -> Result<()> {
    let limit = args.limit.unwrap_or(0);
    if !args.follow {
        return list(ctx, limit, args.user.unwrap_or_default()).await;
    }
    if args.user.is_some() {
        bail!("--user: events are filtered by user when listed, not while following");
    }
    tokio::select! {
        result = follow(ctx, limit) => result,
        () = interrupted() => Ok(()),
    }
}

async fn list(ctx: &Context, limit: u32, user: String) -> Result<()> {
    let request = proto::ListEventsRequest { limit, stale: ctx.stale, user };
    let response = ctx
        .nodes
        .read(|channel| {
            let request = request.clone();
            async move {
                EventServiceClient::new(channel)
                    .max_decoding_message_size(corral_proto::MAX_LIST_MESSAGE)
                    .list(request)
                    .await
            }
        })
        .await?;
    let events = response.events.into_iter().map(EventView::from);
    match ctx.format {
        Format::Json => {
            for event in events {
                output::print_json_line(&event)?;
            }
        }
        Format::Table => {
            let mut table = Table::new(&["TIME", "KIND", "USER", "MESSAGE"]);
            for event in events {
                let user = if event.user.is_empty() { "-".to_string() } else { event.user };
                table.row(vec![event.time, event.kind, user, event.message]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}

async fn follow(ctx: &Context, tail: u32) -> Result<()> {
    let mut header = ctx.format == Format::Table;
    let nodes = &ctx.nodes;
    let mut request = proto::FollowEventsRequest { after_index: 0, tail };
    let mut first = 0;
    // Streams in a row that broke before delivering an event; too many means give up.
    let mut fruitless = 0;
    loop {
        let (node, mut stream) = nodes
            .open_stream(first, |channel| async move { EventServiceClient::new(channel).follow(request).await })
            .await?;
        if std::mem::take(&mut header) {
            output::print(&follow_line("TIME", "KIND", "MESSAGE"))?;
        }
        let endpoint = nodes.endpoints().iter().nth(node).map(|e| e.to_string());
        let endpoint = endpoint.unwrap_or_default();
        let reason = loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    fruitless = 0;
                    // Resume after this event, and print no more history than asked for.
                    request.after_index = event.index;
                    request.tail = 0;
                    print_event(ctx.format, event.into())?;
                }
                Ok(None) => break "the node ended the stream".to_string(),
                Err(status) => match Failure::of(&status) {
                    Failure::NotSent(reason) | Failure::Lost(reason) => break reason,
                    Failure::Unavailable => break status.message().to_string(),
                    Failure::Answer => return Err(answer(status)),
                },
            }
        };
        fruitless += 1;
        if fruitless > nodes.endpoints().len() {
            bail!("lost the event stream from {endpoint}: {reason}");
        }
        eprintln!("warning: lost the event stream from {endpoint}: {reason}; resuming");
        first = node + 1;
        tokio::time::sleep(RESUME_PAUSE).await;
    }
}

fn print_event(format: Format, event: EventView) -> Result<()> {
    match format {
        Format::Json => output::print_json_line(&event)?,
        Format::Table => output::print(&follow_line(&event.time, &event.kind, &event.message))?,
    }
    Ok(())
}

fn follow_line(time: &str, kind: &str, message: &str) -> String {
    // Times are all as wide as the RFC 3339 form with milliseconds.
    format!("{time:<24}  {kind:<FOLLOW_KIND_WIDTH$}  {message}\n")
}

/// Resolves on Ctrl-C. If the handler cannot be installed, never resolves, so that
/// following goes on rather than stopping at once.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
