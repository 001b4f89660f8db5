//! The rolling strategy as pure functions: from a deployment's state to the next actions. No I/O, no clock.
//!
//! The executor ([`super::executor`]) loads a [`DeploymentView`] from the database, calls [`decide`], applies the
//! returned [`Action`]s in one transaction, and calls [`after_report`] when an agent reports a step. Everything a
//! rolling deployment promises is decided here, so it is tested here:
//! - at most [`Concurrency::limit`] instances are between their first and last step at once (a sliding window:
//!   a new instance starts as soon as one ends); under a minimum healthy the window narrows by one per failed
//!   instance ([`Concurrency::window`]), and when it closes with instances left the deployment fails;
//! - an instance fails when one of its steps fails; once more instances failed than the group tolerates, no new
//!   instance starts, the ones in flight finish, and the deployment fails when the last of them ends — which is
//!   also when an automatic rollback starts;
//! - a stop lets in-flight instances finish; a forced stop cancels them at once;
//! - a deployment-wide final step (blue/green's SwitchTraffic) runs once every instance is done and the
//!   deployment would succeed, after an operator's `continue` when the group asks for one; the deployment ends
//!   with that step's outcome. A blue/green rollback has no instance steps: it is only that final step.

use rollcage_proto::wire::{Concurrency, StepOutcome};

/// Where one instance is within its step plan (used by [`after_report`] and the tests' model).
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

/// What the strategy sees of a deployment that is still active. It is a summary (counts, plus the few names that
/// can be acted on), so one decision costs the same for 4 instances or 2,000.
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
    /// Instances in the deployment.
    pub total: usize,
    /// Instances waiting for a step report.
    pub awaiting: usize,
    /// Instances that succeeded.
    pub succeeded: usize,
    /// Instances that failed.
    pub failed: usize,
    /// Instances cancelled by a forced stop.
    pub cancelled: usize,
    /// Instances not started.
    pub pending: usize,
    /// In-flight instances whose next step has not been sent: (name, step index).
    pub ready: Vec<(String, usize)>,
    /// The first pending instances in start order (at least as many as could start now).
    pub pending_head: Vec<String>,
    /// The deployment-wide final step, for styles that have one (blue/green).
    pub finally: Option<Final>,
}

/// The deployment-wide final step's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Final {
    /// Where it is.
    pub phase: FinalPhase,
    /// Wait for an operator's `continue` before starting it.
    pub wait_for_continue: bool,
    /// `continue` was given.
    pub continued: bool,
}

/// Where the final step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalPhase {
    /// Not started.
    Pending,
    /// Running (the coordinator performs it).
    Running,
    /// Done.
    Succeeded,
    /// Failed or cancelled.
    Failed,
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
    /// Cancel every in-flight step and mark those instances cancelled (forced stop).
    CancelInFlight,
    /// Mark every never-started instance as skipped.
    SkipPending,
    /// End the deployment.
    Finish {
        /// How it ended.
        outcome: Outcome,
        /// Why, for people.
        message: String,
    },
    /// Start a rollback deployment of the group's last successful revision, with the same concurrency.
    StartRollback,
    /// Start the deployment-wide final step.
    StartFinal,
    /// Pause in `ready` until an operator's `continue`.
    AwaitContinue,
}

/// The instance's phase after a report of step `step` out of `plan_len`.
pub fn after_report(step: usize, plan_len: usize, outcome: StepOutcome) -> Phase {
    match outcome {
        StepOutcome::Failed => Phase::Failed,
        StepOutcome::Succeeded | StepOutcome::Skipped if step + 1 >= plan_len => Phase::Succeeded,
        StepOutcome::Succeeded | StepOutcome::Skipped => Phase::Ready { next: step + 1 },
    }
}

/// The actions that follow a report leaving its instance [`Phase::Ready`] on an otherwise settled deployment
/// (one for which [`decide`] returned nothing): only that instance's next step, since no count changed. This is
/// `decide` specialised for the hot path, so a report costs no scan of the deployment's instances; the tests
/// check it agrees with `decide`.
pub fn after_ready(mode: Mode, instance: &str, next: usize) -> Option<Vec<Action>> {
    match mode {
        Mode::Stopping { force: true } => None,
        _ => Some(vec![Action::Dispatch {
            instance: instance.to_owned(),
            step: next,
        }]),
    }
}

/// The next actions for an active deployment. Applying them and calling again with the resulting state yields no
/// new dispatches until a report arrives (the function is idempotent on a settled state).
pub fn decide(view: &DeploymentView) -> Vec<Action> {
    let mut actions = Vec::new();
    let total = view.total;
    // A minimum healthy narrows the window as instances fail (never below the minimum healthy); the other forms
    // keep their limit.
    let limit = view.concurrency.window(total, view.failed);
    let too_many_failures =
        view.failed > usize::try_from(view.failure_tolerance).unwrap_or(usize::MAX);
    let force = matches!(view.mode, Mode::Stopping { force: true });
    let stopping = matches!(view.mode, Mode::Stopping { .. });
    let mut in_flight = view.awaiting + view.ready.len();
    let mut cancelled = view.cancelled;

    if force && in_flight > 0 {
        actions.push(Action::CancelInFlight);
        cancelled += in_flight;
        in_flight = 0;
    } else {
        // In-flight instances always go on to their next step, even after a failure elsewhere or a stop.
        for (instance, step) in &view.ready {
            actions.push(Action::Dispatch {
                instance: instance.clone(),
                step: *step,
            });
        }
    }

    let starts_allowed = !stopping && !too_many_failures && view.plan_len > 0;
    let mut started = 0;
    if starts_allowed {
        for instance in &view.pending_head {
            if in_flight >= limit {
                break;
            }
            actions.push(Action::Dispatch {
                instance: instance.clone(),
                step: 0,
            });
            in_flight += 1;
            started += 1;
        }
    }
    if in_flight > 0 {
        return actions;
    }
    // Nothing in flight: either everything ran, or nothing more may start. The deployment ends now.
    let not_started = view.pending - started;
    if not_started > 0 {
        actions.push(Action::SkipPending);
    }
    let (succeeded, failed) = (view.succeeded, view.failed);
    // A traffic switch in flight is let finish, even by a forced stop: cut off half-way, the load balancer and the
    // group's record of its live side could disagree (and the next deployment would target the live side). It is
    // one load-balancer call with its own deadline, so the stop still ends soon.
    if matches!(
        view.finally,
        Some(Final {
            phase: FinalPhase::Running,
            ..
        })
    ) {
        return actions;
    }
    if stopping {
        actions.push(Action::Finish {
            outcome: Outcome::Stopped,
            message: format!(
                "stopped by an operator{}: {succeeded} succeeded, {failed} failed, {cancelled} cancelled, {not_started} not started",
                if force { " (forced)" } else { "" },
            ),
        });
        return actions;
    }
    // Instances left that may not start: only a minimum healthy's window closing does that (CodeDeploy's
    // HEALTH_CONSTRAINTS); the deployment fails, saying so.
    if not_started > 0 && !too_many_failures && view.plan_len > 0 {
        actions.push(Action::Finish {
            outcome: Outcome::Failed,
            message: format!(
                "{failed} of {total} instance(s) failed: one more in flight would leave fewer healthy than the \
                 minimum ({}); {succeeded} succeeded, {not_started} not started",
                view.concurrency,
            ),
        });
        if view.auto_rollback && !view.is_rollback {
            actions.push(Action::StartRollback);
        }
        return actions;
    }
    let instances_failed =
        view.plan_len > 0 && (too_many_failures || (succeeded == 0 && total > 0));
    if instances_failed {
        actions.push(Action::Finish {
            outcome: Outcome::Failed,
            message: format!(
                "{failed} of {total} instance(s) failed (tolerance {}); {succeeded} succeeded, {not_started} not started",
                view.failure_tolerance,
            ),
        });
        if view.auto_rollback && !view.is_rollback {
            actions.push(Action::StartRollback);
        }
        return actions;
    }
    let done = if view.plan_len == 0 {
        "no instance steps".to_owned()
    } else {
        format!("{succeeded} of {total} instance(s) succeeded, {failed} failed")
    };
    match view.finally {
        None if view.plan_len == 0 => actions.push(Action::Finish {
            outcome: Outcome::Succeeded,
            message: "nothing to do: the step plan is empty".to_owned(),
        }),
        None => actions.push(Action::Finish {
            outcome: Outcome::Succeeded,
            message: done,
        }),
        Some(f) => match f.phase {
            FinalPhase::Pending if f.wait_for_continue && !f.continued => {
                actions.push(Action::AwaitContinue);
            }
            FinalPhase::Pending => actions.push(Action::StartFinal),
            FinalPhase::Running => {}
            FinalPhase::Succeeded => actions.push(Action::Finish {
                outcome: Outcome::Succeeded,
                message: format!("{done}; traffic switched"),
            }),
            FinalPhase::Failed => {
                actions.push(Action::Finish {
                    outcome: Outcome::Failed,
                    message: format!("{done}; switching traffic failed"),
                });
                if view.auto_rollback && !view.is_rollback {
                    actions.push(Action::StartRollback);
                }
            }
        },
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' model: named instances with full phases, summarised into a view like the executor does.
    #[derive(Debug, Clone)]
    struct Model {
        concurrency: Concurrency,
        failure_tolerance: u32,
        auto_rollback: bool,
        is_rollback: bool,
        mode: Mode,
        plan_len: usize,
        instances: Vec<(String, Phase)>,
        finally: Option<Final>,
    }

    impl Model {
        fn view(&self) -> DeploymentView {
            let count =
                |f: &dyn Fn(Phase) -> bool| self.instances.iter().filter(|(_, p)| f(*p)).count();
            DeploymentView {
                concurrency: self.concurrency,
                failure_tolerance: self.failure_tolerance,
                auto_rollback: self.auto_rollback,
                is_rollback: self.is_rollback,
                mode: self.mode,
                plan_len: self.plan_len,
                total: self.instances.len(),
                awaiting: count(&|p| matches!(p, Phase::Awaiting { .. })),
                succeeded: count(&|p| p == Phase::Succeeded),
                failed: count(&|p| p == Phase::Failed),
                cancelled: count(&|p| p == Phase::Cancelled),
                pending: count(&|p| p == Phase::Pending),
                ready: self
                    .instances
                    .iter()
                    .filter_map(|(n, p)| match p {
                        Phase::Ready { next } => Some((n.clone(), *next)),
                        _ => None,
                    })
                    .collect(),
                pending_head: self
                    .instances
                    .iter()
                    .filter(|(_, p)| *p == Phase::Pending)
                    .map(|(n, _)| n.clone())
                    .collect(),
                finally: self.finally,
            }
        }

        fn set(&mut self, i: usize, p: Phase) {
            self.instances[i].1 = p;
        }

        /// Apply actions like the executor does.
        fn apply(&mut self, actions: &[Action]) -> Option<Outcome> {
            let mut end = None;
            for a in actions {
                match a {
                    Action::Dispatch { instance, step } => {
                        if let Some(i) = self.instances.iter_mut().find(|(n, _)| n == instance) {
                            assert!(
                                (i.1 == Phase::Pending && *step == 0)
                                    || i.1 == Phase::Ready { next: *step },
                                "dispatch {step} to {instance} in {:?}",
                                i.1
                            );
                            i.1 = Phase::Awaiting { step: *step };
                        }
                    }
                    Action::CancelInFlight => {
                        for i in &mut self.instances {
                            if i.1.in_flight() {
                                i.1 = Phase::Cancelled;
                            }
                        }
                    }
                    Action::SkipPending => {
                        for i in &mut self.instances {
                            if i.1 == Phase::Pending {
                                i.1 = Phase::Skipped;
                            }
                        }
                    }
                    Action::Finish { outcome, .. } => end = Some(*outcome),
                    Action::StartFinal => {
                        if let Some(f) = &mut self.finally {
                            assert_eq!(f.phase, FinalPhase::Pending, "final step started twice");
                            f.phase = FinalPhase::Running;
                        }
                    }
                    Action::StartRollback | Action::AwaitContinue => {}
                }
            }
            end
        }
    }

    fn view(concurrency: Concurrency, phases: &[Phase]) -> Model {
        Model {
            concurrency,
            failure_tolerance: 0,
            auto_rollback: false,
            is_rollback: false,
            mode: Mode::Running,
            plan_len: 7,
            instances: phases
                .iter()
                .enumerate()
                .map(|(i, &phase)| (format!("i{i}"), phase))
                .collect(),
            finally: None,
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
        dispatched(&decide(&v.view())).len()
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
    fn a_minimum_healthy_deploys_all_but_the_minimum_and_narrows_as_instances_fail() {
        use rollcage_proto::healthy::MinHealthy;
        // CodeDeploy's example: 9 instances, HOST_COUNT 6 → 3 at a time; FLEET_PERCENT 40 → 5 at a time.
        let six = Concurrency::MinHealthy(MinHealthy::HostCount(6));
        assert_eq!(starts(six, 9), 3);
        assert_eq!(
            starts(Concurrency::MinHealthy(MinHealthy::FleetPercent(40)), 9),
            5
        );
        assert_eq!(
            starts(Concurrency::MinHealthy(MinHealthy::HostCount(0)), 9),
            9
        );

        let mut m = view(six, &[Phase::Pending; 9]);
        m.failure_tolerance = 9;
        m.apply(&decide(&m.view()));
        m.set(0, Phase::Failed);
        // 2 in flight, 1 failed: 9 − 6 − 1 = 2 may be in flight, so nothing starts.
        assert!(dispatched(&decide(&m.view())).is_empty());
        m.set(1, Phase::Succeeded);
        assert_eq!(dispatched(&decide(&m.view())), [("i3".to_owned(), 0)]);
        m.apply(&decide(&m.view()));
        m.set(2, Phase::Failed);
        m.set(3, Phase::Failed);
        // 3 failed: the window is closed with 5 instances left; the deployment fails, saying why.
        let actions = decide(&m.view());
        assert!(dispatched(&actions).is_empty());
        assert_eq!(finish(&actions), Some(Outcome::Failed));
        assert!(actions.contains(&Action::SkipPending), "{actions:?}");
        let message = actions.iter().find_map(|a| match a {
            Action::Finish { message, .. } => Some(message.clone()),
            _ => None,
        });
        assert!(
            message.as_deref().is_some_and(
                |m| m.contains("minimum (min-healthy:6)") && m.contains("5 not started")
            ),
            "{message:?}"
        );
    }

    #[test]
    fn first_steps_are_step_zero_in_instance_order() {
        let v = view(Concurrency::Count(2), &[Phase::Pending; 4]);
        assert_eq!(
            dispatched(&decide(&v.view())),
            [("i0".to_owned(), 0), ("i1".to_owned(), 0)]
        );
    }

    #[test]
    fn a_ready_instance_gets_its_next_step_and_no_new_instance_starts_while_full() {
        let v = view(
            Concurrency::Count(1),
            &[Phase::Ready { next: 3 }, Phase::Pending, Phase::Pending],
        );
        assert_eq!(dispatched(&decide(&v.view())), [("i0".to_owned(), 3)]);
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
        assert!(decide(&v.view()).is_empty());
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
        assert_eq!(dispatched(&decide(&v.view())), [("i2".to_owned(), 0)]);
    }

    #[test]
    fn all_succeeded_finishes_succeeded() {
        let v = view(Concurrency::Count(1), &[Phase::Succeeded; 3]);
        assert_eq!(finish(&decide(&v.view())), Some(Outcome::Succeeded));
    }

    #[test]
    fn a_failure_stops_new_starts_but_in_flight_instances_finish() {
        let v = view(
            Concurrency::Count(2),
            &[Phase::Failed, Phase::Ready { next: 5 }, Phase::Pending],
        );
        let a = decide(&v.view());
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
        let a = decide(&v.view());
        assert_eq!(finish(&a), Some(Outcome::Failed));
        assert!(a.contains(&Action::SkipPending));
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
        assert!(!decide(&v.view()).contains(&Action::StartRollback));
        v.set(1, Phase::Succeeded);
        assert!(!decide(&v.view()).contains(&Action::StartRollback));
        v.set(2, Phase::Failed);
        let a = decide(&v.view());
        assert_eq!(finish(&a), Some(Outcome::Failed));
        assert!(a.contains(&Action::StartRollback));
    }

    #[test]
    fn no_rollback_without_auto_rollback_or_for_a_rollback() {
        let mut v = view(Concurrency::Count(1), &[Phase::Failed]);
        assert!(!decide(&v.view()).contains(&Action::StartRollback));
        v.auto_rollback = true;
        v.is_rollback = true;
        let a = decide(&v.view());
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
        assert_eq!(dispatched(&decide(&v.view())), [("i1".to_owned(), 0)]);
        v.set(1, Phase::Succeeded);
        v.set(2, Phase::Succeeded);
        assert_eq!(finish(&decide(&v.view())), Some(Outcome::Succeeded));
        v.set(2, Phase::Failed);
        assert_eq!(
            finish(&decide(&v.view())),
            Some(Outcome::Failed),
            "two failures exceed a tolerance of one"
        );
    }

    #[test]
    fn tolerating_every_failure_still_needs_one_success() {
        let mut v = view(Concurrency::All, &[Phase::Failed, Phase::Failed]);
        v.failure_tolerance = 5;
        assert_eq!(finish(&decide(&v.view())), Some(Outcome::Failed));
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
        let a = decide(&v.view());
        assert_eq!(dispatched(&a), [("i0".to_owned(), 2)]);
        assert_eq!(finish(&a), None);
        v.set(0, Phase::Succeeded);
        v.set(1, Phase::Succeeded);
        let a = decide(&v.view());
        assert_eq!(finish(&a), Some(Outcome::Stopped));
        assert!(a.contains(&Action::SkipPending));
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
        let a = decide(&v.view());
        assert!(dispatched(&a).is_empty());
        assert!(a.contains(&Action::CancelInFlight));
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
        assert!(decide(&v.view()).is_empty());
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
                let actions = decide(&v.view());
                end = v.apply(&actions);
                let flying = v.instances.iter().filter(|(_, p)| p.in_flight()).count();
                assert!(
                    flying <= limit,
                    "round {round}: {flying} in flight > {limit}"
                );
                if end.is_some() {
                    break;
                }
                // One random awaiting instance reports.
                let awaiting: Vec<usize> = (0..n)
                    .filter(|&i| matches!(v.instances[i].1, Phase::Awaiting { .. }))
                    .collect();
                assert!(
                    !awaiting.is_empty(),
                    "round {round}: stuck without finishing"
                );
                let k = awaiting[rng.usize(0..awaiting.len())];
                let Phase::Awaiting { step } = v.instances[k].1 else {
                    continue;
                };
                let outcome = if rng.u8(0..20) < fail_rate {
                    StepOutcome::Failed
                } else {
                    StepOutcome::Succeeded
                };
                let phase = after_report(step, v.plan_len, outcome);
                v.set(k, phase);
                // The hot path must agree with the full decision.
                if let Phase::Ready { next } = phase {
                    let name = v.instances[k].0.clone();
                    assert_eq!(
                        after_ready(v.mode, &name, next),
                        Some(decide(&v.view())),
                        "round {round}"
                    );
                }
            }
            let failed = v
                .instances
                .iter()
                .filter(|(_, p)| *p == Phase::Failed)
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
                    .all(|(_, p)| !p.in_flight() && *p != Phase::Pending),
                "round {round}: every instance settled"
            );
        }
    }

    use rollcage_proto::LifecycleEvent;
    use rollcage_proto::wire::DeploymentStyle;
    use rollcage_proto::{Performer, plan as style_plan};

    /// Per instance (and `*`) the events run, how it ended, every action decided.
    type Driven = (
        Vec<(String, Vec<LifecycleEvent>)>,
        Option<Outcome>,
        Vec<Action>,
    );

    /// Drive a whole deployment of `style` (every step succeeds except `fail` = (instance, event)), recording
    /// the events each instance went through and the deployment-wide ones (under `*`).
    fn drive(
        style: DeploymentStyle,
        rollback: bool,
        n: usize,
        fail: Option<(&str, LifecycleEvent)>,
        wait_for_continue: bool,
    ) -> Driven {
        let plan = style_plan(style, rollback);
        let mut v = view(Concurrency::Count(1), &vec![Phase::Pending; n]);
        v.plan_len = plan.per_instance.len();
        v.auto_rollback = true;
        v.is_rollback = rollback;
        v.finally = (!plan.deployment_wide.is_empty()).then_some(Final {
            phase: FinalPhase::Pending,
            wait_for_continue,
            continued: false,
        });
        let mut log: Vec<(String, Vec<LifecycleEvent>)> =
            (0..n).map(|i| (format!("i{i}"), Vec::new())).collect();
        log.push(("*".to_owned(), Vec::new()));
        let mut all = Vec::new();
        for _ in 0..1000 {
            let actions = decide(&v.view());
            all.extend(actions.iter().cloned());
            if let Some(end) = v.apply(&actions) {
                return (log, Some(end), all);
            }
            if actions.contains(&Action::AwaitContinue) {
                return (log, None, all);
            }
            if let Some(f) = &mut v.finally
                && f.phase == FinalPhase::Running
            {
                log[n].1.extend(plan.deployment_wide.iter().copied());
                f.phase = FinalPhase::Succeeded;
                continue;
            }
            let Some(k) = (0..n).find(|&i| matches!(v.instances[i].1, Phase::Awaiting { .. }))
            else {
                continue;
            };
            let Phase::Awaiting { step } = v.instances[k].1 else {
                continue;
            };
            let event = plan.per_instance[step];
            log[k].1.push(event);
            let failed = fail == Some((v.instances[k].0.as_str(), event));
            let outcome = if failed {
                StepOutcome::Failed
            } else {
                StepOutcome::Succeeded
            };
            v.set(k, after_report(step, v.plan_len, outcome));
        }
        (log, None, all)
    }

    #[test]
    fn rolling_with_lb_runs_every_instance_through_the_seed_s_13_steps() {
        let (log, end, _) = drive(DeploymentStyle::InPlaceLb, false, 4, None, false);
        assert_eq!(end, Some(Outcome::Succeeded));
        let want = style_plan(DeploymentStyle::InPlaceLb, false).per_instance;
        assert_eq!(want.len(), 13);
        for (inst, events) in &log[..4] {
            assert_eq!(events, want, "{inst}");
        }
        assert!(log[4].1.is_empty(), "no deployment-wide step");
        // The rollback: the same without the download.
        let (log, end, _) = drive(DeploymentStyle::InPlaceLb, true, 4, None, false);
        assert_eq!(end, Some(Outcome::Succeeded));
        for (inst, events) in &log[..4] {
            assert_eq!(events, &want[1..], "{inst}");
        }
    }

    #[test]
    fn a_validate_failure_with_lb_never_allows_traffic_back_and_rolls_back() {
        let (log, end, all) = drive(
            DeploymentStyle::InPlaceLb,
            false,
            3,
            Some(("i1", LifecycleEvent::ValidateService)),
            false,
        );
        assert_eq!(end, Some(Outcome::Failed));
        assert_eq!(log[1].1.last(), Some(&LifecycleEvent::ValidateService));
        assert!(!log[1].1.contains(&LifecycleEvent::AllowTraffic));
        assert!(
            log[2].1.is_empty(),
            "no new instance starts after the failure"
        );
        assert_eq!(all.last(), Some(&Action::StartRollback));
    }

    #[test]
    fn blue_green_deploys_the_idle_group_without_traffic_hooks_then_switches_once() {
        let (log, end, all) = drive(DeploymentStyle::BlueGreen, false, 2, None, false);
        assert_eq!(end, Some(Outcome::Succeeded));
        for (inst, events) in &log[..2] {
            assert_eq!(
                events,
                style_plan(DeploymentStyle::InPlace, false).per_instance,
                "{inst}"
            );
            assert!(events.iter().all(|e| e.performer() == Performer::Agent));
        }
        assert_eq!(log[2].1, [LifecycleEvent::SwitchTraffic]);
        // The switch starts only after the last instance ended.
        let start = all.iter().position(|a| *a == Action::StartFinal);
        let last_dispatch = all
            .iter()
            .rposition(|a| matches!(a, Action::Dispatch { .. }));
        assert!(start > last_dispatch);
    }

    #[test]
    fn blue_green_rollback_only_switches_back() {
        let (log, end, all) = drive(DeploymentStyle::BlueGreen, true, 2, None, false);
        assert_eq!(end, Some(Outcome::Succeeded));
        assert!(log[..2].iter().all(|(_, e)| e.is_empty()), "no agent steps");
        assert_eq!(log[2].1, [LifecycleEvent::SwitchTraffic]);
        assert!(!all.iter().any(|a| matches!(a, Action::Dispatch { .. })));
    }

    #[test]
    fn blue_green_failure_in_the_idle_group_never_switches() {
        let (log, end, all) = drive(
            DeploymentStyle::BlueGreen,
            false,
            2,
            Some(("i0", LifecycleEvent::ValidateService)),
            false,
        );
        assert_eq!(end, Some(Outcome::Failed));
        assert!(log[2].1.is_empty());
        assert!(!all.contains(&Action::StartFinal));
        assert!(all.contains(&Action::StartRollback));
    }

    #[test]
    fn blue_green_waits_for_continue_and_a_failed_switch_rolls_back() {
        let (log, end, all) = drive(DeploymentStyle::BlueGreen, false, 2, None, true);
        assert_eq!(end, None, "paused");
        assert_eq!(all.last(), Some(&Action::AwaitContinue));
        assert!(log[2].1.is_empty());
        let mut v = view(Concurrency::All, &[Phase::Succeeded]);
        v.auto_rollback = true;
        v.finally = Some(Final {
            phase: FinalPhase::Pending,
            wait_for_continue: true,
            continued: true,
        });
        assert_eq!(decide(&v.view()), [Action::StartFinal]);
        v.finally = v.finally.map(|f| Final {
            phase: FinalPhase::Running,
            ..f
        });
        assert!(decide(&v.view()).is_empty(), "settled while switching");
        v.finally = v.finally.map(|f| Final {
            phase: FinalPhase::Failed,
            ..f
        });
        let a = decide(&v.view());
        assert_eq!(finish(&a), Some(Outcome::Failed));
        assert_eq!(a.last(), Some(&Action::StartRollback));
        // A stop while waiting ends the deployment without switching.
        v.mode = Mode::Stopping { force: false };
        v.finally = v.finally.map(|f| Final {
            phase: FinalPhase::Pending,
            continued: false,
            ..f
        });
        let a = decide(&v.view());
        assert_eq!(finish(&a), Some(Outcome::Stopped));
        assert!(!a.contains(&Action::StartFinal));
    }
}
