//! `corral disk list`: every disk image the cluster knows, attached to a VM or floating
//! (kept by `vm delete --keep-disks`).

use anyhow::Result;
use corral_proto::v1 as proto;
use proto::disk_service_client::DiskServiceClient;

use super::Context;
use crate::args::DiskCommand;
use crate::output::{self, Format, Table};
use crate::size::format_mib;
use crate::views::DiskView;

pub async fn run(ctx: &Context, command: DiskCommand) -> Result<()> {
    match command {
        DiskCommand::List => list(ctx).await,
        DiskCommand::Show { disk } => {
            let request = proto::DiskRef { disk, stale: ctx.stale };
            let d = ctx
                .nodes
                .read(|channel| {
                    let request = request.clone();
                    async move { DiskServiceClient::new(channel).get(request).await }
                })
                .await?;
            print_disk(ctx, d.into())
        }
        DiskCommand::Create { name, size, format } => {
            let request = proto::CreateDiskRequest { name, size_mib: size, format: format.unwrap_or_default() };
            let d = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { DiskServiceClient::new(channel).create(request).await }
                })
                .await?;
            print_disk(ctx, d.into())
        }
        DiskCommand::Resize { disk, size } => {
            let request = proto::ResizeDiskRequest { disk, size_mib: size };
            let d = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { DiskServiceClient::new(channel).resize(request).await }
                })
                .await?;
            print_disk(ctx, d.into())
        }
        DiskCommand::Delete { disk } => {
            let request = proto::DiskRef { disk, stale: false };
            let d: DiskView = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { DiskServiceClient::new(channel).delete(request).await }
                })
                .await?
                .into();
            match ctx.format {
                Format::Json => output::print_json(&d)?,
                Format::Table => output::print(&format!("Disk {} deleted\n", d.name))?,
            }
            Ok(())
        }
    }
}

fn print_disk(ctx: &Context, d: DiskView) -> Result<()> {
    match ctx.format {
        Format::Json => output::print_json(&d)?,
        Format::Table => {
            let attachment = d.attachment.as_ref().map_or_else(
                || "-".to_string(),
                |a| {
                    let mut how =
                        vec![a.interface.clone(), if a.plugged { "plugged" } else { "unplugged" }.to_string()];
                    how.extend(["bootable".to_string()].into_iter().filter(|_| a.bootable));
                    how.extend(["optional".to_string()].into_iter().filter(|_| a.optional));
                    how.join(" ")
                },
            );
            let fields = crate::output::Fields::new()
                .add("name", d.name)
                .add("id", d.id)
                .add("size", format_mib(d.size_mib))
                .add("format", d.format)
                .add("vm", d.vm.unwrap_or_else(|| "floating".to_string()))
                .add("attachment", attachment)
                .add("path", d.path);
            output::print(&fields.render())?;
        }
    }
    Ok(())
}

async fn list(ctx: &Context) -> Result<()> {
    let request = proto::ListDisksRequest { stale: ctx.stale };
    let response = ctx
        .nodes
        .read(|channel| async move {
            DiskServiceClient::new(channel)
                .max_decoding_message_size(corral_proto::MAX_LIST_MESSAGE)
                .list(request)
                .await
        })
        .await?;
    let disks: Vec<DiskView> = response.disks.into_iter().map(DiskView::from).collect();
    match ctx.format {
        Format::Json => output::print_json(&disks)?,
        Format::Table => {
            let mut table = Table::new(&["NAME", "SIZE", "VM", "PATH"]);
            for disk in disks {
                table.row(vec![
                    disk.name,
                    format_mib(disk.size_mib),
                    disk.vm.unwrap_or_else(|| "floating".to_string()),
                    disk.path,
                ]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}
