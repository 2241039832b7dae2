//! corrald: parses settings, opens the data dir, serves gRPC until SIGTERM or Ctrl-C, then
//! shuts Raft down and flushes the store so a restart finds everything committed. Under systemd
//! (`Type=notify`) it says when it serves and, with `WatchdogSec=`, that it is still alive.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use corral_node::config::{Args, Config};
use corral_node::daemon::Daemon;
use corral_node::{agent, api, identity};
use tokio::signal::unix::{signal, SignalKind};

/// glibc's allocator, set before any thread starts. By default it moves its threshold for
/// handing big blocks straight to the kernel up after each is freed (to 32 MiB), so the encoded
/// snapshots, listings and documents of a large cluster end up on the heap, and what they leave
/// behind keeps the process's memory high long after; and it keeps an arena per thread. Fixed
/// thresholds and two arenas: a voter holding 20,000 VMs goes from 190 to 125 MiB resident
/// (BENCHMARKS.md, "Scale").
fn tune_allocator() {
    // SAFETY: mallopt only sets the allocator's parameters; called first thing in main, before
    // any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // A hidden flag beside the settings (not one of them): the package's build writes the man
    // page from the same grammar.
    let man_dir = clap::Arg::new("man_dir").long("man-dir").value_name("DIR").hide(true);
    let matches = Args::command().arg(man_dir).get_matches();
    if let Some(dir) = matches.get_one::<String>("man_dir") {
        return write_man_page(dir);
    }
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
    // The listener is bound and Raft's parts run: a client that connects from here on is served.
    systemd::ready();
    daemon.serve(listener, local, metrics, shutdown).await?;
    systemd::stopping();
    daemon.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped");
    Ok(())
}

/// corrald(8), into `dir`.
fn write_man_page(dir: &str) -> ExitCode {
    let page = clap_mangen::Man::new(Args::command()).section("8");
    match std::fs::create_dir_all(dir).and_then(|()| page.generate_to(dir)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corrald: error: cannot write the man page into {dir}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// systemd's notification protocol, only when systemd asked for it (NOTIFY_SOCKET is set):
/// READY=1 once corrald serves, WATCHDOG=1 every half of WatchdogSec while the runtime that
/// runs every part of corrald still schedules tasks, STOPPING=1 on the way out. Never fatal:
/// a failed notification is logged, and systemd's own timeout then decides.
mod systemd {
    use std::time::Duration;

    use sd_notify::NotifyState;

    pub fn ready() {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        let mut usec = 0;
        if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
            // On the same runtime as the API, Raft and the host agent: a runtime whose workers
            // are all stuck stops pinging, and systemd restarts corrald.
            tokio::spawn(ping(Duration::from_micros(usec) / 2));
        }
    }

    pub fn stopping() {
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            notify(&[NotifyState::Stopping]);
        }
    }

    async fn ping(every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    }

    fn notify(state: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(false, state) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }
}
