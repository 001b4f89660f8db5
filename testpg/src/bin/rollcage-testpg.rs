//! `rollcage-testpg start|stop`: the shared test PostgreSQL server from a shell. `scripts/test.sh` runs `stop` at
//! the end of a test run so nothing is left running; `start` prints the URL of its `postgres` database.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shared = rollcage_testpg::Shared::from_env();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["start"] => shared.start().map(|url| println!("{url}")),
        ["stop"] => shared.stop().map(|stopped| {
            let what = if stopped {
                "stopped"
            } else {
                "no shared server was running in"
            };
            eprintln!("rollcage-testpg: {what} {}", shared.dir().display());
        }),
        _ => {
            eprintln!(
                "usage: rollcage-testpg start|stop   (the shared test PostgreSQL server in ${})",
                rollcage_testpg::DIR_ENV
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcage-testpg: {e}");
            ExitCode::FAILURE
        }
    }
}
