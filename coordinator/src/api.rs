//! The HTTP layer: one [`router`] for the server and the tests, serving the JSON API under `/v1` (operators and
//! agents), `GET /metrics`, `GET /healthz` and the web dashboard. It owns the error shape ([`ApiError`], for every failure including
//! malformed bodies, unknown routes and wrong methods), the JSON extractor, the access guard ([`guard`]: one table
//! of what every route needs, applied before any handler, and the audit trail) and the auth extractors ([`Admin`],
//! [`Agent`], [`Enroller`]); the handlers work on the shared [`crate::state::State`] and never wake anybody by hand
//! (the store does that after each commit, see [`crate::notify`]).
//!
//! | module | routes |
//! |---|---|
//! | [`admin`] | applications, groups, revisions, deployments (create, stop, continue, rollback), instances |
//! | [`tokens`] | named operator tokens, who am I, the audit trail |
//! | [`lists`] | the paged lists: applications, groups, deployments (summaries), instances |
//! | [`enroll`] | per-use enrollment tokens (create, list, revoke), instance approval |
//! | [`agent`] | enroll, poll, report, command state, bundle download |
//! | [`events`] | the live progress stream (SSE) |
//! | [`logs`] | step logs, paged and long-polled |
//! | [`metrics`] | `GET /metrics` |
//! | [`health`] | `GET /healthz` (for load balancers: 200 when the database answers) |
//! | [`dashboard`] | `GET /` and `GET /dashboard/{file}` |

pub mod admin;
pub mod agent;
pub mod dashboard;
pub mod enroll;
pub mod error;
pub mod events;
pub mod extract;
pub mod guard;
pub mod headers;
pub mod health;
pub mod lists;
pub mod logs;
pub mod metrics;
pub mod query;
pub mod tokens;

pub use error::{ApiError, Json, LenientJson, Path};
pub use extract::{Admin, Agent, Enroller};

use crate::state::State;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};

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

/// Routes outside `/v1`: the metrics, the health check and the web dashboard's page and assets (listed in
/// [`dashboard::PAGE_PATHS`]: not API routes, so not in the OpenAPI document).
fn root_routes() -> RouteTable {
    RouteTable::new()
        .route("/metrics", get(metrics::scrape))
        .route("/healthz", get(health::healthz))
        .route("/", get(dashboard::index))
        .route("/dashboard/{file}", get(dashboard::asset))
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
        .route("/whoami", get(tokens::whoami))
        .route(
            "/tokens",
            post(tokens::create_token).get(tokens::list_tokens),
        )
        .route("/tokens/{name}", delete(tokens::revoke_token))
        .route("/audit", get(tokens::audit_trail))
        .route(
            "/applications",
            post(admin::create_application).get(lists::applications),
        )
        .route("/applications/{app}", delete(admin::delete_application))
        .route(
            "/applications/{app}/groups",
            post(admin::create_group).get(lists::groups),
        )
        .route(
            "/applications/{app}/groups/{group}",
            get(admin::get_group)
                .patch(admin::update_group)
                .delete(admin::delete_group),
        )
        .route(
            "/applications/{app}/groups/{group}/deliveries",
            get(lists::group_deliveries),
        )
        .route(
            "/applications/{app}/revisions",
            // Archives stream to disk, so the default 2 MB in-memory body limit does not apply.
            post(admin::upload_revision)
                .layer(DefaultBodyLimit::disable())
                .get(lists::revisions),
        )
        .route(
            "/applications/{app}/revisions/url",
            post(admin::register_url_revision),
        )
        .route(
            "/applications/{app}/revisions/{id}",
            get(admin::get_revision).delete(admin::delete_revision),
        )
        .route(
            "/deployments",
            post(admin::create_deployment).get(lists::deployments),
        )
        .route("/deployments/{id}", get(admin::get_deployment))
        .route("/deployments/{id}/events", get(events::deployment_events))
        .route("/deployments/{id}/stop", post(admin::stop_deployment))
        .route("/deployments/{id}/logs", get(logs::deployment_logs))
        .route(
            "/deployments/{id}/deliveries",
            get(lists::deployment_deliveries),
        )
        .route(
            "/deployments/{id}/continue",
            post(admin::continue_deployment),
        )
        .route(
            "/deployments/{id}/rollback",
            post(admin::rollback_deployment),
        )
        .route("/instances", get(lists::instances))
        .route("/instances/{name}", delete(admin::remove_instance))
        .route("/instances/{name}/approve", post(enroll::approve_instance))
        .route(
            "/enroll-tokens",
            post(enroll::create_token).get(enroll::list_tokens),
        )
        .route("/enroll-tokens/{id}/revoke", post(enroll::revoke_token))
        .route("/agent/enroll", post(agent::enroll))
        .route("/agent/hello", post(agent::hello))
        .route("/agent/poll", post(agent::poll))
        .route(
            "/agent/reports",
            // A bounded report (`StepReport::bounded`) always fits; twice that leaves room for an agent that bounds
            // less (an older one, or hook output of control bytes that JSON escapes to six bytes each), whose
            // report the handler then cuts to the bounds and records instead of refusing.
            post(agent::report).layer(DefaultBodyLimit::max(agent::REPORT_BODY_LIMIT)),
        )
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
        // Every matched route passes the access guard (its rule in `guard::RULES`) before its handler runs.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this route".into())
        })
        // Outermost, so they see every response, the fallbacks' included.
        .layer(axum::middleware::from_fn(error::log_internal_errors))
        .layer(axum::middleware::map_response(headers::every_response))
        .with_state(state)
}

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bundles;
#[cfg(test)]
mod tests_door;
#[cfg(test)]
mod tests_enroll;
#[cfg(test)]
mod tests_fleet;
#[cfg(test)]
mod tests_lists;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_roles;
#[cfg(test)]
mod tests_shared;
#[cfg(test)]
mod tests_signed;
#[cfg(test)]
mod tests_webhooks;
