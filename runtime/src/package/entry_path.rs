//! Pure path logic for archive entries: normalising entry names into confined relative paths, and resolving link
//! targets the way the kernel would (following the links the archive itself created) to tell whether they stay
//! inside the revision. No I/O here.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest entry name or link target accepted, in bytes as archived: Linux's `PATH_MAX`. Nothing longer can be
/// handed to the kernel as one path (a symlink target cannot even be created), so a longer name can only be an
/// attack on the unpacker's memory or time; refusing it also bounds every per-entry path operation.
pub(crate) const MAX_PATH_BYTES: usize = 4096;

/// Longest component of an entry name: Linux's `NAME_MAX` (no filesystem we unpack to takes more).
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Why an entry name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameProblem {
    /// Starts with `/`.
    Absolute,
    /// Has a `..` component.
    ParentDir,
    /// Has a component longer than [`MAX_NAME_BYTES`].
    ComponentTooLong,
    /// Has a NUL byte (no kernel path can).
    Nul,
}

/// Normalise an archive entry name into a relative path of plain components (`.` and empty components dropped).
/// `Ok(None)` means the name denotes the archive root itself (`.`, `./`).
pub(crate) fn normalize(raw: &[u8]) -> Result<Option<PathBuf>, NameProblem> {
    if raw.first() == Some(&b'/') {
        return Err(NameProblem::Absolute);
    }
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    let mut out = PathBuf::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(NameProblem::ParentDir),
            name if name.len() > MAX_NAME_BYTES => return Err(NameProblem::ComponentTooLong),
            name => out.push(OsStr::from_bytes(name)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Why a link target does not resolve inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkProblem {
    /// Resolution climbs above the root (or the target is absolute).
    Escapes,
    /// More than [`MAX_LINK_EXPANSIONS`] links followed (a loop, most likely).
    TooManyLinks,
}

/// Linux's own limit on symlinks followed in one lookup (`MAXSYMLINKS`).
const MAX_LINK_EXPANSIONS: usize = 40;

enum Step {
    Cur,
    Parent,
    Name(OsString),
}

fn steps(target: &[u8]) -> impl Iterator<Item = Step> + '_ {
    target.split(|b| *b == b'/').map(|c| match c {
        b"" | b"." => Step::Cur,
        b".." => Step::Parent,
        name => Step::Name(OsStr::from_bytes(name).to_owned()),
    })
}

/// Resolve symlink `target` found in directory `dir` (relative to the root), following the symlinks in `links`
/// (relative path → raw target) as the kernel would. Returns the resolved path relative to the root.
pub(crate) fn resolve_link(
    dir: &Path,
    target: &[u8],
    links: &HashMap<PathBuf, Vec<u8>>,
) -> Result<PathBuf, LinkProblem> {
    if target.first() == Some(&b'/') {
        return Err(LinkProblem::Escapes);
    }
    // `here` is kept in step with the walk (one push or pop per step), never rebuilt from the whole stack: each step
    // costs the hash of one path, not a copy of every component so far.
    let mut here = dir.to_owned();
    let mut pending: VecDeque<Step> = steps(target).collect();
    let mut expansions = 0;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Cur => {}
            Step::Parent => {
                if !here.pop() {
                    return Err(LinkProblem::Escapes);
                }
            }
            Step::Name(name) => {
                here.push(&name);
                if let Some(inner) = links.get(&here) {
                    expansions += 1;
                    if expansions > MAX_LINK_EXPANSIONS {
                        return Err(LinkProblem::TooManyLinks);
                    }
                    if inner.first() == Some(&b'/') {
                        return Err(LinkProblem::Escapes);
                    }
                    here.pop();
                    for s in steps(inner).collect::<Vec<_>>().into_iter().rev() {
                        pending.push_front(s);
                    }
                }
            }
        }
    }
    Ok(here)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn names_are_normalised_and_confined() {
        assert_eq!(normalize(b"a/./b//c/"), Ok(Some(p("a/b/c"))));
        assert_eq!(normalize(b"./"), Ok(None));
        assert_eq!(normalize(b"/etc/passwd"), Err(NameProblem::Absolute));
        assert_eq!(normalize(b"a/../../x"), Err(NameProblem::ParentDir));
        assert_eq!(normalize(b"a/.."), Err(NameProblem::ParentDir));
        assert_eq!(normalize(b"..foo/bar"), Ok(Some(p("..foo/bar"))));
    }

    #[test]
    fn plain_targets_resolve_lexically() {
        let none = HashMap::new();
        assert_eq!(resolve_link(&p("a/b"), b"../c", &none), Ok(p("a/c")));
        assert_eq!(
            resolve_link(&p("a"), b"../../x", &none),
            Err(LinkProblem::Escapes)
        );
        assert_eq!(
            resolve_link(&p(""), b"/etc", &none),
            Err(LinkProblem::Escapes)
        );
        assert_eq!(
            resolve_link(&p(""), b"..", &none),
            Err(LinkProblem::Escapes)
        );
        assert_eq!(resolve_link(&p(""), b".", &none), Ok(p("")));
    }

    #[test]
    fn links_inside_the_root_are_followed_like_the_kernel() {
        // `d -> .` then `e -> d/..`: lexically `e` stays at the root, but the kernel resolves `d` to the root first,
        // so `..` climbs out of it.
        let mut links = HashMap::new();
        links.insert(p("d"), b".".to_vec());
        assert_eq!(
            resolve_link(&p(""), b"d/..", &links),
            Err(LinkProblem::Escapes)
        );
        links.insert(p("deep"), b"a/b/c".to_vec());
        assert_eq!(resolve_link(&p(""), b"deep/..", &links), Ok(p("a/b")));
        links.insert(p("abs"), b"/etc".to_vec());
        assert_eq!(
            resolve_link(&p(""), b"abs/x", &links),
            Err(LinkProblem::Escapes)
        );
    }

    #[test]
    fn loops_are_bounded() {
        let mut links = HashMap::new();
        links.insert(p("a"), b"b".to_vec());
        links.insert(p("b"), b"a".to_vec());
        assert_eq!(
            resolve_link(&p(""), b"a/x", &links),
            Err(LinkProblem::TooManyLinks)
        );
    }
}
