//! Process supervision of the demo: every process it starts (coordinator, LB, agents) is a `rollcage`
//! subcommand in its own process group, logging to a file in the demo's temp dir. [`Supervisor::shutdown`]
//! (also run on drop, so on errors and panics) stops them all, then every process whose command line mentions
//! the temp dir (the demo apps the hooks started in the background, with their pid files there, and any hook
//! still running), and removes the temp dir unless asked to keep it.

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long processes get to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Names of agent processes start with this (they are stopped first).
pub const AGENT_PREFIX: &str = "agent ";
/// Lines of a log shown when its process fails.
pub const TAIL_LINES: usize = 15;

struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
}

/// The demo's processes and temp dir.
pub struct Supervisor {
    dir: PathBuf,
    tmp: Mutex<Option<tempfile::TempDir>>,
    children: Mutex<Vec<Supervised>>,
    keep: bool,
}

impl Supervisor {
    /// A fresh temp dir (`rollcage-demo-*` in the system temp dir); `keep` leaves it in place at the end.
    pub fn new(keep: bool) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("rollcage-demo-")
            .tempdir()
            .context("creating the demo's temp dir")?;
        Ok(Self {
            dir: tmp.path().to_owned(),
            tmp: Mutex::new(Some(tmp)),
            children: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start `exe args…` as `name` in its own process group (so a Ctrl-C in the terminal reaches only the demo,
    /// which stops everything in order), stdout and stderr appended to `log`.
    pub fn spawn(&self, name: &str, exe: &Path, args: &[&OsStr], log: &Path) -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = file.try_clone().context("duplicating a log file handle")?;
        let mut cmd = Command::new(exe);
        // The operator's own settings (ROLLCAGE_COORDINATOR, ROLLCAGE_ENROLL_TOKEN, ROLLCAGE_LOG, …) would
        // override the demo's config files: its processes must talk to each other only.
        for key in rollcage_vars(std::env::vars_os().map(|(k, _)| k)) {
            cmd.env_remove(key);
        }
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({})", exe.display()))?;
        tracing::debug!(name, pid = child.id(), "demo process started");
        self.lock().push(Supervised {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        });
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Supervised>> {
        // A poisoned lock only means a panic elsewhere; the list itself is intact.
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An error naming the first process that exited, with the end of its log.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        let mut children = self.lock();
        for c in children.iter_mut() {
            if let Ok(Some(status)) = c.child.try_wait() {
                bail!(
                    "{} exited unexpectedly ({status}); last lines of {}:\n{}",
                    c.name,
                    c.log.display(),
                    log_tail(&c.log, TAIL_LINES)
                );
            }
        }
        Ok(())
    }

    /// The log file of process `name`.
    pub fn log_of(&self, name: &str) -> Option<PathBuf> {
        self.lock()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.log.clone())
    }

    /// Stop every process (SIGTERM to each group, SIGKILL after a grace time), then whatever still mentions the
    /// temp dir, and remove the temp dir (or keep it: its path is returned). Idempotent.
    pub fn shutdown(&self) -> Option<PathBuf> {
        let children = std::mem::take(&mut *self.lock());
        // Processes started last go first: agents report their last step to a coordinator still up, then the
        // LB and the coordinator have nobody left to wait for.
        let (mut late, mut early): (Vec<_>, Vec<_>) = children
            .into_iter()
            .partition(|c| c.name.starts_with(AGENT_PREFIX));
        stop(&mut late);
        stop(&mut early);
        // The demo apps and hooks live in process groups of their own (the agent's hook runner makes one per
        // hook): find them by the temp dir in their command line.
        sweep(&self.dir, Signal::SIGTERM);
        let begin = Instant::now();
        while begin.elapsed() < TERM_GRACE && !processes_mentioning(&self.dir).is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        sweep(&self.dir, Signal::SIGKILL);
        let tmp = self.tmp.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        if self.keep {
            return Some(tmp.keep());
        }
        let path = tmp.path().to_owned();
        if let Err(e) = tmp.close() {
            eprintln!("demo: could not remove {}: {e}", path.display());
        }
        None
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(kept) = self.shutdown() {
            eprintln!("demo: kept {}", kept.display());
        }
    }
}

/// SIGTERM to each process group, SIGKILL to those still running after [`TERM_GRACE`]; reaps them all.
fn stop(children: &mut [Supervised]) {
    for c in children.iter() {
        if let Some(pid) = pid_of(c.child.id()) {
            let _ = killpg(pid, Signal::SIGTERM);
        }
    }
    let begin = Instant::now();
    while begin.elapsed() < TERM_GRACE
        && children
            .iter_mut()
            .any(|c| matches!(c.child.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in children.iter_mut() {
        if matches!(c.child.try_wait(), Ok(None))
            && let Some(pid) = pid_of(c.child.id())
        {
            tracing::debug!(name = %c.name, "still running after SIGTERM: SIGKILL");
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let _ = c.child.wait();
    }
}

/// The `ROLLCAGE_*` names among environment variable names.
fn rollcage_vars(keys: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    keys.filter(|k| k.as_encoded_bytes().starts_with(b"ROLLCAGE_"))
        .collect()
}

fn pid_of(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().map(Pid::from_raw)
}

/// Processes (other than this one) left behind by the demo in `dir`: see [`is_leftover`].
pub fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let dir = dir.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let exe = std::env::current_exe().ok();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            // A binary replaced while running shows as `PATH (deleted)`: compare the start.
            let ours = std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .zip(exe.as_ref())
                .is_some_and(|(p, e)| {
                    p.as_os_str()
                        .as_encoded_bytes()
                        .starts_with(e.as_os_str().as_encoded_bytes())
                });
            is_leftover(&argv, ours, dir)
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// A process the demo left behind: its command line mentions the temp dir `dir`, and it is this binary (a demo
/// app, whose pid file is in `dir`) or a shell script under `dir` (a hook still running). Anything else that
/// merely mentions the dir, such as someone's `tail -f` of a log there, is left alone.
pub fn is_leftover(argv: &[&[u8]], ours: bool, dir: &[u8]) -> bool {
    let mentions = argv.iter().any(|a| a.windows(dir.len()).any(|w| w == dir));
    let script = argv
        .iter()
        .take(2)
        .any(|a| a.starts_with(dir) && a.ends_with(b".sh"));
    mentions && (ours || script)
}
fn sweep(dir: &Path, signal: Signal) {
    for pid in processes_mentioning(dir) {
        tracing::debug!(pid, ?signal, "stopping a demo process left behind");
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// The last `n` lines of a log file (or why it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            lines[from..]
                .iter()
                .map(|l| format!("  | {}\n", strip_ansi(l)))
                .collect()
        }
        Err(e) => format!("  (cannot read {}: {e})\n", path.display()),
    }
}

/// `line` without terminal colour sequences (`ESC [ … letter`), which the daemons' logs contain.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `[`, parameters, and the final letter.
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_this_binary_or_scripts_under_the_dir() {
        let dir = b"/tmp/rollcage-demo-x";
        let app: [&[u8]; 3] = [
            b"/bin/rollcage",
            b"--pid-file",
            b"/tmp/rollcage-demo-x/apps/i1.pid",
        ];
        assert!(is_leftover(&app, true, dir));
        assert!(!is_leftover(&app, false, dir), "another binary");
        let hook: [&[u8]; 2] = [
            b"/bin/sh",
            b"/tmp/rollcage-demo-x/agents/i1/r/scripts/start.sh",
        ];
        assert!(is_leftover(&hook, false, dir));
        let tail: [&[u8]; 3] = [b"tail", b"-f", b"/tmp/rollcage-demo-x/lb.log"];
        assert!(!is_leftover(&tail, false, dir));
        let elsewhere: [&[u8]; 2] = [b"/bin/rollcage", b"agent"];
        assert!(!is_leftover(&elsewhere, true, dir));
    }

    #[test]
    fn the_operators_rollcage_settings_are_not_inherited() {
        let keys = [
            "PATH",
            "ROLLCAGE_COORDINATOR",
            "ROLLCAGE_ENROLL_TOKEN",
            "MY_ROLLCAGE_X",
        ]
        .map(std::ffi::OsString::from);
        assert_eq!(
            rollcage_vars(keys.into_iter()),
            ["ROLLCAGE_COORDINATOR", "ROLLCAGE_ENROLL_TOKEN"].map(std::ffi::OsString::from)
        );
    }

    #[test]
    fn tails_keep_the_last_lines() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\n\u{1b}[32m INFO\u{1b}[0m c\n")?;
        assert_eq!(log_tail(&p, 2), "  | b\n  |  INFO c\n");
        assert!(log_tail(&dir.path().join("none"), 2).contains("cannot read"));
        Ok(())
    }

    #[test]
    fn shutdown_stops_processes_and_their_strays_and_removes_the_dir() -> anyhow::Result<()> {
        let sup = Supervisor::new(false)?;
        let dir = sup.dir().to_owned();
        // A supervised process, and a stray started in the background in another process group that only
        // mentions the temp dir on its command line (as the demo apps do).
        let script = dir.join("stray.sh");
        std::fs::write(&script, "#!/bin/sh\nwhile :; do sleep 0.1; done\n")?;
        let log = dir.join("sh.log");
        let stray = format!(
            "setsid /bin/sh {} >/dev/null 2>&1 & sleep 300",
            script.display()
        );
        sup.spawn(
            "shell",
            Path::new("/bin/sh"),
            &[OsStr::new("-c"), OsStr::new(&stray)],
            &log,
        )?;
        let begin = Instant::now();
        while processes_mentioning(&dir).is_empty() && begin.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!processes_mentioning(&dir).is_empty(), "the stray runs");
        sup.check_alive()?;
        assert_eq!(sup.shutdown(), None);
        assert!(processes_mentioning(&dir).is_empty());
        assert!(!dir.exists());
        // Twice is harmless.
        assert_eq!(sup.shutdown(), None);
        Ok(())
    }

    #[test]
    fn a_panic_still_stops_everything_and_removes_the_dir() -> anyhow::Result<()> {
        let seen = std::sync::Mutex::new(None);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let sup = Supervisor::new(false)?;
            let script = sup.dir().join("app.sh");
            std::fs::write(&script, "while :; do sleep 0.1; done\n")?;
            sup.spawn(
                "app",
                Path::new("/bin/sh"),
                &[script.as_os_str()],
                &sup.dir().join("app.log"),
            )?;
            if let Ok(mut s) = seen.lock() {
                *s = Some(sup.dir().to_owned());
            }
            panic!("a bug in the demo");
            #[allow(unreachable_code, reason = "the closure's type")]
            Ok::<(), anyhow::Error>(())
        }));
        assert!(result.is_err(), "it panicked");
        let dir = seen
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .context("the temp dir")?;
        assert!(!dir.exists(), "{} removed", dir.display());
        assert!(processes_mentioning(&dir).is_empty());
        Ok(())
    }

    #[test]
    fn a_dead_process_is_reported_with_its_log() -> anyhow::Result<()> {
        let sup = Supervisor::new(false)?;
        let log = sup.dir().join("x.log");
        sup.spawn(
            "quitter",
            Path::new("/bin/sh"),
            &[OsStr::new("-c"), OsStr::new("echo going away; exit 3")],
            &log,
        )?;
        let begin = Instant::now();
        let err = loop {
            if let Err(e) = sup.check_alive() {
                break e;
            }
            assert!(begin.elapsed() < Duration::from_secs(10), "never exited");
            std::thread::sleep(Duration::from_millis(20));
        };
        let msg = err.to_string();
        assert!(msg.contains("quitter exited"), "{msg}");
        assert!(msg.contains("going away"), "{msg}");
        Ok(())
    }
}
