//! JSON bodies of the admin API, shared by the server side (`admin`) and the typed client (`client`).
//!
//! Routes (all need `Authorization: Bearer <token>`; server addresses in paths are percent-encoded):
//!
//! | Method and path | Body | Answer |
//! |---|---|---|
//! | `GET /v1/groups` | | `[GroupView]` |
//! | `PUT /v1/groups/{group}` | `CreateGroup` (optional) | `GroupView` (idempotent) |
//! | `GET /v1/groups/{group}` | | `GroupView` |
//! | `PUT /v1/groups/{group}/servers/{addr}` | | `ServerView` (register; idempotent, cancels a drain) |
//! | `GET /v1/groups/{group}/servers/{addr}` | | `ServerView`, 404 `server_not_found` once removed |
//! | `DELETE /v1/groups/{group}/servers/{addr}[?drain_timeout_ms=N][&force=true]` | | `DeregisterView` |
//! | `GET /v1/services` | | `[ServiceView]` |
//! | `PUT /v1/services/{service}` | `PutService` | `ServiceView` (create, or switch its group; ends a split) |
//! | `GET /v1/services/{service}` | | `ServiceView` |
//! | `PUT /v1/services/{service}/split` | `PutSplit` | `ServiceView` (weight on a second group, live) |
//! | `GET /v1/counters` | | `CountersReport` |
//! | `POST /v1/windows[?since=M][&lb=L]` | | `WindowReport` (cuts window `N`; figures of `M+1..=N`) |
//! | `GET /v1/windows/{id}[?since=M][&lb=L]` | | `WindowReport` (re-reads windows `M+1..=id`) |
//!
//! Every error is `{"error":{"code":"...","message":"..."}}` with a matching HTTP status.
//!
//! **Split.** `PUT /v1/services/{service}/split {"group":"green","weight":10}` sends 10 % of the service's new
//! requests to `green` and the rest to the group the service points at, from the next request on; requests in
//! flight finish where they started. Weight 0 sends nothing to `green` (the split stays visible); switching the
//! service (`PUT /v1/services/{service}`) ends the split.
//!
//! **Windows** (semantics in `window`): `POST /v1/windows` closes the current traffic window of every group
//! and server at once and answers its figures: window `N` covers cut `N-1` to cut `N`. `since=M` widens the
//! answer to windows `M+1..=N` — a reader that keeps the id of its last reading gets exactly its own interval
//! however many other readers cut meanwhile. `lb=L` names the LB process the mark `M` came from: from another
//! process (the LB restarted) the answer covers what this process kept and says `reset`. `GET
//! /v1/windows/{id}` reads a closed window again: every reader of window `N` gets the same figures.

use serde::{Deserialize, Serialize};

/// How a group's servers are health-checked. One home with deployment groups' LB settings, which may give one for
/// the built-in driver: [`rollcage_proto::lb::HealthCheckSpec`].
pub use rollcage_proto::lb::HealthCheckSpec;
/// Weights and window figures: one home with the drivers and the coordinator.
pub use rollcage_proto::traffic::{GroupWindow, Latency, ServerWindow, Weight, WindowFigures};

/// Body of `PUT /v1/groups/{group}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Health check of the group's servers; the load balancer's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
}

/// Request counters (of a group or a server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersView {
    /// Requests received (group) or sent to the server (server; a retried request counts on both servers).
    pub requests: u64,
    /// Responses with status 500–599, including the proxy's own 502/503/504.
    pub responses_5xx: u64,
    /// Requests whose response body has not finished yet.
    pub in_flight: u64,
    /// Connections to a server that could not be opened.
    pub connect_failures: u64,
    /// Requests sent a second time, to another server, after a connect failure.
    pub retries: u64,
}

/// Where a server is in its life in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerPhase {
    /// Registered: gets traffic whenever healthy.
    Active,
    /// Deregistered: no new requests; removed once in-flight reaches 0 or the drain timeout passes.
    Draining,
    /// Gone from the group (only in `DeregisterView`; a removed server is otherwise `server_not_found`).
    Removed,
}

/// State of one server in one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// Group name.
    pub group: String,
    /// Server address `host:port`.
    pub address: String,
    /// Active or draining.
    pub phase: ServerPhase,
    /// Result of the health checks so far (false until the first `healthy_threshold` passes).
    pub healthy: bool,
    /// Whether new requests may go to it now (active and healthy).
    pub eligible: bool,
    /// Requests in flight on it.
    pub in_flight: u64,
    /// Why the last failed check failed, if the last check failed.
    pub last_check_error: Option<String>,
    /// Milliseconds left before a draining server is removed by force.
    pub drain_remaining_ms: Option<u64>,
    /// Its counters.
    pub counters: CountersView,
}

/// A server group with its servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// Group name.
    pub name: String,
    /// How its servers are checked.
    pub health_check: HealthCheckSpec,
    /// Its servers (active and draining), by address.
    pub servers: Vec<ServerView>,
    /// Group counters (they survive the removal of servers).
    pub counters: CountersView,
}

/// Answer of a deregistration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeregisterView {
    /// Group name.
    pub group: String,
    /// Server address.
    pub address: String,
    /// `draining` (requests still in flight) or `removed` (also when it was not in the group: idempotent).
    pub phase: ServerPhase,
    /// Requests still in flight on it.
    pub in_flight: u64,
}

/// Body of `PUT /v1/services/{service}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutService {
    /// The server group the service sends its traffic to.
    pub group: String,
    /// Listen address, needed to create a service; when given for an existing one it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// Body of `PUT /v1/services/{service}/split`, and a service's split as `ServiceView` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSplit {
    /// The second ("new") server group; not the group the service points at.
    pub group: String,
    /// Percent (0–100) of the service's new requests sent to `group`.
    pub weight: Weight,
}

/// A backend service: one listener sending its traffic to one server group, or split between two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Service name.
    pub name: String,
    /// The address actually bound (port resolved when 0 was asked).
    pub listen: String,
    /// The server group it points at (it gets the requests the split does not send elsewhere).
    pub group: String,
    /// The second group and its weight, while a split is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<PutSplit>,
}

/// Answer of `POST /v1/windows` and `GET /v1/windows/{id}`: figures of windows `since+1..=id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Names this LB process (window ids restart with it): pass it back as `lb` with `since`.
    pub lb: String,
    /// The last window included: the mark to pass as `since` next time.
    pub id: u64,
    /// The window before the first one included.
    pub since: u64,
    /// Start of the interval (Unix milliseconds).
    pub start_unix_ms: u64,
    /// End of the interval (Unix milliseconds).
    pub end_unix_ms: u64,
    /// True when the figures do not reach back to the `since` asked: the mark came from another LB process, or
    /// is older than the windows kept (`window::RETAINED_WINDOWS`).
    pub reset: bool,
    /// Every group that existed in the interval, by name, with its servers.
    pub groups: Vec<GroupWindow>,
}

/// Counters of one server inside `GroupCounters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// Server address.
    pub address: String,
    /// Its counters.
    pub counters: CountersView,
}

/// Counters of one group and its current servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCounters {
    /// Group name.
    pub group: String,
    /// Group counters.
    pub counters: CountersView,
    /// Per-server counters of the servers now in the group.
    pub servers: Vec<ServerCounters>,
}

/// Answer of `GET /v1/counters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersReport {
    /// One entry per group, by name.
    pub groups: Vec<GroupCounters>,
}

/// The one error shape of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Machine-readable code and human-readable message of an admin API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `group_not_found`, `server_not_found`, `unauthorized`.
    pub code: String,
    /// What failed, naming the group/server/service.
    pub message: String,
}
