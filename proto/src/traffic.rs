//! Weighted traffic and windowed figures: what a load balancer (built-in or HAProxy, through
//! `rollcage_lbdriver`) reports to whoever judges a canary, and what crosses the built-in LB's admin API.
//!
//! - [`Weight`]: the percentage (0–100) of a backend service's new requests that go to a second ("new") server
//!   group; the rest go to the group the service points at.
//! - [`TrafficWindow`]: per server group and per server, the requests, 5xx answers and latency of one interval
//!   of time, with the [`WindowMark`] to pass back to read the next interval.
//!
//! **Window semantics.** A window is the interval between two marks. Every figure of every group and server in
//! one window covers the same interval (both groups of a canary are judged over the same requests' time), and
//! each request is counted in exactly one window: the one in which its answer (response head, or the LB's own
//! error answer) was produced. Reading with the mark of the previous reading gives the next interval with no gap
//! or overlap; a reader keeps its own mark, so two readers never shorten each other's intervals.
//!
//! **Latency.** The built-in LB keeps a histogram of exactly the window's requests ([`Latency::Percentiles`]).
//! HAProxy keeps no latency per interval: `show stat` gives `rtime`/`ttime`, averages over each proxy's or
//! server's last 1024 requests at the time of reading ([`Latency::Average`]), which may reach back before the
//! window. [`Latency::p99_or_average_ms`] is the one figure a comparison can use with either.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Percent (0–100) of a backend service's new requests sent to the new server group.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Weight(u8);

/// A weight above 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightOutOfRange(pub u64);

impl fmt::Display for WeightOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "weight {} is out of range: expected a percentage from 0 to 100",
            self.0
        )
    }
}

impl std::error::Error for WeightOutOfRange {}

impl Weight {
    /// Nothing on the new group.
    pub const ZERO: Self = Self(0);
    /// Everything on the new group.
    pub const FULL: Self = Self(100);

    /// A weight from a percentage; refused above 100.
    pub fn new(percent: u64) -> Result<Self, WeightOutOfRange> {
        u8::try_from(percent)
            .ok()
            .filter(|p| *p <= 100)
            .map(Self)
            .ok_or(WeightOutOfRange(percent))
    }

    /// The percentage.
    pub fn percent(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Weight {
    type Error = WeightOutOfRange;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Self::new(u64::from(v))
    }
}

impl From<Weight> for u8 {
    fn from(w: Weight) -> u8 {
        w.0
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %", self.0)
    }
}

/// How a backend service's traffic is split now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficSplit {
    /// The group the service points at; it gets `100 - weight` % of the requests.
    pub active_group: String,
    /// The second group, when a split is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_group: Option<String>,
    /// Percent of new requests on `new_group` (0 without one).
    pub weight: Weight,
}

/// Latency of a window's requests, in milliseconds; says which kind of figure it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Latency {
    /// No request was answered in the window (built-in LB), or HAProxy has no average yet.
    None,
    /// Percentiles of exactly the window's requests (built-in LB: time from the request's arrival to the
    /// response head, or to the LB's own error answer; 1 % precision).
    Percentiles {
        /// Median.
        p50_ms: f64,
        /// 90th percentile.
        p90_ms: f64,
        /// 99th percentile.
        p99_ms: f64,
        /// Slowest.
        max_ms: f64,
        /// Mean.
        mean_ms: f64,
    },
    /// HAProxy's averages, not per window: over the last `over_last_requests` requests at the time of reading.
    Average {
        /// `rtime`: average time to the response head.
        response_ms: f64,
        /// `ttime`: average total time of the session.
        total_ms: f64,
        /// How many of the latest requests the averages cover (1024 in HAProxy).
        over_last_requests: u32,
    },
}

impl Latency {
    /// The figure to compare between groups: the 99th percentile when the LB keeps one, else the average
    /// response time (HAProxy); `None` without requests.
    pub fn p99_or_average_ms(&self) -> Option<f64> {
        match *self {
            Self::None => None,
            Self::Percentiles { p99_ms, .. } => Some(p99_ms),
            Self::Average { response_ms, .. } => Some(response_ms),
        }
    }

    /// True when the figures are averages over the LB's latest requests rather than this window's percentiles.
    pub fn is_average(&self) -> bool {
        matches!(self, Self::Average { .. })
    }
}

/// Figures of one group or server in one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowFigures {
    /// Requests answered in the window (the LB's own 502/503/504 included).
    pub requests: u64,
    /// Of those, answers with status 500–599 (the LB's own included).
    pub responses_5xx: u64,
    /// Their latency.
    pub latency: Latency,
}

impl WindowFigures {
    /// No request.
    pub const EMPTY: Self = Self {
        requests: 0,
        responses_5xx: 0,
        latency: Latency::None,
    };

    /// `responses_5xx / requests`; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.responses_5xx as f64 / self.requests as f64)
    }
}

/// Figures of one server in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerWindow {
    /// The instance, `host:port`.
    pub instance: String,
    /// The LB's own name for it (HAProxy server name; the address for the built-in LB).
    pub name: String,
    /// Its figures.
    pub figures: WindowFigures,
}

/// Figures of one server group, and of each of its servers, in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupWindow {
    /// The group.
    pub group: String,
    /// The group's figures (they include requests of servers that left the group during the window).
    pub figures: WindowFigures,
    /// Its servers now.
    pub servers: Vec<ServerWindow>,
}

/// Where a reading ended: pass it back to read the next interval. Opaque to callers, but serialisable so a
/// coordinator can persist it and resume after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowMark {
    /// The built-in LB: the id of the window that ended at the mark, in that LB process.
    Builtin {
        /// Identifies the LB process (a restarted LB numbers its windows anew).
        lb: String,
        /// Last window included.
        window: u64,
        /// When the window ended (Unix milliseconds).
        at_unix_ms: u64,
    },
    /// HAProxy: its cumulative counters at the mark.
    Haproxy {
        /// `Pid` of the worker in `show info` (a reload restarts the counters).
        pid: u64,
        /// When the counters were read (Unix milliseconds).
        at_unix_ms: u64,
        /// `req_tot` and `hrsp_5xx` by `backend` (`BACKEND` row) and `backend/server`.
        counters: BTreeMap<String, [u64; 2]>,
    },
}

impl WindowMark {
    /// When the mark was taken (Unix milliseconds).
    pub fn at_unix_ms(&self) -> u64 {
        match self {
            Self::Builtin { at_unix_ms, .. } | Self::Haproxy { at_unix_ms, .. } => *at_unix_ms,
        }
    }
}

/// Figures of the requested groups over one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficWindow {
    /// Where this interval ended: the `since` of the next reading.
    pub mark: WindowMark,
    /// Start of the interval (Unix milliseconds): the `since` mark's time, or when the LB's counters started
    /// when there was none (or the LB restarted).
    pub start_unix_ms: u64,
    /// End of the interval (Unix milliseconds).
    pub end_unix_ms: u64,
    /// True when the LB's counters restarted after the `since` mark (LB restart, HAProxy reload): the figures
    /// cover only the time since then.
    pub reset: bool,
    /// One entry per requested group, in the order asked.
    pub groups: Vec<GroupWindow>,
}

impl TrafficWindow {
    /// The figures of `group`.
    pub fn group(&self, group: &str) -> Option<&GroupWindow> {
        self.groups.iter().find(|g| g.group == group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_a_percentage() {
        assert_eq!(Weight::new(10).map(Weight::percent), Ok(10));
        assert_eq!(Weight::new(100), Ok(Weight::FULL));
        assert_eq!(Weight::new(101), Err(WeightOutOfRange(101)));
        assert_eq!(Weight::new(300), Err(WeightOutOfRange(300)));
        assert_eq!(
            serde_json::to_string(&Weight::FULL).ok().as_deref(),
            Some("100")
        );
        assert!(serde_json::from_str::<Weight>("101").is_err());
        assert_eq!(
            serde_json::from_str::<Weight>("50").ok(),
            Weight::new(50).ok()
        );
    }

    #[test]
    fn marks_survive_a_round_trip_through_json() -> Result<(), serde_json::Error> {
        let marks = [
            WindowMark::Builtin {
                lb: "1a2b-3c".to_owned(),
                window: 7,
                at_unix_ms: 1_700_000_000_000,
            },
            WindowMark::Haproxy {
                pid: 42,
                at_unix_ms: 1_700_000_000_000,
                counters: BTreeMap::from([("bk_green/g1".to_owned(), [100, 3])]),
            },
        ];
        for m in marks {
            let text = serde_json::to_string(&m)?;
            assert_eq!(serde_json::from_str::<WindowMark>(&text)?, m, "{text}");
            assert_eq!(m.at_unix_ms(), 1_700_000_000_000);
        }
        Ok(())
    }

    #[test]
    fn latency_says_what_it_is() -> Result<(), serde_json::Error> {
        let avg = Latency::Average {
            response_ms: 12.0,
            total_ms: 14.0,
            over_last_requests: 1024,
        };
        assert!(avg.is_average());
        assert_eq!(avg.p99_or_average_ms(), Some(12.0));
        let json = serde_json::to_value(avg)?;
        assert_eq!(json["kind"], "average");
        let p = Latency::Percentiles {
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            max_ms: 4.0,
            mean_ms: 1.5,
        };
        assert_eq!(p.p99_or_average_ms(), Some(3.0));
        assert_eq!(Latency::None.p99_or_average_ms(), None);
        assert_eq!(WindowFigures::EMPTY.error_rate(), None);
        Ok(())
    }
}
