//! `rollcage`: the one binary of the project.

mod appspec_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Deploy revisions to fleets of hosts, CodeDeploy-compatible.
#[derive(Debug, Parser)]
#[command(name = "rollcage", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with AppSpec files.
    #[command(subcommand)]
    Appspec(AppspecCommand),
}

#[derive(Debug, Subcommand)]
enum AppspecCommand {
    /// Validate an AppSpec: an appspec file, a revision directory or a bundle archive (tar, tar.gz, zip).
    Check {
        /// The file, directory or archive to check.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROLLCAGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Appspec(AppspecCommand::Check { path }) => appspec_cmd::check(&path),
    }
}
