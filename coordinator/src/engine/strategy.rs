//! The rolling strategy as pure functions: from a deployment's state to the next actions. No I/O, no clock.
//!
//! The executor ([`super::executor`]) loads a [`DeploymentView`] from the database, calls [`decide`], applies the
//! returned [`Action`]s in one transaction, and calls [`after_report`] when an agent reports a step. Everything a
//! rolling deployment promises is decided here, so it is tested here:
//! - at most [`Concurrency::limit`] instances are between their first and last step at once (a sliding window:
//!   a new instance starts as soon as one ends);
//! - an instance fails when one of its steps fails; once more instances failed than the group tolerates, no new
//!   instance starts, the ones in flight finish, and the deployment fails when the last of them ends — which is
//!   also when an automatic rollback starts;
//! - a stop lets in-flight instances finish; a forced stop cancels them at once.

use rollcage_proto::wire::{Concurrency, StepOutcome};

/// Where one instance is within its step plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Pending,
    /// Steps `0..next` are done; step `next` has not been sent yet.
    Ready {
        /// Index of the next step in the plan.
        next: usize,
    },
    /// Step `step` was sent to the agent; waiting for its report.
    Awaiting {
        /// Index of the step in flight.
        step: usize,
    },
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed.
    Failed,
    /// Never started (the deployment failed or was stopped first).
    Skipped,
    /// Cancelled by a forced stop.
    Cancelled,
}

impl Phase {
    /// Between its first and last step.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Ready { .. } | Self::Awaiting { .. })
    }
}

/// One instance of the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// Instance name.
    pub name: String,
    /// Where it is.
    pub phase: Phase,
}

/// Whether an operator asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Running normally.
    Running,
    /// Stop asked; `force` cancels in-flight steps instead of letting them finish.
    Stopping {
        /// Cancel in-flight steps.
        force: bool,
    },
}

/// What the strategy sees of a deployment that is still active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    /// Instances in flight at once.
    pub concurrency: Concurrency,
    /// Failed instances tolerated.
    pub failure_tolerance: u32,
    /// Start a rollback when the deployment fails.
    pub auto_rollback: bool,
    /// This deployment is itself a rollback (never rolled back automatically, so failures cannot loop).
    pub is_rollback: bool,
    /// Stop asked or not.
    pub mode: Mode,
    /// Steps per instance.
    pub plan_len: usize,
    /// Instances, in the order they start.
    pub instances: Vec<InstanceView>,
}

/// How a finished deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every instance succeeded, or failures stayed within the tolerance.
    Succeeded,
    /// Too many instances failed.
    Failed,
    /// An operator stopped it.
    Stopped,
}

/// One thing the executor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send step `step` of the plan to `instance` (its first step starts the instance).
    Dispatch {
        /// Instance name.
        instance: String,
        /// Step index.
        step: usize,
    },
    /// Cancel the instance's in-flight step (forced stop).
    Cancel {
        /// Instance name.
        instance: String,
    },
    /// Mark a never-started instance as skipped.
    Skip {
        /// Instance name.
        instance: String,
    },
    /// End the deployment.
    Finish {
        /// How it ended.
        outcome: Outcome,
        /// Why, for people.
        message: String,
    },
    /// Start a rollback deployment of the group's last successful revision, with the same concurrency.
    StartRollback,
}

/// The instance's phase after a report of step `step` out of `plan_len`.
pub fn after_report(step: usize, plan_len: usize, outcome: StepOutcome) -> Phase {
    match outcome {
        StepOutcome::Failed => Phase::Failed,
        StepOutcome::Succeeded | StepOutcome::Skipped if step + 1 >= plan_len => Phase::Succeeded,
        StepOutcome::Succeeded | StepOutcome::Skipped => Phase::Ready { next: step + 1 },
    }
}

/// The next actions for an active deployment. Applying them and calling again with the resulting state yields no
/// new dispatches until a report arrives (the function is idempotent on a settled state).
pub fn decide(view: &DeploymentView) -> Vec<Action> {
    let mut actions = Vec::new();
    let total = view.instances.len();
    let limit = view.concurrency.limit(total);
    let failed = count(view, |p| p == Phase::Failed);
    let succeeded = count(view, |p| p == Phase::Succeeded);
    let too_many_failures = failed > usize::try_from(view.failure_tolerance).unwrap_or(usize::MAX);
    let force = matches!(view.mode, Mode::Stopping { force: true });
    let stopping = matches!(view.mode, Mode::Stopping { .. });

    let mut in_flight = 0;
    for inst in &view.instances {
        match inst.phase {
            Phase::Ready { .. } | Phase::Awaiting { .. } if force => actions.push(Action::Cancel {
                instance: inst.name.clone(),
            }),
            // In-flight instances always go on to their next step, even after a failure elsewhere or a stop.
            Phase::Ready { next } => {
                actions.push(Action::Dispatch {
                    instance: inst.name.clone(),
                    step: next,
                });
                in_flight += 1;
            }
            Phase::Awaiting { .. } => in_flight += 1,
            _ => {}
        }
    }

    let starts_allowed = !stopping && !too_many_failures;
    let mut pending = view
        .instances
        .iter()
        .filter(|i| i.phase == Phase::Pending)
        .peekable();
    if starts_allowed && view.plan_len > 0 {
        while in_flight < limit {
            let Some(inst) = pending.next() else { break };
            actions.push(Action::Dispatch {
                instance: inst.name.clone(),
                step: 0,
            });
            in_flight += 1;
        }
    }

    if in_flight > 0 {
        return actions;
    }
    // Nothing in flight: either everything ran, or nothing more may start. The deployment ends now.
    let left: Vec<_> = pending.collect();
    for inst in &left {
        actions.push(Action::Skip {
            instance: inst.name.clone(),
        });
    }
    if view.plan_len == 0 && starts_allowed {
        // An empty plan has nothing to do on any instance.
        actions.push(Action::Finish {
            outcome: Outcome::Succeeded,
            message: "nothing to do: the step plan is empty".to_owned(),
        });
        return actions;
    }
    let cancelled = count(view, |p| p == Phase::Cancelled) + if force { total_in(view) } else { 0 };
    if stopping {
        actions.push(Action::Finish {
            outcome: Outcome::Stopped,
            message: format!(
                "stopped by an operator{}: {succeeded} succeeded, {failed} failed, {cancelled} cancelled, {} not started",
                if force { " (forced)" } else { "" },
                left.len()
            ),
        });
    } else if too_many_failures || (succeeded == 0 && total > 0) {
        actions.push(Action::Finish {
            outcome: Outcome::Failed,
            message: format!(
                "{failed} of {total} instance(s) failed (tolerance {}); {succeeded} succeeded, {} not started",
                view.failure_tolerance,
                left.len()
            ),
        });
        if view.auto_rollback && !view.is_rollback {
            actions.push(Action::StartRollback);
        }
    } else {
        actions.push(Action::Finish {
            outcome: Outcome::Succeeded,
            message: format!("{succeeded} of {total} instance(s) succeeded, {failed} failed"),
        });
    }
    actions
}

fn count(view: &DeploymentView, f: impl Fn(Phase) -> bool) -> usize {
    view.instances.iter().filter(|i| f(i.phase)).count()
}

/// In-flight instances (cancelled by the forced stop being decided now).
fn total_in(view: &DeploymentView) -> usize {
    view.instances
        .iter()
        .filter(|i| i.phase.in_flight())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(concurrency: Concurrency, phases: &[Phase]) -> DeploymentView {
        DeploymentView {
            concurrency,
            failure_tolerance: 0,
            auto_rollback: false,
            is_rollback: false,
            mode: Mode::Running,
            plan_len: 7,
            instances: phases
                .iter()
                .enumerate()
                .map(|(i, &phase)| InstanceView {
                    name: format!("i{i}"),
                    phase,
                })
                .collect(),
        }
    }

    fn dispatched(actions: &[Action]) -> Vec<(String, usize)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dispatch { instance, step } => Some((instance.clone(), *step)),
                _ => None,
            })
            .collect()
    }

    fn finish(actions: &[Action]) -> Option<Outcome> {
        actions.iter().find_map(|a| match a {
            Action::Finish { outcome, .. } => Some(*outcome),
            _ => None,
        })
    }

    fn starts(c: Concurrency, n: usize) -> usize {
        let v = view(c, &vec![Phase::Pending; n]);
        dispatched(&decide(&v)).len()
    }

    #[test]
    fn first_batch_respects_count_percent_and_all() {
        assert_eq!(starts(Concurrency::Count(1), 4), 1);
        assert_eq!(starts(Concurrency::Count(2), 4), 2);
        assert_eq!(starts(Concurrency::Count(9), 4), 4);
        assert_eq!(starts(Concurrency::Percent(50), 4), 2);
        assert_eq!(
            starts(Concurrency::Percent(50), 5),
            2,
            "50% of 5 rounds down"
        );
        assert_eq!(
            starts(Concurrency::Percent(99), 4),
            3,
            "99% of 4 rounds down"
        );
        assert_eq!(starts(Concurrency::Percent(1), 4), 1, "at least one");
        assert_eq!(starts(Concurrency::Percent(100), 4), 4);
        assert_eq!(starts(Concurrency::All, 4), 4);
        assert_eq!(starts(Concurrency::All, 2000), 2000);
        for n in 1..=20 {
            for p in 1..=100u8 {
                let want = (n * usize::from(p) / 100).max(1);
                assert_eq!(starts(Concurrency::Percent(p), n), want, "{p}% of {n}");
            }
        }
    }

    #[test]
    fn first_steps_are_step_zero_in_instance_order() {
        let v = view(Concurrency::Count(2), &[Phase::Pending; 4]);
        assert_eq!(
            dispatched(&decide(&v)),
            [("i0".to_owned(), 0), ("i1".to_owned(), 0)]
        );
    }

    #[test]
    fn a_ready_instance_gets_its_next_step_and_no_new_instance_starts_while_full() {
        let v = view(
            Concurrency::Count(1),
            &[Phase::Ready { next: 3 }, Phase::Pending, Phase::Pending],
        );
        assert_eq!(dispatched(&decide(&v)), [("i0".to_owned(), 3)]);
    }

    #[test]
    fn awaiting_instances_occupy_slots_and_yield_nothing() {
        let v = view(
            Concurrency::Count(2),
            &[
                Phase::Awaiting { step: 1 },
                Phase::Awaiting { step: 4 },
                Phase::Pending,
            ],
        );
        assert!(decide(&v).is_empty());
    }

    #[test]
    fn a_slot_freed_by_a_finished_instance_starts_the_next_one() {
        let v = view(
            Concurrency::Count(2),
            &[
                Phase::Succeeded,
                Phase::Awaiting { step: 4 },
                Phase::Pending,
                Phase::Pending,
            ],
        );
        assert_eq!(dispatched(&decide(&v)), [("i2".to_owned(), 0)]);
    }

    #[test]
    fn all_succeeded_finishes_succeeded() {
        let v = view(Concurrency::Count(1), &[Phase::Succeeded; 3]);
        assert_eq!(finish(&decide(&v)), Some(Outcome::Succeeded));
    }

    #[test]
    fn a_failure_stops_new_starts_but_in_flight_instances_finish() {
        let v = view(
            Concurrency::Count(2),
            &[Phase::Failed, Phase::Ready { next: 5 }, Phase::Pending],
        );
        let a = decide(&v);
        assert_eq!(dispatched(&a), [("i1".to_owned(), 5)]);
        assert_eq!(finish(&a), None, "not finished while i1 is in flight");
    }

    #[test]
    fn failure_with_nothing_in_flight_fails_and_skips_the_rest() {
        let mut v = view(
            Concurrency::Count(2),
            &[
                Phase::Failed,
                Phase::Succeeded,
                Phase::Pending,
                Phase::Pending,
            ],
        );
        v.auto_rollback = true;
        let a = decide(&v);
        assert_eq!(finish(&a), Some(Outcome::Failed));
        assert_eq!(
            a.iter()
                .filter(|a| matches!(a, Action::Skip { .. }))
                .count(),
            2
        );
        assert_eq!(a.last(), Some(&Action::StartRollback));
    }

    #[test]
    fn rollback_starts_only_when_the_last_in_flight_instance_ends() {
        let mut v = view(
            Concurrency::Count(3),
            &[
                Phase::Failed,
                Phase::Awaiting { step: 2 },
                Phase::Ready { next: 6 },
            ],
        );
        v.auto_rollback = true;
        assert!(!decide(&v).contains(&Action::StartRollback));
        v.instances[1].phase = Phase::Succeeded;
        assert!(!decide(&v).contains(&Action::StartRollback));
        v.instances[2].phase = Phase::Failed;
        let a = decide(&v);
        assert_eq!(finish(&a), Some(Outcome::Failed));
        assert!(a.contains(&Action::StartRollback));
    }

    #[test]
    fn no_rollback_without_auto_rollback_or_for_a_rollback() {
        let mut v = view(Concurrency::Count(1), &[Phase::Failed]);
        assert!(!decide(&v).contains(&Action::StartRollback));
        v.auto_rollback = true;
        v.is_rollback = true;
        let a = decide(&v);
        assert_eq!(finish(&a), Some(Outcome::Failed));
        assert!(!a.contains(&Action::StartRollback));
    }

    #[test]
    fn failures_within_tolerance_keep_going_and_succeed() {
        let mut v = view(
            Concurrency::Count(1),
            &[Phase::Failed, Phase::Pending, Phase::Pending],
        );
        v.failure_tolerance = 1;
        assert_eq!(dispatched(&decide(&v)), [("i1".to_owned(), 0)]);
        v.instances[1].phase = Phase::Succeeded;
        v.instances[2].phase = Phase::Succeeded;
        assert_eq!(finish(&decide(&v)), Some(Outcome::Succeeded));
        v.instances[2].phase = Phase::Failed;
        assert_eq!(
            finish(&decide(&v)),
            Some(Outcome::Failed),
            "two failures exceed a tolerance of one"
        );
    }

    #[test]
    fn tolerating_every_failure_still_needs_one_success() {
        let mut v = view(Concurrency::All, &[Phase::Failed, Phase::Failed]);
        v.failure_tolerance = 5;
        assert_eq!(finish(&decide(&v)), Some(Outcome::Failed));
    }

    #[test]
    fn stop_lets_in_flight_finish_then_stops() {
        let mut v = view(
            Concurrency::Count(2),
            &[
                Phase::Ready { next: 2 },
                Phase::Awaiting { step: 1 },
                Phase::Pending,
            ],
        );
        v.mode = Mode::Stopping { force: false };
        let a = decide(&v);
        assert_eq!(dispatched(&a), [("i0".to_owned(), 2)]);
        assert_eq!(finish(&a), None);
        v.instances[0].phase = Phase::Succeeded;
        v.instances[1].phase = Phase::Succeeded;
        let a = decide(&v);
        assert_eq!(finish(&a), Some(Outcome::Stopped));
        assert!(a.contains(&Action::Skip {
            instance: "i2".into()
        }));
        assert!(dispatched(&a).is_empty());
    }

    #[test]
    fn forced_stop_cancels_in_flight_and_stops_at_once() {
        let mut v = view(
            Concurrency::Count(2),
            &[
                Phase::Ready { next: 2 },
                Phase::Awaiting { step: 1 },
                Phase::Pending,
            ],
        );
        v.mode = Mode::Stopping { force: true };
        v.auto_rollback = true;
        let a = decide(&v);
        assert!(dispatched(&a).is_empty());
        assert_eq!(
            a.iter()
                .filter(|a| matches!(a, Action::Cancel { .. }))
                .count(),
            2
        );
        assert_eq!(finish(&a), Some(Outcome::Stopped));
        assert!(
            !a.contains(&Action::StartRollback),
            "a stop is not a failure"
        );
    }

    #[test]
    fn after_report_advances_finishes_or_fails() {
        assert_eq!(
            after_report(0, 7, StepOutcome::Succeeded),
            Phase::Ready { next: 1 }
        );
        assert_eq!(
            after_report(2, 7, StepOutcome::Skipped),
            Phase::Ready { next: 3 }
        );
        assert_eq!(after_report(6, 7, StepOutcome::Succeeded), Phase::Succeeded);
        assert_eq!(after_report(6, 7, StepOutcome::Skipped), Phase::Succeeded);
        assert_eq!(after_report(3, 7, StepOutcome::Failed), Phase::Failed);
    }

    #[test]
    fn settled_state_is_idempotent() {
        let v = view(
            Concurrency::Count(2),
            &[
                Phase::Awaiting { step: 0 },
                Phase::Awaiting { step: 0 },
                Phase::Pending,
            ],
        );
        assert!(decide(&v).is_empty());
    }

    /// Drive whole deployments with random report orders and failures; check the invariants every time.
    #[test]
    fn simulated_deployments_never_exceed_the_limit_and_always_end() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..500 {
            let n = rng.usize(1..12);
            let c = match rng.u8(0..3) {
                0 => Concurrency::Count(rng.u32(1..6)),
                1 => Concurrency::Percent(rng.u8(1..=100)),
                _ => Concurrency::All,
            };
            let mut v = view(c, &vec![Phase::Pending; n]);
            v.plan_len = 6;
            v.failure_tolerance = rng.u32(0..3);
            v.auto_rollback = true;
            let fail_rate = rng.u8(0..4); // out of 20
            let limit = c.limit(n);
            let mut end = None;
            for _ in 0..10_000 {
                let actions = decide(&v);
                for a in &actions {
                    match a {
                        Action::Dispatch { instance, step } => {
                            let i = v.instances.iter_mut().find(|i| &i.name == instance);
                            let Some(i) = i else {
                                panic!("unknown instance")
                            };
                            assert!(
                                matches!((i.phase, *step), (Phase::Pending, 0))
                                    || i.phase == Phase::Ready { next: *step }
                            );
                            i.phase = Phase::Awaiting { step: *step };
                        }
                        Action::Skip { instance } => {
                            if let Some(i) = v.instances.iter_mut().find(|i| &i.name == instance) {
                                i.phase = Phase::Skipped;
                            }
                        }
                        Action::Finish { outcome, .. } => end = Some(*outcome),
                        Action::Cancel { .. } | Action::StartRollback => {}
                    }
                }
                let flying = v.instances.iter().filter(|i| i.phase.in_flight()).count();
                assert!(
                    flying <= limit,
                    "round {round}: {flying} in flight > {limit}"
                );
                if end.is_some() {
                    break;
                }
                // One random awaiting instance reports.
                let awaiting: Vec<usize> = (0..n)
                    .filter(|&i| matches!(v.instances[i].phase, Phase::Awaiting { .. }))
                    .collect();
                assert!(
                    !awaiting.is_empty(),
                    "round {round}: stuck without finishing"
                );
                let k = awaiting[rng.usize(0..awaiting.len())];
                let Phase::Awaiting { step } = v.instances[k].phase else {
                    continue;
                };
                let outcome = if rng.u8(0..20) < fail_rate {
                    StepOutcome::Failed
                } else {
                    StepOutcome::Succeeded
                };
                v.instances[k].phase = after_report(step, v.plan_len, outcome);
            }
            let failed = v
                .instances
                .iter()
                .filter(|i| i.phase == Phase::Failed)
                .count();
            let expected =
                if failed > usize::try_from(v.failure_tolerance).unwrap_or(0) || failed == n {
                    Outcome::Failed
                } else {
                    Outcome::Succeeded
                };
            assert_eq!(end, Some(expected), "round {round}");
            assert!(
                v.instances
                    .iter()
                    .all(|i| !i.phase.in_flight() && i.phase != Phase::Pending),
                "round {round}: every instance settled"
            );
        }
    }
}
