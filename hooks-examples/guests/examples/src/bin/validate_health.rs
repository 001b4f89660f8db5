//! ValidateService hook: poll a health URL until it answers 200 or the deadline passes.
//!
//! Arguments (from `sandbox.args`): `URL [DEADLINE_SECS] [INTERVAL_MS]`; defaults 60 s and 500 ms. The URL must be
//! under the hook's `sandbox.http` grant. Keep the deadline below the hook's `timeout` so the hook reports why it
//! failed instead of being killed.

use rollcage_sdk::{Context, HookError, HookResult, http, log};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit code when the service never became healthy (distinct from 1, a hook or setup error).
const EXIT_UNHEALTHY: u8 = 3;

fn validate(ctx: &Context) -> HookResult {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.first().ok_or_else(|| {
        HookError::new("usage: validate_health URL [DEADLINE_SECS] [INTERVAL_MS]")
    })?;
    let deadline_secs: u64 = parse_arg(&args, 1, 60)?;
    let interval = Duration::from_millis(parse_arg(&args, 2, 500)?);
    let deadline = Instant::now() + Duration::from_secs(deadline_secs);
    log::info(
        "waiting for health",
        &[
            ("event", &ctx.event),
            ("url", url),
            ("deadline_secs", &deadline_secs),
        ],
    );
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match http::get(url) {
            Ok(resp) if resp.status == 200 => {
                log::info(
                    "healthy",
                    &[
                        ("url", url),
                        ("attempts", &attempts),
                        ("body", &resp.text().trim()),
                    ],
                );
                return Ok(());
            }
            Ok(resp) => format!("status {}", resp.status),
            // A denied URL will never succeed: fail at once with the reason.
            Err(e @ http::HttpError::Denied { .. }) => return Err(e.into()),
            Err(e) => e.to_string(),
        };
        if Instant::now() + interval > deadline {
            return Err(HookError::with_code(
                EXIT_UNHEALTHY,
                format!(
                    "{url} not healthy after {deadline_secs} s ({attempts} attempts, last: {last})"
                ),
            ));
        }
        log::info("not healthy yet", &[("url", url), ("last", &last)]);
        std::thread::sleep(interval);
    }
}

fn parse_arg(args: &[String], i: usize, default: u64) -> Result<u64, HookError> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| HookError::new(format!("argument {i} `{s}`: expected a whole number"))),
    }
}

fn main() -> ExitCode {
    rollcage_sdk::run(validate)
}
