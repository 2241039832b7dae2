//! `vm snapshot ...`: take, list, show, preview, commit, undo, restore and delete a VM's
//! snapshots. Taking one (and deleting one with `--wait`) shows progress on stderr
//! (`crate::progress`) until its host is done; the last line of `create` ends with the
//! snapshot's id.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use proto::vm_service_client::VmServiceClient;

use crate::args::VmSnapshotCommand;
use crate::commands::Context;
use crate::output::{self, Fields, Format, Table};
use crate::progress::Progress;
use crate::size::format_mib;
use crate::views::{SnapshotDetailView, SnapshotView};

/// How often a command that waits for the host looks again, and for how long at most.
const POLL: Duration = Duration::from_millis(300);
const QUICK_POLL: Duration = Duration::from_millis(25);
const QUICK: Duration = Duration::from_secs(3);
const PATIENCE: Duration = Duration::from_secs(900);

pub(super) async fn run(ctx: &Context, command: VmSnapshotCommand) -> Result<()> {
    match command {
        VmSnapshotCommand::Create { vm, description, memory, disks, wait } => {
            let request = proto::CreateSnapshotRequest {
                vm: vm.clone(),
                description,
                memory,
                disks: disks
                    .map(|values| proto::StringList { values: values.into_iter().filter(|v| !v.is_empty()).collect() }),
                wait: false,
            };
            let r = write(ctx, request, |mut c, r| async move { c.create_snapshot(r).await }).await?;
            let id = r.snapshot.as_ref().map(|s| s.id.clone()).unwrap_or_default();
            let what = if memory { "with memory" } else { "of its disks" };
            let snap = follow(ctx, &vm, &id, &format!("taking snapshot {id} of {vm} ({what})"), false, wait).await?;
            match ctx.format {
                Format::Json => output::print_json(&snap.as_ref().map(SnapshotView::from))?,
                Format::Table => output::print(&format!("snapshot of {vm} taken: {id}\n"))?,
            }
            Ok(())
        }
        VmSnapshotCommand::List { vm } => list(ctx, vm).await,
        VmSnapshotCommand::Show { vm, snapshot } => {
            let request = proto::SnapshotRef { vm, snapshot };
            let s = ctx
                .nodes
                .read(|channel| {
                    let request = request.clone();
                    async move { VmServiceClient::new(channel).get_snapshot(request).await }
                })
                .await?;
            show(ctx.format, s.into())
        }
        VmSnapshotCommand::Preview { vm, snapshot, memory, disks, config } => {
            let request = proto::PreviewSnapshotRequest {
                vm: vm.clone(),
                snapshot,
                memory,
                disks: disks
                    .map(|values| proto::StringList { values: values.into_iter().filter(|v| !v.is_empty()).collect() }),
                config,
            };
            let r = write(ctx, request, |mut c, r| async move { c.preview_snapshot(r).await }).await?;
            done(
                ctx,
                &r,
                &format!(
                    "{vm} is in preview: start it (`corral vm start {vm}`), then `corral vm snapshot commit|undo {vm}`"
                ),
            )
        }
        VmSnapshotCommand::Commit { vm } => {
            let request = proto::VmRef { vm: vm.clone() };
            let r = write(ctx, request, |mut c, r| async move { c.commit_snapshot(r).await }).await?;
            done(ctx, &r, &format!("the preview of {vm} was committed"))
        }
        VmSnapshotCommand::Undo { vm } => {
            let request = proto::VmRef { vm: vm.clone() };
            let r = write(ctx, request, |mut c, r| async move { c.undo_snapshot(r).await }).await?;
            done(ctx, &r, &format!("the preview of {vm} was undone"))
        }
        VmSnapshotCommand::Restore { vm, snapshot } => {
            let request = proto::SnapshotRef { vm: vm.clone(), snapshot };
            let r = write(ctx, request, |mut c, r| async move { c.restore_snapshot(r).await }).await?;
            let id = r.snapshot.as_ref().map(|s| s.id.clone()).unwrap_or_default();
            done(ctx, &r, &format!("{vm} was restored to snapshot {id}"))
        }
        VmSnapshotCommand::Delete { vm, snapshot, wait } => {
            let request = proto::DeleteSnapshotRequest { vm: vm.clone(), snapshot, wait: false };
            let r = write(ctx, request, |mut c, r| async move { c.delete_snapshot(r).await }).await?;
            let id = r.snapshot.as_ref().map(|s| s.id.clone()).unwrap_or_default();
            if wait {
                follow(ctx, &vm, &id, &format!("deleting snapshot {id} of {vm}"), true, true).await?;
                output::print(&format!("snapshot {id} of {vm} deleted\n"))
            } else {
                output::print(&format!("snapshot {id} of {vm} is being deleted (`corral vm snapshot list {vm}`)\n"))
            }?;
            Ok(())
        }
    }
}

/// Sends a snapshot write, tagged so that it is applied at most once.
async fn write<R, F, Fut>(ctx: &Context, request: R, rpc: F) -> Result<proto::SnapshotResult>
where
    R: Clone,
    F: Fn(VmServiceClient<crate::connect::Channel>, tonic::Request<R>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<proto::SnapshotResult>, tonic::Status>>,
{
    ctx.nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            rpc(VmServiceClient::new(channel), request)
        })
        .await
}

async fn snapshots(ctx: &Context, vm: &str) -> Result<proto::SnapshotList> {
    let request = proto::VmRef { vm: vm.to_string() };
    ctx.nodes
        .read(|channel| {
            let request = request.clone();
            async move { VmServiceClient::new(channel).list_snapshots(request).await }
        })
        .await
}

/// Follows snapshot `id` until its host is done with it: returns it (`None` once deleted, when
/// `gone` is what was asked), or fails with the host's reason. Progress shows from the start
/// when `eager`, else once it takes long enough to wonder (a quick one prints only its result).
async fn follow(
    ctx: &Context,
    vm: &str,
    id: &str,
    what: &str,
    gone: bool,
    eager: bool,
) -> Result<Option<proto::Snapshot>> {
    let started = Instant::now();
    let mut progress = Progress::stderr();
    loop {
        let list = snapshots(ctx, vm).await?;
        let snap = list.snapshots.iter().find(|s| s.id == id).cloned();
        let busy = snap.as_ref().is_some_and(|s| s.status == "locked");
        if !busy {
            let failed = match snap {
                Some(s) if gone => {
                    format!(
                        "snapshot {id} of {vm} was not deleted: {}",
                        list.last_error.unwrap_or_else(|| format!("it is {}", s.status))
                    )
                }
                None if !gone => format!(
                    "snapshot {id} of {vm} could not be taken: {}",
                    list.last_error.unwrap_or_else(|| "see `corral events`".into())
                ),
                other => {
                    progress.finish(&format!("{what}: done"));
                    return Ok(other);
                }
            };
            progress.abandon();
            bail!(failed);
        }
        if started.elapsed() > PATIENCE {
            progress.abandon();
            bail!(
                "{what}: still not done after {} s; stopped waiting (see `corral vm snapshot list {vm}`)",
                PATIENCE.as_secs()
            );
        }
        if eager || started.elapsed() >= Duration::from_secs(1) {
            progress.phase(what);
        }
        // Often at first (most jobs take well under a second), then at an easy pace.
        tokio::time::sleep(if started.elapsed() < QUICK { QUICK_POLL } else { POLL }).await;
    }
}

fn done(ctx: &Context, r: &proto::SnapshotResult, message: &str) -> Result<()> {
    match ctx.format {
        Format::Json => output::print_json(&serde_json::json!({
            "vm": r.vm.clone().map(crate::views::VmView::from),
            "snapshot": r.snapshot.as_ref().map(SnapshotView::from),
            "notes": r.notes,
        }))?,
        Format::Table => {
            let mut text = String::new();
            for n in &r.notes {
                text.push_str(&format!("note: {n}\n"));
            }
            text.push_str(message);
            text.push('\n');
            output::print(&text)?;
        }
    }
    Ok(())
}

async fn list(ctx: &Context, vm: String) -> Result<()> {
    let list = snapshots(ctx, &vm).await?;
    let views: Vec<SnapshotView> = list.snapshots.iter().map(SnapshotView::from).collect();
    if ctx.format == Format::Json {
        output::print_json(&views)?;
        return Ok(());
    }
    let mut table = Table::new(&["ID", "DESCRIPTION", "CREATED", "MEMORY", "DISKS", "STATUS"]);
    // Depth first from the roots, oldest first: a child below its parent, indented.
    let mut rows: Vec<(usize, &SnapshotView)> = Vec::new();
    fn walk<'a>(
        all: &'a [SnapshotView],
        parent: Option<&str>,
        depth: usize,
        rows: &mut Vec<(usize, &'a SnapshotView)>,
    ) {
        for s in all.iter().filter(|s| s.parent.as_deref() == parent) {
            rows.push((depth, s));
            walk(all, Some(&s.id), depth + 1, rows);
        }
    }
    walk(&views, None, 0, &mut rows);
    // A parent that is gone (it cannot be, but a list must show everything).
    for s in &views {
        if !rows.iter().any(|(_, r)| r.id == s.id) {
            rows.push((0, s));
        }
    }
    let here = format!(
        "you are here ({}{})",
        list.vm_status,
        list.resume_from.as_ref().map(|s| format!(", resumes from {s} at its start")).unwrap_or_default()
    );
    let indent = |d: usize| if d == 0 { String::new() } else { format!("{}`- ", "   ".repeat(d - 1)) };
    let mut placed = false;
    for (depth, s) in &rows {
        let mut disks = s.disks.join(",");
        if !s.disks_gone.is_empty() {
            disks.push_str(&format!(" (gone: {})", s.disks_gone.join(",")));
        }
        table.row(vec![
            format!("{}{}", indent(*depth), s.id),
            s.description.clone(),
            s.created.clone(),
            if s.memory { format!("yes ({})", format_mib(s.memory_mib)) } else { "no".to_string() },
            if disks.is_empty() { "-".to_string() } else { disks },
            s.status.clone(),
        ]);
        if s.current {
            table.row(vec![
                format!("{}-> now", indent(depth + 1)),
                here.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            placed = true;
        }
    }
    if !placed {
        table.row(vec!["-> now".into(), here, String::new(), String::new(), String::new(), String::new()]);
    }
    let mut text = table.render();
    if let Some(p) = &list.preview {
        let what: Vec<String> = [
            list.preview_config.then(|| "its configuration".to_string()),
            list.preview_memory.then(|| "its memory".to_string()),
            (!list.preview_disks.is_empty()).then(|| format!("disks {}", list.preview_disks.join(","))),
        ]
        .into_iter()
        .flatten()
        .collect();
        text.push_str(&format!("\nin preview: {p} ({})\n", what.join(", ")));
    }
    if let Some(job) = &list.job {
        text.push_str(&format!("\nin progress: {job}\n"));
    }
    if let Some(e) = &list.last_error {
        text.push_str(&format!("\nlast failure: {e}\n"));
    }
    Ok(output::print(&format!("{}\n", text.trim_end()))?)
}

fn show(format: Format, s: SnapshotDetailView) -> Result<()> {
    if format == Format::Json {
        return Ok(output::print_json(&s)?);
    }
    let v = &s.snapshot;
    let mut fields = Fields::new()
        .add("id", v.id.clone())
        .add("parent", v.parent.clone().unwrap_or_else(|| "-".into()))
        .add("description", v.description.clone())
        .add("created", v.created.clone())
        .add("status", v.status.clone())
        .add("memory", if v.memory { format!("yes ({})", format_mib(v.memory_mib)) } else { "no".into() });
    let disks: Vec<String> = s
        .disk_sizes
        .iter()
        .map(|d| {
            let size = d.image_mib.map(|m| format!(", image {}", format_mib(m))).unwrap_or_default();
            let gone = if d.present { "" } else { ", no longer the VM's" };
            format!("{} ({}{size}{gone})", d.name, d.id)
        })
        .collect();
    fields = fields.add_list("disks", disks, "none");
    if let Some(c) = &s.config {
        fields = fields
            .add("config: memory", format_mib(c.memory_mib))
            .add("config: vcpus", c.vcpus.to_string())
            .add_list("config: disks", c.disks.iter().map(|d| d.name.clone()).collect(), "none")
            .add_list("config: nics", c.nics.iter().map(|n| format!("{} {}", n.name, n.mac)).collect(), "none")
            .add("config: os", c.os.clone().unwrap_or_default());
    }
    Ok(output::print(&fields.render())?)
}
