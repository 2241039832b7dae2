//! `corral host list | show | edit | remove`: the hosts that make up the cluster, with their
//! state, capacity and tags as the replicated state machine records them, tagging one, and
//! taking one out.

use anyhow::Result;
use corral_proto::v1 as proto;
use proto::host_service_client::HostServiceClient;

use super::Context;
use anyhow::bail;

use crate::args::{HostCommand, NameList};
use crate::output::{self, Fields, Format, Table};
use crate::size::format_mib;
use crate::views::HostView;

pub async fn run(ctx: &Context, command: HostCommand) -> Result<()> {
    match command {
        HostCommand::List => list(ctx).await,
        HostCommand::Show { host } => show(ctx, host).await,
        HostCommand::Edit { host, tags } => edit(ctx, host, tags).await,
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

async fn edit(ctx: &Context, host: String, tags: Option<NameList>) -> Result<()> {
    let Some(tags) = tags else { bail!("nothing to change: give --tags") };
    let request = proto::EditHostRequest { host, tags: Some(proto::StringList { values: tags.0 }) };
    let host = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            async move { HostServiceClient::new(channel).edit(request).await }
        })
        .await?;
    print_host(ctx.format, host.into())
}

async fn show(ctx: &Context, name: String) -> Result<()> {
    let hosts = fetch(ctx).await?;
    let Some(host) = hosts.into_iter().find(|h| h.name == name) else { bail!("host '{name}' not found") };
    print_host(ctx.format, host)
}

fn print_host(format: Format, h: HostView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&h)?,
        Format::Table => output::print(&host_fields(h).render())?,
    }
    Ok(())
}

fn host_fields(h: HostView) -> Fields {
    Fields::new()
        .add("name", h.name)
        .add("id", h.id.to_string())
        .add("address", h.address)
        .add("state", h.state)
        .add("type", if h.domain_type.is_empty() { "-".to_string() } else { h.domain_type })
        .add("cpus", format!("{} ({} vCPUs free)", h.cpus, h.vcpus_free))
        .add("memory", format!("{} ({} free)", format_mib(h.memory_mib), format_mib(h.memory_free_mib)))
        .add("vms running", h.vms_running.to_string())
        .add("tags", if h.tags.is_empty() { "-".to_string() } else { h.tags.join(", ") })
}

async fn fetch(ctx: &Context) -> Result<Vec<HostView>> {
    let request = proto::ListHostsRequest { stale: ctx.stale };
    let response = ctx.nodes.read(|channel| async move { HostServiceClient::new(channel).list(request).await }).await?;
    Ok(response.hosts.into_iter().map(HostView::from).collect())
}

async fn list(ctx: &Context) -> Result<()> {
    let hosts = fetch(ctx).await?;
    match ctx.format {
        Format::Json => output::print_json(&hosts)?,
        Format::Table => {
            let mut table =
                Table::new(&["ID", "NAME", "ADDRESS", "STATE", "TYPE", "CPUS", "MEMORY", "FREE", "VMS", "TAGS"]);
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
                    if host.tags.is_empty() { "-".to_string() } else { host.tags.join(",") },
                ]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}
