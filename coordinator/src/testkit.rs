//! Test fixtures shared by the coordinator's test modules: a shared state over an in-memory store, requests through
//! the real router, a fleet of enrolled agents with a group and a revision, and a record of what each commit
//! touched.

#![allow(clippy::unwrap_used, reason = "test fixtures")]

use crate::auth::Tokens;
use crate::engine::executor::{
    EngineError, NewDeployment, create_deployment, end_coordinator_step, record_report,
};
use crate::router;
use crate::state::{AppState, Settings, State};
use crate::store::{Store, Touched, apps, deployments, revisions};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use rollcage_proto::lb::GroupLb;
use rollcage_proto::wire::{
    Concurrency, DeploymentStyle, EnrollResponse, Group, Revision, StepOutcome, StepReport,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// Result of a test or fixture.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The admin token of [`state`].
pub const ADMIN: &str = "admin-secret";
/// The enrollment token of [`state`].
pub const ENROLL: &str = "enroll-secret";

/// Test tunables: polls held 200 ms (tests wait on them), a 60 s heartbeat, logs kept for ever.
pub fn settings() -> Settings {
    Settings {
        max_poll_wait: Duration::from_millis(200),
        heartbeat_deadline: Duration::from_secs(60),
        log_retention: None,
    }
}

/// A shared state over `store` (tokens [`ADMIN`] and [`ENROLL`], bundles in a fresh temp dir that outlives the
/// test).
pub fn state_over(store: Store, settings: Settings) -> TestResult<State> {
    let dir = tempfile::tempdir()?.keep();
    Ok(Arc::new(AppState::new(
        store,
        Tokens::new(ADMIN, ENROLL, []),
        dir.join("bundles"),
        settings,
    )))
}

/// A shared state over an empty in-memory store with the test [`settings`].
pub fn state() -> TestResult<State> {
    state_over(Store::open_in_memory()?, settings())
}

/// Every commit's [`Touched`] set from now on (adds a commit hook to `store`).
pub fn commits(store: &Store) -> Arc<Mutex<Vec<Touched>>> {
    let seen: Arc<Mutex<Vec<Touched>>> = Arc::default();
    let sink = seen.clone();
    store.on_commit(Arc::new(move |t| sink.lock().unwrap().push(t.clone())));
    seen
}

/// Send one request through the router (`json`: with `content-type: application/json`).
pub async fn send(
    st: &State,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Body,
    json: bool,
) -> TestResult<Response> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if json {
        req = req.header("content-type", "application/json");
    }
    Ok(router(st.clone()).oneshot(req.body(body)?).await?)
}

/// [`send`], answering the status and the whole body.
async fn fetch(
    st: &State,
    (method, uri): (Method, &str),
    token: Option<&str>,
    body: Body,
    json: bool,
) -> TestResult<(StatusCode, bytes::Bytes)> {
    let resp = send(st, method, uri, token, body, json).await?;
    let status = resp.status();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// [`send`] (as JSON), answering the status and the body as text.
pub async fn call_text(
    st: &State,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Body,
) -> TestResult<(StatusCode, String)> {
    let (status, bytes) = fetch(st, (method, uri), token, body, true).await?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// [`send`], answering the status and the body as JSON (`null` when empty, a string when not JSON).
pub async fn call(
    st: &State,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Body,
    json: bool,
) -> TestResult<(StatusCode, serde_json::Value)> {
    let (status, bytes) = fetch(st, (method, uri), token, body, json).await?;
    let value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    };
    Ok((status, value))
}

/// `POST` a JSON body: the status and the answer.
pub async fn post_json(
    st: &State,
    uri: &str,
    token: &str,
    v: serde_json::Value,
) -> TestResult<(StatusCode, serde_json::Value)> {
    call(
        st,
        Method::POST,
        uri,
        Some(token),
        Body::from(v.to_string()),
        true,
    )
    .await
}

/// `POST` a JSON body that must succeed: the answer.
pub async fn post_ok(
    st: &State,
    uri: &str,
    token: &str,
    v: serde_json::Value,
) -> TestResult<serde_json::Value> {
    let (s, v) = post_json(st, uri, token, v).await?;
    if !s.is_success() {
        return Err(format!("POST {uri}: {s} {v}").into());
    }
    Ok(v)
}

/// Agents `i0`… enrolled, application `app` with group `web` over them, and one uploaded revision.
pub struct Fleet {
    /// The state.
    pub st: State,
    /// The agents' enrollments (names and tokens), in order.
    pub agents: Vec<EnrollResponse>,
    /// The uploaded revision.
    pub revision: Revision,
}

/// A [`Fleet`] of `n` agents on a fresh [`state`]; group `web` has this `concurrency` and `style`.
pub async fn fleet(n: usize, concurrency: &str, style: &str) -> TestResult<Fleet> {
    fleet_on(state()?, n, concurrency, style).await
}

/// A [`Fleet`] of `n` agents on `st`.
pub async fn fleet_on(st: State, n: usize, concurrency: &str, style: &str) -> TestResult<Fleet> {
    let mut agents = Vec::new();
    for i in 0..n {
        let v = post_ok(
            &st,
            "/v1/agent/enroll",
            ENROLL,
            serde_json::json!({"name": format!("i{i}")}),
        )
        .await?;
        agents.push(serde_json::from_value(v)?);
    }
    let (s, _) = post_json(
        &st,
        "/v1/applications",
        ADMIN,
        serde_json::json!({"name": "app"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED);
    let names: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        serde_json::json!({"name": "web", "style": style, "concurrency": concurrency, "instances": names}),
    )
    .await?;
    if s != StatusCode::CREATED {
        return Err(format!("group create: {s} {v}").into());
    }
    let (s, v) = call(
        &st,
        Method::POST,
        "/v1/applications/app/revisions",
        Some(ADMIN),
        Body::from(&b"fake archive bytes"[..]),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let revision: Revision = serde_json::from_value(v)?;
    Ok(Fleet {
        st,
        agents,
        revision,
    })
}

/// One agent `i0` in group `app/web` (in place, one at a time) with a deployment of the revision started:
/// (state, the agent's token, the deployment id).
pub async fn deployment() -> TestResult<(State, String, String)> {
    let Fleet {
        st,
        mut agents,
        revision,
    } = fleet(1, "1", "in-place").await?;
    let d = post_ok(
        &st,
        "/v1/deployments",
        ADMIN,
        serde_json::json!({"application": "app", "group": "web", "revision": revision.id}),
    )
    .await?;
    let id = d["id"].as_str().ok_or("no deployment id")?.to_owned();
    let agent = agents.pop().ok_or("no agent")?;
    Ok((st, agent.token, id))
}

// Engine fixtures, on a bare store: application `app` with two revisions, groups, and agents simulated through the
// executor.

/// Application `app` with revisions `r-aaaa…` and `r-bbbb…` (sha256 `aaaa…`, `bbbb…`).
pub fn seed(s: &Store) {
    s.write(|tx| {
        apps::insert_application(tx, "app", 0)?;
        revisions::upsert(tx, "app", &"a".repeat(64), None, 10, 0)?;
        revisions::upsert(tx, "app", &"b".repeat(64), None, 10, 0)?;
        Ok::<_, EngineError>(())
    })
    .unwrap();
}

/// A group to insert: `id`, `name`, `style`, concurrency, auto-rollback, instances and LB settings.
pub fn group(
    (id, name, style): (&str, &str, DeploymentStyle),
    c: Concurrency,
    auto_rollback: bool,
    instances: &[&str],
    lb: Option<GroupLb>,
) -> Group {
    Group {
        id: id.into(),
        application: "app".into(),
        name: name.into(),
        style,
        concurrency: c,
        failure_tolerance: 0,
        auto_rollback,
        instances: instances.iter().map(|s| s.to_string()).collect(),
        lb,
        created_at_ms: 0,
    }
}

pub fn add_group(s: &Store, g: &Group) {
    s.write(|tx| apps::insert_group(tx, g)).unwrap();
}

/// Rolling-with-LB settings: `instances` at `127.0.0.1:8081`… in server group `blue`.
pub fn lb_settings(instances: &[&str]) -> GroupLb {
    let targets: serde_json::Map<String, serde_json::Value> = instances
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), format!("127.0.0.1:{}", 8081 + i).into()))
        .collect();
    let addrs: Vec<serde_json::Value> = targets.values().cloned().collect();
    typed(serde_json::json!({
        "targets": targets,
        "lb": {
            "service": "app1",
            "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/nonexistent" },
            "server_groups": { "blue": addrs }
        }
    }))
}

/// Settings written as the JSON an operator sends, typed.
fn typed(v: serde_json::Value) -> GroupLb {
    serde_json::from_value(v).unwrap()
}

/// Blue/green settings: `b1`, `b2` in `blue` (serving), `g1` in `green`.
pub fn bg_settings(wait_for_continue: bool) -> GroupLb {
    typed(serde_json::json!({
        "active_group": "blue",
        "wait_for_continue": wait_for_continue,
        "targets": { "b1": "127.0.0.1:8081", "b2": "127.0.0.1:8082", "g1": "127.0.0.1:8083" },
        "lb": {
            "service": "app1",
            "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/nonexistent" },
            "server_groups": { "blue": ["127.0.0.1:8081", "127.0.0.1:8082"], "green": ["127.0.0.1:8083"] }
        }
    }))
}

/// Deploy revision `rev` to group `group` of `app` (no enrolled instances).
pub fn deploy(s: &Store, group: &str, rev: &str) -> Result<String, EngineError> {
    s.write(|tx| {
        create_deployment(
            tx,
            &NewDeployment {
                application: "app",
                group,
                revision: rev,
                rollback_of: None,
                concurrency: None,
            },
            &[],
            1,
        )
    })
}

/// Run `inst` to its end in its current deployment: agent steps reported like an agent would, coordinator
/// steps finished like the traffic runner would (`fail_at` fails that event). Returns the events in order.
pub fn run_instance(s: &Store, inst: &str, fail_at: Option<&str>) -> Vec<String> {
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
            duration_ms: 1,
            log: None,
        };
        if agent.is_some() {
            assert!(s.write(|tx| record_report(tx, inst, &report, 2)).unwrap());
        } else {
            // An agent never gets (nor may report) a coordinator step.
            assert!(matches!(
                s.write(|tx| record_report(tx, inst, &report, 2)),
                Err(EngineError::Forbidden(_))
            ));
            assert!(
                s.write(|tx| end_coordinator_step(tx, step.id, outcome, "lb", 2))
                    .unwrap()
            );
        }
    }
}

/// Finish the running deployment-wide step with `outcome`; returns its event.
pub fn finish_switch(s: &Store, outcome: StepOutcome) -> Option<String> {
    let step = s
        .read(deployments::running_coordinator_steps)
        .unwrap()
        .into_iter()
        .find(|st| st.instance == deployments::DEPLOYMENT_WIDE)?;
    s.write(|tx| end_coordinator_step(tx, step.id, outcome, "switched", 3))
        .unwrap();
    Some(step.event.name().to_owned())
}
