//! `corral host list | remove`: the hosts that make up the cluster, with their state and
//! capacity as the replicated state machine records them, and taking one out.

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
        HostCommand::Remove { host } => remove(ctx, host).await,
    }
}

async fn remove(ctx: &Context, host: String) -> Result<()> {
    let request = proto::RemoveHostRequest { host: host.clone() };
    // Not resent: a second attempt after a partial success is for the operator to decide.
    let response = ctx
        .nodes
        .write_once(|channel| {
            let request = request.clone();
            async move { HostServiceClient::new(channel).remove(request).await }
        })
        .await?;
    match ctx.format {
        Format::Json => output::print_json(&serde_json::json!({
            "id": response.id,
            "removed": host,
            "promoted": response.promoted,
        }))?,
        Format::Table => {
            let mut text = format!("host {host} removed from the cluster");
            if let Some(p) = response.promoted {
                text.push_str(&format!("; {p} became a voter in its place"));
            }
            text.push_str(&format!("\nstop corrald on {host} and clear its data dir before it joins again"));
            output::print(&text)?;
        }
    }
    Ok(())
}

async fn list(ctx: &Context) -> Result<()> {
    let request = proto::ListHostsRequest { stale: ctx.stale };
    let response = ctx.nodes.read(|channel| async move { HostServiceClient::new(channel).list(request).await }).await?;
    let hosts: Vec<HostView> = response.hosts.into_iter().map(HostView::from).collect();
    match ctx.format {
        Format::Json => output::print_json(&hosts)?,
        Format::Table => {
            let mut table = Table::new(&["ID", "NAME", "ADDRESS", "STATE", "TYPE", "CPUS", "MEMORY", "FREE", "VMS"]);
            for host in hosts {
                let domain_type = if host.domain_type.is_empty() { "-".to_string() } else { host.domain_type };
                table.row(vec![
                    host.id.to_string(),
                    host.name,
                    host.address,
                    host.state,
                    domain_type,
                    host.cpus.to_string(),
                    format_mib(host.memory_mib),
                    format_mib(host.memory_free_mib),
                    host.vms_running.to_string(),
                ]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}
