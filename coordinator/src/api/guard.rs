//! Access control and the audit trail, in one place: [`RULES`] maps every route (method + path template) to the
//! permission it needs ([`Need`]), where its application comes from ([`AppFrom`]) and its action's name; the
//! [`guard`] middleware applies it to every request the router matched, before any handler runs, and records in
//! the audit trail every state-changing request and every refusal.
//!
//! Deny by default: a matched route with no rule is refused (403), and a test checks that every route of the
//! OpenAPI document has one. The handlers read who called through [`Caller`]; none checks a role itself.
//!
//! What is recorded: every non-GET request on `/v1` except the agents' routine traffic (polls, reports, command
//! checks: [`Record::Refusals`]), enrollments included; and every 401/403 on any route. Never a secret: the actor
//! is a token's name, `anonymous` (no token), `unknown token`, `agent NAME`, `enrollment token` or
//! `metrics token`.

use super::ApiError;
use crate::access::{self, Need};
use crate::auth::{Identified, Operator};
use crate::state::State;
use crate::store::{audit, deployments};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rollcage_proto::access::AuditEntry;
use rollcage_proto::wire::{ErrorBody, now_ms};
use std::net::SocketAddr;

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum M {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl M {
    /// The method as `http` spells it.
    pub fn method(self) -> Method {
        match self {
            M::Get => Method::GET,
            M::Post => Method::POST,
            M::Patch => Method::PATCH,
            M::Delete => Method::DELETE,
        }
    }
}

/// Where a route's application comes from (for [`Need::Deploy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppFrom {
    /// The route has none.
    None,
    /// The path parameter `{app}`.
    Path,
    /// The deployment of the path parameter `{id}`, looked up in the store.
    Deployment,
    /// The JSON body's `application` field (read only for callers that are not admins).
    Body,
}

/// What of a route's traffic goes into the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Every request that is not a GET, and refusals.
    Changes,
    /// Only refusals (reads, and the agents' routine polls and reports).
    Refusals,
}

/// One route's access rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Method.
    pub method: M,
    /// Full path template, as the router has it (`/v1/deployments/{id}/stop`).
    pub path: &'static str,
    /// The action's name in the audit trail (`deployment.stop`).
    pub action: &'static str,
    /// The action in words, for refusals (`stop deployments`).
    pub what: &'static str,
    /// What it needs.
    pub need: Need,
    /// Where its application comes from.
    pub app: AppFrom,
    /// What is recorded.
    pub record: Record,
}

const fn rule(
    method: M,
    path: &'static str,
    action: &'static str,
    what: &'static str,
    need: Need,
    app: AppFrom,
) -> Rule {
    let record = match method {
        M::Get => Record::Refusals,
        M::Post | M::Patch | M::Delete => Record::Changes,
    };
    Rule {
        method,
        path,
        action,
        what,
        need,
        app,
        record,
    }
}

const fn quiet(r: Rule) -> Rule {
    Rule {
        record: Record::Refusals,
        ..r
    }
}

use AppFrom as A;
use M::{Delete, Get, Patch, Post};
use Need::{Admin, Deploy, Own, Public, Read};

/// Every route's rule: method, path, action, the action in words, what it needs, where its application comes
/// from. A route added to the router must be added here, or it is refused to everyone.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    rule(Get,    "/v1/openapi.yaml",                         "openapi.read",        "read the API description", Public, A::None),
    rule(Get,    "/v1/whoami",                               "whoami",              "read who it is",         Read,   A::None),
    rule(Post,   "/v1/tokens",                               "token.create",        "create tokens",          Admin,  A::None),
    rule(Get,    "/v1/tokens",                               "token.list",          "list tokens",            Admin,  A::None),
    rule(Delete, "/v1/tokens/{name}",                        "token.revoke",        "revoke tokens",          Admin,  A::None),
    rule(Get,    "/v1/audit",                                "audit.read",          "read the audit trail",   Admin,  A::None),
    rule(Post,   "/v1/applications",                         "application.create",  "create applications",    Admin,  A::None),
    rule(Get,    "/v1/applications",                         "application.list",    "list applications",      Read,   A::None),
    rule(Delete, "/v1/applications/{app}",                   "application.delete",  "delete applications",    Admin,  A::None),
    rule(Post,   "/v1/applications/{app}/groups",            "group.create",        "create groups",          Admin,  A::None),
    rule(Get,    "/v1/applications/{app}/groups",            "group.list",          "list groups",            Read,   A::None),
    rule(Get,    "/v1/applications/{app}/groups/{group}",    "group.read",          "read groups",            Read,   A::None),
    rule(Patch,  "/v1/applications/{app}/groups/{group}",    "group.update",        "update groups",          Admin,  A::None),
    rule(Delete, "/v1/applications/{app}/groups/{group}",    "group.delete",        "delete groups",          Admin,  A::None),
    rule(Get,    "/v1/applications/{app}/groups/{group}/deliveries", "group.deliveries", "read webhook deliveries", Read, A::None),
    rule(Post,   "/v1/applications/{app}/revisions",         "revision.upload",     "push revisions",         Deploy, A::Path),
    rule(Post,   "/v1/applications/{app}/revisions/url",     "revision.register",   "push revisions",         Deploy, A::Path),
    rule(Get,    "/v1/applications/{app}/revisions",         "revision.list",       "list revisions",         Read,   A::None),
    rule(Get,    "/v1/applications/{app}/revisions/{id}",    "revision.read",       "read revisions",         Read,   A::None),
    rule(Delete, "/v1/applications/{app}/revisions/{id}",    "revision.delete",     "delete revisions",       Deploy, A::Path),
    rule(Post,   "/v1/deployments",                          "deployment.create",   "create deployments",     Deploy, A::Body),
    rule(Get,    "/v1/deployments",                          "deployment.list",     "list deployments",       Read,   A::None),
    rule(Get,    "/v1/deployments/{id}",                     "deployment.read",     "read deployments",       Read,   A::None),
    rule(Get,    "/v1/deployments/{id}/events",              "deployment.events",   "watch deployments",      Read,   A::None),
    rule(Get,    "/v1/deployments/{id}/logs",                "deployment.logs",     "read deployment logs",   Read,   A::None),
    rule(Get,    "/v1/deployments/{id}/deliveries",          "deployment.deliveries", "read webhook deliveries", Read, A::None),
    rule(Post,   "/v1/deployments/{id}/stop",                "deployment.stop",     "stop deployments",       Deploy, A::Deployment),
    rule(Post,   "/v1/deployments/{id}/continue",            "deployment.continue", "continue deployments",   Deploy, A::Deployment),
    rule(Post,   "/v1/deployments/{id}/rollback",            "deployment.rollback", "roll back deployments",  Deploy, A::Deployment),
    rule(Get,    "/v1/instances",                            "instance.list",       "list instances",         Read,   A::None),
    rule(Delete, "/v1/instances/{name}",                     "instance.remove",     "remove instances",       Admin,  A::None),
    rule(Post,   "/v1/instances/{name}/approve",             "instance.approve",    "approve instances",      Admin,  A::None),
    rule(Post,   "/v1/enroll-tokens",                        "enroll_token.create", "create enrollment tokens", Admin, A::None),
    rule(Get,    "/v1/enroll-tokens",                        "enroll_token.list",   "list enrollment tokens", Admin,  A::None),
    rule(Post,   "/v1/enroll-tokens/{id}/revoke",            "enroll_token.revoke", "revoke enrollment tokens", Admin, A::None),
    // The agents' routes take agent and enrollment tokens (their own extractors): enrollments are recorded, the
    // routine traffic only when refused.
    rule(Post,   "/v1/agent/enroll",                         "agent.enroll",        "enroll",                 Own,    A::None),
    rule(Post,   "/v1/agent/hello",                          "agent.hello",         "say hello",              Own,    A::None),
    quiet(rule(Post, "/v1/agent/poll",                       "agent.poll",          "poll",                   Own,    A::None)),
    quiet(rule(Post, "/v1/agent/reports",                    "agent.report",        "report",                 Own,    A::None)),
    quiet(rule(Get,  "/v1/agent/commands/{id}",              "agent.command",       "check commands",         Own,    A::None)),
    quiet(rule(Get,  "/v1/agent/applications/{app}/revisions/{id}/bundle", "agent.bundle", "download bundles", Own, A::None)),
    // The scrape token or an admin token (the handler checks).
    rule(Get,    "/metrics",                                 "metrics.scrape",      "scrape metrics",         Own,    A::None),
    // For load balancers and probes: says `ok` or why not, nothing else.
    rule(Get,    "/healthz",                                 "health.check",        "check health",           Public, A::None),
    rule(Get,    "/",                                        "dashboard.page",      "read the dashboard",     Public, A::None),
    rule(Get,    "/dashboard/{file}",                        "dashboard.asset",     "read the dashboard",     Public, A::None),
];

/// The rule of a method on a path template.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.path == path && r.method.method() == *method)
}

/// Who called: the operator the guard let through. Handlers that record who acted take it.
#[derive(Debug, Clone)]
pub struct Caller(pub Operator);

impl FromRequestParts<State> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        // Not behind the guard (a route without a rule never gets here; this is for handlers called otherwise).
        match state.identify(super::extract::bearer(parts)?) {
            Identified::Operator(o) => Ok(Self(o)),
            _ => Err(ApiError::Unauthorized("invalid operator token".into())),
        }
    }
}

/// The target a handler names for the audit trail (a response extension), when the path does not name it (what a
/// create made: the deployment id, the token's name).
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// Largest body read to find a deployment's application (a create-deployment body with its form).
const BODY_LIMIT: usize = 2 << 20;

/// What the guard knows of a request, for its audit entry.
struct Seen {
    actor: String,
    role: Option<String>,
    target: String,
    remote: String,
}

/// The middleware: decide, let through or refuse, and record.
pub async fn guard(
    axum::extract::State(st): axum::extract::State<State>,
    req: Request,
    next: Next,
) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let (mut parts, body) = req.into_parts();
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &st)
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    // No name the coordinator stores can hold a NUL (PostgreSQL text cannot): such a path names nothing, and is
    // refused here, before any lookup.
    if let Some((k, _)) = params.iter().find(|(_, v)| v.contains('\0')) {
        return ApiError::Invalid(format!("path parameter `{k}` contains a NUL byte"))
            .into_response();
    }
    let mut seen = Seen {
        actor: "anonymous".into(),
        role: None,
        target: params
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("/"),
        remote: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string()),
    };
    let Some(rule) = rule_for(&method, &path) else {
        if RULES.iter().any(|r| r.path == path) {
            // A method the route does not have: the router's 405.
            return next.run(Request::from_parts(parts, body)).await;
        }
        let refusal = ApiError::Forbidden(format!(
            "route `{method} {path}` is not in the access table: refused to everyone"
        ));
        return finish(
            &st,
            "unlisted",
            Record::Refusals,
            &seen,
            refusal.into_response(),
        )
        .await;
    };
    let refuse = |e: ApiError| e.into_response();
    let req = match rule.need {
        Need::Public => Request::from_parts(parts, body),
        Need::Own => {
            // The route checks its own tokens; the trail names who it was if the request is recorded.
            if let Ok(token) = super::extract::bearer(&parts) {
                seen.actor = own_actor(&st, token);
            }
            Request::from_parts(parts, body)
        }
        need => {
            let token = match super::extract::bearer(&parts) {
                Ok(t) => t.to_owned(),
                Err(e) => return finish(&st, rule.action, rule.record, &seen, refuse(e)).await,
            };
            let op = match st.identify(&token) {
                Identified::Operator(o) => o,
                other => {
                    let (actor, message) = match other {
                        Identified::Revoked(name) => {
                            (name.clone(), format!("token `{name}` was revoked"))
                        }
                        Identified::Agent(name) => (
                            format!("agent {name}"),
                            "an agent's token is not an operator's".to_owned(),
                        ),
                        _ => (
                            "unknown token".to_owned(),
                            "invalid token: no operator (admin, deployer or viewer) has it"
                                .to_owned(),
                        ),
                    };
                    seen.actor = actor;
                    let e = ApiError::Unauthorized(message);
                    return finish(&st, rule.action, rule.record, &seen, refuse(e)).await;
                }
            };
            seen.actor.clone_from(&op.name);
            seen.role = Some(op.role.name().to_owned());
            let now = now_ms();
            if st.tokens.note_use(&op.name, now)
                && let Err(e) = st
                    .store
                    .write(|tx| crate::store::tokens::touch(tx, &op.name, now))
            {
                tracing::warn!(token = %op.name, error = %e, "recording a token's use failed");
            }
            // The application, only where the decision depends on it.
            let mut body = body;
            let app = if need == Need::Deploy && op.role != rollcage_proto::access::Role::Admin {
                match app_of(&st, rule.app, &params, body).await {
                    Ok((app, b)) => {
                        body = b;
                        app
                    }
                    Err(e) => return finish(&st, rule.action, rule.record, &seen, refuse(e)).await,
                }
            } else {
                None
            };
            if rule.app == AppFrom::Body
                && let Some(a) = &app
            {
                seen.target.clone_from(a);
            }
            if let Err(message) = access::decide(&op, need, app.as_deref(), rule.what) {
                let e = ApiError::Forbidden(message);
                return finish(&st, rule.action, rule.record, &seen, refuse(e)).await;
            }
            parts.extensions.insert(Caller(op));
            Request::from_parts(parts, body)
        }
    };
    let resp = next.run(req).await;
    finish(&st, rule.action, rule.record, &seen, resp).await
}

/// Who holds `token` on a route that checks its own tokens (agent routes, `/metrics`), for the trail.
fn own_actor(st: &State, token: &str) -> String {
    if st.tokens.is_enroll(token) {
        return "enrollment token".to_owned();
    }
    if st.metrics.is_scrape_token(token) {
        return "metrics token".to_owned();
    }
    match st.identify(token) {
        Identified::Operator(o) => o.name,
        Identified::Revoked(name) => name,
        Identified::Agent(name) => format!("agent {name}"),
        Identified::Unknown => "unknown token".to_owned(),
    }
}

/// The application a request is about, and its body back (read when the application is in it).
async fn app_of(
    st: &State,
    from: AppFrom,
    params: &[(String, String)],
    body: Body,
) -> Result<(Option<String>, Body), ApiError> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match from {
        AppFrom::None => Ok((None, body)),
        AppFrom::Path => Ok((param("app"), body)),
        AppFrom::Deployment => {
            let app = match param("id") {
                Some(id) => st
                    .store
                    .read(|c| deployments::get(c, &id))?
                    .map(|d| d.application),
                None => None,
            };
            Ok((app, body))
        }
        AppFrom::Body => {
            let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
                ApiError::TooLarge(format!("request body too large or unreadable: {e}"))
            })?;
            let app = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("application")?.as_str().map(str::to_owned));
            Ok((app, Body::from(bytes)))
        }
    }
}

/// Record the request if it is to be recorded, and answer `resp`.
async fn finish(st: &State, action: &str, record: Record, seen: &Seen, resp: Response) -> Response {
    let status = resp.status();
    let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
    if !refused && record == Record::Refusals {
        return resp;
    }
    let target = resp
        .extensions()
        .get::<AuditTarget>()
        .map_or_else(|| seen.target.clone(), |t| t.0.clone());
    let (resp, outcome) = outcome_of(resp).await;
    let entry = AuditEntry {
        seq: 0,
        at_ms: now_ms(),
        actor: seen.actor.clone(),
        role: seen.role.clone(),
        action: action.to_owned(),
        target,
        status: status.as_u16(),
        outcome,
        remote_addr: seen.remote.clone(),
    };
    if let Err(e) = st.store.write(|tx| audit::record(tx, &entry)) {
        tracing::error!(action, actor = %entry.actor, error = %e, "recording an audit entry failed");
    }
    resp
}

/// `ok` for a success; for an error, the API's message (the body is read, it is small, and given back).
async fn outcome_of(resp: Response) -> (Response, String) {
    if resp.status().is_success() || resp.status().is_redirection() {
        return (resp, "ok".to_owned());
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 10).await else {
        return (
            Response::from_parts(parts, Body::empty()),
            "error (body unreadable)".to_owned(),
        );
    };
    let message = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| "error".to_owned());
    (Response::from_parts(parts, Body::from(bytes)), message)
}
