//! The HTTP API under `/v1`: one [`router`] for the server and the tests, one error shape ([`ApiError`]) for
//! every failure (including malformed bodies, unknown routes and wrong methods), and the auth extractors:
//! [`Admin`] (operators), [`Agent`] (an enrolled agent, by its own token) and [`Enroller`] (the enrollment token).

pub mod admin;
pub mod agent;
pub mod events;
pub mod logs;

use crate::auth::Tokens;
use crate::engine::executor::EngineError;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use rollcage_proto::wire::{ErrorBody, ErrorDetail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Tunables of the coordinator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a poll is held open.
    pub max_poll_wait: Duration,
    /// An agent silent for this long is lost, and its in-flight step fails.
    pub heartbeat_deadline: Duration,
    /// Step logs of deployments that ended longer ago than this are deleted; `None` keeps them for ever.
    pub log_retention: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_poll_wait: Duration::from_millis(rollcage_proto::wire::DEFAULT_POLL_WAIT_MS),
            // Agents call at least every few seconds while a step runs (cancel checks) and re-poll at once after
            // a poll ends, so 60 s of silence means the agent or its host is gone, not busy.
            heartbeat_deadline: Duration::from_secs(60),
            // A month of full hook output: long enough to debug last week's deployment, and the database does
            // not grow without bound (each step's log is capped at 1 MiB).
            log_retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Who is who.
    pub tokens: Tokens,
    /// `DATA/bundles`: uploaded archives by sha256.
    pub bundles_dir: PathBuf,
    /// Tunables.
    pub settings: Settings,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Per-deployment change notification for the progress stream; bump after every write to a deployment.
    pub changes: crate::notify::Changes,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    last_seen: Mutex<HashMap<String, i64>>,
}

impl AppState {
    /// Shared state over an open store.
    pub fn new(store: Store, tokens: Tokens, bundles_dir: PathBuf, settings: Settings) -> Self {
        Self {
            store,
            tokens,
            bundles_dir,
            settings,
            metrics: crate::metrics::Metrics::new(),
            changes: crate::notify::Changes::new(),
            wakers: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(HashMap::new()),
        }
    }

    /// The notifier a waiting poll of `instance` sleeps on.
    pub fn waker(&self, instance: &str) -> Arc<Notify> {
        let mut map = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(instance.to_owned()).or_default().clone()
    }

    /// Wake the polls of these instances (call after the transaction that dispatched to them committed).
    pub fn wake(&self, instances: &[String]) {
        let map = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for i in instances {
            if let Some(n) = map.get(i) {
                n.notify_waiters();
            }
        }
    }

    /// Record that `instance` called now.
    pub fn seen(&self, instance: &str, now: i64) {
        let mut map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(instance.to_owned(), now);
    }

    /// When `instance` last called, if since this process started.
    pub fn last_seen(&self, instance: &str) -> Option<i64> {
        let map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.get(instance).copied()
    }
}

/// Shared state handle.
pub type State = Arc<AppState>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Every failure of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or a token that is not valid here.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource or route.
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Malformed or invalid request.
    #[error("{0}")]
    Invalid(String),
    /// Wrong HTTP method for the route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A feature that is not implemented yet.
    #[error("{0}")]
    Unsupported(String),
    /// A fault on our side; the message is logged, the client sees a generic text.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            Self::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                "internal error; see the coordinator's log".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        (status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::NotFound { .. } => Self::NotFound(e.to_string()),
            EngineError::Conflict(m) => Self::Conflict(m),
            EngineError::Invalid(m) => Self::Invalid(m),
            EngineError::Forbidden(m) => Self::Forbidden(m),
        }
    }
}

/// A JSON body whose rejections use the API's error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(ApiError::Invalid(format!(
                "malformed request body: {}",
                rej.body_text()
            ))),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
        })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "malformed Authorization header: expected `Bearer <token>`".into(),
            )
        })
}

/// An operator (admin token).
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<State> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        if state.tokens.is_admin(bearer(parts)?) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("invalid admin token".into()))
        }
    }
}

/// An enrolled agent, by name.
#[derive(Debug, Clone)]
pub struct Agent(pub String);

impl FromRequestParts<State> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let name = state
            .tokens
            .agent(bearer(parts)?)
            .ok_or_else(|| ApiError::Unauthorized("invalid agent token: enroll again".into()))?;
        state.seen(&name, now_ms());
        Ok(Self(name))
    }
}

/// A caller holding the enrollment token.
#[derive(Debug, Clone, Copy)]
pub struct Enroller;

impl FromRequestParts<State> for Enroller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        if state.tokens.is_enroll(bearer(parts)?) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("invalid enrollment token".into()))
        }
    }
}

/// The OpenAPI 3.1 document of the API (kept by hand; a test checks it against [`route_paths`]).
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// A router that remembers the paths it was given, so the route list comes from the one place that builds the
/// router (the OpenAPI test compares it with the document).
pub struct RouteTable {
    router: Router<State>,
    paths: Vec<&'static str>,
}

impl RouteTable {
    fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    fn route(mut self, path: &'static str, method_router: MethodRouter<State>) -> Self {
        self.router = self.router.route(path, method_router);
        self.paths.push(path);
        self
    }
}

/// Routes outside `/v1`: the metrics and the web dashboard's page and assets (listed in
/// [`crate::dashboard::PAGE_PATHS`]: not API routes, so not in the OpenAPI document).
fn root_routes() -> RouteTable {
    RouteTable::new()
        .route("/metrics", get(crate::metrics::scrape))
        .route("/", get(crate::dashboard::index))
        .route("/dashboard/{file}", get(crate::dashboard::asset))
}

/// Every path the router serves (full paths, `{param}` syntax), in the order they are built.
pub fn route_paths() -> Vec<String> {
    v1_routes()
        .paths
        .iter()
        .map(|p| format!("{}{p}", rollcage_proto::wire::API_PREFIX))
        .chain(root_routes().paths.iter().map(|p| (*p).to_owned()))
        .collect()
}

fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        OPENAPI_YAML,
    )
        .into_response()
}

fn v1_routes() -> RouteTable {
    use axum::extract::DefaultBodyLimit;
    RouteTable::new()
        // The API description is public: it holds no data, only the shape of the API.
        .route("/openapi.yaml", get(|| async { openapi() }))
        .route(
            "/applications",
            post(admin::create_application).get(admin::list_applications),
        )
        .route(
            "/applications/{app}/groups",
            post(admin::create_group).get(admin::list_groups),
        )
        .route("/applications/{app}/groups/{group}", get(admin::get_group))
        .route(
            "/applications/{app}/revisions",
            // Archives stream to disk, so the default 2 MB in-memory body limit does not apply.
            post(admin::upload_revision).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/applications/{app}/revisions/url",
            post(admin::register_url_revision),
        )
        .route(
            "/applications/{app}/revisions/{id}",
            get(admin::get_revision),
        )
        .route(
            "/deployments",
            post(admin::create_deployment).get(admin::list_deployments),
        )
        .route("/deployments/{id}", get(admin::get_deployment))
        .route("/deployments/{id}/events", get(events::deployment_events))
        .route("/deployments/{id}/stop", post(admin::stop_deployment))
        .route("/deployments/{id}/logs", get(logs::deployment_logs))
        .route(
            "/deployments/{id}/continue",
            post(admin::continue_deployment),
        )
        .route(
            "/deployments/{id}/rollback",
            post(admin::rollback_deployment),
        )
        .route("/instances", get(admin::list_instances))
        .route("/agent/enroll", post(agent::enroll))
        .route("/agent/poll", post(agent::poll))
        .route("/agent/reports", post(agent::report))
        .route("/agent/commands/{id}", get(agent::command_state))
        .route(
            "/agent/applications/{app}/revisions/{id}/bundle",
            get(agent::download_bundle),
        )
}

/// Every route of the API.
pub fn router(state: State) -> Router {
    Router::new()
        .nest(rollcage_proto::wire::API_PREFIX, v1_routes().router)
        .merge(root_routes().router)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this route".into())
        })
        .with_state(state)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ops;
