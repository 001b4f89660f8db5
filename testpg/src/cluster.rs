//! One PostgreSQL cluster in a directory and its postmaster: `initdb`, start, readiness, stop, crash.
//!
//! A cluster directory `DIR` holds `DIR/data` (the data directory), `DIR/server.log` (the server's stdout and
//! stderr) and the unix socket `DIR/.s.PGSQL.PORT`. The server listens on 127.0.0.1 only, on a free port, and
//! trusts every connection: it is a throwaway test server, reachable from this machine only, holding nothing worth
//! protecting. The same goes for its durability settings ([`SETTINGS`]).
//!
//! The postmaster runs in a process group of its own, so a crash (`kill_group`) takes its backends with it at
//! once, and a signal meant for the test process's group does not reach a shared server.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::install::Install;
use crate::{Error, Result, SUPERUSER};

/// How long a server may take to accept connections. Generous: `initdb`'s cluster starts in well under a second
/// alone, but CI runs it on 2 cores shared with parallel test processes and compiler jobs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fast shutdown may take before the server is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many free ports to try: between probing a port free and the server binding it, another process may take it.
const PORT_ATTEMPTS: usize = 5;

/// Server settings for tests (`postgres -c NAME=VALUE`). Nothing here is for production: a crash of the machine
/// loses the server's data, which a throwaway test server never needs back.
pub const SETTINGS: &[(&str, &str)] = &[
    // No flush to disk: commits cost microseconds instead of a disk sync.
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    // Several coordinators per test, each with a connection pool, and tests running in parallel on one server.
    ("max_connections", "200"),
    // Small: many test servers may run at once; test databases are tiny.
    ("shared_buffers", "16MB"),
];

/// The data directory of the cluster in `dir`.
pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// The server log of the cluster in `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("server.log")
}

/// The URL of database `db` on the server on 127.0.0.1:`port`, as the superuser.
pub fn url(port: u16, db: &str) -> String {
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{db}")
}

/// Create a cluster in `dir` (which must exist and be empty but for what the caller put there): owned by the
/// server's user, superuser [`SUPERUSER`], trust authentication, locale C, UTF-8.
pub(crate) fn init(install: &Install, dir: &Path) -> Result<()> {
    install.give(dir)?;
    let data = data_dir(dir);
    let out = install
        .command("initdb", dir)
        .arg("--pgdata")
        .arg(&data)
        .args([
            "--username",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        // Nothing of a test cluster must survive a machine crash.
        .args(["--no-sync", "--no-instructions"])
        .output()
        .map_err(Error::io("running", install.binary("initdb")))?;
    if !out.status.success() {
        return Err(Error::Initdb {
            data_dir: data,
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// Start the cluster in `dir` on a free port and wait until it accepts connections. Returns the postmaster and its
/// port. On failure nothing is left running.
pub(crate) fn start(install: &Install, dir: &Path) -> Result<(Child, u16)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let mut child = spawn(install, dir, port)?;
        match wait_ready(Some(&mut child), port, dir, READY_TIMEOUT) {
            Ok(()) => return Ok((child, port)),
            Err(Error::Exited { ref tail, .. })
                if attempt < PORT_ATTEMPTS && tail.contains("already in use") =>
            {
                tracing::debug!(
                    port,
                    "port taken before the test server bound it; trying another"
                );
            }
            Err(e) => {
                kill_group(child.id() as i32, Some(&mut child), dir);
                return Err(e);
            }
        }
    }
}

/// Run `postgres` on the cluster in `dir`, listening on 127.0.0.1:`port` and a socket in `dir`.
fn spawn(install: &Install, dir: &Path, port: u16) -> Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let log_file = log_path(dir);
    // Truncated: a retry on another port must not read the previous attempt's errors.
    let log = File::create(&log_file).map_err(Error::io("creating", &log_file))?;
    let log2 = log
        .try_clone()
        .map_err(Error::io("duplicating", &log_file))?;
    let mut cmd = install.command("postgres", dir);
    cmd.arg("-D")
        .arg(data_dir(dir))
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("port={port}"),
        ])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()));
    for (name, value) in SETTINGS {
        cmd.arg("-c").arg(format!("{name}={value}"));
    }
    // Its own process group (see the module doc); its output goes to the log, never to the test's pipes (cargo
    // nextest would wait for them to close and report a shared server as a leak).
    cmd.process_group(0).stdout(log).stderr(log2);
    cmd.spawn()
        .map_err(Error::io("starting", install.binary("postgres")))
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(Error::io("binding a probe socket on", "127.0.0.1:0"))
}

/// Wait until the server of the cluster in `dir` answers `SELECT 1` on `port`, or `timeout` passes, or (when we
/// started it) `child` exits.
pub(crate) fn wait_ready(
    mut child: Option<&mut Child>,
    port: u16,
    dir: &Path,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    let url = url(port, "postgres");
    loop {
        if let Some(child) = child.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(Error::Exited {
                status,
                log: log_path(dir),
                tail: log_tail(&log_path(dir)),
            });
        }
        let last = match with_client(&url, |c| c.simple_query("SELECT 1").map(drop)) {
            Ok(()) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(Error::NotReady {
                port,
                waited_s: timeout.as_secs(),
                last,
                log: log_path(dir),
                tail: log_tail(&log_path(dir)),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connect to `url` and run `f` on a thread of its own: the blocking `postgres` client runs a tokio runtime
/// inside, which panics when started from a thread that is already in one (an async test).
pub(crate) fn with_client<T: Send>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
) -> Result<T, postgres::Error> {
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let mut config: postgres::Config = url.parse()?;
            let mut client = config
                .connect_timeout(CONNECT_TIMEOUT)
                .connect(postgres::NoTls)?;
            f(&mut client)
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Stop postmaster `pid` (of the cluster in `dir`) with a fast shutdown (SIGINT: sessions are ended, the
/// cluster is shut down cleanly), and kill its process group if it does not stop in [`STOP_TIMEOUT`]. `child`:
/// the postmaster's handle when we started it (it is reaped through it).
pub(crate) fn stop(pid: i32, mut child: Option<&mut Child>, dir: &Path) -> Result<()> {
    let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    if wait_gone(pid, child.as_deref_mut(), STOP_TIMEOUT) {
        return Ok(());
    }
    tracing::warn!(
        pid,
        "test server did not stop within {} s; killing it",
        STOP_TIMEOUT.as_secs()
    );
    if kill_group(pid, child, dir) {
        Ok(())
    } else {
        Err(Error::StopTimeout { pid, waited_s: 5 })
    }
}

/// Crash postmaster `pid` of the cluster in `dir`: SIGKILL to its process group (postmaster and backends at
/// once), wait until it is gone, and remove the shared-memory segment a crashed cluster leaves behind. True if it
/// is gone.
pub(crate) fn kill_group(pid: i32, child: Option<&mut Child>, dir: &Path) -> bool {
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let gone = wait_gone(pid, child, Duration::from_secs(5));
    remove_shared_memory(dir);
    gone
}

/// Wait until process `pid` is gone (reaping it when it is our child), at most `timeout`. True if it is.
fn wait_gone(pid: i32, mut child: Option<&mut Child>, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        let gone = match child.as_deref_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => {
                // Reap it if it is our child (a shared server started by this process); otherwise ECHILD.
                let _ = nix::sys::wait::waitpid(
                    Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
                !alive(pid)
            }
        };
        if gone {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` exists and is not a zombie (one whose parent does not reap it would look alive forever).
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|dead| !dead)
}

/// Whether process `pid` is the postmaster of the cluster in `dir` (a postmaster's working directory is its data
/// directory): a recorded pid may have been reused by another process since.
pub(crate) fn is_postmaster_of(pid: i32, dir: &Path) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
    let data = std::fs::canonicalize(data_dir(dir));
    matches!((cwd, data), (Ok(a), Ok(b)) if a == b)
}

/// What a cluster's `postmaster.pid` records (PostgreSQL's own record of a running server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    /// The postmaster's pid.
    pub pid: i32,
    /// Its port.
    pub port: u16,
    /// Its System V shared-memory segment's key and id, when it has one.
    pub shm: Option<(i64, i32)>,
}

/// Read the `postmaster.pid` of the cluster in `dir`; `None` when there is none (the server is not running or
/// exited cleanly) or it is incomplete (a server still writing it).
pub fn read_pid_file(dir: &Path) -> Option<PidFile> {
    parse_pid_file(&std::fs::read_to_string(data_dir(dir).join("postmaster.pid")).ok()?)
}

/// Parse a `postmaster.pid`: line 1 the pid, line 4 the port, line 7 the shared-memory key and id.
pub fn parse_pid_file(text: &str) -> Option<PidFile> {
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    let port = lines.get(3)?.trim().parse().ok()?;
    let shm = lines.get(6).and_then(|l| {
        let mut fields = l.split_whitespace();
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    });
    Some(PidFile { pid, port, shm })
}

/// Whether `/proc/sysvipc/shm` (header line, then `key shmid …` per segment) lists segment `id` with `key`.
pub fn lists_segment(sysvipc_shm: &str, key: i64, id: i32) -> bool {
    sysvipc_shm.lines().skip(1).any(|l| {
        let mut fields = l.split_whitespace();
        fields.next().and_then(|k| k.parse().ok()) == Some(key)
            && fields.next().and_then(|i| i.parse().ok()) == Some(id)
    })
}

/// Remove the System V shared-memory segment of a crashed cluster in `dir` (a cleanly stopped one removes its own;
/// a crashed one leaves it for the next start, which a throwaway cluster never has). Only when the segment with
/// the recorded id still has the recorded key: ids are reused. Best effort.
pub(crate) fn remove_shared_memory(dir: &Path) {
    let Some(PidFile {
        shm: Some((key, id)),
        ..
    }) = read_pid_file(dir)
    else {
        return;
    };
    if !std::fs::read_to_string("/proc/sysvipc/shm").is_ok_and(|t| lists_segment(&t, key, id)) {
        return;
    }
    let removed = std::process::Command::new("ipcrm")
        .args(["-m", &id.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !removed.is_ok_and(|s| s.success()) {
        tracing::debug!(
            id,
            "could not remove a crashed test server's shared memory segment"
        );
    }
}

/// The last lines of a server log, for error messages.
pub fn log_tail(log: &Path) -> String {
    const LINES: usize = 20;
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_gives_pid_port_and_shared_memory_id() {
        let text = "4242\n/tmp/x/data\n1700000000\n54321\n/tmp/x\n127.0.0.1\n  5432001         7\nready   \n";
        assert_eq!(
            parse_pid_file(text),
            Some(PidFile {
                pid: 4242,
                port: 54321,
                shm: Some((5432001, 7))
            })
        );
    }

    #[test]
    fn incomplete_pid_file_is_none() {
        assert_eq!(parse_pid_file("4242\n/tmp/x/data\n"), None);
        assert_eq!(parse_pid_file(""), None);
        // A server without a System V segment yet.
        assert_eq!(
            parse_pid_file("1\n/d\n0\n5432\n"),
            Some(PidFile {
                pid: 1,
                port: 5432,
                shm: None
            })
        );
    }

    #[test]
    fn a_segment_counts_only_with_its_key_and_id() {
        let table = "       key      shmid perms size  cpid  lpid nattch\n  10772509         28   600   56  4100  4120      0\n";
        assert!(lists_segment(table, 10772509, 28));
        assert!(!lists_segment(table, 10772509, 29), "another id");
        assert!(!lists_segment(table, 1, 28), "the id reused by another key");
    }

    #[test]
    fn log_tail_is_the_last_20_lines_or_says_why_not() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("server.log");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text)?;
        let tail = log_tail(&log);
        assert!(
            tail.starts_with("line 11\n") && tail.ends_with("line 30"),
            "{tail}"
        );
        assert!(log_tail(&dir.path().join("missing")).contains("cannot read"));
        Ok(())
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
