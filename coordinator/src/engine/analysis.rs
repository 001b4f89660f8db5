//! Progressive delivery as pure functions, no I/O and no clock: the judge of one interval ([`judge_groups`] for
//! a canary's new vs old server group, [`judge_server`] for an `in-place-lb` instance vs the group's other
//! servers) and the bake state machine ([`start`], [`next`], [`resume`]) that turns verdicts and `continue` into
//! the next action on the load balancer. Types persisted and shown: `rollcage_proto::bake`; settings:
//! `rollcage_proto::canary`.
//!
//! **Judging.** Both sides are read from the same [`TrafficWindow`], so they cover the same interval. The new
//! side is judged when it had at least `min_requests` requests (else no verdict, unless a Prometheus check
//! failed): its error rate against `max_error_rate` (absolute: the old group's errors do not excuse the new
//! one's), and its latency over the old side's against `max_p99_ratio`. Latencies are floored to 1 ms before
//! dividing, so an old side answering in 0 ms is no division by zero and sub-millisecond noise is no 5× ratio.
//! When the old side has no latency (no request in the interval: an empty old group, a canary at 100 %, a
//! single-server group), there is no baseline and the latency check is skipped for that interval (the error-rate
//! and Prometheus checks still run). A group missing from the window counts as one without requests.
//!
//! **Baking.** A bake is counted in judged intervals, `ceil(bake_secs / interval_secs)` per step, not in wall time:
//! the engine persists the window mark with each verdict, so the intervals are gapless across a restart and the
//! bake resumes where it was. An interval without verdict counts toward the time (the progress says why) but not
//! as a failure. Failing intervals are counted over the whole bake; the one beyond `failure_limit` aborts at
//! once. The last step (100 %) is baked like the others before the switch: the old group still holds its
//! servers, so an abort there is still instant. Settings without `steps` (`[analysis]`) bake once at weight 0.

use rollcage_proto::bake::{BakePhase, BakeState, Breach, Outcome, SideFigures, Verdict};
use rollcage_proto::canary::AnalysisConfig;
use rollcage_proto::traffic::{Latency, TrafficWindow, Weight, WindowFigures, WindowMark};

/// Latencies are floored to this before the ratio is taken (see the module doc).
pub const LATENCY_FLOOR_MS: f64 = 1.0;

/// A Prometheus check's value in this interval as the engine read it (`Err`: why it could not).
pub type PromReading = Result<f64, String>;

/// Judge a canary's interval: `new_group` against `old_group` in `window`, numbered from `state`.
pub fn judge_groups(
    cfg: &AnalysisConfig,
    state: &BakeState,
    window: &TrafficWindow,
    new_group: &str,
    old_group: &str,
    prometheus: &[PromReading],
) -> Verdict {
    let figures = |g: &str| window.group(g).map_or(WindowFigures::EMPTY, |g| g.figures);
    judge(
        cfg,
        state,
        window,
        &figures(new_group),
        &figures(old_group),
        prometheus,
    )
}

/// Judge an `in-place-lb` instance's interval: server `instance` (`host:port`) of `group` against the group's
/// other servers together (requests and 5xx summed; latency the request-weighted mean of their p99s, or of
/// HAProxy's averages — an approximation of the others' p99, exact for averages).
pub fn judge_server(
    cfg: &AnalysisConfig,
    state: &BakeState,
    window: &TrafficWindow,
    group: &str,
    instance: &str,
    prometheus: &[PromReading],
) -> Verdict {
    let servers = window.group(group).map_or(&[][..], |g| &g.servers[..]);
    let new = servers
        .iter()
        .find(|s| s.instance == instance)
        .map_or(WindowFigures::EMPTY, |s| s.figures);
    let others: Vec<&WindowFigures> = servers
        .iter()
        .filter(|s| s.instance != instance)
        .map(|s| &s.figures)
        .collect();
    judge(cfg, state, window, &new, &combine(&others), prometheus)
}

/// Several servers' figures as one side: summed counts, request-weighted mean latency (kept as an average when
/// any of them is one).
fn combine(figures: &[&WindowFigures]) -> WindowFigures {
    let requests = figures.iter().map(|f| f.requests).sum();
    let responses_5xx = figures.iter().map(|f| f.responses_5xx).sum();
    let average = figures.iter().any(|f| f.latency.is_average());
    let (mut weighted, mut weight) = (0.0, 0.0);
    for f in figures {
        if let Some(ms) = f.latency.p99_or_average_ms() {
            // A server with an HAProxy average but no request in the window still counts once.
            let w = f.requests.max(1) as f64;
            weighted += ms * w;
            weight += w;
        }
    }
    let latency = if weight == 0.0 {
        Latency::None
    } else if average {
        Latency::Average {
            response_ms: weighted / weight,
            total_ms: weighted / weight,
            over_last_requests: 0,
        }
    } else {
        let ms = weighted / weight;
        Latency::Percentiles {
            p50_ms: ms,
            p90_ms: ms,
            p99_ms: ms,
            max_ms: ms,
            mean_ms: ms,
        }
    };
    WindowFigures {
        requests,
        responses_5xx,
        latency,
    }
}

fn side(f: &WindowFigures) -> SideFigures {
    SideFigures {
        requests: f.requests,
        responses_5xx: f.responses_5xx,
        error_rate: f.error_rate(),
        latency_ms: f.latency.p99_or_average_ms(),
    }
}

/// The verdict of one interval: `new` against `old` (see the module doc for the rules).
pub fn judge(
    cfg: &AnalysisConfig,
    state: &BakeState,
    window: &TrafficWindow,
    new: &WindowFigures,
    old: &WindowFigures,
    prometheus: &[PromReading],
) -> Verdict {
    let average = new.latency.is_average() || old.latency.is_average();
    let mut breaches = Vec::new();
    let judged = new.requests >= cfg.min_requests;
    if judged {
        if let Some(rate) = new.error_rate()
            && rate > cfg.max_error_rate
        {
            breaches.push(Breach::ErrorRate {
                value: rate,
                max: cfg.max_error_rate,
            });
        }
        if let (Some(new_ms), Some(old_ms)) = (
            new.latency.p99_or_average_ms(),
            old.latency.p99_or_average_ms(),
        ) {
            let ratio = new_ms.max(LATENCY_FLOOR_MS) / old_ms.max(LATENCY_FLOOR_MS);
            if ratio > cfg.max_p99_ratio {
                breaches.push(Breach::LatencyRatio {
                    value: ratio,
                    max: cfg.max_p99_ratio,
                    new_ms,
                    old_ms,
                    average,
                });
            }
        }
    }
    for (index, check) in cfg.prometheus.iter().enumerate() {
        match prometheus.get(index) {
            Some(Ok(value)) if value.is_finite() && *value <= check.max => {}
            Some(Ok(value)) if value.is_finite() => breaches.push(Breach::Prometheus {
                index,
                query: check.query.clone(),
                value: *value,
                max: check.max,
            }),
            Some(Ok(value)) => breaches.push(Breach::PrometheusUnavailable {
                index,
                query: check.query.clone(),
                error: format!("not a finite number: {value}"),
            }),
            Some(Err(error)) => breaches.push(Breach::PrometheusUnavailable {
                index,
                query: check.query.clone(),
                error: error.clone(),
            }),
            None => breaches.push(Breach::PrometheusUnavailable {
                index,
                query: check.query.clone(),
                error: "not evaluated".to_owned(),
            }),
        }
    }
    let outcome = if !breaches.is_empty() {
        Outcome::Fail { breaches }
    } else if judged {
        Outcome::Pass
    } else {
        Outcome::NoVerdict {
            requests: new.requests,
            min_requests: cfg.min_requests,
        }
    };
    Verdict {
        interval: state.intervals.saturating_add(1),
        step: state.step,
        weight: state.weight,
        start_unix_ms: window.start_unix_ms,
        end_unix_ms: window.end_unix_ms,
        reset: window.reset,
        new: side(new),
        old: side(old),
        latency_is_average: average,
        outcome,
    }
}

/// What the engine does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the new group's weight (driver `set_weight`), take a fresh window mark, then bake: read the next
    /// window after `interval_secs`.
    SetWeight(Weight),
    /// Keep baking: read the next window after `interval_secs` (since the persisted mark) and judge it.
    Bake,
    /// Paused before the first step until an operator's `continue`; nothing on the LB changes.
    AwaitContinue,
    /// Canary: every step baked at 100 % — switch the service to the new group (the old instant switch, which
    /// also clears the split). Analysis: the instance passed — the next instance may start.
    Finish,
    /// Failed beyond `failure_limit`. Canary: set the new group's weight to 0 at once, then fail the deployment
    /// with `message`; analysis: fail the deployment with `message`.
    Abort {
        /// Names the interval, its figures and the broken threshold.
        message: String,
    },
}

/// An event the bake cannot take in its phase (the engine answers `409` for a `continue`, and drops a stale
/// verdict).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BakeError {
    /// A verdict or `continue` when the bake is not where it would take one.
    #[error("the bake is {phase:?}: it takes no {event} now")]
    Unexpected {
        /// Where the bake is.
        phase: BakePhase,
        /// `verdict` or `continue`.
        event: &'static str,
    },
    /// A verdict numbered for another interval than the next one (computed from an older state).
    #[error("verdict for interval {got}, but the next interval is {expected}")]
    Stale {
        /// The verdict's number.
        got: u32,
        /// The next interval's number.
        expected: u32,
    },
}

/// The first state of a bake and its action: a canary sets the first step's weight (or waits for `continue`
/// when `wait_for_continue`), an analysis starts baking at weight 0.
pub fn start(cfg: &AnalysisConfig, wait_for_continue: bool) -> (BakeState, Action) {
    let first = cfg.step_weights().first().copied();
    let mut state = BakeState {
        phase: BakePhase::Baking,
        step: 0,
        weight: Weight::ZERO,
        intervals_in_step: 0,
        intervals: 0,
        failures: 0,
        mark: None,
        last: None,
        abort_message: None,
    };
    let action = match first {
        Some(_) if wait_for_continue => {
            state.phase = BakePhase::AwaitingContinue;
            Action::AwaitContinue
        }
        Some(w) => {
            state.weight = w;
            Action::SetWeight(w)
        }
        None => Action::Bake,
    };
    (state, action)
}

/// The operator's `continue`: only a canary awaiting it takes one; it sets the first step's weight.
pub fn on_continue(
    cfg: &AnalysisConfig,
    state: &BakeState,
) -> Result<(BakeState, Action), BakeError> {
    if state.phase != BakePhase::AwaitingContinue {
        return Err(BakeError::Unexpected {
            phase: state.phase,
            event: "continue",
        });
    }
    Ok(start(cfg, false))
}

/// One interval's verdict (from [`judge_groups`]/[`judge_server`] on `state`) and the mark its window ended at.
pub fn next(
    cfg: &AnalysisConfig,
    state: &BakeState,
    verdict: Verdict,
    mark: WindowMark,
) -> Result<(BakeState, Action), BakeError> {
    if state.phase != BakePhase::Baking {
        return Err(BakeError::Unexpected {
            phase: state.phase,
            event: "verdict",
        });
    }
    let expected = state.intervals.saturating_add(1);
    if verdict.interval != expected {
        return Err(BakeError::Stale {
            got: verdict.interval,
            expected,
        });
    }
    let mut s = state.clone();
    s.intervals = expected;
    s.intervals_in_step = s.intervals_in_step.saturating_add(1);
    s.mark = Some(mark);
    let failed = matches!(verdict.outcome, Outcome::Fail { .. });
    if failed {
        s.failures = s.failures.saturating_add(1);
    }
    let steps = cfg.step_weights();
    let action = if failed && s.failures > cfg.failure_limit {
        let what = if steps.is_empty() {
            "analysis failed".to_owned()
        } else {
            format!(
                "canary aborted at step {} of {} ({}), new group's weight set to 0",
                s.step + 1,
                steps.len(),
                s.weight
            )
        };
        let message = format!(
            "{what}: {verdict}; {} failing intervals > failure_limit {}",
            s.failures, cfg.failure_limit
        );
        s.phase = BakePhase::Aborted;
        if !steps.is_empty() {
            s.weight = Weight::ZERO;
        }
        s.abort_message = Some(message.clone());
        Action::Abort { message }
    } else if s.intervals_in_step < cfg.intervals_per_bake() {
        Action::Bake
    } else if let Some(&w) = steps.get(s.step + 1) {
        s.step += 1;
        s.weight = w;
        s.intervals_in_step = 0;
        Action::SetWeight(w)
    } else {
        s.phase = BakePhase::Done;
        Action::Finish
    };
    s.last = Some(verdict);
    Ok((s, action))
}

/// What to do after a restart with a persisted `state`: re-assert what it says (the driver calls are
/// idempotent, and the state was persisted before its action ran).
pub fn resume(cfg: &AnalysisConfig, state: &BakeState) -> Action {
    match state.phase {
        BakePhase::AwaitingContinue => Action::AwaitContinue,
        BakePhase::Baking if cfg.steps.is_empty() => Action::Bake,
        BakePhase::Baking => Action::SetWeight(state.weight),
        BakePhase::Done => Action::Finish,
        BakePhase::Aborted => Action::Abort {
            message: state
                .abort_message
                .clone()
                .unwrap_or_else(|| "aborted".to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::canary::PrometheusCheck;
    use rollcage_proto::traffic::{GroupWindow, ServerWindow};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn p99(ms: f64) -> Latency {
        Latency::Percentiles {
            p50_ms: ms / 2.0,
            p90_ms: ms * 0.9,
            p99_ms: ms,
            max_ms: ms * 1.1,
            mean_ms: ms / 2.0,
        }
    }

    fn avg(ms: f64) -> Latency {
        Latency::Average {
            response_ms: ms,
            total_ms: ms + 1.0,
            over_last_requests: 1024,
        }
    }

    fn fig(requests: u64, responses_5xx: u64, latency: Latency) -> WindowFigures {
        WindowFigures {
            requests,
            responses_5xx,
            latency,
        }
    }

    fn mark(window: u64) -> WindowMark {
        WindowMark::Builtin {
            lb: "lb-1".into(),
            window,
            at_unix_ms: 1_000 * window,
        }
    }

    /// A window with `green` (new) and `blue` (old) groups.
    fn window(new: WindowFigures, old: WindowFigures) -> TrafficWindow {
        let g = |group: &str, figures| GroupWindow {
            group: group.into(),
            figures,
            servers: vec![],
        };
        TrafficWindow {
            mark: mark(2),
            start_unix_ms: 5_000,
            end_unix_ms: 10_000,
            reset: false,
            groups: vec![g("green", new), g("blue", old)],
        }
    }

    fn canary() -> AnalysisConfig {
        AnalysisConfig {
            bake_secs: 10,
            interval_secs: 5,
            ..AnalysisConfig::with_steps(&[10, 50, 100])
        }
    }

    fn baking() -> BakeState {
        start(&canary(), false).0
    }

    fn verdict_of(new: WindowFigures, old: WindowFigures) -> Verdict {
        judge_groups(
            &canary(),
            &baking(),
            &window(new, old),
            "green",
            "blue",
            &[],
        )
    }

    fn breaches(v: &Verdict) -> Vec<&'static str> {
        match &v.outcome {
            Outcome::Fail { breaches } => breaches
                .iter()
                .map(|b| match b {
                    Breach::ErrorRate { .. } => "error_rate",
                    Breach::LatencyRatio { .. } => "latency_ratio",
                    Breach::Prometheus { .. } => "prometheus",
                    Breach::PrometheusUnavailable { .. } => "prometheus_unavailable",
                })
                .collect(),
            other => vec![other.label()],
        }
    }

    #[test]
    fn a_good_interval_passes_with_both_sides_figures() {
        let v = verdict_of(fig(100, 1, p99(20.0)), fig(900, 9, p99(15.0)));
        assert_eq!(v.outcome, Outcome::Pass);
        assert_eq!((v.interval, v.step, v.weight.percent()), (1, 0, 10));
        assert_eq!((v.start_unix_ms, v.end_unix_ms), (5_000, 10_000));
        assert_eq!(v.new.error_rate, Some(0.01));
        assert_eq!(
            (v.new.latency_ms, v.old.latency_ms),
            (Some(20.0), Some(15.0))
        );
        assert!(!v.latency_is_average);
    }

    #[test]
    fn errors_above_the_rate_fail_naming_figure_and_threshold() {
        let v = verdict_of(fig(100, 20, p99(10.0)), fig(900, 0, p99(10.0)));
        assert_eq!(breaches(&v), ["error_rate"]);
        let text = v.to_string();
        assert!(
            text.contains("interval 1")
                && text.contains("new 100 req, 20 5xx")
                && text.contains("error rate 20.00 % > max_error_rate 1.00 %"),
            "{text}"
        );
        // The old group's own errors do not excuse the new one's: the rate is absolute.
        let v = verdict_of(fig(100, 20, p99(10.0)), fig(900, 300, p99(10.0)));
        assert_eq!(breaches(&v), ["error_rate"]);
        // Exactly at the threshold passes.
        let v = verdict_of(fig(100, 1, p99(10.0)), fig(900, 0, p99(10.0)));
        assert_eq!(v.outcome, Outcome::Pass);
    }

    #[test]
    fn a_slow_new_group_fails_on_the_latency_ratio() {
        let v = verdict_of(fig(100, 0, p99(320.0)), fig(900, 0, p99(20.0)));
        assert_eq!(breaches(&v), ["latency_ratio"]);
        let text = v.to_string();
        assert!(
            text.contains("p99 320.0 ms vs 20.0 ms = 16.00× > max_p99_ratio 1.5"),
            "{text}"
        );
        // 1.5× exactly passes; both breaches are listed together.
        assert_eq!(
            verdict_of(fig(100, 0, p99(30.0)), fig(900, 0, p99(20.0))).outcome,
            Outcome::Pass
        );
        let v = verdict_of(fig(100, 50, p99(320.0)), fig(900, 0, p99(20.0)));
        assert_eq!(breaches(&v), ["error_rate", "latency_ratio"]);
    }

    #[test]
    fn too_few_requests_give_no_verdict_even_when_they_all_failed() {
        let v = verdict_of(fig(49, 49, p99(900.0)), fig(900, 0, p99(20.0)));
        assert_eq!(
            v.outcome,
            Outcome::NoVerdict {
                requests: 49,
                min_requests: 50
            }
        );
        assert!(v.to_string().contains("49 requests < min_requests 50"));
        // A group the LB did not report counts as one without requests.
        let w = window(fig(100, 0, p99(1.0)), fig(100, 0, p99(1.0)));
        let v = judge_groups(&canary(), &baking(), &w, "red", "blue", &[]);
        assert_eq!(v.outcome.label(), "no_verdict");
        assert_eq!(v.new.requests, 0);
    }

    #[test]
    fn haproxy_averages_are_flagged_and_compared() {
        let v = verdict_of(fig(100, 0, avg(400.0)), fig(900, 0, avg(100.0)));
        assert!(v.latency_is_average);
        assert_eq!(breaches(&v), ["latency_ratio"]);
        assert!(
            v.to_string().contains("average 400.0 ms vs 100.0 ms"),
            "{v}"
        );
    }

    #[test]
    fn no_baseline_skips_the_latency_check_and_zero_is_floored() {
        // Empty old group (or a canary at 100 %): no latency baseline, only the error rate is judged.
        let v = verdict_of(fig(100, 0, p99(5_000.0)), WindowFigures::EMPTY);
        assert_eq!(v.outcome, Outcome::Pass);
        assert_eq!((v.old.error_rate, v.old.latency_ms), (None, None));
        let v = verdict_of(fig(100, 5, p99(5_000.0)), WindowFigures::EMPTY);
        assert_eq!(breaches(&v), ["error_rate"]);
        // An old side at 0 ms: both floored to 1 ms, so 1.2 ms is not "infinitely" slower, 2 ms is 2×.
        let v = verdict_of(fig(100, 0, p99(1.2)), fig(900, 0, p99(0.0)));
        assert_eq!(v.outcome, Outcome::Pass);
        let v = verdict_of(fig(100, 0, p99(2.0)), fig(900, 0, p99(0.0)));
        assert_eq!(breaches(&v), ["latency_ratio"]);
    }

    #[test]
    fn prometheus_checks_fail_the_interval_when_above_max_or_unreadable() {
        let check = |q: &str, max| PrometheusCheck {
            url: "http://127.0.0.1:9090".into(),
            query: q.into(),
            max,
        };
        let cfg = AnalysisConfig {
            prometheus: vec![check("a", 0.5), check("b", 10.0), check("c", 1.0)],
            ..canary()
        };
        let w = window(fig(100, 0, p99(10.0)), fig(900, 0, p99(10.0)));
        let judge_with = |r: &[PromReading]| judge_groups(&cfg, &baking(), &w, "green", "blue", r);
        assert_eq!(
            judge_with(&[Ok(0.5), Ok(10.0), Ok(0.0)]).outcome,
            Outcome::Pass
        );
        let v = judge_with(&[Ok(0.6), Err("connection refused".into())]);
        assert_eq!(
            breaches(&v),
            [
                "prometheus",
                "prometheus_unavailable",
                "prometheus_unavailable"
            ]
        );
        let text = v.to_string();
        assert!(
            text.contains("prometheus[0] `a` = 0.6 > max 0.5")
                && text.contains("prometheus[1] `b` unavailable: connection refused")
                && text.contains("prometheus[2] `c` unavailable: not evaluated"),
            "{text}"
        );
        assert_eq!(
            breaches(&judge_with(&[Ok(f64::NAN), Ok(0.0), Ok(0.0)])),
            ["prometheus_unavailable"]
        );
        // A failing Prometheus check fails even an interval with too few requests for the LB's figures.
        let quiet = window(fig(3, 0, p99(10.0)), fig(900, 0, p99(10.0)));
        let v = judge_groups(
            &cfg,
            &baking(),
            &quiet,
            "green",
            "blue",
            &[Ok(9.0), Ok(0.0), Ok(0.0)],
        );
        assert_eq!(breaches(&v), ["prometheus"]);
    }

    #[test]
    fn a_server_is_judged_against_the_groups_other_servers() {
        let server = |i: &str, figures| ServerWindow {
            instance: i.into(),
            name: i.into(),
            figures,
        };
        let w = TrafficWindow {
            groups: vec![GroupWindow {
                group: "blue".into(),
                figures: fig(600, 20, p99(20.0)),
                servers: vec![
                    server("10.0.0.1:80", fig(100, 0, p99(10.0))),
                    server("10.0.0.2:80", fig(200, 20, p99(40.0))),
                    server("10.0.0.3:80", fig(300, 0, p99(20.0))),
                ],
            }],
            ..window(WindowFigures::EMPTY, WindowFigures::EMPTY)
        };
        let cfg = AnalysisConfig::with_steps(&[]);
        let (state, _) = start(&cfg, false);
        let v = judge_server(&cfg, &state, &w, "blue", "10.0.0.2:80", &[]);
        assert_eq!((v.new.requests, v.new.responses_5xx), (200, 20));
        assert_eq!((v.old.requests, v.old.responses_5xx), (400, 0));
        // Request-weighted mean of the others' p99: (100×10 + 300×20) / 400 = 17.5 ms.
        assert_eq!(v.old.latency_ms, Some(17.5));
        assert_eq!(breaches(&v), ["error_rate", "latency_ratio"]);
        assert_eq!(v.weight, Weight::ZERO);
        let v = judge_server(&cfg, &state, &w, "blue", "10.0.0.3:80", &[]);
        assert_eq!(v.outcome, Outcome::Pass);
        // A group of one server has no baseline: only its error rate counts.
        let alone = TrafficWindow {
            groups: vec![GroupWindow {
                group: "blue".into(),
                figures: fig(100, 0, p99(900.0)),
                servers: vec![server("10.0.0.1:80", fig(100, 0, p99(900.0)))],
            }],
            ..w.clone()
        };
        let v = judge_server(&cfg, &state, &alone, "blue", "10.0.0.1:80", &[]);
        assert_eq!((v.outcome.clone(), v.old.requests), (Outcome::Pass, 0));
    }

    /// Feed verdicts of `new` figures (old always healthy) into the machine until it stops baking.
    fn run(
        cfg: &AnalysisConfig,
        mut state: BakeState,
        new: &[WindowFigures],
    ) -> Result<(BakeState, Vec<Action>), BakeError> {
        let mut actions = Vec::new();
        for (i, f) in new.iter().enumerate() {
            let v = judge_groups(
                cfg,
                &state,
                &window(*f, fig(900, 0, p99(10.0))),
                "green",
                "blue",
                &[],
            );
            let (s, a) = next(cfg, &state, v, mark(i as u64 + 10))?;
            state = s;
            actions.push(a);
        }
        Ok((state, actions))
    }

    const GOOD: WindowFigures = WindowFigures {
        requests: 100,
        responses_5xx: 0,
        latency: Latency::Percentiles {
            p50_ms: 5.0,
            p90_ms: 8.0,
            p99_ms: 10.0,
            max_ms: 12.0,
            mean_ms: 5.0,
        },
    };
    const BAD: WindowFigures = WindowFigures {
        requests: 100,
        responses_5xx: 20,
        ..GOOD
    };
    const QUIET: WindowFigures = WindowFigures {
        requests: 3,
        ..GOOD
    };

    fn w(p: u64) -> Weight {
        Weight::new(p).unwrap_or_default()
    }

    #[test]
    fn a_good_run_walks_10_50_100_and_finishes() -> TestResult {
        let cfg = canary();
        assert_eq!(cfg.intervals_per_bake(), 2);
        let (state, first) = start(&cfg, false);
        assert_eq!(first, Action::SetWeight(w(10)));
        assert_eq!((state.phase, state.weight), (BakePhase::Baking, w(10)));
        let (end, actions) = run(&cfg, state, &[GOOD; 6])?;
        assert_eq!(
            actions,
            [
                Action::Bake,
                Action::SetWeight(w(50)),
                Action::Bake,
                Action::SetWeight(w(100)),
                Action::Bake,
                Action::Finish
            ]
        );
        assert_eq!(
            (end.phase, end.step, end.weight, end.intervals, end.failures),
            (BakePhase::Done, 2, w(100), 6, 0)
        );
        assert_eq!(end.mark, Some(mark(15)));
        assert_eq!(
            end.last.as_ref().map(|v| (v.interval, v.step)),
            Some((6, 2))
        );
        // Once done, nothing more is taken.
        let v = end.last.clone().ok_or("no verdict")?;
        assert!(matches!(
            next(&cfg, &end, v, mark(99)),
            Err(BakeError::Unexpected {
                phase: BakePhase::Done,
                ..
            })
        ));
        assert_eq!(resume(&cfg, &end), Action::Finish);
        Ok(())
    }

    #[test]
    fn a_failure_beyond_the_limit_aborts_at_once_with_weight_zero() -> TestResult {
        let cfg = canary(); // failure_limit 1: the first failing interval is forgiven, the second aborts
        let (state, _) = start(&cfg, false);
        let (end, actions) = run(&cfg, state, &[BAD, GOOD, BAD])?;
        assert_eq!(actions[..2], [Action::Bake, Action::SetWeight(w(50))]);
        let Action::Abort { message } = &actions[2] else {
            return Err(format!("expected an abort, got {:?}", actions[2]).into());
        };
        for part in [
            "canary aborted at step 2 of 3 (50 %), new group's weight set to 0",
            "interval 3 (step 2, 50 %, 5000–10000 ms)",
            "new 100 req, 20 5xx; old 900 req, 0 5xx",
            "error rate 20.00 % > max_error_rate 1.00 %",
            "2 failing intervals > failure_limit 1",
        ] {
            assert!(message.contains(part), "`{part}` not in: {message}");
        }
        assert_eq!(
            (end.phase, end.weight, end.failures),
            (BakePhase::Aborted, Weight::ZERO, 2)
        );
        assert_eq!(end.abort_message.as_ref(), Some(message));
        assert_eq!(resume(&cfg, &end), actions[2]);
        // With no tolerance, the first failing interval aborts in the first step.
        let strict = AnalysisConfig {
            failure_limit: 0,
            ..canary()
        };
        let (state, _) = start(&strict, false);
        let (end, actions) = run(&strict, state, &[BAD])?;
        assert!(
            matches!(&actions[..], [Action::Abort { message }] if message.contains("step 1 of 3 (10 %)"))
        );
        assert_eq!(end.weight, Weight::ZERO);
        Ok(())
    }

    #[test]
    fn intervals_without_verdict_take_time_but_never_fail() -> TestResult {
        let cfg = AnalysisConfig {
            failure_limit: 0,
            ..canary()
        };
        let (state, _) = start(&cfg, false);
        let (end, actions) = run(&cfg, state, &[QUIET, QUIET])?;
        assert_eq!(actions, [Action::Bake, Action::SetWeight(w(50))]);
        assert_eq!((end.failures, end.intervals), (0, 2));
        Ok(())
    }

    #[test]
    fn wait_for_continue_pauses_before_the_first_step() -> TestResult {
        let cfg = canary();
        let (paused, action) = start(&cfg, true);
        assert_eq!(action, Action::AwaitContinue);
        assert_eq!(
            (paused.phase, paused.weight),
            (BakePhase::AwaitingContinue, Weight::ZERO)
        );
        assert_eq!(resume(&cfg, &paused), Action::AwaitContinue);
        let v = verdict_of(GOOD, GOOD);
        assert_eq!(
            next(&cfg, &paused, v, mark(1)),
            Err(BakeError::Unexpected {
                phase: BakePhase::AwaitingContinue,
                event: "verdict"
            })
        );
        let (going, action) = on_continue(&cfg, &paused)?;
        assert_eq!(action, Action::SetWeight(w(10)));
        assert_eq!((going.phase, going.weight), (BakePhase::Baking, w(10)));
        // A second `continue` is refused (the API answers 409).
        assert!(on_continue(&cfg, &going).is_err());
        Ok(())
    }

    #[test]
    fn a_persisted_state_resumes_at_the_same_step_and_weight() -> TestResult {
        let cfg = canary();
        let (state, _) = start(&cfg, false);
        // Into step 2 (50 %), one interval baked there, one failure forgiven.
        let (mid, _) = run(&cfg, state, &[BAD, GOOD, GOOD])?;
        assert_eq!((mid.step, mid.weight, mid.intervals_in_step), (1, w(50), 1));
        let stored = serde_json::to_string(&mid)?;
        let back: BakeState = serde_json::from_str(&stored)?;
        assert_eq!(back, mid);
        assert_eq!(resume(&cfg, &back), Action::SetWeight(w(50)));
        // The next interval completes step 2 — not a new bake at 50 % — and the earlier failure still counts.
        let (after, actions) = run(&cfg, back.clone(), &[GOOD, BAD])?;
        assert_eq!(actions[0], Action::SetWeight(w(100)));
        assert!(matches!(actions[1], Action::Abort { .. }));
        assert_eq!(after.intervals, 5);
        // A verdict computed from an older state (interval 3 again) is refused.
        let stale = judge_groups(
            &cfg,
            &BakeState {
                intervals: 2,
                ..back.clone()
            },
            &window(GOOD, GOOD),
            "green",
            "blue",
            &[],
        );
        assert_eq!(
            next(&cfg, &back, stale, mark(1)),
            Err(BakeError::Stale {
                got: 3,
                expected: 4
            })
        );
        Ok(())
    }

    #[test]
    fn an_analysis_gate_bakes_once_without_weights() -> TestResult {
        let cfg = AnalysisConfig {
            bake_secs: 15,
            interval_secs: 5,
            failure_limit: 0,
            ..AnalysisConfig::with_steps(&[])
        };
        let (state, action) = start(&cfg, true); // wait_for_continue does not apply without steps
        assert_eq!((action, state.weight), (Action::Bake, Weight::ZERO));
        assert_eq!(resume(&cfg, &state), Action::Bake);
        let (end, actions) = run(&cfg, state.clone(), &[GOOD, QUIET, GOOD])?;
        assert_eq!(actions, [Action::Bake, Action::Bake, Action::Finish]);
        assert_eq!(end.phase, BakePhase::Done);
        let (end, actions) = run(&cfg, state, &[GOOD, BAD])?;
        assert!(
            matches!(&actions[1], Action::Abort { message } if message.starts_with("analysis failed: interval 2")),
            "{actions:?}"
        );
        assert_eq!(end.phase, BakePhase::Aborted);
        Ok(())
    }

    #[test]
    fn verdicts_and_states_round_trip_through_json() -> TestResult {
        let cfg = AnalysisConfig {
            prometheus: vec![PrometheusCheck {
                url: "http://p:9090".into(),
                query: "up".into(),
                max: 1.0,
            }],
            ..canary()
        };
        let w = window(fig(100, 30, avg(900.0)), fig(900, 0, avg(10.0)));
        let (state, _) = start(&cfg, false);
        let v = judge_groups(&cfg, &state, &w, "green", "blue", &[Err("timeout".into())]);
        assert_eq!(
            breaches(&v),
            ["error_rate", "latency_ratio", "prometheus_unavailable"]
        );
        let json = serde_json::to_value(&v)?;
        assert_eq!(json["result"], "fail");
        assert_eq!(json["breaches"][0]["figure"], "error_rate");
        assert_eq!(json["latency_is_average"], true);
        assert_eq!(serde_json::from_value::<Verdict>(json)?, v);
        let (s, _) = next(&cfg, &state, v, mark(3))?;
        let back: BakeState = serde_json::from_str(&serde_json::to_string(&s)?)?;
        assert_eq!(back, s);
        for o in [
            Outcome::Pass,
            Outcome::NoVerdict {
                requests: 1,
                min_requests: 50,
            },
        ] {
            let v = Verdict {
                outcome: o,
                ..verdict_of(GOOD, GOOD)
            };
            assert_eq!(
                serde_json::from_str::<Verdict>(&serde_json::to_string(&v)?)?,
                v
            );
        }
        Ok(())
    }
}
