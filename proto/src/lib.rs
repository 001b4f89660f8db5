//! Types shared by every rollcage component.
//!
//! This crate is deliberately serde-only (no I/O, no async, no platform code) so that the coordinator, the agent,
//! the runtime and the hook SDK can all depend on it without pulling each other's dependencies in.
//!
//! - [`lifecycle`]: the lifecycle events of a deployment, with CodeDeploy's names and which ones take hooks.
//! - [`plan`]: the seed's step plan of each deployment style (per instance and deployment-wide).
//! - [`outcome`]: the one outcome type every hook kind (shell, wasm) maps onto, with CodeDeploy-compatible codes.
//! - [`hookvar`]: the rule for names of variables given to hooks (identifiers, never `LD_PRELOAD`-style loader
//!   variables).
//! - [`hostcall`]: the versioned import namespace and ABI numbers of the host functions wasm hooks call.
//! - [`sandbox`]: the capability grant of a WebAssembly hook (the AppSpec's `sandbox:` map).
//! - [`form`]: the deployment form (destination, scripts) and its validation with field paths.
//! - [`healthy`]: CodeDeploy's minimum healthy hosts and the batch size that follows from it (pure arithmetic).
//! - [`canary`]: the `[canary]` / `[analysis]` tables of a group's LB settings (steps, bake, thresholds) and their
//!   validation.
//! - [`bake`]: what a progressive delivery persists and shows: each interval's verdict and the bake's state.
//! - [`lb`]: a deployment group's load-balancer settings and their validation with field paths.
//! - [`traffic`]: weighted traffic between two server groups and the windowed figures (requests, 5xx, latency)
//!   a load balancer reports per group and server.
//! - [`problem`]: the field-path problem type both validations report.
//! - [`tags`]: instance tags and the tag filters that select a group's instances.
//! - [`wire`]: the JSON of the coordinator API and of the agent protocol.
//! - [`page`]: paging of the API's list routes (`limit`, `cursor`, the page-size bounds).
//! - [`access`]: operator roles, the token routes' and the audit trail's JSON, who acted on a deployment.
//! - [`enroll`]: per-use enrollment tokens (bounds, requests, the rule that says whether one still enrolls).
//! - [`clip`]: the wire's bounds on a step report and the one way text is cut to fit them.
//! - [`fingerprint`]: the `SHA256:<base64>` fingerprint of a coordinator's CA certificate, which clients pin.

pub mod access;
pub mod bake;
pub mod canary;
pub mod clip;
pub mod enroll;
pub mod fingerprint;
pub mod form;
pub mod healthy;
pub mod hookvar;
pub mod hostcall;
pub mod lb;
pub mod lifecycle;
pub mod logfmt;
pub mod outcome;
pub mod page;
pub mod plan;
pub mod problem;
pub mod sandbox;
pub mod tags;
pub mod traffic;
pub mod webhook;
pub mod wire;

pub use form::{FileExistsBehavior, Form};
pub use lifecycle::{LifecycleEvent, Performer};
pub use outcome::{CAPABILITY_KINDS, CAPABILITY_RESULTS, CapabilityCount, HookOutcome, HookStatus};
pub use plan::{StylePlan, plan, plan_of};
pub use problem::{FieldProblem, FieldProblems};
pub use sandbox::{DirAccess, DirGrant, SandboxSpec};
