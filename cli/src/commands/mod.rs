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
use crate::output::Format;

/// What every command needs besides its own arguments.
pub struct Context {
    pub nodes: Nodes,
    pub format: Format,
    pub stale: bool,
}

pub async fn run(cli: Cli) -> Result<()> {
    let nodes = Nodes::new(cli.global.endpoint, cli.global.connect_timeout);
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
