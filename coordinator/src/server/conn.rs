//! The limits every client connection lives under, so that whoever can reach the coordinator's port cannot take it
//! off the air: a deadline on the TLS handshake and on each request's headers (which also ends idle keep-alive
//! connections), an idle deadline on request bodies (a stalled upload is dropped), a cap on connections served at
//! once (more wait in the kernel's listen backlog), and the open-file limit raised at start so the cap, not the
//! fd table, is what binds.
//!
//! Long polls and event streams are answers that take long, not requests that stall, so no deadline applies to
//! responses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-connection limits of the coordinator's listener.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Longest a client may take to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Longest a client may take to send a request's headers, counted from the connection's start or the end of
    /// its previous request: it also closes keep-alive connections left idle.
    pub header_read_timeout: Duration,
    /// Longest a request body may go without a byte arriving.
    pub body_idle_timeout: Duration,
    /// Most connections served at once (lowered to fit the open-file limit, see [`cap_for_fd_limit`]).
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            // A client on a slow link completes a handshake or sends its headers in well under a second; 10 s
            // leaves room for a loaded host and frees a slot held by a silent client soon enough.
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            // An upload over a bad link may pause; half a minute without a byte means it is gone.
            body_idle_timeout: Duration::from_secs(30),
            // Each agent holds one connection (its long poll) and operators a few: 8,192 serves a large fleet and
            // stays far below what the coordinator can hold in memory.
            max_connections: 8_192,
        }
    }
}

/// File descriptors kept back from connections: the database and its journal, bundles being uploaded or served,
/// the log, the listener itself.
pub const FD_RESERVE: u64 = 256;

/// Raise the soft open-file limit to the hard one (systemd starts services at 1,024 soft). Returns the soft limit
/// in effect afterwards, or `None` when it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the open-file limit");
                return Some(hard);
            }
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
            }
        }
    }
    Some(soft)
}

/// The connection cap in effect: `configured`, lowered so that the connections plus [`FD_RESERVE`] fit in
/// `fd_limit` (a connection is one descriptor). Never below 16, so a tiny limit still serves someone.
pub fn cap_for_fd_limit(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return configured.max(1);
    };
    let room = usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    configured.min(room).max(16)
}

/// Admission to the connection cap: one permit per connection served, held until the connection ends.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    cap: usize,
    full: AtomicBool,
}

impl Gate {
    /// A gate admitting `cap` connections at once.
    pub fn new(cap: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            full: AtomicBool::new(false),
        }
    }

    /// Wait for a free slot. Logs once when the cap is reached (and once when slots free up again), not per
    /// connection, so a flood does not flood the log too. `None` only if the gate were closed, which it never is.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            if self.full.swap(false, Ordering::Relaxed) {
                tracing::info!(cap = self.cap, "connections below the cap again");
            }
            return Some(p);
        }
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cap = self.cap,
                "connection cap reached: new connections wait in the listen backlog until one closes"
            );
        }
        self.permits.clone().acquire_owned().await.ok()
    }
}

/// Rate-limited logging of failed `accept`s (EMFILE under a flood would otherwise log every retry).
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    /// How often a persisting accept failure is logged.
    const EVERY: Duration = Duration::from_secs(10);

    /// Record a failed accept; logs the first one and then at most one line per [`Self::EVERY`] with a count.
    pub fn failed(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        match self.last_logged {
            Some(t) if now.duration_since(t) < Self::EVERY => self.suppressed += 1,
            _ => {
                tracing::warn!(error = %e, also_failed = self.suppressed, "accept failed; retrying in 50 ms");
                self.last_logged = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_fd_limit_with_a_reserve() {
        assert_eq!(cap_for_fd_limit(8_192, Some(1_024)), 768);
        assert_eq!(cap_for_fd_limit(8_192, Some(524_288)), 8_192);
        assert_eq!(cap_for_fd_limit(100, None), 100);
        assert_eq!(cap_for_fd_limit(8_192, Some(100)), 16, "a floor");
    }

    #[tokio::test]
    async fn the_gate_admits_up_to_its_cap_and_then_waits() {
        let gate = Arc::new(Gate::new(2));
        let a = gate.admit().await;
        let _b = gate.admit().await;
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.admit().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a third connection waits");
        drop(a);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .is_ok(),
            "admitted once one closed"
        );
    }
}
