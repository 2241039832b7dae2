//! `corral disk`: the disks of the cluster's VMs.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// List the disks, attached or floating
    List,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::parse;
    use crate::args::Command;

    #[test]
    fn list_parses() {
        assert!(matches!(parse(&["disk", "list"]).unwrap().command, Command::Disk(DiskCommand::List)));
    }
}
