//! `corral vm ...`: define, list, show, change and delete VMs, and drive their lifecycle
//! (start, shutdown, stop, reboot, suspend, resume, migrate, clone). Every command that
//! changes a VM prints it as the cluster stored it, exactly as `vm show` would.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use corral_proto::Word;
use proto::event_service_client::EventServiceClient;
use proto::vm_service_client::VmServiceClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::Context;
use crate::args::{CreateVmArgs, EditVmArgs, VmCommand};
use crate::files;
use crate::output::{self, Fields, Format, Table};
use crate::size::format_mib;
use crate::views::{DeletedVmView, ExportView, ImportView, OvfDocumentView, VmView};

/// How often `vm migrate --wait` asks whether the migration has ended.
const MIGRATION_POLL: Duration = Duration::from_millis(50);
/// How long `vm migrate --wait` waits before giving up (the migration itself goes on).
const MIGRATION_WAIT: Duration = Duration::from_secs(10 * 60);
/// How many of the latest events to search for the reason a migration failed.
const MIGRATION_EVENTS: u32 = 20;

pub async fn run(ctx: &Context, command: VmCommand) -> Result<()> {
    match command {
        VmCommand::Create(args) => create(ctx, args).await,
        VmCommand::List => list(ctx).await,
        VmCommand::Show { vm } => show(ctx, vm).await,
        VmCommand::Edit(args) => edit(ctx, args).await,
        VmCommand::Delete { vm, keep_disks } => delete(ctx, vm, keep_disks).await,
        VmCommand::Clone { source, name } => {
            let request = proto::CloneVmRequest { source, name };
            // Not `client.clone(..)`: method syntax would pick `Clone::clone` over the RPC.
            let vm = change(ctx, request, |mut client, request| async move {
                VmServiceClient::clone(&mut client, request).await
            })
            .await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Start { vm, host } => {
            let request = proto::StartVmRequest { vm, host: host.unwrap_or_default() };
            let vm = change(ctx, request, |mut client, request| async move { client.start(request).await }).await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Shutdown { vm, reason, timeout } => {
            let request = proto::ShutdownVmRequest {
                vm,
                reason: reason.unwrap_or_default(),
                // 0 asks for the server's default.
                timeout_seconds: timeout.map_or(0, |t| t.as_secs()),
            };
            let vm = change(ctx, request, |mut client, request| async move { client.shutdown(request).await }).await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Stop { vm, reason } => {
            let request = proto::StopVmRequest { vm, reason: reason.unwrap_or_default() };
            let vm = change(ctx, request, |mut client, request| async move { client.stop(request).await }).await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Reboot { vm } => {
            let request = proto::VmRef { vm };
            let vm = change(ctx, request, |mut client, request| async move { client.reboot(request).await }).await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Suspend { vm } => {
            let request = proto::VmRef { vm };
            let vm = change(ctx, request, |mut client, request| async move { client.suspend(request).await }).await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Resume { vm } => {
            let request = proto::VmRef { vm };
            let vm = change(ctx, request, |mut client, request| async move { client.resume(request).await }).await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Migrate { vm, to, wait } => migrate(ctx, vm, to, wait).await,
        VmCommand::MigrateCancel { vm } => {
            let request = proto::VmRef { vm };
            let vm = change(ctx, request, |mut client, request| async move { client.cancel_migration(request).await })
                .await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Export { vm, file, force } => export(ctx, vm, file, force).await,
        VmCommand::Import { file, name, clone } => import(ctx, &file, name, clone).await,
    }
}

/// Sends a write that returns the changed VM, tagged so that it is applied at most once.
async fn change<R, F, Fut>(ctx: &Context, request: R, rpc: F) -> Result<proto::Vm>
where
    R: Clone,
    F: Fn(VmServiceClient<Channel>, Request<R>) -> Fut,
    Fut: Future<Output = Result<Response<proto::Vm>, Status>>,
{
    ctx.nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            rpc(VmServiceClient::new(channel), request)
        })
        .await
}

async fn create(ctx: &Context, args: CreateVmArgs) -> Result<()> {
    let request = proto::CreateVmRequest {
        name: args.name,
        memory_mib: args.memory,
        vcpus: args.vcpus,
        description: args.description,
        comment: args.comment,
        ha: args.ha,
        ha_priority: args.ha_priority.map_or(String::new(), |p| p.word().to_string()),
        ha_priority_enum: args.ha_priority.map(i32::from).unwrap_or_default(),
        disks_mib: args.disks,
        nics: args.nics,
        start: args.start,
        host: args.host.unwrap_or_default(),
        domain_type: args.domain_type.map_or(String::new(), |t| t.word().to_string()),
        domain_type_enum: args.domain_type.map(i32::from).unwrap_or_default(),
        kernel: args.kernel.unwrap_or_default(),
        initrd: args.initrd.unwrap_or_default(),
        cmdline: args.cmdline.unwrap_or_default(),
        resume_behavior: args.resume_behavior.map_or(String::new(), |r| r.word().to_string()),
        resume_behavior_enum: args.resume_behavior.map(i32::from).unwrap_or_default(),
    };
    let vm = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            async move { VmServiceClient::new(channel).create(request).await }
        })
        .await?;
    print_vm(ctx.format, vm.into())
}

async fn list(ctx: &Context) -> Result<()> {
    let request = proto::ListVmsRequest { stale: ctx.stale };
    let response = ctx.nodes.read(|channel| async move { VmServiceClient::new(channel).list(request).await }).await?;
    let vms: Vec<VmView> = response.vms.into_iter().map(VmView::from).collect();
    match ctx.format {
        Format::Json => output::print_json(&vms)?,
        Format::Table => {
            let mut table = Table::new(&["NAME", "STATUS", "HOST", "MEMORY", "VCPUS", "HA", "ID"]);
            for vm in vms {
                let ha = if vm.ha.enabled { vm.ha.priority } else { "-".to_string() };
                table.row(vec![
                    vm.name,
                    vm.status,
                    vm.host.unwrap_or_else(|| "-".to_string()),
                    format_mib(vm.memory_mib),
                    vm.vcpus.to_string(),
                    ha,
                    vm.id,
                ]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}

async fn show(ctx: &Context, vm: String) -> Result<()> {
    let vm = get(ctx, vm, ctx.stale).await?;
    print_vm(ctx.format, vm.into())
}

async fn get(ctx: &Context, vm: String, stale: bool) -> Result<proto::Vm> {
    let request = proto::GetVmRequest { vm, stale };
    ctx.nodes
        .read(|channel| {
            let request = request.clone();
            async move { VmServiceClient::new(channel).get(request).await }
        })
        .await
}

async fn edit(ctx: &Context, args: EditVmArgs) -> Result<()> {
    if args.changes_nothing() {
        bail!(
            "nothing to change: give at least one of --name, --memory, --vcpus, \
             --description, --comment, --ha, --ha-priority, --domain-type, --host-tags, --pin, --migration, \
             --resume-behavior, --auto-converge, --compression, --max-downtime, --bandwidth, \
             --delete-protected, --os"
        );
    }
    let migration = args.edits_migration().then(|| proto::MigrationOverridesEdit {
        auto_converge: args.auto_converge.clone(),
        compression: args.compression.clone(),
        max_downtime_ms: args.max_downtime.clone(),
        bandwidth_mibps: args.bandwidth.clone(),
    });
    let request = proto::EditVmRequest {
        vm: args.vm,
        name: args.name,
        memory_mib: args.memory,
        vcpus: args.vcpus,
        description: args.description,
        comment: args.comment,
        ha: args.ha,
        ha_priority: args.ha_priority.map(|p| p.word().to_string()),
        ha_priority_enum: args.ha_priority.map(i32::from).unwrap_or_default(),
        domain_type: args.domain_type.map(|t| t.word().to_string()),
        domain_type_enum: args.domain_type.map(i32::from).unwrap_or_default(),
        resume_behavior: args.resume_behavior.map(|r| r.word().to_string()),
        resume_behavior_enum: args.resume_behavior.map(i32::from).unwrap_or_default(),
        migration,
        host_tags: args.host_tags.map(|l| proto::StringList { values: l.0 }),
        pinned_hosts: args.pin.map(|l| proto::StringList { values: l.0 }),
        migration_policy: args.migration.map(|m| m.word().to_string()),
        migration_policy_enum: args.migration.map(i32::from).unwrap_or_default(),
        delete_protected: args.delete_protected,
        os: args.os,
    };
    let vm = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            async move { VmServiceClient::new(channel).edit(request).await }
        })
        .await?;
    print_vm(ctx.format, vm.into())
}

async fn export(ctx: &Context, vm: String, file: Option<PathBuf>, force: bool) -> Result<()> {
    if let Some(file) = &file {
        files::check_writable(file, force)?;
    }
    let request = proto::VmRef { vm };
    let document = ctx
        .nodes
        .read(|channel| {
            let request = request.clone();
            async move { VmServiceClient::new(channel).export(request).await }
        })
        .await?;
    let document = OvfDocumentView::from(document);
    let Some(file) = file else {
        return super::ovf::print_document(ctx.format, document);
    };
    files::write_text(&file, &document.xml, force)?;
    let view = ExportView {
        vm_id: document.vm_id,
        name: document.name,
        node: document.node,
        file: file.display().to_string(),
        bytes: document.xml.len() as u64,
    };
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => {
            output::print(&format!("VM {} exported to {} ({} bytes)\n", view.name, view.file, view.bytes))?
        }
    }
    Ok(())
}

async fn import(ctx: &Context, file: &Path, name: Option<String>, clone: bool) -> Result<()> {
    let xml = files::read_text(file)?;
    let response = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(proto::ImportVmRequest {
                xml: xml.clone(),
                name: name.clone(),
                clone,
                request_id: id.as_str().to_string(),
            });
            async move { VmServiceClient::new(channel).import(request).await }
        })
        .await?;
    let view = ImportView::from(response);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => {
            output::print(&vm_fields(view.vm).render())?;
            for part in view.ignored {
                eprintln!("ignored: {part}");
            }
        }
    }
    Ok(())
}

async fn delete(ctx: &Context, vm: String, keep_disks: bool) -> Result<()> {
    let request = proto::DeleteVmRequest { vm: vm.clone(), keep_disks };
    let response = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            async move { VmServiceClient::new(channel).delete(request).await }
        })
        .await?;
    match ctx.format {
        Format::Json => output::print_json(&DeletedVmView { id: response.id, deleted: true, disks_kept: keep_disks })?,
        Format::Table if keep_disks => output::print(&format!("VM {vm} deleted (disks kept as floating disks)\n"))?,
        Format::Table => output::print(&format!("VM {vm} deleted\n"))?,
    }
    Ok(())
}

async fn migrate(ctx: &Context, vm: String, to: Option<String>, wait: bool) -> Result<()> {
    let request = proto::MigrateVmRequest { vm, to: to.unwrap_or_default() };
    let moving = change(ctx, request, |mut client, request| async move { client.migrate(request).await }).await?;
    if !wait {
        return print_vm(ctx.format, moving.into());
    }
    let name = moving.name.clone();
    let from = moving.host.clone().filter(|h| !h.is_empty());
    let to = moving.migrating_to.clone().filter(|h| !h.is_empty());
    if moving.status == "migrating" {
        eprintln!(
            "migrating {name} from {} to {}...",
            from.as_deref().unwrap_or("its host"),
            to.as_deref().unwrap_or("another host")
        );
    }
    let ended = wait_for_migration(ctx, moving).await?;
    if let Some(from) = from.filter(|from| ended.status == "up" && ended.host.as_deref() == Some(from.as_str())) {
        let mut error = format!("migration of VM {name} failed; it keeps running on host {from}");
        if let Some(event) = migration_event(ctx, &name).await {
            error.push_str(&format!(" (event: {event})"));
        }
        bail!(error);
    }
    print_vm(ctx.format, ended.into())
}

/// Polls the VM (through the leader, so each answer is current) until it is no longer
/// migrating, and returns it as it ended.
async fn wait_for_migration(ctx: &Context, mut vm: proto::Vm) -> Result<proto::Vm> {
    let give_up = tokio::time::Instant::now() + MIGRATION_WAIT;
    // By id, which a rename during the wait does not change.
    let key = if vm.id.is_empty() { vm.name.clone() } else { vm.id.clone() };
    let mut bar = ProgressBar::default();
    while vm.status == "migrating" {
        bar.show(&vm);
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
    bar.finish();
    Ok(vm)
}

/// The migration's progress on stderr, redrawn in place when it moves (one line per change
/// when stderr is not a terminal).
#[derive(Default)]
struct ProgressBar {
    last: Option<String>,
    drawn: bool,
}

impl ProgressBar {
    fn show(&mut self, vm: &proto::Vm) {
        let line = progress_line(vm);
        if self.last.as_ref() == Some(&line) {
            return;
        }
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprint!("\r{line:<72}");
        } else {
            eprintln!("{line}");
        }
        self.drawn = true;
        self.last = Some(line);
    }

    fn finish(&self) {
        use std::io::IsTerminal;
        if self.drawn && std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}

/// ", pass N" when the host reported how many passes over the guest's memory it made.
fn pass(iteration: u64) -> String {
    if iteration == 0 {
        String::new()
    } else {
        format!(", pass {iteration}")
    }
}

fn progress_line(vm: &proto::Vm) -> String {
    const WIDTH: usize = 30;
    match vm.migration.as_ref().and_then(|j| j.progress.as_ref()) {
        None if vm.migration.as_ref().is_some_and(|j| j.cancel) => "cancelling...".to_string(),
        None => "queued on its host, waiting for a free migration slot".to_string(),
        Some(p) => {
            let filled = (p.percent as usize).min(100) * WIDTH / 100;
            format!(
                "[{}{}] {:>3}%  {} of {} left{}",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled),
                p.percent,
                format_mib(p.memory_remaining_mib),
                format_mib(p.memory_total_mib),
                pass(p.iteration)
            )
        }
    }
}

/// The latest event about a migration of VM `name`, which carries libvirt's error when the
/// migration failed; none if the events cannot be read.
async fn migration_event(ctx: &Context, name: &str) -> Option<String> {
    let request = proto::ListEventsRequest { limit: MIGRATION_EVENTS, stale: false };
    let response =
        ctx.nodes.read(|channel| async move { EventServiceClient::new(channel).list(request).await }).await.ok()?;
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

fn print_vm(format: Format, vm: VmView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&vm)?,
        Format::Table => output::print(&vm_fields(vm).render())?,
    }
    Ok(())
}

pub(super) fn vm_fields(vm: VmView) -> Fields {
    let ha = if vm.ha.enabled { format!("on, priority {}", vm.ha.priority) } else { "off".to_string() };
    let disks = vm.disks.iter().map(|d| format!("{} {} ({})", d.name, format_mib(d.size_mib), d.path)).collect();
    let nics = vm.nics.iter().map(|n| format!("{} {}", n.network, n.mac)).collect();
    let mut fields = Fields::new().add("name", vm.name).add("id", vm.id).add("status", vm.status);
    if vm.hosted_engine {
        fields = fields.add("hosted engine", "yes");
    }
    if vm.delete_protected {
        fields = fields.add("delete protected", "yes");
    }
    if let Some(reason) = vm.stop_reason {
        fields = fields.add("stop reason", reason);
    }
    fields = fields.add("host", vm.host.unwrap_or_else(|| "-".to_string()));
    if let Some(to) = vm.migrating_to {
        fields = fields.add("migrating to", to);
    }
    if let Some(job) = vm.migration {
        let by = if job.automatic { "ordered by the cluster" } else { "ordered by an operator" };
        let state = match job.progress {
            _ if job.cancelling => "cancelling".to_string(),
            None => "queued".to_string(),
            Some(p) => format!(
                "{}% ({} of {} left{})",
                p.percent,
                format_mib(p.memory_remaining_mib),
                format_mib(p.memory_total_mib),
                pass(p.iteration)
            ),
        };
        fields = fields.add("migration job", format!("{state}, {by}"));
    }
    fields = fields.add("memory", format_mib(vm.memory_mib)).add("vcpus", vm.vcpus.to_string());
    if let Some(domain_type) = vm.domain_type {
        fields = fields.add("domain type", domain_type);
    }
    if let Some(os) = vm.os {
        fields = fields.add("os", os);
    }
    if let Some(cdrom) = vm.cdrom {
        fields = fields.add("cdrom", cdrom);
    }
    if let Some(next) = vm.next_run {
        let mut what = Vec::new();
        if let Some(m) = next.memory_mib {
            what.push(format!("memory {}", format_mib(m)));
        }
        if let Some(v) = next.vcpus {
            what.push(format!("{v} vcpus"));
        }
        if let Some(t) = next.domain_type {
            what.push(format!("domain type {t}"));
        }
        fields = fields.add("next run", what.join(", "));
    }
    if let Some(r) = vm.ha_restart {
        let why = r.last_error.map(|e| format!(": {e}")).unwrap_or_default();
        let waiting = format!("failed {}, {} attempt(s), next {}{why}", r.failed, r.attempts, r.next_try);
        fields = fields.add("ha restart", waiting);
    }
    let pinned = if vm.pinned_hosts.is_empty() { "-".to_string() } else { vm.pinned_hosts.join(", ") };
    let tags = if vm.host_tags.is_empty() { "-".to_string() } else { vm.host_tags.join(", ") };
    fields
        .add_list("disks", disks, "-")
        .add_list("nics", nics, "-")
        .add("ha", ha)
        .add("on io error", vm.resume_behavior)
        .add("host tags", tags)
        .add("pinned to", pinned)
        .add("migration", vm.migration_policy)
        .add("description", vm.description)
        .add("comment", vm.comment)
        .add("created", vm.created)
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
    fn migration_progress_is_drawn_as_a_bar() {
        let mut vm = proto::Vm { status: "migrating".into(), ..Default::default() };
        vm.migration = Some(proto::MigrationJob::default());
        assert_eq!(progress_line(&vm), "queued on its host, waiting for a free migration slot");
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
        assert_eq!(progress_line(&vm), "[############------------------]  40%  614 MiB of 1 GiB left, pass 2");
        vm.migration.as_mut().unwrap().cancel = true;
        vm.migration.as_mut().unwrap().progress = None;
        assert_eq!(progress_line(&vm), "cancelling...");
    }

    #[test]
    fn vm_table_shows_disks_nics_and_lifecycle_fields() {
        let vm = proto::Vm {
            name: "web1".into(),
            id: "7f9c".into(),
            status: "down".into(),
            memory_mib: 256,
            vcpus: 1,
            disks: vec![
                proto::Disk {
                    name: "web1-disk0".into(),
                    size_mib: 1024,
                    path: "/img/a.qcow2".into(),
                    ..Default::default()
                },
                proto::Disk {
                    name: "web1-disk1".into(),
                    size_mib: 512,
                    path: "/img/b.qcow2".into(),
                    ..Default::default()
                },
            ],
            nics: vec![proto::Nic { network: "default".into(), mac: "52:54:00:aa:bb:cc".into() }],
            stop_reason: Some("kernel update".into()),
            domain_type: "qemu".into(),
            ..Default::default()
        };
        let text = vm_fields(vm.into()).render();
        assert!(text.contains("stop reason:  kernel update\n"), "{text}");
        assert!(text.contains("domain type:  qemu\n"), "{text}");
        assert!(
            text.contains(
                "disks:        web1-disk0 1 GiB (/img/a.qcow2)\n              web1-disk1 512 MiB (/img/b.qcow2)\n"
            ),
            "{text}"
        );
        assert!(text.contains("nics:         default 52:54:00:aa:bb:cc\n"), "{text}");
        assert!(!text.contains("migrating to"), "{text}");
        assert!(text.contains("pinned to:    -\n"), "{text}");
        assert!(!text.contains("hosted engine") && !text.contains("delete protected"), "{text}");
    }

    #[test]
    fn vm_table_marks_the_engine_and_delete_protection() {
        let vm = crate::views::fixtures::engine_vm();
        let text = vm_fields(vm.into()).render();
        for line in [
            "hosted engine:     yes\n",
            "delete protected:  yes\n",
            "os:                other_linux\n",
            "cdrom:             tools.iso\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }
}
