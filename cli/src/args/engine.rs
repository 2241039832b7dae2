//! `corral engine`: the hosted engine's status, its maintenance modes and the no-quorum start.

use clap::Subcommand;

use super::parse::{one_of, EngineMode};

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Show the engine VM, where it runs, and each host's score and maintenance
    Status,
    /// Put the engine into maintenance: global (the cluster leaves it alone), local (one
    /// host will not run it) or none
    Maintenance {
        #[arg(long, value_parser = one_of::<EngineMode>())]
        mode: EngineMode,
        /// The host for local or none (default: the first --endpoint node)
        #[arg(long)]
        host: Option<String>,
    },
    /// Start the engine VM on the first --endpoint node from that node's OVF store, for a
    /// cluster that lost quorum
    Start {
        /// Required: the engine is started on this one node, from its own copy
        #[arg(long)]
        local: bool,
        /// Start it even if another host may run it (never while the cluster has quorum: for a
        /// host whose cluster has lost it)
        #[arg(long)]
        force: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{parse, refusal};
    use crate::args::Command;

    #[test]
    fn engine_commands_parse() {
        assert!(matches!(parse(&["engine", "status"]).unwrap().command, Command::Engine(EngineCommand::Status)));
        match parse(&["engine", "maintenance", "--mode", "local", "--host", "host2"]).unwrap().command {
            Command::Engine(EngineCommand::Maintenance { mode, host }) => {
                assert_eq!((mode, host.as_deref()), (EngineMode::Local, Some("host2")))
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["engine", "maintenance"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = parse(&["engine", "maintenance", "--mode", "partial"]).unwrap_err();
        assert_eq!(refusal(&err), ("--mode".to_string(), "'partial' is not one of global, local, none".to_string()));
        match parse(&["engine", "start", "--local", "--force"]).unwrap().command {
            Command::Engine(EngineCommand::Start { local, force }) => assert!(local && force),
            other => panic!("parsed as {other:?}"),
        }
        // Parsed so that the command itself can say why --local is needed.
        assert!(matches!(
            parse(&["engine", "start"]).unwrap().command,
            Command::Engine(EngineCommand::Start { local: false, force: false })
        ));
    }
}
