//! Agent routes: enroll (an enrollment token), then with the agent's own token: say hello on every start (tags,
//! what it has installed: catch-up), long-poll for the next command,
//! report a step (answered with the next command at once), check whether a command was cancelled, download a
//! revision's archive. An agent may only see and report its own work (403 otherwise).

use super::extract::refused;
use super::guard::AuditTarget;
use super::{Agent, ApiError, Enroller, Json, LenientJson, Path};
use crate::auth;
use crate::engine::{catchup, executor};
use crate::state::State;
use crate::store::OptionalExt;
use crate::store::{deployments, enroll_tokens, instances, logs, revisions};
use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::header;
use axum::response::Response;
use rollcage_proto::wire::now_ms;
use rollcage_proto::wire::{
    AgentHello, CommandState, EnrollRequest, EnrollResponse, HelloResponse, InstanceState,
    MAX_INSTALLED_ENTRIES, PollRequest, PollResponse, ReportResponse, StepCommand, StepReport,
    StepState,
};
use std::time::Duration;

/// `POST /v1/agent/enroll`: a new instance and its token. A name is owned: enrolling under an enrolled name is a
/// 409 and changes nothing (the agent holding the name keeps its token, its commands and its identity). To enroll
/// a host again (its token was lost), an operator removes the instance first (`DELETE /v1/instances/{name}`).
///
/// With a per-use token, the use is taken in the same transaction that records the instance: a refused enrollment
/// (409, or the token's last use taken by a concurrent enrollment: 401) uses nothing and records nothing. Under
/// `--enroll-approval` the instance is recorded `pending` and given no work until an operator approves it.
pub async fn enroll(
    enroller: Enroller,
    AxState(st): AxState<State>,
    Json(req): Json<EnrollRequest>,
) -> Result<(axum::Extension<AuditTarget>, Json<EnrollResponse>), ApiError> {
    let (name, tags) = (req.name, req.tags);
    rollcage_proto::tags::check_tags(&tags)
        .map_err(|e| ApiError::Invalid(format!("field `tags`: {e}")))?;
    if !rollcage_proto::wire::is_valid_name(&name) {
        return Err(ApiError::Invalid(format!(
            "field `name`: invalid instance name `{}`: expected {}",
            rollcage_proto::clip::clip_head(&name, 160),
            rollcage_proto::wire::NAME_RULE
        )));
    }
    let token =
        auth::random_bytes_hex(32).map_err(|e| ApiError::Internal(format!("random token: {e}")))?;
    let hash = auth::hash_token(&token);
    let now = now_ms();
    let state = if st.settings.enroll_approval {
        InstanceState::Pending
    } else {
        InstanceState::Approved
    };
    let enrollment = instances::Enrollment {
        name: &name,
        token_hash: &hash,
        state,
        enrolled_with: enroller.recorded_as(),
    };
    let created = st.store.write(|tx| {
        if !instances::enroll(tx, &enrollment, now)? {
            return Ok(false);
        }
        instances::set_tags(tx, &name, &tags)?;
        if let Enroller::PerUse(id) = &enroller {
            // Refused here only when a concurrent enrollment took the last use (or the token was revoked or
            // expired) since the extractor checked it: the transaction rolls back, the instance is not recorded.
            if let Err(status) = enroll_tokens::consume(tx, id, now)? {
                let info = enroll_tokens::get(tx, id, now)?
                    .ok_or_else(|| ApiError::Internal(format!("enrollment token {id} vanished")))?;
                return Err(refused(&info, status));
            }
        }
        Ok::<_, ApiError>(true)
    })?;
    if !created {
        tracing::warn!(instance = %name, "enrollment refused: the name is taken");
        return Err(ApiError::Conflict(format!(
            "instance `{name}` is already enrolled; to enroll this host again, an operator removes it first \
             (`DELETE /v1/instances/{name}`, `rollcage instances remove {name}`)"
        )));
    }
    st.tokens.set_agent(&name, hash);
    st.seen(&name, now);
    match state {
        InstanceState::Pending => tracing::info!(instance = %name, token = enroller.recorded_as(),
            "agent enrolled, pending approval (`rollcage instances approve {name}`)"),
        InstanceState::Approved => {
            tracing::info!(instance = %name, token = enroller.recorded_as(), "agent enrolled")
        }
    }
    // The audit trail names the instance (the path does not).
    Ok((
        axum::Extension(AuditTarget(name.clone())),
        Json(EnrollResponse {
            instance: name,
            token,
            state,
        }),
    ))
}

/// The instance's step in flight, as a command; none for an instance pending approval (it is in no deployment,
/// and even a step that reached it some other way is not sent).
fn next_command_in(
    c: &crate::store::Conn<'_>,
    instance: &str,
) -> Result<Option<StepCommand>, ApiError> {
    match instances::state_of(c, instance)? {
        // Removed while its agent waited (or between two of its calls).
        None => {
            return Err(ApiError::InstanceRemoved(format!(
                "instance `{instance}` was removed by an operator; coming back takes an operator and an \
                 enrollment token (start the agent with --enroll-token-file FILE)"
            )));
        }
        Some(InstanceState::Pending) => return Ok(None),
        Some(InstanceState::Approved) => {}
    }
    match deployments::running_step_for(c, instance)? {
        Some(step) => Ok(Some(executor::command_for(c, &step)?)),
        None => Ok(None),
    }
}

fn next_command(st: &State, instance: &str) -> Result<Option<StepCommand>, ApiError> {
    st.store.read(|c| next_command_in(c, instance))
}

/// `POST /v1/agent/hello`: an agent's word on every start: its tags (recorded, replacing the old ones) and what
/// it has installed; the coordinator brings it up to date ([`crate::engine::catchup`]) and answers with the
/// deployments that will (their first step comes through the agent's poll as usual).
pub async fn hello(
    Agent(name): Agent,
    AxState(st): AxState<State>,
    Json(hello): Json<AgentHello>,
) -> Result<Json<HelloResponse>, ApiError> {
    rollcage_proto::tags::check_tags(&hello.tags)
        .map_err(|e| ApiError::Invalid(format!("field `tags`: {e}")))?;
    if hello.installed.len() > MAX_INSTALLED_ENTRIES {
        return Err(ApiError::Invalid(format!(
            "field `installed`: {} entries, more than the {MAX_INSTALLED_ENTRIES} allowed",
            hello.installed.len()
        )));
    }
    let now = now_ms();
    let deployments = st.store.write(|tx| {
        instances::set_tags(tx, &name, &hello.tags)?;
        catchup::on_hello(tx, &name, &hello.installed, now).map_err(ApiError::from)
    })?;
    tracing::info!(instance = %name, tags = %rollcage_proto::tags::show(&hello.tags),
        deployments = ?deployments, "agent started");
    Ok(Json(HelloResponse { deployments }))
}

/// `POST /v1/agent/poll`: the instance's step in flight, at once if there is one, else as soon as one is
/// dispatched, else `null` after the wait.
pub async fn poll(
    Agent(name): Agent,
    AxState(st): AxState<State>,
    Json(req): Json<PollRequest>,
) -> Result<Json<PollResponse>, ApiError> {
    let wait = req
        .wait_ms
        .map(Duration::from_millis)
        .unwrap_or(st.settings.max_poll_wait)
        .min(st.settings.max_poll_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let waker = st.waker(&name);
    loop {
        // Register interest before reading, so a dispatch committed between the read and the wait still wakes us.
        let notified = waker.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(cmd) = next_command(&st, &name)? {
            return Ok(Json(PollResponse { command: Some(cmd) }));
        }
        if wait.is_zero() {
            return Ok(Json(PollResponse { command: None }));
        }
        tokio::select! {
            _ = &mut notified => continue,
            _ = tokio::time::sleep_until(deadline) => {
                st.seen(&name, now_ms());
                return Ok(Json(PollResponse { command: None }));
            }
        }
    }
}

/// The body limit of `POST /v1/agent/reports`, in bytes: twice the largest bounded report (see the route).
pub const REPORT_BODY_LIMIT: usize = 2 * rollcage_proto::clip::MAX_REPORT_JSON_BYTES;
// Every bounded report fits, whatever the bounds become.
const _: () = assert!(REPORT_BODY_LIMIT >= rollcage_proto::clip::MAX_REPORT_JSON_BYTES);

/// `POST /v1/agent/reports`: record a step's end; answer with the agent's next command. The coordinator accepts
/// what it can store: the report's text is decoded leniently (bytes that are not UTF-8 and lone surrogate escapes
/// become U+FFFD) and cut to the wire's bounds ([`StepReport::bounded`]) before it is recorded, so a report is
/// never refused for its text.
pub async fn report(
    Agent(name): Agent,
    AxState(st): AxState<State>,
    LenientJson(report): LenientJson<StepReport>,
) -> Result<Json<ReportResponse>, ApiError> {
    let report = report.bounded();
    let now = now_ms();
    // A report that arrived is word of its step, even while it waits for its write (under load, behind other
    // reports of its deployment): the lost-agent sweep must not fail a step whose report is in hand.
    st.step_heard(report.command_id, now);
    let (command_id, outcome, duration_ms) =
        (report.command_id, report.outcome, report.duration_ms);
    let hooks = report.hooks.clone();
    // Group-committed with concurrent reports; the next command is read in the same transaction.
    let agent = name.clone();
    let (recorded, step, command) = st
        .store
        .write_batched(move |tx| {
            let (recorded, row) = executor::report_step(tx, &agent, &report, now)?;
            // Checked by report_step: the step exists and is this agent's. Stored even for a step that already
            // ended (cancelled by a forced stop): its output is still worth reading; a re-sent one is ignored. A
            // stored log wakes the deployment's followers too (`GET /deployments/{id}/logs` long polls).
            if let Some(log) = &report.log {
                logs::insert(tx, &row, log, now)?;
            }
            let event = Some(row.event);
            let command = next_command_in(tx, &agent)?;
            Ok::<_, ApiError>((recorded, event, command))
        })
        .await?;
    if let (true, Some(event)) = (recorded, step) {
        st.metrics
            .step_reported(event.name(), outcome.name(), duration_ms);
        st.metrics.hook_capabilities(&hooks);
    }
    tracing::debug!(instance = %name, command = command_id, ?outcome, recorded, "step report");
    Ok(Json(ReportResponse { recorded, command }))
}

/// `GET /v1/agent/commands/{id}`: whether the command was cancelled (doubles as the heartbeat during a step).
pub async fn command_state(
    Agent(name): Agent,
    AxState(st): AxState<State>,
    Path(id): Path<i64>,
) -> Result<Json<CommandState>, ApiError> {
    let step = st
        .store
        .read(|c| deployments::step(c, id).map_err(ApiError::from))?
        .ok_or_else(|| ApiError::NotFound(format!("command {id} not found")))?;
    if step.instance != name {
        return Err(ApiError::Forbidden(format!(
            "command {id} belongs to another instance"
        )));
    }
    // The agent checks on a step while it runs: that is the step's heartbeat (see `server::sweep_lost`).
    st.step_heard(id, now_ms());
    Ok(Json(CommandState {
        cancelled: step.state == StepState::Cancelled,
    }))
}

/// `GET /v1/agent/applications/{app}/revisions/{id}/bundle`: the archive, for an instance that has a
/// deployment of this revision.
pub async fn download_bundle(
    Agent(name): Agent,
    AxState(st): AxState<State>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let rev = st.store.write(|tx| {
        if instances::is_pending(tx, &name)? {
            return Err(ApiError::Forbidden(format!(
                "instance `{name}` is pending approval: it is served no bundle until an operator approves it"
            )));
        }
        let rev = revisions::get(tx, &app, &id)?
            .ok_or_else(|| ApiError::NotFound(format!("revision `{app}/{id}` not found")))?;
        let assigned: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM deployment_instances di JOIN deployments d ON d.id = di.deployment_id \
                 WHERE di.instance = ?1 AND d.application = ?2 AND d.revision = ?3 \
                 AND di.status NOT IN ('pending', 'skipped') LIMIT 1",
                [&name, &app, &id],
                |r| r.get(0),
            )
            .optional()
            .map_err(crate::store::sql)?;
        if assigned.is_none() {
            return Err(ApiError::Forbidden(format!(
                "instance `{name}` has no deployment of revision `{app}/{id}`"
            )));
        }
        revisions::count_download(tx, &app, &id)?;
        Ok(rev)
    })?;
    let bundle = st
        .bundles
        .open(st.clone(), &rev.sha256)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "revision `{app}/{id}` has no archive on the coordinator (sha256 {})",
                rev.sha256
            ))
        })?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, bundle.len)
        .body(Body::from_stream(bundle.bytes))
        .map_err(|e| ApiError::Internal(format!("building the bundle response: {e}")))
}
