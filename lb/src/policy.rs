//! Pure decisions of the load balancer, kept apart from sockets and tasks so they can be tested directly:
//! health-check thresholds, the round-robin choice, the weighted split between two groups, which requests may be retried, and validation of the
//! names and server addresses the admin API accepts.

use hyper::Method;
use hyper::http::uri::Authority;

/// Consecutive results needed to change a server's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive passing checks that make an unhealthy server healthy.
    pub healthy: u32,
    /// Consecutive failing checks that make a healthy server unhealthy.
    pub unhealthy: u32,
}

/// The health state machine of one server. A new server starts unhealthy: it gets traffic only after it has
/// passed `healthy` checks in a row, which is what makes "register and wait until healthy" observable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthTracker {
    healthy: bool,
    passes: u32,
    failures: u32,
}

impl HealthTracker {
    /// A tracker for a newly registered server (unhealthy, no history).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the server is currently considered healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one check result; returns the new health when it changed.
    pub fn observe(&mut self, passed: bool, t: Thresholds) -> Option<bool> {
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.healthy && self.passes >= t.healthy.max(1) {
                self.healthy = true;
                return Some(true);
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.healthy && self.failures >= t.unhealthy.max(1) {
                self.healthy = false;
                return Some(false);
            }
        }
        None
    }
}

/// Round-robin: the index to use among `len` eligible servers for ticket `ticket` (a counter that grows by one
/// per request). `avoid` is the index of a server that just failed to connect: it is skipped when another
/// server exists.
pub fn round_robin(ticket: usize, len: usize, avoid: Option<usize>) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let idx = ticket % len;
    match avoid {
        Some(bad) if bad == idx && len > 1 => Some((idx + 1) % len),
        _ => Some(idx),
    }
}

/// The weighted split: whether the request with ticket `ticket` (a counter that grows by one per request of the
/// service) goes to the new group when `percent` % should. Of every 100 consecutive tickets exactly `percent` go
/// there, spread evenly (at 10 %: tickets 9, 19, 29…), so the observed share matches the weight after a few
/// hundred requests instead of drifting like a coin toss, and one atomic counter is all the request path needs.
pub fn to_new_group(ticket: u64, percent: u8) -> bool {
    let p = u64::from(percent.min(100));
    let i = ticket % 100;
    (i + 1) * p / 100 > i * p / 100
}

/// Whether a request may be sent a second time to another server after the first server refused the
/// connection. Only idempotent methods (RFC 9110 §9.2.2) qualify, and only when the request has no body, so the
/// proxy can rebuild it without buffering; since nothing reached the first server, it cannot have acted on it.
pub fn may_retry(method: &Method, body_is_empty: bool) -> bool {
    body_is_empty
        && matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
}

/// Longest group or service name; names appear in URLs, logs and error messages.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a group or service name: 1–64 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "expected 1 to {MAX_NAME_LEN} characters, got {}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return Err("must not start with `.`".to_owned());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "character `{c}` not allowed; expected A-Z a-z 0-9 . _ -"
        )),
        None => Ok(()),
    }
}

/// Parses a server address `host:port` (IPv4, `[IPv6]` or a DNS name; port 1–65535). Userinfo (`a@b`) and
/// anything but a host and a port are refused: the address becomes the authority of upstream requests.
pub fn parse_server_address(addr: &str) -> Result<Authority, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_owned())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port `{port}` is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err("port 0 is not a server port".to_owned());
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && !host.starts_with(['-', '.'])
    };
    if !host_ok {
        return Err(format!(
            "host `{host}` is not an IPv4 address, [IPv6] address or DNS name"
        ));
    }
    addr.parse::<Authority>()
        .map_err(|e| format!("not a valid authority: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        healthy: 2,
        unhealthy: 3,
    };

    #[test]
    fn new_server_needs_consecutive_passes() {
        let mut h = HealthTracker::new();
        assert!(!h.is_healthy());
        assert_eq!(h.observe(true, T), None);
        assert_eq!(h.observe(false, T), None);
        assert_eq!(h.observe(true, T), None);
        assert_eq!(h.observe(true, T), Some(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn healthy_server_goes_down_after_consecutive_failures() {
        let mut h = HealthTracker::new();
        h.observe(true, T);
        h.observe(true, T);
        assert_eq!(h.observe(false, T), None);
        assert_eq!(h.observe(false, T), None);
        assert_eq!(h.observe(true, T), None);
        assert_eq!(h.observe(false, T), None);
        assert_eq!(h.observe(false, T), None);
        assert_eq!(h.observe(false, T), Some(false));
        assert!(!h.is_healthy());
    }

    #[test]
    fn round_robin_cycles_and_skips_the_failed_server() {
        let picks: Vec<_> = (0..6).filter_map(|t| round_robin(t, 3, None)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(round_robin(4, 3, Some(1)), Some(2));
        assert_eq!(round_robin(4, 3, Some(0)), Some(1));
        assert_eq!(round_robin(5, 1, Some(0)), Some(0));
        assert_eq!(round_robin(5, 0, None), None);
    }

    #[test]
    fn split_sends_exactly_the_weight_per_hundred_requests() {
        for percent in [0u8, 1, 10, 33, 50, 90, 99, 100] {
            for start in [0u64, 7, 1_000_003] {
                let hits = (start..start + 100)
                    .filter(|t| to_new_group(*t, percent))
                    .count();
                assert_eq!(
                    hits,
                    usize::from(percent),
                    "{percent} % from ticket {start}"
                );
            }
        }
        // Spread evenly: at 50 % never two in a row.
        assert!((0..100u64).all(|t| to_new_group(t, 50) != to_new_group(t + 1, 50)));
        assert!(!to_new_group(5, 0) && to_new_group(5, 100) && to_new_group(5, 200));
    }

    #[test]
    fn only_idempotent_bodiless_requests_are_retried() {
        assert!(may_retry(&Method::GET, true));
        assert!(may_retry(&Method::PUT, true));
        assert!(!may_retry(&Method::POST, true));
        assert!(!may_retry(&Method::PATCH, true));
        assert!(!may_retry(&Method::GET, false));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("blue").is_ok());
        assert!(check_name("app1_green-2.v").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(".hidden").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn server_addresses_are_checked() {
        assert!(parse_server_address("127.0.0.1:8080").is_ok());
        assert!(parse_server_address("[::1]:80").is_ok());
        assert!(parse_server_address("app-1.internal:443").is_ok());
        assert!(parse_server_address("127.0.0.1").is_err());
        assert!(parse_server_address("127.0.0.1:0").is_err());
        assert!(parse_server_address("127.0.0.1:70000").is_err());
        assert!(parse_server_address("user@host:80").is_err());
        assert!(parse_server_address("[zz]:80").is_err());
        assert!(parse_server_address(":80").is_err());
    }
}
