//! `appspec.yml`: parse and validate with AWS CodeDeploy's EC2/on-premises semantics, stricter where it protects
//! users. Every problem is reported at once, each with its field path, the offending value, what was expected and,
//! where the parser can tell, its line and column.
//!
//! The YAML is read with saphyr's event parser into a small tree of our own (the `yaml` module) rather
//! than with `serde_yaml`: validation needs the line and column of every node, each scalar's text exactly as
//! written (an unquoted `mode: 0644` is octal 0644 here, not the YAML 1.1 integer 420 CodeDeploy ends up with)
//! and duplicate keys reported instead of merged. Nothing is deserialised with serde; the validators build the
//! [`model`] types directly so that every field can be checked and reported on its own.
//!
//! Modules: `yaml` (spanned tree), `fields` (typed field access), `document` (top level), `files`,
//! `hooks`, `sandbox`, `permissions`, `acl`, `mode`, `selinux`, `paths` (path confinement), `suggest`
//! (did-you-mean), `revision` (what the validator may ask about the revision), `problem` (the reported
//! problems), `glob` (which paths a permission applies to) and `render` (ACL entries, SELinux ranges and
//! modes in the text forms the system tools take).

mod acl;
mod document;
mod fields;
mod files;
mod glob;
pub use glob::simple_glob as glob_match;
mod hooks;
mod mode;
pub mod model;
mod paths;
mod permissions;
mod problem;
mod render;
mod revision;
mod sandbox;
mod selinux;
mod suggest;
mod yaml;

pub use model::*;
pub use permissions::file_object_problems;
pub use problem::{Problem, ProblemKind};
pub use revision::{DirRevision, RevisionEntry, RevisionView, WASM_MAGIC};
pub use sandbox::MAX_MEMORY_MB;

use std::path::{Path, PathBuf};

/// File names looked for at the revision root, in order.
pub const APPSPEC_FILE_NAMES: [&str; 2] = ["appspec.yml", "appspec.yaml"];

/// Loading an AppSpec failed.
#[derive(Debug, thiserror::Error)]
pub enum AppSpecError {
    /// Neither `appspec.yml` nor `appspec.yaml` is at the revision root.
    #[error("no appspec.yml or appspec.yaml at the root of the revision {0}")]
    NotFound(PathBuf),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid AppSpec.
    #[error("{} problem(s) in the AppSpec: {}", problems.len(), problems.iter().map(|p| p.located(&file.display().to_string(), "")).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// Parse and validate AppSpec text. With `revision_root`, hook locations are also checked against the unpacked
/// revision (they must exist inside it, without a symlink out).
pub fn parse(text: &str, revision_root: Option<&Path>) -> Result<AppSpec, Vec<Problem>> {
    match revision_root {
        Some(root) => parse_in(text, Some(&DirRevision::new(root))),
        None => parse_in(text, None),
    }
}

/// Parse and validate AppSpec text against any view of the revision (an unpacked directory, an archive's entry
/// list); without one, checks that need the revision's content are left to Install and the hook runners, and a
/// hook is taken for WebAssembly when its location ends in `.wasm`.
pub fn parse_in(text: &str, revision: Option<&dyn RevisionView>) -> Result<AppSpec, Vec<Problem>> {
    let checked = check_in(text, revision);
    for w in &checked.warnings {
        tracing::warn!(line = w.line, column = w.column, "appspec: {w}");
    }
    checked.result
}

/// The outcome of checking an AppSpec: the validated spec or every problem, and the warnings either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The validated AppSpec, or every problem found.
    pub result: Result<AppSpec, Vec<Problem>>,
    /// Things CodeDeploy accepts and ignores (unknown keys) that are likely mistakes; they never fail a check.
    pub warnings: Vec<Problem>,
}

/// Like [`parse_in`], returning the warnings instead of logging them (for `rollcage appspec check`).
pub fn check_in(text: &str, revision: Option<&dyn RevisionView>) -> Checked {
    document::validate(text, revision)
}

/// Parse and validate a hook's `sandbox:` map given on its own (a grant file), with the same rules and field paths
/// (`sandbox.dirs[0].host`) as in an AppSpec.
pub fn parse_sandbox(text: &str) -> Result<rollcage_proto::SandboxSpec, Vec<Problem>> {
    document::validate_sandbox(text)
}

/// The AppSpec file at the root of an unpacked revision (`appspec.yml`, else `appspec.yaml`).
pub fn find_in_revision(revision_dir: &Path) -> Result<PathBuf, AppSpecError> {
    APPSPEC_FILE_NAMES
        .iter()
        .map(|name| revision_dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| AppSpecError::NotFound(revision_dir.to_owned()))
}

/// Find, read, parse and validate the AppSpec of an unpacked revision; warnings are logged.
pub fn load_from_revision(revision_dir: &Path) -> Result<AppSpec, AppSpecError> {
    let loaded = load_checked(revision_dir)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded.spec)
}

/// A valid AppSpec read from a revision, with its warnings as `FILE:LINE:COL: warning: …` lines.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated AppSpec.
    pub spec: AppSpec,
    /// Every warning, located in the file.
    pub warnings: Vec<String>,
}

/// Find, read, parse and validate the AppSpec of an unpacked revision, returning its warnings (for a step report).
pub fn load_checked(revision_dir: &Path) -> Result<Loaded, AppSpecError> {
    let file = find_in_revision(revision_dir)?;
    let text = std::fs::read_to_string(&file).map_err(|source| AppSpecError::Io {
        path: file.clone(),
        source,
    })?;
    let checked = check_in(&text, Some(&DirRevision::new(revision_dir)));
    let name = file.display().to_string();
    let warnings = checked
        .warnings
        .iter()
        .map(|w| w.located(&name, "warning: "))
        .collect();
    match checked.result {
        Ok(spec) => Ok(Loaded { spec, warnings }),
        Err(problems) => Err(AppSpecError::Invalid { file, problems }),
    }
}
