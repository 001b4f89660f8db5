//! Live traffic through the load balancer: a few worker threads sending `GET /` back to back (HTTP/1.0, a new
//! connection each, the harder case for draining), counting answered and failed requests. A request fails on
//! any connection error, timeout or non-200 answer. Also one-off probes of the version being served.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A connection that does not open within this is a failed request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An answer that does not come within this is a failed request (the app answers in tens of ms).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests that got an answer or failed.
    pub requests: u64,
    /// Failed ones.
    pub failed: u64,
}

impl Snapshot {
    /// The requests between `earlier` and this snapshot.
    pub fn since(self, earlier: Snapshot) -> Snapshot {
        Snapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

/// The running load generator; stops its workers when dropped.
#[derive(Debug)]
pub struct Traffic {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Traffic {
    /// Start `workers` threads sending requests to `addr`.
    pub fn start(addr: SocketAddr, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        for _ in 0..workers {
            let (stop, counters) = (stop.clone(), counters.clone());
            // Detached: a worker ends after its current request once `stop` is set.
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let result = get(addr);
                    if stop.load(Ordering::Relaxed) {
                        // The demo is tearing down: this request's fate says nothing about the deployments.
                        break;
                    }
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = result {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut first) = counters.first_failure.lock() {
                            first.get_or_insert(e);
                        }
                    }
                }
            });
        }
        Self { stop, counters }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.counters.requests.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// The first failure seen, if any.
    pub fn first_failure(&self) -> Option<String> {
        self.counters
            .first_failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
    }

    /// Stop the workers; returns the final counts.
    pub fn stop(&self) -> Snapshot {
        let snap = self.snapshot();
        self.stop.store(true, Ordering::Relaxed);
        snap
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One `GET /`; the body (`<version> <instance>`) of a 200, or what went wrong.
pub fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    parse_answer(&resp)
}

/// The body of a 200 answer, or why it is not one.
pub fn parse_answer(resp: &str) -> Result<String, String> {
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {:?}", truncate(resp)))?;
    let status = head.lines().next().unwrap_or("");
    if !(status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200")) {
        return Err(format!("answer `{status}`: {}", truncate(body.trim())));
    }
    Ok(body.trim().to_owned())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(120) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The version in an answer body (`v2 i3` → `v2`).
pub fn version_of(body: &str) -> &str {
    body.split_whitespace().next().unwrap_or("")
}

/// The instance in an answer body (`v2 i3` → `i3`).
pub fn instance_of(body: &str) -> &str {
    body.split_whitespace().nth(1).unwrap_or("")
}

/// Send `n` requests one after the other; the bodies answered, or the first failure.
pub async fn probe(addr: SocketAddr, n: usize) -> Result<Vec<String>, String> {
    tokio::task::spawn_blocking(move || (0..n).map(|_| get(addr)).collect())
        .await
        .map_err(|e| format!("probe task: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_and_non_200_is_a_failure() {
        assert_eq!(
            parse_answer("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nv2 i3\n"),
            Ok("v2 i3".to_owned())
        );
        let e = parse_answer("HTTP/1.1 503 Service Unavailable\r\n\r\nno healthy server\n");
        assert!(e.is_err_and(|e| e.contains("503") && e.contains("no healthy")));
        assert!(parse_answer("").is_err());
        assert_eq!(version_of("v3 i4"), "v3");
        assert_eq!(version_of(""), "");
        assert_eq!(instance_of("v3 i4"), "i4");
    }

    #[test]
    fn snapshots_subtract() {
        let a = Snapshot {
            requests: 10,
            failed: 1,
        };
        let b = Snapshot {
            requests: 25,
            failed: 1,
        };
        assert_eq!(
            b.since(a),
            Snapshot {
                requests: 15,
                failed: 0
            }
        );
    }

    #[test]
    fn traffic_counts_failures_against_a_closed_port() -> anyhow::Result<()> {
        // A port nobody listens on: every request fails fast with "connection refused".
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let t = Traffic::start(addr, 1);
        let begin = std::time::Instant::now();
        while t.snapshot().requests < 3 && begin.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = t.stop();
        assert!(s.requests >= 3);
        assert_eq!(s.failed, s.requests);
        assert!(t.first_failure().is_some_and(|f| f.contains("connecting")));
        Ok(())
    }
}
