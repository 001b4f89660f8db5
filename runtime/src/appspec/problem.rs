//! What the validator reports: one [`Problem`] per mistake, with a [`ProblemKind`] tests and tools can match on,
//! the field path, a message (offending value and what was expected) and the position when known.

use super::yaml::Pos;
use std::fmt;

/// Which rule a problem breaks. Stable for tools and tests; the message carries the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The text is not YAML.
    Syntax,
    /// The file is empty or holds only whitespace/comments (CodeDeploy: "file was empty").
    Empty,
    /// A value has the wrong YAML type (a list where a mapping was expected, …).
    WrongType,
    /// A required field is missing or empty.
    MissingField,
    /// A key that is not allowed here (hook entry, sandbox, SELinux context).
    UnknownKey,
    /// The same key appears twice in one mapping.
    DuplicateKey,
    /// `version` is missing or not `0.0`.
    UnsupportedVersion,
    /// An ECS or Lambda AppSpec (top-level `Resources`): rollcage deploys EC2/on-premises AppSpecs only.
    NotHostAppSpec,
    /// `os` is missing or not `linux`.
    UnsupportedOs,
    /// `file_exists_behavior` is not DISALLOW, OVERWRITE or RETAIN.
    InvalidFileExistsBehavior,
    /// A host path that must be absolute is not.
    NotAbsolute,
    /// A revision path written absolute (a hook `location` with a leading `/`): a warning, it is taken relative
    /// to the revision as CodeDeploy does.
    NotRelative,
    /// A path has a `..` component.
    PathTraversal,
    /// A permission `pattern` is invalid (e.g. a glob on an object that is a copied file).
    InvalidPattern,
    /// A permission `except` is invalid (e.g. set on an object that is a copied file).
    InvalidExcept,
    /// A permission `type` is not `file` or `directory`.
    InvalidObjectType,
    /// A mode has more than four digits.
    ModeLength,
    /// A mode has a character other than 0–7.
    ModeInvalidChar,
    /// An ACL entry does not have 2–4 colon-separated parts.
    AclParts,
    /// An ACL entry's default marker or tag is invalid (`x:bob:7`, `d:d:bob:7`).
    AclInvalidTag,
    /// A mask or other ACL entry carries a name.
    AclNamedMaskOrOther,
    /// A base user/group ACL entry without a name: `mode` sets those.
    AclBaseEntry,
    /// An ACL permission has a character other than `rwx-` (or a single octal digit).
    AclInvalidPermission,
    /// A default ACL entry on an object that is a copied file.
    AclDefaultOnFile,
    /// An SELinux range part is empty (`s3-:c0`, `:c0`, `s0:`).
    SelinuxRangePart,
    /// An SELinux sensitivity is not `s` + digits.
    SelinuxSensitivity,
    /// The high sensitivity is below the low one.
    SelinuxRangeOrder,
    /// A category is not `c0`–`c1023`.
    SelinuxCategory,
    /// A category range runs backwards (`c2.c1`).
    SelinuxCategoryRange,
    /// A category is listed twice.
    SelinuxDuplicateCategory,
    /// An event name that CodeDeploy does not know.
    UnknownEvent,
    /// An event the agent performs itself (DownloadBundle, Install, BlockTraffic, AllowTraffic, SwitchTraffic).
    ReservedEvent,
    /// A hook timeout that is not a positive whole number of seconds.
    InvalidTimeout,
    /// A hook location that does not exist in the revision.
    LocationNotFound,
    /// A hook location that resolves outside the revision (through a symlink).
    LocationEscapes,
    /// A hook location that is not a regular file.
    LocationNotFile,
    /// `sandbox:` on a hook that is not a WebAssembly module.
    SandboxOnShellHook,
    /// `sandbox.memory_mb` out of range.
    InvalidMemory,
    /// An environment variable name that is not an identifier.
    InvalidEnvName,
    /// An `http` grant that is not an http/https URL.
    InvalidUrl,
    /// A value outside a fixed set (booleans, `access`).
    InvalidValue,
    /// `sandbox.dirs[].max_mb` out of range, or given on a read-only grant.
    InvalidQuota,
}

/// One problem found in an AppSpec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Which rule is broken.
    pub kind: ProblemKind,
    /// Field path, e.g. `hooks.ValidateService[1].timeout` (empty for the whole document).
    pub path: String,
    /// What is wrong, with the offending value and what was expected.
    pub message: String,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl Problem {
    /// `FILE:LINE:COL: TAGpath: message` (or `FILE: …` without a position), the form every tool prints; `tag` is
    /// `"warning: "` for a warning, empty for an error.
    pub fn located(&self, file: &str, tag: &str) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{file}:{line}:{column}: {tag}{self}"),
            (Some(line), None) => format!("{file}:{line}: {tag}{self}"),
            _ => format!("{file}: {tag}{self}"),
        }
    }
}

/// Collects problems (which fail the AppSpec) and warnings (which do not) while the validators walk the document.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

fn problem(kind: ProblemKind, path: &str, pos: Option<Pos>, message: String) -> Problem {
    Problem {
        kind,
        path: path.to_owned(),
        message,
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
    }
}

impl Problems {
    /// Record a problem.
    pub fn push(
        &mut self,
        kind: ProblemKind,
        path: &str,
        pos: Option<Pos>,
        message: impl Into<String>,
    ) {
        self.errors.push(problem(kind, path, pos, message.into()));
    }

    /// Record a warning: something CodeDeploy accepts and ignores, worth telling the author about.
    pub fn warn(
        &mut self,
        kind: ProblemKind,
        path: &str,
        pos: Option<Pos>,
        message: impl Into<String>,
    ) {
        self.warnings.push(problem(kind, path, pos, message.into()));
    }

    /// Number of problems so far (to tell whether a section added any).
    pub fn len(&self) -> usize {
        self.errors.len()
    }
}
