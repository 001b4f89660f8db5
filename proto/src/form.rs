//! A deployment form: the typed contract of a package with no `appspec.yml`, described by a small form instead
//! (where the package goes, what Install does with existing files, and inline Stop/Start/Check scripts).
//!
//! A [`Form`] can only be built through validation ([`Form::from_value`], or deserialising one, which runs the
//! same rules), so every `Form` in a process is valid: the CLI parses a TOML/YAML file into a document and builds
//! one, the coordinator gets one out of the request body (a bad form answers 400 with the field path), stores it
//! and sends it in each step command, and the agent uses it as received. Its serialisation is the canonical JSON,
//! which parses back to the same form. On the wire a form travels as that JSON *text* (a string field, see
//! [`json_text`]), the shape the API has always had.
//!
//! What the runtime does with a form (the AppSpec it stands for, the scripts written into the deployment dir,
//! reading files) is in `rollcage_runtime::form`; this module is serde-only.

use crate::LifecycleEvent;
use crate::problem::{FieldProblem, FieldProblems};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Default hook timeout in seconds, as CodeDeploy.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 3600;

/// Longest hook timeout accepted, in seconds (one week). CodeDeploy's agent has no upper bound (its service fails
/// an event after 3600 s anyway); a week is far beyond any real hook, and bounding it keeps deadline arithmetic
/// (`Instant + Duration`) in the runners from ever overflowing on a typo like `timeout: 99999999999999`.
pub const MAX_HOOK_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// A problem of a form (its field path is relative to the form: `check.timeout`).
pub type FormProblem = FieldProblem;

/// What Install does when a destination file exists that the previous deployment did not create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileExistsBehavior {
    /// Fail the deployment (CodeDeploy's default).
    #[default]
    Disallow,
    /// Replace the file.
    Overwrite,
    /// Keep the existing file, do not copy.
    Retain,
}

impl FileExistsBehavior {
    /// Every behaviour, in CodeDeploy's order.
    pub const ALL: [FileExistsBehavior; 3] = [Self::Disallow, Self::Overwrite, Self::Retain];

    /// The name as CodeDeploy spells it (`OVERWRITE`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Disallow => "DISALLOW",
            Self::Overwrite => "OVERWRITE",
            Self::Retain => "RETAIN",
        }
    }

    /// The behaviour of a CodeDeploy name (exact spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for FileExistsBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated deployment form. Build one with [`Form::from_value`] (or by deserialising, which validates);
/// serialising it gives the canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct Form {
    /// Absolute directory the package contents are copied to.
    pub destination: PathBuf,
    /// What Install does with existing files; `None` leaves it to the deployment's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_exists_behavior: Option<FileExistsBehavior>,
    /// ApplicationStop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<FormScript>,
    /// BeforeInstall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_install: Option<FormScript>,
    /// AfterInstall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_install: Option<FormScript>,
    /// ApplicationStart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<FormScript>,
    /// ValidateService.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<FormScript>,
}

/// One inline script of a form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormScript {
    /// The script body (non-empty).
    pub script: String,
    /// Wall-clock limit in seconds; `None` is the AppSpec default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// User to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runas: Option<String>,
}

/// The form fields that hold a script, with the event each one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormScriptEvent {
    /// The form key (`stop`).
    pub key: &'static str,
    /// The lifecycle event (ApplicationStop).
    pub event: LifecycleEvent,
}

impl FormScriptEvent {
    /// Every script field, in the seed's run order.
    pub const ALL: [FormScriptEvent; 5] = [
        FormScriptEvent {
            key: "stop",
            event: LifecycleEvent::ApplicationStop,
        },
        FormScriptEvent {
            key: "before_install",
            event: LifecycleEvent::BeforeInstall,
        },
        FormScriptEvent {
            key: "after_install",
            event: LifecycleEvent::AfterInstall,
        },
        FormScriptEvent {
            key: "start",
            event: LifecycleEvent::ApplicationStart,
        },
        FormScriptEvent {
            key: "check",
            event: LifecycleEvent::ValidateService,
        },
    ];
}

impl Form {
    /// The script of a form key (`stop`, `start`, …).
    pub fn script(&self, key: &str) -> Option<&FormScript> {
        match key {
            "stop" => self.stop.as_ref(),
            "before_install" => self.before_install.as_ref(),
            "after_install" => self.after_install.as_ref(),
            "start" => self.start.as_ref(),
            "check" => self.check.as_ref(),
            _ => None,
        }
    }

    /// The canonical JSON text.
    pub fn to_json(&self) -> String {
        // Serialising plain strings, integers and paths that came from valid UTF-8 cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Validate a parsed document (from TOML, YAML or JSON); every problem is returned at once.
    pub fn from_value(doc: &Value) -> Result<Form, Vec<FormProblem>> {
        validate(doc).map_err(Vec::from)
    }
}

impl TryFrom<Value> for Form {
    type Error = FieldProblems;

    fn try_from(doc: Value) -> Result<Self, Self::Error> {
        validate(&doc)
    }
}

/// `Option<Form>` as the JSON text of the form (a string field on the wire, the API's shape since forms were
/// added); reading one validates it. Use with `#[serde(default, skip_serializing_if = "Option::is_none", with =
/// "crate::form::json_text")]`.
pub mod json_text {
    use super::Form;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Write the canonical JSON text.
    pub fn serialize<S: Serializer>(form: &Option<Form>, s: S) -> Result<S::Ok, S::Error> {
        match form {
            Some(f) => s.serialize_str(&f.to_json()),
            None => s.serialize_none(),
        }
    }

    /// Read the JSON text and validate it.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Form>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| D::Error::custom(format!("form: not JSON: {e}")))?;
        super::validate(&doc)
            .map(Some)
            .map_err(|p| D::Error::custom(format!("invalid form: {p}")))
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

fn unknown_keys(p: &mut FieldProblems, map: &Map<String, Value>, prefix: &str, known: &[&str]) {
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
        p.add(path, message);
    }
}

/// The closest known key, when it is close enough to be a typo. 0.8 Jaro-Winkler catches dropped, doubled and
/// swapped letters without pairing unrelated short words.
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

fn validate(doc: &Value) -> Result<Form, FieldProblems> {
    let mut p = FieldProblems::default();
    let Some(map) = doc.as_object() else {
        p.add(
            "",
            format!(
                "a form must be a mapping of keys ({}), found {}",
                TOP_KEYS.join(", "),
                type_name(doc)
            ),
        );
        return Err(p);
    };
    unknown_keys(&mut p, map, "", &TOP_KEYS);
    let destination = destination(map.get("destination"), &mut p);
    let file_exists_behavior = match map.get("file_exists_behavior") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match FileExistsBehavior::from_name(s) {
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
    let [stop, before_install, after_install, start, check] = scripts;
    p.into_result(Form {
        destination: destination.unwrap_or_default(),
        file_exists_behavior,
        stop,
        before_install,
        after_install,
        start,
        check,
    })
}

fn destination(value: Option<&Value>, p: &mut FieldProblems) -> Option<PathBuf> {
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

fn script(key: &str, value: &Value, p: &mut FieldProblems) -> Option<FormScript> {
    let (body, timeout, runas, body_path) = match value {
        Value::Null => return None,
        Value::String(s) => (Some(s.as_str()), None, None, key.to_owned()),
        Value::Object(m) => {
            unknown_keys(p, m, key, &SCRIPT_KEYS);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(doc: Value) -> Vec<String> {
        match Form::from_value(&doc) {
            Ok(f) => vec![format!("valid: {f:?}")],
            Err(p) => p.into_iter().map(|p| p.path).collect(),
        }
    }

    fn message(doc: Value, path: &str) -> String {
        Form::from_value(&doc)
            .err()
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.path == path)
            .map(|p| p.message)
            .unwrap_or_else(|| format!("no problem at `{path}`"))
    }

    #[test]
    fn a_valid_form_round_trips_through_its_canonical_json()
    -> Result<(), Box<dyn std::error::Error>> {
        let doc = json!({
            "destination": "/srv/app",
            "file_exists_behavior": "OVERWRITE",
            "stop": "./stop.sh",
            "start": { "script": "./start.sh", "timeout": 30, "runas": "app" },
        });
        let f = Form::from_value(&doc).map_err(|p| format!("{p:?}"))?;
        assert_eq!(f.file_exists_behavior, Some(FileExistsBehavior::Overwrite));
        assert_eq!(
            f.stop.as_ref().map(|s| s.script.as_str()),
            Some("./stop.sh")
        );
        assert_eq!(f.start.as_ref().and_then(|s| s.timeout), Some(30));
        let text = f.to_json();
        assert!(
            text.contains(r#""file_exists_behavior":"OVERWRITE""#),
            "{text}"
        );
        let back: Form = serde_json::from_str(&text)?;
        assert_eq!(back, f);
        Ok(())
    }

    #[test]
    fn each_rule_names_its_field() {
        let d = || json!("/srv/app");
        assert_eq!(paths(json!(["x"])), [""]);
        assert_eq!(paths(json!({})), ["destination"]);
        assert_eq!(paths(json!({"destination": "opt/app"})), ["destination"]);
        assert_eq!(paths(json!({"destination": 3})), ["destination"]);
        assert_eq!(
            paths(json!({"destination": "/srv/../etc"})),
            ["destination"]
        );
        assert_eq!(paths(json!({"destination": "/"})), ["destination"]);
        assert_eq!(paths(json!({"destination": "/a\u{0}b"})), ["destination"]);
        assert_eq!(paths(json!({"destination": d(), "strat": "x"})), ["strat"]);
        assert_eq!(
            paths(json!({"destination": d(), "file_exists_behavior": "REPLACE"})),
            ["file_exists_behavior"]
        );
        assert_eq!(
            paths(json!({"destination": d(), "file_exists_behavior": 1})),
            ["file_exists_behavior"]
        );
        assert_eq!(paths(json!({"destination": d(), "stop": " "})), ["stop"]);
        assert_eq!(paths(json!({"destination": d(), "stop": 7})), ["stop"]);
        assert_eq!(
            paths(json!({"destination": d(), "check": {"timeout": 5}})),
            ["check.script"]
        );
        assert_eq!(
            paths(json!({"destination": d(), "check": {"script": ["x"]}})),
            ["check.script"]
        );
        assert_eq!(
            paths(json!({"destination": d(), "check": {"script": "a\u{0}"}})),
            ["check.script"]
        );
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!(MAX_HOOK_TIMEOUT_SECS + 1),
        ] {
            assert_eq!(
                paths(json!({"destination": d(), "check": {"script": "x", "timeout": bad}})),
                ["check.timeout"]
            );
        }
        for bad in [json!("bad user"), json!("-x"), json!(""), json!(3)] {
            assert_eq!(
                paths(json!({"destination": d(), "start": {"script": "x", "runas": bad}})),
                ["start.runas"]
            );
        }
        assert_eq!(
            paths(json!({"destination": d(), "start": {"script": "x", "colour": 1}})),
            ["start.colour"]
        );
    }

    #[test]
    fn messages_say_what_was_expected() {
        assert!(message(json!({"strat": 1}), "strat").contains("did you mean `start`"));
        assert!(message(json!({"destination": "x"}), "destination").contains("absolute path"));
        assert!(
            message(
                json!({"destination": "/a", "file_exists_behavior": "X"}),
                "file_exists_behavior"
            )
            .contains("DISALLOW, OVERWRITE, RETAIN")
        );
        assert!(
            message(
                json!({"destination": "/a", "check": {"script": "x", "timeout": 0}}),
                "check.timeout"
            )
            .contains("1..=604800")
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let p = paths(
            json!({"destination": "rel", "stop": "", "check": {"script": "x", "timeout": 0}}),
        );
        assert_eq!(p, ["destination", "stop", "check.timeout"]);
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Carrier {
        #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text")]
        form: Option<Form>,
    }

    #[test]
    fn on_the_wire_a_form_is_its_json_text_and_is_validated_on_the_way_in()
    -> Result<(), Box<dyn std::error::Error>> {
        let form = Form::from_value(&json!({"destination": "/srv/app", "start": "run"}))
            .map_err(|p| format!("{p:?}"))?;
        let wire = serde_json::to_value(Carrier {
            form: Some(form.clone()),
        })?;
        assert_eq!(wire, json!({"form": form.to_json()}));
        let back: Carrier = serde_json::from_value(wire)?;
        assert_eq!(back.form, Some(form));
        assert!(serde_json::from_value::<Carrier>(json!({}))?.form.is_none());
        let bad = serde_json::from_value::<Carrier>(
            json!({"form": r#"{"destination":"/a","check":{"script":"x","timeout":0}}"#}),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(bad.contains("check.timeout"), "{bad}");
        let not_json = serde_json::from_value::<Carrier>(json!({"form": "destination = '/x'"}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(not_json.contains("not JSON"), "{not_json}");
        // Deserialising a `Form` directly runs the same rules.
        assert!(serde_json::from_value::<Form>(json!({"destination": "x"})).is_err());
        Ok(())
    }
}
