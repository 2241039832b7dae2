//! `corral host list | show | edit | maintenance | activate | remove`: the hosts that make up
//! the cluster, with their state, capacity and tags as the replicated state machine records
//! them, tagging one, maintenance (every VM moved away first), and taking one out.

use std::time::Duration;

use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use proto::host_service_client::HostServiceClient;

use super::Context;
use crate::args::{HostCommand, NameList};
use crate::output::{self, Fields, Format, Table};
use crate::progress::Progress;
use crate::size::format_mib;
use crate::views::HostView;

pub async fn run(ctx: &Context, command: HostCommand) -> Result<()> {
    match command {
        HostCommand::List => list(ctx).await,
        HostCommand::Remove { host } => remove(ctx, host).await,
        HostCommand::Edit { host, tags } => edit(ctx, host, tags).await,
        HostCommand::Show { host } => {
            let h = get(ctx, host, ctx.stale).await?;
            print_host(ctx.format, h.into())
        }
        HostCommand::Maintenance { host, reason, wait } => maintenance(ctx, host, reason, wait).await,
        HostCommand::Activate { host } => {
            let request = proto::HostRef { host };
            let h = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { HostServiceClient::new(channel).activate(request).await }
                })
                .await?;
            print_host(ctx.format, h.into())
        }
    }
}

/// How long `host maintenance --wait` waits at most, and how often it looks.
const MAINTENANCE_WAIT: Duration = Duration::from_secs(600);
const MAINTENANCE_POLL: Duration = Duration::from_millis(200);

async fn get(ctx: &Context, host: String, stale: bool) -> Result<proto::Host> {
    let request = proto::GetHostRequest { host, stale };
    ctx.nodes
        .read(|channel| {
            let request = request.clone();
            async move { HostServiceClient::new(channel).get(request).await }
        })
        .await
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

async fn maintenance(ctx: &Context, host: String, reason: Option<String>, wait: bool) -> Result<()> {
    let request = proto::HostMaintenanceRequest { host: host.clone(), reason: reason.unwrap_or_default() };
    let mut h = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            async move { HostServiceClient::new(channel).maintenance(request).await }
        })
        .await?;
    if wait {
        h = wait_for_maintenance(ctx, h).await?;
    }
    print_host(ctx.format, h.into())
}

/// Polls host `h` until it has left preparing_for_maintenance, showing how many of its VMs are
/// left to move off (a bar from the count it started with) and naming those that cannot move.
async fn wait_for_maintenance(ctx: &Context, mut h: proto::Host) -> Result<proto::Host> {
    let give_up = tokio::time::Instant::now() + MAINTENANCE_WAIT;
    let mut progress = Progress::stderr();
    let first = h.vms_running;
    while h.state == "preparing_for_maintenance" {
        show_maintenance(&mut progress, &h, first);
        if tokio::time::Instant::now() >= give_up {
            progress.abandon();
            bail!(
                "host {} is still preparing for maintenance; stopped waiting (see `corral host show {}`)",
                h.name,
                h.name
            );
        }
        tokio::time::sleep(MAINTENANCE_POLL).await;
        h = get(ctx, h.name.clone(), false).await?;
    }
    progress.finish(&format!("host {} is in {}", h.name, h.state));
    Ok(h)
}

fn show_maintenance(progress: &mut Progress, h: &proto::Host, first: u32) {
    let left = h.vms_running;
    let plural = if left == 1 { "" } else { "s" };
    let phase = format!("moving VMs off {}", h.name);
    let detail = format!("{left} VM{plural} left");
    match first {
        0 => progress.phase(&format!("{phase}: {detail}")),
        _ => progress.percent(&phase, u64::from(first.saturating_sub(left)) * 100 / u64::from(first), &detail),
    }
    for b in &h.blocked {
        progress.note(&format!("waiting: VM {} cannot move yet: {}", b.vm, b.reason));
    }
}

fn print_host(format: Format, h: HostView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&h)?,
        Format::Table => output::print(&host_fields(h).render())?,
    }
    Ok(())
}

fn host_fields(h: HostView) -> Fields {
    let mut fields = Fields::new()
        .add("name", &h.name)
        .add("id", h.id.to_string())
        .add("state", format!("{} (since {})", h.state, h.state_since))
        .add("address", &h.address);
    if let Some(reason) = &h.maintenance_reason {
        let reason = if reason.is_empty() { "no reason given" } else { reason.as_str() };
        fields = fields.add("maintenance", reason);
    }
    let blocked = h.blocked.iter().map(|b| format!("VM {}: {}", b.vm, b.reason)).collect();
    fields = fields
        .add_list("blocked by", blocked, "-")
        .add("domain type", &h.domain_type)
        .add("cpus", format!("{} ({} vCPUs free)", h.cpus, h.vcpus_free))
        .add("memory", format!("{} ({} free)", format_mib(h.memory_mib), format_mib(h.memory_free_mib)))
        .add("vms running", h.vms_running.to_string())
        .add("tags", if h.tags.is_empty() { "-".to_string() } else { h.tags.join(", ") });
    if let Some(score) = h.engine_score {
        fields = fields.add("engine score", format!("{} (measured {})", score.score, score.measured)).add_list(
            "engine penalties",
            score.penalties,
            "-",
        );
    }
    if h.engine_local_maintenance {
        fields = fields.add("engine maintenance", "local (this host will not run the engine)");
    }
    fields
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_progress_counts_the_vms_left_and_names_the_blocking_ones() {
        let pipe = crate::progress::testing::Pipe::default();
        let mut progress = Progress::lines(Box::new(pipe.clone()));
        let blocked = proto::MaintenanceBlock { vm: "db1".into(), reason: "pinned to host2".into() };
        let mut h = proto::Host { name: "host2".into(), vms_running: 3, ..Default::default() };
        show_maintenance(&mut progress, &h, 3);
        h.vms_running = 2;
        h.blocked = vec![blocked];
        show_maintenance(&mut progress, &h, 3);
        show_maintenance(&mut progress, &h, 3);
        h.vms_running = 1;
        show_maintenance(&mut progress, &h, 3);
        assert_eq!(
            pipe.text(),
            "moving VMs off host2: 0%, 3 VMs left\n\
             moving VMs off host2: 33%, 2 VMs left\n\
             waiting: VM db1 cannot move yet: pinned to host2\n\
             moving VMs off host2: 66%, 1 VM left\n"
        );
    }

    #[test]
    fn engine_lines_appear_only_when_present() {
        let plain = host_fields(HostView::from(proto::Host { name: "host1".into(), ..Default::default() })).render();
        assert!(!plain.contains("engine"), "{plain}");
        let host = crate::views::fixtures::engine_host();
        let text = host_fields(HostView::from(host)).render();
        assert!(text.contains("engine score:        1800 (measured 1970-01-01T00:00:00.000Z)\n"), "{text}");
        assert!(text.contains("engine penalties:    gateway 10.0.0.1 unreachable: -1600\n"), "{text}");
        assert!(text.contains("engine maintenance:  local (this host will not run the engine)\n"), "{text}");
    }
}
