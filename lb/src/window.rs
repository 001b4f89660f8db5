//! Traffic windows: per server group and per server, the requests answered, the 5xx among them and a latency
//! histogram, cut into numbered windows that the admin API reads.
//!
//! **Recording** (the request path) is one uncontended lock: every group and server has a [`Recorder`] of a few
//! shards (one per core, up to 8), each a mutex over counters and an HDR histogram; a thread always uses the same
//! shard, so two worker threads never wait for each other, and there is no lock shared by all requests.
//!
//! **Cutting** (`POST /v1/windows`) closes the current window of *every* group and server at once: under the
//! log's lock it empties each recorder into window `N`, so the old and the new group of a canary are always
//! compared over the same interval. Window `N` covers the time from cut `N-1` (or the LB's start) to cut `N`;
//! each request is counted in the window in which its answer was produced (response head, or the LB's own
//! error answer), in exactly one window. The last [`RETAINED_WINDOWS`] windows are kept, so any reader can read
//! window `N` again (`GET /v1/windows/N`) and get the same figures, and a reader that keeps its own mark reads
//! "everything since window `M`" (`since=M`: windows `M+1..=N` merged) without being disturbed by other
//! readers' cuts.
//!
//! Latency is the time from the request's arrival to its response head (HAProxy's `rtime` measures the same),
//! recorded in microseconds with two significant digits (1 % precision), up to one hour (longer values count
//! as one hour).

use crate::api::WindowReport;
use crate::error::ControlError;
use crate::group::{Group, lock};
use hdrhistogram::Histogram;
use rollcage_proto::traffic::{GroupWindow, Latency, ServerWindow, WindowFigures};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Windows kept for re-reading and for `since`: 32 intervals of a canary analysis (5 s each: over 2.5 min)
/// while bounding memory (a window holds one histogram of a few KiB per group and server that had traffic).
pub const RETAINED_WINDOWS: usize = 32;

/// Largest latency told apart: one hour (a response head never takes longer than the response timeout).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Two significant digits: percentiles within 1 %, enough to compare groups, at 24 KiB a histogram.
const SIGNIFICANT_DIGITS: u8 = 2;
/// Shards of a recorder: enough that worker threads (one per core) do not share one.
const MAX_SHARDS: usize = 8;

/// An empty latency histogram; `None` only if the constant bounds above were invalid (a unit test proves
/// they are not).
fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS).ok()
}

fn shard_count() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, MAX_SHARDS)
}

/// The shard of the calling thread: threads are numbered once, in the order they first record.
fn shard_of_thread(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s) % shards.max(1)
}

/// Figures of one group or server: live in a recorder shard, or closed in a window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    requests: u64,
    responses_5xx: u64,
    /// `None` when empty in a closed window (no memory for idle servers).
    latency: Option<Histogram<u64>>,
}

impl Tally {
    fn live() -> Self {
        Self {
            latency: new_histogram(),
            ..Self::default()
        }
    }

    /// Adds `other`'s figures.
    fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.responses_5xx += other.responses_5xx;
        if let Some(h) = other.latency.as_ref().filter(|h| !h.is_empty()) {
            match &mut self.latency {
                // Same bounds everywhere, so adding cannot fail.
                Some(mine) => {
                    let _ = mine.add(h);
                }
                None => self.latency = Some(h.clone()),
            }
        }
    }

    /// The figures as the API shows them.
    pub(crate) fn figures(&self) -> WindowFigures {
        let latency = match self.latency.as_ref().filter(|h| !h.is_empty()) {
            None => Latency::None,
            Some(h) => {
                let ms = |us: u64| us as f64 / 1000.0;
                Latency::Percentiles {
                    p50_ms: ms(h.value_at_quantile(0.50)),
                    p90_ms: ms(h.value_at_quantile(0.90)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                    mean_ms: h.mean() / 1000.0,
                }
            }
        };
        WindowFigures {
            requests: self.requests,
            responses_5xx: self.responses_5xx,
            latency,
        }
    }
}

/// The live figures of one group or server since the last cut.
#[derive(Debug)]
pub(crate) struct Recorder {
    shards: Box<[Mutex<Tally>]>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            shards: (0..shard_count())
                .map(|_| Mutex::new(Tally::live()))
                .collect(),
        }
    }
}

impl Recorder {
    /// Counts one answered request.
    pub(crate) fn record(&self, is_5xx: bool, latency: Duration) {
        let Some(shard) = self.shards.get(shard_of_thread(self.shards.len())) else {
            return;
        };
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut t = lock(shard);
        t.requests += 1;
        if is_5xx {
            t.responses_5xx += 1;
        }
        if let Some(h) = &mut t.latency {
            h.saturating_record(us);
        }
    }

    /// Empties the recorder: what was recorded since the last call.
    fn take(&self) -> Tally {
        let mut out = Tally::default();
        for shard in &self.shards {
            let mut t = lock(shard);
            out.merge(&t);
            t.requests = 0;
            t.responses_5xx = 0;
            if let Some(h) = &mut t.latency {
                h.reset();
            }
        }
        out
    }
}

/// One closed window.
#[derive(Debug)]
struct Closed {
    id: u64,
    start_ms: u64,
    end_ms: u64,
    groups: Vec<ClosedGroup>,
}

#[derive(Debug)]
struct ClosedGroup {
    name: String,
    tally: Tally,
    servers: Vec<(String, Tally)>,
}

#[derive(Debug)]
struct Log {
    last_id: u64,
    last_end_ms: u64,
    retained: VecDeque<Closed>,
}

/// The numbered windows of one LB process.
#[derive(Debug)]
pub(crate) struct Windows {
    /// Names this LB process: window ids restart with the process, so a mark names the process it came from.
    lb: String,
    log: Mutex<Log>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Windows {
    pub(crate) fn new() -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            lb: format!("{:x}-{:x}", std::process::id(), started.as_nanos()),
            log: Mutex::new(Log {
                last_id: 0,
                last_end_ms: now_ms(),
                retained: VecDeque::new(),
            }),
        }
    }

    /// Closes the current window of every group (and its servers): returns its id.
    pub(crate) fn cut(&self, groups: &[Arc<Group>]) -> u64 {
        let mut log = lock(&self.log);
        let closed: Vec<ClosedGroup> = groups
            .iter()
            .map(|g| ClosedGroup {
                name: g.name.clone(),
                tally: g.window.take(),
                servers: g
                    .servers()
                    .iter()
                    .map(|s| (s.address.clone(), s.window.take()))
                    .collect(),
            })
            .collect();
        let end_ms = now_ms().max(log.last_end_ms);
        log.last_id += 1;
        let window = Closed {
            id: log.last_id,
            start_ms: log.last_end_ms,
            end_ms,
            groups: closed,
        };
        log.last_end_ms = end_ms;
        log.retained.push_back(window);
        while log.retained.len() > RETAINED_WINDOWS {
            log.retained.pop_front();
        }
        log.last_id
    }

    /// The figures of windows `since+1..=id` (default `since`: `id - 1`, window `id` alone). A mark from another
    /// LB process (`lb` differs) or one older than the retained windows gives the retained windows up to `id`
    /// with `reset` set.
    pub(crate) fn report(
        &self,
        id: u64,
        since: Option<u64>,
        lb: Option<&str>,
    ) -> Result<WindowReport, ControlError> {
        let log = lock(&self.log);
        if id == 0 || id > log.last_id {
            return Err(ControlError::WindowNotFound {
                id,
                last: log.last_id,
            });
        }
        let foreign = lb.is_some_and(|l| l != self.lb);
        let mut since = if foreign { 0 } else { since.unwrap_or(id - 1) };
        if since >= id {
            return Err(ControlError::BadRequest(format!(
                "since={since}: expected a window id below {id}"
            )));
        }
        let oldest = log.retained.front().map_or(id, |w| w.id);
        let mut reset = foreign;
        if since + 1 < oldest {
            // Windows of the interval asked for were dropped: report what is kept, flagged.
            reset = true;
            since = oldest - 1;
        }
        let range: Vec<&Closed> = log
            .retained
            .iter()
            .filter(|w| w.id > since && w.id <= id)
            .collect();
        let mut groups: Vec<ClosedGroup> = Vec::new();
        for w in &range {
            for g in &w.groups {
                let slot = match groups.iter().position(|m| m.name == g.name) {
                    Some(i) => i,
                    None => {
                        groups.push(ClosedGroup {
                            name: g.name.clone(),
                            tally: Tally::default(),
                            servers: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                let Some(merged) = groups.get_mut(slot) else {
                    continue;
                };
                merged.tally.merge(&g.tally);
                for (addr, t) in &g.servers {
                    match merged.servers.iter_mut().find(|(a, _)| a == addr) {
                        Some((_, mine)) => mine.merge(t),
                        None => merged.servers.push((addr.clone(), t.clone())),
                    }
                }
            }
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(WindowReport {
            lb: self.lb.clone(),
            id,
            since,
            start_unix_ms: range.first().map_or(0, |w| w.start_ms),
            end_unix_ms: range.last().map_or(0, |w| w.end_ms),
            reset,
            groups: groups
                .into_iter()
                .map(
                    |ClosedGroup {
                         name,
                         tally,
                         mut servers,
                     }| {
                        servers.sort_by(|a, b| a.0.cmp(&b.0));
                        GroupWindow {
                            group: name,
                            figures: tally.figures(),
                            servers: servers
                                .into_iter()
                                .map(|(addr, t)| ServerWindow {
                                    instance: addr.clone(),
                                    name: addr,
                                    figures: t.figures(),
                                })
                                .collect(),
                        }
                    },
                )
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bounds_are_valid() {
        assert!(new_histogram().is_some());
    }

    #[test]
    fn recorder_counts_and_empties() {
        let r = Recorder::default();
        for i in 0..100u64 {
            r.record(
                i % 10 == 0,
                Duration::from_millis(if i < 98 { 1 } else { 300 }),
            );
        }
        let t = r.take();
        let f = t.figures();
        assert_eq!((f.requests, f.responses_5xx), (100, 10));
        let Latency::Percentiles {
            p50_ms,
            p99_ms,
            max_ms,
            ..
        } = f.latency
        else {
            panic!("expected percentiles, got {:?}", f.latency);
        };
        assert!((0.99..=1.01).contains(&p50_ms), "{p50_ms}");
        assert!((297.0..=303.0).contains(&p99_ms), "{p99_ms}");
        assert!((297.0..=303.0).contains(&max_ms), "{max_ms}");
        let again = r.take().figures();
        assert_eq!(again, WindowFigures::EMPTY);
    }

    #[test]
    fn merging_tallies_adds_counts_and_histograms() {
        let (a, b) = (Recorder::default(), Recorder::default());
        a.record(false, Duration::from_millis(10));
        b.record(true, Duration::from_millis(20));
        let mut t = a.take();
        t.merge(&b.take());
        t.merge(&Tally::default());
        let f = t.figures();
        assert_eq!((f.requests, f.responses_5xx), (2, 1));
        assert!(
            matches!(f.latency, Latency::Percentiles { max_ms, .. } if (19.8..=20.2).contains(&max_ms))
        );
    }

    #[test]
    fn windows_are_numbered_retained_and_merged() -> Result<(), ControlError> {
        let w = Windows::new();
        assert!(matches!(
            w.report(1, None, None),
            Err(ControlError::WindowNotFound { .. })
        ));
        for _ in 0..(RETAINED_WINDOWS as u64 + 3) {
            w.cut(&[]);
        }
        let last = RETAINED_WINDOWS as u64 + 3;
        let r = w.report(last, None, None)?;
        assert_eq!((r.id, r.since, r.reset), (last, last - 1, false));
        // Older than what is retained: the retained ones, flagged.
        let r = w.report(last, Some(1), None)?;
        assert_eq!((r.since, r.reset), (3, true));
        // A mark of another LB process.
        let r = w.report(last, Some(last - 1), Some("other"))?;
        assert!(r.reset);
        assert!(w.report(last, Some(last), None).is_err());
        assert!(w.report(last + 1, None, None).is_err());
        Ok(())
    }
}
