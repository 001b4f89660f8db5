//! A private PostgreSQL server for one test.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::cluster;
use crate::install::Install;
use crate::{Error, Result};

/// A PostgreSQL server of its own: a cluster in a fresh temp dir, listening on 127.0.0.1 on a free port and on a
/// unix socket in that dir. Dropping it stops it (fast shutdown) and removes the dir.
///
/// For tests that need a whole server (a crash, a restart of the database under running coordinators); tests that
/// only need a clean database use [`crate::shared_database`], which costs a `CREATE DATABASE` instead of an
/// `initdb`.
#[derive(Debug)]
pub struct Server {
    postmaster: Child,
    port: u16,
    /// False once [`Server::kill`] ran.
    running: bool,
    // Declared last: removed after the server is stopped (in `Drop`).
    dir: tempfile::TempDir,
}

impl Server {
    /// `initdb` into a fresh temp dir and start the server; returns once it accepts connections. As root, the
    /// server runs as the `postgres` user, which owns the dir. Fails with [`Error::NotInstalled`] when PostgreSQL
    /// is missing, and with the end of the server's log when it does not come up.
    pub fn start() -> Result<Server> {
        let install = Install::find()?;
        let dir = tempfile::Builder::new()
            .prefix("rollcage-pg-")
            .tempdir()
            .map_err(Error::io("creating a temp dir in", std::env::temp_dir()))?;
        cluster::init(&install, dir.path())?;
        let (postmaster, port) = cluster::start(&install, dir.path())?;
        tracing::debug!(port, dir = %dir.path().display(), "test PostgreSQL server started");
        Ok(Server {
            postmaster,
            port,
            running: true,
            dir,
        })
    }

    /// The URL of its `postgres` database, as the superuser: `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` on it, as the superuser.
    pub fn url_for(&self, db: &str) -> String {
        cluster::url(self.port, db)
    }

    /// Its TCP port on 127.0.0.1 (also the number in its socket's name, `.s.PGSQL.PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its unix socket (`host=` of a libpq connection string).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its server log (stdout and stderr of `postgres`).
    pub fn log_path(&self) -> PathBuf {
        cluster::log_path(self.dir.path())
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.postmaster.id()
    }

    /// Crash it: SIGKILL to the postmaster and all its backends at once, as a machine failure would. Returns once
    /// they are gone; from then on its URL refuses connections. The dir stays until drop.
    pub fn kill(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let pid = self.postmaster.id() as i32;
        self.running = false;
        if cluster::kill_group(pid, Some(&mut self.postmaster), self.dir.path()) {
            Ok(())
        } else {
            Err(Error::StopTimeout { pid, waited_s: 5 })
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.running
            && let Err(e) = cluster::stop(
                self.postmaster.id() as i32,
                Some(&mut self.postmaster),
                self.dir.path(),
            )
        {
            tracing::warn!(error = %e, "stopping a test PostgreSQL server");
        }
    }
}
