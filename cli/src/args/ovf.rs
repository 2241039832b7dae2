//! `corral ovf`: reading the OVF store, through the cluster or one node's own copy.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum OvfCommand {
    /// List the documents in the store
    List {
        /// Read the store of the first --endpoint node only, as it is on that node (needs no
        /// quorum; never asks another node)
        #[arg(long)]
        local: bool,
    },
    /// Print one VM's document as stored
    Dump {
        /// VM name or id
        vm: String,
        /// Read the store of the first --endpoint node only, as it is on that node (needs no
        /// quorum; never asks another node)
        #[arg(long)]
        local: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::parse;
    use crate::args::Command;

    #[test]
    fn ovf_commands_parse() {
        assert!(matches!(parse(&["ovf", "list"]).unwrap().command, Command::Ovf(OvfCommand::List { local: false })));
        assert!(matches!(
            parse(&["ovf", "list", "--local"]).unwrap().command,
            Command::Ovf(OvfCommand::List { local: true })
        ));
        match parse(&["ovf", "dump", "web1", "--local"]).unwrap().command {
            Command::Ovf(OvfCommand::Dump { vm, local }) => assert_eq!((vm.as_str(), local), ("web1", true)),
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["ovf", "dump"]).is_err());
    }
}
