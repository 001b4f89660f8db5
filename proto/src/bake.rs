//! What a progressive delivery persists and shows: each interval's [`Verdict`] (the figures of both sides and
//! the result, with the threshold a failure broke) and the [`BakeState`] of a canary or of an instance's
//! analysis gate. The coordinator decides them (its engine's `analysis` module, pure); they are stored as JSON
//! with the deployment, so a restarted coordinator resumes a bake at the step and weight it had, and the API,
//! `rollcage watch` and the dashboard show them as they are.
//!
//! Settings: [`crate::canary`]. Figures: [`crate::traffic`].

use crate::traffic::{Weight, WindowMark};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One side of a comparison in one interval: the new group (or server under analysis) or the old one (the
/// group's other servers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SideFigures {
    /// Requests answered in the interval.
    pub requests: u64,
    /// Of those, 5xx answers.
    pub responses_5xx: u64,
    /// `responses_5xx / requests`; absent without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// p99 in milliseconds (HAProxy: average response time, see [`Verdict::latency_is_average`]); absent
    /// without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// Which figure broke which threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "figure", rename_all = "snake_case")]
pub enum Breach {
    /// The new side's error rate was above `max_error_rate`.
    ErrorRate {
        /// The error rate seen.
        value: f64,
        /// `max_error_rate`.
        max: f64,
    },
    /// The new side's latency over the old side's was above `max_p99_ratio`.
    LatencyRatio {
        /// The ratio seen (both latencies floored to 1 ms).
        value: f64,
        /// `max_p99_ratio`.
        max: f64,
        /// The new side's latency (ms).
        new_ms: f64,
        /// The old side's latency (ms).
        old_ms: f64,
        /// True when the figures are HAProxy's averages, not p99s.
        average: bool,
    },
    /// A Prometheus check's value was above its `max`.
    Prometheus {
        /// Index of the `[[canary.prometheus]]` entry.
        index: usize,
        /// Its query.
        query: String,
        /// The value seen.
        value: f64,
        /// Its `max`.
        max: f64,
    },
    /// A Prometheus check could not be evaluated (unreachable, error, not one number): counted as a failing
    /// check, as Flagger does, so an unreadable judge never lets a canary through; `failure_limit` absorbs blips.
    PrometheusUnavailable {
        /// Index of the entry.
        index: usize,
        /// Its query.
        query: String,
        /// What went wrong.
        error: String,
    },
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ErrorRate { value, max } => write!(
                f,
                "error rate {:.2} % > max_error_rate {:.2} %",
                value * 100.0,
                max * 100.0
            ),
            Self::LatencyRatio {
                value,
                max,
                new_ms,
                old_ms,
                average,
            } => {
                let what = if *average { "average" } else { "p99" };
                write!(
                    f,
                    "{what} {new_ms:.1} ms vs {old_ms:.1} ms = {value:.2}× > max_p99_ratio {max}"
                )
            }
            Self::Prometheus {
                index,
                query,
                value,
                max,
            } => write!(f, "prometheus[{index}] `{query}` = {value} > max {max}"),
            Self::PrometheusUnavailable {
                index,
                query,
                error,
            } => write!(f, "prometheus[{index}] `{query}` unavailable: {error}"),
        }
    }
}

/// The result of one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Every figure within its threshold.
    Pass,
    /// At least one threshold broken (every broken one listed).
    Fail {
        /// What broke.
        breaches: Vec<Breach>,
    },
    /// The new side had fewer than `min_requests` requests (and no Prometheus check failed): not judged; the
    /// interval still counts toward the bake's time.
    NoVerdict {
        /// Requests seen.
        requests: u64,
        /// `min_requests`.
        min_requests: u64,
    },
}

impl Outcome {
    /// `pass`, `fail` or `no_verdict` (the `result` label of `rollcage_analysis_verdicts_total`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail { .. } => "fail",
            Self::NoVerdict { .. } => "no_verdict",
        }
    }
}

/// One interval's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// 1-based number of the interval in the whole bake (all steps of a canary, or one instance's analysis).
    pub interval: u32,
    /// Canary: index of the step (0-based) the interval belongs to; analysis: 0.
    pub step: usize,
    /// Canary: the new group's weight during the interval; analysis: 0.
    pub weight: Weight,
    /// Interval start (Unix milliseconds).
    pub start_unix_ms: u64,
    /// Interval end (Unix milliseconds).
    pub end_unix_ms: u64,
    /// True when the LB's counters restarted in the interval: the figures cover only part of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
    /// The new group (or the server under analysis).
    pub new: SideFigures,
    /// The old group (or the group's other servers).
    pub old: SideFigures,
    /// True when either side's latency is HAProxy's average rather than a p99 of the interval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub latency_is_average: bool,
    /// Pass, fail or no verdict.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl fmt::Display for Verdict {
    /// `interval 3 (step 1, 10 %): new 100 req, 20 5xx; old 900 req, 0 5xx: fail: error rate 20.00 % > …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interval {} (step {}, {}, {}–{} ms): new {} req, {} 5xx; old {} req, {} 5xx: {}",
            self.interval,
            self.step + 1,
            self.weight,
            self.start_unix_ms,
            self.end_unix_ms,
            self.new.requests,
            self.new.responses_5xx,
            self.old.requests,
            self.old.responses_5xx,
            self.outcome.label().replace('_', " ")
        )?;
        match &self.outcome {
            Outcome::Pass => Ok(()),
            Outcome::Fail { breaches } => {
                for (i, b) in breaches.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{b}")?;
                }
                Ok(())
            }
            Outcome::NoVerdict {
                requests,
                min_requests,
            } => write!(f, " ({requests} requests < min_requests {min_requests})"),
        }
    }
}

/// Where a bake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BakePhase {
    /// Canary of a `wait_for_continue` group: paused before the first step until `continue`.
    AwaitingContinue,
    /// Judging intervals at the current step's weight.
    Baking,
    /// Every step baked (canary: at 100 %, ready to switch; analysis: the instance passed).
    Done,
    /// Failed beyond `failure_limit`: weight 0 (canary), deployment failed.
    Aborted,
}

/// The persisted state of one bake (a canary's steps, or one instance's analysis gate). The engine stores it
/// with the deployment, in the same transaction as the verdict that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakeState {
    /// Where it is.
    pub phase: BakePhase,
    /// Canary: index of the current step; analysis: 0.
    pub step: usize,
    /// The new group's weight set now (canary; 0 while awaiting continue and after an abort); analysis: 0.
    pub weight: Weight,
    /// Intervals judged in the current step.
    pub intervals_in_step: u32,
    /// Intervals judged in the whole bake (the next verdict's number minus one).
    pub intervals: u32,
    /// Failing intervals so far, over the whole bake (a failure is not forgiven by a later step).
    pub failures: u32,
    /// The LB window mark the last interval ended at: the `since` of the next `read_window`. Absent before the
    /// first reading (the engine takes one when the weight is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<WindowMark>,
    /// The last verdict (every verdict is also kept in the deployment's history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Verdict>,
    /// Why it was aborted (the deployment's failure message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_message: Option<String>,
}

/// At most this many verdicts of one bake come with a deployment (the latest): a day-long bake of 1 s intervals
/// would otherwise make every progress snapshot megabytes. Every verdict stays in the database.
pub const MAX_SHOWN_VERDICTS: usize = 200;

/// One bake as the API returns it with its deployment (`Deployment::bakes`): a canary's steps, or one instance's
/// analysis gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakeProgress {
    /// The instance whose server is judged (`[analysis]`); absent for the deployment's canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Canary: the steps (percent of traffic on the new group); empty for an analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<u64>,
    /// Judged intervals in one step's bake (`ceil(bake_secs / interval_secs)`).
    pub intervals_per_step: u32,
    /// Seconds per interval.
    pub interval_secs: u64,
    /// Where it is.
    pub state: BakeState,
    /// Its verdicts, oldest first (the latest [`MAX_SHOWN_VERDICTS`]).
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
}
