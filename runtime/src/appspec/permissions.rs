//! `permissions`: CodeDeploy's permission entries (`spec/linux_permission_info.rb`, `spec/context_info.rb`).
//!
//! The checks that depend on whether `object` is a file being installed (pattern, except, default ACLs) run here
//! when that is known at parse time — the object is `destination/<name>` of a `files` entry whose source is a
//! file of the revision — and are exposed as [`file_object_problems`] for Install to apply otherwise.

use super::acl::parse_acl;
use super::fields::{self, MapView, index, join};
use super::mode::parse_mode;
use super::model::{ObjectTypes, Permission, SelinuxContext};
use super::paths::check_host_path;
use super::problem::{ProblemKind, Problems};
use super::selinux::parse_range;
use super::yaml::{Node, Pos};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const KEYS: [&str; 9] = [
    "object", "pattern", "except", "type", "owner", "group", "mode", "acls", "context",
];
const CONTEXT_KEYS: [&str; 4] = ["name", "user", "type", "range"];

/// Problems of a permission whose `object` is a file being installed (CodeDeploy's `validate_file_permission`
/// and `validate_file_acl`): with `type` including `file`, the pattern must be `**`, `except` empty, and no ACL
/// entry may be a default one.
pub fn file_object_problems(permission: &Permission) -> Vec<(ProblemKind, String)> {
    let mut out = Vec::new();
    let object = permission.object.display();
    if permission.types.file {
        if permission.pattern != "**" {
            out.push((
                ProblemKind::InvalidPattern,
                format!(
                    "pattern `{}` cannot apply to `{object}`, which is a file; use `**` or omit it",
                    permission.pattern
                ),
            ));
        }
        if !permission.except.is_empty() {
            out.push((
                ProblemKind::InvalidExcept,
                format!(
                    "except {:?} cannot apply to `{object}`, which is a file; omit it",
                    permission.except
                ),
            ));
        }
    }
    if permission.acls.iter().flatten().any(|a| a.default) {
        out.push((
            ProblemKind::AclDefaultOnFile,
            format!("default acl entries apply to directories only; `{object}` is a file"),
        ));
    }
    out
}

/// Parse the `permissions` list. `installed_files` are the host paths known to be files copied by `files`.
pub(crate) fn parse_permissions(
    node: &Node,
    installed_files: &BTreeSet<PathBuf>,
    problems: &mut Problems,
) -> Vec<Permission> {
    let Some(items) = fields::list(node, "permissions", "permission entries", problems) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            parse_permission(item, &index("permissions", i), installed_files, problems)
        })
        .collect()
}

fn parse_permission(
    node: &Node,
    path: &str,
    installed_files: &BTreeSet<PathBuf>,
    problems: &mut Problems,
) -> Option<Permission> {
    let map = fields::map(node, path, "a permission mapping with `object`", problems)?;
    map.warn_unknown(&KEYS, path, "a permission entry", problems);
    let before = problems.len();
    let object = match map.get("object") {
        Some(n) => fields::string(n, &join(path, "object"), problems)
            .filter(|o| !o.is_empty())
            .filter(|o| check_host_path(o, &join(path, "object"), n.pos, problems)),
        None => None,
    };
    if map
        .get("object")
        .is_none_or(|n| n.scalar().is_some_and(|s| s.text.trim().is_empty()))
    {
        problems.push(
            ProblemKind::MissingField,
            &join(path, "object"),
            Some(map.pos),
            "permission has no object; expected an absolute path",
        );
    }
    let pattern = match map.get("pattern") {
        None => "**".to_owned(),
        Some(n) => fields::string(n, &join(path, "pattern"), problems)
            .filter(|p| glob_ok(p, "pattern", &join(path, "pattern"), n.pos, problems))
            .unwrap_or_else(|| "**".to_owned()),
    };
    let except = match map.get("except") {
        None => Vec::new(),
        Some(n) => {
            let except_path = join(path, "except");
            fields::strings(n, &except_path, "globs", problems)
                .into_iter()
                .enumerate()
                .filter(|(i, (g, pos))| {
                    glob_ok(g, "except", &index(&except_path, *i), *pos, problems)
                })
                .map(|(_, (g, _))| g)
                .collect()
        }
    };
    let types = map
        .get("type")
        .map(|n| object_types(n, &join(path, "type"), problems))
        .unwrap_or_default();
    let owner = map
        .get("owner")
        .and_then(|n| fields::string(n, &join(path, "owner"), problems));
    let group = map
        .get("group")
        .and_then(|n| fields::string(n, &join(path, "group"), problems));
    let mode = map.get("mode").and_then(|n| {
        let text = n.scalar().map(|s| s.text.trim().to_owned());
        let result = match text {
            Some(t) => parse_mode(&t),
            None => Err((
                ProblemKind::WrongType,
                format!("expected 1 to 4 octal digits, found {}", n.describe()),
            )),
        };
        result
            .map_err(|(kind, msg)| problems.push(kind, &join(path, "mode"), Some(n.pos), msg))
            .ok()
    });
    let acls = map.get("acls").map(|n| {
        let acls_path = join(path, "acls");
        fields::strings(n, &acls_path, "acl entries", problems)
            .into_iter()
            .enumerate()
            .filter_map(|(i, (text, pos))| {
                parse_acl(&text)
                    .map_err(|(kind, msg)| {
                        problems.push(kind, &index(&acls_path, i), Some(pos), msg)
                    })
                    .ok()
            })
            .collect()
    });
    let context = map
        .get("context")
        .and_then(|n| context(n, &join(path, "context"), problems));

    let permission = Permission {
        object: PathBuf::from(object?),
        pattern,
        except,
        types,
        owner,
        group,
        mode,
        acls,
        context,
    };
    if installed_files.contains(&permission.object) {
        for (kind, msg) in file_object_problems(&permission) {
            let field = match kind {
                ProblemKind::InvalidPattern => "pattern",
                ProblemKind::InvalidExcept => "except",
                _ => "acls",
            };
            problems.push(
                kind,
                &join(path, field),
                map.key_pos(field).or(Some(map.pos)),
                msg,
            );
        }
    }
    (problems.len() == before).then_some(permission)
}

/// `pattern` and `except` globs match direct children only, so a `/` can never match: refuse it rather than
/// silently apply nothing.
fn glob_ok(glob: &str, field: &str, path: &str, pos: Pos, problems: &mut Problems) -> bool {
    if glob.is_empty() || glob.contains('/') {
        let kind = if field == "pattern" {
            ProblemKind::InvalidPattern
        } else {
            ProblemKind::InvalidExcept
        };
        problems.push(
            kind,
            path,
            Some(pos),
            format!("invalid {field} `{glob}`; expected `**` or a `*`-glob of names directly inside the object (no `/`)"),
        );
        return false;
    }
    true
}

fn object_types(node: &Node, path: &str, problems: &mut Problems) -> ObjectTypes {
    let mut types = ObjectTypes {
        file: false,
        directory: false,
    };
    let names = fields::strings(node, path, "object types", problems);
    for (i, (name, pos)) in names.iter().enumerate() {
        match name.as_str() {
            "file" => types.file = true,
            "directory" => types.directory = true,
            other => problems.push(
                ProblemKind::InvalidObjectType,
                &index(path, i),
                Some(*pos),
                format!("invalid type `{other}`; expected `file` or `directory`"),
            ),
        }
    }
    if names.is_empty() {
        problems.push(
            ProblemKind::InvalidObjectType,
            path,
            Some(node.pos),
            "type is empty; expected `file` and/or `directory`",
        );
    }
    types
}

fn context(node: &Node, path: &str, problems: &mut Problems) -> Option<SelinuxContext> {
    let map: MapView<'_> =
        fields::map(node, path, "a mapping with name, type and range", problems)?;
    map.reject_unknown(&CONTEXT_KEYS, path, problems);
    // CodeDeploy's code reads the SELinux user from `name`; its docs call it `user`. Accept either, not both.
    if map.get("name").is_some() && map.get("user").is_some() {
        problems.push(
            ProblemKind::DuplicateKey,
            &join(path, "user"),
            map.key_pos("user"),
            "give the SELinux user as `name` or `user`, not both",
        );
    }
    let user_key = if map.get("name").is_some() {
        "name"
    } else {
        "user"
    };
    let user = map
        .get(user_key)
        .and_then(|n| fields::string(n, &join(path, user_key), problems));
    let type_ = match map.get("type") {
        Some(n) => fields::string(n, &join(path, "type"), problems).filter(|t| !t.is_empty()),
        None => None,
    };
    if type_.is_none()
        && map
            .get("type")
            .is_none_or(|n| n.scalar().is_some_and(|s| s.text.trim().is_empty()))
    {
        problems.push(
            ProblemKind::MissingField,
            &join(path, "type"),
            Some(map.pos),
            "invalid context type: an SELinux context needs a `type` (e.g. httpd_sys_content_t)",
        );
    }
    let range = map.get("range").and_then(|n| {
        let text = fields::string(n, &join(path, "range"), problems)?;
        parse_range(&text)
            .map_err(|(kind, msg)| problems.push(kind, &join(path, "range"), Some(n.pos), msg))
            .ok()
    });
    Some(SelinuxContext {
        user,
        type_: type_?,
        range,
    })
}

/// Where Install puts a file source: `destination/<file name>`.
pub(crate) fn installed_file(destination: &Path, source: &str) -> Option<PathBuf> {
    Path::new(source)
        .file_name()
        .map(|name| destination.join(name))
}
