//! The command line grammar: global flags and one submodule per command group, mirroring
//! `commands/`. Value parsers return messages that name the rule; `main` prefixes the flag, so a
//! bad value reads `error: --memory: 'abc' is not a size (use e.g. 512M, 4G)`.

mod affinity;
mod auth;
mod cluster;
mod disk;
mod engine;
mod events;
mod host;
mod library;
mod ovf;
mod parse;
mod vm;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use self::affinity::{AffinityGroupCommand, AffinityLabelCommand};
pub use self::auth::{
    ApiTokenCommand, GroupCommand, LoginArgs, PermissionArgs, PermissionCommand, RoleCommand, UserCommand,
};
pub use self::cluster::{BootstrapArgs, ClusterCommand, EditClusterArgs, TokenCommand};
pub use self::disk::DiskCommand;
pub use self::engine::EngineCommand;
pub use self::events::EventsArgs;
pub use self::host::HostCommand;
pub use self::library::{IsoCommand, OfferingCommand, TemplateCommand};
pub use self::ovf::OvfCommand;
use self::parse::{parse_connect_timeout, parse_endpoints};
pub use self::parse::{DomainType, EngineMode, HaPriority, Migration, NameList, Polarity, ResumeBehavior, Scheduling};
pub use self::vm::{CreateVmArgs, EditVmArgs, VmCommand, VmDiskCommand, VmNicCommand, VmSnapshotCommand};
use crate::endpoints::Endpoints;
use crate::output::Format;

/// Runs value parser number `which` (sizes, durations, addresses, lists) on `text` and says
/// whether it took it: for the fuzz targets (`fuzz/`), which must find no input that panics.
#[doc(hidden)]
pub fn parse_value(which: u8, text: &str) -> bool {
    match which % 10 {
        0 => parse::parse_memory(text).is_ok(),
        1 => parse::parse_timeout(text).is_ok(),
        2 => parse::parse_connect_timeout(text).is_ok(),
        3 => parse::parse_ttl(text).is_ok(),
        4 => parse::parse_millis(text).is_ok(),
        5 => parse::parse_endpoints(text).is_ok(),
        6 => parse::parse_vcpus(text).is_ok(),
        7 => parse::parse_list(text).is_ok(),
        8 => parse::parse_override_millis(text).is_ok(),
        _ => parse::parse_overcommit(text).is_ok(),
    }
}

#[derive(Debug, Parser)]
#[command(name = "corral", version, about = "Command line of a Corral VM cluster")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Nodes to talk to, tried in order until one can be reached (comma-separated host:port)
    /// [default: /var/lib/corral/corrald.sock when it exists, else 127.0.0.1:7001]
    #[arg(long, global = true, env = "CORRAL_ENDPOINT", value_name = "HOST:PORT[,...]", value_parser = parse_endpoints)]
    pub endpoint: Option<Endpoints>,

    /// This host's corrald over its local socket, as root (a superuser; no credentials needed);
    /// wins over --endpoint. Bootstrap and join go this way only
    #[arg(long, global = true, env = "CORRAL_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The credentials file from `cluster credentials` (PEM: client certificate, key, cluster
    /// CA), for --endpoint
    #[arg(long, global = true, env = "CORRAL_CREDENTIALS", value_name = "FILE")]
    pub credentials: Option<PathBuf>,

    /// Read an API token (`user token create`) from FILE and send it with every call
    #[arg(long, global = true, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,

    /// An API token to send with every call (prefer --api-token-file: this shows in `ps`)
    #[arg(long, global = true, env = "CORRAL_API_TOKEN", hide_env_values = true, value_name = "TOKEN", hide = true)]
    pub api_token: Option<String>,

    /// The cluster CA's certificate, to trust nodes by when no credentials file or saved login
    /// has it (an API token's calls)
    #[arg(long, global = true, env = "CORRAL_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// How long each endpoint gets to connect and answer before the next is tried (e.g. 500ms, 2s)
    #[arg(
        long,
        global = true,
        env = "CORRAL_CONNECT_TIMEOUT",
        default_value = "2s",
        value_name = "DURATION",
        value_parser = parse_connect_timeout
    )]
    pub connect_timeout: Duration,

    /// Output format
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Read the node's local copy instead of a linearizable read through the leader
    #[arg(long, global = true)]
    pub stale: bool,

    /// Which of the credentials above were flags (`main` fills it in), since flags win over the
    /// environment.
    #[arg(skip)]
    pub flags: GivenFlags,
}

/// Credentials given as flags rather than through the environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct GivenFlags {
    pub credentials: bool,
    pub socket: bool,
    pub api_token: bool,
}

#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the biggest subcommand's arguments costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Form, join and inspect the cluster
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Create, inspect, change and delete virtual machines
    #[command(subcommand)]
    Vm(VmCommand),
    /// Inspect the hosts of the cluster
    #[command(subcommand)]
    Host(HostCommand),
    /// Create, inspect, grow and delete disks, attached or floating
    #[command(subcommand)]
    Disk(DiskCommand),
    /// The library's ISO images: upload, list, delete
    #[command(subcommand)]
    Iso(IsoCommand),
    /// Templates new VMs are made from
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Service offerings: sizes for new VMs
    #[command(subcommand)]
    Offering(OfferingCommand),
    /// Keep VMs together or apart (VM-to-VM rules the scheduler obeys)
    #[command(subcommand)]
    AffinityGroup(AffinityGroupCommand),
    /// Keep VMs on chosen hosts (hard VM-to-host rules)
    #[command(subcommand)]
    AffinityLabel(AffinityLabelCommand),
    /// Show the cluster's event log
    Events(EventsArgs),
    /// Read the OVF store: the last committed OVF document of every VM, kept by every node
    #[command(subcommand)]
    Ovf(OvfCommand),
    /// The hosted engine: its VM, where it runs, each host's score, and maintenance
    #[command(subcommand)]
    Engine(EngineCommand),
    /// Local users (passwords, API tokens)
    #[command(subcommand)]
    User(UserCommand),
    /// Groups of users: a group's permissions reach its members
    #[command(subcommand)]
    Group(GroupCommand),
    /// Roles: named sets of permissions (oVirt's SuperUser, UserRole, ...)
    #[command(subcommand)]
    Role(RoleCommand),
    /// Give users and groups roles on objects
    #[command(subcommand)]
    Permission(PermissionCommand),
    /// Sign in to a cluster as a user; the session (and the CA) is saved under ~/.config/corral/
    Login(LoginArgs),
    /// End the saved session
    Logout,
    /// Who the CLI acts as, and what that user may do
    Whoami,
    /// Print a shell completion script on stdout, e.g. `corral completion bash >
    /// /etc/bash_completion.d/corral` (the package installs them)
    Completion {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (corral.1 and one per subcommand, corral-vm-migrate.1, ...) into DIR;
    /// for packaging
    #[command(hide = true)]
    Man {
        /// Directory to write them to (made if missing)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from(["corral", "-o", "json", "--stale", "vm", "list"]).unwrap();
        let after = Cli::try_parse_from(["corral", "vm", "list", "--stale", "-o", "json"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.global.output, Format::Json);
            assert!(cli.global.stale);
        }
    }

    #[test]
    fn the_connect_timeout_is_two_seconds_unless_told() {
        // Only when the variable is unset can the default be seen (tests share the environment).
        if std::env::var_os("CORRAL_CONNECT_TIMEOUT").is_none() {
            let cli = testing::parse(&["vm", "list"]).unwrap();
            assert_eq!(cli.global.connect_timeout, crate::connect::DEFAULT_CONNECT_TIMEOUT);
        }
        let cli = testing::parse(&["vm", "list", "--connect-timeout", "500ms"]).unwrap();
        assert_eq!(cli.global.connect_timeout, Duration::from_millis(500));
        let refused = testing::parse(&["--connect-timeout", "banana", "vm", "list"]).unwrap_err();
        assert_eq!(
            testing::refusal(&refused),
            ("--connect-timeout".to_string(), "'banana' is not a duration (use e.g. 500ms, 2s)".to_string())
        );
    }
}

/// What the per-noun tests share: parsing a whole command line, and reading a refusal the way
/// `main` reports it.
#[cfg(test)]
pub(crate) mod testing {
    use super::Cli;
    use clap::Parser;

    pub fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("corral").chain(args.iter().copied()))
    }

    /// The flag `main` names in `error: --flag: <rule>`, and the rule.
    pub fn refusal(error: &clap::Error) -> (String, String) {
        use clap::error::{ContextKind, ContextValue};
        use std::error::Error as _;
        let flag = match error.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) => arg.split_whitespace().next().unwrap_or_default().to_string(),
            other => panic!("no invalid arg in {other:?}"),
        };
        (flag, error.source().map(|e| e.to_string()).unwrap_or_default())
    }
}
