//! `corral vm ...`: define, list, show, change and delete VMs. Create and edit print the VM as
//! the cluster stored it, exactly as `vm show` would.

use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use proto::vm_service_client::VmServiceClient;

use super::Context;
use crate::args::{CreateVmArgs, EditVmArgs, VmCommand};
use crate::output::{self, Fields, Format, Table};
use crate::size::format_mib;
use crate::views::{DeletedVmView, VmView};

pub async fn run(ctx: &Context, command: VmCommand) -> Result<()> {
    match command {
        VmCommand::Create(args) => create(ctx, args).await,
        VmCommand::List => list(ctx).await,
        VmCommand::Show { vm } => show(ctx, vm).await,
        VmCommand::Edit(args) => edit(ctx, args).await,
        VmCommand::Delete { vm } => delete(ctx, vm).await,
    }
}

async fn create(ctx: &Context, args: CreateVmArgs) -> Result<()> {
    let request = proto::CreateVmRequest {
        name: args.name,
        memory_mib: args.memory,
        vcpus: args.vcpus,
        description: args.description,
        comment: args.comment,
        ha: args.ha,
        ha_priority: args.ha_priority.map_or(String::new(), |p| p.as_str().to_string()),
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
    let request = proto::GetVmRequest { vm, stale: ctx.stale };
    let vm = ctx
        .nodes
        .read(|channel| {
            let request = request.clone();
            async move { VmServiceClient::new(channel).get(request).await }
        })
        .await?;
    print_vm(ctx.format, vm.into())
}

async fn edit(ctx: &Context, args: EditVmArgs) -> Result<()> {
    if args.changes_nothing() {
        bail!(
            "nothing to change: give at least one of --name, --memory, --vcpus, \
             --description, --comment, --ha, --ha-priority"
        );
    }
    let request = proto::EditVmRequest {
        vm: args.vm,
        name: args.name,
        memory_mib: args.memory,
        vcpus: args.vcpus,
        description: args.description,
        comment: args.comment,
        ha: args.ha,
        ha_priority: args.ha_priority.map(|p| p.as_str().to_string()),
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

async fn delete(ctx: &Context, vm: String) -> Result<()> {
    let request = proto::DeleteVmRequest { vm: vm.clone() };
    let response = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            async move { VmServiceClient::new(channel).delete(request).await }
        })
        .await?;
    match ctx.format {
        Format::Json => output::print_json(&DeletedVmView { id: response.id, deleted: true })?,
        Format::Table => output::print(&format!("VM {vm} deleted\n"))?,
    }
    Ok(())
}

fn print_vm(format: Format, vm: VmView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&vm)?,
        Format::Table => {
            let ha = if vm.ha.enabled { format!("on, priority {}", vm.ha.priority) } else { "off".to_string() };
            let fields = Fields::new()
                .add("name", vm.name)
                .add("id", vm.id)
                .add("status", vm.status)
                .add("host", vm.host.unwrap_or_else(|| "-".to_string()))
                .add("memory", format_mib(vm.memory_mib))
                .add("vcpus", vm.vcpus.to_string())
                .add("ha", ha)
                .add("description", vm.description)
                .add("comment", vm.comment)
                .add("created", vm.created);
            output::print(&fields.render())?;
        }
    }
    Ok(())
}
