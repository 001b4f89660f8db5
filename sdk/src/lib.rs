//! Write rollcage lifecycle hooks as WebAssembly modules.
//!
//! A hook is a WASI preview-1 command (`cargo build --release --target wasm32-wasip1`) or a WASI 0.2 command
//! component (`--target wasm32-wasip2`) whose `main` calls [`run`]. The agent runs it inside a capability sandbox: the revision is mounted read-only at `/revision` (also
//! the working directory), the lifecycle values arrive as environment variables and, in a component, through `rollcage:hook/context`
//! ([`Context`]), stdout and stderr
//! go to the deployment's `scripts.log`, and everything else (extra directories, host variables, HTTP URLs) must
//! be granted by the hook's `sandbox:` entry in `appspec.yml`.
//!
//! What this crate gives a hook:
//! - [`Context`]: the lifecycle event, deployment id, application and deployment group (from
//!   `rollcage:hook/context` in a component, from the lifecycle environment variables in a module);
//! - [`log`]: structured (logfmt) log lines, which land in `scripts.log`;
//! - [`http::get`]: an HTTP(S) GET through the agent, allowed only under the URL prefixes the hook was granted, with
//!   a bounded body (the `http_get` import in a module, `wasi:http` in a component; the agent checks both alike);
//! - [`template::render`]: `${NAME}` substitution for config renderers;
//! - [`run`]: the `main` helper that maps a [`HookResult`] onto the process exit code the agent reports.
//!
//! Off `wasm32` (for unit tests of hook logic on the host) everything works except [`http::get`], which returns
//! [`http::HttpError::Unsupported`]. The same facts are offered to Python and JavaScript hooks through the
//! `rollcage:hook` WIT world (`sdk/wit/`: `context`, `log`, `wasi:http`). In a component, [`run`] and [`exit`] report the exit code through `wasi:cli/exit.exit-with-code` (`std::process::exit`
//! there reports only success or failure, any non-zero code arriving as 1).
//!
//! # Example
//!
//! A `ValidateService` hook that checks a health endpoint once:
//!
//! ```no_run
//! use rollcage_sdk::{Context, HookError, HookResult, http, log};
//! use std::process::ExitCode;
//!
//! fn validate(ctx: &Context) -> HookResult {
//!     log::info("checking health", &[("event", &ctx.event), ("deployment", &ctx.deployment_id)]);
//!     let resp = http::get("http://127.0.0.1:8080/health")?;
//!     if resp.status != 200 {
//!         return Err(HookError::with_code(3, format!("health answered {}", resp.status)));
//!     }
//!     log::info("healthy", &[("body", &resp.text())]);
//!     Ok(())
//! }
//!
//! fn main() -> ExitCode {
//!     rollcage_sdk::run(validate)
//! }
//! ```
//!
//! with, in `appspec.yml`:
//!
//! ```yaml
//! hooks:
//!   ValidateService:
//!     - location: hooks/validate.wasm
//!       timeout: 30
//!       sandbox:
//!         http: ["http://127.0.0.1:8080/"]
//! ```

mod context;
mod error;
pub mod http;
pub mod log;
mod sys;
pub mod template;
#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
mod wit;

pub use context::Context;
pub use error::{HookError, HookResult, MAX_EXIT_CODE};

use std::process::ExitCode;

/// Run a hook: read the [`Context`], call `hook`, and turn its result into the exit code.
///
/// `Ok(())` exits 0. An error is logged (`level=error`) and exits with its code ([`HookError::code`]: 1 unless
/// the hook chose one). A missing lifecycle context exits 2: the module was not started by a rollcage agent.
pub fn run<F>(hook: F) -> ExitCode
where
    F: FnOnce(&Context) -> HookResult,
{
    let ctx = match Context::current() {
        Ok(ctx) => ctx,
        Err(e) => {
            log::error(&e.to_string(), &[]);
            return ExitCode::from(e.code());
        }
    };
    match hook(&ctx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error(e.message(), &[("exit_code", &e.code())]);
            exit_code(e.code())
        }
    }
}

/// End the hook now with exit `code` (0 = success), after flushing stdout and stderr.
///
/// Prefer returning from [`run`]; this is for code that must stop deep inside. Unlike `std::process::exit`, it
/// keeps the code in a WASI 0.2 component too (`wasi:cli/exit.exit-with-code`; std reports only ok/error there).
pub fn exit(code: u8) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
    wasip2::cli::exit::exit_with_code(code);
    std::process::exit(i32::from(code))
}

/// The exit code as `main`'s return value; in a component a non-zero code exits at once (see [`exit`]).
fn exit_code(code: u8) -> ExitCode {
    if cfg!(all(target_arch = "wasm32", target_env = "p2")) && code != 0 {
        exit(code)
    }
    ExitCode::from(code)
}
