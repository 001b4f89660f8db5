//! `rollcage local`: the in-place lifecycle on this host without a coordinator, in the seed's order.
//!
//! Successive runs with the same root/app/group behave as successive deployments: Install cleans up what the
//! previous one installed, and ApplicationStop runs the scripts of the revision installed last.

use anyhow::Context as _;
use clap::Args;
use rollcage_proto::wire::{DeploymentStyle, StepOutcome};
use rollcage_runtime::appspec::FileExistsBehavior;
use rollcage_runtime::hooks::wasm::{WasmConfig, WasmHooks};
use rollcage_runtime::lifecycle::{DeploymentSpec, HostConfig, HostDeployment, StepReport};
use rollcage_runtime::package::{Source, UnpackLimits};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `rollcage local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The revision: a directory, an archive (tar, tar.gz, zip), or a file:// or http(s):// URL.
    #[arg(long)]
    bundle: String,
    /// The agent root under which deployments are cached.
    #[arg(long, default_value = "/var/lib/rollcage")]
    root: PathBuf,
    /// Application name.
    #[arg(long, default_value = "local")]
    app: String,
    /// Deployment group name.
    #[arg(long, default_value = "local")]
    group: String,
    /// Deployment id (default: `local-<unix time in ms>`).
    #[arg(long)]
    deployment_id: Option<String>,
    /// Expected sha256 of the archive (lowercase hex).
    #[arg(long)]
    sha256: Option<String>,
    /// What Install does with existing files the previous deployment did not create (when the AppSpec is silent).
    #[arg(long, value_enum, default_value = "disallow")]
    file_exists_behavior: Behavior,
    /// Log and skip failures of ApplicationStop (the previously installed revision's scripts), as `rollcage
    /// deploy --ignore-application-stop-failures` does.
    #[arg(long)]
    ignore_application_stop_failures: bool,
    /// A form (TOML or YAML: destination, stop/start/check scripts) describing the deployment instead of the
    /// package's appspec.yml; it wins when the package has one too.
    #[arg(long)]
    form: Option<PathBuf>,
    /// Extra variable for every hook, KEY=VALUE (repeatable).
    #[arg(long = "var", value_parser = crate::fleet::parse_var)]
    vars: Vec<(String, String)>,
    /// Deploy the bundle only if it is signed by a key this OpenSSH allowed_signers file lists with
    /// `namespaces="rollcage"` (checked before anything is unpacked).
    #[arg(long)]
    trusted_signers: Option<PathBuf>,
    /// The bundle's signature (`ssh-keygen -Y sign -n rollcage -f KEY BUNDLE` writes BUNDLE.sig).
    #[arg(long)]
    signature: Option<PathBuf>,
}

/// `--file-exists-behavior` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Behavior {
    Disallow,
    Overwrite,
    Retain,
}

/// Run the lifecycle; exit 0 on success, 1 when a step failed.
pub async fn run(args: LocalArgs) -> anyhow::Result<ExitCode> {
    let source =
        Source::parse(&args.bundle).with_context(|| format!("--bundle {}", args.bundle))?;
    let deployment_id = match args.deployment_id {
        Some(id) => id,
        None => format!(
            "local-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ),
    };
    let form = match &args.form {
        Some(path) => Some(rollcage_runtime::form::load(path).context("--form")?),
        None => None,
    };
    let signature = args
        .signature
        .as_deref()
        .map(crate::fleet::read_signature)
        .transpose()?;
    let mut host = HostConfig::new(&args.root);
    host.hook_vars = args.vars;
    if let Some(path) = &args.trusted_signers {
        // A broken file is named now, with its line, before anything runs.
        rollcage_signing::AllowedSigners::load(path)?;
        host.trusted_signers = Some(path.clone());
    }
    let wasm = WasmHooks::new(WasmConfig::new(host.wasm_cache_dir()))
        .context("setting up the wasm hook runner")?;
    host.wasm = Some(Arc::new(wasm));
    let spec = DeploymentSpec {
        application: args.app.clone(),
        group: args.group.clone(),
        group_id: args.group.clone(),
        deployment_id: deployment_id.clone(),
        source,
        expected_sha256: args.sha256.map(|s| s.to_ascii_lowercase()),
        file_exists_behavior: match args.file_exists_behavior {
            Behavior::Disallow => FileExistsBehavior::Disallow,
            Behavior::Overwrite => FileExistsBehavior::Overwrite,
            Behavior::Retain => FileExistsBehavior::Retain,
        },
        limits: UnpackLimits::default(),
        form,
        signature,
        overrides: rollcage_proto::wire::AgentOverrides {
            ignore_application_stop_failures: args.ignore_application_stop_failures,
            file_exists_behavior: None,
        },
    };
    let deployment = HostDeployment::new(&host, spec)?;
    println!(
        "deployment {deployment_id} of {}/{} into {}",
        args.app,
        args.group,
        deployment.layout().dir().display()
    );
    let seed = rollcage_proto::plan(DeploymentStyle::InPlace, false);
    match rollcage_runtime::lifecycle::run_plan(&deployment, seed, print_step).await {
        None => {
            println!("deployment {deployment_id} succeeded");
            Ok(ExitCode::SUCCESS)
        }
        Some(report) => {
            print_failure(&report, &deployment);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn status_word(status: StepOutcome) -> &'static str {
    match status {
        StepOutcome::Succeeded => "succeeded",
        StepOutcome::Skipped => "skipped",
        StepOutcome::Failed => "FAILED",
    }
}

fn print_step(report: &StepReport) {
    println!(
        "  {:<18} {:<9} {:>8.2}s  {}",
        report.event.name(),
        status_word(report.status),
        report.duration_ms as f64 / 1000.0,
        report.message
    );
    for hook in &report.hooks {
        println!(
            "      {} {} ({} ms)",
            hook.location, hook.status, hook.duration_ms
        );
        for warning in &hook.warnings {
            println!("      warning: {warning}");
        }
    }
}

pub fn print_failure(report: &StepReport, deployment: &HostDeployment) {
    eprintln!("deployment failed at {}: {}", report.event, report.message);
    if let Some(hook) = report.failed_hook() {
        eprintln!(
            "  hook {}: {} (code {})",
            hook.location,
            hook.status,
            hook.status.code()
        );
        if !hook.log_tail.is_empty() {
            eprintln!("  last output:");
            for line in hook.log_tail.lines() {
                eprintln!("    | {line}");
            }
        }
        eprintln!(
            "  full log: {}",
            deployment.layout().scripts_log().display()
        );
    }
}
