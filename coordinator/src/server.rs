//! Starting the coordinator: open the data dir, create or load tokens, resume running deployments, sweep lost
//! agents, and serve the API over plain HTTP or TLS (rustls; by default off loopback, see [`tls`]) until SIGTERM
//! or Ctrl-C.

use crate::api;
use crate::auth::{self, Tokens};
use crate::engine::executor;
use crate::state::{AppState, Settings, State};
use crate::store::{Store, instances};
use hyper_util::rt::{TokioIo, TokioTimer};
use rollcage_proto::fingerprint::CaFingerprint;
use rollcage_proto::wire::now_ms;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod conn;
pub mod datadir;
pub mod selfca;
pub mod tls;
pub use conn::ConnLimits;
pub use tls::TlsSetup;

/// How to run the coordinator. Its `Debug` leaves the database URL out (it may hold a password).
#[derive(Clone)]
pub struct ServerConfig {
    /// Data directory (database, bundles, token files).
    pub data: PathBuf,
    /// Which database: `None` is SQLite in `data` (`rollcage.db`); `Some(url)` a PostgreSQL database shared with
    /// any number of coordinators.
    pub database: Option<String>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Plain HTTP or TLS, and with which certificate ([`tls::decide`]).
    pub tls: TlsSetup,
    /// Existing admin token file instead of `DATA/admin-token`.
    pub admin_token_file: Option<PathBuf>,
    /// Existing enrollment token file instead of `DATA/enroll-token`.
    pub enroll_token_file: Option<PathBuf>,
    /// Tunables.
    pub settings: Settings,
    /// What each client connection may take (timeouts, the connection cap).
    pub limits: ConnLimits,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data", &self.data)
            .field(
                "database",
                &self.database.as_ref().map(|_| "postgres://… (not shown)"),
            )
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("admin_token_file", &self.admin_token_file)
            .field("enroll_token_file", &self.enroll_token_file)
            .field("settings", &self.settings)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The coordinator could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Data dir I/O failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Token files.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The database.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Resuming deployments failed.
    #[error("resuming deployments: {0}")]
    Engine(#[from] executor::EngineError),
    /// Binding the listener failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// TLS cannot be served as configured.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A bootstrap token file disagrees with the token the other coordinators of the database use.
    #[error(
        "{path}: this {name} is not the one the other coordinators of this database use; give every coordinator \
         the same file (or none: a coordinator without one accepts the database's)"
    )]
    TokenMismatch {
        /// Which token.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// The server task ended before it was listening (it panicked or was cancelled).
    #[error("the coordinator stopped before it was listening")]
    Stopped,
}

/// Open the data dir and build the shared state (resuming every running deployment).
pub fn open_state(cfg: &ServerConfig) -> Result<State, ServerError> {
    datadir::ensure_private(&cfg.data).map_err(|source| ServerError::Io {
        what: "creating (or making private) the data dir",
        path: cfg.data.clone(),
        source,
    })?;
    // The database first: on PostgreSQL the bootstrap tokens are the ones the other coordinators use.
    let store = Store::connect(&match &cfg.database {
        Some(url) => crate::store::Database::Postgres(url.clone()),
        None => crate::store::Database::Sqlite(cfg.data.join("rollcage.db")),
    })?;
    tracing::info!(database = %store.shown(), "state opened");
    let admin = bootstrap_token(
        &store,
        &cfg.data,
        "admin-token",
        cfg.admin_token_file.as_deref(),
    )?;
    // The standing enrollment token: unlimited, until per-use tokens replace it (`--no-standing-enroll-token`). When
    // it is off, its file is neither read nor created, and the in-memory value is a fresh random one that is never
    // written anywhere (the `Enroller` extractor checks the setting first anyway).
    let enroll = if cfg.settings.standing_enroll_token {
        bootstrap_token(
            &store,
            &cfg.data,
            "enroll-token",
            cfg.enroll_token_file.as_deref(),
        )?
    } else {
        tracing::info!("standing enrollment token disabled: only per-use enrollment tokens enroll");
        auth::hash_token(
            &auth::random_bytes_hex(32).map_err(|source| ServerError::Io {
                what: "reading random bytes for",
                path: PathBuf::from("/dev/urandom"),
                source,
            })?,
        )
    };
    let agents = store.read(instances::all)?;
    let now = now_ms();
    let tokens = Tokens::from_hashes(
        admin,
        enroll,
        agents.iter().map(|(n, h, _)| (n.clone(), h.clone())),
    );
    for t in store.read(crate::store::tokens::all)? {
        tokens.set_stored(t);
    }
    let state = Arc::new(AppState::new(
        store,
        tokens,
        cfg.data.join("bundles"),
        cfg.settings.clone(),
    ));
    // The read-only scrape token for Prometheus (`GET /metrics`), so scrapers never hold the admin token.
    let metrics_token = bootstrap_token(&state.store, &cfg.data, "metrics-token", None)?;
    state.metrics.set_scrape_token_hash(metrics_token);
    crate::state::refresh_tokens_on_commit(&state);
    state
        .metrics
        .set_lb_source(Arc::new(crate::engine::lb_counters::GroupLbCounters::new(
            Arc::downgrade(&state),
        )));
    // Every known agent, and every step in flight, gets a full heartbeat deadline after a restart before it can be
    // declared lost.
    // On PostgreSQL the once-only work waits for the lease (`hold_lease`).
    if state.store.is_postgres() {
        state.set_leader(false);
    }
    for (name, _, _) in &agents {
        state.seen_elsewhere(name, now);
    }
    for (step, _, _) in state.store.read(crate::store::deployments::running_steps)? {
        state.heard_elsewhere(step, now);
    }
    let resumed = resume(&state, now)?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed running deployments");
    }
    Ok(state)
}

/// The sha256 of bootstrap token `name` (`admin-token`, `enroll-token`, `metrics-token`): from `given` or
/// `DATA/<name>`, made on first start. On PostgreSQL every coordinator of the database accepts the same one: the
/// first to start records its hash; a later one with no token of its own accepts that hash (its operators use the
/// token the first one printed or was given), and one whose file holds another token is refused at start.
fn bootstrap_token(
    store: &Store,
    data: &Path,
    name: &str,
    given: Option<&Path>,
) -> Result<String, ServerError> {
    if !store.is_postgres() {
        return Ok(auth::hash_token(&auth::load_or_create(data, name, given)?));
    }
    let shown = || given.map_or_else(|| data.join(name), Path::to_path_buf);
    let local = auth::load_existing(data, name, given)?;
    let stored = store.read(|c| crate::store::secrets::get(c, name))?;
    let hash = match (local, stored) {
        (Some(t), Some(h)) => (auth::hash_token(&t), h),
        (None, Some(h)) => {
            tracing::info!(token = name, database = %store.shown(), "accepting the token the other coordinators of the database use");
            return Ok(h);
        }
        (local, None) => {
            let t = match local {
                Some(t) => t,
                None => auth::load_or_create(data, name, given)?,
            };
            let mine = auth::hash_token(&t);
            let first = store.write(|tx| crate::store::secrets::put_first(tx, name, &mine))?;
            (mine, first)
        }
    };
    if hash.0 != hash.1 {
        return Err(ServerError::TokenMismatch {
            name: name.to_owned(),
            path: shown(),
        });
    }
    Ok(hash.0)
}

/// The lease on the work that runs on one coordinator of a shared database (the sweep, retention, the traffic
/// runner).
pub const LEASE: &str = "coordinator";
/// How long a lease holds without renewal: a holder that died is replaced within this plus one
/// [`LEASE_RENEW_EVERY`] (under the 10 s).
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How often the lease is claimed or renewed: three renewals fit in one TTL, so one slow database round trip does
/// not lose it.
pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(2);

/// PostgreSQL: win and keep the lease on the once-only work. On winning it, every agent and every step in flight
/// gets a full heartbeat deadline (as after a restart: this coordinator may not have heard them), and the traffic
/// runner re-reads the coordinator steps the last holder was running (the drivers are idempotent).
async fn hold_lease(state: State) {
    state.set_leader(false);
    let holder = state.store.holder_id();
    let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(6_000);
    let mut tick = tokio::time::interval(LEASE_RENEW_EVERY);
    loop {
        tick.tick().await;
        let now = now_ms();
        let st = state.clone();
        let h = holder.clone();
        let held = tokio::task::spawn_blocking(move || {
            st.store
                .write(|tx| crate::store::leases::claim(tx, LEASE, &h, now, ttl))
        })
        .await;
        let held = match held {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "claiming the coordinator lease failed");
                false
            }
            Err(_) => false,
        };
        let was = state.set_leader(held);
        if held && !was {
            tracing::info!(holder = %holder, "holding the coordinator lease: sweeping, pruning and running load-balancer steps here");
            let st = state.clone();
            let granted = tokio::task::spawn_blocking(move || grant_grace(&st, now_ms())).await;
            if let Ok(Err(e)) = granted {
                tracing::error!(error = %e, "reading agents and steps after taking the lease failed");
            }
            state.traffic().notify_one();
        } else if was && !held {
            tracing::warn!(holder = %holder, "lost the coordinator lease: another coordinator runs the once-only work");
        }
    }
}

/// Every known agent and every step in flight gets a full heartbeat deadline from `now` (at start, and when this
/// coordinator takes the lease over).
fn grant_grace(state: &State, now: i64) -> Result<(), crate::store::StoreError> {
    // Kept here only: a grace is not news for the other coordinators.
    for (name, _, _) in state.store.read(instances::all)? {
        state.seen_elsewhere(&name, now);
    }
    for (step, _, _) in state.store.read(crate::store::deployments::running_steps)? {
        state.heard_elsewhere(step, now);
    }
    Ok(())
}

/// PostgreSQL: write the liveness heard here for the coordinator that sweeps, once a second.
async fn share_liveness(state: State) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (seen, heard) = state.take_liveness();
        if seen.is_empty() && heard.is_empty() {
            continue;
        }
        let st = state.clone();
        let wrote = tokio::task::spawn_blocking(move || {
            st.store.write(|tx| {
                crate::store::instances::record_seen(tx, &seen)?;
                crate::store::deployments::record_heard(tx, &heard)
            })
        })
        .await;
        if let Ok(Err(e)) = wrote {
            tracing::warn!(error = %e, "sharing agent liveness failed");
        }
    }
}

/// Re-run the strategy on every active deployment (at start-up: a coordinator killed mid-way carries on). Whatever
/// it dispatches wakes its waiters after the commit, like any other write. Returns the deployments resumed.
pub fn resume(state: &State, now: i64) -> Result<usize, executor::EngineError> {
    state.store.write(|tx| executor::resume_all(tx, now))
}

/// Delete the step logs of deployments that ended longer ago than the retention, and the audit entries recorded
/// longer ago than it (one retention for both: `--log-retention-days`; nothing when it is `None`). Returns the
/// entries deleted.
pub fn prune_logs(state: &State, now: i64) -> Result<usize, crate::store::StoreError> {
    let Some(keep) = state.settings.log_retention else {
        return Ok(0);
    };
    let cut = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
    let (deleted, audit) = state.store.write(|tx| {
        Ok::<_, crate::store::StoreError>((
            crate::store::logs::prune(tx, cut)?,
            crate::store::audit::prune(tx, cut)?,
        ))
    })?;
    if deleted > 0 || audit > 0 {
        tracing::info!(
            deleted,
            audit,
            "pruned step logs and audit entries past their retention"
        );
    }
    Ok(deleted + audit)
}

/// Fail every in-flight step whose agent gave no word of it within the heartbeat deadline: either the agent is
/// silent (lost), or it still polls but neither heartbeats the step nor delivers its report (e.g. every report it
/// sends is refused), so no deployment waits for ever. Returns the steps failed.
pub fn sweep_lost(state: &State, now: i64) -> Result<usize, executor::EngineError> {
    let deadline = i64::try_from(state.settings.heartbeat_deadline.as_millis()).unwrap_or(i64::MAX);
    let running = state.store.read(crate::store::deployments::running_steps)?;
    state.retain_heard(&running.iter().map(|(step, _, _)| *step).collect());
    if state.store.is_postgres() && !running.is_empty() {
        // What the other coordinators heard: an agent talking to another one is alive too.
        let (seen, heard) = state.store.read(|c| {
            Ok::<_, crate::store::StoreError>((
                crate::store::instances::last_seen_all(c)?,
                crate::store::deployments::heard_of_running(c)?,
            ))
        })?;
        for (instance, at) in seen {
            if state.last_seen(&instance).is_none_or(|t| t < at) {
                state.seen_elsewhere(&instance, at);
            }
        }
        for (step, at) in heard {
            if state.last_heard(step).is_none_or(|t| t < at) {
                state.heard_elsewhere(step, at);
            }
        }
    }
    let mut failed = 0;
    for (step, instance, started) in running {
        let seen = state.last_seen(&instance).unwrap_or(started).max(started);
        let heard = state.last_heard(step).unwrap_or(started).max(started);
        let reason = if now - seen > deadline {
            format!(
                "agent `{instance}` lost: not heard from for {} s",
                (now - seen) / 1000
            )
        } else if now - heard > deadline {
            format!(
                "agent `{instance}` gave no word of this step for {} s: it calls, but neither checks on the step \
                 nor delivers its report",
                (now - heard) / 1000
            )
        } else {
            continue;
        };
        if state
            .store
            .write(|tx| executor::fail_lost_step(tx, step, &reason, now))?
        {
            tracing::warn!(%instance, step, "{reason}");
            failed += 1;
        }
    }
    Ok(failed)
}

impl ServerConfig {
    /// A coordinator on a free loopback port, with its data (database, bundles, token files) in `data`, plain HTTP
    /// and default settings: what tests and embedders start with.
    pub fn loopback(data: PathBuf) -> Self {
        Self {
            data,
            database: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: TlsSetup::default(),
            admin_token_file: None,
            enroll_token_file: None,
            settings: Settings::default(),
            limits: ConnLimits::default(),
        }
    }
}

/// What a coordinator that is listening tells its starter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    /// The fingerprint of its own CA, when it serves with it (what agents pin).
    pub ca_fingerprint: Option<CaFingerprint>,
}

/// [`serve`] on a background task; returns the address it listens on once it is bound, or why it could not start.
pub async fn spawn(cfg: ServerConfig) -> Result<SocketAddr, ServerError> {
    Ok(spawn_ready(cfg).await?.addr)
}

/// [`spawn`], returning everything [`Ready`] says.
pub async fn spawn_ready(cfg: ServerConfig) -> Result<Ready, ServerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve(cfg, move |ready| {
        let _ = tx.send(ready);
    }));
    match rx.await {
        Ok(addr) => Ok(addr),
        // The sender is dropped unsent only when `serve` returned (or died) before binding.
        Err(_) => match task.await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) | Err(_) => Err(ServerError::Stopped),
        },
    }
}

/// Run the coordinator until SIGTERM or Ctrl-C. `on_ready` gets the bound address (and the CA fingerprint).
pub async fn serve(cfg: ServerConfig, on_ready: impl FnOnce(Ready)) -> Result<(), ServerError> {
    // The transport first: a refused TLS choice stops the start before anything is opened.
    let transport = tls::decide(cfg.listen, &cfg.tls, tls::LocalNames::of_this_host)?;
    let state = open_state(&cfg)?;
    let prepared = tls::prepare(&transport, &cfg.data)?;
    if let Some(fp) = prepared.ca_fingerprint {
        tracing::info!(
            ca_fingerprint = %fp,
            file = %cfg.data.join(selfca::TLS_DIR).join(selfca::FINGERPRINT).display(),
            "serving TLS with the coordinator's own CA: agents and the CLI pin it with --ca-fingerprint"
        );
    }
    let tls = prepared.acceptor;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })?;
    tracing::info!(%addr, tls = tls.is_some(), data = %cfg.data.display(), "coordinator listening");
    on_ready(Ready {
        addr,
        tls: tls.is_some(),
        ca_fingerprint: prepared.ca_fingerprint,
    });

    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            // Log retention is coarse (days): prune at start, then hourly.
            let mut ticks: u64 = 0;
            loop {
                tick.tick().await;
                // One coordinator of a shared database sweeps and prunes: the lease holder.
                if !state.is_leader() {
                    continue;
                }
                if let Err(e) = sweep_lost(&state, now_ms()) {
                    tracing::error!(error = %e, "lost-agent sweep failed");
                }
                if ticks.is_multiple_of(3600)
                    && let Err(e) = prune_logs(&state, now_ms())
                {
                    tracing::error!(error = %e, "step log pruning failed");
                }
                ticks = ticks.wrapping_add(1);
            }
        })
    };

    let shared = if state.store.is_postgres() {
        Some((
            tokio::spawn(hold_lease(state.clone())),
            tokio::spawn(share_liveness(state.clone())),
        ))
    } else {
        None
    };

    // BlockTraffic / AllowTraffic / SwitchTraffic: the coordinator's own steps, re-issued after a restart.
    let traffic = tokio::spawn(crate::engine::traffic::run(state.clone()));
    // Webhooks: the outbox's deliveries, posted in order per endpoint, never in an engine transaction.
    let webhooks = tokio::spawn(crate::webhooks::deliver::run(state.clone()));

    let state_for_shutdown = state.clone();
    let app = api::router(state);
    // The request-body idle deadline wraps the whole router, so every route's body is covered.
    let app = tower::Layer::layer(
        &tower_http::timeout::RequestBodyTimeoutLayer::new(cfg.limits.body_idle_timeout),
        app,
    );
    // HTTP/1.1 only (our client, agents and browsers without ALPN speak it): its header deadline is armed from the
    // moment a connection waits for a request, so it also ends silent and idle keep-alive connections. (Sniffing
    // for HTTP/2 would wait for a preface with no deadline at all.)
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.limits.header_read_timeout);
    let builder = Arc::new(builder);
    let fd_limit = conn::raise_fd_limit();
    let cap = conn::cap_for_fd_limit(cfg.limits.max_connections, fd_limit);
    if cap < cfg.limits.max_connections {
        tracing::warn!(
            configured = cfg.limits.max_connections,
            cap,
            fd_limit,
            "connection cap lowered to fit the open-file limit"
        );
    }
    let gate = conn::Gate::new(cap);
    let handshake_timeout = cfg.limits.tls_handshake_timeout;
    let mut accept_errors = conn::AcceptErrors::default();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| ServerError::Io {
            what: "installing SIGTERM handler for",
            path: cfg.data.clone(),
            source,
        })?;
    loop {
        // A slot first: at the cap, connections wait in the kernel's backlog rather than costing a descriptor.
        let permit = tokio::select! {
            p = gate.admit() => p,
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_errors.failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer's address rides on each request, for the audit trail.
        let svc = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let tls = tls.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let res = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), svc).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => builder.serve_connection(TokioIo::new(stream), svc).await,
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    sweeper.abort();
    traffic.abort();
    webhooks.abort();
    if let Some((lease, liveness)) = shared {
        lease.abort();
        liveness.abort();
        // Hand the lease over at once rather than after its TTL.
        let holder = state_for_shutdown.store.holder_id();
        let st = state_for_shutdown.clone();
        let _ = tokio::task::spawn_blocking(move || {
            st.store
                .write(|tx| crate::store::leases::release(tx, LEASE, &holder))
        })
        .await;
    }
    tracing::info!("coordinator shutting down");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test setup on an in-memory database")]
    use super::*;
    use crate::engine::executor::NewDeployment;
    use crate::store::{apps, deployments, revisions};
    use rollcage_proto::wire::{Concurrency, DeploymentStatus, DeploymentStyle, Group};

    #[test]
    fn coordinators_of_one_database_share_the_bootstrap_tokens_and_refuse_a_different_one() {
        let db = rollcage_testpg::shared_database().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = |name: &str| ServerConfig {
            database: Some(db.url().to_owned()),
            ..ServerConfig::loopback(dir.path().join(name))
        };
        let a = open_state(&cfg("a")).unwrap();
        let admin = auth::read_token(&dir.path().join("a/admin-token")).unwrap();
        let metrics = auth::read_token(&dir.path().join("a/metrics-token")).unwrap();
        // No token file of its own: it accepts the database's, and makes none.
        let b = open_state(&cfg("b")).unwrap();
        assert!(b.tokens.is_admin(&admin));
        assert!(b.metrics.is_scrape_token(&metrics));
        assert!(!dir.path().join("b/admin-token").exists());
        // The same file: fine; another token: refused at start, naming the file.
        let same = ServerConfig {
            admin_token_file: Some(dir.path().join("a/admin-token")),
            ..cfg("c")
        };
        assert!(open_state(&same).unwrap().tokens.is_admin(&admin));
        let other_file = dir.path().join("other-token");
        std::fs::write(&other_file, "not-the-same\n").unwrap();
        let other = ServerConfig {
            admin_token_file: Some(other_file.clone()),
            ..cfg("d")
        };
        let e = open_state(&other).unwrap_err().to_string();
        assert!(
            e.contains("other-token") && e.contains("not the one the other coordinators"),
            "{e}"
        );
        drop((a, b));
    }

    #[test]
    fn step_logs_are_pruned_once_their_deployment_ended_longer_ago_than_the_retention() {
        let state_with = |retention: Option<Duration>| {
            let store = crate::testkit::store().unwrap();
            store
                .write(|tx| {
                    tx.execute_batch(
                        "INSERT INTO deployments (id, application, group_name, group_id, revision, style, \
                         concurrency, failure_tolerance, auto_rollback, status, created_at, ended_at) \
                         VALUES ('d-1', 'a', 'g', 'g', 'r', 'in-place', 'all', 0, 0, 'succeeded', 0, 1000); \
                         INSERT INTO step_logs (step_id, deployment_id, instance, event, text, truncated_bytes, \
                         recorded_at) VALUES (1, 'd-1', 'i', 'Install', 'x', 0, 1000);",
                    )
                    .map_err(crate::store::sql)
                })
                .unwrap();
            let settings = Settings {
                log_retention: retention,
                ..crate::testkit::settings()
            };
            crate::testkit::state_over(store, settings).unwrap()
        };
        let never = state_with(None);
        assert_eq!(prune_logs(&never, i64::MAX).unwrap(), 0, "kept for ever");
        let ten_s = state_with(Some(Duration::from_secs(10)));
        assert_eq!(
            prune_logs(&ten_s, 11_000).unwrap(),
            0,
            "ended 10 s ago: kept"
        );
        assert_eq!(
            prune_logs(&ten_s, 11_001).unwrap(),
            1,
            "ended over 10 s ago"
        );
    }

    /// A state with one in-place deployment whose one step (instance `a`) was dispatched at 1 s, a 10 s heartbeat
    /// deadline; returns it, the deployment id and the step id.
    fn one_step_in_flight() -> (State, String, i64) {
        let store = crate::testkit::store().unwrap();
        let id = store
            .write(|tx| {
                apps::insert_application(tx, "app", 0)?;
                apps::insert_group(
                    tx,
                    &Group {
                        id: "g".into(),
                        application: "app".into(),
                        name: "web".into(),
                        style: DeploymentStyle::InPlace,
                        concurrency: Concurrency::All,
                        failure_tolerance: 0,
                        auto_rollback: false,
                        instances: vec!["a".into()],
                        tags: Default::default(),
                        lb: None,
                        webhooks: Default::default(),
                        created_at_ms: 0,
                    },
                )?;
                let rev = revisions::upsert(tx, "app", &"c".repeat(64), None, 1, 0)?;
                executor::create_deployment(
                    tx,
                    &NewDeployment {
                        application: "app",
                        group: "web",
                        revision: &rev.id,
                        rollback_of: None,
                        concurrency: None,
                        catch_up: None,
                        overrides: Default::default(),
                        description: None,
                    },
                    &[],
                    1_000,
                )
            })
            .unwrap();
        let settings = Settings {
            heartbeat_deadline: Duration::from_secs(10),
            ..crate::testkit::settings()
        };
        let state = crate::testkit::state_over(store, settings).unwrap();
        let step = state.store.read(deployments::running_steps).unwrap()[0].0;
        (state, id, step)
    }

    fn first_step_message(state: &State, id: &str) -> (DeploymentStatus, String) {
        let d = state
            .store
            .read(|c| deployments::full(c, id))
            .unwrap()
            .unwrap();
        (d.status, d.instances[0].steps[0].message.clone())
    }

    #[test]
    fn a_silent_agent_s_step_fails_after_the_heartbeat_deadline() {
        let (state, id, step) = one_step_in_flight();
        state.seen("a", 5_000);
        state.step_heard(step, 5_000);
        assert_eq!(sweep_lost(&state, 14_000).unwrap(), 0, "heard from 9 s ago");
        assert_eq!(sweep_lost(&state, 15_001).unwrap(), 1);
        let (status, message) = first_step_message(&state, &id);
        assert_eq!(status, DeploymentStatus::Failed);
        assert!(message.contains("lost"), "{message}");
    }

    #[test]
    fn a_step_whose_report_never_arrives_fails_at_the_deadline_though_its_agent_still_calls() {
        // The agent polls on (its report is refused, or it dropped it): it is seen, but the step is not heard of.
        let (state, id, step) = one_step_in_flight();
        state.step_heard(step, 2_000);
        for now in (3_000..=12_000).step_by(1_000) {
            state.seen("a", now);
            assert_eq!(
                sweep_lost(&state, now).unwrap(),
                0,
                "within the deadline at {now}"
            );
        }
        state.seen("a", 12_001);
        assert_eq!(sweep_lost(&state, 12_001).unwrap(), 1);
        let (status, message) = first_step_message(&state, &id);
        assert_eq!(status, DeploymentStatus::Failed);
        assert!(message.contains("gave no word of this step"), "{message}");
        assert_eq!(state.last_heard(step), Some(2_000));
        assert_eq!(sweep_lost(&state, 20_000).unwrap(), 0, "failed once");
        assert_eq!(state.last_heard(step), None, "an ended step is forgotten");
    }
}
