//! Live traffic through the load balancer: worker threads sending `GET /` back to back (HTTP/1.0, a new
//! connection each, the harder case for draining), counting answered and failed requests. A request fails on
//! any connection error, timeout or non-200 answer — except the 500s a revision injects on purpose (the demo
//! app's `--fail-percent`, whose answer names its version): those are counted per version, so the demo can tell
//! the errors of a canary it expected to be aborted from any other. Also one-off probes of the version served.

use std::collections::BTreeMap;
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
    /// Failed ones, injected 500s aside.
    pub failed: u64,
    /// 500s a revision injected on purpose (all versions).
    pub injected: u64,
}

impl Snapshot {
    /// The requests between `earlier` and this snapshot.
    pub fn since(self, earlier: Snapshot) -> Snapshot {
        Snapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            failed: self.failed.saturating_sub(earlier.failed),
            injected: self.injected.saturating_sub(earlier.injected),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    failed: AtomicU64,
    injected: AtomicU64,
    /// Injected 500s by version.
    injected_by: Mutex<BTreeMap<String, u64>>,
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
                    match result {
                        Ok(_) => {}
                        Err(Failure::Injected { version }) => {
                            counters.injected.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut by) = counters.injected_by.lock() {
                                *by.entry(version).or_default() += 1;
                            }
                        }
                        Err(Failure::Other(e)) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut first) = counters.first_failure.lock() {
                                first.get_or_insert(e);
                            }
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
            injected: self.counters.injected.load(Ordering::Relaxed),
        }
    }

    /// The injected 500s so far, by version.
    pub fn injected_by(&self) -> BTreeMap<String, u64> {
        self.counters
            .injected_by
            .lock()
            .map(|by| by.clone())
            .unwrap_or_default()
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

/// Why a request did not get a 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A 500 the app of `version` answered on purpose (`--fail-percent`).
    Injected {
        /// The revision that answered.
        version: String,
    },
    /// Anything else: what went wrong.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Injected { version } => write!(f, "a 500 injected by {version}"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

/// The marker of an injected failure in the demo app's answer (`<version> <instance> injected failure …`).
const INJECTED: &str = "injected failure";

/// One `GET /`; the body (`<version> <instance>`) of a 200, or why not.
pub fn get(addr: SocketAddr) -> Result<String, Failure> {
    get_raw(addr)
        .map_err(Failure::Other)
        .and_then(|resp| parse_answer(&resp))
}

/// The whole answer to one `GET /`.
fn get_raw(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    Ok(resp)
}

/// The body of a 200 answer, or why it is not one.
pub fn parse_answer(resp: &str) -> Result<String, Failure> {
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| Failure::Other(format!("no HTTP head in {:?}", truncate(resp))))?;
    let status = head.lines().next().unwrap_or("");
    let code = |c: &str| {
        status.starts_with(&format!("HTTP/1.1 {c}")) || status.starts_with(&format!("HTTP/1.0 {c}"))
    };
    if code("500") && body.contains(INJECTED) {
        return Err(Failure::Injected {
            version: version_of(body.trim()).to_owned(),
        });
    }
    if !code("200") {
        return Err(Failure::Other(format!(
            "answer `{status}`: {}",
            truncate(body.trim())
        )));
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
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| get(addr).map_err(|f| f.to_string()))
            .collect()
    })
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
        assert!(
            e.is_err_and(|e| e.to_string().contains("503") && e.to_string().contains("no healthy"))
        );
        assert!(parse_answer("").is_err());
        assert_eq!(
            parse_answer(
                "HTTP/1.1 500 Internal Server Error\r\n\r\nv5 i1 injected failure (--fail-percent)\n"
            ),
            Err(Failure::Injected {
                version: "v5".to_owned()
            })
        );
        // A 500 the app did not inject on purpose is a failure like any other.
        assert!(matches!(
            parse_answer("HTTP/1.1 500 Internal Server Error\r\n\r\nboom\n"),
            Err(Failure::Other(_))
        ));
        assert_eq!(version_of("v3 i4"), "v3");
        assert_eq!(version_of(""), "");
        assert_eq!(instance_of("v3 i4"), "i4");
    }

    #[test]
    fn snapshots_subtract() {
        let a = Snapshot {
            requests: 10,
            failed: 1,
            injected: 2,
        };
        let b = Snapshot {
            requests: 25,
            failed: 1,
            injected: 7,
        };
        assert_eq!(
            b.since(a),
            Snapshot {
                requests: 15,
                failed: 0,
                injected: 5,
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
