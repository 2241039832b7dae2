//! `corral cluster ...`: bootstrap a cluster (with its hosted engine, if asked), join a node to
//! it, show its state, and create join tokens. In table mode a token is always the last line,
//! so `tail -n1` extracts it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use corral_proto::v1 as proto;
use corral_proto::Word;
use proto::cluster_service_client::ClusterServiceClient;

use super::Context;
use crate::args::{BootstrapArgs, ClusterCommand, EditClusterArgs, TokenCommand};
use crate::endpoints::Endpoint;
use crate::files;
use crate::output::{self, Fields, Format, Table};
use crate::views::{BootstrapView, ClusterSettingsView, ClusterStatusView, JoinView, TokenInfoView, TokenView};

pub async fn run(ctx: &Context, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Bootstrap(args) => bootstrap(ctx, args).await,
        ClusterCommand::Join { peer, token, token_file } => join(ctx, peer, token, token_file).await,
        ClusterCommand::Credentials { file, user, force } => credentials(ctx, &file, &user, force).await,
        ClusterCommand::Status => status(ctx).await,
        ClusterCommand::Edit(args) => edit(ctx, args).await,
        ClusterCommand::Upgrade => upgrade(ctx).await,
        ClusterCommand::Backup { file, force } => backup(ctx, &file, force).await,
        ClusterCommand::Token(TokenCommand::Create { ttl }) => create_token(ctx, ttl.map_or(0, |t| t.as_secs())).await,
        ClusterCommand::Token(TokenCommand::List) => list_tokens(ctx).await,
        ClusterCommand::Token(TokenCommand::Revoke { id }) => revoke_token(ctx, &id).await,
        ClusterCommand::Ca { file, force } => ca(ctx, &file, force).await,
    }
}

/// Engine settings given without an image or a document follow the server's defaults (4 GiB,
/// 2 vCPUs) for an image and the document's own for an OVF, so only given ones are sent.
fn bootstrap_request(args: BootstrapArgs) -> Result<proto::BootstrapRequest> {
    let engine_image = match &args.engine_image {
        None => None,
        Some(path) => {
            // The node reads the image on its own machine, from its own working directory.
            let (absolute, here) = files::absolute(path)?;
            if !here {
                eprintln!(
                    "warning: --engine-image: {} is not on this machine; the node looks for it on its own",
                    absolute.display()
                );
            }
            Some(absolute.display().to_string())
        }
    };
    let engine_ovf = args.engine_ovf.as_deref().map(files::read_text).transpose()?;
    Ok(proto::BootstrapRequest {
        cluster_name: args.name,
        engine_image,
        engine_ovf,
        engine_memory_mib: args.engine_memory,
        engine_vcpus: args.engine_vcpus,
        engine_name: args.engine_name,
        engine_domain_type: args.engine_domain_type.map(|t| t.word().to_string()),
        engine_domain_type_enum: args.engine_domain_type.map(i32::from).unwrap_or_default(),
        engine_kernel: args.engine_kernel,
        engine_initrd: args.engine_initrd,
        engine_cmdline: args.engine_cmdline,
        engine_nics: args.engine_nics,
        level: args.level,
    })
}

async fn bootstrap(ctx: &Context, args: BootstrapArgs) -> Result<()> {
    // Bootstrapping acts on the node itself, so it must not fall over to another one.
    let node = ctx.nodes.single("cluster bootstrap")?;
    let name = args.name.clone();
    let request = bootstrap_request(args)?;
    let response = node
        .write_once(|channel| {
            let request = request.clone();
            async move { ClusterServiceClient::new(channel).bootstrap(request).await }
        })
        .await?;
    let expires_ms = response.token_expires_unix_ms;
    let view = BootstrapView::new(name, response);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => {
            let fields = Fields::new()
                .add("cluster", &view.cluster)
                .add("node id", view.node_id.to_string())
                .add("token expires", expiry(&view.expires, expires_ms));
            // The engine VM before the token, which stays the last line.
            let engine = match view.engine.clone() {
                Some(vm) => format!("\nhosted engine:\n{}\n", super::vm::vm_fields(vm).render()),
                None => String::new(),
            };
            output::print(&format!("{}{engine}{}\n", fields.render(), view.token))?;
        }
    }
    Ok(())
}

/// The token from --token, or from --token-file (`-` for standard input).
fn read_token(token: Option<String>, file: Option<PathBuf>) -> Result<String> {
    let text = match (token, file) {
        (Some(t), _) => t,
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().take(64 * 1024), &mut s)
                .map_err(|e| anyhow!("--token-file -: cannot read standard input: {e}"))?;
            s
        }
        (None, Some(f)) => files::read_text(&f)?,
        (None, None) => bail!("give --token or --token-file"),
    };
    let token = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string();
    if token.is_empty() {
        bail!("--token-file: no token in it");
    }
    Ok(token)
}

async fn join(ctx: &Context, peer: Endpoint, token: Option<String>, token_file: Option<PathBuf>) -> Result<()> {
    let token = read_token(token, token_file)?;
    // The joining node is the one named by --socket; another node cannot join in its place.
    let node = ctx.nodes.single("cluster join")?;
    let request = proto::JoinRequest { peer: peer.to_string(), token };
    let response = node
        .write_once(|channel| {
            let request = request.clone();
            async move { ClusterServiceClient::new(channel).join(request).await }
        })
        .await?;
    let view = JoinView::from(response);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => {
            output::print(&format!("joined cluster {} as node {} ({})\n", view.cluster, view.node_id, view.role))?
        }
    }
    Ok(())
}

async fn edit(ctx: &Context, args: EditClusterArgs) -> Result<()> {
    if args.changes_nothing() {
        anyhow::bail!(
            "nothing to change: give at least one of --scheduling, --cpu-overcommit, --auto-converge, \
             --compression, --max-downtime, --bandwidth, --migrations-per-host, --max-snapshots"
        );
    }
    let request = proto::EditClusterRequest {
        scheduling: args.scheduling.map(|s| s.word().to_string()),
        scheduling_enum: args.scheduling.map(i32::from).unwrap_or_default(),
        cpu_overcommit: args.cpu_overcommit,
        migration_auto_converge: args.auto_converge,
        migration_compression: args.compression,
        migration_max_downtime_ms: args.max_downtime,
        migration_bandwidth_mibps: args.bandwidth,
        migrations_per_host: args.migrations_per_host,
        max_snapshots: args.max_snapshots,
    };
    let settings = ctx
        .nodes
        .write(|channel, id| {
            let request = id.tag(request.clone());
            async move { ClusterServiceClient::new(channel).edit(request).await }
        })
        .await?;
    let view = ClusterSettingsView::from(settings);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => output::print(
            &Fields::new()
                .add("scheduling", scheduling_name(&view.scheduling))
                .add("cpu overcommit", format!("{} vCPUs per CPU", view.cpu_overcommit))
                .add("migrations", migration_text(&view.migration))
                .add("snapshots per vm", snapshot_cap(view.max_snapshots))
                .render(),
        )?,
    }
    Ok(())
}

async fn upgrade(ctx: &Context) -> Result<()> {
    let response = ctx
        .nodes
        .write_once(|channel| async move { ClusterServiceClient::new(channel).upgrade(proto::UpgradeRequest {}).await })
        .await?;
    match ctx.format {
        Format::Json => output::print_json(&serde_json::json!({
            "from_level": response.from_level,
            "cluster_level": response.to_level,
        }))?,
        Format::Table => {
            output::print(&format!("cluster level raised from {} to {}\n", response.from_level, response.to_level))?
        }
    }
    Ok(())
}

async fn backup(ctx: &Context, file: &std::path::Path, force: bool) -> Result<()> {
    if file.exists() && !force {
        anyhow::bail!("{} exists already; give --force to overwrite it", file.display());
    }
    let response = ctx
        .nodes
        .read(|channel| async move { ClusterServiceClient::new(channel).backup(proto::BackupRequest {}).await })
        .await?;
    // Written beside the target and renamed, so a failed write never leaves half a backup.
    let tmp = file.with_extension("partial");
    std::fs::write(&tmp, &response.data)
        .and_then(|_| std::fs::rename(&tmp, file))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
    match ctx.format {
        Format::Json => output::print_json(&serde_json::json!({
            "file": file.display().to_string(),
            "cluster": response.cluster,
            "applied_index": response.applied_index,
            "cluster_level": response.cluster_level,
            "bytes": response.data.len(),
        }))?,
        Format::Table => output::print(&format!(
            "backup of cluster {} (log index {}, level {}) written to {} ({} bytes)\n",
            response.cluster,
            response.applied_index,
            response.cluster_level,
            file.display(),
            response.data.len()
        ))?,
    }
    Ok(())
}

fn scheduling_name(policy: &str) -> String {
    match policy {
        "even" => "even (spread VMs over the hosts)".to_string(),
        "pack" => "pack (fill few hosts)".to_string(),
        "" => "-".to_string(),
        other => other.to_string(),
    }
}

async fn status(ctx: &Context) -> Result<()> {
    let request = proto::StatusRequest { stale: ctx.stale };
    let status =
        ctx.nodes.read(|channel| async move { ClusterServiceClient::new(channel).status(request).await }).await?;
    let view = ClusterStatusView::from(status);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => output::print(&status_table(&view))?,
    }
    Ok(())
}

fn status_table(view: &ClusterStatusView) -> String {
    let leader = match view.members.iter().find(|m| m.id == view.leader_id) {
        _ if view.leader_id == 0 => "none known".to_string(),
        Some(m) => format!("{} ({})", m.id, m.name),
        None => view.leader_id.to_string(),
    };
    let fields = Fields::new()
        .add("cluster", &view.cluster)
        .add("leader", leader)
        .add("term", view.term.to_string())
        .add("this node", view.this_node_id.to_string())
        .add("cluster level", view.cluster_level.to_string())
        .add("last applied", view.last_applied.to_string())
        .add("scheduling", scheduling_name(&view.scheduling))
        .add("cpu overcommit", format!("{} vCPUs per CPU", view.cpu_overcommit))
        .add("migrations", migration_text(&view.migration));

    let mut members = Table::new(&["ID", "NAME", "ADDRESS", "ROLE", "REACHABLE", "VERSION", "MAX LEVEL"]);
    for m in &view.members {
        let role = if m.id == view.leader_id { format!("{} (leader)", m.role) } else { m.role.clone() };
        let reachable = if m.reachable { "yes" } else { "no" };
        let (version, level) =
            if m.reachable { (m.version.clone(), m.max_level.to_string()) } else { ("-".into(), "-".into()) };
        members.row(vec![
            m.id.to_string(),
            m.name.clone(),
            m.address.clone(),
            role,
            reachable.to_string(),
            version,
            level,
        ]);
    }
    format!("{}\n{}", fields.render(), members.render())
}

fn migration_text(m: &crate::views::MigrationSettingsView) -> String {
    format!(
        "auto-converge {}, compression {}, max downtime {}, bandwidth {}, {} at a time per host",
        if m.auto_converge { "on" } else { "off" },
        if m.compression { "on" } else { "off" },
        m.max_downtime_ms.map_or("libvirt's default".to_string(), |v| format!("{v} ms")),
        m.bandwidth_mibps.map_or("unlimited".to_string(), |v| format!("{v} MiB/s")),
        m.max_per_host
    )
}

async fn create_token(ctx: &Context, ttl_seconds: u64) -> Result<()> {
    let request = proto::CreateTokenRequest { ttl_seconds };
    let response = ctx
        .nodes
        // Not resent: a second attempt would mint a different token than the first stored.
        .write_once(|channel| async move { ClusterServiceClient::new(channel).create_token(request).await })
        .await?;
    let expires_ms = response.expires_unix_ms;
    let view = TokenView::from(response);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => {
            let fields = Fields::new().add("id", &view.id).add("expires", expiry(&view.expires, expires_ms));
            output::print(&format!("{}{}\n", fields.render(), view.token))?;
        }
    }
    Ok(())
}

async fn list_tokens(ctx: &Context) -> Result<()> {
    let response = ctx
        .nodes
        .read(
            |channel| async move { ClusterServiceClient::new(channel).list_tokens(proto::ListTokensRequest {}).await },
        )
        .await?;
    let views: Vec<TokenInfoView> = response.tokens.into_iter().map(TokenInfoView::from).collect();
    match ctx.format {
        Format::Json => output::print_json(&views)?,
        Format::Table => {
            let mut table = Table::new(&["ID", "CREATED", "EXPIRES", "USES"]);
            for t in &views {
                table.row(vec![t.id.clone(), t.created.clone(), t.expires.clone(), t.uses.to_string()]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}

async fn revoke_token(ctx: &Context, id: &str) -> Result<()> {
    let request = proto::RevokeTokenRequest { id: id.to_string() };
    let response = ctx
        .nodes
        .write(|channel, rid| {
            let request = rid.tag(request.clone());
            async move { ClusterServiceClient::new(channel).revoke_token(request).await }
        })
        .await?;
    match ctx.format {
        Format::Json => output::print_json(&serde_json::json!({ "revoked": response.id }))?,
        Format::Table => output::print(&format!("revoked join token {}\n", response.id))?,
    }
    Ok(())
}

/// `cluster credentials -f FILE`: the key is made here; only its CSR is sent.
async fn ca(ctx: &Context, file: &Path, force: bool) -> Result<()> {
    files::check_writable(file, force)?;
    let r = ctx.nodes.read(|c| async move { ClusterServiceClient::new(c).ca(proto::CaRequest {}).await }).await?;
    files::write_text(file, &format!("{}\n", r.ca.trim()), force)?;
    match ctx.format {
        Format::Json => output::print_json(&serde_json::json!({
            "file": file.display().to_string(),
            "fingerprint": r.fingerprint,
        }))?,
        Format::Table => output::print(&format!(
            "wrote the cluster CA ({}) to {}; users log in with --ca-file {}\n",
            r.fingerprint,
            file.display(),
            file.display()
        ))?,
    }
    Ok(())
}

async fn credentials(ctx: &Context, file: &Path, user: &str, force: bool) -> Result<()> {
    files::check_writable(file, force)?;
    let (key, csr) = crate::credentials::key_and_csr()?;
    let request = proto::CredentialsRequest { user: user.to_string(), csr };
    let response = ctx
        .nodes
        .read(|channel| {
            let request = request.clone();
            async move { ClusterServiceClient::new(channel).credentials(request).await }
        })
        .await?;
    crate::credentials::write(file, &response.certificate, &key, &response.ca, force)?;
    match ctx.format {
        Format::Json => output::print_json(&serde_json::json!({
            "file": file.display().to_string(),
            "user": user,
            "expires": crate::views::rfc3339(response.expires_unix_ms),
        }))?,
        Format::Table => output::print(&format!(
            "wrote credentials for {user} to {} (expires {}); give the CLI --credentials {}\n",
            file.display(),
            crate::views::rfc3339(response.expires_unix_ms),
            file.display()
        ))?,
    }
    Ok(())
}

/// "2026-11-23T04:10:00.000Z (in 24h)".
fn expiry(rfc3339: &str, unix_ms: i64) -> String {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let left_s = unix_ms.saturating_sub(now_ms) / 1000;
    if left_s <= 0 {
        return format!("{rfc3339} (expired)");
    }
    // Whole minutes are precise enough and read better than "23h 59m 59s".
    let minutes = u64::try_from((left_s + 30) / 60).unwrap_or(0).max(1);
    format!("{rfc3339} (in {})", humantime::format_duration(std::time::Duration::from_secs(minutes * 60)))
}

fn snapshot_cap(max: u32) -> String {
    if max == 0 {
        "no cap".to_string()
    } else {
        format!("{max} (the oldest goes)")
    }
}
