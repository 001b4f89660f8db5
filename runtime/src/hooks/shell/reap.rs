//! Finding and signalling every process of a hook, for the timeout kill.
//!
//! A hook runs in its own process group, so `killpg` reaches the script and every child that did not leave the
//! group. A child that called `setsid`/`setpgid` (a double-forking daemon) escapes the group; to reach it without
//! cgroups, each hook gets a unique marker variable ([`MARKER_VAR`]) in its environment and the scan below also
//! matches any process whose initial environment (`/proc/PID/environ`) carries it.
//!
//! Limits (documented, not hidden): a process that both leaves the group **and** `exec`s with a cleaned
//! environment escapes; so does one started through another service (`systemctl start`), which is usually what the
//! hook wants. Reading another user's `environ` needs root or the same uid, which the agent has for its hooks.
//! Between scanning and signalling a pid could in theory be reused; the window is microseconds.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::fs;

/// The environment variable that tags every process of one hook run.
pub const MARKER_VAR: &str = "ROLLCAGE_HOOK_RUN";

/// The processes of one hook run: its process group and its environment marker.
#[derive(Debug, Clone)]
pub struct HookProcesses {
    pgid: Pid,
    marker: Vec<u8>,
}

impl HookProcesses {
    /// The processes in group `pgid` or carrying `MARKER_VAR=marker_value`.
    pub fn new(pgid: Pid, marker_value: &str) -> Self {
        Self {
            pgid,
            marker: format!("{MARKER_VAR}={marker_value}").into_bytes(),
        }
    }

    /// Live (non-zombie) processes of the hook, found by scanning `/proc`.
    pub fn survivors(&self) -> Vec<Pid> {
        let Ok(dir) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let me = std::process::id();
        dir.filter_map(Result::ok)
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
            })
            .filter(|&pid| pid != me && pid > 1)
            .filter(|&pid| self.owns(pid))
            .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
            .collect()
    }

    /// Send `signal` to the group and to every marked process; returns how many were signalled by pid.
    pub fn signal(&self, signal: Signal) -> usize {
        // ESRCH: the group is already empty; nothing to do.
        let _ = killpg(self.pgid, signal);
        let survivors = self.survivors();
        for &pid in &survivors {
            let _ = kill(pid, signal);
        }
        survivors.len()
    }

    fn owns(&self, pid: u32) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some((state, pgrp)) = parse_stat(&stat) else {
            return false;
        };
        if state == 'Z' || state == 'X' {
            return false;
        }
        if pgrp == self.pgid.as_raw() {
            return true;
        }
        fs::read(format!("/proc/{pid}/environ"))
            .map(|env| {
                env.split(|&b| b == 0)
                    .any(|var| var == self.marker.as_slice())
            })
            .unwrap_or(false)
    }
}

/// State letter and process group from the text of `/proc/PID/stat`.
///
/// The command name is in parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`: state, ppid, pgrp, …
pub fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        assert_eq!(
            parse_stat("42 (sleep) S 1 40 40 0 -1 4194560"),
            Some(('S', 40))
        );
        assert_eq!(parse_stat("42 (a) b) (c) Z 1 77 40 0"), Some(('Z', 77)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_process_is_never_a_survivor() {
        let me = Pid::from_raw(i32::try_from(std::process::id()).unwrap_or(i32::MAX));
        let procs = HookProcesses::new(nix::unistd::getpgrp(), "x");
        assert!(!procs.survivors().contains(&me));
    }
}
