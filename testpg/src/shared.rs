//! One PostgreSQL server shared by every test process of the machine, and a fresh database on it per caller.
//!
//! cargo nextest runs each test in its own process, so "shared" cannot mean a static: the server is recorded on
//! disk. Its home is `$ROLLCAGE_TESTPG_DIR`, by default `$TMPDIR/rollcage-testpg-UID` (one per user: root's and a
//! developer's servers do not mix):
//! - `lock`: held (`flock`, exclusive) while a process checks, starts or stops the server, so exactly one starts it;
//! - `server/`: its cluster ([`crate::cluster`]); PostgreSQL's own `server/data/postmaster.pid` says which pid and
//!   port it runs on, and the pid's working directory proves the pid is still that server.
//!
//! The first caller starts it detached (own process group, output to its log), so it outlives that test process
//! and serves the next ones; a recorded server that is gone or no longer answers is replaced. Nothing stops it but
//! [`stop_shared`] (`rollcage-testpg stop`, which `scripts/test.sh` runs at the end).

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cluster::{self, with_client};
use crate::install::Install;
use crate::{Error, Result};

/// The environment variable that moves the shared server's home (see the module doc).
pub const DIR_ENV: &str = "ROLLCAGE_TESTPG_DIR";

/// How long a recorded, running server may take to answer before it is replaced: it may be busy starting up or
/// serving parallel tests on a loaded machine.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh database on the shared server (see the module doc), for one test.
pub fn shared_database() -> Result<Database> {
    Shared::from_env().database()
}

/// Stop the shared server (see the module doc) and remove its cluster, if one runs. True if one was stopped.
pub fn stop_shared() -> Result<bool> {
    Shared::from_env().stop()
}

/// The home of a shared server (see the module doc).
#[derive(Debug, Clone)]
pub struct Shared {
    dir: PathBuf,
}

impl Shared {
    /// The machine's shared server for this user: `$ROLLCAGE_TESTPG_DIR`, or `$TMPDIR/rollcage-testpg-UID`.
    pub fn from_env() -> Shared {
        let dir = std::env::var_os(DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("rollcage-testpg-{}", nix::unistd::geteuid()))
            });
        Shared { dir }
    }

    /// A shared server with its home in `dir` (the harness's own tests use private homes).
    pub fn at(dir: impl Into<PathBuf>) -> Shared {
        Shared { dir: dir.into() }
    }

    /// Its home.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn server_dir(&self) -> PathBuf {
        self.dir.join("server")
    }

    /// Make sure the server runs (start it if no recorded server answers) and return the URL of its `postgres`
    /// database.
    pub fn start(&self) -> Result<String> {
        Ok(cluster::url(self.port()?, "postgres"))
    }

    /// The port of the running server, started if needed.
    fn port(&self) -> Result<u16> {
        let install = Install::find()?;
        self.prepare_home()?;
        let _lock = self.lock()?;
        self.ensure_running(&install)
    }

    /// A fresh database on the server (started if needed), named `t_PID_COUNTER_RANDOM`; dropped with the
    /// returned [`Database`].
    pub fn database(&self) -> Result<Database> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let port = self.port()?;
        let admin_url = cluster::url(port, "postgres");
        let name = format!(
            "t_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        // The name is ours (letters, digits, underscores): quoting it is enough.
        with_client(&admin_url, |c| {
            c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
        })
        .map_err(|source| Error::Sql {
            what: format!("creating database {name}"),
            url: admin_url.clone(),
            source,
        })?;
        Ok(Database {
            url: cluster::url(port, &name),
            name,
            admin_url,
        })
    }

    /// Stop the server if one runs (fast shutdown, then SIGKILL) and remove its cluster. True if one was running.
    /// Databases still in use are cut off.
    pub fn stop(&self) -> Result<bool> {
        if !self.dir.exists() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        let server_dir = self.server_dir();
        let mut stopped = false;
        if let Some(pid_file) = cluster::read_pid_file(&server_dir)
            && cluster::alive(pid_file.pid)
            && cluster::is_postmaster_of(pid_file.pid, &server_dir)
        {
            cluster::stop(pid_file.pid, None, &server_dir)?;
            stopped = true;
        }
        remove_dir_if_any(&server_dir)?;
        Ok(stopped)
    }

    /// Create the home (0755: the `postgres` user must reach `server/` through it) and check it is ours: another
    /// user's could hold a server we would hand out as ours.
    fn prepare_home(&self) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(Error::io("creating", &self.dir))?;
        let owner = std::fs::metadata(&self.dir)
            .map_err(Error::io("reading", &self.dir))?
            .uid();
        let me = nix::unistd::geteuid().as_raw();
        if owner != me {
            return Err(Error::ForeignDir {
                path: self.dir.clone(),
                owner,
                expected: me,
            });
        }
        // Also when it was made before, by someone else's umask.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
            .map_err(Error::io("opening to the `postgres` user", &self.dir))
    }

    /// Take the home's lock (blocking); held until the returned file is dropped.
    fn lock(&self) -> Result<File> {
        let path = self.dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("opening", &path))?;
        file.lock().map_err(Error::io("locking", &path))?;
        Ok(file)
    }

    /// Under the lock: the port of the recorded server if it answers, else of a new one.
    fn ensure_running(&self, install: &Install) -> Result<u16> {
        let server_dir = self.server_dir();
        if let Some(pid_file) = cluster::read_pid_file(&server_dir)
            && cluster::alive(pid_file.pid)
            && cluster::is_postmaster_of(pid_file.pid, &server_dir)
        {
            match cluster::wait_ready(None, pid_file.port, &server_dir, ATTACH_TIMEOUT) {
                Ok(()) => return Ok(pid_file.port),
                Err(e) => {
                    tracing::warn!(error = %e, pid = pid_file.pid, "shared test server does not answer; replacing it");
                    cluster::kill_group(pid_file.pid, None, &server_dir);
                }
            }
        }
        // A server that crashed (or was killed above) left its shared memory behind.
        cluster::remove_shared_memory(&server_dir);
        remove_dir_if_any(&server_dir)?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&server_dir)
            .map_err(Error::io("creating", &server_dir))?;
        cluster::init(install, &server_dir)?;
        // Not waited for: it outlives this process (its own process group, its output in its log), and is reaped
        // by whoever inherits it.
        let (_postmaster, port) = cluster::start(install, &server_dir)?;
        tracing::debug!(port, dir = %server_dir.display(), "shared test PostgreSQL server started");
        Ok(port)
    }
}

fn remove_dir_if_any(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", dir)(e)),
        _ => Ok(()),
    }
}

/// A database of its own on the shared server; dropping it drops the database (`WITH (FORCE)`: connections
/// still open are ended). Best effort: a failure is logged, and [`stop_shared`] removes everything anyway.
#[derive(Debug)]
pub struct Database {
    name: String,
    url: String,
    admin_url: String,
}

impl Database {
    /// Its URL, as the superuser: `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the server's `postgres` database (to look at the server from outside this database).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = with_client(&self.admin_url, |c| c.batch_execute(&sql)) {
            tracing::warn!(database = %self.name, error = %e, "dropping a test database");
        }
    }
}
