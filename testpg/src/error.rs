//! The harness's one error type.

use std::path::PathBuf;

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Starting, using or stopping a test server failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL binaries were found.
    #[error(
        "PostgreSQL is not installed: no `initdb` and `postgres` in {searched}; run scripts/setup.sh (it installs \
         Debian's `postgresql`)"
    )]
    NotInstalled {
        /// The places looked in.
        searched: String,
    },
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error(
        "running as root, the test server must run as the `postgres` user, which does not exist; run \
         scripts/setup.sh (Debian's `postgresql` creates it)"
    )]
    NoPostgresUser,
    /// A file-system or process operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file, directory or program.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A directory the harness keeps its state in belongs to someone else.
    #[error(
        "{path} is owned by uid {owner}, expected uid {expected}; remove it or set ROLLCAGE_TESTPG_DIR"
    )]
    ForeignDir {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Who should own it.
        expected: u32,
    },
    /// `initdb` exited unsuccessfully.
    #[error("`initdb` into {data_dir} failed ({status}):\n{output}")]
    Initdb {
        /// The data directory.
        data_dir: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },
    /// The server exited while starting.
    #[error("PostgreSQL exited while starting ({status}); the end of {log}:\n{tail}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// The server did not accept connections in time.
    #[error(
        "PostgreSQL on 127.0.0.1:{port} did not accept connections within {waited_s} s (last error: {last}); the \
         end of {log}:\n{tail}"
    )]
    NotReady {
        /// Its port.
        port: u16,
        /// How long we waited.
        waited_s: u64,
        /// The last connection error.
        last: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// The server did not stop in time after fast shutdown and SIGKILL.
    #[error("PostgreSQL (pid {pid}) did not stop within {waited_s} s of SIGKILL")]
    StopTimeout {
        /// The postmaster's pid.
        pid: i32,
        /// How long we waited.
        waited_s: u64,
    },
    /// A statement or connection failed.
    #[error("{what} on {url}: {source}")]
    Sql {
        /// What was being done.
        what: String,
        /// The server or database.
        url: String,
        /// The error.
        #[source]
        source: postgres::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
