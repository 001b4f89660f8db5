//! Everything a deployment does on one host, without a coordinator.
//!
//! - [`appspec`]: parse and validate `appspec.yml` (CodeDeploy's EC2/on-premises semantics, stricter where it
//!   protects users), reporting every problem at once with field paths and positions.
//! - [`form`]: a deployment described by a form (destination + stop/start/check scripts) instead of an AppSpec.
//! - [`layout`]: where things live under the agent's root (`${root}/app-${app}/group-${group}/deploy-${deploy}/`).
//! - [`package`]: get a revision (directory, archive, `file://`, `http(s)://`), verify its sha256 while streaming,
//!   unpack it safely into the deployment dir; retention of old deployment dirs.
//! - [`install`]: copy the AppSpec `files` with CodeDeploy's cleanup-list semantics and apply `permissions`.
//! - [`hooks`]: run lifecycle hooks (shell scripts) and map every ending onto [`rollcage_proto::HookOutcome`].
//! - [`hardening`]: the agent process's protections against its hooks (no core dumps, non-dumpable).
//! - [`lifecycle`]: the steps of an in-place deployment on this host, as the agent and `rollcage local` run them.

pub mod appspec;
pub mod form;
pub mod hardening;
pub mod hooks;
pub mod install;
pub mod layout;
pub mod lifecycle;
pub mod package;
