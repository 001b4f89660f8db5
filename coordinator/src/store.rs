//! The coordinator's state in SQLite: the single source of truth.
//!
//! One database file (`DATA/rollcage.db`) in WAL mode; schema changes are numbered migrations recorded in
//! `PRAGMA user_version`. Every state change runs in one transaction ([`Store::write`]), so a coordinator killed at
//! any point restarts with a consistent state and carries on every running deployment. Each resource has its own
//! file: [`apps`] (applications and groups), [`revisions`], [`instances`], [`deployments`].

pub mod apps;
pub mod deployments;
pub mod instances;
pub mod revisions;

use rusqlite::{Connection, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded (the database was edited by hand, or by a newer coordinator).
    #[error("corrupt stored value in {what}: {detail}")]
    Corrupt {
        /// Table and column.
        what: &'static str,
        /// What was found.
        detail: String,
    },
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Schema migrations, applied in order; index + 1 is the `user_version` after it. Append only.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE applications (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
CREATE TABLE groups (
    id                TEXT PRIMARY KEY,
    application       TEXT NOT NULL REFERENCES applications(name),
    name              TEXT NOT NULL,
    style             TEXT NOT NULL,
    concurrency       TEXT NOT NULL,
    failure_tolerance INTEGER NOT NULL,
    auto_rollback     INTEGER NOT NULL,
    instances         TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    UNIQUE (application, name)
);
CREATE TABLE revisions (
    application TEXT NOT NULL REFERENCES applications(name),
    id          TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    url         TEXT,
    size        INTEGER NOT NULL,
    downloads   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (application, id)
);
CREATE TABLE instances (
    name        TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL
);
CREATE TABLE deployments (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    application       TEXT NOT NULL,
    group_name        TEXT NOT NULL,
    group_id          TEXT NOT NULL,
    revision          TEXT NOT NULL,
    style             TEXT NOT NULL,
    concurrency       TEXT NOT NULL,
    failure_tolerance INTEGER NOT NULL,
    auto_rollback     INTEGER NOT NULL,
    rollback_of       TEXT,
    automatic         INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL,
    force_stop        INTEGER NOT NULL DEFAULT 0,
    message           TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    rollback_deployment TEXT
);
CREATE INDEX deployments_active ON deployments (status);
CREATE TABLE deployment_instances (
    deployment_id TEXT NOT NULL,
    instance      TEXT NOT NULL,
    ord           INTEGER NOT NULL,
    status        TEXT NOT NULL,
    next_step     INTEGER NOT NULL DEFAULT 0,
    running_step  INTEGER,
    PRIMARY KEY (deployment_id, instance)
);
CREATE INDEX deployment_instances_status ON deployment_instances (deployment_id, status, running_step, ord);
CREATE TABLE steps (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL,
    instance      TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    event         TEXT NOT NULL,
    state         TEXT NOT NULL,
    started_at    INTEGER,
    ended_at      INTEGER,
    message       TEXT NOT NULL DEFAULT '',
    log_tail      TEXT NOT NULL DEFAULT '',
    UNIQUE (deployment_id, instance, idx)
);
CREATE INDEX steps_running ON steps (instance, state);
"#];

/// The database, behind one lock (SQLite serialises writers anyway; reads are short).
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Open (or create) the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        Self::setup(&mut conn).map_err(err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(err)?;
        Self::setup(&mut conn).map_err(err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    fn setup(conn: &mut Connection) -> rusqlite::Result<()> {
        // WAL: readers never block the writer. synchronous=NORMAL in WAL mode is still crash-safe (a power loss may
        // drop the last commits, a process kill loses nothing), and avoids an fsync per step report.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A 16 MiB page cache holds a 2,000-instance deployment's rows; checkpointing every ~16 MiB of WAL instead
        // of every 4 MiB makes a burst of step reports cheaper without letting the WAL grow unbounded.
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.pragma_update(None, "wal_autocheckpoint", 4_000)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back on drop).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` in one transaction; commit when it returns `Ok`.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Run `f` with the connection (reads).
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let conn = self.lock();
        f(&conn)
    }

    /// Wrap a rusqlite error with the database path.
    pub fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// Wrap a rusqlite error raised inside a transaction (the path is added by the caller's context).
pub(crate) fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: PathBuf::from("rollcage.db"),
        source,
    }
}

/// Decode a stored enum/string through `FromStr`.
pub(crate) fn decode<T: std::str::FromStr>(what: &'static str, s: &str) -> Result<T> {
    s.parse().map_err(|_| StoreError::Corrupt {
        what,
        detail: s.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_applied_once_and_recorded() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt {
            what: "tempdir",
            detail: e.to_string(),
        })?;
        let path = dir.path().join("db");
        drop(Store::open(&path)?);
        let store = Store::open(&path)?;
        let (version, mode): (i64, String) = store.read(|c| {
            let v = c
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(sql)?;
            let m = c
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .map_err(sql)?;
            Ok::<_, StoreError>((v, m))
        })?;
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(mode, "wal");
        Ok(())
    }
}
