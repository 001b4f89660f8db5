//! The typed client of the rollcage coordinator's HTTP API, used by the agent, the CLI, the benches and the tests.
//!
//! One method per route, with the request and response types of [`rollcage_proto::wire`]; nobody outside this
//! crate (and the coordinator's router) writes a `/v1` path.
//!
//! - [`Client`] ([`transport`]): the connection pool (rustls with webpki roots plus an optional CA file, or
//!   exactly the CA of a pinned fingerprint: [`Trust`]), the bearer token, deadlines, streaming downloads checked
//!   against their sha256.
//! - [`failover`]: several coordinator URLs (comma-separated, [`parse_bases`]): the one a client stays on, and which
//!   failures send a call to the next one (a refused connection always; a 5xx or a broken exchange only for calls
//!   safe to repeat).
//! - [`pin`]: the verifier that trusts exactly the CA whose certificate has the pinned fingerprint, and the
//!   mismatch error naming expected and presented fingerprints.
//! - [`ClientError`] ([`error`]): the one mapping of a non-2xx answer (the API's `{"error":{"code","message"}}`)
//!   and whether retrying can help.
//! - `admin`: the operators' routes (applications, groups, revisions, deployments, logs, events, instances).
//! - `people`: named operator tokens, who am I, the audit trail.
//! - `agent`: the agents' routes (enroll, poll, report, command state, bundle download).
//! - `routes`: every path, each segment percent-encoded (private: callers name routes by method).

mod admin;
mod agent;
pub mod error;
pub mod failover;
mod people;
pub mod pin;
mod routes;
pub mod transport;

pub use error::ClientError;
pub use failover::parse_bases;
/// The HTTP method type of [`ClientError`]'s variants.
pub use hyper::Method;
/// The HTTP status type of [`ClientError::status`].
pub use hyper::StatusCode;
pub use rollcage_proto::fingerprint::CaFingerprint;
pub use transport::{Client, Trust};
