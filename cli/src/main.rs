//! `rollcage`: the one binary of the project. Each subcommand lives in its own module; this file only parses the
//! command line, sets up logging and dispatches.

mod agent_service;
mod appspec_cmd;
mod demo;
mod demo_app;
mod fleet;
mod hook_cmd;
mod lb_cmd;
mod local;
mod secret;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Deployments for fleets of VMs: rolling and blue/green, shell and sandboxed WebAssembly hooks.
#[derive(Debug, Parser)]
#[command(name = "rollcage", version, about)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `rollcage_runtime=debug`. Default: `info` for the
    /// daemons (coordinator, agent, lb), `warn` for everything else.
    #[arg(long, global = true, env = "ROLLCAGE_LOG")]
    log: Option<String>,
    /// Log line format on stderr: `text` for people, `json` (one object per line) for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "ROLLCAGE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Format of the log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with AppSpec files.
    #[command(subcommand)]
    Appspec(AppspecCommand),
    /// Show rollcage working on this machine: a coordinator, the built-in LB and 4 agents in a temp dir, five
    /// deployments (rolling, rolling with LB, a blue/green canary, a failing one rolled back, a bad canary aborted
    /// by the judge) under live traffic.
    Demo(demo::DemoArgs),
    /// The sample HTTP app the load-balancer tests deploy (hidden).
    #[command(hide = true)]
    DemoApp(demo_app::DemoAppArgs),
    /// Tools for hook authors: write a hook project, run a hook here under a grant.
    #[command(subcommand)]
    Hook(hook_cmd::HookCommand),
    /// Run the built-in HTTP load balancer.
    Lb(lb_cmd::LbArgs),
    /// Run the in-place lifecycle of a revision on this host, without a coordinator.
    Local(local::LocalArgs),
    #[command(flatten)]
    Fleet(fleet::FleetCommand),
}

impl Command {
    /// Long-running services log their progress by default; one-shot commands only warnings.
    fn default_log(&self) -> &'static str {
        match self {
            Self::Lb(_) => "info",
            Self::Fleet(cmd) if cmd.is_daemon() => "info",
            _ => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
enum AppspecCommand {
    /// Validate an AppSpec: an appspec file, a revision directory or a bundle archive (tar, tar.gz, zip); or,
    /// with `--form FILE`, a deployment form (TOML or YAML).
    Check {
        /// The file, directory or archive to check.
        #[arg(required_unless_present = "form", conflicts_with = "form")]
        path: Option<PathBuf>,
        /// A deployment form to validate instead of an AppSpec.
        #[arg(long)]
        form: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = cli.command.default_log();
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default_log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rollcage: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Appspec(AppspecCommand::Check { path, form }) => match (form, path) {
                (Some(form), _) => Ok(appspec_cmd::check_form(&form)),
                (None, Some(path)) => Ok(appspec_cmd::check(&path)),
                // clap requires one of them.
                (None, None) => Ok(ExitCode::from(2)),
            },
            Command::Demo(args) => demo::run(args).await,
            Command::DemoApp(args) => demo_app::run(args).await,
            Command::Hook(cmd) => hook_cmd::run(cmd).await,
            Command::Lb(args) => lb_cmd::run(args).await,
            Command::Local(args) => local::run(args).await,
            // The fleet commands promise 1 for "could not be carried out": 2 and 3 mean the deployment waited
            // for failed or was stopped, so an error must not look like either.
            Command::Fleet(cmd) => fleet::run(cmd).await.or_else(|e| {
                eprintln!("rollcage: {e:#}");
                Ok(ExitCode::FAILURE)
            }),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rollcage: {e:#}");
            ExitCode::from(2)
        }
    }
}
