//! `vm migrate --wait`: follows a migration until it ends, showing its progress on stderr
//! (`crate::progress`), and turns a failed one into an error that carries the cluster's event
//! about it.

use std::time::Duration;

use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use proto::event_service_client::EventServiceClient;

use super::print::print_vm;
use super::{change, get};
use crate::commands::Context;
use crate::progress::Progress;
use crate::size::format_mib;

/// How often `vm migrate --wait` asks whether the migration has ended.
const MIGRATION_POLL: Duration = Duration::from_millis(50);
/// How long `vm migrate --wait` waits before giving up (the migration itself goes on).
const MIGRATION_WAIT: Duration = Duration::from_secs(10 * 60);
/// How many of the latest events to search for the reason a migration failed.
const MIGRATION_EVENTS: u32 = 20;

pub(super) async fn migrate(ctx: &Context, vm: String, to: Option<String>, wait: bool) -> Result<()> {
    let request = proto::MigrateVmRequest { vm, to: to.unwrap_or_default() };
    let moving = change(ctx, request, |mut client, request| async move { client.migrate(request).await }).await?;
    if !wait {
        return print_vm(ctx.format, moving.into());
    }
    let name = moving.name.clone();
    let from = moving.host.clone().filter(|h| !h.is_empty());
    let mut progress = Progress::stderr();
    if moving.status == "migrating" {
        let to = moving.migrating_to.clone().filter(|h| !h.is_empty());
        progress.phase(&format!(
            "migrating {name} from {} to {}",
            from.as_deref().unwrap_or("its host"),
            to.as_deref().unwrap_or("another host")
        ));
    }
    let ended = wait_for_migration(ctx, moving, &mut progress).await?;
    if let Some(from) = from.filter(|from| ended.status == "up" && ended.host.as_deref() == Some(from.as_str())) {
        progress.abandon();
        let mut error = format!("migration of VM {name} failed; it keeps running on host {from}");
        if let Some(event) = migration_event(ctx, &name).await {
            error.push_str(&format!(" (event: {event})"));
        }
        bail!(error);
    }
    progress.finish(&format!(
        "{name} is {} on host {}",
        ended.status,
        ended.host.as_deref().filter(|h| !h.is_empty()).unwrap_or("-")
    ));
    print_vm(ctx.format, ended.into())
}

/// Polls the VM (through the leader, so each answer is current) until it is no longer
/// migrating, and returns it as it ended.
async fn wait_for_migration(ctx: &Context, mut vm: proto::Vm, progress: &mut Progress) -> Result<proto::Vm> {
    let give_up = tokio::time::Instant::now() + MIGRATION_WAIT;
    // By id, which a rename during the wait does not change.
    let key = if vm.id.is_empty() { vm.name.clone() } else { vm.id.clone() };
    while vm.status == "migrating" {
        show(progress, &vm);
        if tokio::time::Instant::now() >= give_up {
            bail!(
                "VM {} is still migrating after {}; stopped waiting (see `corral events`)",
                vm.name,
                humantime::format_duration(MIGRATION_WAIT)
            );
        }
        tokio::time::sleep(MIGRATION_POLL).await;
        vm = get(ctx, key.clone(), false).await?;
    }
    Ok(vm)
}

/// ", pass N" when the host reported how many passes over the guest's memory it made.
pub(super) fn pass(iteration: u64) -> String {
    if iteration == 0 {
        String::new()
    } else {
        format!(", pass {iteration}")
    }
}

/// Where a migrating VM is: queued, cancelling, or a share of its memory copied.
fn show(progress: &mut Progress, vm: &proto::Vm) {
    match vm.migration.as_ref().and_then(|j| j.progress.as_ref()) {
        None if vm.migration.as_ref().is_some_and(|j| j.cancel) => {
            progress.phase(&format!("cancelling the migration of {}", vm.name))
        }
        None => progress.phase(&format!("{}: queued on its host, waiting for a free migration slot", vm.name)),
        Some(p) => progress.percent(
            &format!("migrating {}", vm.name),
            u64::from(p.percent),
            &format!(
                "{} of {} left{}",
                format_mib(p.memory_remaining_mib),
                format_mib(p.memory_total_mib),
                pass(p.iteration)
            ),
        ),
    }
}

/// The latest event about a migration of VM `name`, which carries libvirt's error when the
/// migration failed; none if the events cannot be read.
async fn migration_event(ctx: &Context, name: &str) -> Option<String> {
    let request = proto::ListEventsRequest { limit: MIGRATION_EVENTS, stale: false, user: String::new() };
    let response = ctx
        .nodes
        .read(|channel| {
            let request = request.clone();
            async move { EventServiceClient::new(channel).list(request).await }
        })
        .await
        .ok()?;
    let event = response.events.into_iter().rev().find(|e| is_migration_event_of(&e.message, name))?;
    // One line on stderr, whatever libvirt put in its message.
    Some(event.message.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn is_migration_event_of(message: &str, name: &str) -> bool {
    // Events name a VM as "VM <name>", followed by a space or the end of the sentence.
    let mentions = message.match_indices(&format!("VM {name}")).any(|(at, found)| {
        let rest = &message[at + found.len()..];
        rest.is_empty() || rest.starts_with([' ', '.', ',', ';', ':'])
    });
    mentions && message.contains("Migration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_events_are_matched_by_whole_vm_name() {
        let failed = "Migration of VM web1 failed; it keeps running on host host1: operation failed";
        assert!(is_migration_event_of(failed, "web1"));
        assert!(!is_migration_event_of(failed, "web"));
        assert!(!is_migration_event_of("Migration of VM web10 failed; it keeps running on host host1: x", "web1"));
        assert!(!is_migration_event_of("VM web1 is up on host host1.", "web1"));
    }

    #[test]
    fn migration_progress_is_shown_as_percent_and_memory_left() {
        let pipe = crate::progress::testing::Pipe::default();
        let mut progress = Progress::lines(Box::new(pipe.clone()));
        let mut vm = proto::Vm { name: "web1".into(), status: "migrating".into(), ..Default::default() };
        vm.migration = Some(proto::MigrationJob::default());
        show(&mut progress, &vm);
        vm.migration = Some(proto::MigrationJob {
            progress: Some(proto::MigrationProgress {
                percent: 40,
                memory_total_mib: 1024,
                memory_remaining_mib: 614,
                iteration: 2,
                elapsed_ms: 900,
            }),
            ..Default::default()
        });
        show(&mut progress, &vm);
        vm.migration.as_mut().unwrap().cancel = true;
        vm.migration.as_mut().unwrap().progress = None;
        show(&mut progress, &vm);
        assert_eq!(
            pipe.text(),
            "web1: queued on its host, waiting for a free migration slot\n\
             migrating web1: 40%, 614 MiB of 1 GiB left, pass 2\n\
             cancelling the migration of web1\n"
        );
    }
}
