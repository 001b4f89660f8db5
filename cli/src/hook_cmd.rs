//! `rollcage hook …`: tools for hook authors. `new` writes a hook project that builds with one command; `run` runs
//! one hook on this machine under a grant and prints its outcome and capability audit — the unit test a hook
//! author runs before pushing a revision.

mod new;
mod run;

use clap::Subcommand;
use std::process::ExitCode;

pub use new::NewArgs;
pub use run::RunArgs;

/// `rollcage hook …`.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Write a new hook project (Rust, Python or JavaScript) that builds with one command.
    New(NewArgs),
    /// Run one hook here (a wasm module or component, or a script) with a sandbox grant and print its outcome and
    /// capability audit. Exit 0 when the hook succeeded, 1 when it failed.
    Run(RunArgs),
}

/// Carry out a `hook` command.
pub async fn run(cmd: HookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HookCommand::New(args) => new::run(&args),
        HookCommand::Run(args) => run::run(args).await,
    }
}
