//! The rollcage coordinator: one process, one SQLite database, no cloud account.
//!
//! - [`api`]: the JSON HTTP API under `/v1` (operators and agents), one error shape, token auth.
//! - [`engine`]: step plans, the pure rolling strategy, and the executor that applies it.
//! - [`store`]: the SQLite state, the single source of truth (a restarted coordinator carries on).
//! - [`auth`]: admin, enrollment and per-agent tokens.
//! - [`notify`]: per-deployment change notification behind the live progress stream.
//! - [`metrics`]: Prometheus metrics at `GET /metrics` (admin or scrape token).
//! - [`server`]: start-up (data dir, tokens, resume), the lost-agent sweeper, plain or TLS listener.
//!
//! This crate depends on `proto` only: it never links the runtime or wasmtime.

pub mod api;
pub mod auth;
pub mod engine;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod store;

pub use api::router;
pub use server::{ServerConfig, serve};
