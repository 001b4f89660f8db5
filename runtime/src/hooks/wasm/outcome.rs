//! How a wasm hook run ended, mapped onto the one [`HookStatus`] every hook kind reports. Pure: no I/O.
//!
//! The order of the checks matters: a guest exit (`I32Exit`, also for code 0) before traps; a recorded memory
//! refusal before the trap it causes (a Rust guest aborts with `unreachable` when an allocation fails).

use rollcage_proto::HookStatus;
use wasmtime::{Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

/// The phase a run error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Instantiating (memory/table setup, start function).
    Instantiate,
    /// Running `_start` (a module) or `wasi:cli/run` (a component).
    Run,
}

/// How the guest call ended, before classification.
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// `_start` or `run` returned (successfully).
    Returned,
    /// A component's `wasi:cli/run` returned its error: a failure, reported like exit code 1 (what `wasi:cli/exit`
    /// with an error status gives too).
    RunFailed,
    /// The wall-clock timeout fired (the guest was cancelled, wherever it was).
    TimedOut,
    /// wasmtime returned an error.
    Error(Phase, wasmtime::Error),
}

/// What the classification needs besides the ending.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) timeout_secs: u64,
    pub(crate) memory_mib: u64,
    /// The first linear-memory growth the limiter refused, in bytes.
    pub(crate) memory_refused: Option<usize>,
}

/// Map a run's end onto a status.
pub(crate) fn classify(end: &RunEnd, limits: Limits) -> HookStatus {
    let (phase, err) = match end {
        RunEnd::Returned => return HookStatus::Succeeded,
        RunEnd::RunFailed => return HookStatus::Failed { exit_code: 1 },
        RunEnd::TimedOut => {
            return HookStatus::TimedOut {
                timeout_secs: limits.timeout_secs,
            };
        }
        RunEnd::Error(phase, err) => (*phase, err),
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return if exit.0 == 0 {
            HookStatus::Succeeded
        } else {
            HookStatus::Failed { exit_code: exit.0 }
        };
    }
    if limits.memory_refused.is_some() {
        return HookStatus::MemoryLimitExceeded {
            limit_mib: limits.memory_mib,
        };
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return HookStatus::Trapped {
            trap: format!("{trap:?}"),
            backtrace: backtrace(err),
        };
    }
    let reason = format!("{err:#}");
    if reason.contains("outside of [0..126)") {
        // WASI p1 reserves 126 and up; wasmtime reports it as a plain error, not an `I32Exit`.
        return HookStatus::Unknown {
            reason: "the hook exited with an invalid exit code (126 or more)".to_owned(),
        };
    }
    match phase {
        Phase::Instantiate => HookStatus::InvalidModule { reason },
        Phase::Run => HookStatus::Unknown { reason },
    }
}

/// A refusal by the filesystem guard fails the hook whatever the guest made of it (ignored the errno, exited
/// non-zero, panicked, ran into its timeout): the status names what was refused, the most useful thing to know,
/// and what the guest meant to leave behind is not to be trusted. Pure.
pub(crate) fn with_violation(status: HookStatus, violation: Option<String>) -> HookStatus {
    match violation {
        None => status,
        Some(reason) => HookStatus::SandboxViolation { reason },
    }
}

/// Guest function names of the error's backtrace, innermost first (unnamed frames show as `<wasm function N>`).
fn backtrace(err: &wasmtime::Error) -> Vec<String> {
    let Some(bt) = err.downcast_ref::<WasmBacktrace>() else {
        return Vec::new();
    };
    bt.frames()
        .iter()
        .map(|f| {
            f.func_name().map_or_else(
                || format!("<wasm function {}>", f.func_index()),
                str::to_owned,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        timeout_secs: 5,
        memory_mib: 32,
        memory_refused: None,
    };

    #[test]
    fn exits_map_to_success_or_failed_with_the_code() {
        let end = |n| RunEnd::Error(Phase::Run, wasmtime::Error::new(I32Exit(n)));
        assert_eq!(classify(&end(0), LIMITS), HookStatus::Succeeded);
        assert_eq!(
            classify(&end(3), LIMITS),
            HookStatus::Failed { exit_code: 3 }
        );
        assert_eq!(
            classify(&RunEnd::TimedOut, LIMITS),
            HookStatus::TimedOut { timeout_secs: 5 }
        );
    }

    #[test]
    fn a_component_run_returning_its_error_is_a_failure_with_code_1() {
        assert_eq!(
            classify(&RunEnd::RunFailed, LIMITS),
            HookStatus::Failed { exit_code: 1 }
        );
    }

    #[test]
    fn a_refused_growth_turns_the_abort_into_a_memory_outcome() {
        let end = RunEnd::Error(
            Phase::Run,
            wasmtime::Error::new(Trap::UnreachableCodeReached),
        );
        let refused = Limits {
            memory_refused: Some(33 << 20),
            ..LIMITS
        };
        assert_eq!(
            classify(&end, refused),
            HookStatus::MemoryLimitExceeded { limit_mib: 32 }
        );
        assert!(
            matches!(classify(&end, LIMITS), HookStatus::Trapped { ref trap, .. } if trap == "UnreachableCodeReached")
        );
    }

    #[test]
    fn a_sandbox_refusal_overrides_how_the_guest_ended() {
        for status in [
            HookStatus::Succeeded,
            HookStatus::Failed { exit_code: 1 },
            HookStatus::TimedOut { timeout_secs: 5 },
        ] {
            assert_eq!(
                with_violation(status.clone(), Some("x".to_owned())),
                HookStatus::SandboxViolation {
                    reason: "x".to_owned()
                }
            );
            assert_eq!(with_violation(status.clone(), None), status);
        }
    }

    #[test]
    fn setup_errors_are_invalid_modules() {
        let end = RunEnd::Error(Phase::Instantiate, wasmtime::Error::msg("unknown import"));
        assert!(matches!(
            classify(&end, LIMITS),
            HookStatus::InvalidModule { .. }
        ));
    }
}
