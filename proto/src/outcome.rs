//! The outcome of one hook run, whatever kind of hook it was (shell script or WebAssembly module).
//!
//! Numeric codes follow AWS CodeDeploy's `ScriptError` codes (0–7) where CodeDeploy has one, so operators and tools
//! that know those codes read ours the same way; outcomes CodeDeploy cannot produce get codes from 8 up. Codes are
//! append-only: never renumber.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HookStatus {
    /// Exit code 0.
    Succeeded,
    /// The hook's `location` does not exist in the revision.
    ScriptMissing,
    /// The script cannot be executed (not a regular file, bad interpreter line, permission denied).
    NotExecutable {
        /// Why it could not be started.
        reason: String,
    },
    /// The hook ran past its timeout and was killed (the whole process group, or the wasm guest).
    TimedOut {
        /// The timeout that was exceeded, in seconds.
        timeout_secs: u64,
    },
    /// The hook exited with a non-zero code (shell exit status or WASI `proc_exit(n)`).
    Failed {
        /// The exit code.
        exit_code: i32,
    },
    /// Anything else that went wrong around the hook (I/O error of the runner, …).
    Unknown {
        /// What went wrong.
        reason: String,
    },
    /// Output pipes were still held open by a child after the hook exited, and could not be closed.
    OutputsLeftOpen,
    /// The agent restarted while the hook ran; the hook is reported failed instead of re-run.
    InterruptedByRestart,
    /// The script was killed by a signal it did not get from us.
    KilledBySignal {
        /// The signal number.
        signal: i32,
    },
    /// A wasm guest tried to grow its memory past its `sandbox.memory_mb` cap.
    MemoryLimitExceeded {
        /// The cap, in MiB.
        limit_mib: u64,
    },
    /// A wasm guest trapped (unreachable, out-of-bounds access, stack overflow, …).
    Trapped {
        /// The trap kind as wasmtime names it.
        trap: String,
        /// Guest function names of the backtrace, innermost first.
        backtrace: Vec<String>,
    },
    /// The `runas` user of the hook does not exist on this host.
    UnknownUser {
        /// The user name from the AppSpec.
        user: String,
    },
    /// A wasm module could not be compiled or instantiated (not a WASI command, missing imports, …).
    InvalidModule {
        /// Why it was refused.
        reason: String,
    },
    /// A wasm guest tried something its grant forbids and the sandbox refused it: a symlink whose target leaves
    /// the directory it is made in, a hard link to a symlink, writing past a grant's `max_mb` quota. The hook fails
    /// even if the guest ignored the error it got, so that nothing it meant to leave behind is trusted.
    SandboxViolation {
        /// What was refused, naming the grant (`sandbox.dirs[i]`, its guest path) and the rule or quota.
        reason: String,
    },
}

impl HookStatus {
    /// The stable numeric code: CodeDeploy's 0–7 where one exists, ours from 8 up.
    pub fn code(&self) -> u32 {
        match self {
            Self::Succeeded => 0,
            Self::ScriptMissing => 1,
            Self::NotExecutable { .. } => 2,
            Self::TimedOut { .. } => 3,
            Self::Failed { .. } => 4,
            Self::Unknown { .. } => 5,
            Self::OutputsLeftOpen => 6,
            Self::InterruptedByRestart => 7,
            Self::KilledBySignal { .. } => 8,
            Self::MemoryLimitExceeded { .. } => 9,
            Self::Trapped { .. } => 10,
            Self::UnknownUser { .. } => 11,
            Self::InvalidModule { .. } => 12,
            Self::SandboxViolation { .. } => 13,
        }
    }

    /// True only for [`HookStatus::Succeeded`].
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded)
    }
}

impl fmt::Display for HookStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeeded => f.write_str("succeeded"),
            Self::ScriptMissing => f.write_str("script missing"),
            Self::NotExecutable { reason } => write!(f, "not executable: {reason}"),
            Self::TimedOut { timeout_secs } => write!(f, "timed out after {timeout_secs} s"),
            Self::Failed { exit_code } => write!(f, "failed with exit code {exit_code}"),
            Self::Unknown { reason } => write!(f, "error: {reason}"),
            Self::OutputsLeftOpen => f.write_str("outputs left open by a background process"),
            Self::InterruptedByRestart => f.write_str("interrupted by agent restart"),
            Self::KilledBySignal { signal } => write!(f, "killed by signal {signal}"),
            Self::MemoryLimitExceeded { limit_mib } => {
                write!(f, "memory limit of {limit_mib} MiB exceeded")
            }
            Self::Trapped { trap, backtrace } if backtrace.is_empty() => {
                write!(f, "trapped: {trap}")
            }
            Self::Trapped { trap, backtrace } => {
                write!(f, "trapped: {trap} (in {})", backtrace.join(" <- "))
            }
            Self::UnknownUser { user } => write!(f, "runas user `{user}` does not exist"),
            Self::InvalidModule { reason } => write!(f, "invalid wasm module: {reason}"),
            Self::SandboxViolation { reason } => write!(f, "sandbox violation: {reason}"),
        }
    }
}

/// The full report of one hook run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutcome {
    /// The hook's `location`, relative to the revision.
    pub location: String,
    /// How it ended.
    pub status: HookStatus,
    /// Wall-clock run time in milliseconds.
    pub duration_ms: u64,
    /// The last lines of its output (bounded; the full output is in `scripts.log`).
    pub log_tail: String,
    /// Things that did not fail the hook but that an operator should see (e.g. "a background process kept stdout
    /// open; stopped reading 2 s after the script exited", "output truncated after 16 MiB").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// A wasm hook's capability audit, counted: how often it used each kind of capability with each result
    /// (empty for a shell hook). The listed uses are `[capability]` lines in the output; the coordinator sums the
    /// counts into `/metrics`. At most a dozen entries (kinds × results).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<CapabilityCount>,
}

/// The kinds of capability a wasm hook's audit counts: files opened, directories listed, environment read, HTTP
/// requests, sockets and name lookups (components), links and renames (the filesystem guard). Also the `kind`
/// label of `rollcage_hook_capability_calls_total`, which counts anything else as `other`.
pub const CAPABILITY_KINDS: [&str; 6] = ["file", "dir", "env", "http", "net", "link"];

/// The results of a capability use: the grant let it through, or refused it.
pub const CAPABILITY_RESULTS: [&str; 2] = ["allowed", "denied"];

/// How often a wasm hook used one kind of capability ([`CAPABILITY_KINDS`]) with one result
/// ([`CAPABILITY_RESULTS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityCount {
    /// The kind of capability.
    pub kind: String,
    /// `allowed` or `denied`.
    pub result: String,
    /// How many uses.
    pub count: u64,
}

impl HookOutcome {
    /// True when the hook succeeded.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codedeploy_codes_are_stable() {
        assert_eq!(HookStatus::Succeeded.code(), 0);
        assert_eq!(HookStatus::ScriptMissing.code(), 1);
        assert_eq!(
            HookStatus::NotExecutable {
                reason: String::new()
            }
            .code(),
            2
        );
        assert_eq!(HookStatus::TimedOut { timeout_secs: 1 }.code(), 3);
        assert_eq!(HookStatus::Failed { exit_code: 3 }.code(), 4);
        assert_eq!(
            HookStatus::Unknown {
                reason: String::new()
            }
            .code(),
            5
        );
        assert_eq!(HookStatus::OutputsLeftOpen.code(), 6);
        assert_eq!(HookStatus::InterruptedByRestart.code(), 7);
    }

    #[test]
    fn status_serializes_with_a_kind_tag() -> Result<(), serde_json::Error> {
        let s = serde_json::to_string(&HookStatus::Failed { exit_code: 3 })?;
        assert_eq!(s, r#"{"kind":"failed","exit_code":3}"#);
        assert_eq!(
            HookStatus::MemoryLimitExceeded { limit_mib: 64 }.to_string(),
            "memory limit of 64 MiB exceeded"
        );
        Ok(())
    }
}
