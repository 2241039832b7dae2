//! The command line grammar: global flags, subcommands, and the parsers for their values.
//! Value parsers return messages that name the rule; `main` prefixes the flag, so a bad value
//! reads `error: --memory: 'abc' is not a size (use e.g. 512M, 4G)`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::endpoints::{Endpoint, EndpointError, Endpoints};
use crate::output::Format;
use crate::size::{self, SizeError};

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
    #[arg(
        long,
        global = true,
        env = "CORRAL_ENDPOINT",
        default_value = "127.0.0.1:7001",
        value_name = "HOST:PORT[,...]",
        value_parser = parse_endpoints
    )]
    pub endpoint: Endpoints,

    /// Output format
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Read the node's local copy instead of a linearizable read through the leader
    #[arg(long, global = true)]
    pub stale: bool,
}

#[derive(Debug, Subcommand)]
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
    /// Show the cluster's event log
    Events(EventsArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Turn an uninitialized node into a one-node cluster and print its first join token
    Bootstrap {
        /// Name of the new cluster
        #[arg(long)]
        name: String,
    },
    /// Make an uninitialized node join the cluster that PEER belongs to
    Join {
        /// Address of any member of the cluster to join
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_peer)]
        peer: Endpoint,
        /// Join token from `cluster bootstrap` or `cluster token create`
        #[arg(long)]
        token: String,
    },
    /// Show the members, the leader and the term
    Status,
    /// Manage join tokens
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print it
    Create {
        /// How long the token stays valid, e.g. 30m, 1h, 7d (default: the server's, 24h)
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List the hosts
    List,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Define a new VM
    Create(CreateVmArgs),
    /// List the VMs
    List,
    /// Show one VM
    Show {
        /// VM name or id
        vm: String,
    },
    /// Change a VM's settings
    Edit(EditVmArgs),
    /// Delete a VM
    Delete {
        /// VM name or id
        vm: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateVmArgs {
    /// Name of the VM, unique in the cluster
    pub name: String,
    /// Memory, e.g. 512M, 4G, 1.5G (a plain number means MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true, default_value = "1G")]
    pub memory: u64,
    /// Number of virtual CPUs
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true, default_value = "1")]
    pub vcpus: u32,
    /// What the VM is for
    #[arg(long, default_value = "")]
    pub description: String,
    /// A free-form note for operators
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Restart the VM elsewhere when its host fails
    #[arg(long)]
    pub ha: bool,
    /// Order in which HA VMs are restarted (default: medium)
    #[arg(long, value_name = "low|medium|high", value_parser = parse_priority, requires = "ha")]
    pub ha_priority: Option<HaPriority>,
}

#[derive(Debug, Args)]
pub struct EditVmArgs {
    /// VM name or id
    pub vm: String,
    /// New name
    #[arg(long)]
    pub name: Option<String>,
    /// Memory, e.g. 512M, 4G, 1.5G (a plain number means MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// Number of virtual CPUs
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true)]
    pub vcpus: Option<u32>,
    /// What the VM is for ("" clears it)
    #[arg(long)]
    pub description: Option<String>,
    /// A free-form note for operators ("" clears it)
    #[arg(long)]
    pub comment: Option<String>,
    /// Restart the VM elsewhere when its host fails
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub ha: Option<bool>,
    /// Order in which HA VMs are restarted
    #[arg(long, value_name = "low|medium|high", value_parser = parse_priority)]
    pub ha_priority: Option<HaPriority>,
}

impl EditVmArgs {
    pub fn changes_nothing(&self) -> bool {
        self.name.is_none()
            && self.memory.is_none()
            && self.vcpus.is_none()
            && self.description.is_none()
            && self.comment.is_none()
            && self.ha.is_none()
            && self.ha_priority.is_none()
    }
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they are committed, until interrupted
    #[arg(long)]
    pub follow: bool,
    /// Show only the last N events (with --follow: before following)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaPriority {
    Low,
    Medium,
    High,
}

impl HaPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            HaPriority::Low => "low",
            HaPriority::Medium => "medium",
            HaPriority::High => "high",
        }
    }
}

fn parse_endpoints(text: &str) -> Result<Endpoints, EndpointError> {
    Endpoints::parse(text)
}

fn parse_peer(text: &str) -> Result<Endpoint, EndpointError> {
    Endpoint::parse(text)
}

fn parse_memory(text: &str) -> Result<u64, SizeError> {
    size::parse_mib(text)
}

fn parse_vcpus(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

fn parse_count(text: &str) -> Result<u32, String> {
    text.trim().parse::<u32>().map_err(|_| format!("'{text}' is not a whole number"))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(format!("'{text}' is not true or false")),
    }
}

fn parse_priority(text: &str) -> Result<HaPriority, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "low" => Ok(HaPriority::Low),
        "medium" => Ok(HaPriority::Medium),
        "high" => Ok(HaPriority::High),
        _ => Err(format!("'{text}' is not one of low, medium, high")),
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text.trim())
        .map_err(|_| format!("'{text}' is not a duration (use e.g. 30m, 1h, 7d)"))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    Ok(ttl)
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
    fn negative_sizes_reach_the_size_parser() {
        let err = Cli::try_parse_from(["corral", "vm", "create", "w", "--memory", "-1G", "--vcpus", "1"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn value_parsers_name_the_rule() {
        assert_eq!(parse_vcpus("0").unwrap_err(), "must be at least 1");
        assert_eq!(parse_vcpus("x").unwrap_err(), "'x' is not a whole number");
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_ttl("soon").is_err());
        assert_eq!(parse_bool("False"), Ok(false));
        assert_eq!(parse_priority("HIGH"), Ok(HaPriority::High));
    }
}
