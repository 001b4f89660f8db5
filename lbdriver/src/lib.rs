//! `rollcage-lbdriver`: how a deployment takes instances out of a load balancer and puts them back.
//!
//! The coordinator talks to every load balancer through one dyn-compatible trait, [`LbDriver`]:
//! - **register**: put an instance into a server group and wait until the LB sees it healthy;
//! - **deregister**: stop new traffic to it, wait until its in-flight requests are done (or the drain timeout
//!   passes, then cut what is left) and take it out;
//! - **switch**: point a backend service at another server group (blue/green); it ends any split;
//! - **set_weight**: send a percentage of a backend service's new requests to a second ("new") server group
//!   (canary steps), and **traffic_split** to read it back;
//! - **read_window**: per group and server, the requests, 5xx and latency of the interval since a mark
//!   (semantics in [`rollcage_proto::traffic`]);
//! - **counters** and **active_group**: what the LB sees.
//!
//! Drivers: [`builtin::BuiltinDriver`] (the embedded `rollcage-lb`, over its admin API) and
//! [`haproxy::HaproxyDriver`] (HAProxy's runtime API socket). [`LbConfig`] (a `rollcage_proto::lb` type) names
//! one of them plus the backend service and server groups; [`Connect::connect`] builds the driver.
//!
//! Every operation is idempotent: registering a registered instance or deregistering an absent one succeeds.

pub mod builtin;
pub mod config;
pub mod error;
pub mod haproxy;

pub use config::{Connect, DriverConfig, LbConfig};
pub use error::LbDriverError;

pub use rollcage_proto::traffic::{
    GroupWindow, Latency, ServerWindow, TrafficSplit, TrafficWindow, Weight, WindowFigures,
    WindowMark,
};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Request counters of one server group, as the load balancer reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCounters {
    /// The group.
    pub group: String,
    /// Requests the group received (cumulative since the LB started or its counters were cleared).
    pub requests: u64,
    /// Responses with status 500–599 (including the LB's own 502/503/504).
    pub errors_5xx: u64,
    /// Requests in flight now (HAProxy: current sessions plus queued ones).
    pub in_flight: u64,
    /// The same counters per server now in the group.
    pub per_server: Vec<ServerCounters>,
}

/// Counters of one server of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// The instance, `host:port`.
    pub instance: String,
    /// The LB's own name for it (HAProxy server name; the address for the built-in LB).
    pub name: String,
    /// Requests sent to it.
    pub requests: u64,
    /// 5xx responses from it.
    pub errors_5xx: u64,
    /// Requests in flight on it.
    pub in_flight: u64,
    /// The LB's state word for it (HAProxy `UP`, `DRAIN`, `MAINT`…; built-in `active`/`draining`).
    pub state: String,
}

/// How a deregistration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// True when requests were still in flight at the drain timeout and were cut.
    pub forced: bool,
    /// True when the instance was not in the group (or already out of traffic): nothing was done.
    pub already_out: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// A load balancer as a deployment drives it. Dyn-compatible: hold it as `Arc<dyn LbDriver>`.
#[async_trait::async_trait]
pub trait LbDriver: Send + Sync + std::fmt::Debug {
    /// Names the LB in logs and errors: driver kind and address (`haproxy at /run/haproxy/admin.sock`).
    fn describe(&self) -> String;

    /// Puts `instance` (`host:port`) into `group` and returns once the LB sends it traffic after its own
    /// health checks passed; fails with [`LbDriverError::NotHealthy`] after `timeout`. Idempotent.
    async fn register(
        &self,
        group: &str,
        instance: &str,
        timeout: Duration,
    ) -> Result<(), LbDriverError>;

    /// Stops new traffic to `instance`, waits until its in-flight requests reach zero or `drain_timeout`
    /// passes (then cuts them), and takes it out of `group`. Succeeds when it is not in the group.
    async fn deregister(
        &self,
        group: &str,
        instance: &str,
        drain_timeout: Duration,
    ) -> Result<DrainOutcome, LbDriverError>;

    /// Points backend `service` at server `group` (blue/green) and ends any split (all new requests go to
    /// `group`). Idempotent.
    async fn switch(&self, service: &str, group: &str) -> Result<(), LbDriverError>;

    /// Sends `weight` % of backend `service`'s new requests to server group `new_group`, the rest to the group
    /// the service points at. Applies to new requests at once; requests in flight finish on the server they
    /// started on. Weight 0 sends nothing to `new_group`; [`LbDriver::switch`] ends the split. Idempotent.
    async fn set_weight(
        &self,
        service: &str,
        new_group: &str,
        weight: Weight,
    ) -> Result<(), LbDriverError>;

    /// How backend `service`'s traffic is split now.
    async fn traffic_split(&self, service: &str) -> Result<TrafficSplit, LbDriverError>;

    /// The figures of `groups` (and each of their servers) over the interval since `since`, the mark of an
    /// earlier reading: every group's figures cover the same interval, and the answer's mark starts the next
    /// one. Without a mark the interval's start is the LB's choice (built-in: the last window anyone cut;
    /// HAProxy: its start) — take a first reading to get a mark. Latency is per window on the built-in LB and
    /// HAProxy's averages over its last 1024 requests on HAProxy ([`Latency`] says which).
    async fn read_window(
        &self,
        groups: &[&str],
        since: Option<&WindowMark>,
    ) -> Result<TrafficWindow, LbDriverError>;

    /// The server group backend `service` points at now.
    async fn active_group(&self, service: &str) -> Result<String, LbDriverError>;

    /// The counters of `group` and its servers.
    async fn counters(&self, group: &str) -> Result<GroupCounters, LbDriverError>;
}
