//! The one format of a hook's structured log lines: logfmt, `level=info msg="..." key=value`, newline-terminated.
//! The Rust SDK's `log` module writes it from inside a hook; the agent writes it for component hooks that call
//! `rollcage:hook/log.write` (Python, JavaScript).

use std::fmt::{self, Write as _};

/// Format one line.
pub fn line(level: &str, msg: &str, fields: &[(&str, &str)]) -> String {
    let mut out = format!("level={level} msg=");
    push_value(&mut out, msg);
    for (key, value) in fields {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        push_value(&mut out, value);
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
    fn values_are_quoted_only_when_needed() {
        assert_eq!(
            line(
                "info",
                "health ok",
                &[
                    ("status", "200"),
                    ("url", "http://x/"),
                    ("note", "a=b"),
                    ("empty", "")
                ]
            ),
            "level=info msg=\"health ok\" status=200 url=http://x/ note=\"a=b\" empty=\"\"\n"
        );
    }
}
