//! Traffic windows from HAProxy's cumulative counters. Pure, no I/O.
//!
//! HAProxy keeps no per-interval figures: `show stat` has `req_tot` and `hrsp_5xx` counted since the worker
//! started, and `rtime`/`ttime`, averages over each backend's or server's last 1024 requests. A window is
//! therefore the difference between two readings of the counters; the first reading's counters travel in the
//! [`WindowMark`] (so a coordinator that persisted it resumes after a restart). A different worker `Pid`, or a
//! counter below the mark's, means HAProxy was reloaded or restarted: the window then covers the time since the
//! worker started and says `reset`. Latency is HAProxy's averages at the time of reading ([`Latency::Average`]):
//! they may include requests from before the window.

use super::stat::{Info, Stats};
use rollcage_proto::traffic::{
    GroupWindow, Latency, ServerWindow, TrafficWindow, WindowFigures, WindowMark,
};
use std::collections::BTreeMap;

/// The span of HAProxy's `rtime`/`ttime` averages (fixed in HAProxy: `TIME_STATS_SAMPLES`).
pub const AVERAGE_OVER_REQUESTS: u32 = 1024;

/// The window of `groups` (each `(group name, backend name)`) from the counters in `stats` (read at `now_ms`)
/// since `since`; `None`, or a mark of another driver kind, counts from the worker's start.
pub fn window(
    stats: &Stats,
    info: Info,
    groups: &[(&str, &str)],
    since: Option<&WindowMark>,
    now_ms: u64,
) -> Result<TrafficWindow, String> {
    let started_ms = now_ms.saturating_sub(info.uptime_sec.saturating_mul(1000));
    let base: Option<(&BTreeMap<String, [u64; 2]>, u64)> = match since {
        Some(WindowMark::Haproxy {
            pid,
            at_unix_ms,
            counters,
        }) if *pid == info.pid => Some((counters, *at_unix_ms)),
        _ => None,
    };
    // Reset: a mark was given but cannot be used (another worker, another driver kind), or a counter went back.
    let mut reset = since.is_some() && base.is_none();
    let mut counters = BTreeMap::new();
    let mut figures = |key: String, now: [u64; 2], latency: Latency| -> WindowFigures {
        let before = match base {
            Some((c, _)) => match c.get(&key) {
                Some(b) if b[0] <= now[0] && b[1] <= now[1] => *b,
                _ => {
                    reset = true;
                    [0, 0]
                }
            },
            None => [0, 0],
        };
        counters.insert(key, now);
        let requests = now[0] - before[0];
        WindowFigures {
            requests,
            responses_5xx: now[1] - before[1],
            latency: if requests == 0 {
                Latency::None
            } else {
                latency
            },
        }
    };
    let average = |rtime: u64, ttime: u64| Latency::Average {
        response_ms: rtime as f64,
        total_ms: ttime as f64,
        over_last_requests: AVERAGE_OVER_REQUESTS,
    };
    let mut out = Vec::with_capacity(groups.len());
    for (group, backend) in groups {
        let b = stats
            .backend(backend)
            .ok_or_else(|| format!("no backend `{backend}` (group `{group}`) in `show stat`"))?;
        let group_figures = figures(
            (*backend).to_owned(),
            [b.requests, b.hrsp_5xx],
            average(b.rtime_ms, b.ttime_ms),
        );
        let servers = stats
            .servers_of(backend)
            .map(|s| ServerWindow {
                instance: s.addr.clone(),
                name: s.name.clone(),
                figures: figures(
                    format!("{backend}/{}", s.name),
                    [s.requests, s.hrsp_5xx],
                    average(s.rtime_ms, s.ttime_ms),
                ),
            })
            .collect();
        out.push(GroupWindow {
            group: (*group).to_owned(),
            figures: group_figures,
            servers,
        });
    }
    let start_unix_ms = match base {
        Some((_, at)) if !reset => at,
        _ => started_ms,
    };
    Ok(TrafficWindow {
        mark: WindowMark::Haproxy {
            pid: info.pid,
            at_unix_ms: now_ms,
            counters,
        },
        start_unix_ms,
        end_unix_ms: now_ms,
        reset,
        groups: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::stat;

    fn stats(blue: [u64; 2], s1: [u64; 2], green: [u64; 2]) -> Result<Stats, String> {
        stat::parse(&format!(
            "# pxname,svname,qcur,scur,stot,status,addr,req_tot,hrsp_5xx,check_status,rtime,ttime\n\
             blue,s1,0,0,0,UP,10.0.0.1:80,{},{},L7OK,3,4\n\
             blue,BACKEND,0,0,0,UP,,{},{},,3,4\n\
             green,BACKEND,0,0,0,UP,,{},{},,300,301\n",
            s1[0], s1[1], blue[0], blue[1], green[0], green[1]
        ))
    }

    const INFO: Info = Info {
        pid: 7,
        uptime_sec: 100,
    };
    const GROUPS: [(&str, &str); 2] = [("old", "blue"), ("new", "green")];

    #[test]
    fn window_is_the_difference_between_two_readings() -> Result<(), String> {
        let first = window(
            &stats([10, 1], [10, 1], [5, 0])?,
            INFO,
            &GROUPS,
            None,
            1_000_000,
        )?;
        assert!(!first.reset);
        assert_eq!(
            first.start_unix_ms,
            1_000_000 - 100_000,
            "since the worker started"
        );
        assert_eq!(first.groups[0].figures.requests, 10);
        let next = window(
            &stats([110, 6], [110, 6], [25, 4])?,
            INFO,
            &GROUPS,
            Some(&first.mark),
            1_005_000,
        )?;
        assert!(!next.reset);
        assert_eq!(
            (next.start_unix_ms, next.end_unix_ms),
            (1_000_000, 1_005_000)
        );
        let old = next.group("old").ok_or("old")?;
        let new = next.group("new").ok_or("new")?;
        assert_eq!((old.figures.requests, old.figures.responses_5xx), (100, 5));
        assert_eq!((new.figures.requests, new.figures.responses_5xx), (20, 4));
        assert_eq!(old.servers[0].figures.requests, 100);
        assert_eq!(old.servers[0].instance, "10.0.0.1:80");
        assert!(new.figures.latency.is_average());
        assert_eq!(new.figures.latency.p99_or_average_ms(), Some(300.0));
        Ok(())
    }

    #[test]
    fn no_request_means_no_latency() -> Result<(), String> {
        let s = stats([10, 0], [10, 0], [5, 0])?;
        let first = window(&s, INFO, &GROUPS, None, 1_000)?;
        let next = window(&s, INFO, &GROUPS, Some(&first.mark), 2_000)?;
        assert_eq!(next.groups[1].figures, WindowFigures::EMPTY);
        Ok(())
    }

    #[test]
    fn a_reload_or_a_counter_going_back_is_a_reset() -> Result<(), String> {
        let first = window(
            &stats([10, 1], [10, 1], [5, 0])?,
            INFO,
            &GROUPS,
            None,
            1_000_000,
        )?;
        let reloaded = Info {
            pid: 8,
            uptime_sec: 2,
        };
        let next = window(
            &stats([3, 0], [3, 0], [1, 0])?,
            reloaded,
            &GROUPS,
            Some(&first.mark),
            1_005_000,
        )?;
        assert!(next.reset);
        assert_eq!(next.start_unix_ms, 1_003_000);
        assert_eq!(next.groups[0].figures.requests, 3);
        let back = window(
            &stats([3, 0], [3, 0], [1, 0])?,
            INFO,
            &GROUPS,
            Some(&first.mark),
            1_005_000,
        )?;
        assert!(back.reset);
        Ok(())
    }

    #[test]
    fn unknown_backend_is_named() -> Result<(), String> {
        let e = window(
            &stats([0, 0], [0, 0], [0, 0])?,
            INFO,
            &[("x", "bk_x")],
            None,
            0,
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("bk_x") && e.contains("`x`"), "{e}");
        Ok(())
    }
}
