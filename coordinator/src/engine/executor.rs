//! The one executor: loads a deployment's state from the database, asks [`strategy::decide`] what to do, and
//! applies the actions in the caller's transaction. Every entry point (create, report, stop, rollback, lost agent)
//! ends with [`advance`], so the database always holds a settled state: each in-flight instance has exactly one
//! step marked running, which is the command its agent gets (again, after any restart).

use super::strategy::{self, Action, DeploymentView, Final, FinalPhase, Mode, Outcome, Phase};
use crate::store::Conn;
use crate::store::actors::{self, Act};
use crate::store::deployments::{DeploymentRow, Lock};
use crate::store::{StoreError, Tx, apps, deployments, revisions};
use rollcage_proto::wire::{
    AgentOverrides, Concurrency, DeploymentStatus, DeploymentStyle, InstanceStatus, NameList,
    RevisionLocation, RevisionRef, RevisionSource, StepCommand, StepOutcome, StepReport, StepState,
};
use rollcage_proto::{HookOutcome, Performer, plan_of};

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
    /// `Some(instance)` for a catch-up of that one instance ([`super::catchup`]).
    pub catch_up: Option<&'a str>,
    /// What it asks of the agents (a rollback keeps its deployment's: the broken ApplicationStop a deployment
    /// ignored is the one its rollback runs again).
    pub overrides: AgentOverrides,
    /// For people.
    pub description: Option<String>,
}

/// Create a deployment and dispatch its first batch. Refused while the group has an active deployment.
pub fn create_deployment(
    tx: &Tx<'_>,
    new: &NewDeployment<'_>,
    enrolled: &[String],
    now: i64,
) -> Result<String> {
    let group =
        apps::group(tx, new.application, new.group)?.ok_or_else(|| EngineError::NotFound {
            what: "deployment group",
            name: format!("{}/{}", new.application, new.group),
        })?;
    deployments::lock_group(tx, &group.id)?;
    let style_plan = plan_of(
        group.style,
        new.rollback_of.is_some(),
        new.catch_up.is_some(),
    );
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
    // A blue/green catch-up joins the server group that serves: nothing switches.
    let switch_to = match (settings, group.style) {
        (Some(s), DeploymentStyle::BlueGreen) if new.catch_up.is_none() => {
            Some(match new.rollback_of {
                Some((of, _)) => {
                    let of_row =
                        deployments::get(tx, of)?.ok_or_else(|| EngineError::NotFound {
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
            })
        }
        _ => None,
    };
    let instances = match (new.rollback_of, &settings, &switch_to) {
        (Some((of, _)), ..) => deployments::instance_names(tx, of)?,
        (None, ..) if new.catch_up.is_some() => {
            new.catch_up.into_iter().map(str::to_owned).collect()
        }
        // By tags: the approved instances they match (on blue/green, those of the idle server group).
        (None, settings, idle) if !group.tags.is_empty() => {
            let matching = crate::store::instances::approved_matching(tx, &group.tags)?;
            match (settings, idle) {
                (Some(s), Some(idle)) => {
                    let of_idle = s.instances_of(idle);
                    matching
                        .into_iter()
                        .filter(|i| of_idle.contains(i))
                        .collect()
                }
                _ => matching,
            }
        }
        (None, Some(s), Some(idle)) => s.instances_of(idle),
        (None, ..) if group.instances.is_empty() => enrolled.to_vec(),
        (None, ..) => group.instances.clone(),
    };
    if instances.is_empty() {
        return Err(EngineError::Invalid(format!(
            "deployment group `{}` has no instances: list them at group creation or enroll agents first (and \
             approve them, on a coordinator started with --enroll-approval)",
            new.group
        )));
    }
    // An instance pending approval gets no work, whichever way it was named (the group's list, a load-balanced
    // group's targets, a rollback of a deployment made before its name was removed and enrolled again).
    let pending = crate::store::instances::pending_among(tx, &instances)?;
    if !pending.is_empty() {
        return Err(EngineError::Conflict(format!(
            "deployment group `{}` includes instances pending approval: {}; an operator approves each first \
             (`rollcage instances approve {}`) or deploys to a group without them",
            new.group,
            NameList(&pending),
            rollcage_proto::clip::clip_head(&pending[0], 160)
        )));
    }
    // A minimum healthy that leaves no instance to deploy to is refused now, with the arithmetic (CodeDeploy fails
    // such a deployment at once).
    let concurrency = new.concurrency.unwrap_or(group.concurrency);
    concurrency.check(instances.len()).map_err(|e| {
        EngineError::Invalid(format!(
            "deployment group `{}` cannot be deployed to: {e}",
            new.group
        ))
    })?;
    let id = format!("d-{}", crate::auth::random_hex(6));
    let row = DeploymentRow {
        id: id.clone(),
        application: new.application.to_owned(),
        group: new.group.to_owned(),
        group_id: group.id.clone(),
        revision: new.revision.to_owned(),
        style: group.style,
        concurrency,
        failure_tolerance: group.failure_tolerance,
        // A failed catch-up leaves the group as it was: there is nothing to roll back to but the same revision.
        auto_rollback: group.auto_rollback && new.catch_up.is_none(),
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
        catch_up: new.catch_up.map(str::to_owned),
        overrides: new.overrides,
        description: new.description.clone(),
    };
    deployments::insert(tx, &row, style_plan.per_instance, &instances)?;
    // A rollback re-runs the form the revision it returns to was installed with; a new deployment starts with the
    // group's default (the API replaces it with the deployment's own form, if given, in the same transaction).
    // A catch-up, like a rollback, installs the revision as the group's last success did.
    let form = match (new.rollback_of, new.catch_up) {
        (Some((of, _)), _) => crate::store::forms::form_of_last_success(
            tx,
            new.application,
            new.group,
            new.revision,
            of,
        )?,
        (None, Some(_)) => crate::store::forms::form_of_last_success(
            tx,
            new.application,
            new.group,
            new.revision,
            "",
        )?,
        (None, None) => crate::store::forms::group_form(tx, &group.id)?,
    };
    crate::store::forms::set_deployment_form(tx, &id, form.as_ref())?;
    deployments::insert_final_steps(tx, &id, style_plan.deployment_wide)?;
    tracing::info!(deployment = %id, application = new.application, group = new.group,
        revision = new.revision, instances = instances.len(), rollback_of = ?new.rollback_of, "deployment created");
    advance(tx, &id, now)?;
    Ok(id)
}

/// Apply the strategy's decisions to an active deployment (no-op on an ended one).
pub fn advance(tx: &Tx<'_>, id: &str, now: i64) -> Result<()> {
    deployments::lock(tx, id)?;
    let d = deployments::get(tx, id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: id.to_owned(),
    })?;
    if d.status.is_terminal() {
        return Ok(());
    }
    let steps = d.plan().per_instance;
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
    apply(tx, &d, strategy::decide(&view), now)
}

/// The deployment-wide final step's state (blue/green's SwitchTraffic), if the deployment has one.
fn final_of(tx: &Conn<'_>, d: &DeploymentRow) -> Result<Option<Final>> {
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
fn apply(tx: &Tx<'_>, d: &DeploymentRow, actions: Vec<Action>, now: i64) -> Result<()> {
    let id = d.id.as_str();
    for action in actions {
        match action {
            // Both record the agents they touch: their polls wake once the transaction committed.
            Action::Dispatch { instance, step } => {
                deployments::start_step(tx, id, &instance, step, now)?;
            }
            Action::CancelInFlight => {
                deployments::cancel_in_flight(tx, id, now)?;
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
                                catch_up: None,
                                overrides: d.overrides,
                                description: None,
                            },
                            &[],
                            now,
                        );
                        match rb {
                            Ok(rb) => {
                                deployments::set_rollback(tx, id, &rb)?;
                                let system = rollcage_proto::access::SYSTEM_ACTOR;
                                actors::set(tx, &rb, Act::Created, system)?;
                                actors::set(tx, id, Act::RolledBack, system)?;
                            }
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
pub fn record_report(tx: &Tx<'_>, instance: &str, report: &StepReport, now: i64) -> Result<bool> {
    report_step(tx, instance, report, now).map(|(recorded, _)| recorded)
}

/// [`record_report`], also returning the step reported on (as it was before the report).
pub fn report_step(
    tx: &Tx<'_>,
    instance: &str,
    report: &StepReport,
    now: i64,
) -> Result<(bool, deployments::StepRow)> {
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
    let recorded = end_step(
        tx,
        &step,
        report.outcome,
        &report.message,
        &log_tail(&report.hooks),
        now,
    )?;
    Ok((recorded, step))
}

/// Record the end of one of the coordinator's own steps (a load-balancer call) and advance the deployment.
/// `false` when the step is not running any more (e.g. cancelled by a forced stop while the call ran).
pub fn end_coordinator_step(
    tx: &Tx<'_>,
    step_id: i64,
    outcome: StepOutcome,
    message: &str,
    now: i64,
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
        return end_step(tx, &step, outcome, message, "", now);
    }
    // The deployment-wide SwitchTraffic: decided under the deployment's lock, on the step as it is now.
    deployments::lock(tx, &step.deployment_id)?;
    let Some(step) = deployments::step(tx, step_id)? else {
        return Ok(false);
    };
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
    advance(tx, &d.id, now)?;
    // Why the switch failed (a canary's abort names its interval, figures and threshold) belongs in the
    // deployment's own message, not only in its final step's.
    if outcome == StepOutcome::Failed && !message.is_empty() {
        deployments::append_message(tx, &d.id, message)?;
    }
    Ok(true)
}

/// An operator's go-ahead for a blue/green deployment waiting in `ready` (or about to): switch traffic.
pub fn continue_deployment(tx: &Tx<'_>, id: &str, now: i64) -> Result<()> {
    deployments::lock(tx, id)?;
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
    advance(tx, id, now)
}

/// Take `instance` out of active deployment `id` (it is being removed from the fleet, forced): its steps are
/// cancelled and the deployment goes on without it.
pub fn drop_instance(tx: &Tx<'_>, id: &str, instance: &str, now: i64) -> Result<()> {
    deployments::lock(tx, id)?;
    deployments::drop_instance(tx, id, instance, now)?;
    advance(tx, id, now)
}

/// Fail a running step whose agent went silent.
pub fn fail_lost_step(tx: &Tx<'_>, step_id: i64, reason: &str, now: i64) -> Result<bool> {
    let Some(step) = deployments::step(tx, step_id)? else {
        return Ok(false);
    };
    end_step(tx, &step, StepOutcome::Failed, reason, "", now)
}

fn end_step(
    tx: &Tx<'_>,
    step: &deployments::StepRow,
    outcome: StepOutcome,
    message: &str,
    log_tail: &str,
    now: i64,
) -> Result<bool> {
    let missing = || EngineError::NotFound {
        what: "deployment",
        name: step.deployment_id.clone(),
    };
    // The plan never changes, so the report's phase for its instance is known before any lock: a report that
    // leaves its instance ready for its next step (6 of 7 in a rolling deployment) takes the deployment's lock
    // shared, any other the exclusive one. Deciding first matters: upgrading a shared lock can deadlock.
    let d = deployments::get(tx, &step.deployment_id)?.ok_or_else(missing)?;
    let plan_len = d.plan().per_instance.len();
    let phase = strategy::after_report(step.idx, plan_len, outcome);
    let how = match phase {
        Phase::Ready { .. } => Lock::Shared,
        _ => Lock::Exclusive,
    };
    // Decided under the deployment's lock, on the step as it is now: a report of the same step that reached
    // another coordinator may have ended it meanwhile (its step row lock makes the second one wait and see that).
    let (d, step) = if tx.is_postgres() {
        let d = deployments::get_locked(tx, &step.deployment_id, how)?.ok_or_else(missing)?;
        let Some(step) = deployments::step_for_update(tx, step.id)? else {
            return Ok(false);
        };
        (d, step)
    } else {
        (d, step.clone())
    };
    let step = &step;
    if step.state != StepState::Running {
        return Ok(false);
    }
    let state = match outcome {
        StepOutcome::Succeeded => StepState::Succeeded,
        StepOutcome::Skipped => StepState::Skipped,
        StepOutcome::Failed => StepState::Failed,
    };
    deployments::end_step(tx, step.id, state, message, log_tail, now)?;
    let (status, next) = match phase {
        Phase::Ready { next } => (InstanceStatus::InProgress, next),
        Phase::Succeeded => (InstanceStatus::Succeeded, plan_len),
        _ => (InstanceStatus::Failed, step.idx),
    };
    // Hot path: a step that leaves its instance ready for the next one changes no count, so on a settled
    // deployment the only action is that next step (`strategy::after_ready`); no need to summarise the deployment.
    let fast = match status {
        InstanceStatus::InProgress if !d.status.is_terminal() => {
            strategy::after_ready(mode_of(&d), &step.instance, next)
        }
        _ => None,
    };
    match fast {
        // Dispatching the next step rewrites the instance's row whole (status, next and running step).
        Some(actions) => apply(tx, &d, actions, now)?,
        None => {
            if how == Lock::Shared {
                // Only a terminal or force-stopping deployment gets here with a running step; rare enough to
                // upgrade (see above).
                deployments::lock(tx, &step.deployment_id)?;
            }
            deployments::set_instance(tx, &step.deployment_id, &step.instance, status, next)?;
            advance(tx, &step.deployment_id, now)?;
        }
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
pub fn stop(tx: &Tx<'_>, id: &str, force: bool, now: i64) -> Result<()> {
    deployments::lock(tx, id)?;
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
    advance(tx, id, now)
}

/// Start a rollback of deployment `id` to the group's last successful revision (manual rollback).
pub fn rollback(tx: &Tx<'_>, id: &str, now: i64) -> Result<String> {
    deployments::lock(tx, id)?;
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
            catch_up: None,
            overrides: d.overrides,
            description: None,
        },
        &[],
        now,
    )?;
    deployments::set_rollback(tx, id, &rb)?;
    Ok(rb)
}

/// The command an agent gets for a running step.
pub fn command_for(c: &Conn<'_>, step: &deployments::StepRow) -> Result<StepCommand> {
    let d = deployments::get(c, &step.deployment_id)?.ok_or_else(|| EngineError::NotFound {
        what: "deployment",
        name: step.deployment_id.clone(),
    })?;
    let rev =
        revisions::get(c, &d.application, &d.revision)?.ok_or_else(|| EngineError::NotFound {
            what: "revision",
            name: d.revision.clone(),
        })?;
    let (location, size) = match rev.source {
        RevisionSource::Uploaded { size } => (RevisionLocation::Coordinator, Some(size)),
        RevisionSource::Url { url } => (RevisionLocation::Url { url }, None),
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
            signature: rev.signature,
            size,
        },
        rollback: d.rollback_of.is_some(),
        form,
        overrides: d.overrides,
    })
}

/// Re-run the strategy on every active deployment (at start-up: a coordinator killed mid-way resumes here).
pub fn resume_all(tx: &Tx<'_>, now: i64) -> Result<usize> {
    let ids = deployments::active_ids(tx)?;
    for id in &ids {
        advance(tx, id, now)?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test setup on an in-memory database")]
    use super::*;
    use crate::store::Store;
    use crate::testkit::{
        add_group, bg_settings, deploy, finish_switch, group, lb_settings, run_instance, seed,
    };
    use rollcage_proto::plan;
    use rollcage_proto::wire::DeploymentStyle;

    /// Application `app` with revisions `r-aaaa…` and `r-bbbb…` and the in-place group `web`.
    fn setup(instances: &[&str], auto_rollback: bool, c: Concurrency) -> Store {
        let s = crate::testkit::store().unwrap();
        seed(&s);
        let web = group(
            ("g-1", "web", DeploymentStyle::InPlace),
            c,
            auto_rollback,
            instances,
            None,
        );
        add_group(&s, &web);
        s
    }

    #[test]
    fn one_at_a_time_runs_each_instance_through_the_seed_order() {
        let s = setup(&["a", "b"], false, Concurrency::Count(1));
        let commits = crate::testkit::commits(&s);
        let id = deploy(&s, "web", &format!("r-{}", "a".repeat(16))).unwrap();
        let touched = commits.lock().unwrap().pop().unwrap();
        assert_eq!(
            Vec::from_iter(touched.instances),
            ["a"],
            "only the first instance is sent a step"
        );
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
        deploy(&s, "web", &format!("r-{}", "a".repeat(16))).unwrap();
        let second = deploy(&s, "web", &format!("r-{}", "b".repeat(16)));
        assert!(matches!(second, Err(EngineError::Conflict(_))));
    }

    #[test]
    fn failure_triggers_a_rollback_with_the_same_concurrency_and_no_download() {
        let s = setup(&["a", "b", "c"], true, Concurrency::Count(2));
        let v1 = format!("r-{}", "a".repeat(16));
        let v2 = format!("r-{}", "b".repeat(16));
        let d1 = deploy(&s, "web", &v1).unwrap();
        for i in ["a", "b", "c"] {
            run_instance(&s, i, None);
        }
        run_instance(&s, "a", None);
        let d2 = deploy(&s, "web", &v2).unwrap();
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
        let first = plan(DeploymentStyle::InPlace, true)
            .per_instance
            .first()
            .map(|e| e.name());
        assert_eq!(events.first().map(String::as_str), first);
        assert!(!events.iter().any(|e| e == "DownloadBundle"));
        run_instance(&s, "b", None);
        run_instance(&s, "c", None);
        let rb = s.read(|c| deployments::get(c, &rb_id)).unwrap().unwrap();
        assert_eq!(rb.status, DeploymentStatus::Succeeded);
    }

    #[test]
    fn a_report_for_another_instance_is_forbidden_and_a_repeat_is_ignored() {
        let s = setup(&["a", "b"], false, Concurrency::All);
        deploy(&s, "web", &format!("r-{}", "a".repeat(16))).unwrap();
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
        let r = s.write(|tx| record_report(tx, "b", &report, 3));
        assert!(matches!(r, Err(EngineError::Forbidden(_))));
        assert!(s.write(|tx| record_report(tx, "a", &report, 3)).unwrap());
        assert!(!s.write(|tx| record_report(tx, "a", &report, 3)).unwrap());
    }

    #[test]
    fn rollback_covers_the_instances_of_the_rolled_back_deployment() {
        // The group names no instances: the deployment took the enrolled ones, and so must its rollback.
        let s = setup(&[], true, Concurrency::All);
        let enrolled = ["x".to_owned(), "y".to_owned()];
        let mk = |rev: String| {
            s.write(|tx| {
                create_deployment(
                    tx,
                    &NewDeployment {
                        application: "app",
                        group: "web",
                        revision: &rev,
                        rollback_of: None,
                        concurrency: None,
                        catch_up: None,
                        overrides: Default::default(),
                        description: None,
                    },
                    &enrolled,
                    1,
                )
            })
        };
        mk(format!("r-{}", "a".repeat(16))).unwrap();
        run_instance(&s, "x", None);
        run_instance(&s, "y", None);
        let d2 = mk(format!("r-{}", "b".repeat(16))).unwrap();
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
        let v1 = format!("r-{}", "a".repeat(16));
        let v2 = format!("r-{}", "b".repeat(16));
        let d1 = deploy(&s, "web", &v1).unwrap();
        // Nothing to roll back to yet.
        run_instance(&s, "a", None);
        assert!(matches!(
            s.write(|tx| rollback(tx, &d1, 3)),
            Err(EngineError::Conflict(_))
        ));
        let d2 = deploy(&s, "web", &v2).unwrap();
        // Refused while the group is busy.
        assert!(matches!(
            s.write(|tx| rollback(tx, &d2, 3)),
            Err(EngineError::Conflict(_))
        ));
        run_instance(&s, "a", None);
        let rb = s.write(|tx| rollback(tx, &d2, 4)).unwrap();
        let row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(row.revision, v1);
        assert_eq!(row.rollback_of.as_deref(), Some(d2.as_str()));
        assert!(!row.automatic);
        let events = run_instance(&s, "a", None);
        let first = plan(DeploymentStyle::InPlace, true)
            .per_instance
            .first()
            .map(|e| e.name());
        assert_eq!(events.first().map(String::as_str), first);
        let row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(row.status, DeploymentStatus::Succeeded);
    }

    #[test]
    fn a_rollback_naming_an_instance_pending_approval_is_refused_until_it_is_approved() {
        use crate::store::instances::{self, Enrollment};
        let s = setup(&["a"], false, Concurrency::Count(1));
        let d1 = deploy(&s, "web", &format!("r-{}", "a".repeat(16))).unwrap();
        run_instance(&s, "a", None);
        let d2 = deploy(&s, "web", &format!("r-{}", "b".repeat(16))).unwrap();
        run_instance(&s, "a", None);
        assert_ne!(d1, d2);
        // The name was removed and enrolled again under --enroll-approval: the host behind it is not the same.
        let pending = Enrollment {
            name: "a",
            token_hash: "h",
            state: rollcage_proto::wire::InstanceState::Pending,
            enrolled_with: "standing",
        };
        s.write(|tx| instances::enroll(tx, &pending, 5)).unwrap();
        match s.write(|tx| rollback(tx, &d2, 6)) {
            Err(EngineError::Conflict(m)) => {
                assert!(m.contains("rollcage instances approve a"), "{m}")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        s.write(|tx| instances::approve(tx, "a")).unwrap();
        assert!(s.write(|tx| rollback(tx, &d2, 7)).is_ok());
    }

    #[test]
    fn stop_lets_the_in_flight_instance_finish_and_skips_the_rest() {
        let s = setup(&["a", "b"], false, Concurrency::Count(1));
        let id = deploy(&s, "web", &format!("r-{}", "a".repeat(16))).unwrap();
        s.write(|tx| stop(tx, &id, false, 2)).unwrap();
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
            s.write(|tx| stop(tx, &id, false, 3)),
            Err(EngineError::Conflict(_))
        ));
    }

    #[test]
    fn forced_stop_cancels_and_ends_stopped() {
        let s = setup(&["a", "b", "c"], true, Concurrency::Count(1));
        let id = deploy(&s, "web", &format!("r-{}", "a".repeat(16))).unwrap();
        s.write(|tx| stop(tx, &id, true, 5)).unwrap();
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Stopped);
        assert!(d.rollback_deployment.is_none());
        assert!(
            s.read(|c| deployments::running_step_for(c, "a"))
                .unwrap()
                .is_none()
        );
    }

    /// `stop --force` ends a deployment whatever it is doing, and the group's next deployment can start.
    #[test]
    fn a_forced_stop_ends_a_deployment_in_every_state_and_frees_its_group() {
        let rev = |c: char| format!("r-{}", c.to_string().repeat(16));
        // (what it is doing, the store, its group, the deployment)
        let mut cases: Vec<(&str, Store, &str, String)> = Vec::new();

        let s = setup(&["a", "b"], false, Concurrency::Count(1));
        let id = deploy(&s, "web", &rev('a')).unwrap();
        cases.push(("an agent step in flight", s, "web", id));

        let s = setup(&["a", "b"], false, Concurrency::Count(1));
        let id = deploy(&s, "web", &rev('a')).unwrap();
        s.write(|tx| stop(tx, &id, false, 2)).unwrap();
        cases.push(("stopping, waiting for an in-flight step", s, "web", id));

        let s = setup_lb(&["a"], false, Concurrency::All);
        let id = deploy(&s, "lbweb", &rev('a')).unwrap();
        // Run `a` up to its BlockTraffic (a coordinator step) and leave that in flight.
        loop {
            let agent = s.read(|c| deployments::running_step_for(c, "a")).unwrap();
            let Some(step) = agent else { break };
            let report = StepReport {
                command_id: step.id,
                outcome: StepOutcome::Succeeded,
                message: String::new(),
                hooks: vec![],
                duration_ms: 1,
                log: None,
            };
            s.write(|tx| record_report(tx, "a", &report, 2)).unwrap();
        }
        assert_eq!(
            s.read(deployments::running_coordinator_steps)
                .unwrap()
                .len(),
            1,
            "a traffic step in flight"
        );
        cases.push(("a traffic step in flight", s, "lbweb", id));

        let s = setup_bg(true);
        let id = deploy(&s, "lbweb", &rev('a')).unwrap();
        run_instance(&s, "g1", None);
        cases.push(("ready, waiting for continue", s, "lbweb", id));

        let s = setup(&["a"], false, Concurrency::All);
        deploy(&s, "web", &rev('a')).unwrap();
        run_instance(&s, "a", None);
        let failed = deploy(&s, "web", &rev('b')).unwrap();
        run_instance(&s, "a", Some("Install"));
        let id = s.write(|tx| rollback(tx, &failed, 3)).unwrap();
        cases.push(("a rollback in flight", s, "web", id));

        for (doing, s, group, id) in cases {
            s.write(|tx| stop(tx, &id, true, 10)).unwrap();
            let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
            assert_eq!(
                d.status,
                DeploymentStatus::Stopped,
                "{doing}: {}",
                d.message
            );
            if let Err(e) = deploy(&s, group, &rev('a')) {
                panic!("{doing}: the group's next deployment cannot start: {e}");
            }
        }

        // A traffic switch in flight is let finish (one LB call with a deadline), so the group's record of its
        // live side stays true; then the stop ends the deployment.
        let s = setup_bg(false);
        let id = deploy(&s, "lbweb", &rev('a')).unwrap();
        run_instance(&s, "g1", None);
        s.write(|tx| stop(tx, &id, true, 10)).unwrap();
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Stopping, "{}", d.message);
        assert_eq!(
            finish_switch(&s, StepOutcome::Succeeded).as_deref(),
            Some("SwitchTraffic")
        );
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Stopped, "{}", d.message);
        assert_eq!(
            s.read(|c| apps::active_server_group(c, "g-bg"))
                .unwrap()
                .as_deref(),
            Some("green"),
            "the switch that happened is recorded"
        );
        let next = deploy(&s, "lbweb", &rev('b')).unwrap();
        assert_eq!(
            s.read(|c| deployments::instance_names(c, &next)).unwrap(),
            ["b1", "b2"],
            "the next deployment targets the side that is idle now"
        );
    }

    fn setup_lb(instances: &[&str], auto_rollback: bool, c: Concurrency) -> Store {
        let s = setup(&[], false, c);
        let g = ("g-2", "lbweb", DeploymentStyle::InPlaceLb);
        add_group(
            &s,
            &group(g, c, auto_rollback, instances, Some(lb_settings(instances))),
        );
        s
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
        let id = deploy(&s, "lbweb", &format!("r-{}", "a".repeat(16))).unwrap();
        assert_eq!(run_instance(&s, "a", None), lb_order());
        assert_eq!(run_instance(&s, "b", None), lb_order());
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
        let v1 = format!("r-{}", "a".repeat(16));
        deploy(&s, "lbweb", &v1).unwrap();
        run_instance(&s, "a", None);
        run_instance(&s, "b", None);
        let d2 = deploy(&s, "lbweb", &format!("r-{}", "b".repeat(16))).unwrap();
        let events = run_instance(&s, "a", Some("ValidateService"));
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
        assert_eq!(run_instance(&s, "a", None), lb_order()[1..]);
        assert_eq!(run_instance(&s, "b", None), lb_order()[1..]);
        let rb_row = s.read(|c| deployments::get(c, &rb)).unwrap().unwrap();
        assert_eq!(rb_row.status, DeploymentStatus::Succeeded);
    }

    #[test]
    fn a_failed_traffic_step_fails_the_instance() {
        let s = setup_lb(&["a"], false, Concurrency::All);
        let id = deploy(&s, "lbweb", &format!("r-{}", "a".repeat(16))).unwrap();
        assert_eq!(run_instance(&s, "a", Some("BlockTraffic")), lb_order()[..3]);
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Failed);
    }

    fn setup_bg(wait_for_continue: bool) -> Store {
        let s = setup(&[], false, Concurrency::Count(1));
        let g = ("g-bg", "lbweb", DeploymentStyle::BlueGreen);
        let lb = bg_settings(wait_for_continue);
        add_group(&s, &group(g, Concurrency::Count(1), true, &[], Some(lb)));
        s
    }

    #[test]
    fn blue_green_deploys_the_idle_group_switches_waits_for_continue_and_rolls_back_by_switching() {
        let s = setup_bg(false);
        let v1 = format!("r-{}", "a".repeat(16));
        let d1 = deploy(&s, "lbweb", &v1).unwrap();
        let row = s.read(|c| deployments::get(c, &d1)).unwrap().unwrap();
        assert_eq!(row.switch_to.as_deref(), Some("green"));
        assert_eq!(
            s.read(|c| deployments::instance_names(c, &d1)).unwrap(),
            ["g1"]
        );
        assert_eq!(
            run_instance(&s, "g1", None),
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
        let d2 = deploy(&s, "lbweb", &format!("r-{}", "b".repeat(16))).unwrap();
        assert_eq!(
            s.read(|c| deployments::instance_names(c, &d2)).unwrap(),
            ["b1", "b2"]
        );
        run_instance(&s, "b1", None);
        run_instance(&s, "b2", None);
        finish_switch(&s, StepOutcome::Succeeded);
        // Rolling it back runs no agent step and switches back to green at once.
        let rb = s.write(|tx| rollback(tx, &d2, 4)).unwrap();
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
        let d1 = deploy(&s, "lbweb", &format!("r-{}", "a".repeat(16))).unwrap();
        run_instance(&s, "g1", None);
        let row = s.read(|c| deployments::get(c, &d1)).unwrap().unwrap();
        assert_eq!(row.status, DeploymentStatus::Ready);
        assert_eq!(
            finish_switch(&s, StepOutcome::Succeeded),
            None,
            "nothing switches before continue"
        );
        s.write(|tx| continue_deployment(tx, &d1, 5)).unwrap();
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
            s.write(|tx| continue_deployment(tx, &d1, 6)),
            Err(EngineError::Conflict(_))
        ));
    }

    /// The running agent step of `inst` as a successful report.
    fn report_of(s: &Store, inst: &str, outcome: StepOutcome) -> StepReport {
        let step = s
            .read(|c| deployments::running_step_for(c, inst))
            .unwrap()
            .unwrap();
        StepReport {
            command_id: step.id,
            outcome,
            message: String::new(),
            hooks: vec![],
            duration_ms: 1,
            log: None,
        }
    }

    /// Runs `first` in a transaction held open until `second` (on another connection) returned or `patience`
    /// passed; returns whether `second` finished while `first` was still open, and both results.
    fn while_held<A: Send, B: Send>(
        s: &Store,
        first: impl FnOnce(&Tx<'_>) -> Result<A> + Send,
        second: impl FnOnce(&Tx<'_>) -> Result<B> + Send,
        patience: std::time::Duration,
    ) -> (bool, Result<A>, Result<B>) {
        use std::sync::mpsc;
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let a = scope.spawn(move || {
                s.write(move |tx| {
                    let out = first(tx)?;
                    let _ = held_tx.send(());
                    let _ = release_rx.recv();
                    Ok(out)
                })
            });
            held_rx.recv().unwrap();
            let b = scope.spawn(move || {
                let out = s.write(second);
                let _ = done_tx.send(());
                out
            });
            let finished_while_held = done_rx.recv_timeout(patience).is_ok();
            release_tx.send(()).unwrap();
            (finished_while_held, a.join().unwrap(), b.join().unwrap())
        })
    }

    fn pg_setup(instances: &[&str]) -> (Store, String) {
        let s = crate::testkit::pg_store().unwrap();
        seed(&s);
        let web = group(
            ("g-1", "web", DeploymentStyle::InPlace),
            Concurrency::All,
            false,
            instances,
            None,
        );
        add_group(&s, &web);
        let id = deploy(&s, "web", &format!("r-{}", "a".repeat(16))).unwrap();
        (s, id)
    }

    #[test]
    fn on_postgres_reports_that_only_move_their_instance_run_side_by_side() {
        let (s, _) = pg_setup(&["a", "b"]);
        let (ra, rb) = (
            report_of(&s, "a", StepOutcome::Succeeded),
            report_of(&s, "b", StepOutcome::Succeeded),
        );
        let (side_by_side, a, b) = while_held(
            &s,
            |tx| record_report(tx, "a", &ra, 2),
            |tx| record_report(tx, "b", &rb, 2),
            std::time::Duration::from_secs(20),
        );
        assert!(
            side_by_side,
            "b's report waited for a's transaction: the hot path took the deployment's lock exclusively"
        );
        assert!(a.unwrap() && b.unwrap());
        for inst in ["a", "b"] {
            let next = s.read(|c| deployments::running_step_for(c, inst)).unwrap();
            assert_eq!(next.map(|st| st.idx), Some(1), "{inst} got its next step");
        }
    }

    #[test]
    fn on_postgres_a_second_report_of_one_step_waits_and_is_not_recorded() {
        let (s, _) = pg_setup(&["a", "b"]);
        let ra = report_of(&s, "a", StepOutcome::Succeeded);
        let (overlapped, first, again) = while_held(
            &s,
            |tx| record_report(tx, "a", &ra, 2),
            |tx| record_report(tx, "a", &ra, 3),
            std::time::Duration::from_millis(500),
        );
        assert!(!overlapped, "the same step was decided on twice at once");
        assert!(first.unwrap());
        assert!(!again.unwrap(), "the second report of the step is ignored");
        let running = s
            .read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM steps WHERE instance = 'a' AND state = 'running'",
                    (),
                    |r| r.get::<i64>(0),
                )
            })
            .unwrap();
        assert_eq!(running, 1, "a was dispatched its next step once");
    }

    #[test]
    fn on_postgres_a_stop_waits_for_a_report_on_the_hot_path_and_sees_its_dispatch() {
        let (s, id) = pg_setup(&["a", "b"]);
        let ra = report_of(&s, "a", StepOutcome::Succeeded);
        let (overlapped, recorded, stopped) = while_held(
            &s,
            |tx| record_report(tx, "a", &ra, 2),
            |tx| stop(tx, &id, true, 3),
            std::time::Duration::from_millis(500),
        );
        assert!(
            !overlapped,
            "a forced stop decided while a report was being applied"
        );
        assert!(recorded.unwrap());
        stopped.unwrap();
        // The forced stop came after the report's dispatch, so it cancelled that new step too.
        assert!(
            s.read(|c| deployments::running_step_for(c, "a"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn on_postgres_instances_that_end_decide_one_at_a_time() {
        // Last steps take the exclusive lock: each sees the other's count, so exactly one finishes the deployment.
        let (s, id) = pg_setup(&["a", "b"]);
        for inst in ["a", "b"] {
            for _ in 0..6 {
                let r = report_of(&s, inst, StepOutcome::Succeeded);
                assert!(s.write(|tx| record_report(tx, inst, &r, 2)).unwrap());
            }
        }
        let (ra, rb) = (
            report_of(&s, "a", StepOutcome::Succeeded),
            report_of(&s, "b", StepOutcome::Succeeded),
        );
        let (overlapped, a, b) = while_held(
            &s,
            |tx| record_report(tx, "a", &ra, 2),
            |tx| record_report(tx, "b", &rb, 2),
            std::time::Duration::from_millis(500),
        );
        assert!(!overlapped, "two last steps were decided on at once");
        assert!(a.unwrap() && b.unwrap());
        let d = s.read(|c| deployments::get(c, &id)).unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Succeeded);
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
