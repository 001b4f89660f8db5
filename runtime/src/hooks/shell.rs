//! Shell hooks: run a script from the revision as a child process and report one [`HookOutcome`].
//!
//! What a script gets (CodeDeploy-compatible where that is safe, stricter where CodeDeploy leaks):
//! - cwd = the revision directory, stdin = `/dev/null`, its own process group;
//! - an environment built from nothing: [`BASE_PATH`], `HOME` (of the user it runs as), `LANG=C.UTF-8`, the
//!   deployment variables of [`HookEnv::vars`](super::HookEnv::vars), and a per-run marker ([`reap::MARKER_VAR`]).
//!   The agent's own environment is never inherited;
//! - `runas`: the user is resolved before spawning, the child switches with `setgroups`/`setgid`/`setuid` — never
//!   `su`/`sudo`, never a shell string; for the hook's duration that user may enter its own deployment dir and no
//!   other ([`access`]);
//! - the core-dump limit the agent was started with, not the agent's own zero ([`crate::hardening`]).
//!
//! How it ends: exit 0 → succeeded, exit n → failed(n), a signal → killed by signal; past `timeout` the whole
//! process group (and every process carrying the marker) gets SIGTERM, then SIGKILL after [`TERM_GRACE`]. A script
//! that exits while a background child still holds stdout/stderr finishes [`OUTPUT_GRACE`] later with a warning;
//! that child is left running (it is typically the daemon ApplicationStart started).
//!
//! Output is read line by line from both streams concurrently, each line written to `scripts.log` with a
//! timestamp and its stream tag, and kept in a bounded tail for the outcome.

pub mod access;
pub mod output;
pub mod reap;
pub mod script;
pub mod user;

use super::HookRun;
use super::log::{DEFAULT_TAIL_BYTES, OutputTail, Stream};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use output::Line;
use reap::{HookProcesses, MARKER_VAR};
use rollcage_proto::{HookOutcome, HookStatus};
use script::{FALLBACK_SHELL, Launch, Script};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;
use user::{Identity, RunAsError};

/// `PATH` of every hook: the usual system directories, nothing from the agent's environment.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Time between SIGTERM and SIGKILL on timeout. Long enough for a service to flush and remove its pid file (what
/// systemd's stop logic and CodeDeploy agent v2 give), short enough not to stretch an already failed deployment.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// How long output is still read after the script exited. Output written just before exit is normally drained in
/// milliseconds; a pipe still open after 2 s is held by a background process that may never close it, and
/// CodeDeploy agent v1 hung for the whole deployment timeout on exactly that (issue #118).
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Bytes of output one hook may write to `scripts.log`; beyond it lines only reach the tail. Protects the agent's
/// disk from a hook stuck printing in a loop, while no real hook comes near it.
pub const MAX_LOGGED_BYTES: u64 = 64 * 1024 * 1024;

/// How often the processes of a terminating hook are counted (a `/proc` scan each time).
const KILL_POLL: Duration = Duration::from_millis(100);

/// How long to wait for processes to vanish after SIGKILL before reporting them as survivors.
const KILL_VERIFY: Duration = Duration::from_secs(1);

/// Lines buffered between the pipe readers and the run loop; the readers block (and so do the writers, through
/// the pipe) when the log cannot keep up, which bounds memory.
const LINE_QUEUE: usize = 256;

/// `execve` fails with ETXTBSY while any process holds the script open for writing; in a multi-threaded agent a
/// fork elsewhere can briefly inherit such a descriptor. A few short retries absorb that race.
const SPAWN_ATTEMPTS: u32 = 5;

/// Tunables of the shell runner; [`Default`] is what the agent uses. Tests shorten the graces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOptions {
    /// SIGTERM → SIGKILL grace on timeout.
    pub term_grace: Duration,
    /// How long output is read after the script exited.
    pub output_grace: Duration,
    /// Byte budget of the outcome's log tail.
    pub tail_bytes: usize,
    /// Bytes of output written to `scripts.log` per hook.
    pub max_logged_bytes: u64,
}

impl Default for ShellOptions {
    fn default() -> Self {
        Self {
            term_grace: TERM_GRACE,
            output_grace: OUTPUT_GRACE,
            tail_bytes: DEFAULT_TAIL_BYTES,
            max_logged_bytes: MAX_LOGGED_BYTES,
        }
    }
}

/// Run the script of `run.hook` and report its outcome.
pub async fn run(run: HookRun<'_>) -> HookOutcome {
    run_with(run, &ShellOptions::default()).await
}

/// [`run`] with explicit tunables.
pub async fn run_with(run: HookRun<'_>, options: &ShellOptions) -> HookOutcome {
    let started = Instant::now();
    let span = tracing::info_span!("shell_hook", event = %run.event, location = %run.hook.location);
    let mut sink = Sink::new(run, options);
    let status = execute(run, options, &mut sink).instrument(span).await;
    sink.finish(status, started.elapsed())
}

/// Resolve, spawn and supervise; every early return is the hook's status.
async fn execute(run: HookRun<'_>, options: &ShellOptions, sink: &mut Sink<'_>) -> HookStatus {
    let identity = match user::resolve(run.hook.runas.as_deref()) {
        Ok(identity) => identity,
        Err(RunAsError::UnknownUser { user }) => return HookStatus::UnknownUser { user },
        Err(e) => {
            return HookStatus::Unknown {
                reason: e.to_string(),
            };
        }
    };
    let script = match script::resolve(run.script_root(), run.revision_dir, &run.hook.location) {
        Ok(script) => script,
        Err(status) => return status,
    };
    let via = match script.launch {
        Launch::Direct => String::new(),
        Launch::Shell => format!(" via {FALLBACK_SHELL} (no #! line)"),
    };
    sink.agent(&format!(
        "start: {}{via} as {} in {} (timeout {} s)",
        script.path.display(),
        identity.name,
        script.revision_dir.display(),
        run.hook.timeout_secs
    ));
    // Held until the hook's processes are supervised to their end.
    let _access = match (&identity.switch, run.deploy_dir) {
        (Some(creds), Some(dir)) => match access::grant(dir, creds.uid) {
            Ok(grant) => Some(grant),
            Err(reason) => return HookStatus::Unknown { reason },
        },
        _ => None,
    };
    let marker = new_marker();
    let mut command = build_command(&script, &identity, run, &marker);
    let child = match spawn(&mut command).await {
        Ok(child) => child,
        Err(e) => return spawn_failure(&script, &identity, &e),
    };
    supervise(child, &marker, run.hook.timeout_secs, options, sink).await
}

/// A value unique to this run of this agent, for [`MARKER_VAR`].
fn new_marker() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn build_command(script: &Script, identity: &Identity, run: HookRun<'_>, marker: &str) -> Command {
    let mut command = match script.launch {
        Launch::Direct => Command::new(&script.path),
        Launch::Shell => {
            let mut c = Command::new(FALLBACK_SHELL);
            c.arg(&script.path);
            c
        }
    };
    command
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("HOME", &identity.home)
        .env("LANG", "C.UTF-8")
        .envs(run.env.vars(run.event))
        // Last, so no extra variable can overwrite it and hide a process from the timeout kill.
        .env(MARKER_VAR, marker)
        .current_dir(&script.revision_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Daemons started by a hook must outlive it; the runner kills only on timeout, explicitly.
        .kill_on_drop(false);
    let creds = identity.switch.clone();
    let core = crate::hardening::hook_core_limit();
    if creds.is_some() || core.is_some() {
        // SAFETY: the closure runs in the forked child before exec and only makes the raw system calls setrlimit,
        // setgroups, setgid and setuid with values computed before the fork (no allocation, no locks, no NSS
        // lookups), which is async-signal-safe. Order matters: the core limit (raising the hard limit needs root),
        // groups and gid while still root, uid last.
        unsafe {
            command.pre_exec(move || {
                if let Some((soft, hard)) = core {
                    // Best effort: an agent that is not root cannot raise its own zeroed hard limit back.
                    let _ = nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_CORE,
                        soft,
                        hard,
                    );
                }
                if let Some(creds) = &creds {
                    nix::unistd::setgroups(&creds.groups)?;
                    nix::unistd::setgid(creds.gid)?;
                    nix::unistd::setuid(creds.uid)?;
                }
                Ok(())
            });
        }
    }
    command
}

async fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut attempt = 1;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < SPAWN_ATTEMPTS => {
                tracing::debug!(attempt, "script busy (ETXTBSY), retrying spawn");
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Map an error of `fork`/`exec` to the outcome, naming what could not be executed.
fn spawn_failure(script: &Script, identity: &Identity, e: &io::Error) -> HookStatus {
    let path = script.path.display();
    let not_exec = |reason: String| HookStatus::NotExecutable { reason };
    match e.raw_os_error() {
        Some(libc::ENOENT) => match (&script.launch, &script.interpreter) {
            (Launch::Direct, Some(interp)) => not_exec(format!(
                "{path}: interpreter `{interp}` of its #! line not found"
            )),
            (Launch::Shell, _) => not_exec(format!("{path}: {FALLBACK_SHELL} not found")),
            _ => not_exec(format!("{path}: {e}")),
        },
        Some(libc::ENOEXEC) => not_exec(format!(
            "{path}: not in a format this host can execute ({e})"
        )),
        Some(libc::EACCES) => not_exec(format!(
            "{path}: permission denied for user `{}` (noexec mount, a directory it cannot enter, or an \
             interpreter it cannot run)",
            identity.name
        )),
        Some(
            libc::ETXTBSY
            | libc::ENOTDIR
            | libc::ELOOP
            | libc::EISDIR
            | libc::ELIBBAD
            | libc::E2BIG,
        ) => not_exec(format!("{path}: {e}")),
        Some(libc::EPERM) if identity.switch.is_some() => HookStatus::Unknown {
            reason: format!(
                "cannot switch to user `{}` before running {path}: {e}",
                identity.name
            ),
        },
        _ => HookStatus::Unknown {
            reason: format!("cannot start {path}: {e}"),
        },
    }
}

/// Kills a hook's processes when dropped while armed: the run was cancelled before the script exited.
struct KillOnCancel(Option<HookProcesses>);

impl KillOnCancel {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnCancel {
    fn drop(&mut self) {
        if let Some(procs) = self.0.take() {
            tracing::warn!("hook run cancelled before the script exited: killing its processes");
            procs.signal(Signal::SIGKILL);
        }
    }
}

/// Where the timeout kill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// No timeout yet.
    Idle,
    /// SIGTERM sent; SIGKILL at `at` unless every process is gone.
    Terminating { at: Instant },
    /// SIGKILL sent; give up waiting for stragglers at `at`.
    Killed { at: Instant },
    /// Every process of the hook is gone (or reported as a survivor).
    Done,
}

impl Kill {
    fn in_progress(self) -> bool {
        matches!(self, Self::Terminating { .. } | Self::Killed { .. })
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Self::Terminating { at } | Self::Killed { at } => Some(at),
            Self::Idle | Self::Done => None,
        }
    }
}

/// Wait for the script, its output and (on timeout) the end of every process of the hook.
async fn supervise(
    mut child: Child,
    marker: &str,
    timeout_secs: u64,
    options: &ShellOptions,
    sink: &mut Sink<'_>,
) -> HookStatus {
    let (tx, mut rx) = mpsc::channel::<Line>(LINE_QUEUE);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(output::pump(stdout, Stream::Stdout, tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(output::pump(stderr, Stream::Stderr, tx.clone()));
    }
    drop(tx);
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let procs = pgid.map(|pgid| HookProcesses::new(pgid, marker));
    // If the caller drops this future before the script exits (a forced stop cancels the step), the hook must
    // not keep running unsupervised: the guard kills its processes. Disarmed once the script exited on its own, so
    // daemons it started survive as they do after any normal exit.
    let mut cancel_guard = KillOnCancel(procs.clone());

    let started = Instant::now();
    // "Never" for timers that are not armed; ~136 years fits any clock, unlike Duration::MAX which overflows.
    let far = started + Duration::from_secs(u64::from(u32::MAX));
    let timeout_at = started
        .checked_add(Duration::from_secs(timeout_secs))
        .map_or(far, |t| t.min(far));
    let mut exit: Option<io::Result<ExitStatus>> = None;
    let mut outputs_open = true;
    let mut output_deadline = far;
    let mut kill = Kill::Idle;
    let mut poll = tokio::time::interval(KILL_POLL);

    while exit.is_none() || outputs_open || kill.in_progress() {
        tokio::select! {
            // Timers and the exit first, output last: a hook printing without pause always has a line ready, and
            // must still be timed out (and a daemon flooding a pipe still cut off after the grace).
            biased;
            status = child.wait(), if exit.is_none() => {
                cancel_guard.disarm();
                exit = Some(status);
                output_deadline = Instant::now() + options.output_grace;
            }
            () = sleep_until(timeout_at), if exit.is_none() && kill == Kill::Idle => {
                sink.agent(&format!("timeout after {timeout_secs} s: SIGTERM to the hook's processes"));
                if let Some(procs) = &procs {
                    procs.signal(Signal::SIGTERM);
                }
                kill = Kill::Terminating { at: Instant::now() + options.term_grace };
            }
            _ = poll.tick(), if kill.in_progress() => {
                let gone = procs.as_ref().is_none_or(|p| p.survivors().is_empty());
                if exit.is_some() && gone {
                    kill = Kill::Done;
                }
            }
            () = sleep_until(kill.deadline().unwrap_or(far)), if kill.in_progress() => {
                kill = escalate(kill, procs.as_ref(), options.term_grace, sink);
            }
            () = sleep_until(output_deadline), if exit.is_some() && outputs_open && !kill.in_progress() => {
                outputs_open = false;
                sink.warn(format!(
                    "a background process kept stdout/stderr open after the script exited; stopped reading \
                     {} ms later and left it running (redirect its output, e.g. `daemon >/dev/null 2>&1 &`)",
                    options.output_grace.as_millis()
                ));
            }
            line = rx.recv(), if outputs_open => match line {
                Some(line) => sink.output(&line),
                None => outputs_open = false,
            },
        }
    }
    // Readers still running go on draining (and discarding) until the last writer closes the pipe.
    drop(rx);

    if kill != Kill::Idle {
        return HookStatus::TimedOut { timeout_secs };
    }
    match exit {
        Some(Ok(status)) => status_of(status),
        Some(Err(e)) => HookStatus::Unknown {
            reason: format!("waiting for the script failed: {e}"),
        },
        None => HookStatus::Unknown {
            reason: "the script's exit was never observed".to_owned(),
        },
    }
}

/// The grace after SIGTERM (or SIGKILL) ran out: send SIGKILL, or give up on processes that survive it.
fn escalate(
    kill: Kill,
    procs: Option<&HookProcesses>,
    term_grace: Duration,
    sink: &mut Sink<'_>,
) -> Kill {
    match kill {
        Kill::Terminating { .. } => {
            sink.agent(&format!(
                "processes still running {} ms after SIGTERM: SIGKILL",
                term_grace.as_millis()
            ));
            if let Some(procs) = procs {
                procs.signal(Signal::SIGKILL);
            }
            Kill::Killed {
                at: Instant::now() + KILL_VERIFY,
            }
        }
        Kill::Killed { .. } => {
            let left = procs.map(HookProcesses::survivors).unwrap_or_default();
            if !left.is_empty() {
                sink.warn(format!(
                    "processes of the timed-out hook survived SIGKILL: {left:?}"
                ));
            }
            Kill::Done
        }
        other => other,
    }
}

/// The outcome of a script that exited on its own.
fn status_of(status: ExitStatus) -> HookStatus {
    match (status.code(), status.signal()) {
        (Some(0), _) => HookStatus::Succeeded,
        (Some(exit_code), _) => HookStatus::Failed { exit_code },
        (None, Some(signal)) => HookStatus::KilledBySignal { signal },
        (None, None) => HookStatus::Unknown {
            reason: format!("unrecognised exit status {status}"),
        },
    }
}

/// Where a hook's lines and notes go: `scripts.log`, the tail and the warnings of the outcome.
struct Sink<'a> {
    run: HookRun<'a>,
    tail: OutputTail,
    warnings: Vec<String>,
    logged: u64,
    max_logged: u64,
    log_error: bool,
}

impl<'a> Sink<'a> {
    fn new(run: HookRun<'a>, options: &ShellOptions) -> Self {
        Self {
            run,
            tail: OutputTail::new(options.tail_bytes),
            warnings: Vec::new(),
            logged: 0,
            max_logged: options.max_logged_bytes,
            log_error: false,
        }
    }

    fn output(&mut self, line: &Line) {
        self.tail.push(line.stream, &line.text);
        if self.logged >= self.max_logged {
            return;
        }
        self.logged += line.text.len() as u64 + 1;
        self.log(line.stream, &line.text);
        if self.logged >= self.max_logged {
            self.warn(format!(
                "output exceeded {} bytes; further lines are kept only in the tail, not in scripts.log",
                self.max_logged
            ));
        }
    }

    fn agent(&mut self, text: &str) {
        tracing::debug!("{text}");
        self.log(Stream::Agent, text.as_bytes());
    }

    fn warn(&mut self, text: String) {
        tracing::warn!(event = %self.run.event, location = %self.run.hook.location, "{text}");
        self.log(Stream::Agent, format!("warning: {text}").as_bytes());
        self.warnings.push(text);
    }

    fn log(&mut self, stream: Stream, text: &[u8]) {
        if let Err(e) = self
            .run
            .log
            .line(self.run.event, &self.run.hook.location, stream, text)
            && !self.log_error
        {
            // Reported once: a full disk would otherwise add one warning per line.
            self.log_error = true;
            let text = format!("cannot write scripts.log: {e}");
            tracing::warn!("{text}");
            self.warnings.push(text);
        }
    }

    fn finish(mut self, status: HookStatus, elapsed: Duration) -> HookOutcome {
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.agent(&format!(
            "end: {status} (code {}) after {duration_ms} ms",
            status.code()
        ));
        tracing::info!(event = %self.run.event, location = %self.run.hook.location, %status, duration_ms,
            "shell hook finished");
        HookOutcome {
            location: self.run.hook.location.clone(),
            status,
            duration_ms,
            log_tail: self.tail.render(),
            warnings: self.warnings,
            capabilities: Vec::new(),
        }
    }
}
