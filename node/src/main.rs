//! corrald: parses settings, opens the data dir, serves gRPC until SIGTERM or Ctrl-C, then
//! shuts Raft down and flushes the store so a restart finds everything committed.

use std::process::ExitCode;

use clap::Parser;
use corral_node::config::{Args, Config};
use corral_node::daemon::Daemon;
use corral_node::{agent, api, identity};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn,sled=warn,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corrald: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (rejoin, peer, restore, force_new_cluster, token_file) =
        (args.rejoin, args.peer.clone(), args.restore.clone(), args.force_new_cluster, args.token_file.clone());
    let mut config = Config::load(args)?;
    // Before anything listens: a SIGTERM that comes once the port answers must stop cleanly.
    let mut term = signal(SignalKind::terminate())?;
    // Offline recoveries rewrite the data dir, then corrald starts on it as usual.
    if rejoin {
        identity::rejoin(&config, peer, token_file.as_deref()).await?;
    } else if let Some(file) = restore {
        identity::restore(&config, &file)?;
    } else if force_new_cluster {
        identity::force_new_cluster(&config).await?;
    }
    let hypervisor = agent::libvirt::Hypervisor::open(&config.libvirt_uri).await?;
    let mut facts = hypervisor.facts().await?;
    facts.domain_type = config.domain_type;
    let consoles = config.storage_dir.join("consoles");
    std::fs::create_dir_all(&consoles)
        .map_err(|e| anyhow::anyhow!("cannot create the storage dir {}: {e}", consoles.display()))?;
    let listener = api::bind(config.listen).await?;
    let local = api::listen::bind_local(&config.socket)?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(corral_node::metrics::http::bind(addr).await?),
        None => None,
    };
    if let Some(l) = &metrics {
        tracing::info!(listen = %l.local_addr()?, "metrics served without login at /metrics");
    }
    // With --listen HOST:0, from here on the port the kernel picked.
    config.bound(listener.local_addr()?)?;
    tracing::info!(name = %config.name, listen = %config.listen, data_dir = %config.data_dir.display(),
        libvirt = %config.libvirt_uri, cpus = facts.cpus, memory_mib = facts.memory_mib, "corrald starting");
    let config_socket = config.socket.clone();
    let daemon = Daemon::open(config, facts, hypervisor).await?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    let socket = config_socket;
    daemon.serve(listener, local, metrics, shutdown).await?;
    daemon.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped");
    Ok(())
}
