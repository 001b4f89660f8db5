//! The one executor: loads a deployment's state from the database, asks [`strategy::decide`] what to do, and
//! applies the actions in the caller's transaction. Every entry point (create, report, stop, rollback, lost agent)
//! ends with [`advance`], so the database always holds a settled state: each in-flight instance has exactly one
//! step marked running, which is the command its agent gets (again, after any restart).

use super::strategy::{self, Action, DeploymentView, Final, FinalPhase, Mode, Outcome, Phase};
use crate::store::{StoreError, apps, deployments, deployments::DeploymentRow, revisions};
use rollcage_proto::wire::{
    Concurrency, DeploymentStatus, DeploymentStyle, InstanceStatus, RevisionLocation, RevisionRef,
    RevisionSource, StepCommand, StepOutcome, StepReport, StepState,
};
use rollcage_proto::{HookOutcome, Performer, plan};
use rusqlite::Connection;

/// Why an engine operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A named thing does not exist.
    #[error("{what} `{name}` not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// An agent touched work that is not its own.
    #[error("{0}")]
    Forbidden(String),
}

/// Result of engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Instances that were sent a new command and must be woken (after the transaction commits).
pub type Wake = Vec<String>;

/// What a new deployment is.
#[derive(Debug, Clone)]
pub struct NewDeployment<'a> {
    /// Application.
    pub application: &'a str,
    /// Group.
    pub group: &'a str,
    /// Revision id.
    pub revision: &'a str,
    /// `Some((deployment rolled back, automatic))` for a rollback.
    pub rollback_of: Option<(&'a str, bool)>,
    /// Concurrency to use instead of the group's (a rollback keeps its deployment's).
    pub concurrency: Option<Concurrency>,
}

/// Create a deployment and dispatch its first batch. Refused while the group has an active deployment.
pub fn create_deployment(
    tx: &Connection,
    new: &NewDeployment<'_>,
    enrolled: &[String],
    now: i64,
    wake: &mut Wake,
) -> Result<String> {
    let group =
        apps::group(tx, new.application, new.group)?.ok_or_else(|| EngineError::NotFound {
            what: "deployment group",
            name: format!("{}/{}", new.application, new.group),
        })?;
    let style_plan = plan(group.style, new.rollback_of.is_some());
    if let Some(active) = deployments::active_for_group(tx, new.application, new.group)? {
        return Err(EngineError::Conflict(format!(
            "deployment group `{}` of application `{}` already has an active deployment `{active}`; \
             wait for it to end or stop it",
            new.group, new.application
        )));
    }
    if revisions::get(tx, new.application, new.revision)?.is_none() {
        return Err(EngineError::NotFound {
            what: "revision",
            name: format!("{}/{}", new.application, new.revision),
        });
    }
    // A rollback covers exactly the instances of the deployment it rolls back; otherwise the group's list, or
    // every enrolled instance when the group names none.
    let settings = group.lb.as_ref();
    // Blue/green: the new revision goes to the idle server group's instances, then traffic switches to it; a
    // rollback switches back to the group the rolled-back deployment switched away from.
    let switch_to = match (settings, group.style) {
        (Some(s), DeploymentStyle::BlueGreen) => Some(match new.rollback_of {
            Some((of, _)) => {
                let of_row = deployments::get(tx, of)?.ok_or_else(|| EngineError::NotFound {
                    what: "deployment",
                    name: of.to_owned(),
                })?;
                let target = of_row.switch_to.unwrap_or_default();
                s.other_group(&target).unwrap_or_default().to_owned()
            }
            None => {
                let active = apps::active_server_group(tx, &group.id)?
                    .or_else(|| s.active_group.clone())
                    .unwrap_or_default();
                s.other_group(&active).unwrap_or_default().to_owned()
            }
        }),
        _ => None,
    };
    let instances = match (new.rollback_of, &settings, &switch_to) {
        (Some((of, _)), ..) => deployments::instance_names(tx, of)?,
        (None, Some(s), Some(idle)) => s.instances_of(idle),
        (None, ..) if group.instances.is_empty() => enrolled.to_vec(),
        (None, ..) => group.instances.clone(),
    };
    if instances.is_empty() {
        return Err(EngineError::Invalid(format!(
            "deployment group `{}` has no instances: list them at group creation or enroll agents first",
            new.group
        )));
    }
    let id = format!("d-{}", crate::auth::random_hex(6));
    let row = DeploymentRow {
        id: id.clone(),
        application: new.application.to_owned(),
        group: new.group.to_owned(),
        group_id: group.id.clone(),
        revision: new.revision.to_owned(),
        style: group.style,
        concurrency: new.concurrency.unwrap_or(group.concurrency),
        failure_tolerance: group.failure_tolerance,
        auto_rollback: group.auto_rollback,
        rollback_of: new.rollback_of.map(|(of, _)| of.to_owned()),
        automatic: new.rollback_of.is_some_and(|(_, a)| a),
        status: DeploymentStatus::InProgress,
        force_stop: false,
        message: String::new(),
        created_at: now,
        ended_at: None,
        rollback_deployment: None,
        switch_to,
        continued: false,
    };
    deployments::insert(tx, &row, style_plan.per_instance, &instances)?;
    // A rollback re-runs the form the revision it returns to was installed with; a new deployment starts with the
    // group's default (the API replaces it with the deployment's own form, if given, in the same transaction).
    let form = match new.rollback_of {
        Some((of, _)) => crate::store::forms::form_of_last_success(
            tx,
            new.application,
            new.group,
            new.revision,
            of,
        )?,
        None => crate::store::forms::group_form(tx, &group.id)?,
    };
    crate::store::forms::set_deployment_form(tx, &id, form.as_ref())?;
    deployments::insert_final_steps(tx, &id, style_plan.deployment_wide)?;
    tracing::info!(deployment = %id, application = new.application, group = new.group,
        revision = new.revision, instances = instances.len(), rollback_of = ?new.rollback_of, "deployment created");
    advance(tx, &id, now, wake)?;
    Ok(id)
}

/// Apply the strategy's decisions to an active deployment (no-op on an ended one).
pub fn advance(tx: &Connection, id: &str, now: i64, wake: &mut Wake) -> Result<()> {
    let d = deployments::get(tx, id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: id.to_owned(),
    })?;
    if d.status.is_terminal() {
        return Ok(());
    }
    let steps = plan(d.style, d.rollback_of.is_some()).per_instance;
    let counts = deployments::counts(tx, id)?;
    let limit = d.concurrency.limit(counts.total);
    let view = DeploymentView {
        concurrency: d.concurrency,
        failure_tolerance: d.failure_tolerance,
        auto_rollback: d.auto_rollback,
        is_rollback: d.rollback_of.is_some(),
        mode: mode_of(&d),
        plan_len: steps.len(),
        total: counts.total,
        awaiting: counts.awaiting,
        succeeded: counts.succeeded,
        failed: counts.failed,
        cancelled: counts.cancelled,
        pending: counts.pending,
        ready: if counts.ready > 0 {
            deployments::ready(tx, id)?
        } else {
            Vec::new()
        },
        // Only the instances that could start now are needed.
        pending_head: if counts.pending > 0 {
            deployments::pending_head(tx, id, limit)?
        } else {
            Vec::new()
        },
        finally: final_of(tx, &d)?,
    };
    apply(tx, &d, strategy::decide(&view), now, wake)
}

/// The deployment-wide final step's state (blue/green's SwitchTraffic), if the deployment has one.
fn final_of(tx: &Connection, d: &DeploymentRow) -> Result<Option<Final>> {
    let Some(step) = deployments::final_step(tx, &d.id)? else {
        return Ok(None);
    };
    let phase = match step.state {
        StepState::Pending => FinalPhase::Pending,
        StepState::Running => FinalPhase::Running,
        StepState::Succeeded | StepState::Skipped => FinalPhase::Succeeded,
        StepState::Failed | StepState::Cancelled => FinalPhase::Failed,
    };
    // A rollback switches back at once; only a forward deployment waits for `continue`.
    let wait_for_continue = d.rollback_of.is_none()
        && apps::group(tx, &d.application, &d.group)?
            .and_then(|g| g.lb)
            .is_some_and(|s| s.wait_for_continue);
    Ok(Some(Final {
        phase,
        wait_for_continue,
        continued: d.continued,
    }))
}

fn mode_of(d: &DeploymentRow) -> Mode {
    match d.status {
        DeploymentStatus::Stopping => Mode::Stopping {
            force: d.force_stop,
        },
        _ => Mode::Running,
    }
}

/// Apply the strategy's actions to deployment `d`.
fn apply(
    tx: &Connection,
    d: &DeploymentRow,
    actions: Vec<Action>,
    now: i64,
    wake: &mut Wake,
) -> Result<()> {
    let id = d.id.as_str();
    for action in actions {
        match action {
            Action::Dispatch { instance, step } => {
                deployments::start_step(tx, id, &instance, step, now)?;
                wake.push(instance);
            }
            Action::CancelInFlight => {
                // Wake them so polls in flight re-read (the cancelled commands are no longer offered).
                wake.extend(deployments::cancel_in_flight(tx, id, now)?);
            }
            Action::SkipPending => deployments::skip_pending(tx, id)?,
            Action::StartFinal => {
                tracing::info!(deployment = %id, switch_to = ?d.switch_to, "switching traffic");
                deployments::start_step(tx, id, deployments::DEPLOYMENT_WIDE, 0, now)?;
            }
            Action::AwaitContinue => {
                if d.status != DeploymentStatus::Ready {
                    tracing::info!(deployment = %id, "new group validated; waiting for `continue`");
                    deployments::set_status(tx, id, DeploymentStatus::Ready, d.force_stop)?;
                }
            }
            Action::Finish { outcome, message } => {
                let status = match outcome {
                    Outcome::Succeeded => DeploymentStatus::Succeeded,
                    Outcome::Failed => DeploymentStatus::Failed,
                    Outcome::Stopped => DeploymentStatus::Stopped,
                };
                tracing::info!(deployment = %id, %status, %message, "deployment ended");
                deployments::finish(tx, id, status, &message, now)?;
            }
            Action::StartRollback => {
                match deployments::last_succeeded_revision(tx, &d.application, &d.group, id)? {
                    Some(revision) => {
                        let rb = create_deployment(
                            tx,
                            &NewDeployment {
                                application: &d.application,
                                group: &d.group,
                                revision: &revision,
                                rollback_of: Some((id, true)),
                                concurrency: Some(d.concurrency),
                            },
                            &[],
                            now,
                            wake,
                        );
                        match rb {
                            Ok(rb) => deployments::set_rollback(tx, id, &rb)?,
                            Err(EngineError::Store(e)) => return Err(e.into()),
                            Err(e) => deployments::append_message(
                                tx,
                                id,
                                &format!("automatic rollback could not start: {e}"),
                            )?,
                        }
                    }
                    None => deployments::append_message(
                        tx,
                        id,
                        "no earlier successful revision to roll back to",
                    )?,
                }
            }
        }
    }
    Ok(())
}

/// Record an agent's report of one of its steps and advance the deployment. Returns `false` when the command had
/// already ended (a re-sent report; acknowledged and ignored).
pub fn record_report(
    tx: &Connection,
    instance: &str,
    report: &StepReport,
    now: i64,
    wake: &mut Wake,
) -> Result<bool> {
    let step = deployments::step(tx, report.command_id)?.ok_or_else(|| EngineError::NotFound {
        what: "command",
        name: report.command_id.to_string(),
    })?;
    if step.instance != instance {
        return Err(EngineError::Forbidden(format!(
            "command {} belongs to instance `{}`, not `{instance}`",
            report.command_id, step.instance
        )));
    }
    if step.event.performer() == Performer::Coordinator {
        return Err(EngineError::Forbidden(format!(
            "command {} is the coordinator's own {} step; agents cannot report it",
            report.command_id, step.event
        )));
    }
    end_step(
        tx,
        &step,
        report.outcome,
        &report.message,
        &log_tail(&report.hooks),
        now,
        wake,
    )
}

/// Record the end of one of the coordinator's own steps (a load-balancer call) and advance the deployment.
/// `false` when the step is not running any more (e.g. cancelled by a forced stop while the call ran).
pub fn end_coordinator_step(
    tx: &Connection,
    step_id: i64,
    outcome: StepOutcome,
    message: &str,
    now: i64,
    wake: &mut Wake,
) -> Result<bool> {
    let step = deployments::step(tx, step_id)?.ok_or_else(|| EngineError::NotFound {
        what: "command",
        name: step_id.to_string(),
    })?;
    if step.event.performer() != Performer::Coordinator {
        return Err(EngineError::Invalid(format!(
            "step {step_id} ({}) is an agent step",
            step.event
        )));
    }
    if step.instance != deployments::DEPLOYMENT_WIDE {
        return end_step(tx, &step, outcome, message, "", now, wake);
    }
    // The deployment-wide SwitchTraffic.
    if step.state != StepState::Running {
        return Ok(false);
    }
    let d = deployments::get(tx, &step.deployment_id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: step.deployment_id.clone(),
    })?;
    let state = match outcome {
        StepOutcome::Succeeded => StepState::Succeeded,
        StepOutcome::Skipped => StepState::Skipped,
        StepOutcome::Failed => StepState::Failed,
    };
    deployments::end_step(tx, step.id, state, message, "", now)?;
    if outcome == StepOutcome::Succeeded
        && let Some(to) = &d.switch_to
    {
        apps::set_active_server_group(tx, &d.group_id, to)?;
    }
    advance(tx, &d.id, now, wake)?;
    Ok(true)
}

/// An operator's go-ahead for a blue/green deployment waiting in `ready` (or about to): switch traffic.
pub fn continue_deployment(tx: &Connection, id: &str, now: i64, wake: &mut Wake) -> Result<()> {
    let d = deployments::get(tx, id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: id.to_owned(),
    })?;
    if d.status.is_terminal() || d.status == DeploymentStatus::Stopping {
        return Err(EngineError::Conflict(format!(
            "deployment `{id}` is {}; only a running blue/green deployment can continue",
            d.status
        )));
    }
    if d.style != DeploymentStyle::BlueGreen || d.rollback_of.is_some() {
        return Err(EngineError::Conflict(format!(
            "deployment `{id}` does not wait for `continue` (only blue/green deployments do)"
        )));
    }
    deployments::set_continued(tx, id)?;
    advance(tx, id, now, wake)
}

/// Fail a running step whose agent went silent.
pub fn fail_lost_step(
    tx: &Connection,
    step_id: i64,
    reason: &str,
    now: i64,
    wake: &mut Wake,
) -> Result<bool> {
    let Some(step) = deployments::step(tx, step_id)? else {
        return Ok(false);
    };
    end_step(tx, &step, StepOutcome::Failed, reason, "", now, wake)
}

fn end_step(
    tx: &Connection,
    step: &deployments::StepRow,
    outcome: StepOutcome,
    message: &str,
    log_tail: &str,
    now: i64,
    wake: &mut Wake,
) -> Result<bool> {
    if step.state != StepState::Running {
        return Ok(false);
    }
    let d = deployments::get(tx, &step.deployment_id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: step.deployment_id.clone(),
    })?;
    let state = match outcome {
        StepOutcome::Succeeded => StepState::Succeeded,
        StepOutcome::Skipped => StepState::Skipped,
        StepOutcome::Failed => StepState::Failed,
    };
    deployments::end_step(tx, step.id, state, message, log_tail, now)?;
    let plan_len = plan(d.style, d.rollback_of.is_some()).per_instance.len();
    let (status, next) = match strategy::after_report(step.idx, plan_len, outcome) {
        Phase::Ready { next } => (InstanceStatus::InProgress, next),
        Phase::Succeeded => (InstanceStatus::Succeeded, plan_len),
        _ => (InstanceStatus::Failed, step.idx),
    };
    deployments::set_instance(tx, &step.deployment_id, &step.instance, status, next)?;
    // Hot path: a step that leaves its instance ready for the next one changes no count, so on a settled
    // deployment the only action is that next step (`strategy::after_ready`); no need to summarise the deployment.
    let fast = match status {
        InstanceStatus::InProgress if !d.status.is_terminal() => {
            strategy::after_ready(mode_of(&d), &step.instance, next)
        }
        _ => None,
    };
    match fast {
        Some(actions) => apply(tx, &d, actions, now, wake)?,
        None => advance(tx, &step.deployment_id, now, wake)?,
    }
    Ok(true)
}

/// The tail shown for a step: the failed hook's output, or the last hook's.
fn log_tail(hooks: &[HookOutcome]) -> String {
    let pick = hooks
        .iter()
        .find(|h| !h.is_success())
        .or_else(|| hooks.last());
    // Bounded like CodeDeploy's console log (~2 KB): a chatty hook must not bloat every status read.
    const MAX: usize = 2048;
    match pick {
        Some(h) if h.log_tail.len() > MAX => {
            let mut start = h.log_tail.len() - MAX;
            while !h.log_tail.is_char_boundary(start) {
                start += 1;
            }
            h.log_tail[start..].to_owned()
        }
        Some(h) => h.log_tail.clone(),
        None => String::new(),
    }
}

/// Ask an active deployment to stop; `force` cancels in-flight steps.
pub fn stop(tx: &Connection, id: &str, force: bool, now: i64, wake: &mut Wake) -> Result<()> {
    let d = deployments::get(tx, id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: id.to_owned(),
    })?;
    if d.status.is_terminal() {
        return Err(EngineError::Conflict(format!(
            "deployment `{id}` already ended ({})",
            d.status
        )));
    }
    deployments::set_status(tx, id, DeploymentStatus::Stopping, force || d.force_stop)?;
    advance(tx, id, now, wake)
}

/// Start a rollback of deployment `id` to the group's last successful revision (manual rollback).
pub fn rollback(tx: &Connection, id: &str, now: i64, wake: &mut Wake) -> Result<String> {
    let d = deployments::get(tx, id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: id.to_owned(),
    })?;
    let revision = deployments::last_succeeded_revision(tx, &d.application, &d.group, id)?
        .ok_or_else(|| {
            EngineError::Conflict(format!(
                "deployment group `{}` has no earlier successful deployment to roll back to",
                d.group
            ))
        })?;
    let rb = create_deployment(
        tx,
        &NewDeployment {
            application: &d.application,
            group: &d.group,
            revision: &revision,
            rollback_of: Some((id, false)),
            concurrency: Some(d.concurrency),
        },
        &[],
        now,
        wake,
    )?;
    deployments::set_rollback(tx, id, &rb)?;
    Ok(rb)
}

/// The command an agent gets for a running step.
pub fn command_for(c: &Connection, step: &deployments::StepRow) -> Result<StepCommand> {
    let d = deployments::get(c, &step.deployment_id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: step.deployment_id.clone(),
    })?;
    let rev =
        revisions::get(c, &d.application, &d.revision)?.ok_or_else(|| EngineError::NotFound {
            what: "revision",
            name: d.revision.clone(),
        })?;
    let location = match rev.source {
        RevisionSource::Uploaded { .. } => RevisionLocation::Coordinator {
            path: format!(
                "/v1/agent/applications/{}/revisions/{}/bundle",
                d.application, rev.id
            ),
        },
        RevisionSource::Url { url } => RevisionLocation::Url { url },
    };
    let form = crate::store::forms::deployment_form(c, &d.id)?;
    Ok(StepCommand {
        command_id: step.id,
        deployment_id: d.id,
        application: d.application,
        group: d.group,
        group_id: d.group_id,
        event: step.event,
        revision: RevisionRef {
            id: rev.id,
            sha256: rev.sha256,
            location,
        },
        rollback: d.rollback_of.is_some(),
        form,
    })
}

/// Re-run the strategy on every active deployment (at start-up: a coordinator killed mid-way resumes here).
pub fn resume_all(tx: &Connection, now: i64, wake: &mut Wake) -> Result<usize> {
    let ids = deployments::active_ids(tx)?;
    for id in &ids {
        advance(tx, id, now, wake)?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test setup on an in-memory database")]
    use super::*;
    use crate::store::Store;
    use rollcage_proto::wire::{DeploymentStyle, Group};

    fn setup(instances: &[&str], auto_rollback: bool, c: Concurrency) -> Store {
        let s = Store::open_in_memory().unwrap();
        s.write(|tx| {
            apps::insert_application(tx, "app", 0)?;
            apps::insert_group(
                tx,
                &Group {
                    id: "g-1".into(),
                    application: "app".into(),
                    name: "web".into(),
                    style: DeploymentStyle::InPlace,
                    concurrency: c,
                    failure_tolerance: 0,
                    auto_rollback,
                    instances: instances.iter().map(|s| s.to_string()).collect(),
                    lb: None,
                    created_at_ms: 0,
                },
            )?;
            revisions::upsert(tx, "app", &"a".repeat(64), None, 10, 0)?;
            revisions::upsert(tx, "app", &"b".repeat(64), None, 10, 0)?;
            Ok::<_, EngineError>(())
        })
        .unwrap();
        s
    }

    fn deploy(s: &Store, rev: &str, wake: &mut Wake) -> Result<String> {
        s.write(|tx| {
            create_deployment(
                tx,
                &NewDeployment {
                    application: "app",
                    group: "web",
                    revision: rev,
                    rollback_of: None,
                    concurrency: None,
                },
                &[],
                1,
                wake,
            )
        })
    }

    /// Report every running step of `inst` with `outcome` until it has none; returns the events reported.
    fn run_instance(s: &Store, inst: &str, fail_at: Option<&str>) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let step = s.read(|c| deployments::running_step_for(c, inst)).unwrap();
            let Some(step) = step else { return seen };
            let outcome = if Some(step.event.name()) == fail_at {
                StepOutcome::Failed
            } else {
                StepOutcome::Succeeded
            };
            seen.push(step.event.name().to_owned());
            let mut wake = Vec::new();
            s.write(|tx| {
                record_report(
                    tx,
                    inst,
                    &StepReport {
                        command_id: step.id,
                        outcome,
                        message: String::new(),
                        hooks: vec![],
                        duration_ms: 1,
                        log: None,
                    },
                    2,
                    &mut wake,
                )
            })
            .unwrap();
        }
    }

    #[test]
    fn one_at_a_time_runs_each_instance_through_the_seed_order() {
        let s = setup(&["a", "b"], false, Concurrency::Count(1));
        let mut wake = Vec::new();
        let id = deploy(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        assert_eq!(wake, ["a"]);
        assert!(
            s.read(|c| deployments::running_step_for(c, "b"))
                .unwrap()
                .is_none()
        );
        let events = run_instance(&s, "a", None);
        assert_eq!(events.len(), 7);
        assert_eq!(events[0], "DownloadBundle");
        assert_eq!(events[6], "ValidateService");
        run_instance(&s, "b", None);
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Succeeded);
    }

    #[test]
    fn second_deployment_in_a_group_is_refused_while_one_is_active() {
        let s = setup(&["a"], false, Concurrency::All);
        let mut wake = Vec::new();
        deploy(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        let second = deploy(&s, &format!("r-{}", "b".repeat(16)), &mut wake);
        assert!(matches!(second, Err(EngineError::Conflict(_))));
    }

    #[test]
    fn failure_triggers_a_rollback_with_the_same_concurrency_and_no_download() {
        let s = setup(&["a", "b", "c"], true, Concurrency::Count(2));
        let mut wake = Vec::new();
        let v1 = format!("r-{}", "a".repeat(16));
        let v2 = format!("r-{}", "b".repeat(16));
        let d1 = deploy(&s, &v1, &mut wake).unwrap();
        for i in ["a", "b", "c"] {
            run_instance(&s, i, None);
        }
        run_instance(&s, "a", None);
        let d2 = deploy(&s, &v2, &mut wake).unwrap();
        assert_ne!(d1, d2);
        run_instance(&s, "a", Some("ValidateService"));
        // b is still in flight: no rollback yet, c never starts.
        let d = s.read(|c| deployments::get(c, &d2)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::InProgress);
        assert!(
            s.read(|c| deployments::running_step_for(c, "c"))
                .unwrap()
                .is_none()
        );
        run_instance(&s, "b", None);
        let d = s.read(|c| deployments::get(c, &d2)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Failed);
        let rb_id = d.rollback_deployment.unwrap();
        let rb = s.read(|c| deployments::get(c, &rb_id)).unwrap().unwrap();
        assert_eq!(rb.revision, v1);
        assert_eq!(rb.concurrency, Concurrency::Count(2));
        assert_eq!(rb.rollback_of.as_deref(), Some(d2.as_str()));
        let events = run_instance(&s, "a", None);
        assert_eq!(events.first().map(String::as_str), Some("ApplicationStop"));
        assert!(!events.iter().any(|e| e == "DownloadBundle"));
        run_instance(&s, "b", None);
        run_instance(&s, "c", None);
        let rb = s.read(|c| deployments::get(c, &rb_id)).unwrap().unwrap();
        assert_eq!(rb.status, DeploymentStatus::Succeeded);
    }

    #[test]
    fn a_report_for_another_instance_is_forbidden_and_a_repeat_is_ignored() {
        let s = setup(&["a", "b"], false, Concurrency::All);
        let mut wake = Vec::new();
        deploy(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        let step = s
            .read(|c| deployments::running_step_for(c, "a"))
            .unwrap()
            .unwrap();
        let report = StepReport {
            command_id: step.id,
            outcome: StepOutcome::Succeeded,
            message: String::new(),
            hooks: vec![],
            duration_ms: 0,
            log: None,
        };
        let r = s.write(|tx| record_report(tx, "b", &report, 3, &mut wake));
        assert!(matches!(r, Err(EngineError::Forbidden(_))));
        assert!(
            s.write(|tx| record_report(tx, "a", &report, 3, &mut wake))
                .unwrap()
        );
        assert!(
            !s.write(|tx| record_report(tx, "a", &report, 3, &mut wake))
                .unwrap()
        );
    }

    #[test]
    fn rollback_covers_the_instances_of_the_rolled_back_deployment() {
        // The group names no instances: the deployment took the enrolled ones, and so must its rollback.
        let s = setup(&[], true, Concurrency::All);
        let mut wake = Vec::new();
        let enrolled = ["x".to_owned(), "y".to_owned()];
        let mk = |rev: String, wake: &mut Wake| {
            s.write(|tx| {
                create_deployment(
                    tx,
                    &NewDeployment {
                        application: "app",
                        group: "web",
                        revision: &rev,
                        rollback_of: None,
                        concurrency: None,
                    },
                    &enrolled,
                    1,
                    wake,
                )
            })
        };
        mk(format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        run_instance(&s, "x", None);
        run_instance(&s, "y", None);
        let d2 = mk(format!("r-{}", "b".repeat(16)), &mut wake).unwrap();
        run_instance(&s, "x", Some("Install"));
        run_instance(&s, "y", None);
        let d = s.read(|c| deployments::get(c, &d2)).unwrap().unwrap();
        let rb = d.rollback_deployment.unwrap();
        let names = s.read(|c| deployments::instance_names(c, &rb)).unwrap();
        assert_eq!(names, enrolled);
    }

    #[test]
    fn manual_rollback_redeploys_the_previous_good_revision() {
        let s = setup(&["a"], false, Concurrency::Count(1));
        let mut wake = Vec::new();
        let v1 = format!("r-{}", "a".repeat(16));
        let v2 = format!("r-{}", "b".repeat(16));
        let d1 = deploy(&s, &v1, &mut wake).unwrap();
        // Nothing to roll back to yet.
        run_instance(&s, "a", None);
        assert!(matches!(
            s.write(|tx| rollback(tx, &d1, 3, &mut wake)),
            Err(EngineError::Conflict(_))
        ));
        let d2 = deploy(&s, &v2, &mut wake).unwrap();
        // Refused while the group is busy.
        assert!(matches!(
            s.write(|tx| rollback(tx, &d2, 3, &mut wake)),
            Err(EngineError::Conflict(_))
        ));
        run_instance(&s, "a", None);
        let rb = s.write(|tx| rollback(tx, &d2, 4, &mut wake)).unwrap();
        let row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(row.revision, v1);
        assert_eq!(row.rollback_of.as_deref(), Some(d2.as_str()));
        assert!(!row.automatic);
        let events = run_instance(&s, "a", None);
        assert_eq!(events.first().map(String::as_str), Some("ApplicationStop"));
        let row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(row.status, DeploymentStatus::Succeeded);
    }

    #[test]
    fn stop_lets_the_in_flight_instance_finish_and_skips_the_rest() {
        let s = setup(&["a", "b"], false, Concurrency::Count(1));
        let mut wake = Vec::new();
        let id = deploy(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        s.write(|tx| stop(tx, &id, false, 2, &mut wake)).unwrap();
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Stopping);
        assert_eq!(
            run_instance(&s, "a", None).len(),
            7,
            "a finishes all its steps"
        );
        let full = s.read(|c| deployments::full(c, &id)).unwrap().unwrap();
        assert_eq!(full.status, DeploymentStatus::Stopped);
        assert_eq!(full.instances[0].status, InstanceStatus::Succeeded);
        assert_eq!(full.instances[1].status, InstanceStatus::Skipped);
        assert!(matches!(
            s.write(|tx| stop(tx, &id, false, 3, &mut wake)),
            Err(EngineError::Conflict(_))
        ));
    }

    #[test]
    fn forced_stop_cancels_and_ends_stopped() {
        let s = setup(&["a", "b", "c"], true, Concurrency::Count(1));
        let mut wake = Vec::new();
        let id = deploy(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        s.write(|tx| stop(tx, &id, true, 5, &mut wake)).unwrap();
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Stopped);
        assert!(d.rollback_deployment.is_none());
        assert!(
            s.read(|c| deployments::running_step_for(c, "a"))
                .unwrap()
                .is_none()
        );
    }

    fn setup_lb(instances: &[&str], auto_rollback: bool, c: Concurrency) -> Store {
        let s = setup(&[], false, c);
        let targets: serde_json::Map<String, serde_json::Value> = instances
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), format!("127.0.0.1:{}", 8081 + i).into()))
            .collect();
        let addrs: Vec<serde_json::Value> = targets.values().cloned().collect();
        let lb = serde_json::json!({
            "targets": targets,
            "lb": {
                "service": "app1",
                "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/nonexistent" },
                "server_groups": { "blue": addrs }
            }
        });
        s.write(|tx| {
            apps::insert_group(
                tx,
                &Group {
                    id: "g-2".into(),
                    application: "app".into(),
                    name: "lbweb".into(),
                    style: DeploymentStyle::InPlaceLb,
                    concurrency: c,
                    failure_tolerance: 0,
                    auto_rollback,
                    instances: instances.iter().map(|s| s.to_string()).collect(),
                    lb: Some(serde_json::from_value(lb).unwrap()),
                    created_at_ms: 0,
                },
            )?;
            Ok::<_, EngineError>(())
        })
        .unwrap();
        s
    }

    fn deploy_lb(s: &Store, rev: &str, wake: &mut Wake) -> Result<String> {
        s.write(|tx| {
            create_deployment(
                tx,
                &NewDeployment {
                    application: "app",
                    group: "lbweb",
                    revision: rev,
                    rollback_of: None,
                    concurrency: None,
                },
                &[],
                1,
                wake,
            )
        })
    }

    /// Run `inst` to its end in its current deployment: agent steps reported like an agent would, coordinator
    /// steps finished like the traffic runner would (`fail_at` fails that event). Returns the events in order.
    fn run_lb_instance(s: &Store, inst: &str, fail_at: Option<&str>) -> Vec<String> {
        let mut seen = Vec::new();
        let mut deployment: Option<String> = None;
        loop {
            let agent = s.read(|c| deployments::running_step_for(c, inst)).unwrap();
            let coord = s
                .read(deployments::running_coordinator_steps)
                .unwrap()
                .into_iter()
                .find(|st| st.instance == inst);
            assert!(
                agent.is_none() || coord.is_none(),
                "one step in flight at a time"
            );
            let Some(step) = agent.clone().or(coord) else {
                return seen;
            };
            if deployment.get_or_insert_with(|| step.deployment_id.clone()) != &step.deployment_id {
                return seen;
            }
            seen.push(step.event.name().to_owned());
            let outcome = if Some(step.event.name()) == fail_at {
                StepOutcome::Failed
            } else {
                StepOutcome::Succeeded
            };
            let report = StepReport {
                command_id: step.id,
                outcome,
                message: String::new(),
                hooks: vec![],
                duration_ms: 0,
                log: None,
            };
            let mut wake = Vec::new();
            if agent.is_some() {
                assert!(
                    s.write(|tx| record_report(tx, inst, &report, 2, &mut wake))
                        .unwrap()
                );
            } else {
                // An agent never gets (nor may report) a coordinator step.
                assert!(matches!(
                    s.write(|tx| record_report(tx, inst, &report, 2, &mut wake)),
                    Err(EngineError::Forbidden(_))
                ));
                assert!(
                    s.write(|tx| end_coordinator_step(tx, step.id, outcome, "lb", 2, &mut wake))
                        .unwrap()
                );
            }
        }
    }

    /// The rolling-with-LB plan's event names, from the one plan.
    fn lb_order() -> Vec<&'static str> {
        plan(DeploymentStyle::InPlaceLb, false)
            .per_instance
            .iter()
            .map(|e| e.name())
            .collect()
    }

    #[test]
    fn rolling_with_lb_runs_the_seed_s_13_steps_with_coordinator_traffic_steps() {
        let s = setup_lb(&["a", "b"], false, Concurrency::Count(1));
        let mut wake = Vec::new();
        let id = deploy_lb(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        assert_eq!(run_lb_instance(&s, "a", None), lb_order());
        assert_eq!(run_lb_instance(&s, "b", None), lb_order());
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Succeeded);
        let steps = s.read(|c| deployments::steps_of(c, &id, "a")).unwrap();
        assert!(
            steps
                .iter()
                .all(|(_, st, _, end)| st == "succeeded" && end.is_some())
        );
    }

    #[test]
    fn validate_failure_with_lb_keeps_the_instance_out_and_rolls_back_without_download() {
        let s = setup_lb(&["a", "b"], true, Concurrency::Count(1));
        let mut wake = Vec::new();
        let v1 = format!("r-{}", "a".repeat(16));
        deploy_lb(&s, &v1, &mut wake).unwrap();
        run_lb_instance(&s, "a", None);
        run_lb_instance(&s, "b", None);
        let d2 = deploy_lb(&s, &format!("r-{}", "b".repeat(16)), &mut wake).unwrap();
        let events = run_lb_instance(&s, "a", Some("ValidateService"));
        assert_eq!(events, lb_order()[..10]);
        let steps = s.read(|c| deployments::steps_of(c, &d2, "a")).unwrap();
        let allow = steps.iter().find(|(e, ..)| e == "AllowTraffic").unwrap();
        assert_eq!(allow.1, "pending", "the failed instance is never put back");
        let d = s.read(|c| deployments::get(c, &d2)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Failed);
        let rb = d.rollback_deployment.unwrap();
        let rb_row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(rb_row.revision, v1);
        assert_eq!(rb_row.concurrency, Concurrency::Count(1));
        assert_eq!(run_lb_instance(&s, "a", None), lb_order()[1..]);
        assert_eq!(run_lb_instance(&s, "b", None), lb_order()[1..]);
        let rb_row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(rb_row.status, DeploymentStatus::Succeeded);
    }

    #[test]
    fn a_failed_traffic_step_fails_the_instance() {
        let s = setup_lb(&["a"], false, Concurrency::All);
        let mut wake = Vec::new();
        let id = deploy_lb(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        assert_eq!(
            run_lb_instance(&s, "a", Some("BlockTraffic")),
            lb_order()[..3]
        );
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Failed);
    }

    fn setup_bg(wait_for_continue: bool) -> Store {
        let s = setup(&[], false, Concurrency::Count(1));
        let lb = serde_json::json!({
            "active_group": "blue",
            "wait_for_continue": wait_for_continue,
            "targets": { "b1": "127.0.0.1:8081", "b2": "127.0.0.1:8082", "g1": "127.0.0.1:8083" },
            "lb": {
                "service": "app1",
                "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/nonexistent" },
                "server_groups": { "blue": ["127.0.0.1:8081", "127.0.0.1:8082"], "green": ["127.0.0.1:8083"] }
            }
        });
        s.write(|tx| {
            apps::insert_group(
                tx,
                &Group {
                    id: "g-bg".into(),
                    application: "app".into(),
                    name: "lbweb".into(),
                    style: DeploymentStyle::BlueGreen,
                    concurrency: Concurrency::Count(1),
                    failure_tolerance: 0,
                    auto_rollback: true,
                    instances: vec![],
                    lb: Some(serde_json::from_value(lb).unwrap()),
                    created_at_ms: 0,
                },
            )?;
            Ok::<_, EngineError>(())
        })
        .unwrap();
        s
    }

    /// Finish the running deployment-wide step with `outcome`; returns its event.
    fn finish_switch(s: &Store, outcome: StepOutcome) -> Option<String> {
        let step = s
            .read(deployments::running_coordinator_steps)
            .unwrap()
            .into_iter()
            .find(|st| st.instance == deployments::DEPLOYMENT_WIDE)?;
        let mut wake = Vec::new();
        s.write(|tx| end_coordinator_step(tx, step.id, outcome, "switched", 3, &mut wake))
            .unwrap();
        Some(step.event.name().to_owned())
    }

    #[test]
    fn blue_green_deploys_the_idle_group_switches_waits_for_continue_and_rolls_back_by_switching() {
        let s = setup_bg(false);
        let mut wake = Vec::new();
        let v1 = format!("r-{}", "a".repeat(16));
        let d1 = deploy_lb(&s, &v1, &mut wake).unwrap();
        let row = s.read(|c| deployments::get(c, &d1)).unwrap().unwrap();
        assert_eq!(row.switch_to.as_deref(), Some("green"));
        assert_eq!(
            s.read(|c| deployments::instance_names(c, &d1)).unwrap(),
            ["g1"]
        );
        assert_eq!(
            run_lb_instance(&s, "g1", None),
            LifecycleEventNames::in_place()
        );
        assert_eq!(
            finish_switch(&s, StepOutcome::Succeeded).as_deref(),
            Some("SwitchTraffic")
        );
        let row = s.read(|c| deployments::get(c, &d1)).unwrap().unwrap();
        assert_eq!(row.status, DeploymentStatus::Succeeded, "{}", row.message);
        assert_eq!(
            s.read(|c| apps::active_server_group(c, "g-bg"))
                .unwrap()
                .as_deref(),
            Some("green")
        );
        // The next deployment goes to blue, the idle group now.
        let d2 = deploy_lb(&s, &format!("r-{}", "b".repeat(16)), &mut wake).unwrap();
        assert_eq!(
            s.read(|c| deployments::instance_names(c, &d2)).unwrap(),
            ["b1", "b2"]
        );
        run_lb_instance(&s, "b1", None);
        run_lb_instance(&s, "b2", None);
        finish_switch(&s, StepOutcome::Succeeded);
        // Rolling it back runs no agent step and switches back to green at once.
        let rb = s.write(|tx| rollback(tx, &d2, 4, &mut wake)).unwrap();
        assert!(
            s.read(|c| deployments::running_step_for(c, "b1"))
                .unwrap()
                .is_none()
        );
        assert_eq!(
            finish_switch(&s, StepOutcome::Succeeded).as_deref(),
            Some("SwitchTraffic")
        );
        let rb_row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(
            rb_row.status,
            DeploymentStatus::Succeeded,
            "{}",
            rb_row.message
        );
        assert_eq!(rb_row.switch_to.as_deref(), Some("green"));
        assert_eq!(
            s.read(|c| apps::active_server_group(c, "g-bg"))
                .unwrap()
                .as_deref(),
            Some("green")
        );
    }

    #[test]
    fn blue_green_waits_in_ready_until_continue_and_a_failed_switch_fails() {
        let s = setup_bg(true);
        let mut wake = Vec::new();
        let d1 = deploy_lb(&s, &format!("r-{}", "a".repeat(16)), &mut wake).unwrap();
        run_lb_instance(&s, "g1", None);
        let row = s.read(|c| deployments::get(c, &d1)).unwrap().unwrap();
        assert_eq!(row.status, DeploymentStatus::Ready);
        assert_eq!(
            finish_switch(&s, StepOutcome::Succeeded),
            None,
            "nothing switches before continue"
        );
        s.write(|tx| continue_deployment(tx, &d1, 5, &mut wake))
            .unwrap();
        let row = s.read(|c| deployments::get(c, &d1)).unwrap().unwrap();
        assert_eq!(row.status, DeploymentStatus::InProgress);
        finish_switch(&s, StepOutcome::Failed);
        let row = s.read(|c| deployments::get(c, &d1)).unwrap().unwrap();
        assert_eq!(row.status, DeploymentStatus::Failed);
        assert!(
            row.message.contains("switching traffic failed"),
            "{}",
            row.message
        );
        assert_eq!(
            s.read(|c| apps::active_server_group(c, "g-bg")).unwrap(),
            None,
            "a failed switch changes nothing"
        );
        assert!(matches!(
            s.write(|tx| continue_deployment(tx, &d1, 6, &mut wake)),
            Err(EngineError::Conflict(_))
        ));
    }

    struct LifecycleEventNames;
    impl LifecycleEventNames {
        fn in_place() -> Vec<String> {
            plan(DeploymentStyle::InPlace, false)
                .per_instance
                .iter()
                .map(|e| e.name().to_owned())
                .collect()
        }
    }
}
