//! The top level of an AppSpec: `version`, `os`, `file_exists_behavior`, and dispatch to the sections.

use super::Checked;
use super::fields;
use super::files::parse_files;
use super::hooks::parse_hooks;
use super::model::{AppSpec, FileExistsBehavior};
use super::permissions::parse_permissions;
use super::problem::{ProblemKind, Problems};
use super::revision::RevisionView;
use super::yaml::{self, Node};

/// Top-level keys CodeDeploy reads; others are ignored with a warning, as CodeDeploy ignores them.
const KEYS: [&str; 6] = [
    "version",
    "os",
    "files",
    "permissions",
    "hooks",
    "file_exists_behavior",
];

/// Parse and validate `text`, looking into `revision` when given.
pub(crate) fn validate(text: &str, revision: Option<&dyn RevisionView>) -> Checked {
    let mut problems = Problems::default();
    let spec = validate_into(text, revision, &mut problems);
    let result = match spec {
        Some(spec) if problems.errors.is_empty() => Ok(spec),
        _ => Err(problems.errors),
    };
    Checked {
        result,
        warnings: problems.warnings,
    }
}

fn validate_into(
    text: &str,
    revision: Option<&dyn RevisionView>,
    problems: &mut Problems,
) -> Option<AppSpec> {
    let empty_message =
        "the AppSpec file was empty; it must define at least the `version` and `os` properties";
    if text.trim().is_empty() {
        problems.push(ProblemKind::Empty, "", None, empty_message);
        return None;
    }
    let root = match yaml::load(text) {
        Ok(Some(root)) if !root.is_null() => root,
        Ok(_) => {
            problems.push(ProblemKind::Empty, "", None, empty_message);
            return None;
        }
        Err(e) => {
            syntax_error(&e, problems);
            return None;
        }
    };
    document(&root, revision, problems)
}

fn document(
    root: &Node,
    revision: Option<&dyn RevisionView>,
    problems: &mut Problems,
) -> Option<AppSpec> {
    let map = fields::map(
        root,
        "",
        "a mapping with version, os, files, permissions and hooks",
        problems,
    )?;
    // An ECS or Lambda AppSpec (top-level `Resources`) is another format altogether: one error saying so, rather
    // than an unknown-key warning and a missing `os` that would send its author looking in the wrong place.
    if let Some((key, pos)) = map
        .entries
        .iter()
        .find(|(k, _, _)| k.eq_ignore_ascii_case("Resources"))
        .map(|(k, n, _)| (*k, n.pos))
    {
        problems.push(
            ProblemKind::NotHostAppSpec,
            key,
            Some(pos),
            "this is an ECS/Lambda AppSpec (top-level `Resources`); rollcage deploys to hosts and takes \
             EC2/on-premises AppSpecs (`version`, `os`, `files`, `permissions`, `hooks`)",
        );
        return None;
    }
    map.warn_unknown(&KEYS, "", "the AppSpec", problems);

    match map.get("version") {
        Some(n) if is_version_zero(n) => {}
        found => {
            let shown = found.map_or_else(|| "nothing".to_owned(), Node::describe);
            problems.push(
                ProblemKind::UnsupportedVersion,
                "version",
                found.map(|n| n.pos).or(Some(map.pos)),
                format!("invalid version {shown}; expected 0.0"),
            );
        }
    }
    match map
        .get("os")
        .and_then(|n| n.scalar().map(|s| (n, s.text.as_str())))
    {
        Some((_, "linux")) => {}
        found => {
            let shown = map
                .get("os")
                .map_or_else(|| "nothing".to_owned(), Node::describe);
            problems.push(
                ProblemKind::UnsupportedOs,
                "os",
                found
                    .map(|(n, _)| n.pos)
                    .or(map.get("os").map(|n| n.pos))
                    .or(Some(map.pos)),
                format!("unsupported os {shown}; expected `linux` (this agent runs on Linux)"),
            );
        }
    }
    let file_exists_behavior = map.get("file_exists_behavior").and_then(|n| {
        let value = n
            .scalar()
            .and_then(|s| FileExistsBehavior::from_name(&s.text));
        if value.is_none() {
            problems.push(
                ProblemKind::InvalidFileExistsBehavior,
                "file_exists_behavior",
                Some(n.pos),
                format!(
                    "invalid file_exists_behavior {}; expected one of DISALLOW, OVERWRITE, RETAIN",
                    n.describe()
                ),
            );
        }
        value
    });
    let files = map.get("files").map(|n| parse_files(n, revision, problems));
    let installed_files = files
        .as_ref()
        .map(|f| f.installed_files.clone())
        .unwrap_or_default();
    let permissions = map
        .get("permissions")
        .map(|n| parse_permissions(n, &installed_files, problems))
        .unwrap_or_default();
    let hooks = map
        .get("hooks")
        .map(|n| parse_hooks(n, revision, problems))
        .unwrap_or_default();
    Some(AppSpec {
        files: files.map(|f| f.mappings).unwrap_or_default(),
        file_exists_behavior,
        permissions,
        hooks,
    })
}

/// `0.0`, written unquoted (a YAML float, CodeDeploy's form) or quoted (what its docs suggest). Other spellings
/// of zero that Ruby would also accept (`0`, `0.00`) are taken too: existing AppSpecs must keep working.
fn is_version_zero(node: &Node) -> bool {
    let Some(s) = node.scalar() else { return false };
    let text = s.text.trim();
    if !s.plain {
        return text == "0.0";
    }
    !text.is_empty()
        && text.bytes().all(|b| b == b'0' || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text.starts_with('0')
}

/// Parse and validate a `sandbox:` map on its own (the grant file of `rollcage hook run`), with the rules of a hook
/// entry's `sandbox:`; field paths start at `sandbox`.
pub(crate) fn validate_sandbox(
    text: &str,
) -> Result<rollcage_proto::SandboxSpec, Vec<super::Problem>> {
    let mut problems = Problems::default();
    // An empty file grants nothing beyond the defaults, like `sandbox: {}`.
    let spec = match yaml::load(text) {
        Ok(Some(root)) if !root.is_null() => {
            super::sandbox::parse_sandbox(&root, "sandbox", &mut problems)
        }
        Ok(_) => Some(rollcage_proto::SandboxSpec::default()),
        Err(e) => {
            syntax_error(&e, &mut problems);
            None
        }
    };
    match spec {
        Some(spec) if problems.errors.is_empty() => Ok(spec),
        _ => Err(problems.errors),
    }
}

/// A file that is not YAML at all: one problem at the parser's position.
fn syntax_error(e: &yaml::SyntaxError, problems: &mut Problems) {
    problems.push(
        ProblemKind::Syntax,
        "",
        Some(e.pos),
        format!("YAML syntax error: {}", e.message),
    );
}
