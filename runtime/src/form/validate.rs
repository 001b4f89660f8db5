//! From a parsed TOML/YAML/JSON document to a [`Form`], collecting every problem with its field path.

use super::model::{Form, FormScript, FormScriptEvent, behavior_from_name};
use crate::appspec::MAX_HOOK_TIMEOUT_SECS;
use serde_json::{Map, Value};
use std::path::{Component, Path, PathBuf};

/// One problem of a form: the field path (`check.timeout`, empty for the whole document) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormProblem {
    /// Dotted field path.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for FormProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

const TOP_KEYS: [&str; 7] = [
    "destination",
    "file_exists_behavior",
    "stop",
    "before_install",
    "after_install",
    "start",
    "check",
];
const SCRIPT_KEYS: [&str; 3] = ["script", "timeout", "runas"];

#[derive(Default)]
struct Problems(Vec<FormProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FormProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn unknown_keys(&mut self, map: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let message = match suggest(key, known) {
                Some(s) => format!("unknown key `{key}` (did you mean `{s}`?)"),
                None => format!("unknown key `{key}`; expected one of {}", known.join(", ")),
            };
            self.add(path, message);
        }
    }
}

/// The closest known key, when it is close enough to be a typo.
fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&word, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Validate a parsed document; every problem is returned at once.
pub fn from_value(doc: &Value) -> Result<Form, Vec<FormProblem>> {
    let mut p = Problems::default();
    let Some(map) = doc.as_object() else {
        p.add(
            "",
            format!(
                "a form must be a mapping of keys ({}), found {}",
                TOP_KEYS.join(", "),
                type_name(doc)
            ),
        );
        return Err(p.0);
    };
    p.unknown_keys(map, "", &TOP_KEYS);
    let destination = destination(map.get("destination"), &mut p);
    let file_exists_behavior = match map.get("file_exists_behavior") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match behavior_from_name(s) {
            Some(b) => Some(b),
            None => {
                p.add(
                    "file_exists_behavior",
                    format!("`{s}` is not one of DISALLOW, OVERWRITE, RETAIN"),
                );
                None
            }
        },
        Some(other) => {
            p.add(
                "file_exists_behavior",
                format!(
                    "expected a string (DISALLOW, OVERWRITE or RETAIN), found {}",
                    type_name(other)
                ),
            );
            None
        }
    };
    let mut scripts: [Option<FormScript>; 5] = Default::default();
    for (slot, field) in scripts.iter_mut().zip(FormScriptEvent::ALL) {
        *slot = map
            .get(field.key)
            .and_then(|v| script(field.key, v, &mut p));
    }
    if !p.0.is_empty() {
        return Err(p.0);
    }
    let [stop, before_install, after_install, start, check] = scripts;
    Ok(Form {
        destination: destination.unwrap_or_default(),
        file_exists_behavior,
        stop,
        before_install,
        after_install,
        start,
        check,
    })
}

fn destination(value: Option<&Value>, p: &mut Problems) -> Option<PathBuf> {
    let s = match value {
        None | Some(Value::Null) => {
            p.add(
                "destination",
                "required: the absolute directory the package contents go to",
            );
            return None;
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            p.add(
                "destination",
                format!("expected an absolute path, found {}", type_name(other)),
            );
            return None;
        }
    };
    let path = Path::new(s);
    if !path.is_absolute() {
        p.add(
            "destination",
            format!("`{s}` is relative; expected an absolute path such as /opt/app"),
        );
        None
    } else if s.contains('\0') {
        p.add("destination", "contains a NUL byte");
        None
    } else if path.components().any(|c| c == Component::ParentDir) {
        p.add(
            "destination",
            format!("`{s}` contains `..`; expected a plain absolute path"),
        );
        None
    } else if path.parent().is_none() {
        p.add(
            "destination",
            "`/` cannot be a destination: Install would own the whole filesystem",
        );
        None
    } else {
        Some(path.to_owned())
    }
}

fn script(key: &str, value: &Value, p: &mut Problems) -> Option<FormScript> {
    let (body, timeout, runas, body_path) = match value {
        Value::Null => return None,
        Value::String(s) => (Some(s.as_str()), None, None, key.to_owned()),
        Value::Object(m) => {
            p.unknown_keys(m, key, &SCRIPT_KEYS);
            let body_path = format!("{key}.script");
            let body = match m.get("script") {
                Some(Value::String(s)) => Some(s.as_str()),
                None | Some(Value::Null) => {
                    p.add(&body_path, "required: the script body");
                    None
                }
                Some(other) => {
                    p.add(
                        &body_path,
                        format!(
                            "expected the script body as a string, found {}",
                            type_name(other)
                        ),
                    );
                    None
                }
            };
            (body, m.get("timeout"), m.get("runas"), body_path)
        }
        other => {
            p.add(
                key,
                format!(
                    "expected a script (a string, or a mapping with script, timeout, runas), found {}",
                    type_name(other)
                ),
            );
            return None;
        }
    };
    let body = body?;
    let mut ok = true;
    if body.trim().is_empty() {
        p.add(
            body_path,
            "the script is empty; give its commands or leave the key out",
        );
        ok = false;
    } else if body.contains('\0') {
        p.add(body_path, "the script contains a NUL byte");
        ok = false;
    }
    let timeout = match timeout {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(t) if (1..=MAX_HOOK_TIMEOUT_SECS).contains(&t) => Some(t),
            _ => {
                p.add(
                    format!("{key}.timeout"),
                    format!(
                        "`{v}` is not a whole number of seconds in 1..={MAX_HOOK_TIMEOUT_SECS}"
                    ),
                );
                ok = false;
                None
            }
        },
    };
    let runas = match runas {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if valid_user(u) => Some(u.clone()),
        Some(v) => {
            p.add(
                format!("{key}.runas"),
                format!("`{v}` is not a user name (letters, digits, `_`, `-`, `.`)"),
            );
            ok = false;
            None
        }
    };
    ok.then(|| FormScript {
        script: body.to_owned(),
        timeout,
        runas,
    })
}

fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && !u.starts_with('-')
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
