//! {{name}}: a ValidateService hook for rollcage. It polls a health URL until it answers 200 or a deadline passes.
//!
//! Arguments (from the grant's `args`): `URL [DEADLINE_SECS]`. The URL must be under the grant's `http` prefixes.

use rollcage_sdk::{Context, HookError, HookResult, http, log};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit code when the service never became healthy (1 stays for usage and setup errors).
const EXIT_UNHEALTHY: u8 = 3;

fn validate(ctx: &Context) -> HookResult {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .ok_or_else(|| HookError::new("usage: {{name}} URL [DEADLINE_SECS]"))?;
    let deadline_secs: u64 = match args.get(1) {
        Some(s) => s
            .parse()
            .map_err(|_| HookError::new(format!("DEADLINE_SECS `{s}`: expected a whole number")))?,
        None => 30,
    };
    let deadline = Instant::now() + Duration::from_secs(deadline_secs);
    log::info("waiting for health", &[("event", &ctx.event), ("url", url)]);
    loop {
        let last = match http::get(url) {
            Ok(resp) if resp.status == 200 => {
                log::info("healthy", &[("url", url), ("body", &resp.text().trim())]);
                return Ok(());
            }
            Ok(resp) => format!("status {}", resp.status),
            // A URL outside the grant never succeeds: stop at once, with the reason.
            Err(e @ http::HttpError::Denied { .. }) => return Err(e.into()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(HookError::with_code(
                EXIT_UNHEALTHY,
                format!("{url} not healthy after {deadline_secs} s (last: {last})"),
            ));
        }
        log::info("not healthy yet", &[("url", url), ("last", &last)]);
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() -> ExitCode {
    rollcage_sdk::run(validate)
}
