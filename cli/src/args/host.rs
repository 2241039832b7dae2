//! `corral host`: listing hosts, their tags, maintenance and removal.

use clap::Subcommand;

use super::parse::{parse_list, NameList};

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List the hosts
    List,
    /// Change a host's tags
    Edit {
        /// Host name
        host: String,
        /// What the host offers, e.g. ssd,gpu (replaces its tags; '' clears them)
        #[arg(long, value_name = "TAG[,...]", value_parser = parse_list)]
        tags: Option<NameList>,
    },
    /// Take a host that runs no VM out of the cluster (a learner replaces a leaving voter)
    Remove {
        /// Host name
        host: String,
    },
    /// Show one host, and in maintenance what keeps it from entering it
    Show {
        /// Host name
        host: String,
    },
    /// Move every VM away (highest priority first) and keep the host out of placement
    Maintenance {
        /// Host name
        host: String,
        /// Why, for the event log and `host show`
        #[arg(long)]
        reason: Option<String>,
        /// Wait until the host is in maintenance
        #[arg(long)]
        wait: bool,
    },
    /// Take a host out of maintenance
    Activate {
        /// Host name
        host: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::parse;
    use crate::args::Command;

    #[test]
    fn list_and_edit_parse() {
        assert!(matches!(parse(&["host", "list"]).unwrap().command, Command::Host(HostCommand::List)));
        match parse(&["host", "edit", "host1", "--tags", "ssd"]).unwrap().command {
            Command::Host(HostCommand::Edit { host, tags }) => {
                assert_eq!((host.as_str(), tags), ("host1", Some(NameList(vec!["ssd".into()]))))
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
