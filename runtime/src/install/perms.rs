//! Which `permissions` entry applies to which object this deployment created. Pure: no I/O.
//!
//! CodeDeploy's matching (`install_instruction.rb` `find_matches`), with its limits made explicit:
//! - only objects this deployment created (copied files, created directories) are ever matched, never pre-existing
//!   or retained files;
//! - an `object` that is a copied file matches itself (then `pattern` must be `**`, `except` empty and no default
//!   ACL entry); an `object` that is a directory matches its descendants, never itself;
//! - `pattern: "**"` matches every descendant; any other pattern is a `*`-glob over direct children only;
//!   `except` globs exclude direct children only;
//! - `type` filters files and directories;
//! - symlinks never match: chmod and setfacl would act on the symlink's target, which may lie anywhere;
//! - one path may get its permissions from one entry only.

use super::error::InstallError;
use crate::appspec::Permission;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What kind of object this deployment created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedKind {
    /// A copied regular file.
    File,
    /// A created directory.
    Dir,
    /// A re-created symlink.
    Symlink,
}

/// One object this deployment created, in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its path.
    pub path: PathBuf,
    /// What it is.
    pub kind: CreatedKind,
}

/// One object and the index of the `permissions` entry that applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The object.
    pub path: PathBuf,
    /// It is a directory (else a regular file).
    pub is_dir: bool,
    /// Index into `permissions`.
    pub entry: usize,
}

/// Match `permissions` against the created objects. `dirs` is every directory the copy plan relies on
/// (existing or created): an `object` that is one of them matches its descendants. The result is in creation
/// order, so a directory's permissions are applied before its contents'.
pub fn match_permissions(
    permissions: &[Permission],
    created: &[Created],
    dirs: &HashSet<PathBuf>,
) -> Result<Vec<Assignment>, InstallError> {
    let by_path: HashMap<&Path, CreatedKind> =
        created.iter().map(|c| (c.path.as_path(), c.kind)).collect();
    let mut chosen: HashMap<&Path, usize> = HashMap::new();
    for (index, perm) in permissions.iter().enumerate() {
        let object = perm.object.as_path();
        match by_path.get(object) {
            Some(CreatedKind::File | CreatedKind::Symlink) => {
                check_file_object(index, perm)?;
                if perm.types.file && by_path.get(object) == Some(&CreatedKind::File) {
                    claim(&mut chosen, object, index)?;
                } else {
                    tracing::debug!(object = %object.display(), "permissions[{index}] skipped (type or symlink)");
                }
                continue;
            }
            Some(CreatedKind::Dir) => {}
            None if dirs.contains(object) => {}
            None => {
                tracing::warn!(
                    object = %object.display(),
                    "permissions[{index}]: object is neither a copied file nor a directory of this install; ignored"
                );
                continue;
            }
        }
        for c in created {
            let Ok(rel) = c.path.strip_prefix(object) else {
                continue;
            };
            if rel.as_os_str().is_empty() || !applies(perm, rel, c.kind) {
                continue;
            }
            claim(&mut chosen, &c.path, index)?;
        }
    }
    Ok(created
        .iter()
        .filter_map(|c| {
            chosen.get(c.path.as_path()).map(|&entry| Assignment {
                path: c.path.clone(),
                is_dir: c.kind == CreatedKind::Dir,
                entry,
            })
        })
        .collect())
}

/// An entry whose object is a file cannot use directory-only settings.
fn check_file_object(index: usize, perm: &Permission) -> Result<(), InstallError> {
    let invalid = |reason| InstallError::InvalidPermission {
        index,
        object: perm.object.clone(),
        reason,
    };
    if !perm.types.file {
        return Ok(()); // CodeDeploy skips such an entry for a file object; nothing to validate.
    }
    if perm.pattern != "**" {
        return Err(invalid(
            "invalid pattern for a file object: expected `**` (patterns apply to directories)",
        ));
    }
    if !perm.except.is_empty() {
        return Err(invalid(
            "except is set for a file object: expected no except (it applies to directories)",
        ));
    }
    if perm
        .acls
        .as_ref()
        .is_some_and(|acls| acls.iter().any(|a| a.default))
    {
        return Err(invalid(
            "default ACL entries (d:) are supported for directories only",
        ));
    }
    Ok(())
}

/// Does `perm` (whose object is a directory) apply to the created object at `rel` below it?
fn applies(perm: &Permission, rel: &Path, kind: CreatedKind) -> bool {
    let type_ok = match kind {
        CreatedKind::File => perm.types.file,
        CreatedKind::Dir => perm.types.directory,
        CreatedKind::Symlink => false,
    };
    if !type_ok {
        return false;
    }
    let direct_child = rel.components().count() == 1;
    let name = rel.to_string_lossy();
    let pattern_ok = perm.pattern == "**" || (direct_child && glob_match(&perm.pattern, &name));
    let excepted = direct_child && perm.except.iter().any(|e| glob_match(e, &name));
    pattern_ok && !excepted
}

fn claim<'a>(
    chosen: &mut HashMap<&'a Path, usize>,
    path: &'a Path,
    index: usize,
) -> Result<(), InstallError> {
    match chosen.insert(path, index) {
        Some(first) if first != index => Err(InstallError::PermissionConflict {
            path: path.to_owned(),
            first,
            second: index,
        }),
        _ => Ok(()),
    }
}

/// The AppSpec's `*`-glob over one file name (linear-time; CodeDeploy v2 replaced a regex matcher, CWE-1333).
pub use crate::appspec::glob_match;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appspec::{AclEntry, AclTag, ObjectTypes};

    fn perm(object: &str, pattern: &str) -> Permission {
        Permission {
            object: object.into(),
            pattern: pattern.into(),
            except: vec![],
            types: ObjectTypes::default(),
            owner: None,
            group: None,
            mode: None,
            acls: None,
            context: None,
        }
    }

    fn created(list: &[(&str, CreatedKind)]) -> Vec<Created> {
        list.iter()
            .map(|(p, k)| Created {
                path: p.into(),
                kind: *k,
            })
            .collect()
    }

    fn paths(a: &[Assignment]) -> Vec<&str> {
        a.iter().filter_map(|a| a.path.to_str()).collect()
    }

    fn tree() -> Vec<Created> {
        use CreatedKind::*;
        created(&[
            ("/app/a.txt", File),
            ("/app/b.log", File),
            ("/app/sub", Dir),
            ("/app/sub/c.txt", File),
            ("/app/link", Symlink),
        ])
    }

    fn dirs() -> HashSet<PathBuf> {
        ["/app", "/app/sub"].iter().map(PathBuf::from).collect()
    }

    #[test]
    fn glob_is_linear_and_correct() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(!glob_match("a?c", "abc"), "only `*` is special");
        let hostile = "*a".repeat(50) + "b";
        assert!(!glob_match(&hostile, &"a".repeat(5000)));
    }

    #[test]
    fn double_star_matches_every_descendant_but_not_the_object_or_symlinks()
    -> Result<(), InstallError> {
        let a = match_permissions(&[perm("/app", "**")], &tree(), &dirs())?;
        assert_eq!(
            paths(&a),
            ["/app/a.txt", "/app/b.log", "/app/sub", "/app/sub/c.txt"]
        );
        Ok(())
    }

    #[test]
    fn other_patterns_match_direct_children_only() -> Result<(), InstallError> {
        let a = match_permissions(&[perm("/app", "*.txt")], &tree(), &dirs())?;
        assert_eq!(paths(&a), ["/app/a.txt"]);
        Ok(())
    }

    #[test]
    fn except_removes_direct_children_only() -> Result<(), InstallError> {
        let mut p = perm("/app", "**");
        p.except = vec!["*.txt".into(), "sub".into()];
        let a = match_permissions(&[p], &tree(), &dirs())?;
        assert_eq!(paths(&a), ["/app/b.log", "/app/sub/c.txt"]);
        Ok(())
    }

    #[test]
    fn type_filters() -> Result<(), InstallError> {
        let mut p = perm("/app", "**");
        p.types = ObjectTypes {
            file: false,
            directory: true,
        };
        assert_eq!(
            paths(&match_permissions(&[p.clone()], &tree(), &dirs())?),
            ["/app/sub"]
        );
        p.types = ObjectTypes {
            file: true,
            directory: false,
        };
        assert_eq!(
            paths(&match_permissions(&[p], &tree(), &dirs())?),
            ["/app/a.txt", "/app/b.log", "/app/sub/c.txt"]
        );
        Ok(())
    }

    #[test]
    fn a_file_object_matches_itself_with_file_rules() -> Result<(), InstallError> {
        let a = match_permissions(&[perm("/app/a.txt", "**")], &tree(), &dirs())?;
        assert_eq!(paths(&a), ["/app/a.txt"]);
        let err = match_permissions(&[perm("/app/a.txt", "*.txt")], &tree(), &dirs());
        assert!(matches!(
            err,
            Err(InstallError::InvalidPermission { index: 0, .. })
        ));
        let mut p = perm("/app/a.txt", "**");
        p.acls = Some(vec![AclEntry {
            default: true,
            tag: AclTag::User,
            name: "bob".into(),
            perms: 7,
        }]);
        assert!(matches!(
            match_permissions(&[p], &tree(), &dirs()),
            Err(InstallError::InvalidPermission { .. })
        ));
        Ok(())
    }

    #[test]
    fn unknown_objects_are_ignored() -> Result<(), InstallError> {
        assert!(match_permissions(&[perm("/elsewhere", "**")], &tree(), &dirs())?.is_empty());
        Ok(())
    }

    #[test]
    fn one_path_from_two_entries_is_an_error() {
        let err = match_permissions(
            &[perm("/app", "**"), perm("/app/sub", "**")],
            &tree(),
            &dirs(),
        );
        assert!(matches!(
            err,
            Err(InstallError::PermissionConflict { path, first: 0, second: 1 }) if path == Path::new("/app/sub/c.txt")
        ));
    }
}
