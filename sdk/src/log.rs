//! Structured log lines: one logfmt line per call (`level=info msg="..." key=value`), on stdout for `info`/`warn`
//! and stderr for `error`, so they land in `scripts.log` and in the report tail.

use std::fmt::Display;
use std::io::Write as _;

/// One `key=value` pair of a log line.
pub type Field<'a> = (&'a str, &'a dyn Display);

/// Log at level `info` (stdout).
pub fn info(msg: &str, fields: &[Field<'_>]) {
    write("info", msg, fields);
}

/// Log at level `warn` (stdout).
pub fn warn(msg: &str, fields: &[Field<'_>]) {
    write("warn", msg, fields);
}

/// Log at level `error` (stderr).
pub fn error(msg: &str, fields: &[Field<'_>]) {
    write("error", msg, fields);
}

/// In a component the line goes through `rollcage:hook/log.write` (the agent formats it the same way); the
/// fields are stringified here.
#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
fn write(level: &str, msg: &str, fields: &[Field<'_>]) {
    use crate::wit::rollcage::hook::log::{Level, write};
    let level = match level {
        "error" => Level::Error,
        "warn" => Level::Warn,
        _ => Level::Info,
    };
    let pairs: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string()))
        .collect();
    write(level, msg, &pairs);
}

#[cfg(not(all(target_arch = "wasm32", target_env = "p2")))]
fn write(level: &str, msg: &str, fields: &[Field<'_>]) {
    emit(level == "error", &line(level, msg, fields));
}

#[cfg_attr(
    all(target_arch = "wasm32", target_env = "p2"),
    allow(dead_code, reason = "components log through rollcage:hook")
)]
fn emit(stderr: bool, line: &str) {
    // A log line that cannot be written has nowhere else to go; the hook must not fail because of it.
    let _ = if stderr {
        std::io::stderr().lock().write_all(line.as_bytes())
    } else {
        std::io::stdout().lock().write_all(line.as_bytes())
    };
}

/// Format one logfmt line, newline-terminated ([`rollcage_proto::logfmt`], the format the agent also writes for
/// component hooks' `rollcage:hook/log`).
pub fn line(level: &str, msg: &str, fields: &[Field<'_>]) -> String {
    let values: Vec<String> = fields.iter().map(|(_, v)| v.to_string()).collect();
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .zip(&values)
        .map(|((k, _), v)| (*k, v.as_str()))
        .collect();
    rollcage_proto::logfmt::line(level, msg, &pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let l = line(
            "info",
            "health ok",
            &[("status", &200), ("url", &"http://x/"), ("note", &"a=b")],
        );
        assert_eq!(
            l,
            "level=info msg=\"health ok\" status=200 url=http://x/ note=\"a=b\"\n"
        );
    }
}
