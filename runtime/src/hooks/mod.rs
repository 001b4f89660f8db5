//! Lifecycle hook runners.
//!
//! [`run_hook`] looks at the hook's file and picks the runner: a WebAssembly binary (magic bytes `\0asm`: a
//! preview-1 module or a WASI 0.2 command component) runs in the agent's wasmtime sandbox ([`wasm`]); anything
//! else is a shell script run as a child process ([`shell`]).
//! Every ending maps onto the one [`HookOutcome`] type.

pub mod log;
pub mod shell;
pub mod wasm;

use crate::appspec::HookSpec;
use rollcage_proto::{HookOutcome, HookStatus, LifecycleEvent};
use std::path::Path;

pub use log::{OutputTail, ScriptLog, Stream};
pub use wasm::{WasmConfig, WasmHooks};

/// The values a hook learns about its deployment, as environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookEnv {
    /// `DEPLOYMENT_ID`.
    pub deployment_id: String,
    /// `APPLICATION_NAME`.
    pub application_name: String,
    /// `DEPLOYMENT_GROUP_NAME`.
    pub deployment_group_name: String,
    /// `DEPLOYMENT_GROUP_ID`.
    pub deployment_group_id: String,
    /// Further variables set by the agent (`ROLLCAGE_INSTANCE`, `--var KEY=VALUE`), in order. Loader variables
    /// ([`rollcage_proto::hookvar::is_loader_var`]) are never passed on.
    pub extra: Vec<(String, String)>,
}

impl HookEnv {
    /// The lifecycle variables of one event: CodeDeploy's five, then the extras.
    pub fn vars(&self, event: LifecycleEvent) -> Vec<(String, String)> {
        let mut vars = vec![
            ("LIFECYCLE_EVENT".to_owned(), event.name().to_owned()),
            ("DEPLOYMENT_ID".to_owned(), self.deployment_id.clone()),
            ("APPLICATION_NAME".to_owned(), self.application_name.clone()),
            (
                "DEPLOYMENT_GROUP_NAME".to_owned(),
                self.deployment_group_name.clone(),
            ),
            (
                "DEPLOYMENT_GROUP_ID".to_owned(),
                self.deployment_group_id.clone(),
            ),
        ];
        // The inputs of `extra` (`--var`, the agent's config) refuse loader variables at load time; dropping them
        // here too keeps the promise for every caller of this type: no hook ever gets one.
        vars.extend(
            self.extra
                .iter()
                .filter(|(k, _)| !rollcage_proto::hookvar::is_loader_var(k))
                .cloned(),
        );
        vars
    }
}

/// Everything one hook run needs.
#[derive(Debug, Clone, Copy)]
pub struct HookRun<'a> {
    /// The event the hook belongs to.
    pub event: LifecycleEvent,
    /// The hook entry from the AppSpec.
    pub hook: &'a HookSpec,
    /// The unpacked revision the hook comes from (its working directory).
    pub revision_dir: &'a Path,
    /// Where the hook's `location` is found and confined, when not in the revision: a form-defined deployment's
    /// scripts live in its form dir but run in the revision. `None` = `revision_dir`.
    pub script_root: Option<&'a Path>,
    /// The deployment dir (mode 0700) the hook's revision and scripts are in: a `runas` hook's user may enter it
    /// for the hook's run ([`shell::access`]). `None` grants nothing (the caller keeps the scripts reachable).
    pub deploy_dir: Option<&'a Path>,
    /// Deployment values for the environment.
    pub env: &'a HookEnv,
    /// The deployment's `scripts.log`.
    pub log: &'a ScriptLog,
    /// The agent's wasm runner (engine + compile cache). `None` uses a process-wide runner with a memory-only
    /// cache, so wasm hooks still run (but recompile after every agent start).
    pub wasm: Option<&'a WasmHooks>,
}

impl HookRun<'_> {
    /// The directory the hook's `location` is relative to and confined in.
    pub fn script_root(&self) -> &Path {
        self.script_root.unwrap_or(self.revision_dir)
    }
}

/// Run one hook to its end and report how it ended. Never panics on anything from the bundle.
pub async fn run_hook(run: HookRun<'_>) -> HookOutcome {
    let Some(module) = wasm::detect(run.script_root(), &run.hook.location) else {
        return shell::run(run).await;
    };
    let runner = match run.wasm {
        Some(w) => w,
        None => match wasm::fallback() {
            Ok(w) => w,
            Err(reason) => {
                return HookOutcome {
                    location: run.hook.location.clone(),
                    status: HookStatus::Unknown {
                        reason: format!("wasm runner unavailable: {reason}"),
                    },
                    duration_ms: 0,
                    log_tail: String::new(),
                    warnings: Vec::new(),
                    capabilities: Vec::new(),
                };
            }
        },
    };
    runner.run(run, &module).await
}
