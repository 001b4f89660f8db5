//! Server groups and their servers as the data path sees them: counters, health and drain flags, and the
//! round-robin choice of a server for a request.
//!
//! The choice avoids a race with draining without a lock on the request path: a request first counts itself
//! in flight on the chosen server, then checks that the server still accepts requests; a deregistration first
//! clears `accepting`, then waits for in-flight to reach zero. With sequentially consistent atomics at least one
//! side sees the other, so a request either backs off (and chooses again) or is waited for.

use crate::api::{CountersView, HealthCheckSpec, ServerPhase, ServerView};
use crate::policy::{self, HealthTracker};
use crate::window::Recorder;
use hyper::http::uri::Authority;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Request counters of a group or a server.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) responses_5xx: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) retries: AtomicU64,
}

impl Counters {
    pub(crate) fn view(&self) -> CountersView {
        CountersView {
            requests: self.requests.load(Ordering::Relaxed),
            responses_5xx: self.responses_5xx.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Slow-changing state of a server, changed by the admin API, the health checker and the drain task.
#[derive(Debug)]
pub(crate) struct ServerState {
    pub(crate) health: HealthTracker,
    pub(crate) last_check_error: Option<String>,
    /// `Some` while draining: when the drain started to be forced, and the drain's number (a re-registration
    /// or a new deregistration makes older drain tasks stop).
    pub(crate) drain: Option<Drain>,
    pub(crate) drain_epoch: u64,
    /// Set once the server is being removed; a registration that finds it set adds a fresh server.
    pub(crate) removing: bool,
}

/// An ongoing drain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drain {
    pub(crate) deadline: Instant,
    pub(crate) epoch: u64,
}

/// One server (`host:port`) in one group.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) address: String,
    pub(crate) authority: Authority,
    /// Registered and not draining or removed; checked by requests after counting themselves in flight.
    accepting: AtomicBool,
    pub(crate) state: Mutex<ServerState>,
    pub(crate) counters: Counters,
    /// Figures of the current traffic window (answers it gave).
    pub(crate) window: Recorder,
    /// Cancelled when the server leaves the group: stops its health checks and aborts requests still in
    /// flight (only a forced removal can leave any).
    pub(crate) removed: CancellationToken,
}

impl Server {
    pub(crate) fn new(address: String, authority: Authority) -> Self {
        Self {
            address,
            authority,
            accepting: AtomicBool::new(true),
            state: Mutex::new(ServerState {
                health: HealthTracker::new(),
                last_check_error: None,
                drain: None,
                drain_epoch: 0,
                removing: false,
            }),
            counters: Counters::default(),
            window: Recorder::default(),
            removed: CancellationToken::new(),
        }
    }

    pub(crate) fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    pub(crate) fn set_accepting(&self, v: bool) {
        self.accepting.store(v, Ordering::SeqCst);
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.counters.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn view(&self, group: &str) -> ServerView {
        let st = lock(&self.state);
        let healthy = st.health.is_healthy();
        let draining = st.drain.is_some();
        ServerView {
            group: group.to_owned(),
            address: self.address.clone(),
            phase: if draining {
                ServerPhase::Draining
            } else {
                ServerPhase::Active
            },
            healthy,
            eligible: healthy && !draining,
            in_flight: self.in_flight(),
            last_check_error: st.last_check_error.clone(),
            drain_remaining_ms: st.drain.map(|d| {
                let left = d.deadline.saturating_duration_since(Instant::now());
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            }),
            counters: self.counters.view(),
        }
    }
}

/// A named set of servers with its health check and counters.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) health: HealthCheckSpec,
    members: Mutex<BTreeMap<String, Arc<Server>>>,
    /// The servers requests may go to now, rebuilt on every membership, health or drain change so the
    /// request path only clones an `Arc`.
    eligible: RwLock<Arc<[Arc<Server>]>>,
    ticket: AtomicUsize,
    pub(crate) counters: Counters,
    /// Figures of the current traffic window (every answer to a request sent to the group).
    pub(crate) window: Recorder,
}

impl Group {
    pub(crate) fn new(name: String, health: HealthCheckSpec) -> Self {
        Self {
            name,
            health,
            members: Mutex::new(BTreeMap::new()),
            eligible: RwLock::new(Arc::from(Vec::new())),
            ticket: AtomicUsize::new(0),
            counters: Counters::default(),
            window: Recorder::default(),
        }
    }

    /// The server with this address, if it is in the group.
    pub(crate) fn server(&self, address: &str) -> Option<Arc<Server>> {
        lock(&self.members).get(address).cloned()
    }

    /// All servers, by address.
    pub(crate) fn servers(&self) -> Vec<Arc<Server>> {
        lock(&self.members).values().cloned().collect()
    }

    /// Adds `server` unless one with its address is there; returns the one in the group and whether it is new.
    pub(crate) fn insert(&self, server: Server) -> (Arc<Server>, bool) {
        let mut members = lock(&self.members);
        if let Some(existing) = members.get(&server.address) {
            return (existing.clone(), false);
        }
        let server = Arc::new(server);
        members.insert(server.address.clone(), server.clone());
        self.rebuild(&members);
        (server, true)
    }

    /// Removes exactly this server (not a newer one with the same address); cancels its token.
    pub(crate) fn remove(&self, server: &Arc<Server>) {
        let mut members = lock(&self.members);
        if members
            .get(&server.address)
            .is_some_and(|s| Arc::ptr_eq(s, server))
        {
            members.remove(&server.address);
            self.rebuild(&members);
        }
        server.set_accepting(false);
        server.removed.cancel();
    }

    /// Recomputes the eligible list after a health or drain change.
    pub(crate) fn refresh(&self) {
        let members = lock(&self.members);
        self.rebuild(&members);
    }

    fn rebuild(&self, members: &BTreeMap<String, Arc<Server>>) {
        let list: Vec<Arc<Server>> = members
            .values()
            .filter(|s| s.accepting() && lock(&s.state).health.is_healthy())
            .cloned()
            .collect();
        let mut slot = self
            .eligible
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Arc::from(list);
    }

    /// Chooses a server round-robin among the eligible ones (skipping `avoid` when another exists) and
    /// counts the request in flight on it; `None` when no server is eligible.
    pub(crate) fn acquire(&self, avoid: Option<&Arc<Server>>) -> Option<InFlight> {
        // A few rounds at most: each failed round means a drain started between snapshot and check.
        for _ in 0..4 {
            let snapshot = self
                .eligible
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let avoid_idx = avoid.and_then(|a| snapshot.iter().position(|s| Arc::ptr_eq(s, a)));
            // A retry goes to the server after the one that failed, without taking a ticket, so the
            // rotation of other requests is not disturbed.
            let ticket = match avoid_idx {
                Some(i) => i,
                None => self.ticket.fetch_add(1, Ordering::Relaxed),
            };
            let idx = policy::round_robin(ticket, snapshot.len(), avoid_idx)?;
            let server = snapshot.get(idx)?.clone();
            server.counters.in_flight.fetch_add(1, Ordering::SeqCst);
            if server.accepting() {
                Counters::bump(&server.counters.requests);
                return Some(InFlight { server });
            }
            server.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        None
    }

    pub(crate) fn view(&self) -> crate::api::GroupView {
        crate::api::GroupView {
            name: self.name.clone(),
            health_check: self.health.clone(),
            servers: self.servers().iter().map(|s| s.view(&self.name)).collect(),
            counters: self.counters.view(),
        }
    }
}

/// A request counted in flight on a server until dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) server: Arc<Server>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.server
            .counters
            .in_flight
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// A client request counted in flight on its group until dropped.
#[derive(Debug)]
pub(crate) struct GroupInFlight {
    pub(crate) group: Arc<Group>,
}

impl GroupInFlight {
    pub(crate) fn new(group: Arc<Group>) -> Self {
        Counters::bump(&group.counters.requests);
        group.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        Self { group }
    }
}

impl Drop for GroupInFlight {
    fn drop(&mut self) {
        self.group.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
