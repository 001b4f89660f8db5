//! The coordinator's state in SQLite or PostgreSQL: the single source of truth.
//!
//! Two backends behind one interface: SQLite, embedded (one database file `DATA/rollcage.db` in WAL mode; schema
//! version in `PRAGMA user_version`), and PostgreSQL ([`pg`]: shared by any number of coordinators; schema version
//! in `rollcage_schema`). Store functions are written once against [`db::Conn`]; schema changes are numbered
//! migrations, written once below and applied on both. Every state change runs in one transaction ([`Store::write`]), so a coordinator killed at
//! any point restarts with a consistent state and carries on every running deployment. Each resource has its own
//! file: [`apps`] (applications and groups), [`revisions`], [`instances`], [`deployments`], [`logs`] (step output),
//! [`tokens`] (named operator tokens), [`audit`] (the audit trail), [`actors`] (who acted on a deployment),
//! [`enroll_tokens`] (per-use enrollment tokens), [`webhooks`] (groups' webhooks and their delivery outbox).
//!
//! **Notify after commit.** A write runs on a [`Tx`], which derefs to the connection and collects a [`Touched`]
//! set: the store functions that change a deployment, dispatch or end a step record the deployment and the agents
//! they touched. Once the transaction committed (and only then), the store hands the set to the hook installed
//! with [`Store::on_commit`] (the shared state's: it wakes agent long polls, progress streams and the traffic
//! runner). No handler wakes anything by hand, so none can forget to. On PostgreSQL the same set is also sent to
//! the other coordinators (`NOTIFY` inside the transaction, so only a commit sends it), whose listeners run their
//! hooks with it.

pub mod actors;
pub mod apps;
pub mod audit;
pub mod bakes;
pub mod db;
pub mod deployments;
pub mod enroll_tokens;
pub mod forms;
pub mod instances;
pub mod leases;
pub mod logs;
mod pg;
pub mod revisions;
pub mod secrets;
pub mod tokens;
pub mod webhooks;

pub use db::{Conn, OptionalExt, Row, args};
use rusqlite::Connection;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};

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
    /// The batching writer thread is gone (the coordinator is shutting down).
    #[error("database writer {0} stopped")]
    WriterStopped(PathBuf),
    /// A batched transaction failed to commit.
    #[error("database {path}: commit failed: {message}")]
    Commit {
        /// The database file.
        path: PathBuf,
        /// SQLite's message.
        message: String,
    },
    /// PostgreSQL reported an error.
    #[error("database: {message}")]
    Postgres {
        /// The server's message (and SQL state), or the client's.
        message: String,
    },
    /// The database could not be opened or reached.
    #[error("database {what}: {message}")]
    Open {
        /// The file, or the URL without its password.
        what: String,
        /// Why.
        message: String,
    },
    /// A text value holds a NUL byte: PostgreSQL's text cannot, so no store accepts one (on SQLite either, so
    /// both backends answer alike).
    #[error("a value holds a NUL byte (\\0), which no name, label or message may contain")]
    NulByte,
    /// A query that must return a row returned none.
    #[error("no such row")]
    NoRows,
    /// A column could not be decoded into the type asked for.
    #[error("column {idx}: {detail}")]
    Column {
        /// The column (0-based).
        idx: usize,
        /// What was found.
        detail: String,
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

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NoRows,
            source => StoreError::Sqlite {
                path: PathBuf::from("rollcage.db"),
                source,
            },
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        pg::pg_err(e)
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Schema migrations, applied in order; index + 1 is the schema version after it. Append only. Written in SQLite's
/// spelling; [`pg::pg_ddl`] gives PostgreSQL's (so `INTEGER` here is 64-bit there too).
const MIGRATIONS: &[&str] = &[
    r#"
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
-- Partial: only in-flight steps, so the per-report lookup and the lost-agent sweep stay small as history grows.
CREATE INDEX steps_running ON steps (instance) WHERE state = 'running';
"#,
    r#"
-- Deployment forms (store/forms.rs): a group's default form, and the form each deployment runs with.
CREATE TABLE group_forms (
    group_id TEXT PRIMARY KEY,
    form     TEXT NOT NULL
);
CREATE TABLE deployment_forms (
    deployment_id TEXT PRIMARY KEY,
    form          TEXT NOT NULL
);
"#,
    // 3: load balancers (issue 5).
    r#"
-- Load-balancer settings of `in-place-lb` / `blue-green` groups (JSON, rollcage_proto::lb::GroupLb), and the blue/green
-- server group serving now (updated when a SwitchTraffic succeeds).
ALTER TABLE groups ADD COLUMN lb TEXT;
ALTER TABLE groups ADD COLUMN active_server_group TEXT;
-- Blue/green: the server group a deployment switches traffic to, and whether `continue` was given.
ALTER TABLE deployments ADD COLUMN switch_to TEXT;
ALTER TABLE deployments ADD COLUMN continued INTEGER NOT NULL DEFAULT 0;
"#,
    // 4: full step logs (issue 6, store/logs.rs).
    r#"
-- One row per step that wrote output, keyed by the step (= command id) so a re-sent report is stored once; `seq` is
-- the cursor `GET /deployments/{id}/logs?after=` pages on.
CREATE TABLE step_logs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id         INTEGER NOT NULL UNIQUE,
    deployment_id   TEXT NOT NULL,
    instance        TEXT NOT NULL,
    event           TEXT NOT NULL,
    text            TEXT NOT NULL,
    truncated_bytes INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL
);
CREATE INDEX step_logs_deployment ON step_logs (deployment_id, seq);
"#,
    // People, roles and the audit trail (issue 13; store/tokens.rs, store/audit.rs, store/actors.rs).
    r#"
-- Named operator tokens: only the sha256 of the secret is kept. A revoked token keeps its row (so a refusal can name
-- it in the audit trail) until its name is given to a new token.
CREATE TABLE operator_tokens (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    apps         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
-- Every state-changing request and every refusal; `seq` is the list's cursor, `at` what retention prunes by.
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    remote_addr TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, seq);
-- Who acted on each deployment (token names; `system` for automatic rollbacks).
ALTER TABLE deployments ADD COLUMN created_by TEXT;
ALTER TABLE deployments ADD COLUMN stopped_by TEXT;
ALTER TABLE deployments ADD COLUMN rolled_back_by TEXT;
ALTER TABLE deployments ADD COLUMN continued_by TEXT;
"#,
    // Safe enrollment (issue 13, store/enroll_tokens.rs, store/instances.rs).
    r#"
-- Per-use enrollment tokens: only the secret's sha256 is kept. `seq` orders the list and is its paging cursor; a
-- revoked, expired or used-up token stays listed (and refused with its reason) until an operator looks.
CREATE TABLE enroll_tokens (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    label         TEXT NOT NULL DEFAULT '',
    token_hash    TEXT NOT NULL UNIQUE,
    uses_allowed  INTEGER NOT NULL,
    uses          INTEGER NOT NULL DEFAULT 0,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
-- An instance is `pending` (enrolled under --enroll-approval, given no work) or `approved`; every instance enrolled
-- before approvals existed was deployable, so it is approved. `enrolled_with`: the per-use token's id, or
-- 'standing'.
ALTER TABLE instances ADD COLUMN state TEXT NOT NULL DEFAULT 'approved';
ALTER TABLE instances ADD COLUMN enrolled_with TEXT;
"#,
    // Signed revisions (issue 13, store/revisions.rs).
    r#"
-- A revision's signature: the armored SSHSIG (at most 16 KiB, checked before it is stored) and the signer key it
-- names (`ssh-ed25519 SHA256:…`), both NULL for an unsigned revision.
ALTER TABLE revisions ADD COLUMN signature TEXT;
ALTER TABLE revisions ADD COLUMN signed_by TEXT;
"#,
    // Several coordinators on one database (issue 14; store/leases.rs, store/secrets.rs).
    r#"
-- Work that must run on one coordinator at a time (the lost-agent sweep, retention, the coordinator's own
-- load-balancer steps): held by `holder` until `expires_at` (ms), renewed while it runs.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
-- The bootstrap tokens every coordinator of one database accepts (admin, enroll, metrics): only their sha256.
CREATE TABLE shared_secrets (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL
);
-- Liveness as another coordinator saw it (ms; written at most every few seconds per agent and step), so the
-- coordinator holding the sweep does not take an agent that talks to another one for lost.
ALTER TABLE instances ADD COLUMN last_seen_at INTEGER;
ALTER TABLE steps ADD COLUMN heard_at INTEGER;
"#,
    // Bundles in the database (issue 14, PostgreSQL mode; coordinator/src/bundles.rs).
    r#"
-- An uploaded bundle's bytes in 1 MiB chunks, keyed by its sha256 (or, while it uploads, by a temporary
-- `upload-<ms>-<random>` key). A bundle is served only once its `bundles` row exists: written in the transaction
-- that gives its chunks their final key, so a half-written upload is never seen.
CREATE TABLE bundle_chunks (
    sha256 TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (sha256, idx)
);
CREATE TABLE bundles (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    chunks     INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
    // A living fleet: tags and catch-up (issue 15; store/instances.rs, engine/catchup.rs).
    r#"
-- An instance's tags as its agent last sent them (a JSON object), and a group's selection by tags (a JSON list of
-- alternative sets; empty = by name).
ALTER TABLE instances ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE groups ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
-- A catch-up deployment: the instance it brings up to date (NULL for every other deployment).
ALTER TABLE deployments ADD COLUMN catch_up TEXT;
-- The tokens of instances an operator removed (sha256 only): their agents are told so (401 `instance_removed`)
-- and stop instead of enrolling again by themselves.
CREATE TABLE removed_instances (
    token_hash TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    removed_at INTEGER NOT NULL
);
"#,
    // CodeDeploy's deployment options (issue 15; store/deployments.rs `DeploymentRow::overrides`, `description`).
    r#"
-- `rollcage deploy --ignore-application-stop-failures` (0/1), `--file-exists-behavior` (DISALLOW, OVERWRITE,
-- RETAIN; NULL = the AppSpec's), `--description` (at most 512 bytes, checked by the API).
ALTER TABLE deployments ADD COLUMN ignore_stop_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN file_exists_behavior TEXT;
ALTER TABLE deployments ADD COLUMN description TEXT;
"#,
    // Notifications (issue 15; store/webhooks.rs, coordinator/src/webhooks.rs).
    r#"
-- A group's webhook endpoints (`ord`: the order they were given in) and the secret their deliveries are signed
-- with (HMAC-SHA256 key; never returned by the API).
CREATE TABLE webhooks (
    group_id TEXT NOT NULL,
    url      TEXT NOT NULL,
    ord      INTEGER NOT NULL,
    PRIMARY KEY (group_id, url)
);
CREATE TABLE webhook_secrets (
    group_id TEXT PRIMARY KEY,
    secret   TEXT NOT NULL
);
-- The outbox: one row per event per endpoint, written in the transaction that records the transition. `seq` is
-- the delivery order (an endpoint's next row waits until the one before is delivered or given up) and the
-- delivery id; `body` is rendered at the first attempt and kept, so every retry sends the same bytes. A row is
-- leased (`lease_holder`, `lease_until` ms) by the coordinator posting it.
CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id        TEXT NOT NULL,
    url             TEXT NOT NULL,
    event           TEXT NOT NULL,
    deployment_id   TEXT NOT NULL,
    instance        TEXT NOT NULL DEFAULT '',
    occurred_at     INTEGER NOT NULL,
    body            TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    ended_at        INTEGER,
    lease_holder    TEXT,
    lease_until     INTEGER,
    UNIQUE (deployment_id, event, instance, group_id, url)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (state, group_id, url, seq);
CREATE INDEX webhook_deliveries_group ON webhook_deliveries (group_id, seq);
"#,
    // Progressive delivery (issue 16; store/bakes.rs, engine/bake.rs).
    r#"
-- One bake: a blue/green deployment's canary (`instance` = '') or an in-place-lb instance's analysis gate. `settings`
-- is the `[canary]`/`[analysis]` table it runs under (JSON), `state` its BakeState (JSON: phase, step, weight,
-- counts, the LB window mark the next interval starts at).
CREATE TABLE bakes (
    deployment_id TEXT NOT NULL,
    instance      TEXT NOT NULL,
    settings      TEXT NOT NULL,
    state         TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, instance)
);
-- Every judged interval of a bake: `seq` is its 1-based number in the bake, `result` pass/fail/no_verdict,
-- `verdict` the Verdict (JSON: both sides' figures, breaches with their thresholds).
CREATE TABLE bake_verdicts (
    deployment_id TEXT NOT NULL,
    instance      TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    result        TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    PRIMARY KEY (deployment_id, instance, seq)
);
"#,
];

/// What one committed transaction changed, for whoever waits on it. Plain data, so the same set can later be sent
/// to other coordinators (PostgreSQL `LISTEN`/`NOTIFY`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Touched {
    /// Deployments whose rows, instances, steps or logs changed (their progress followers re-read).
    pub deployments: BTreeSet<String>,
    /// Agents (instance names) that were sent a step or had one cancelled (their long polls re-read).
    pub instances: BTreeSet<String>,
    /// A coordinator step (load-balancer call) was dispatched (the traffic runner picks it up).
    pub coordinator_steps: bool,
    /// Anything may have changed (a lost notification connection came back): every waiter re-reads.
    #[serde(default)]
    pub everything: bool,
    /// An operator token was made or revoked, or an agent removed: coordinators re-read their token caches.
    #[serde(default)]
    pub tokens: bool,
    /// Webhook deliveries were queued (the delivery task wakes).
    #[serde(default)]
    pub webhooks: bool,
}

impl Touched {
    /// Nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty()
            && self.instances.is_empty()
            && !self.coordinator_steps
            && !self.everything
            && !self.tokens
            && !self.webhooks
    }

    /// Everything may have changed.
    pub fn everything() -> Self {
        Self {
            everything: true,
            ..Self::default()
        }
    }

    /// Add everything `other` touched.
    pub fn merge(&mut self, other: Touched) {
        self.deployments.extend(other.deployments);
        self.instances.extend(other.instances);
        self.coordinator_steps |= other.coordinator_steps;
        self.everything |= other.everything;
        self.tokens |= other.tokens;
        self.webhooks |= other.webhooks;
    }
}

/// A write in progress: the transaction's connection (through `Deref`), and what it touched so far. Every store
/// function that writes deployment state takes a `&Tx` and records into it.
#[derive(Debug)]
pub struct Tx<'c> {
    conn: Conn<'c>,
    touched: RefCell<Touched>,
}

impl<'c> Tx<'c> {
    fn new(conn: Conn<'c>) -> Self {
        Self {
            conn,
            touched: RefCell::default(),
        }
    }

    /// Deployment `id` changed.
    pub fn touch_deployment(&self, id: &str) {
        let mut t = self.touched.borrow_mut();
        if !t.deployments.contains(id) {
            t.deployments.insert(id.to_owned());
        }
    }

    /// Agent `instance` has new work (a step sent, or its step cancelled).
    pub fn touch_instance(&self, instance: &str) {
        let mut t = self.touched.borrow_mut();
        if !t.instances.contains(instance) {
            t.instances.insert(instance.to_owned());
        }
    }

    /// A token was made, revoked or removed.
    pub fn touch_tokens(&self) {
        self.touched.borrow_mut().tokens = true;
    }

    /// Webhook deliveries were queued.
    pub fn touch_webhooks(&self) {
        self.touched.borrow_mut().webhooks = true;
    }

    /// A coordinator step was dispatched.
    pub fn touch_coordinator_step(&self) {
        self.touched.borrow_mut().coordinator_steps = true;
    }

    /// What this write touched so far.
    pub fn touched(&self) -> Touched {
        self.touched.borrow().clone()
    }

    fn into_touched(self) -> Touched {
        self.touched.into_inner()
    }

    fn into_parts(self) -> (Conn<'c>, Touched) {
        (self.conn, self.touched.into_inner())
    }
}

impl<'c> std::ops::Deref for Tx<'c> {
    type Target = Conn<'c>;

    fn deref(&self) -> &Conn<'c> {
        &self.conn
    }
}

/// Called with what a transaction touched, after it committed.
pub type CommitHook = Arc<dyn Fn(&Touched) + Send + Sync>;

/// One batched write: runs inside a savepoint of the batch's transaction, returns what it touched (empty when it
/// rolled back) and what to do once the batch's commit is known.
type Job = Box<dyn FnOnce(&Connection) -> (Touched, Reply) + Send>;
/// Delivers a batched write's result after the commit.
type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// Where the state lives.
enum Backend {
    /// An embedded SQLite file, behind one lock (SQLite serialises writers anyway; reads are short).
    Sqlite {
        conn: Arc<Mutex<Connection>>,
        path: PathBuf,
        batcher: OnceLock<Mutex<mpsc::Sender<Job>>>,
    },
    /// A PostgreSQL database shared with other coordinators.
    Postgres(Arc<pg::Pg>),
}

/// The database.
pub struct Store {
    backend: Backend,
    on_commit: Arc<Mutex<Vec<CommitHook>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.shown())
            .field(
                "on_commit",
                &self.on_commit.lock().map(|h| h.len()).unwrap_or(0),
            )
            .finish_non_exhaustive()
    }
}

/// Which database a coordinator keeps its state in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// SQLite, in this file.
    Sqlite(PathBuf),
    /// PostgreSQL, at this `postgres://` URL.
    Postgres(String),
}

impl Store {
    /// Open (or create) the database and bring its schema up to date.
    pub fn connect(db: &Database) -> Result<Self> {
        match db {
            Database::Sqlite(path) => Self::open(path),
            Database::Postgres(url) => Self::open_postgres(url),
        }
    }

    /// Open (or create) the SQLite database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        Self::setup(&mut conn).map_err(err)?;
        Ok(Self::sqlite(conn, path.to_owned()))
    }

    /// An in-memory SQLite database (tests).
    pub fn open_in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(err)?;
        Self::setup(&mut conn).map_err(err)?;
        Ok(Self::sqlite(conn, path))
    }

    fn sqlite(conn: Connection, path: PathBuf) -> Self {
        Self {
            backend: Backend::Sqlite {
                conn: Arc::new(Mutex::new(conn)),
                path,
                batcher: OnceLock::new(),
            },
            on_commit: Arc::default(),
        }
    }

    /// Connect to the PostgreSQL database at `url` (`postgres://USER@HOST:PORT/DB`), bring its schema up to date
    /// (once, under a lock, whichever coordinator comes first) and listen to the other coordinators' commits.
    pub fn open_postgres(url: &str) -> Result<Self> {
        let on_commit: Arc<Mutex<Vec<CommitHook>>> = Arc::default();
        let pg = pg::Pg::open(url, MIGRATIONS, on_commit.clone())?;
        Ok(Self {
            backend: Backend::Postgres(Arc::new(pg)),
            on_commit,
        })
    }

    /// Keep `guard` until this store is dropped, and drop it after the store's connections closed (tests: the
    /// throwaway database the store lives in).
    pub fn keep_until_dropped(mut self, guard: Box<dyn std::any::Any + Send + Sync>) -> Self {
        if let Backend::Postgres(pg) = &mut self.backend
            && let Some(pg) = Arc::get_mut(pg)
        {
            pg.guard = Some(guard);
        }
        self
    }

    /// Whether the state is in PostgreSQL (shared with other coordinators).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// This coordinator's identity among those sharing the database (a lease's holder); `local` on SQLite.
    pub fn holder_id(&self) -> String {
        match &self.backend {
            Backend::Sqlite { .. } => "local".to_owned(),
            Backend::Postgres(pg) => pg.id.clone(),
        }
    }

    /// The database, for messages: the SQLite file, or the URL without its password.
    pub fn shown(&self) -> String {
        match &self.backend {
            Backend::Sqlite { path, .. } => path.display().to_string(),
            Backend::Postgres(pg) => pg.shown.clone(),
        }
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

    fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back on drop).
        conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a hook that hears what every committed write touched (the shared state's wakes the waiters; a test may
    /// add its own). Called after the commit, outside the database lock; it must not block. On PostgreSQL it also
    /// hears the other coordinators' commits.
    pub fn on_commit(&self, hook: CommitHook) {
        self.on_commit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    fn committed(hooks: &Mutex<Vec<CommitHook>>, touched: &Touched) {
        if touched.is_empty() {
            return;
        }
        // Cloned out of the lock: a hook may take its time without blocking the next commit's.
        let hooks = hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for hook in hooks {
            hook(touched);
        }
    }

    /// Run `f` in one transaction; commit when it returns `Ok`, then tell the [`Store::on_commit`] hook what it
    /// touched.
    pub fn write<T: Send, E: From<StoreError> + Send>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E> + Send,
    ) -> std::result::Result<T, E> {
        let (out, touched) = match &self.backend {
            Backend::Sqlite { conn, path, .. } => {
                let err = |source| StoreError::Sqlite {
                    path: path.clone(),
                    source,
                };
                let mut conn = Self::lock(conn);
                let tx = conn.transaction().map_err(err)?;
                let w = Tx::new(Conn::sqlite(&tx));
                let out = f(&w)?;
                let touched = w.into_touched();
                tx.commit().map_err(err)?;
                (out, touched)
            }
            Backend::Postgres(pg) => pg.run(|c| pg_write(pg, c, f))?,
        };
        Self::committed(&self.on_commit, &touched);
        Ok(out)
    }

    /// Run `f` as part of a group commit: writes that arrive while the writer thread is busy share one
    /// transaction (each in its own savepoint, so a failing one rolls back alone), and each caller gets its result
    /// only after that transaction committed (and after the [`Store::on_commit`] hook heard what the whole batch
    /// touched). Used on the step-report path, where thousands of agents report at once and one commit per report
    /// would dominate. On PostgreSQL each write is its own transaction on a pooled connection (the pool's
    /// connections commit concurrently, and a batch holding several deployments' row locks could deadlock with
    /// another coordinator's).
    pub async fn write_batched<T, E>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E> + Send + 'static,
    ) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (path, batcher, conn) = match &self.backend {
            Backend::Sqlite {
                path,
                batcher,
                conn,
            } => (path.clone(), batcher, conn),
            Backend::Postgres(pg) => {
                let pg = pg.clone();
                let hooks = self.on_commit.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let r = pg.run_here(|c| pg_write(&pg, c, f));
                    if let Ok((_, touched)) = &r {
                        Self::committed(&hooks, touched);
                    }
                    r.map(|(out, _)| out)
                })
                .await;
                return joined.unwrap_or_else(|_| {
                    Err(E::from(StoreError::WriterStopped(PathBuf::from(
                        "postgres",
                    ))))
                });
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<std::result::Result<T, E>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let (result, touched) = match conn.execute_batch("SAVEPOINT job") {
                Err(e) => (
                    Err(E::from(StoreError::Sqlite {
                        path: path.clone(),
                        source: e,
                    })),
                    Touched::default(),
                ),
                Ok(()) => {
                    let w = Tx::new(Conn::sqlite(conn));
                    let r = f(&w);
                    let end = if r.is_ok() {
                        conn.execute_batch("RELEASE job")
                    } else {
                        conn.execute_batch("ROLLBACK TO job; RELEASE job")
                    };
                    match (end, r) {
                        (Ok(()), Ok(v)) => (Ok(v), w.into_touched()),
                        // Rolled back: it touched nothing.
                        (Ok(()), Err(e)) => (Err(e), Touched::default()),
                        (Err(e), _) => (
                            Err(E::from(StoreError::Sqlite {
                                path: path.clone(),
                                source: e,
                            })),
                            Touched::default(),
                        ),
                    }
                }
            };
            let reply: Reply = Box::new(move |commit: std::result::Result<(), String>| {
                let out = match (result, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(message)) => Err(E::from(StoreError::Commit { path, message })),
                    (Err(e), _) => Err(e),
                };
                let _ = tx.send(out);
            });
            (touched, reply)
        });
        let sent = batcher
            .get_or_init(|| Mutex::new(Self::spawn_batcher(conn.clone(), self.on_commit.clone())))
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job);
        let stopped = || StoreError::WriterStopped(PathBuf::from(self.shown()));
        if sent.is_err() {
            return Err(E::from(stopped()));
        }
        rx.await.unwrap_or_else(|_| Err(E::from(stopped())))
    }

    fn spawn_batcher(
        conn: Arc<Mutex<Connection>>,
        hook: Arc<Mutex<Vec<CommitHook>>>,
    ) -> mpsc::Sender<Job> {
        // Bounded so one transaction stays short enough not to delay reads noticeably.
        const MAX_BATCH: usize = 256;
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("rollcage-db-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let guard = conn.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = guard.execute_batch("BEGIN IMMEDIATE") {
                        // Never run outside a transaction: drop the jobs unrun, so each caller gets an error.
                        tracing::error!(error = %e, jobs = jobs.len(), "could not begin a batched transaction");
                        drop(guard);
                        drop(jobs);
                        continue;
                    }
                    let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
                    let mut touched = Touched::default();
                    for job in jobs {
                        // A panicking job must not take the writer down with it: undo its savepoint and drop its
                        // reply (its caller gets an error), keep the others.
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&guard))) {
                            Ok((t, reply)) => {
                                touched.merge(t);
                                replies.push(reply);
                            }
                            Err(_) => {
                                tracing::error!("a batched database write panicked; rolled back");
                                let _ = guard.execute_batch("ROLLBACK TO job; RELEASE job");
                            }
                        }
                    }
                    let commit = guard.execute_batch("COMMIT").map_err(|e| {
                        let _ = guard.execute_batch("ROLLBACK");
                        e.to_string()
                    });
                    drop(guard);
                    if commit.is_ok() {
                        Self::committed(&hook, &touched);
                    }
                    for reply in replies {
                        reply(commit.clone());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the database writer thread");
        }
        tx
    }

    /// Run `f` with a connection (reads). On PostgreSQL the reads share one snapshot (a read-only transaction).
    pub fn read<T: Send, E: From<StoreError> + Send>(
        &self,
        f: impl FnOnce(&Conn<'_>) -> std::result::Result<T, E> + Send,
    ) -> std::result::Result<T, E> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => {
                let conn = Self::lock(conn);
                f(&Conn::sqlite(&conn))
            }
            Backend::Postgres(pg) => pg.run(|c| {
                let pg::PgConn { client, stmts } = c;
                let tx = client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .map_err(|e| E::from(StoreError::from(e)))?;
                let conn = Conn::pg(tx, stmts);
                let out = f(&conn)?;
                if let Some(tx) = conn.into_pg() {
                    tx.commit().map_err(|e| E::from(StoreError::from(e)))?;
                }
                Ok(out)
            }),
        }
    }

    /// Wrap a rusqlite error with the database path.
    pub fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: PathBuf::from(self.shown()),
            source,
        }
    }
}

/// One write on PostgreSQL: `f` in a transaction, the `NOTIFY`s of what it touched, the commit.
fn pg_write<T, E: From<StoreError>>(
    pg: &pg::Pg,
    c: &mut pg::PgConn,
    f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
) -> std::result::Result<(T, Touched), E> {
    let pg::PgConn { client, stmts } = c;
    let tx = client
        .transaction()
        .map_err(|e| E::from(StoreError::from(e)))?;
    let w = Tx::new(Conn::pg(tx, stmts));
    let out = f(&w)?;
    let (conn, touched) = w.into_parts();
    for payload in pg.payloads(&touched) {
        conn.execute("SELECT pg_notify(?1, ?2)", args![pg::CHANNEL, payload])?;
    }
    if let Some(tx) = conn.into_pg() {
        tx.commit().map_err(|e| E::from(StoreError::from(e)))?;
    }
    Ok((out, touched))
}

/// Wrap a database error raised inside a transaction (the path is added by the caller's context).
pub(crate) fn sql<E: Into<StoreError>>(e: E) -> StoreError {
    e.into()
}

/// Run `check` on an empty store of each backend (SQLite in memory, a fresh PostgreSQL database): the store's own
/// tests hold on both. An error names the backend it happened on.
#[cfg(test)]
pub(crate) fn each_backend(check: impl Fn(&Store) -> Result<()>) -> Result<()> {
    let stores = crate::testkit::stores().map_err(|e| StoreError::Open {
        what: "test store".into(),
        message: e.to_string(),
    })?;
    for store in stores {
        check(&store).map_err(|e| StoreError::Corrupt {
            what: "test",
            detail: format!(
                "on {}: {e}",
                if store.is_postgres() {
                    "PostgreSQL"
                } else {
                    "SQLite"
                }
            ),
        })?;
    }
    Ok(())
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
            let c = c.as_sqlite().ok_or(StoreError::NoRows)?;
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

    #[tokio::test]
    async fn batched_writes_commit_together_and_a_failing_one_rolls_back_alone() -> Result<()> {
        let store = std::sync::Arc::new(Store::open_in_memory()?);
        let mut handles = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                store
                    .write_batched(move |c| {
                        apps::insert_application(c, &format!("app{i}"), 0)?;
                        if i % 10 == 3 {
                            // Written, then refused: this job's savepoint must roll back.
                            return Err(StoreError::Corrupt {
                                what: "test",
                                detail: format!("job {i} refuses"),
                            });
                        }
                        Ok(i)
                    })
                    .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            if h.await
                .map_err(|e| StoreError::Corrupt {
                    what: "join",
                    detail: e.to_string(),
                })?
                .is_ok()
            {
                ok += 1;
            }
        }
        assert_eq!(ok, 45);
        let names = store.read(apps::applications)?;
        assert_eq!(names.len(), 45);
        assert!(!names.iter().any(|a| a.name == "app3" || a.name == "app13"));
        Ok(())
    }

    #[test]
    fn hot_queries_do_not_scan_the_step_history() -> Result<()> {
        let store = Store::open_in_memory()?;
        let plans: Vec<String> = store.read(|c| {
            let mut out = Vec::new();
            for q in [
                "SELECT id FROM steps WHERE instance = 'x' AND state = 'running' LIMIT 1",
                "SELECT s.id, s.instance FROM steps s JOIN deployments d ON d.id = s.deployment_id \
                 WHERE s.state = 'running' AND d.status IN ('in_progress', 'stopping', 'ready')",
            ] {
                let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {q}")).map_err(sql)?;
                let rows = st
                    .query_map((), |r| r.get::<String>(3))
                    .map_err(sql)?
                    .collect::<Result<Vec<_>>>()
                    .map_err(sql)?;
                out.push(rows.join(" | "));
            }
            Ok::<_, StoreError>(out)
        })?;
        assert!(plans[0].contains("steps_running"), "{}", plans[0]);
        // The sweep reads only the steps of active deployments, never the whole history.
        assert!(!plans[1].contains("SCAN s"), "{}", plans[1]);
        Ok(())
    }
}
