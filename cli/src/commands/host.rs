//! `corral host list`: the hosts that make up the cluster, with their state and capacity as
//! the replicated state machine records them.

use anyhow::Result;
use corral_proto::v1 as proto;
use proto::host_service_client::HostServiceClient;

use super::Context;
use crate::args::HostCommand;
use crate::output::{self, Format, Table};
use crate::size::format_mib;
use crate::views::HostView;

pub async fn run(ctx: &Context, command: HostCommand) -> Result<()> {
    match command {
        HostCommand::List => list(ctx).await,
    }
}

async fn list(ctx: &Context) -> Result<()> {
    let request = proto::ListHostsRequest { stale: ctx.stale };
    let response = ctx.nodes.read(|channel| async move { HostServiceClient::new(channel).list(request).await }).await?;
    let hosts: Vec<HostView> = response.hosts.into_iter().map(HostView::from).collect();
    match ctx.format {
        Format::Json => output::print_json(&hosts)?,
        Format::Table => {
            let mut table = Table::new(&["ID", "NAME", "ADDRESS", "STATE", "CPUS", "MEMORY"]);
            for host in hosts {
                table.row(vec![
                    host.id.to_string(),
                    host.name,
                    host.address,
                    host.state,
                    host.cpus.to_string(),
                    format_mib(host.memory_mib),
                ]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}
