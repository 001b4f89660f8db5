//! `rollcage hook run FILE`: one hook, here, through the agent's own runner ([`rollcage_runtime::hooks::run_hook`]),
//! so what passes here passes on an agent: the same sandbox, limits, outcome and `[capability]` audit lines.
//!
//! The hook's output goes to a private `scripts.log` in a temp dir, followed while the hook runs and printed line by
//! line; the outcome and the audit's counts come last.

use anyhow::{Context as _, bail};
use clap::Args;
use rollcage_proto::LifecycleEvent;
use rollcage_runtime::appspec::HookSpec;
use rollcage_runtime::hooks::{HookEnv, HookRun, ScriptLog, WasmConfig, WasmHooks, run_hook};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `rollcage hook run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The hook: a WebAssembly module or component, or an executable script, inside the revision.
    file: PathBuf,
    /// The lifecycle event it runs for (its `LIFECYCLE_EVENT`).
    #[arg(long, default_value = "ValidateService")]
    event: LifecycleEvent,
    /// The hook's grant: a YAML file with the keys of an AppSpec hook's `sandbox:` map (`dirs`, `env`, `http`,
    /// `args`, `memory_mb`). Without it the hook gets what an AppSpec entry without `sandbox:` gets.
    #[arg(long)]
    sandbox: Option<PathBuf>,
    /// The revision the hook belongs to: mounted read-only at `/revision` (its working directory). Default: the
    /// current directory.
    #[arg(long)]
    revision: Option<PathBuf>,
    /// Wall-clock limit in seconds, as an AppSpec entry's `timeout` (CodeDeploy's default is 3600; a test run wants
    /// less).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Extra variable for the hook, KEY=VALUE (repeatable), as `rollcage local --var`.
    #[arg(long = "var", value_parser = crate::fleet::parse_var)]
    vars: Vec<(String, String)>,
    /// Where compiled wasm is cached between runs (keyed by content hash). Default: `$XDG_CACHE_HOME/rollcage/wasm`
    /// or `~/.cache/rollcage/wasm`; without a home, nothing is cached.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// How often the log is read while the hook runs: fast enough to look live, slow enough to cost nothing.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Run the hook and print what happened.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let revision = match &args.revision {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("reading the current directory")?,
    };
    let revision = std::fs::canonicalize(&revision)
        .with_context(|| format!("--revision {}", revision.display()))?;
    let location = location_in(&revision, &args.file)?;
    let sandbox = match &args.sandbox {
        Some(path) => Some(read_grant(path)?),
        None => None,
    };
    if sandbox.is_some() && rollcage_runtime::hooks::wasm::detect(&revision, &location).is_none() {
        bail!(
            "--sandbox applies only to WebAssembly hooks; {location} is a script (no `\\0asm` header)"
        );
    }
    let hook = HookSpec {
        location: location.clone(),
        timeout_secs: args.timeout,
        runas: None,
        sudo: false,
        sandbox,
    };
    let wasm = WasmHooks::new(match args.cache_dir.or_else(default_cache_dir) {
        Some(dir) => WasmConfig::new(dir),
        None => WasmConfig::in_memory(),
    })
    .context("setting up the wasm hook runner")?;
    let logs = tempfile::tempdir().context("creating a temp dir for scripts.log")?;
    let log_path = logs.path().join("scripts.log");
    let log = ScriptLog::open(&log_path).with_context(|| format!("{}", log_path.display()))?;
    let env = HookEnv {
        deployment_id: "hook-run".to_owned(),
        application_name: "hook-run".to_owned(),
        deployment_group_name: "hook-run".to_owned(),
        deployment_group_id: "hook-run".to_owned(),
        extra: args.vars,
    };
    println!(
        "running {location} for {} in {} (timeout {} s)",
        args.event,
        revision.display(),
        args.timeout
    );
    let run = HookRun {
        event: args.event,
        hook: &hook,
        revision_dir: &revision,
        script_root: None,
        deploy_dir: None,
        env: &env,
        log: &log,
        wasm: Some(&wasm),
    };
    let mut follow = Follow::new(&log_path)?;
    let hook_run = run_hook(run);
    tokio::pin!(hook_run);
    let outcome = loop {
        tokio::select! {
            outcome = &mut hook_run => break outcome,
            () = tokio::time::sleep(FOLLOW_EVERY) => follow.print_new()?,
        }
    };
    follow.print_new()?;
    println!(
        "outcome: {} (code {}) in {} ms",
        outcome.status,
        outcome.status.code(),
        outcome.duration_ms
    );
    for warning in &outcome.warnings {
        println!("warning: {warning}");
    }
    if outcome.capabilities.is_empty() {
        println!("capabilities: none used");
    } else {
        let counts: Vec<String> = outcome
            .capabilities
            .iter()
            .map(|c| format!("{} {} {}", c.kind, c.result, c.count))
            .collect();
        println!("capabilities: {}", counts.join(", "));
    }
    Ok(if outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `file` as a location relative to `revision` (where the runner confines it); a file outside is refused here with
/// both paths rather than by the runner with one.
fn location_in(revision: &Path, file: &Path) -> anyhow::Result<String> {
    let abs = std::fs::canonicalize(file).with_context(|| format!("hook {}", file.display()))?;
    let relative = abs.strip_prefix(revision).map_err(|_| {
        anyhow::anyhow!(
            "hook {} is outside the revision {}; give the directory it belongs to with --revision",
            abs.display(),
            revision.display()
        )
    })?;
    relative
        .to_str()
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow::anyhow!("hook {}: not a file name in UTF-8", abs.display()))
}

/// Read and validate a grant file; every problem is printed as `FILE:LINE:COL: path: message`.
fn read_grant(path: &Path) -> anyhow::Result<rollcage_proto::SandboxSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--sandbox {}", path.display()))?;
    rollcage_runtime::appspec::parse_sandbox(&text).map_err(|problems| {
        let name = path.display().to_string();
        let lines: Vec<String> = problems.iter().map(|p| p.located(&name, "")).collect();
        anyhow::anyhow!(
            "{} problem(s) in the grant:\n  {}",
            problems.len(),
            lines.join("\n  ")
        )
    })
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("rollcage").join("wasm"))
}

/// Prints what was appended to `scripts.log` since the last call.
struct Follow {
    file: std::fs::File,
    pending: Vec<u8>,
}

impl Follow {
    fn new(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        Ok(Self {
            file,
            pending: Vec::new(),
        })
    }

    /// Print every complete new line; a partial last line waits for its end.
    fn print_new(&mut self) -> anyhow::Result<()> {
        let pos = self.file.stream_position()?;
        self.file.seek(SeekFrom::Start(pos))?;
        self.file.read_to_end(&mut self.pending)?;
        if let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') {
            let complete: Vec<u8> = self.pending.drain(..=end).collect();
            print!("{}", String::from_utf8_lossy(&complete));
        }
        Ok(())
    }
}
