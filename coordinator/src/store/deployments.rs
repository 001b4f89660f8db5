//! Deployments, their instances and their steps (one row per step per instance; a step's row id is the
//! command id the agent reports against).

use super::{Conn, OptionalExt, args};
use super::{Result, StoreError, Tx, decode, sql};
use rollcage_proto::wire::AgentOverrides;
use rollcage_proto::wire::{
    Concurrency, Deployment, DeploymentKind, DeploymentStatus, DeploymentStyle, DeploymentSummary,
    InstanceProgress, InstanceStatus, StepProgress, StepState,
};
use rollcage_proto::{FileExistsBehavior, LifecycleEvent, Performer};

/// A deployment's own row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    /// Id.
    pub id: String,
    /// Application.
    pub application: String,
    /// Group name.
    pub group: String,
    /// Group id.
    pub group_id: String,
    /// Revision id.
    pub revision: String,
    /// Style.
    pub style: DeploymentStyle,
    /// Concurrency.
    pub concurrency: Concurrency,
    /// Failures tolerated.
    pub failure_tolerance: u32,
    /// Auto-rollback.
    pub auto_rollback: bool,
    /// The deployment this one rolls back.
    pub rollback_of: Option<String>,
    /// Started automatically.
    pub automatic: bool,
    /// Status.
    pub status: DeploymentStatus,
    /// Forced stop asked.
    pub force_stop: bool,
    /// Final message.
    pub message: String,
    /// Created.
    pub created_at: i64,
    /// Ended.
    pub ended_at: Option<i64>,
    /// Rollback started after it.
    pub rollback_deployment: Option<String>,
    /// Blue/green: the server group its SwitchTraffic points the service at.
    pub switch_to: Option<String>,
    /// Blue/green with `wait_for_continue`: `continue` was given.
    pub continued: bool,
    /// A catch-up deployment: the instance it brings up to date.
    pub catch_up: Option<String>,
    /// What it asks of the agents (CodeDeploy's `ignoreApplicationStopFailures`, `fileExistsBehavior`).
    pub overrides: AgentOverrides,
    /// For people.
    pub description: Option<String>,
}

impl DeploymentRow {
    /// Its plan: the style's, a rollback's or a catch-up's ([`rollcage_proto::plan_of`]).
    pub fn plan(&self) -> rollcage_proto::StylePlan {
        rollcage_proto::plan_of(
            self.style,
            self.rollback_of.is_some(),
            self.catch_up.is_some(),
        )
    }
}

/// A step's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    /// Row id = command id.
    pub id: i64,
    /// Deployment.
    pub deployment_id: String,
    /// Instance.
    pub instance: String,
    /// Index in the plan.
    pub idx: usize,
    /// Event.
    pub event: LifecycleEvent,
    /// State.
    pub state: StepState,
}

/// Instance counts of a deployment, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// All instances.
    pub total: usize,
    /// Not started.
    pub pending: usize,
    /// In flight with a step sent.
    pub awaiting: usize,
    /// In flight, next step not sent.
    pub ready: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
    /// Cancelled.
    pub cancelled: usize,
}

pub(crate) fn status_str(s: DeploymentStatus) -> &'static str {
    s.name()
}

// The stored names are the wire names (proto's one table of each enum).
pub(crate) fn instance_status_str(s: InstanceStatus) -> &'static str {
    s.name()
}

fn parse_instance_status(s: &str) -> Result<InstanceStatus> {
    decode("deployment_instances.status", s)
}

pub(crate) fn step_state_str(s: StepState) -> &'static str {
    s.name()
}

fn parse_step_state(s: &str) -> Result<StepState> {
    decode("steps.state", s)
}

fn parse_status(s: &str) -> Result<DeploymentStatus> {
    decode("deployments.status", s)
}

/// Stored indexes are small and never negative.
fn to_usize(v: i64) -> usize {
    usize::try_from(v).unwrap_or(0)
}

fn corrupt(what: &'static str, v: &str) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: v.to_owned(),
    }
}

/// Insert a deployment in progress with its instances (all pending) and every step row (pending).
pub fn insert(
    c: &Tx<'_>,
    d: &DeploymentRow,
    plan: &[LifecycleEvent],
    instances: &[String],
) -> Result<()> {
    c.touch_deployment(&d.id);
    c.execute(
        "INSERT INTO deployments (id, application, group_name, group_id, revision, style, concurrency, \
         failure_tolerance, auto_rollback, rollback_of, automatic, status, created_at, switch_to, catch_up, \
         ignore_stop_failures, file_exists_behavior, description) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        args![
            d.id,
            d.application,
            d.group,
            d.group_id,
            d.revision,
            d.style.name(),
            d.concurrency.to_string(),
            d.failure_tolerance,
            d.auto_rollback,
            d.rollback_of,
            d.automatic,
            status_str(d.status),
            d.created_at,
            d.switch_to,
            d.catch_up,
            d.overrides.ignore_application_stop_failures,
            d.overrides.file_exists_behavior.map(|b| b.name()),
            d.description
        ],
    )
    .map_err(sql)?;
    let mut inst = c
        .prepare_cached(
            "INSERT INTO deployment_instances (deployment_id, instance, ord, status) VALUES (?1, ?2, ?3, 'pending')",
        )
        .map_err(sql)?;
    let mut step = c
        .prepare_cached(
            "INSERT INTO steps (deployment_id, instance, idx, event, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
        )
        .map_err(sql)?;
    for (ord, name) in instances.iter().enumerate() {
        inst.execute(args![d.id, name, ord as i64]).map_err(sql)?;
        for (idx, ev) in plan.iter().enumerate() {
            step.execute(args![d.id, name, idx as i64, ev.name()])
                .map_err(sql)?;
        }
    }
    Ok(())
}

/// Add `instance` to running deployment `id` (an instance that joined its group while it ran), last in its order,
/// with every step of `plan` pending; the strategy starts it when the concurrency allows. `false` when the
/// deployment already has it.
pub fn add_instance(c: &Tx<'_>, id: &str, instance: &str, plan: &[LifecycleEvent]) -> Result<bool> {
    let added = c
        .execute(
            "INSERT INTO deployment_instances (deployment_id, instance, ord, status) \
             SELECT ?1, ?2, COALESCE(MAX(ord), -1) + 1, 'pending' FROM deployment_instances WHERE deployment_id = ?1 \
             ON CONFLICT DO NOTHING",
            args![id, instance],
        )
        .map_err(sql)?;
    if added == 0 {
        return Ok(false);
    }
    c.touch_deployment(id);
    let mut step = c
        .prepare_cached(
            "INSERT INTO steps (deployment_id, instance, idx, event, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
        )
        .map_err(sql)?;
    for (idx, ev) in plan.iter().enumerate() {
        step.execute(args![id, instance, idx as i64, ev.name()])
            .map_err(sql)?;
    }
    Ok(true)
}

const DEP_COLS: &str = "id, application, group_name, group_id, revision, style, concurrency, failure_tolerance, \
    auto_rollback, rollback_of, automatic, status, force_stop, message, created_at, ended_at, rollback_deployment, \
    switch_to, continued, catch_up, ignore_stop_failures, file_exists_behavior, description";

fn dep_row(r: &crate::store::Row<'_>) -> crate::store::Result<[crate::store::db::Value; 23]> {
    let mut out: [crate::store::db::Value; 23] =
        std::array::from_fn(|_| crate::store::db::Value::Null);
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = r.get(i)?;
    }
    Ok(out)
}

fn to_dep(v: [crate::store::db::Value; 23]) -> Result<DeploymentRow> {
    use crate::store::db::Value as V;
    let text = |i: usize| match &v[i] {
        V::Text(s) => Ok(s.clone()),
        other => Err(corrupt("deployments", &format!("column {i}: {other:?}"))),
    };
    let opt_text = |i: usize| match &v[i] {
        V::Text(s) => Some(s.clone()),
        _ => None,
    };
    let int = |i: usize| match &v[i] {
        V::Int(n) => Ok(*n),
        other => Err(corrupt("deployments", &format!("column {i}: {other:?}"))),
    };
    Ok(DeploymentRow {
        id: text(0)?,
        application: text(1)?,
        group: text(2)?,
        group_id: text(3)?,
        revision: text(4)?,
        style: decode("deployments.style", &text(5)?)?,
        concurrency: decode("deployments.concurrency", &text(6)?)?,
        failure_tolerance: u32::try_from(int(7)?).unwrap_or(0),
        auto_rollback: int(8)? != 0,
        rollback_of: opt_text(9),
        automatic: int(10)? != 0,
        status: parse_status(&text(11)?)?,
        force_stop: int(12)? != 0,
        message: text(13)?,
        created_at: int(14)?,
        ended_at: match &v[15] {
            V::Int(n) => Some(*n),
            _ => None,
        },
        rollback_deployment: opt_text(16),
        switch_to: opt_text(17),
        continued: int(18)? != 0,
        catch_up: opt_text(19),
        overrides: AgentOverrides {
            ignore_application_stop_failures: int(20)? != 0,
            file_exists_behavior: match opt_text(21) {
                Some(name) => Some(FileExistsBehavior::from_name(&name).ok_or_else(|| {
                    corrupt("deployments", &format!("file_exists_behavior `{name}`"))
                })?),
                None => None,
            },
        },
        description: opt_text(22),
    })
}

/// One deployment's row.
pub fn get(c: &Conn<'_>, id: &str) -> Result<Option<DeploymentRow>> {
    let row = c
        .prepare_cached(&format!("SELECT {DEP_COLS} FROM deployments WHERE id = ?1"))
        .map_err(sql)?
        .query_row([id], dep_row)
        .optional()
        .map_err(sql)?;
    row.map(to_dep).transpose()
}

/// Take deployment `id`'s row lock for the rest of the transaction, so decisions about one deployment are
/// serialised across coordinators sharing a PostgreSQL database: a second coordinator's decision waits for this
/// transaction's commit and then reads what it wrote. Statements after the lock see every commit made before it
/// was granted (PostgreSQL's read-committed level takes a new snapshot per statement), so a caller re-reads what
/// it decides on after locking. SQLite needs nothing: one coordinator owns its file and writes one transaction at
/// a time.
pub fn lock(c: &Conn<'_>, id: &str) -> Result<()> {
    get_locked(c, id, Lock::Exclusive).map(|_| ())
}

/// How a transaction holds a deployment's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Decisions that may change the deployment's counts or status (`advance`, stop, continue, rollback): one at a
    /// time per deployment.
    Exclusive,
    /// The hot path, a report that only moves its instance to its next step: it writes nothing of the deployment's
    /// own row, so such reports of one deployment run side by side, and still wait for (and exclude) an exclusive
    /// decision. Each serialises on its step's row instead ([`step_for_update`]).
    Shared,
}

/// [`get`] under the row lock `how` (see [`lock`]), taken once per transaction. Asking for `Exclusive` while
/// holding `Shared` upgrades it, which can deadlock with another holder doing the same (PostgreSQL then fails one
/// of them), so a caller decides which lock it needs before taking one.
pub fn get_locked(c: &Conn<'_>, id: &str, how: Lock) -> Result<Option<DeploymentRow>> {
    let exclusive = format!("deployment {id}");
    let wanted = match how {
        Lock::Exclusive => exclusive,
        Lock::Shared if c.holds_lock(&exclusive) => exclusive,
        Lock::Shared => format!("deployment {id} shared"),
    };
    if !c.first_lock(&wanted) {
        return get(c, id);
    }
    let clause = match how {
        Lock::Exclusive => "FOR UPDATE",
        Lock::Shared => "FOR SHARE",
    };
    let row = c
        .prepare_cached(&format!(
            "SELECT {DEP_COLS} FROM deployments WHERE id = ?1 {clause}"
        ))
        .map_err(sql)?
        .query_row([id], dep_row)
        .optional()
        .map_err(sql)?;
    row.map(to_dep).transpose()
}

/// Take the row lock of group `group_id` (see [`lock`]): creating a deployment checks that the group has no
/// active one, which two coordinators must not both find true.
pub fn lock_group(c: &Conn<'_>, group_id: &str) -> Result<()> {
    if c.first_lock(&format!("group {group_id}")) {
        c.query_map(
            "SELECT 1 FROM groups WHERE id = ?1 FOR UPDATE",
            [group_id],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// The active (in progress or stopping) deployment of a group.
pub fn active_for_group(c: &Conn<'_>, app: &str, group: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT id FROM deployments WHERE application = ?1 AND group_name = ?2 \
         AND status IN ('in_progress', 'stopping', 'ready') LIMIT 1",
        [app, group],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

/// Group `group_id`'s newest ended deployment other than a catch-up: whether the group has a revision for
/// newcomers, and with which options it was installed (see `engine::catchup`).
pub fn last_ended(c: &Conn<'_>, group_id: &str) -> Result<Option<DeploymentRow>> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {DEP_COLS} FROM deployments WHERE group_id = ?1 AND catch_up IS NULL \
             AND status NOT IN ('in_progress', 'stopping', 'ready') ORDER BY seq DESC LIMIT 1"
        ))
        .map_err(sql)?
        .query_row([group_id], dep_row)
        .optional()
        .map_err(sql)?;
    row.map(to_dep).transpose()
}

/// Whether deployment `id` includes `instance`.
pub fn has_instance(c: &Conn<'_>, id: &str, instance: &str) -> Result<bool> {
    c.prepare_cached(
        "SELECT 1 FROM deployment_instances WHERE deployment_id = ?1 AND instance = ?2",
    )
    .map_err(sql)?
    .exists([id, instance])
    .map_err(sql)
}

/// Ids of every active deployment.
pub fn active_ids(c: &Conn<'_>) -> Result<Vec<String>> {
    let mut st = c
        .prepare(
            "SELECT id FROM deployments WHERE status IN ('in_progress', 'stopping', 'ready') ORDER BY seq",
        )
        .map_err(sql)?;
    let rows = st.query_map((), |r| r.get(0)).map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Which deployments a listing shows: those of one application (and one of its groups), or all.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    /// Only this application's.
    pub application: Option<&'a str>,
    /// Only this group's (of `application`).
    pub group: Option<&'a str>,
}

/// Up to `limit` deployments as `(seq, summary)`, newest first, those older than `before` (a `seq`; the paging
/// cursor) when given. `seq` only grows, so a page boundary stays put while deployments are created; a page reads
/// `limit` rows from the `seq` index, however deep it is.
pub fn summaries(
    c: &Conn<'_>,
    filter: ListFilter<'_>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<(i64, DeploymentSummary)>> {
    let mut st = c
        .prepare_cached(
            "SELECT seq, id FROM deployments WHERE (seq < ?1 OR ?1 IS NULL) \
             AND (application = ?2 OR ?2 IS NULL) AND (group_name = ?3 OR ?3 IS NULL) \
             ORDER BY seq DESC LIMIT ?4",
        )
        .map_err(sql)?;
    let ids = st
        .query_map(
            args![
                before.unwrap_or(i64::MAX),
                filter.application,
                filter.group,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?)),
        )
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    let mut out = Vec::with_capacity(ids.len());
    for (seq, id) in ids {
        if let Some(d) = get(c, &id)? {
            out.push((seq, summary(d)));
        }
    }
    Ok(out)
}

/// A deployment's row as the API lists it.
fn summary(d: DeploymentRow) -> DeploymentSummary {
    DeploymentSummary {
        id: d.id,
        application: d.application,
        group: d.group,
        revision: d.revision,
        style: d.style,
        concurrency: d.concurrency,
        failure_tolerance: d.failure_tolerance,
        kind: match (d.rollback_of, d.catch_up) {
            (Some(of), _) => DeploymentKind::Rollback {
                of,
                automatic: d.automatic,
            },
            (None, Some(instance)) => DeploymentKind::CatchUp { instance },
            (None, None) => DeploymentKind::Normal,
        },
        status: d.status,
        message: d.message,
        created_at_ms: d.created_at,
        ended_at_ms: d.ended_at,
        rollback_deployment: d.rollback_deployment,
        description: d.description,
        ignore_application_stop_failures: d.overrides.ignore_application_stop_failures,
        file_exists_behavior: d.overrides.file_exists_behavior,
    }
}

/// The revision of the group's most recent successful deployment other than `except`.
pub fn last_succeeded_revision(
    c: &Conn<'_>,
    app: &str,
    group: &str,
    except: &str,
) -> Result<Option<String>> {
    c.query_row(
        "SELECT revision FROM deployments WHERE application = ?1 AND group_name = ?2 AND id != ?3 \
         AND status = 'succeeded' ORDER BY seq DESC LIMIT 1",
        [app, group, except],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

/// The instance names of a deployment, in start order.
pub fn instance_names(c: &Conn<'_>, id: &str) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached(
            "SELECT instance FROM deployment_instances WHERE deployment_id = ?1 ORDER BY ord",
        )
        .map_err(sql)?;
    let rows = st.query_map([id], |r| r.get(0)).map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Instance counts of a deployment (one aggregate query).
pub fn counts(c: &Conn<'_>, id: &str) -> Result<Counts> {
    // Grouping by status alone follows the (deployment_id, status, …) index: no sort.
    let mut st = c
        .prepare_cached(
            "SELECT status, count(*), count(running_step) FROM deployment_instances \
             WHERE deployment_id = ?1 GROUP BY status",
        )
        .map_err(sql)?;
    let rows = st
        .query_map([id], |r| {
            Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?))
        })
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    let mut out = Counts::default();
    for (status, n, running) in rows {
        let (n, running) = (to_usize(n), to_usize(running));
        out.total += n;
        match parse_instance_status(&status)? {
            InstanceStatus::Pending => out.pending += n,
            InstanceStatus::InProgress => {
                out.awaiting += running;
                out.ready += n - running;
            }
            InstanceStatus::Succeeded => out.succeeded += n,
            InstanceStatus::Failed => out.failed += n,
            InstanceStatus::Cancelled => out.cancelled += n,
            InstanceStatus::Skipped => {}
        }
    }
    Ok(out)
}

/// In-flight instances whose next step was not sent yet: (name, next step).
pub fn ready(c: &Conn<'_>, id: &str) -> Result<Vec<(String, usize)>> {
    let mut st = c
        .prepare_cached(
            "SELECT instance, next_step FROM deployment_instances WHERE deployment_id = ?1 \
             AND status = 'in_progress' AND running_step IS NULL ORDER BY ord",
        )
        .map_err(sql)?;
    let rows = st
        .query_map([id], |r| {
            Ok((r.get::<String>(0)?, to_usize(r.get::<i64>(1)?)))
        })
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// The first `limit` pending instances in start order.
pub fn pending_head(c: &Conn<'_>, id: &str, limit: usize) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached(
            "SELECT instance FROM deployment_instances WHERE deployment_id = ?1 AND status = 'pending' \
             ORDER BY ord LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = st
        .query_map(args![id, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            r.get(0)
        })
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Set an instance's status and next step; it has no step in flight.
pub fn set_instance(
    c: &Tx<'_>,
    id: &str,
    instance: &str,
    status: InstanceStatus,
    next_step: usize,
) -> Result<()> {
    c.touch_deployment(id);
    c.prepare_cached(
        "UPDATE deployment_instances SET status = ?3, next_step = ?4, running_step = NULL \
         WHERE deployment_id = ?1 AND instance = ?2",
    )
    .map_err(sql)?
    .execute(args![
        id,
        instance,
        instance_status_str(status),
        next_step as i64
    ])
    .map_err(sql)?;
    Ok(())
}

/// Mark every never-started instance skipped.
pub fn skip_pending(c: &Tx<'_>, id: &str) -> Result<()> {
    c.touch_deployment(id);
    c.execute(
        "UPDATE deployment_instances SET status = 'skipped' WHERE deployment_id = ?1 AND status = 'pending'",
        [id],
    )
    .map_err(sql)?;
    Ok(())
}

/// Cancel every in-flight step and instance (forced stop); returns the instances affected (recorded as touched:
/// their polls re-read, and the cancelled command is no longer offered).
pub fn cancel_in_flight(c: &Tx<'_>, id: &str, now: i64) -> Result<Vec<String>> {
    c.touch_deployment(id);
    let mut st = c
        .prepare("SELECT instance FROM deployment_instances WHERE deployment_id = ?1 AND status = 'in_progress'")
        .map_err(sql)?;
    let names = st
        .query_map([id], |r| r.get::<String>(0))
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    c.execute(
        "UPDATE steps SET state = 'cancelled', ended_at = ?2, message = 'cancelled by a forced stop' \
         WHERE deployment_id = ?1 AND state = 'running'",
        args![id, now],
    )
    .map_err(sql)?;
    c.execute(
        "UPDATE deployment_instances SET status = 'cancelled', running_step = NULL \
         WHERE deployment_id = ?1 AND status = 'in_progress'",
        [id],
    )
    .map_err(sql)?;
    for n in &names {
        c.touch_instance(n);
    }
    Ok(names)
}

/// Take `instance` out of deployment `id` (an operator removed it, `--force`): its running and pending steps are
/// cancelled, and it counts as cancelled (started) or skipped (never started), neither failed nor succeeded.
pub fn drop_instance(c: &Tx<'_>, id: &str, instance: &str, now: i64) -> Result<()> {
    c.touch_deployment(id);
    c.touch_instance(instance);
    c.execute(
        "UPDATE steps SET state = 'cancelled', ended_at = ?3, message = 'instance removed by an operator' \
         WHERE deployment_id = ?1 AND instance = ?2 AND state IN ('pending', 'running')",
        args![id, instance, now],
    )
    .map_err(sql)?;
    c.execute(
        "UPDATE deployment_instances SET running_step = NULL, \
         status = CASE WHEN status = 'pending' THEN 'skipped' ELSE 'cancelled' END \
         WHERE deployment_id = ?1 AND instance = ?2 AND status IN ('pending', 'in_progress')",
        [id, instance],
    )
    .map_err(sql)?;
    Ok(())
}

/// Mark step `idx` of an instance as sent (the instance is in progress with that step in flight). Records the
/// deployment, the agent (a real instance) and, for a load-balancer step, the traffic runner as touched.
pub fn start_step(c: &Tx<'_>, id: &str, instance: &str, idx: usize, now: i64) -> Result<()> {
    let event: Option<String> = c
        .prepare_cached(
            "UPDATE steps SET state = 'running', started_at = ?4 WHERE deployment_id = ?1 AND instance = ?2 \
             AND idx = ?3 RETURNING event",
        )
        .map_err(sql)?
        .query_row(args![id, instance, idx as i64, now], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    c.touch_deployment(id);
    if instance != DEPLOYMENT_WIDE {
        c.touch_instance(instance);
    }
    if let Some(event) = event
        && decode::<LifecycleEvent>("steps.event", &event)?.performer() == Performer::Coordinator
    {
        c.touch_coordinator_step();
    }
    c.prepare_cached(
        "UPDATE deployment_instances SET status = 'in_progress', next_step = ?3, running_step = ?3 \
         WHERE deployment_id = ?1 AND instance = ?2",
    )
    .map_err(sql)?
    .execute(args![id, instance, idx as i64])
    .map_err(sql)?;
    Ok(())
}

/// Record the end of a step.
pub fn end_step(
    c: &Tx<'_>,
    step_id: i64,
    state: StepState,
    message: &str,
    log_tail: &str,
    now: i64,
) -> Result<()> {
    let deployment: Option<String> = c
        .prepare_cached(
            "UPDATE steps SET state = ?2, message = ?3, log_tail = ?4, ended_at = ?5 WHERE id = ?1 \
             RETURNING deployment_id",
        )
        .map_err(sql)?
        .query_row(
            args![step_id, step_state_str(state), message, log_tail, now],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    if let Some(d) = deployment {
        c.touch_deployment(&d);
    }
    Ok(())
}

const STEP_COLS: &str = "id, deployment_id, instance, idx, event, state";

/// One step by its id (= command id).
pub fn step(c: &Conn<'_>, step_id: i64) -> Result<Option<StepRow>> {
    one_step(
        c,
        &format!("SELECT {STEP_COLS} FROM steps WHERE id = ?1"),
        step_id,
    )
}

/// [`step`] with its row locked for the rest of the transaction (PostgreSQL; SQLite has one writer and no
/// `FOR UPDATE`): two reports of one step that reached two coordinators end it once.
pub fn step_for_update(c: &Conn<'_>, step_id: i64) -> Result<Option<StepRow>> {
    if !c.is_postgres() {
        return step(c, step_id);
    }
    one_step(
        c,
        &format!("SELECT {STEP_COLS} FROM steps WHERE id = ?1 FOR UPDATE"),
        step_id,
    )
}

fn one_step(
    c: &Conn<'_>,
    query: &str,
    key: impl crate::store::db::ToParam,
) -> Result<Option<StepRow>> {
    c.prepare_cached(query)
        .map_err(sql)?
        .query_row([key], step_cols)
        .optional()
        .map_err(sql)?
        .map(to_step)
        .transpose()
}

type StepCols = (i64, String, String, usize, String, String);

fn step_cols(r: &crate::store::Row<'_>) -> Result<StepCols> {
    Ok((
        r.get::<i64>(0)?,
        r.get::<String>(1)?,
        r.get::<String>(2)?,
        to_usize(r.get::<i64>(3)?),
        r.get::<String>(4)?,
        r.get::<String>(5)?,
    ))
}

fn to_step((id, deployment_id, instance, idx, event, state): StepCols) -> Result<StepRow> {
    Ok(StepRow {
        id,
        deployment_id,
        instance,
        idx,
        event: decode("steps.event", &event)?,
        state: parse_step_state(&state)?,
    })
}

/// The agent step running on `instance`, if any.
pub fn running_step_for(c: &Conn<'_>, instance: &str) -> Result<Option<StepRow>> {
    // Only active deployments have running steps (an ending deployment has none in flight, and a forced stop
    // cancels them), so no join is needed. Coordinator steps (load-balancer calls) are never an agent's command.
    one_step(
        c,
        &format!(
            "SELECT {STEP_COLS} FROM steps WHERE instance = ?1 AND state = 'running' \
             AND event NOT IN ('BlockTraffic', 'AllowTraffic', 'SwitchTraffic') LIMIT 1"
        ),
        instance,
    )
}

/// The instance name of deployment-wide steps (blue/green's SwitchTraffic): no agent can have it, since
/// instance names are never empty.
pub const DEPLOYMENT_WIDE: &str = "";

/// Add the deployment-wide steps that run once every instance is done (state `pending`).
pub fn insert_final_steps(c: &Tx<'_>, id: &str, events: &[LifecycleEvent]) -> Result<()> {
    c.touch_deployment(id);
    for (idx, ev) in events.iter().enumerate() {
        c.execute(
            "INSERT INTO steps (deployment_id, instance, idx, event, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
            args![id, DEPLOYMENT_WIDE, idx as i64, ev.name()],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// The deployment-wide step, if the deployment has one.
pub fn final_step(c: &Conn<'_>, id: &str) -> Result<Option<StepRow>> {
    let sid: Option<i64> = c
        .query_row(
            "SELECT id FROM steps WHERE deployment_id = ?1 AND instance = ?2 ORDER BY idx LIMIT 1",
            args![id, DEPLOYMENT_WIDE],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    match sid {
        Some(sid) => step(c, sid),
        None => Ok(None),
    }
}

/// Mark `continue` given (and the deployment running again).
pub fn set_continued(c: &Tx<'_>, id: &str) -> Result<()> {
    c.touch_deployment(id);
    c.execute(
        "UPDATE deployments SET continued = 1, \
         status = CASE status WHEN 'ready' THEN 'in_progress' ELSE status END WHERE id = ?1",
        [id],
    )
    .map_err(sql)?;
    Ok(())
}

/// Every running coordinator step (load-balancer calls) of an active deployment: the ones the coordinator must
/// perform (again, after a restart: the drivers are idempotent).
pub fn running_coordinator_steps(c: &Conn<'_>) -> Result<Vec<StepRow>> {
    let ids: Vec<i64> = {
        let mut st = c
            .prepare_cached(
                "SELECT s.id FROM steps s JOIN deployments d ON d.id = s.deployment_id \
                 WHERE s.state = 'running' AND d.status IN ('in_progress', 'stopping', 'ready') \
                 AND s.event IN ('BlockTraffic', 'AllowTraffic', 'SwitchTraffic') ORDER BY s.id",
            )
            .map_err(sql)?;
        st.query_map((), |r| r.get(0))
            .map_err(sql)?
            .collect::<crate::store::Result<_>>()
            .map_err(sql)?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = step(c, id)? {
            out.push(row);
        }
    }
    Ok(out)
}

/// One step as listed by [`steps_of`]: (event, state, started at, ended at).
pub type StepTimes = (String, String, Option<i64>, Option<i64>);

/// Every step of an instance in a deployment, in plan order.
pub fn steps_of(c: &Conn<'_>, id: &str, instance: &str) -> Result<Vec<StepTimes>> {
    let mut st = c
        .prepare_cached(
            "SELECT event, state, started_at, ended_at FROM steps WHERE deployment_id = ?1 AND instance = ?2 \
             ORDER BY idx",
        )
        .map_err(sql)?;
    let rows = st
        .query_map([id, instance], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Every running step: (step id, instance, started at).
pub fn running_steps(c: &Conn<'_>) -> Result<Vec<(i64, String, i64)>> {
    let mut st = c
        .prepare(
            "SELECT s.id, s.instance, COALESCE(s.started_at, 0) FROM steps s JOIN deployments d \
             ON d.id = s.deployment_id WHERE s.state = 'running' AND d.status IN ('in_progress', 'stopping', 'ready') \
             AND s.event NOT IN ('BlockTraffic', 'AllowTraffic', 'SwitchTraffic')",
        )
        .map_err(sql)?;
    let rows = st
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Record when steps' agents last gave word of them (ms), as this coordinator heard it; a later time only.
pub fn record_heard(c: &Conn<'_>, heard: &[(i64, i64)]) -> Result<()> {
    for (step, at) in heard {
        c.execute(
            "UPDATE steps SET heard_at = ?2 WHERE id = ?1 AND state = 'running' AND (heard_at < ?2 OR heard_at IS NULL)",
            args![step, at],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// When the running steps were last heard of by any coordinator (ms), for those recorded.
pub fn heard_of_running(c: &Conn<'_>) -> Result<Vec<(i64, i64)>> {
    c.query_map(
        "SELECT id, heard_at FROM steps WHERE state = 'running' AND heard_at IS NOT NULL",
        (),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(sql)
}

/// Set a deployment's status (and the forced-stop flag).
pub fn set_status(c: &Tx<'_>, id: &str, status: DeploymentStatus, force: bool) -> Result<()> {
    c.touch_deployment(id);
    c.execute(
        "UPDATE deployments SET status = ?2, force_stop = ?3 WHERE id = ?1",
        args![id, status_str(status), force],
    )
    .map_err(sql)?;
    Ok(())
}

/// End a deployment.
pub fn finish(
    c: &Tx<'_>,
    id: &str,
    status: DeploymentStatus,
    message: &str,
    now: i64,
) -> Result<()> {
    c.touch_deployment(id);
    c.execute(
        "UPDATE deployments SET status = ?2, message = ?3, ended_at = ?4 WHERE id = ?1",
        args![id, status_str(status), message, now],
    )
    .map_err(sql)?;
    Ok(())
}

/// Record the rollback started after a deployment (and append to its message).
pub fn set_rollback(c: &Tx<'_>, id: &str, rollback: &str) -> Result<()> {
    c.touch_deployment(id);
    c.execute(
        "UPDATE deployments SET rollback_deployment = ?2, message = message || '; rolling back in ' || ?2 \
         WHERE id = ?1",
        args![id, rollback],
    )
    .map_err(sql)?;
    Ok(())
}

/// Append a note to a deployment's message.
pub fn append_message(c: &Tx<'_>, id: &str, note: &str) -> Result<()> {
    c.touch_deployment(id);
    c.execute(
        "UPDATE deployments SET message = message || '; ' || ?2 WHERE id = ?1",
        args![id, note],
    )
    .map_err(sql)?;
    Ok(())
}

/// The full deployment as the API shows it.
pub fn full(c: &Conn<'_>, id: &str) -> Result<Option<Deployment>> {
    let Some(d) = get(c, id)? else {
        return Ok(None);
    };
    let mut st = c
        .prepare_cached(
            "SELECT di.instance, di.status, s.event, s.state, s.started_at, s.ended_at, s.message, s.log_tail \
             FROM deployment_instances di JOIN steps s ON s.deployment_id = di.deployment_id \
             AND s.instance = di.instance WHERE di.deployment_id = ?1 ORDER BY di.ord, s.idx",
        )
        .map_err(sql)?;
    let rows = st
        .query_map([id], |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<Option<i64>>(4)?,
                r.get::<Option<i64>>(5)?,
                r.get::<String>(6)?,
                r.get::<String>(7)?,
            ))
        })
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    let mut instances: Vec<InstanceProgress> = Vec::new();
    for (inst, status, event, state, started, ended, message, log_tail) in rows {
        let step = StepProgress {
            event: decode("steps.event", &event)?,
            state: parse_step_state(&state)?,
            started_at_ms: started,
            ended_at_ms: ended,
            message,
            log_tail,
        };
        match instances.last_mut() {
            Some(last) if last.instance == inst => last.steps.push(step),
            _ => instances.push(InstanceProgress {
                instance: inst,
                status: parse_instance_status(&status)?,
                steps: vec![step],
            }),
        }
    }
    let actors = super::actors::of(c, id)?;
    let s = summary(d);
    Ok(Some(Deployment {
        id: s.id,
        application: s.application,
        group: s.group,
        revision: s.revision,
        style: s.style,
        concurrency: s.concurrency,
        failure_tolerance: s.failure_tolerance,
        kind: s.kind,
        status: s.status,
        message: s.message,
        created_at_ms: s.created_at_ms,
        ended_at_ms: s.ended_at_ms,
        rollback_deployment: s.rollback_deployment,
        actors,
        description: s.description,
        ignore_application_stop_failures: s.ignore_application_stop_failures,
        file_exists_behavior: s.file_exists_behavior,
        bakes: super::bakes::progress(c, id)?,
        instances,
    }))
}
