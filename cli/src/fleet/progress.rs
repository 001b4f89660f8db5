//! Live progress of a deployment, computed from the sequence of snapshots the coordinator streams: per instance
//! the current event, its state and elapsed time (the rows a terminal shows), and the plain timestamped lines to
//! print when stdout is not a terminal, one per change. Pure: no I/O, the clock is a parameter.

use rollcage_proto::bake::{Outcome, SideFigures, Verdict};
use rollcage_proto::traffic::Weight;
use rollcage_proto::wire::{
    Deployment, DeploymentKind, DeploymentStatus, InstanceStatus, StepState,
};
use std::collections::HashMap;

/// True when following can stop: the deployment ended, or waits in `ready` for an operator's `continue`.
pub fn settled(d: &Deployment) -> bool {
    d.status.is_terminal() || d.status == DeploymentStatus::Ready
}

/// The rollback to follow after `d` ended: the one the coordinator started when `d` failed.
pub fn rollback_to_follow(d: &Deployment) -> Option<&str> {
    match d.status {
        DeploymentStatus::Failed => d.rollback_deployment.as_deref(),
        _ => None,
    }
}

/// One instance's row on a terminal: `i-1  Install  12.3s  running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Instance name.
    pub instance: String,
    /// The current event: the running step, else the last one that ended, else the first.
    pub event: String,
    /// Milliseconds on that event (to now while it runs).
    pub elapsed_ms: i64,
    /// `running`, `pending`, or the instance's end (`succeeded`, `failed`, `skipped`, `cancelled`).
    pub status: String,
    /// The instance has ended (its row is final).
    pub ended: bool,
}

impl Row {
    /// The row's text, the instance name padded to `width`.
    pub fn text(&self, width: usize) -> String {
        format!(
            "{:<width$}  {:<16}  {:>7}  {}",
            self.instance,
            self.event,
            seconds(self.elapsed_ms),
            self.status
        )
    }
}

/// `12.3s`.
pub fn seconds(ms: i64) -> String {
    format!("{:.1}s", ms.max(0) as f64 / 1000.0)
}

fn instance_name(name: &str) -> &str {
    // The coordinator's deployment-wide steps (blue/green's SwitchTraffic) have no instance.
    if name.is_empty() {
        "(deployment)"
    } else {
        name
    }
}

/// An instance's status in its row: `running` while in progress (the state of its current step, which reads
/// better in a column than the wire's `in_progress`), else the wire name.
fn instance_status_word(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::InProgress => StepState::Running.name(),
        other => other.name(),
    }
}

/// One row per instance of `d`, elapsed times measured to `now_ms`.
pub fn rows(d: &Deployment, now_ms: i64) -> Vec<Row> {
    d.instances
        .iter()
        .map(|i| {
            let current = i
                .steps
                .iter()
                .find(|s| s.state == StepState::Running)
                .or_else(|| i.steps.iter().rev().find(|s| s.state != StepState::Pending))
                .or_else(|| i.steps.first());
            let (event, elapsed_ms) = match current {
                Some(s) => {
                    let elapsed = match (s.started_at_ms, s.ended_at_ms) {
                        (Some(start), Some(end)) => end - start,
                        (Some(start), None) if s.state == StepState::Running => now_ms - start,
                        _ => 0,
                    };
                    (s.event.name().to_owned(), elapsed)
                }
                None => (String::new(), 0),
            };
            Row {
                instance: instance_name(&i.instance).to_owned(),
                event,
                elapsed_ms,
                status: instance_status_word(i.status).to_owned(),
                ended: i.status.is_terminal(),
            }
        })
        .collect()
}

/// One change, for a plain line: `2026-11-26T16:20:01Z i-1 Install succeeded (0.3s)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When it happened (milliseconds since the Unix epoch).
    pub at_ms: i64,
    /// What happened.
    pub text: String,
    /// A canary's or analysis gate's step, weight or verdict: a terminal prints it above the rows too.
    pub bake: bool,
}

impl Line {
    /// The line as printed, with its UTC timestamp first.
    pub fn render(&self) -> String {
        format!("{} {}", timestamp(self.at_ms), self.text)
    }
}

/// `2026-11-26T16:20:01Z` (UTC, whole seconds).
pub fn timestamp(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// What was last seen of one deployment, to turn each new snapshot into the lines of what changed.
#[derive(Debug, Default)]
pub struct Tracker {
    steps: HashMap<(String, usize), StepState>,
    /// Per bake (`""` = the canary): the (step, weight) last shown and the last verdict shown.
    bakes: HashMap<String, ((usize, Weight), u32)>,
    status: Option<DeploymentStatus>,
    rollback: Option<String>,
}

impl Tracker {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines for what changed since the last snapshot, oldest first; none when nothing did. A step that went
    /// through several states between two snapshots gets one line, for the state it is in now.
    pub fn update(&mut self, d: &Deployment, now_ms: i64) -> Vec<Line> {
        let mut lines = Vec::new();
        if self.status.is_none() {
            let what = match &d.kind {
                DeploymentKind::Normal => "deployment".to_owned(),
                DeploymentKind::Rollback {
                    of,
                    automatic: true,
                } => {
                    format!("automatic rollback of {of}:")
                }
                DeploymentKind::Rollback { of, .. } => format!("rollback of {of}:"),
                DeploymentKind::CatchUp { instance } => format!("catch-up of {instance}:"),
            };
            lines.push(Line {
                bake: false,
                at_ms: d.created_at_ms,
                text: format!(
                    "{what} {} of {}/{} revision {} ({} instance(s))",
                    d.id,
                    d.application,
                    d.group,
                    d.revision,
                    d.instances.len()
                ),
            });
        }
        for i in &d.instances {
            let name = instance_name(&i.instance);
            for (idx, s) in i.steps.iter().enumerate() {
                let key = (i.instance.clone(), idx);
                let before = self.steps.get(&key).copied().unwrap_or(StepState::Pending);
                if before == s.state {
                    continue;
                }
                self.steps.insert(key, s.state);
                let state = s.state;
                let (at_ms, text) = match (s.state, s.started_at_ms, s.ended_at_ms) {
                    (StepState::Running, start, _) => (
                        start.unwrap_or(now_ms),
                        format!("{name} {} {state}", s.event),
                    ),
                    (_, Some(start), Some(end)) => {
                        let mut text =
                            format!("{name} {} {state} ({})", s.event, seconds(end - start));
                        if matches!(s.state, StepState::Failed | StepState::Cancelled)
                            && !s.message.is_empty()
                        {
                            text.push_str(": ");
                            text.push_str(&s.message);
                        }
                        (end, text)
                    }
                    (_, _, end) => (end.unwrap_or(now_ms), format!("{name} {} {state}", s.event)),
                };
                lines.push(Line {
                    at_ms,
                    text,
                    bake: false,
                });
            }
        }
        if self.status != Some(d.status) {
            let first = self.status.is_none();
            self.status = Some(d.status);
            if !(first && d.status == DeploymentStatus::InProgress) {
                let mut text = format!("deployment {} {}", d.id, d.status);
                if !d.message.is_empty() {
                    text.push_str(": ");
                    text.push_str(&d.message);
                } else if !d.status.is_terminal() {
                    text.push_str(&format!(" ({})", d.status.description()));
                }
                lines.push(Line {
                    at_ms: d.ended_at_ms.unwrap_or(now_ms),
                    text,
                    bake: false,
                });
            }
        }
        if d.rollback_deployment != self.rollback {
            self.rollback = d.rollback_deployment.clone();
            if let Some(rb) = &self.rollback {
                lines.push(Line {
                    at_ms: d.ended_at_ms.unwrap_or(now_ms),
                    text: format!("rollback {rb} of deployment {} started", d.id),
                    bake: false,
                });
            }
        }
        lines.extend(self.bake_lines(d, now_ms));
        // A burst of changes seen in one snapshot reads in the order it happened.
        lines.sort_by_key(|l| l.at_ms);
        lines
    }
}

/// One side of a verdict: `120 req, 0.83 % 5xx, p99 23.1 ms`.
fn side_text(s: &SideFigures, average: bool) -> String {
    let rate = s
        .error_rate
        .map_or_else(|| "-".to_owned(), |r| format!("{:.2} %", r * 100.0));
    let latency = s
        .latency_ms
        .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
    let what = if average { "avg" } else { "p99" };
    format!("{} req, {rate} 5xx, {what} {latency}", s.requests)
}

/// One interval's verdict as `watch` shows it: the result, then the figures of both groups.
pub fn verdict_text(v: &Verdict) -> String {
    let result = match &v.outcome {
        Outcome::Pass => "pass".to_owned(),
        Outcome::Fail { breaches } => format!(
            "FAIL ({})",
            breaches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Outcome::NoVerdict {
            requests,
            min_requests,
        } => format!("no verdict: {requests} < min_requests {min_requests}"),
    };
    format!(
        "interval {}: {result}; new: {}; old: {}",
        v.interval,
        side_text(&v.new, v.latency_is_average),
        side_text(&v.old, v.latency_is_average)
    )
}

impl Tracker {
    /// Lines for the bakes' changes: a canary's new step and weight, an analysis starting, each new verdict.
    fn bake_lines(&mut self, d: &Deployment, now_ms: i64) -> Vec<Line> {
        let mut lines = Vec::new();
        for b in &d.bakes {
            let key = b.instance.clone().unwrap_or_default();
            let who = match &b.instance {
                None => "canary".to_owned(),
                Some(i) => format!("{} analysis", instance_name(i)),
            };
            let seen = self.bakes.get(&key).copied();
            let at = (b.state.step, b.state.weight);
            let shown = seen.map_or(0, |(_, v)| v);
            let mut last_verdict = shown;
            for v in b.verdicts.iter().filter(|v| v.interval > shown) {
                let step = if b.steps.is_empty() {
                    String::new()
                } else {
                    format!(" step {}/{} at {}", v.step + 1, b.steps.len(), v.weight)
                };
                lines.push(Line {
                    at_ms: i64::try_from(v.end_unix_ms).unwrap_or(now_ms),
                    text: format!("{who}{step} {}", verdict_text(v)),
                    bake: true,
                });
                last_verdict = v.interval;
            }
            if seen.map(|(s, _)| s) != Some(at)
                && b.state.phase == rollcage_proto::bake::BakePhase::Baking
            {
                let text = if b.steps.is_empty() {
                    format!(
                        "{who}: judging its server against the group's other servers, {} interval(s) of {} s",
                        b.intervals_per_step, b.interval_secs
                    )
                } else {
                    format!(
                        "{who} step {}/{}: {} of traffic on the new group, {} interval(s) of {} s",
                        b.state.step + 1,
                        b.steps.len(),
                        b.state.weight,
                        b.intervals_per_step,
                        b.interval_secs
                    )
                };
                lines.push(Line {
                    at_ms: now_ms,
                    text,
                    bake: true,
                });
            }
            self.bakes.insert(key, (at, last_verdict));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::LifecycleEvent;
    use rollcage_proto::wire::{Concurrency, DeploymentStyle, InstanceProgress, StepProgress};

    const T0: i64 = 1_795_709_999_000; // 2026-11-26T16:19:59Z

    fn step(
        event: LifecycleEvent,
        state: StepState,
        start: Option<i64>,
        end: Option<i64>,
    ) -> StepProgress {
        StepProgress {
            event,
            state,
            started_at_ms: start,
            ended_at_ms: end,
            message: String::new(),
            log_tail: String::new(),
        }
    }

    fn deployment(instances: Vec<InstanceProgress>) -> Deployment {
        Deployment {
            id: "d-1".into(),
            application: "shop".into(),
            group: "web".into(),
            revision: "r-1".into(),
            style: DeploymentStyle::InPlace,
            concurrency: Concurrency::Count(1),
            failure_tolerance: 0,
            kind: DeploymentKind::Normal,
            status: DeploymentStatus::InProgress,
            message: String::new(),
            created_at_ms: T0,
            ended_at_ms: None,
            rollback_deployment: None,
            actors: Default::default(),
            description: None,
            ignore_application_stop_failures: false,
            file_exists_behavior: None,
            bakes: Vec::new(),
            instances,
        }
    }

    fn instance(name: &str, status: InstanceStatus, steps: Vec<StepProgress>) -> InstanceProgress {
        InstanceProgress {
            instance: name.into(),
            status,
            steps,
        }
    }

    use LifecycleEvent::{BeforeInstall, Install, ValidateService};
    use StepState::{Failed, Pending, Running, Succeeded};

    #[test]
    fn timestamps_are_utc_whole_seconds() {
        assert_eq!(timestamp(T0 + 2_345), "2026-11-26T16:20:01Z");
        assert_eq!(seconds(12_345), "12.3s");
        assert_eq!(seconds(-5), "0.0s");
    }

    #[test]
    fn rows_show_the_current_event_its_elapsed_time_and_status() {
        let d = deployment(vec![
            instance(
                "i-1",
                InstanceStatus::InProgress,
                vec![
                    step(BeforeInstall, Succeeded, Some(T0), Some(T0 + 300)),
                    step(Install, Running, Some(T0 + 300), None),
                    step(ValidateService, Pending, None, None),
                ],
            ),
            instance(
                "i-2",
                InstanceStatus::Failed,
                vec![
                    step(BeforeInstall, Succeeded, Some(T0), Some(T0 + 100)),
                    step(Install, Failed, Some(T0 + 100), Some(T0 + 2_100)),
                    step(ValidateService, Pending, None, None),
                ],
            ),
            instance(
                "i-3",
                InstanceStatus::Pending,
                vec![step(BeforeInstall, Pending, None, None)],
            ),
        ]);
        let rows = rows(&d, T0 + 12_600);
        assert_eq!(rows[0].text(3), "i-1  Install             12.3s  running");
        assert_eq!(
            (
                rows[1].event.as_str(),
                rows[1].elapsed_ms,
                rows[1].status.as_str()
            ),
            ("Install", 2_000, "failed")
        );
        assert_eq!(
            (
                rows[2].event.as_str(),
                rows[2].elapsed_ms,
                rows[2].status.as_str()
            ),
            ("BeforeInstall", 0, "pending")
        );
        // Elapsed time of a running step follows the clock.
        assert_eq!(super::rows(&d, T0 + 1_300)[0].elapsed_ms, 1_000);
    }

    #[test]
    fn lines_come_only_for_what_changed() {
        let mut t = Tracker::new();
        let mut d = deployment(vec![instance(
            "i-1",
            InstanceStatus::InProgress,
            vec![
                step(BeforeInstall, Running, Some(T0), None),
                step(Install, Pending, None, None),
            ],
        )]);
        let first: Vec<String> = t.update(&d, T0).iter().map(Line::render).collect();
        assert_eq!(
            first,
            [
                "2026-11-26T16:19:59Z deployment d-1 of shop/web revision r-1 (1 instance(s))",
                "2026-11-26T16:19:59Z i-1 BeforeInstall running",
            ]
        );
        assert!(
            t.update(&d, T0 + 5_000).is_empty(),
            "the same snapshot again prints nothing"
        );

        d.instances[0].steps[0] = step(BeforeInstall, Succeeded, Some(T0), Some(T0 + 300));
        d.instances[0].steps[1] = step(Install, Running, Some(T0 + 300), None);
        let lines: Vec<String> = t.update(&d, T0 + 400).iter().map(Line::render).collect();
        assert_eq!(
            lines,
            [
                "2026-11-26T16:19:59Z i-1 BeforeInstall succeeded (0.3s)",
                "2026-11-26T16:19:59Z i-1 Install running",
            ]
        );
    }

    #[test]
    fn a_coalesced_burst_gives_one_line_per_step_in_order_and_the_end_of_the_deployment() {
        let mut t = Tracker::new();
        let mut d = deployment(vec![instance(
            "i-1",
            InstanceStatus::InProgress,
            vec![
                step(BeforeInstall, Running, Some(T0), None),
                step(Install, Pending, None, None),
            ],
        )]);
        t.update(&d, T0);
        // Install ran and failed between two snapshots; the deployment failed and a rollback started.
        let mut failed = step(Install, Failed, Some(T0 + 300), Some(T0 + 2_300));
        failed.message = "scripts/install.sh: failed with exit code 1".into();
        d.instances[0].steps = vec![
            step(BeforeInstall, Succeeded, Some(T0), Some(T0 + 300)),
            failed,
        ];
        d.instances[0].status = InstanceStatus::Failed;
        d.status = DeploymentStatus::Failed;
        d.message = "1 of 1 instance(s) failed".into();
        d.ended_at_ms = Some(T0 + 2_400);
        d.rollback_deployment = Some("d-2".into());
        let lines: Vec<String> = t
            .update(&d, T0 + 3_000)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(
            lines,
            [
                "i-1 BeforeInstall succeeded (0.3s)",
                "i-1 Install failed (2.0s): scripts/install.sh: failed with exit code 1",
                "deployment d-1 failed: 1 of 1 instance(s) failed",
                "rollback d-2 of deployment d-1 started",
            ]
        );
        assert!(settled(&d));
        assert_eq!(rollback_to_follow(&d), Some("d-2"));
        assert!(t.update(&d, T0 + 9_000).is_empty());
    }

    #[test]
    fn following_stops_at_the_end_or_at_ready_and_only_a_failure_leads_to_its_rollback() {
        let mut d = deployment(vec![]);
        assert!(!settled(&d));
        d.status = DeploymentStatus::Stopping;
        assert!(!settled(&d));
        d.rollback_deployment = Some("d-9".into());
        for (status, is_settled, rollback) in [
            (DeploymentStatus::Ready, true, None),
            (DeploymentStatus::Succeeded, true, None),
            (DeploymentStatus::Stopped, true, None),
            (DeploymentStatus::Failed, true, Some("d-9")),
        ] {
            d.status = status;
            assert_eq!(
                (settled(&d), rollback_to_follow(&d)),
                (is_settled, rollback),
                "{status}"
            );
        }
    }

    #[test]
    fn a_canary_shows_each_step_and_weight_and_every_verdict_once() {
        use rollcage_proto::bake::{BakePhase, BakeProgress, BakeState, Breach};
        let side = |requests, responses_5xx, p99| SideFigures {
            requests,
            responses_5xx,
            error_rate: (requests > 0).then(|| responses_5xx as f64 / requests as f64),
            latency_ms: Some(p99),
        };
        let w = |p| Weight::new(p).unwrap_or(Weight::ZERO);
        let verdict = |interval, outcome| Verdict {
            interval,
            step: 0,
            weight: w(10),
            start_unix_ms: 0,
            end_unix_ms: 1_000,
            reset: false,
            new: side(5, 1, 30.0),
            old: side(500, 0, 20.0),
            latency_is_average: false,
            outcome,
        };
        let mut d = deployment(vec![]);
        let mut bake = BakeProgress {
            instance: None,
            steps: vec![10, 50, 100],
            intervals_per_step: 2,
            interval_secs: 1,
            state: BakeState {
                phase: BakePhase::Baking,
                step: 0,
                weight: w(10),
                intervals_in_step: 0,
                intervals: 0,
                failures: 0,
                mark: None,
                last: None,
                abort_message: None,
            },
            verdicts: vec![],
        };
        d.bakes = vec![bake.clone()];
        let mut t = Tracker::new();
        let texts = |lines: Vec<Line>| -> Vec<String> {
            lines
                .into_iter()
                .filter(|l| l.bake)
                .map(|l| l.text)
                .collect()
        };
        assert_eq!(
            texts(t.update(&d, T0)),
            ["canary step 1/3: 10 % of traffic on the new group, 2 interval(s) of 1 s"]
        );
        bake.verdicts.push(verdict(
            1,
            Outcome::NoVerdict {
                requests: 5,
                min_requests: 10,
            },
        ));
        bake.verdicts.push(verdict(
            2,
            Outcome::Fail {
                breaches: vec![Breach::ErrorRate {
                    value: 0.2,
                    max: 0.01,
                }],
            },
        ));
        bake.state.phase = BakePhase::Aborted;
        bake.state.weight = Weight::ZERO;
        d.bakes = vec![bake];
        assert_eq!(
            texts(t.update(&d, T0)),
            [
                "canary step 1/3 at 10 % interval 1: no verdict: 5 < min_requests 10; \
                 new: 5 req, 20.00 % 5xx, p99 30.0 ms; old: 500 req, 0.00 % 5xx, p99 20.0 ms",
                "canary step 1/3 at 10 % interval 2: FAIL (error rate 20.00 % > max_error_rate 1.00 %); \
                 new: 5 req, 20.00 % 5xx, p99 30.0 ms; old: 500 req, 0.00 % 5xx, p99 20.0 ms",
            ]
        );
        assert!(texts(t.update(&d, T0)).is_empty(), "each verdict once");
    }
}
