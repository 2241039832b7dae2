//! Entry point of `corral`: parse the command line, run the command, and report failure as
//! exactly one `error: ...` line on stderr with exit code 1. Never a panic or a debug dump.

use std::error::Error as StdError;
use std::io;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;
use corral_cli::args::Cli;

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // Flags win over the environment: which credentials came from the command line.
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    cli.global.flags = corral_cli::args::GivenFlags {
        credentials: given("credentials"),
        socket: given("socket"),
        api_token: given("api_token"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(corral_cli::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`corral events --follow | head`) is not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// A value our parsers refused is reported as `error: --flag: <rule>` (or `error: VARIABLE
/// (--flag): <rule>` when it came from the environment); every other usage error keeps clap's
/// own text and exit code, as do --help and --version.
fn usage_error(error: clap::Error) -> ExitCode {
    if error.kind() == ErrorKind::ValueValidation {
        if let (Some(flag), Some(rule)) = (refused_flag(&error), error.source()) {
            return match from_environment(&flag) {
                Some(variable) => fail(&format!("{variable} ({flag}): {rule}")),
                None => fail(&format!("{flag}: {rule}")),
            };
        }
    }
    let code = error.exit_code();
    // Printing help or an error to a closed stream has nothing left to report to.
    let _ = error.print();
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}

/// "--memory" out of clap's "--memory <SIZE>".
fn refused_flag(error: &clap::Error) -> Option<String> {
    match error.get(ContextKind::InvalidArg)? {
        ContextValue::String(arg) => arg.split_whitespace().next().map(str::to_string),
        _ => None,
    }
}

/// The variable a refused `flag` was read from, when it was not given on the command line but
/// its variable is set.
fn from_environment(flag: &str) -> Option<String> {
    let long = flag.strip_prefix("--")?;
    let command = Cli::command();
    let variable = command.get_arguments().find(|a| a.get_long() == Some(long))?.get_env()?.to_str()?.to_string();
    std::env::var_os(&variable)?;
    let given = std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    (!given).then_some(variable)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().filter_map(|e| e.downcast_ref::<io::Error>()).any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
