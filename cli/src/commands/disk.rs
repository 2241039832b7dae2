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
    }
}

async fn list(ctx: &Context) -> Result<()> {
    let request = proto::ListDisksRequest { stale: ctx.stale };
    let response = ctx.nodes.read(|channel| async move { DiskServiceClient::new(channel).list(request).await }).await?;
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
