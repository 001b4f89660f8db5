//! Structured log lines: one logfmt line per call (`level=info msg="..." key=value`), on stdout for `info`/`warn`
//! and stderr for `error`, so they land in `scripts.log` and in the report tail.

use std::fmt::{self, Display, Write as _};
use std::io::Write as _;

/// One `key=value` pair of a log line.
pub type Field<'a> = (&'a str, &'a dyn Display);

/// Log at level `info` (stdout).
pub fn info(msg: &str, fields: &[Field<'_>]) {
    emit(false, &line("info", msg, fields));
}

/// Log at level `warn` (stdout).
pub fn warn(msg: &str, fields: &[Field<'_>]) {
    emit(false, &line("warn", msg, fields));
}

/// Log at level `error` (stderr).
pub fn error(msg: &str, fields: &[Field<'_>]) {
    emit(true, &line("error", msg, fields));
}

fn emit(stderr: bool, line: &str) {
    // A log line that cannot be written has nowhere else to go; the hook must not fail because of it.
    let _ = if stderr {
        std::io::stderr().lock().write_all(line.as_bytes())
    } else {
        std::io::stdout().lock().write_all(line.as_bytes())
    };
}

/// Format one logfmt line, newline-terminated.
pub fn line(level: &str, msg: &str, fields: &[Field<'_>]) -> String {
    let mut out = format!("level={level} msg=");
    push_value(&mut out, msg);
    for (key, value) in fields {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        push_value(&mut out, &value.to_string());
    }
    out.push('\n');
    out
}

/// Quote a value when it is empty or holds spaces, quotes, `=` or control characters.
fn push_value(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c.is_control());
    if plain {
        out.push_str(value);
    } else {
        let _ = write!(out, "{:?}", Quoted(value));
    }
}

struct Quoted<'a>(&'a str);

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
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
