//! `rollcage hook …`: tools for hook authors. `new` writes a hook project that builds with one command; `run` runs
//! one hook on this machine under a grant and prints its outcome and capability audit — the unit test a hook
//! author runs before pushing a revision; `wit` writes the WIT a component hook is built against.

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
    /// Write the WIT a component hook is built against into DIR: the `hook` world, rollcage's `rollcage:hook`
    /// interfaces and the WASI 0.2 packages of the wasmtime this agent links (`componentize-py -d DIR -w hook`,
    /// `componentize-js --wit DIR -n hook`).
    Wit {
        /// The directory to write (created if needed; existing files of the same names are replaced).
        dir: std::path::PathBuf,
    },
}

/// Carry out a `hook` command.
pub async fn run(cmd: HookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HookCommand::New(args) => new::run(&args),
        HookCommand::Run(args) => run::run(args).await,
        HookCommand::Wit { dir } => {
            use anyhow::Context as _;
            rollcage_wit::write_dir(&dir).with_context(|| format!("writing {}", dir.display()))?;
            println!(
                "wrote the `hook` world and {} WASI packages into {}",
                rollcage_wit::WASI_DEPS.len(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
