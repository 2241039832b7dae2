//! One module per command group; each sends its requests through `Nodes` and prints through
//! `output`. Nothing here decides which node to talk to or how errors look on stderr.

mod affinity;
mod auth;
mod cluster;
mod disk;
mod engine;
mod events;
mod help;
mod host;
mod library;
mod ovf;
mod vm;

use anyhow::Result;

use crate::args::{Cli, Command};
use crate::connect::Nodes;
use crate::endpoints::Endpoints;
use crate::output::Format;
use crate::session::{self, Bearer};
use crate::transport::Dial;

/// What every command needs besides its own arguments.
pub struct Context {
    pub nodes: Nodes,
    pub format: Format,
    pub stale: bool,
}

/// The socket a host's root reaches its corrald by when neither --socket nor --endpoint is given.
pub const DEFAULT_SOCKET: &str = "/var/lib/corral/corrald.sock";

/// The API token of --api-token-file or CORRAL_API_TOKEN, if given.
fn api_token(global: &crate::args::GlobalArgs) -> Result<Option<String>> {
    // CORRAL_API_TOKEN gives way to --credentials or --socket given as flags.
    let env_gives_way = (global.flags.credentials || global.flags.socket) && !global.flags.api_token;
    let text = match (&global.api_token_file, &global.api_token) {
        (Some(file), _) => auth::read_secret(file, "--api-token-file", 64 * 1024)?,
        (None, Some(_)) if env_gives_way => return Ok(None),
        (None, Some(token)) => token.clone(),
        (None, None) => return Ok(None),
    };
    let token = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string();
    if token.is_empty() {
        anyhow::bail!("--api-token-file: no token in it");
    }
    Ok(Some(token))
}

/// Which nodes, and how. Nodes: --socket wins over --endpoint; with neither, the endpoint of the
/// last `login`, else this host's corrald socket when it exists, else 127.0.0.1:7001. Who: flags
/// (--credentials, --api-token-file), then the environment (CORRAL_CREDENTIALS, CORRAL_API_TOKEN),
/// then the saved login of the cluster whose CA the node presents.
fn nodes(global: &crate::args::GlobalArgs) -> Result<Nodes> {
    let token = api_token(global)?;
    let bearer = token.as_deref().map(Bearer::fixed).transpose()?.unwrap_or_default();
    let saved = session::default_endpoint().filter(|_| global.endpoint.is_none() && global.socket.is_none());
    let socket = global.socket.clone().or_else(|| {
        let default = std::path::PathBuf::from(DEFAULT_SOCKET);
        (global.endpoint.is_none() && saved.is_none() && default.exists()).then_some(default)
    });
    if let Some(path) = socket {
        let here = Endpoints::parse("localhost").expect("a valid address");
        return Ok(Nodes::with_dial(here, global.connect_timeout, Dial::Local(path)).with_bearer(bearer));
    }
    let endpoints = match (&global.endpoint, &saved) {
        (Some(e), _) => e.clone(),
        (None, Some(text)) => Endpoints::parse(text).map_err(|e| anyhow::anyhow!("the saved login's endpoint: {e}"))?,
        (None, None) => Endpoints::parse("127.0.0.1:7001").expect("valid"),
    };
    let (dial, bearer) = match (&global.credentials, token) {
        (Some(file), _) => (Dial::Tls(crate::credentials::load(file)?), bearer),
        (None, Some(_)) => (Dial::Tls(auth::trust(global.ca_file.as_deref(), false)?.0), bearer),
        (None, None) => match auth::trust(global.ca_file.as_deref(), true) {
            Ok((config, chosen)) => (Dial::Tls(config), chosen.map(Bearer::chosen).unwrap_or_default()),
            Err(_) if global.ca_file.is_none() => (Dial::Plain, Bearer::none()),
            Err(e) => return Err(e),
        },
    };
    Ok(Nodes::with_dial(endpoints, global.connect_timeout, dial).with_bearer(bearer))
}

pub async fn run(cli: Cli) -> Result<()> {
    // Generated from the grammar alone: no node, no credentials.
    match &cli.command {
        Command::Completion { shell } => return help::completion(*shell),
        Command::Man { dir } => return help::man_pages(dir),
        _ => {}
    }
    // `login` makes its own connection: it must not use (or need) a saved one.
    let nodes = match &cli.command {
        Command::Login(_) => Nodes::new(Endpoints::parse("127.0.0.1:7001").expect("valid"), cli.global.connect_timeout),
        _ => nodes(&cli.global)?,
    };
    let ctx = Context { nodes, format: cli.global.output, stale: cli.global.stale };
    match cli.command {
        Command::Cluster(command) => cluster::run(&ctx, command).await,
        Command::Vm(command) => vm::run(&ctx, command).await,
        Command::Host(command) => host::run(&ctx, command).await,
        Command::Disk(command) => disk::run(&ctx, command).await,
        Command::Iso(command) => library::iso(&ctx, command).await,
        Command::Template(command) => library::template(&ctx, command).await,
        Command::Offering(command) => library::offering(&ctx, command).await,
        Command::AffinityGroup(command) => affinity::run_group(&ctx, command).await,
        Command::AffinityLabel(command) => affinity::run_label(&ctx, command).await,
        Command::Events(args) => events::run(&ctx, args).await,
        Command::Ovf(command) => ovf::run(&ctx, command).await,
        Command::Engine(command) => engine::run(&ctx, command).await,
        Command::User(command) => auth::user(&ctx, command).await,
        Command::Group(command) => auth::group(&ctx, command).await,
        Command::Role(command) => auth::role(&ctx, command).await,
        Command::Permission(command) => auth::permission(&ctx, command).await,
        Command::Login(args) => auth::login(&ctx, &cli.global, args).await,
        Command::Logout => auth::logout(&ctx).await,
        Command::Whoami => auth::whoami(&ctx).await,
        Command::Completion { .. } | Command::Man { .. } => unreachable!("answered above, with no connection"),
    }
}
