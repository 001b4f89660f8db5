//! The WASI context of one hook run, built deny-by-default from its [`SandboxSpec`].
//!
//! Always given: the revision, read-only, at `/revision` (also the working directory: `PWD=/revision`, and the
//! same directory preopened as `.` so relative paths resolve inside it — wasi-libc matches relative paths against
//! a `.` preopen; note that wasi-libc compares preopen names without their leading `/`, so a relative path whose
//! first component equals a granted guest directory's name — `data/x` with a grant mounted at `/data` — resolves
//! into that grant), the lifecycle variables, stdout/stderr into the capped sinks, clocks and randomness (wasmtime's
//! defaults: host clocks, OS-seeded RNG). Granted only when named: extra directories (`dirs`), host variables by
//! name (`env`), arguments (`args`); `http` is enforced by the host function. Never: stdin (closed), sockets
//! (preview 1 has no socket calls; for components, which link `wasi:sockets`, TCP, UDP and name lookup are
//! switched off and every address is refused), other files, the agent's environment.
//!
//! One builder for both kinds of hook ([`builder`]): a preview-1 module gets `build_p1()` of it, a component
//! `build()`.

use super::output::CappedSink;
use rollcage_proto::hostcall::REVISION_MOUNT;
use rollcage_proto::{DirAccess, LifecycleEvent, SandboxSpec};
use std::path::Path;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A grant could not be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SandboxError {
    /// The revision directory could not be preopened.
    #[error("cannot mount the revision `{path}` at {REVISION_MOUNT}: {reason}")]
    Revision {
        /// The revision directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// A `sandbox.dirs` entry could not be preopened.
    #[error(
        "sandbox.dirs[{index}]: cannot open host directory `{host}` (expected an existing absolute directory): {reason}"
    )]
    Dir {
        /// Index in `sandbox.dirs`.
        index: usize,
        /// The host path.
        host: String,
        /// Why.
        reason: String,
    },
}

/// The `sandbox.http_ca` file could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "sandbox.http_ca `{path}`: {reason} (expected a PEM file of CA certificates inside the revision, at most {max} bytes)",
    max = super::http::MAX_CA_BYTES
)]
pub struct HttpCaError {
    /// The path as the AppSpec gives it.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Everything the context is built from.
pub(crate) struct SandboxInput<'a> {
    pub(crate) spec: &'a SandboxSpec,
    pub(crate) revision_dir: &'a Path,
    /// argv\[0\]: the hook's location.
    pub(crate) program: &'a str,
    /// The lifecycle variables (`HookEnv::vars(event)`).
    pub(crate) lifecycle_vars: Vec<(String, String)>,
    pub(crate) event: LifecycleEvent,
}

/// The variables a hook sees: lifecycle variables, `PWD`, then the granted host variables that are set (a grant
/// never overrides a lifecycle variable). Pure apart from `host_var`.
pub(crate) fn environment(
    lifecycle_vars: Vec<(String, String)>,
    granted: &[String],
    host_var: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut vars = lifecycle_vars;
    vars.push(("PWD".to_owned(), REVISION_MOUNT.to_owned()));
    for name in granted {
        if vars.iter().any(|(k, _)| k == name) {
            continue;
        }
        if let Some(value) = host_var(name) {
            vars.push((name.clone(), value));
        }
    }
    vars
}

/// The context builder of one run, every grant applied (build it as preview 1 or 0.2), and the names of the
/// granted host variables it passes on (for the audit).
pub(crate) fn builder(
    input: SandboxInput<'_>,
    stdout: CappedSink,
    stderr: CappedSink,
) -> Result<(WasiCtxBuilder, Vec<String>), SandboxError> {
    let mut b = WasiCtxBuilder::new();
    b.stdout(stdout).stderr(stderr);
    // wasmtime's defaults already deny all of this; said here so that no later default can open a socket. The
    // address check is what `wasi:sockets` consults for every connect, bind, send and listen.
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    b.arg(input.program);
    b.args(&input.spec.args);
    // `environment` puts the lifecycle variables and PWD first; what follows came from the host by grant.
    let own = input.lifecycle_vars.len() + 1;
    let vars = environment(input.lifecycle_vars, &input.spec.env, |k| {
        std::env::var(k).ok()
    });
    b.envs(&vars);
    let granted = vars.iter().skip(own).map(|(k, _)| k.clone()).collect();
    b.allow_blocking_current_thread(false);
    let revision_err = |e: wasmtime::Error| SandboxError::Revision {
        path: input.revision_dir.display().to_string(),
        reason: format!("{e:#}"),
    };
    b.preopened_dir(input.revision_dir, REVISION_MOUNT, FsPerms::ReadOnly)
        .map_err(revision_err)?;
    for (index, dir) in input.spec.dirs.iter().enumerate() {
        let dir_err = |reason: String| SandboxError::Dir {
            index,
            host: dir.host.clone(),
            reason,
        };
        if !Path::new(&dir.host).is_absolute() {
            return Err(dir_err("not an absolute path".to_owned()));
        }
        let perms = match dir.access {
            DirAccess::ReadOnly => FsPerms::ReadOnly,
            DirAccess::ReadWrite => FsPerms::ReadWrite,
        };
        b.preopened_dir(&dir.host, dir.guest_path(), perms)
            .map_err(|e| dir_err(format!("{e:#}")))?;
    }
    // Last, so that absolute paths match their own preopens first; `.` serves relative paths.
    b.preopened_dir(input.revision_dir, ".", FsPerms::ReadOnly)
        .map_err(revision_err)?;
    tracing::debug!(event = %input.event, program = input.program, dirs = input.spec.dirs.len(), "wasm sandbox built");
    Ok((b, granted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_host_variables_pass_and_never_override_lifecycle_ones() {
        let host = |k: &str| match k {
            "APP_PORT" => Some("8080".to_owned()),
            "DEPLOYMENT_ID" => Some("agent-value".to_owned()),
            _ => None,
        };
        let vars = environment(
            vec![("DEPLOYMENT_ID".to_owned(), "d-1".to_owned())],
            &[
                "APP_PORT".to_owned(),
                "DEPLOYMENT_ID".to_owned(),
                "UNSET".to_owned(),
            ],
            host,
        );
        assert_eq!(
            vars,
            [
                ("DEPLOYMENT_ID", "d-1"),
                ("PWD", "/revision"),
                ("APP_PORT", "8080")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
