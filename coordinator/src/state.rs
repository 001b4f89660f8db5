//! The coordinator's shared state: the store, the tokens, the tunables ([`Settings`]), the metrics registry, the
//! waiters woken after each commit ([`crate::notify::Notifiers`]) and when each agent was last heard from.
//!
//! The HTTP handlers (`api`), the engine's traffic runner and the server's sweeper all work on one [`State`]; this
//! module depends on neither of them. [`AppState::new`] installs the store's commit hook, so whatever any of them
//! writes wakes the right waiters once it committed.

use crate::auth::Tokens;
use crate::bundles::Bundles;
use crate::metrics::Metrics;
use crate::notify::{Changes, Notifiers};
use crate::store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Tunables of the coordinator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a poll is held open.
    pub max_poll_wait: Duration,
    /// An agent silent for this long is lost, and its in-flight step fails.
    pub heartbeat_deadline: Duration,
    /// Step logs of deployments that ended longer ago than this are deleted; `None` keeps them for ever.
    pub log_retention: Option<Duration>,
    /// `--enroll-approval`: newly enrolled instances are `pending` (given no work) until an operator approves them.
    pub enroll_approval: bool,
    /// Whether the standing enrollment token (`DATA/enroll-token`, `--enroll-token-file`) enrolls; when off, only
    /// per-use tokens do (`--no-standing-enroll-token`).
    pub standing_enroll_token: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_poll_wait: Duration::from_millis(rollcage_proto::wire::DEFAULT_POLL_WAIT_MS),
            // Agents call at least every few seconds while a step runs (cancel checks) and re-poll at once after
            // a poll ends, so 60 s of silence means the agent or its host is gone, not busy.
            heartbeat_deadline: Duration::from_secs(60),
            // A month of full hook output: long enough to debug last week's deployment, and the database does
            // not grow without bound (each step's log is capped at 1 MiB).
            log_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            // As before approvals existed: an enrolled instance is deployable, the standing token enrolls.
            enroll_approval: false,
            standing_enroll_token: true,
        }
    }
}

/// Everything the handlers, the traffic runner and the sweeper share.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Who is who.
    pub tokens: Tokens,
    /// Where uploaded archives live, by sha256: `DATA/bundles`, or the database when it is PostgreSQL.
    pub bundles: Bundles,
    /// Tunables.
    pub settings: Settings,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: Metrics,
    /// Waiters woken after each commit (shared with the store's commit hook).
    notifiers: Arc<Notifiers>,
    last_seen: Mutex<HashMap<String, i64>>,
    /// When each in-flight step was last heard of from its agent (its cancel checks, which double as the step's
    /// heartbeat). An agent that polls but cannot deliver a step's report keeps `last_seen` fresh, not this.
    step_heard: Mutex<HashMap<i64, i64>>,
}

impl AppState {
    /// Shared state over an open store; adds the store's commit hook that wakes this state's waiters. Bundles go to
    /// `bundles_dir` on SQLite, into the database on PostgreSQL ([`Bundles::for_store`]).
    pub fn new(store: Store, tokens: Tokens, bundles_dir: PathBuf, settings: Settings) -> Self {
        let notifiers = Arc::new(Notifiers::new());
        let hook = notifiers.clone();
        store.on_commit(Arc::new(move |t| hook.committed(t)));
        Self {
            bundles: Bundles::for_store(&store, bundles_dir),
            store,
            tokens,
            settings,
            metrics: Metrics::new(),
            notifiers,
            last_seen: Mutex::new(HashMap::new()),
            step_heard: Mutex::new(HashMap::new()),
        }
    }

    /// Per-deployment change notification (progress stream, logs long poll): subscribe here.
    pub fn changes(&self) -> &Changes {
        &self.notifiers.changes
    }

    /// The notifier a waiting poll of `instance` sleeps on.
    pub fn waker(&self, instance: &str) -> Arc<Notify> {
        self.notifiers.wakers.waker(instance)
    }

    /// Woken when a commit dispatched a coordinator step (the traffic runner waits on it).
    pub fn traffic(&self) -> &Notify {
        &self.notifiers.traffic
    }

    /// Record that `instance` called now.
    pub fn seen(&self, instance: &str, now: i64) {
        let mut map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(instance.to_owned(), now);
    }

    /// When `instance` last called, if since this process started.
    pub fn last_seen(&self, instance: &str) -> Option<i64> {
        let map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.get(instance).copied()
    }

    /// Record that the agent running step `step` gave word of it at `now`.
    pub fn step_heard(&self, step: i64, now: i64) {
        let mut map = self.step_heard.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(step, now);
    }

    /// When the agent running `step` last gave word of it, if since this process started.
    pub fn last_heard(&self, step: i64) -> Option<i64> {
        let map = self.step_heard.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&step).copied()
    }

    /// Forget the steps not in `running` (they ended), so the map stays as small as the steps in flight.
    pub fn retain_heard(&self, running: &std::collections::HashSet<i64>) {
        let mut map = self.step_heard.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|step, _| running.contains(step));
    }
}

/// Shared state handle.
pub type State = Arc<AppState>;

/// The store, for whoever holds the state in an `Arc` and hands it to blocking tasks ([`crate::bundles::SharedStore`]).
impl AsRef<Store> for AppState {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests;
