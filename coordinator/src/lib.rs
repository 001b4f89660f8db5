//! The rollcage coordinator: one process, one SQLite database, no cloud account.
//!
//! Layers, each depending only on the ones below it:
//!
//! - [`server`]: start-up (data dir, tokens, resume), the lost-agent sweeper, plain or TLS listener.
//! - [`api`]: the HTTP layer: the router (JSON API under `/v1`, `GET /metrics`, the web dashboard at `GET /`), one
//!   error shape, token-auth extractors, and the middleware that logs internal errors.
//! - [`engine`]: the pure rolling strategy, the executor that applies it in a transaction, the traffic runner (the
//!   coordinator's own load-balancer steps) and the LB counters; a group's LB settings are proto's typed `GroupLb`.
//! - [`state`]: the shared state (store, tokens, settings, metrics, waiters, agents' last contact).
//! - [`webhooks`]: groups' notifications: the delivery task that posts the outbox's events, signed, in order per
//!   endpoint, with retries (the store queues them in the transitions' transactions).
//! - [`notify`]: who waits for what (agent long polls, deployment followers, the traffic runner, the webhook
//!   delivery task), woken after each commit with what the store says it touched.
//! - [`metrics`]: the Prometheus registry and its instruments.
//! - [`store`]: the SQLite state, the single source of truth (a restarted coordinator carries on); its writes
//!   record what they touched and tell the commit hook.
//! - [`bundles`]: where uploaded bundles live (files in `DATA/bundles`, or chunks in PostgreSQL) and how their
//!   bytes stream in and out.
//! - [`auth`]: operator (bootstrap and named), enrollment and per-agent tokens.
//! - [`access`]: who may do what (roles → permissions), the pure decision the API's route guard applies.
//!
//! This crate depends on `proto` only: it never links the runtime or wasmtime.

pub mod access;
pub mod api;
pub mod auth;
pub mod bundles;
pub mod engine;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod state;
pub mod store;
#[cfg(test)]
pub(crate) mod testkit;
pub mod webhooks;

pub use api::router;
pub use server::{Ready, ServerConfig, TlsSetup, serve, spawn};
pub use state::Settings;
