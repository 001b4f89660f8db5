//! Form-defined deployments: a package with no `appspec.yml`, described by a small form instead.
//!
//! The seed lets users fill in a "Stop Script", a "Start Script" and a "Check Script" (ApplicationStop,
//! ApplicationStart and ValidateService of an AppSpec) and say where the package goes. A [`Form`] is that: it is
//! turned into the same [`AppSpec`](crate::appspec::AppSpec) an `appspec.yml` gives (one `files` entry copying the
//! whole revision to `destination`, one shell hook per script), so Install, cleanup, rollback and the traffic
//! steps behave exactly as for an AppSpec. The scripts are written into the deployment dir
//! (`deploy-X/form/`, next to the form itself saved as `form.json`) and run with the revision as their working
//! directory; a later deployment's ApplicationStop reads them back from there.
//!
//! # File format
//!
//! TOML (`.toml`), YAML (`.yml`, `.yaml`) or JSON (`.json`, read as JSON: YAML is not quite a superset, it refuses
//! control characters JSON strings may hold and folds U+2028); other names are tried as TOML, then YAML.
//!
//! ```toml
//! destination = "/opt/myapp"            # required, absolute: where the package contents go
//! file_exists_behavior = "OVERWRITE"    # optional: DISALLOW (default) | OVERWRITE | RETAIN
//! stop = "systemctl stop myapp || true" # ApplicationStop, from the previously installed revision
//! before_install = "mkdir -p /var/log/myapp"   # optional, BeforeInstall
//! after_install = "chown -R app /opt/myapp"    # optional, AfterInstall
//! start = "systemctl start myapp"       # ApplicationStart
//!
//! [check]                               # ValidateService; every script may also be a table
//! script = "curl -fsS http://127.0.0.1:8080/health"
//! timeout = 60                          # seconds, 1..=604800 (default 3600)
//! runas = "app"                         # user to run as (default: the agent's user)
//! ```
//!
//! Every script is optional, but one given must not be empty. A script without a `#!` line runs with `/bin/sh`.
//! Validation reports every problem at once, each with its field path (`check.timeout`), like the AppSpec's.
//!
//! The type, its canonical JSON and its validation rules are the contract [`rollcage_proto::form`] owns (the
//! coordinator validates and stores the same type); this module adds what needs the runtime: reading TOML and YAML
//! files into a [`Form`], and `plan` (the [`AppSpec`](crate::appspec::AppSpec) a form stands for and the script
//! files written into the deployment dir).

mod plan;

pub use plan::{FORM_FILE, ToAppSpec, write_form_dir};
pub use rollcage_proto::form::{Form, FormProblem, FormScript, FormScriptEvent};

/// Validate a parsed document (TOML, YAML or JSON as a JSON value); every problem is returned at once.
pub fn from_value(doc: &serde_json::Value) -> Result<Form, Vec<FormProblem>> {
    Form::from_value(doc)
}

use std::path::{Path, PathBuf};

/// A form could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The file could not be read.
    #[error("cannot read form {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is neither TOML nor YAML.
    #[error("{origin}: not a {format} document: {reason}")]
    Syntax {
        /// Where the text came from.
        origin: String,
        /// The format tried (`TOML`, `YAML`, `TOML or YAML`).
        format: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The document was read but is not a valid form.
    #[error("{origin}: {} problem(s): {}", problems.len(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// Every problem found.
        problems: Vec<FormProblem>,
    },
}

/// Which syntax a form file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormSyntax {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
    /// JSON (a form's canonical JSON, as stored with a deployment, saved to a file).
    Json,
    /// Unknown: TOML is tried first, then YAML.
    Guess,
}

impl FormSyntax {
    /// The syntax a file name implies.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::Toml,
            Some("yml" | "yaml") => Self::Yaml,
            Some("json") => Self::Json,
            _ => Self::Guess,
        }
    }
}

/// Parse and validate form text; `origin` names it in errors (a file path, `--form`).
pub fn parse(text: &str, syntax: FormSyntax, origin: &str) -> Result<Form, FormError> {
    let value = match syntax {
        FormSyntax::Toml => parse_toml(text).map_err(|reason| FormError::Syntax {
            origin: origin.to_owned(),
            format: "TOML",
            reason,
        })?,
        FormSyntax::Yaml => parse_yaml(text).map_err(|reason| FormError::Syntax {
            origin: origin.to_owned(),
            format: "YAML",
            reason,
        })?,
        FormSyntax::Json => serde_json::from_str(text).map_err(|e| FormError::Syntax {
            origin: origin.to_owned(),
            format: "JSON",
            reason: e.to_string(),
        })?,
        FormSyntax::Guess => match parse_toml(text) {
            Ok(v) => v,
            Err(toml_reason) => parse_yaml(text).map_err(|yaml_reason| FormError::Syntax {
                origin: origin.to_owned(),
                format: "TOML or YAML",
                reason: format!("as TOML: {toml_reason}; as YAML: {yaml_reason}"),
            })?,
        },
    };
    from_value(&value).map_err(|problems| FormError::Invalid {
        origin: origin.to_owned(),
        problems,
    })
}

/// Read, parse and validate a form file (syntax by extension, else by content).
pub fn load(path: &Path) -> Result<Form, FormError> {
    let text = std::fs::read_to_string(path).map_err(|source| FormError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(
        &text,
        FormSyntax::from_path(path),
        &path.display().to_string(),
    )
}

/// Parse and validate a form in its canonical JSON (as stored with a deployment and sent to agents).
pub fn from_json(text: &str, origin: &str) -> Result<Form, FormError> {
    parse(text, FormSyntax::Json, origin)
}

fn parse_toml(text: &str) -> Result<serde_json::Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(table).map_err(|e| e.to_string())
}

fn parse_yaml(text: &str) -> Result<serde_json::Value, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}
