//! Picking a port to listen on later, for set-ups that must tell a port to a process before that process binds
//! it (the demo's apps, started by hooks; test back ends).
//!
//! Asking the OS with `bind(:0)` returns a port from the ephemeral range, the same range the kernel hands out as
//! the source port of every outgoing connection: under load (a load generator opening a connection per request)
//! such a port is soon taken by some client socket, and the later `bind` fails with "address in use". A port
//! below the ephemeral range is never handed out by the kernel, so once it is seen free it stays free unless
//! somebody binds it on purpose.

use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the search starts: clear of the well-known and most registered service ports.
const LOWEST: u16 = 10_000;
/// Linux's default ephemeral range starts here; used when `/proc` cannot be read.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;
/// Candidates tried before giving up on the low range.
const ATTEMPTS: u32 = 500;

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// A TCP port on `ip` that is free now and lies below the ephemeral range when the range leaves room for one
/// (otherwise whatever `bind(:0)` gives). Candidates are spread pseudo-randomly (process id, clock, a counter)
/// so that concurrent callers rarely try the same one.
pub fn free_listen_port(ip: IpAddr) -> std::io::Result<u16> {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let top = ephemeral_start();
    if top > LOWEST {
        let span = u32::from(top - LOWEST);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut x = std::process::id()
            ^ nanos
            ^ CALLS
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9);
        for _ in 0..ATTEMPTS {
            // A 32-bit xorshift step: cheap, and good enough to spread candidates.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let port = LOWEST + u16::try_from(x % span).unwrap_or(0);
            if TcpListener::bind((ip, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ports_are_free_and_below_the_ephemeral_range() -> std::io::Result<()> {
        let top = ephemeral_start();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let port = free_listen_port(ip)?;
            assert!(
                (LOWEST..top).contains(&port),
                "{port} not in {LOWEST}..{top}"
            );
            // Free: binding it works.
            drop(TcpListener::bind((ip, port))?);
            seen.insert(port);
        }
        assert!(seen.len() > 10, "candidates should spread: {seen:?}");
        Ok(())
    }

    #[test]
    fn a_taken_port_is_not_returned() -> std::io::Result<()> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let held: Vec<TcpListener> = (0..50)
            .filter_map(|_| free_listen_port(ip).ok())
            .filter_map(|p| TcpListener::bind((ip, p)).ok())
            .collect();
        let taken: Vec<u16> = held
            .iter()
            .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
            .collect();
        for _ in 0..50 {
            let port = free_listen_port(ip)?;
            assert!(!taken.contains(&port), "{port} is held by this test");
        }
        Ok(())
    }
}
