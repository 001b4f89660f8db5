//! The demo's scenario and its expectations, pure: which deployment goes to which group in which style, what the
//! coordinator must report for each (outcome, instances, the seed's per-instance event order) and which version
//! the load balancer must serve after it. Also the progress lines derived from two successive views of a
//! deployment.
//!
//! The fleet: 4 agents `i1`…`i4`, each running one copy of the demo app. The LB's service `web` points at
//! server group `blue` (`i1`, `i2`); `green` (`i3`, `i4`) is the blue/green standby. One application, three
//! deployment groups over the same app (a group's style is fixed):
//! - `rolling` (in-place, 2 at a time): v1 installs the app everywhere; nothing serves yet, so traffic starts
//!   once v1 is up (a rolling deployment without a load balancer restarts instances under their users' feet);
//! - `rolling-lb` (in-place-lb, 1 at a time): v2, every instance drained, updated and put back in turn;
//! - `blue-green` (2 at a time, automatic rollback, a `[canary]` of weighted steps judged by the LB's figures,
//!   [`canary`]): v3 goes to the idle `green` and traffic walks over to it step by step; v4 goes to the now idle
//!   `blue`, its ValidateService fails on `i2`, so the deployment fails before any traffic moves and the automatic
//!   rollback (a blue/green rollback only switches back) keeps `green` on v3 serving; v5 passes its health checks
//!   and ValidateService on `blue` but answers [`CANARY_FAIL_PERCENT`] % of real requests with a 500: the canary's
//!   first interval judges it, the weight goes back to 0 and the deployment fails by itself, `green` still
//!   serving v3.

use rollcage_proto::wire::{
    Deployment, DeploymentKind, DeploymentStatus, DeploymentStyle, StepProgress, StepState,
};

/// The agents, in order.
pub const INSTANCES: [&str; 4] = ["i1", "i2", "i3", "i4"];
/// The LB's server group serving first, and its instances.
pub const BLUE: (&str, [&str; 2]) = ("blue", ["i1", "i2"]);
/// The blue/green standby server group, and its instances.
pub const GREEN: (&str, [&str; 2]) = ("green", ["i3", "i4"]);
/// The application.
pub const APP: &str = "web";
/// The LB's backend service.
pub const SERVICE: &str = "web";
/// The instance whose ValidateService fails in v4.
pub const FAILING_INSTANCE: &str = "i2";
/// Percent of requests the bad canary (v5) answers with a 500: far above the threshold, so its first judged
/// interval aborts it.
pub const CANARY_FAIL_PERCENT: u64 = 30;

/// The blue/green group's canary: two steps, one judged interval of a second each (the demo must stay short);
/// thresholds a good revision passes under the demo's load and a bad one fails in its first interval.
pub fn canary() -> rollcage_proto::canary::AnalysisConfig {
    rollcage_proto::canary::AnalysisConfig {
        steps: vec![25, 100],
        bake_secs: 1,
        interval_secs: 1,
        // The demo's load sends ~150 requests a second; a quarter of them is far above this.
        min_requests: 10,
        max_error_rate: 0.05,
        // Both groups run the same app with the same delay: a generous ratio keeps scheduling noise on this
        // small machine from failing a good revision.
        max_p99_ratio: 5.0,
        failure_limit: 0,
        prometheus: Vec::new(),
    }
}

/// What makes a revision bad, if anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// The instance whose ValidateService fails (`FAIL_ON`).
    pub fail_on: Option<&'static str>,
    /// Percent of `GET /` the app answers with a 500 while its health checks pass (`FAIL_PERCENT`).
    pub fail_percent: u64,
}

/// The events each instance of a `style` deployment goes through, by name: the seed's order, from the one plan.
pub fn order(style: DeploymentStyle) -> Vec<&'static str> {
    rollcage_proto::plan(style, false)
        .per_instance
        .iter()
        .map(|e| e.name())
        .collect()
}

/// A deployment group of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSpec {
    /// Its name.
    pub name: &'static str,
    /// Its style.
    pub style: DeploymentStyle,
    /// Instances in flight at once.
    pub concurrency: u32,
}

/// The three groups.
pub const GROUPS: [GroupSpec; 3] = [
    GroupSpec {
        name: "rolling",
        style: DeploymentStyle::InPlace,
        // No traffic yet: two at a time is faster and harms nobody.
        concurrency: 2,
    },
    GroupSpec {
        name: "rolling-lb",
        style: DeploymentStyle::InPlaceLb,
        // Each server group has two instances: one at a time keeps the other serving.
        concurrency: 1,
    },
    GroupSpec {
        name: "blue-green",
        style: DeploymentStyle::BlueGreen,
        // The idle server group is out of traffic: all of it at once.
        concurrency: 2,
    },
];

/// One deployment the demo starts, and what must hold when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Revision label and version served (`v1`…).
    pub version: &'static str,
    /// Its group.
    pub group: &'static str,
    /// What makes the revision bad.
    pub faults: Faults,
    /// What its deployment must look like.
    pub expect: Expect,
    /// Expectations of the automatic rollback it must trigger, if any.
    pub rollback: Option<Expect>,
    /// Live traffic through the LB starts once this deployment ended (the one that brings the app up).
    pub starts_traffic: bool,
}

/// What one deployment must look like at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The summary's mode column.
    pub mode: &'static str,
    /// Final status.
    pub status: DeploymentStatus,
    /// Per instance, in the deployment's order: the events that ended (succeeded, skipped or failed).
    pub instances: Vec<(&'static str, Vec<&'static str>)>,
    /// The instance whose last event failed.
    pub failed_instance: Option<&'static str>,
    /// An automatic rollback.
    pub automatic_rollback: bool,
    /// The version the LB must serve once it ended.
    pub served_after: &'static str,
}

fn each(
    instances: &[&'static str],
    style: DeploymentStyle,
) -> Vec<(&'static str, Vec<&'static str>)> {
    instances.iter().map(|i| (*i, order(style))).collect()
}

/// The scenario: v1 rolling, v2 rolling with LB, v3 blue/green (a canary that walks its steps), v4 blue/green
/// failing → automatic rollback, v5 a canary aborted on its error rate.
pub fn scenario() -> Vec<Stage> {
    let ok = |mode, instances, served_after| Expect {
        mode,
        status: DeploymentStatus::Succeeded,
        instances,
        failed_instance: None,
        automatic_rollback: false,
        served_after,
    };
    vec![
        Stage {
            version: "v1",
            group: "rolling",
            faults: Faults::default(),
            expect: ok(
                "rolling (no LB)",
                each(&INSTANCES, DeploymentStyle::InPlace),
                "v1",
            ),
            rollback: None,
            starts_traffic: true,
        },
        Stage {
            version: "v2",
            group: "rolling-lb",
            faults: Faults::default(),
            expect: ok(
                "rolling with LB",
                each(&INSTANCES, DeploymentStyle::InPlaceLb),
                "v2",
            ),
            rollback: None,
            starts_traffic: false,
        },
        Stage {
            version: "v3",
            group: "blue-green",
            faults: Faults::default(),
            expect: ok(
                "blue/green canary",
                each(&GREEN.1, DeploymentStyle::BlueGreen),
                "v3",
            ),
            rollback: None,
            starts_traffic: false,
        },
        Stage {
            version: "v4",
            group: "blue-green",
            faults: Faults {
                fail_on: Some(FAILING_INSTANCE),
                fail_percent: 0,
            },
            expect: Expect {
                mode: "blue/green",
                status: DeploymentStatus::Failed,
                // Both blue instances run in parallel; `i2` fails its ValidateService, `i1` completes.
                instances: each(&BLUE.1, DeploymentStyle::BlueGreen),
                failed_instance: Some(FAILING_INSTANCE),
                automatic_rollback: false,
                // It failed before switching: green (v3) never stopped serving.
                served_after: "v3",
            },
            // A blue/green rollback runs no agent step: it only switches (back) to green.
            rollback: Some(Expect {
                mode: "rollback (auto)",
                status: DeploymentStatus::Succeeded,
                instances: Vec::new(),
                failed_instance: None,
                automatic_rollback: true,
                served_after: "v3",
            }),
            starts_traffic: false,
        },
        Stage {
            version: "v5",
            group: "blue-green",
            faults: Faults {
                fail_on: None,
                fail_percent: CANARY_FAIL_PERCENT,
            },
            expect: Expect {
                mode: "canary",
                // Every step of the idle group passes (health checks and ValidateService see nothing wrong); the
                // canary's judge fails SwitchTraffic.
                status: DeploymentStatus::Failed,
                instances: each(&BLUE.1, DeploymentStyle::BlueGreen),
                failed_instance: None,
                automatic_rollback: false,
                served_after: "v3",
            },
            // The weight is back at 0 already: the rollback only points the service at green, where it is.
            rollback: Some(Expect {
                mode: "rollback (auto)",
                status: DeploymentStatus::Succeeded,
                instances: Vec::new(),
                failed_instance: None,
                automatic_rollback: true,
                served_after: "v3",
            }),
            starts_traffic: false,
        },
    ]
}

/// The versions the scenario expects to be canaries aborted by the judge: bad under real requests
/// ([`Faults::fail_percent`]), their deployment failing.
pub fn aborted_canaries() -> Vec<&'static str> {
    scenario()
        .into_iter()
        .filter(|s| s.faults.fail_percent > 0 && s.expect.status == DeploymentStatus::Failed)
        .map(|s| s.version)
        .collect()
}

/// The events of one instance that ended, in plan order.
pub fn ended_events(steps: &[StepProgress]) -> Vec<&'static str> {
    steps
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                StepState::Succeeded | StepState::Failed | StepState::Skipped
            )
        })
        .map(|s| s.event.name())
        .collect()
}

/// Every way `d` differs from `want` (empty: as expected). Each problem names the deployment and instance.
pub fn check(label: &str, want: &Expect, d: &Deployment) -> Vec<String> {
    let mut problems = Vec::new();
    if d.status != want.status {
        problems.push(format!(
            "{label}: ended {} ({}), expected {}",
            d.status, d.message, want.status
        ));
    }
    let is_auto_rollback = matches!(
        d.kind,
        DeploymentKind::Rollback {
            automatic: true,
            ..
        }
    );
    if is_auto_rollback != want.automatic_rollback {
        problems.push(format!(
            "{label}: kind {:?}, expected {}",
            d.kind,
            if want.automatic_rollback {
                "an automatic rollback"
            } else {
                "a normal deployment"
            }
        ));
    }
    // Instances without any ended step (a blue/green rollback's) ran nothing: only those with steps count.
    let ran: Vec<_> = d
        .instances
        .iter()
        .filter(|i| !ended_events(&i.steps).is_empty())
        .collect();
    let names: Vec<&str> = ran.iter().map(|i| i.instance.as_str()).collect();
    let want_names: Vec<&str> = want.instances.iter().map(|(n, _)| *n).collect();
    if names != want_names {
        problems.push(format!(
            "{label}: instances {names:?} ran steps, expected {want_names:?}"
        ));
    }
    for (name, order) in &want.instances {
        let Some(inst) = d.instances.iter().find(|i| i.instance == *name) else {
            continue;
        };
        let got = ended_events(&inst.steps);
        let failing = want.failed_instance == Some(*name);
        if got != *order {
            problems.push(format!(
                "{label} {name}: events {got:?}, expected the seed's {order:?}"
            ));
        }
        let failed: Vec<&str> = inst
            .steps
            .iter()
            .filter(|s| s.state == StepState::Failed)
            .map(|s| s.event.name())
            .collect();
        let want_failed: Vec<&str> = if failing {
            order.last().copied().into_iter().collect()
        } else {
            Vec::new()
        };
        if failed != want_failed {
            problems.push(format!(
                "{label} {name}: failed steps {failed:?}, expected {want_failed:?}"
            ));
        }
    }
    problems
}

/// One step that changed to an ended state between two views of a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct StepChange {
    /// Instance.
    pub instance: String,
    /// Event.
    pub event: &'static str,
    /// New state.
    pub state: StepState,
    /// Its duration, when both ends are known.
    pub seconds: Option<f64>,
    /// The first line of the step's message, for failures.
    pub detail: String,
}

/// The steps of `now` that ended since `before` (none seen yet: every ended step), in plan order.
pub fn step_changes(before: Option<&Deployment>, now: &Deployment) -> Vec<StepChange> {
    let state_before = |inst: &str, idx: usize| {
        before
            .and_then(|b| b.instances.iter().find(|i| i.instance == inst))
            .and_then(|i| i.steps.get(idx))
            .map(|s| s.state)
    };
    let mut out = Vec::new();
    for inst in &now.instances {
        for (idx, s) in inst.steps.iter().enumerate() {
            let ended = matches!(
                s.state,
                StepState::Succeeded
                    | StepState::Failed
                    | StepState::Skipped
                    | StepState::Cancelled
            );
            if !ended || state_before(&inst.instance, idx) == Some(s.state) {
                continue;
            }
            let seconds = match (s.started_at_ms, s.ended_at_ms) {
                (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1000.0),
                _ => None,
            };
            let detail = if s.state == StepState::Failed {
                let tail = s.log_tail.trim().lines().last().unwrap_or("").trim();
                let msg = s.message.lines().next().unwrap_or("").trim();
                match (msg.is_empty(), tail.is_empty()) {
                    (_, true) => msg.to_owned(),
                    (true, false) => tail.to_owned(),
                    (false, false) => format!("{msg}: {tail}"),
                }
            } else {
                String::new()
            };
            out.push(StepChange {
                instance: inst.instance.clone(),
                event: s.event.name(),
                state: s.state,
                seconds,
                detail,
            });
        }
    }
    out
}

/// A progress line: `v2 i3 BlockTraffic succeeded 0.2s`.
pub fn progress_line(label: &str, c: &StepChange) -> String {
    // A failure is shouted so it stands out in the demo's scrolling output.
    let state = match c.state {
        StepState::Failed => "FAILED",
        other => other.name(),
    };
    let mut line = format!("{label} {} {} {state}", c.instance, c.event);
    if let Some(s) = c.seconds {
        line.push_str(&format!(" {s:.1}s"));
    }
    if !c.detail.is_empty() {
        line.push_str(&format!(": {}", c.detail));
    }
    line
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::expect_used,
        reason = "fixtures built from the constants above"
    )]
    use super::*;
    use rollcage_proto::LifecycleEvent;
    use rollcage_proto::wire::{Concurrency, InstanceProgress, InstanceStatus};

    fn step(event: &str, state: StepState) -> StepProgress {
        StepProgress {
            event: event.parse::<LifecycleEvent>().expect("a known event"),
            state,
            started_at_ms: Some(1_000),
            ended_at_ms: Some(1_250),
            message: if state == StepState::Failed {
                "script exited 1".into()
            } else {
                String::new()
            },
            log_tail: if state == StepState::Failed {
                "x\nhealth check failed on i2\n".into()
            } else {
                String::new()
            },
        }
    }

    fn instance(name: &str, order: &[&str], fail_last: bool) -> InstanceProgress {
        let steps = order
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let state = match (fail_last && k + 1 == order.len(), *e) {
                    (true, _) => StepState::Failed,
                    (false, "ApplicationStop") => StepState::Skipped,
                    _ => StepState::Succeeded,
                };
                step(e, state)
            })
            .collect();
        InstanceProgress {
            instance: name.into(),
            status: if fail_last {
                InstanceStatus::Failed
            } else {
                InstanceStatus::Succeeded
            },
            steps,
        }
    }

    fn deployment(status: DeploymentStatus, instances: Vec<InstanceProgress>) -> Deployment {
        Deployment {
            id: "d-1".into(),
            application: APP.into(),
            group: "g".into(),
            revision: "r-1".into(),
            style: DeploymentStyle::InPlace,
            concurrency: Concurrency::Count(1),
            failure_tolerance: 0,
            kind: DeploymentKind::Normal,
            status,
            message: String::new(),
            created_at_ms: 0,
            ended_at_ms: Some(1),
            rollback_deployment: None,
            actors: Default::default(),
            description: None,
            ignore_application_stop_failures: false,
            file_exists_behavior: None,
            bakes: Vec::new(),
            instances,
        }
    }

    #[test]
    fn the_scenario_covers_every_style_and_ends_on_a_rollback_to_v3() {
        let s = scenario();
        let versions: Vec<&str> = s.iter().map(|st| st.version).collect();
        assert_eq!(versions, ["v1", "v2", "v3", "v4", "v5"]);
        let styles: Vec<DeploymentStyle> = s
            .iter()
            .filter_map(|st| GROUPS.iter().find(|g| g.name == st.group))
            .map(|g| g.style)
            .collect();
        assert_eq!(
            styles,
            [
                DeploymentStyle::InPlace,
                DeploymentStyle::InPlaceLb,
                DeploymentStyle::BlueGreen,
                DeploymentStyle::BlueGreen,
                DeploymentStyle::BlueGreen
            ]
        );
        let v4 = &s[3];
        assert_eq!(v4.faults.fail_on, Some("i2"));
        let v5 = &s[4];
        assert_eq!(v5.faults.fail_percent, CANARY_FAIL_PERCENT);
        assert_eq!(v5.expect.status, DeploymentStatus::Failed);
        assert_eq!(v5.expect.served_after, "v3");
        assert_eq!(aborted_canaries(), ["v5"]);
        assert_eq!(v4.expect.status, DeploymentStatus::Failed);
        let rb = v4.rollback.as_ref().expect("v4 expects a rollback");
        assert!(rb.automatic_rollback);
        assert_eq!(rb.served_after, "v3");
        assert!(s[..3].iter().all(|st| st.rollback.is_none()));
        // Traffic starts after v1, the deployment that brings the app up, and runs through all the others.
        let starts: Vec<&str> = s
            .iter()
            .filter(|st| st.starts_traffic)
            .map(|st| st.version)
            .collect();
        assert_eq!(starts, ["v1"]);
    }

    #[test]
    fn every_stage_expects_the_one_plan_of_its_group_s_style() {
        for stage in scenario() {
            let Some(group) = GROUPS.iter().find(|g| g.name == stage.group) else {
                panic!("stage {} names an unknown group", stage.version);
            };
            let want: Vec<&str> = rollcage_proto::plan(group.style, false)
                .per_instance
                .iter()
                .map(|e| e.name())
                .collect();
            assert!(!stage.expect.instances.is_empty(), "{}", stage.version);
            for (instance, order) in &stage.expect.instances {
                assert_eq!(order, &want, "{} {instance}", stage.version);
            }
        }
    }

    #[test]
    fn a_deployment_as_the_seed_says_passes() {
        let s = scenario();
        let d = deployment(
            DeploymentStatus::Succeeded,
            INSTANCES
                .iter()
                .map(|i| instance(i, &order(DeploymentStyle::InPlaceLb), false))
                .collect(),
        );
        assert_eq!(check("v2", &s[1].expect, &d), Vec::<String>::new());
        let v4 = deployment(
            DeploymentStatus::Failed,
            vec![
                instance("i1", &order(DeploymentStyle::BlueGreen), false),
                instance("i2", &order(DeploymentStyle::BlueGreen), true),
            ],
        );
        assert_eq!(check("v4", &s[3].expect, &v4), Vec::<String>::new());
        let mut rb = deployment(DeploymentStatus::Succeeded, Vec::new());
        rb.kind = DeploymentKind::Rollback {
            of: "d-1".into(),
            automatic: true,
        };
        let want = s[3].rollback.clone().expect("a rollback");
        assert_eq!(check("rb", &want, &rb), Vec::<String>::new());
    }

    #[test]
    fn wrong_order_outcome_instances_or_kind_are_each_reported() {
        let s = scenario();
        let lb = order(DeploymentStyle::InPlaceLb);
        let mut swapped = lb.clone();
        swapped.swap(1, 2);
        let d = deployment(
            DeploymentStatus::Succeeded,
            vec![
                instance("i1", &lb, false),
                instance("i2", &swapped, false),
                instance("i3", &lb, false),
            ],
        );
        let p = check("v2", &s[1].expect, &d);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("instances"), "{p:?}");
        assert!(p[1].starts_with("v2 i2: events"), "{p:?}");

        // v4 that succeeded: status and the missing failure are both reported.
        let v4 = deployment(
            DeploymentStatus::Succeeded,
            vec![
                instance("i1", &order(DeploymentStyle::BlueGreen), false),
                instance("i2", &order(DeploymentStyle::BlueGreen), false),
            ],
        );
        let p = check("v4", &s[3].expect, &v4);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("expected failed"), "{p:?}");
        assert!(p[1].contains("failed steps []"), "{p:?}");

        // A manual rollback is not the automatic one expected.
        let mut rb = deployment(DeploymentStatus::Succeeded, Vec::new());
        rb.kind = DeploymentKind::Rollback {
            of: "d-1".into(),
            automatic: false,
        };
        let want = s[3].rollback.clone().expect("a rollback");
        assert_eq!(check("rb", &want, &rb).len(), 1);
    }

    #[test]
    fn progress_shows_each_newly_ended_step_once() {
        let mut first = deployment(
            DeploymentStatus::InProgress,
            vec![instance(
                "i2",
                &["DownloadBundle", "ApplicationStop"],
                false,
            )],
        );
        first.instances[0]
            .steps
            .push(step("BeforeInstall", StepState::Running));
        let all = step_changes(None, &first);
        assert_eq!(all.len(), 2);
        assert_eq!(
            progress_line("v4", &all[0]),
            "v4 i2 DownloadBundle succeeded 0.2s"
        );
        assert_eq!(
            progress_line("v4", &all[1]),
            "v4 i2 ApplicationStop skipped 0.2s"
        );
        let mut second = first.clone();
        second.instances[0].steps[2] = step("BeforeInstall", StepState::Failed);
        let new = step_changes(Some(&first), &second);
        assert_eq!(new.len(), 1);
        assert_eq!(
            progress_line("v4", &new[0]),
            "v4 i2 BeforeInstall FAILED 0.2s: script exited 1: health check failed on i2"
        );
        assert!(step_changes(Some(&second), &second).is_empty());
    }
}
