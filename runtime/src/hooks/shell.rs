//! Shell hooks: run a script from the revision as a child process (owned by the shell-hooks work).

use super::HookRun;
use rollcage_proto::{HookOutcome, HookStatus};

/// Run the script of `run.hook` and report its outcome.
pub async fn run(run: HookRun<'_>) -> HookOutcome {
    HookOutcome {
        location: run.hook.location.clone(),
        status: HookStatus::Unknown {
            reason: "shell hooks are not implemented yet".to_owned(),
        },
        duration_ms: 0,
        log_tail: String::new(),
        warnings: Vec::new(),
    }
}
