//! The agent process's own protections against the hooks it runs, and what hooks get back.
//!
//! [`harden_process`] (called once by `rollcage agent` at start) turns core dumps off (`RLIMIT_CORE` 0, soft and
//! hard) and makes the process non-dumpable (`PR_SET_DUMPABLE` 0). Non-dumpable means the kernel treats the agent
//! like a setuid program: `/proc/PID/{environ,mem,maps,fd,…}` belong to root and `ptrace` needs `CAP_SYS_PTRACE`,
//! so a hook running as the agent's own user cannot read its memory (tokens), and a crash leaves no core file with
//! them either. `/proc/PID/cmdline` stays world-readable whatever this does: secrets never go on a command line.
//!
//! Hooks must not inherit the agent's "no core dumps": the daemons an ApplicationStart launches are the operator's
//! applications, and they keep the limit the agent was started with ([`hook_core_limit`], restored in the hook's
//! child before `exec`). The non-dumpable flag needs no undoing: `execve` resets it.

use std::sync::OnceLock;

/// The core-dump limit (soft, hard) the agent was started with, recorded by [`harden_process`].
static STARTED_WITH: OnceLock<(u64, u64)> = OnceLock::new();

/// A protection could not be applied; the agent does not start without it.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    /// `getrlimit`/`setrlimit(RLIMIT_CORE)` failed.
    #[error("turning core dumps off (RLIMIT_CORE): {0}")]
    CoreLimit(nix::Error),
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("making the agent non-dumpable (PR_SET_DUMPABLE): {0}")]
    Dumpable(nix::Error),
}

/// Turn core dumps off and make this process non-dumpable (see the module doc). Idempotent.
pub fn harden_process() -> Result<(), HardenError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let current = getrlimit(Resource::RLIMIT_CORE).map_err(HardenError::CoreLimit)?;
    // A second call must not record the already-zeroed limit as the one hooks get back.
    STARTED_WITH.get_or_init(|| current);
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(HardenError::CoreLimit)?;
    nix::sys::prctl::set_dumpable(false).map_err(HardenError::Dumpable)?;
    Ok(())
}

/// The core-dump limit (soft, hard) a hook's process gets: the agent's limit before [`harden_process`] zeroed it,
/// or `None` when the process was not hardened (the hook inherits the current limit).
pub fn hook_core_limit() -> Option<(u64, u64)> {
    STARTED_WITH.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in its own process (nextest runs each test in a fresh process), so hardening this one is harmless.
    #[test]
    fn the_process_ends_non_dumpable_without_core_dumps_and_hooks_get_the_old_limit()
    -> Result<(), Box<dyn std::error::Error>> {
        use nix::sys::resource::{Resource, getrlimit};
        let before = getrlimit(Resource::RLIMIT_CORE)?;
        harden_process()?;
        assert_eq!(getrlimit(Resource::RLIMIT_CORE)?, (0, 0));
        assert!(!nix::sys::prctl::get_dumpable()?);
        assert_eq!(hook_core_limit(), Some(before));
        // Again: still the limit from before the first call.
        harden_process()?;
        assert_eq!(hook_core_limit(), Some(before));
        Ok(())
    }
}
