//! `textslash`: deploy, check, update and tear down a textslash deployment from a terminal,
//! with the same provisioning code as the page (`provision`).
//!
//! Secrets come from the environment or a hidden prompt, never from arguments (arguments end
//! up in shell history and `ps`). Exit codes: 0 ok, 1 the operation failed, 2 bad usage.

mod args;
mod commands;
mod render;
mod secrets;
mod serve;
mod setup;

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

/// A failure, and which exit code it earns.
pub enum Failure {
    /// The user asked for something that cannot be done as asked (exit 2).
    Usage(String),
    /// The operation was attempted and failed (exit 1).
    Failed(String),
}

fn main() -> ExitCode {
    let terminal = std::io::stdin().is_terminal();
    let argv = match setup::complete(
        std::env::args_os().collect(),
        terminal,
        &mut setup::Terminal,
    ) {
        Ok(argv) => argv,
        Err(failure) => return exit(failure),
    };
    let args = args::Cli::parse_from(argv);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => exit(failure),
    }
}

fn exit(failure: Failure) -> ExitCode {
    match failure {
        Failure::Usage(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Failure::Failed(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
