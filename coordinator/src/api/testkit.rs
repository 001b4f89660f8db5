//! The router's test fixtures: requests through the real router (no socket), and a fleet of enrolled agents with a
//! group and a revision, set up through the API as an operator and agents would.

#![allow(clippy::unwrap_used, reason = "test fixtures")]

use crate::router;
use crate::state::State;
pub use crate::testkit::{ADMIN, ENROLL, TestResult, state};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use rollcage_proto::wire::{EnrollResponse, Revision};
use tower::ServiceExt;

/// The client address of [`send`]'s requests (TEST-NET-1).
pub const PEER: std::net::SocketAddr = std::net::SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)),
    40007,
);

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
    // The server's accept loop puts the peer's address on each request; the audit trail records it.
    let req = req.extension(axum::extract::ConnectInfo(PEER));
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

/// `GET` with `token` (none: no `Authorization` header): the status and the answer as [`call`] gives it.
pub async fn get(
    st: &State,
    uri: &str,
    token: Option<&str>,
) -> TestResult<(StatusCode, serde_json::Value)> {
    call(st, Method::GET, uri, token, Body::empty(), false).await
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

/// Create application `name` (it must succeed).
pub async fn create_app(st: &State, name: &str) -> TestResult {
    post_ok(
        st,
        "/v1/applications",
        ADMIN,
        serde_json::json!({"name": name}),
    )
    .await?;
    Ok(())
}

/// Upload `bytes` as a revision of application `app` (it must succeed).
pub async fn upload(st: &State, app: &str, bytes: &'static [u8]) -> TestResult<Revision> {
    let (s, v) = call(
        st,
        Method::POST,
        &format!("/v1/applications/{app}/revisions"),
        Some(ADMIN),
        Body::from(bytes),
        false,
    )
    .await?;
    if s != StatusCode::CREATED {
        return Err(format!("upload: {s} {v}").into());
    }
    Ok(serde_json::from_value(v)?)
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
    create_app(&st, "app").await?;
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
    let revision = upload(&st, "app", b"fake archive bytes").await?;
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
