//! `corral events`: the cluster's event log, once or followed.

use clap::Args;

use super::parse::parse_count;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they are committed, until interrupted
    #[arg(long)]
    pub follow: bool,
    /// Show only the last N events (with --follow: before following)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub limit: Option<u32>,
    /// Only the events made on this user's requests (root@localhost for the host's root)
    #[arg(long)]
    pub user: Option<String>,
}
