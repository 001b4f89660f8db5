//! The coordinator's shared state: the store, the tokens, the tunables ([`Settings`]), the metrics registry, the
//! waiters woken after each commit ([`crate::notify::Notifiers`]) and when each agent was last heard from.
//!
//! The HTTP handlers (`api`), the engine's traffic runner and the server's sweeper all work on one [`State`]; this
//! module depends on neither of them. [`AppState::new`] installs the store's commit hook, so whatever any of them
//! writes wakes the right waiters once it committed.

use crate::auth::{Identified, Tokens};
use crate::bundles::Bundles;
use crate::metrics::Metrics;
use crate::notify::{Changes, Notifiers};
use crate::store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// When failed webhook deliveries are tried again, and when they are given up.
    pub webhook_retry: crate::webhooks::Retry,
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
            webhook_retry: crate::webhooks::Retry::default(),
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
    /// Whether this coordinator holds the lease on the work that runs once (the sweep, retention, the traffic
    /// runner): always on SQLite; on PostgreSQL, won and renewed by `server::hold_lease`.
    leader: AtomicBool,
    /// PostgreSQL: liveness not yet written for the other coordinators (see [`AppState::take_liveness`]), and
    /// when each agent's and step's was last written.
    unshared: Mutex<Unshared>,
}

/// Liveness to share: (agent, when heard) and (step, when heard of), in ms.
pub type Liveness = (Vec<(String, i64)>, Vec<(i64, i64)>);

/// Liveness heard here and not yet shared through the database.
#[derive(Debug, Default)]
struct Unshared {
    seen: HashMap<String, i64>,
    heard: HashMap<i64, i64>,
    seen_written: HashMap<String, i64>,
    heard_written: HashMap<i64, i64>,
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
            tokens,
            settings,
            metrics: Metrics::new(),
            notifiers,
            last_seen: Mutex::new(HashMap::new()),
            step_heard: Mutex::new(HashMap::new()),
            leader: AtomicBool::new(true),
            unshared: Mutex::default(),
            store,
        }
    }

    /// Whether this coordinator runs the once-only work now (see [`AppState::set_leader`]).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Won (`true`) or lost the lease on the once-only work; returns whether it was held before.
    pub fn set_leader(&self, held: bool) -> bool {
        self.leader.swap(held, Ordering::Relaxed)
    }

    /// Who `token` is, for any route. On PostgreSQL a token this coordinator has not seen may have been made by
    /// another one (an operator token, an agent enrolled there): it is looked up in the database and cached.
    pub fn identify(&self, token: &str) -> Identified {
        match self.tokens.identify(token) {
            Identified::Unknown if self.store.is_postgres() => {
                self.load_token(token);
                self.tokens.identify(token)
            }
            known => known,
        }
    }

    /// The agent `token` belongs to (looked up in the shared database on a miss, like [`AppState::identify`]).
    pub fn agent(&self, token: &str) -> Option<String> {
        self.tokens.agent(token).or_else(|| {
            if !self.store.is_postgres() {
                return None;
            }
            self.load_token(token);
            self.tokens.agent(token)
        })
    }

    fn load_token(&self, token: &str) {
        let hash = crate::auth::hash_token(token);
        let found = self.store.read(|c| {
            Ok::<_, crate::store::StoreError>((
                crate::store::tokens::by_hash(c, &hash)?,
                crate::store::instances::by_token_hash(c, &hash)?,
            ))
        });
        match found {
            Ok((Some(t), _)) => self.tokens.set_stored(t),
            Ok((None, Some(name))) => self.tokens.set_agent(&name, hash),
            Ok((None, None)) => {}
            Err(e) => tracing::error!(error = %e, "looking up a token in the database failed"),
        }
    }

    /// Another coordinator made or revoked an operator token, or removed an agent: re-read the operator tokens,
    /// and forget the cached agent tokens (each is looked up again on its next call).
    pub fn reload_tokens(&self) {
        match self.store.read(crate::store::tokens::all) {
            Ok(all) => {
                for t in all {
                    self.tokens.set_stored(t);
                }
            }
            Err(e) => tracing::error!(error = %e, "re-reading operator tokens failed"),
        }
        self.tokens.forget_agents();
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

    /// Woken when a commit queued webhook deliveries (the delivery task waits on it).
    pub fn webhooks(&self) -> &Notify {
        &self.notifiers.webhooks
    }

    /// Record that `instance` called now.
    pub fn seen(&self, instance: &str, now: i64) {
        let mut map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(instance.to_owned(), now);
        drop(map);
        if self.store.is_postgres() {
            let mut u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
            if u.seen_written
                .get(instance)
                .is_none_or(|&w| now - w >= self.share_every_ms())
            {
                u.seen.insert(instance.to_owned(), now);
            }
        }
    }

    /// How often an agent's or a step's liveness is written for the other coordinators: a sixth of the heartbeat
    /// deadline (at least 1 s), so the coordinator holding the sweep sees every live agent well within it.
    fn share_every_ms(&self) -> i64 {
        i64::try_from(self.settings.heartbeat_deadline.as_millis() / 6)
            .unwrap_or(i64::MAX)
            .max(1_000)
    }

    /// The liveness heard here since the last call, to be written to the shared database (agents, steps).
    pub fn take_liveness(&self) -> Liveness {
        let mut u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        let seen: Vec<(String, i64)> = u.seen.drain().collect();
        let heard: Vec<(i64, i64)> = u.heard.drain().collect();
        for (n, at) in &seen {
            u.seen_written.insert(n.clone(), *at);
        }
        for (s, at) in &heard {
            u.heard_written.insert(*s, *at);
        }
        (seen, heard)
    }

    /// `instance` counts as heard at `at`, here only (not shared again): what another coordinator heard, or the
    /// grace given at start and on taking the lease.
    pub fn seen_elsewhere(&self, instance: &str, at: i64) {
        let mut map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(instance.to_owned(), at);
    }

    /// Step `step` counts as heard of at `at`, here only (see [`AppState::seen_elsewhere`]).
    pub fn heard_elsewhere(&self, step: i64, at: i64) {
        let mut map = self.step_heard.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(step, at);
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
        drop(map);
        if self.store.is_postgres() {
            let mut u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
            if u.heard_written
                .get(&step)
                .is_none_or(|&w| now - w >= self.share_every_ms())
            {
                u.heard.insert(step, now);
            }
        }
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
        drop(map);
        let mut u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        u.heard_written.retain(|step, _| running.contains(step));
    }
}

/// Shared state handle.
pub type State = Arc<AppState>;

/// On PostgreSQL: when a commit (this coordinator's or another's) made or revoked a token or removed an agent,
/// re-read the token caches ([`AppState::reload_tokens`]).
pub fn refresh_tokens_on_commit(state: &State) {
    if !state.store.is_postgres() {
        return;
    }
    let weak = Arc::downgrade(state);
    state.store.on_commit(Arc::new(move |t| {
        if t.tokens
            && let Some(state) = weak.upgrade()
        {
            state.reload_tokens();
        }
    }));
}

/// The store, for whoever holds the state in an `Arc` and hands it to blocking tasks ([`crate::bundles::SharedStore`]).
impl AsRef<Store> for AppState {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests;
