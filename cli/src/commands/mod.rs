//! One module per command group; each sends its requests through `Nodes` and prints through
//! `output`. Nothing here decides which node to talk to or how errors look on stderr.

mod affinity;
mod cluster;
mod disk;
mod engine;
mod events;
mod host;
mod ovf;
mod vm;

use anyhow::Result;

use crate::args::{Cli, Command};
use crate::connect::Nodes;
use crate::endpoints::Endpoints;
use crate::output::Format;
use crate::transport::Dial;

/// What every command needs besides its own arguments.
pub struct Context {
    pub nodes: Nodes,
    pub format: Format,
    pub stale: bool,
}

/// The socket a host's root reaches its corrald by when neither --socket nor --endpoint is given.
pub const DEFAULT_SOCKET: &str = "/var/lib/corral/corrald.sock";

/// Which nodes, and how: --socket wins over --endpoint; with neither, this host's corrald socket
/// when it exists, else 127.0.0.1:7001. Over TCP, --credentials gives TLS.
fn nodes(global: &crate::args::GlobalArgs) -> Result<Nodes> {
    let socket = global.socket.clone().or_else(|| {
        let default = std::path::PathBuf::from(DEFAULT_SOCKET);
        (global.endpoint.is_none() && default.exists()).then_some(default)
    });
    if let Some(path) = socket {
        let here = Endpoints::parse("localhost").expect("a valid address");
        return Ok(Nodes::with_dial(here, global.connect_timeout, Dial::Local(path)));
    }
    let endpoints = global.endpoint.clone().unwrap_or_else(|| Endpoints::parse("127.0.0.1:7001").expect("valid"));
    let dial = match &global.credentials {
        Some(file) => Dial::Tls(crate::credentials::load(file)?),
        None => Dial::Plain,
    };
    Ok(Nodes::with_dial(endpoints, global.connect_timeout, dial))
}

pub async fn run(cli: Cli) -> Result<()> {
    let nodes = nodes(&cli.global)?;
    let ctx = Context { nodes, format: cli.global.output, stale: cli.global.stale };
    match cli.command {
        Command::Cluster(command) => cluster::run(&ctx, command).await,
        Command::Vm(command) => vm::run(&ctx, command).await,
        Command::Host(command) => host::run(&ctx, command).await,
        Command::Disk(command) => disk::run(&ctx, command).await,
        Command::AffinityGroup(command) => affinity::run_group(&ctx, command).await,
        Command::AffinityLabel(command) => affinity::run_label(&ctx, command).await,
        Command::Events(args) => events::run(&ctx, args).await,
        Command::Ovf(command) => ovf::run(&ctx, command).await,
        Command::Engine(command) => engine::run(&ctx, command).await,
    }
}
