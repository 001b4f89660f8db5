//! Path rules shared by `files`, `hooks`, `permissions` and `sandbox`: absolute where a host path is meant,
//! relative and confined where a revision path is meant, never a `..` component.

use super::problem::{ProblemKind, Problems};
use super::yaml::Pos;

/// True when some `/`-separated component is `..`.
pub(crate) fn has_dotdot(path: &str) -> bool {
    path.split('/').any(|c| c == "..")
}

/// A host path: absolute, without `..`. Reports and returns false otherwise.
pub(crate) fn check_host_path(text: &str, path: &str, pos: Pos, problems: &mut Problems) -> bool {
    if !text.starts_with('/') {
        problems.push(
            ProblemKind::NotAbsolute,
            path,
            Some(pos),
            format!("`{text}` must be an absolute path"),
        );
        return false;
    }
    if has_dotdot(text) {
        problems.push(
            ProblemKind::PathTraversal,
            path,
            Some(pos),
            format!("`{text}` must not contain a `..` component"),
        );
        return false;
    }
    true
}

/// A path inside the revision without `..`. Reports and returns false otherwise.
pub(crate) fn check_revision_path(
    text: &str,
    path: &str,
    pos: Pos,
    problems: &mut Problems,
) -> bool {
    if has_dotdot(text) {
        problems.push(
            ProblemKind::PathTraversal,
            path,
            Some(pos),
            format!("`{text}` must stay inside the revision: no `..` components"),
        );
        return false;
    }
    true
}
