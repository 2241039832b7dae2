//! `corral vm ...`: define, list, show, change and delete VMs, and drive their lifecycle
//! (start, shutdown, stop, reboot, suspend, resume, migrate, clone, console). Every command that
//! changes a VM prints it as the cluster stored it, exactly as `vm show` would.
//!
//! The lifecycle and configuration commands live here; `migrate` follows a migration to its
//! end, `ovf` moves a VM in and out as an OVF document, `print` draws a VM as a table.

mod console;
mod devices;
mod migrate;
mod ovf;
mod print;
mod snapshot;

use std::future::Future;

use crate::connect::Channel;
use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use corral_proto::Word;
use proto::vm_service_client::VmServiceClient;
use tonic::{Request, Response, Status};

use super::Context;
use crate::args::{CreateVmArgs, EditVmArgs, VmCommand};
use crate::output::{self, Format, Table};
use crate::progress::Progress;
use crate::size::format_mib;
use crate::views::{DeletedVmView, VmView};
use print::print_vm;
pub(super) use print::vm_fields;

pub async fn run(ctx: &Context, command: VmCommand) -> Result<()> {
    match command {
        VmCommand::Create(args) => create(ctx, args).await,
        VmCommand::List => list(ctx).await,
        VmCommand::Show { vm, next_run } => show(ctx, vm, next_run).await,
        VmCommand::Edit(args) => edit(ctx, args).await,
        VmCommand::Disk(command) => devices::disk(ctx, command).await,
        VmCommand::Nic(command) => devices::nic(ctx, command).await,
        VmCommand::Cd { vm, iso, eject, next_run } => devices::cd(ctx, vm, iso, eject, next_run).await,
        VmCommand::Delete { vm, keep_disks } => delete(ctx, vm, keep_disks).await,
        VmCommand::Snapshot(command) => snapshot::run(ctx, command).await,
        VmCommand::Clone { source, name, from_snapshot, wait } => {
            let mut progress = Progress::stderr();
            let what = match (wait, &from_snapshot) {
                (false, _) => None,
                (true, Some(snap)) => Some(format!("cloning {source} (snapshot {snap}) as {name}: copying its disks")),
                (true, None) => Some(format!("cloning {source} as {name}: {}", copying(ctx, &source).await)),
            };
            let request = proto::CloneVmRequest { source, name, from_snapshot };
            // Not `client.clone(..)`: method syntax would pick `Clone::clone` over the RPC.
            let call = change(ctx, request, |mut client, request| async move {
                VmServiceClient::clone(&mut client, request).await
            });
            let vm = match &what {
                Some(what) => progress.during(what, call).await?,
                None => call.await?,
            };
            progress.finish(&format!("VM {} made", vm.name));
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
        VmCommand::Console { vm, vnc: false } => console::console(ctx, vm).await,
        VmCommand::Console { vm, vnc: true } => console::vnc(ctx, vm).await,
        VmCommand::Migrate { vm, to, wait } => migrate::migrate(ctx, vm, to, wait).await,
        VmCommand::MigrateCancel { vm } => {
            let request = proto::VmRef { vm };
            let vm = change(ctx, request, |mut client, request| async move { client.cancel_migration(request).await })
                .await?;
            print_vm(ctx.format, vm.into())
        }
        VmCommand::Export { vm, file, force } => ovf::export(ctx, vm, file, force).await,
        VmCommand::Import { file, name, clone, wait } => ovf::import(ctx, &file, name, clone, wait).await,
    }
}

/// What copying VM `vm`'s disks means, for a spinner: "copying 2 disks (root 10 GiB, data 1
/// GiB)". Only words: a VM that cannot be read here is still cloned (or refused) by the call.
pub(super) async fn copying(ctx: &Context, vm: &str) -> String {
    match get(ctx, vm.to_string(), true).await {
        Ok(vm) if vm.disks.is_empty() => "no disks to copy".to_string(),
        Ok(vm) => {
            let disks: Vec<String> =
                vm.disks.iter().map(|d| format!("{} {}", d.name, format_mib(d.size_mib))).collect();
            let plural = if disks.len() == 1 { "" } else { "s" };
            format!("copying {} disk{plural} ({})", disks.len(), disks.join(", "))
        }
        Err(_) => "copying its disks".to_string(),
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
    let read = |what: &str, path: &std::path::Path| {
        crate::files::read_bounded(path, 256 * 1024).map_err(|e| anyhow::anyhow!("{what}: {e}"))
    };
    let cloud_init = match &args.cloud_init {
        None => None,
        Some(file) => Some(proto::CloudInitSpec {
            user_data: read("--cloud-init", file)?,
            network_config: args
                .network_config
                .as_deref()
                .map(|f| read("--network-config", f))
                .transpose()?
                .unwrap_or_default(),
            ssh_keys: args
                .ssh_keys
                .iter()
                .map(|f| read("--ssh-key", f))
                .collect::<Result<Vec<_>>>()?
                .iter()
                .flat_map(|k| {
                    k.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect(),
            hostname: args.hostname.clone().unwrap_or_default(),
        }),
    };
    // Without a template or an offering, the size defaults here (an older node knows no 0).
    let sized = args.template.is_some() || args.offering.is_some();
    let request = proto::CreateVmRequest {
        name: args.name,
        memory_mib: args.memory.unwrap_or(if sized { 0 } else { 1024 }),
        vcpus: args.vcpus.unwrap_or(if sized { 0 } else { 1 }),
        template: args.template.unwrap_or_default(),
        thin: args.thin,
        clone: args.clone,
        offering: args.offering.unwrap_or_default(),
        iso: args.iso.unwrap_or_default(),
        boot: args.boot.map(|b| vec![b]).unwrap_or_default(),
        cloud_init,
        stateless: args.stateless,
        os: args.os.unwrap_or_default(),
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
        max_vcpus: args.max_vcpus,
        max_memory_mib: args.max_memory,
    };
    // A clone of a template's bases may take a while.
    let vm = ctx
        .nodes
        .write_long(|channel, id| {
            let request = id.tag(request.clone());
            async move { VmServiceClient::new(channel).create(request).await }
        })
        .await?;
    print_vm(ctx.format, vm.into())
}

async fn list(ctx: &Context) -> Result<()> {
    let request = proto::ListVmsRequest { stale: ctx.stale };
    let response = ctx
        .nodes
        .read(|channel| async move {
            VmServiceClient::new(channel).max_decoding_message_size(corral_proto::MAX_LIST_MESSAGE).list(request).await
        })
        .await?;
    let vms: Vec<VmView> = response.vms.into_iter().map(VmView::from).collect();
    match ctx.format {
        Format::Json => output::print_json(&vms)?,
        Format::Table => {
            // NEXT-RUN: "*" marks a VM with a configuration that waits for its next run.
            let mut table = Table::new(&["NAME", "STATUS", "HOST", "MEMORY", "VCPUS", "HA", "NEXT-RUN", "ID"]);
            for vm in vms {
                let ha = if vm.ha.enabled { vm.ha.priority } else { "-".to_string() };
                table.row(vec![
                    vm.name,
                    vm.status,
                    vm.host.unwrap_or_else(|| "-".to_string()),
                    format_mib(vm.memory_mib),
                    vm.vcpus.to_string(),
                    ha,
                    if vm.pending_next_run { "*".to_string() } else { "-".to_string() },
                    vm.id,
                ]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}

async fn show(ctx: &Context, vm: String, next_run: bool) -> Result<()> {
    let vm = get(ctx, vm, ctx.stale).await?;
    print_vm(ctx.format, VmView::from(if next_run { vm.at_next_run() } else { vm }))
}

async fn get(ctx: &Context, vm: String, stale: bool) -> Result<proto::Vm> {
    let request = proto::GetVmRequest { vm, stale, next_run: false };
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
             --delete-protected, --os, --max-vcpus, --max-memory"
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
        next_run: args.next_run,
        max_vcpus: args.max_vcpus,
        max_memory_mib: args.max_memory,
        offering: args.offering,
        stateless: args.stateless,
        boot: args.boot,
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
