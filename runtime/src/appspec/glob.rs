//! Which paths a permission entry applies to, CodeDeploy's way (`matches_pattern?`, `matches_except?`): only
//! descendants of `object`, never the object itself; `**` matches at any depth; any other pattern, and every
//! `except` glob, is a `*`-only glob matched against the name of a **direct** child. Pure: no I/O.

use super::model::{ObjectTypes, Permission};
use std::path::Path;

impl Permission {
    /// True when `path` is below `object` and selected by `pattern` and not by `except`. The object type
    /// (`type:`) is checked separately with [`ObjectTypes::includes`], since it needs the file system.
    pub fn matches(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.object) else {
            return false;
        };
        let mut parts = rel.iter();
        let (Some(first), rest) = (parts.next(), parts.next()) else {
            return false;
        };
        let direct_child = rest.is_none();
        let name = first.to_string_lossy();
        let selected = self.pattern == "**" || (direct_child && simple_glob(&self.pattern, &name));
        let excepted = direct_child && self.except.iter().any(|g| simple_glob(g, &name));
        selected && !excepted
    }
}

impl ObjectTypes {
    /// True when an object of this kind (directory or not) is covered.
    pub fn includes(&self, is_dir: bool) -> bool {
        if is_dir { self.directory } else { self.file }
    }
}

/// `*` matches any run of characters (none included); every other character matches itself. Iterative with
/// one backtrack point, so the cost is O(name × pattern) whatever the input (no exponential blow-up).
pub fn simple_glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ni = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn permission(pattern: &str, except: &[&str]) -> Permission {
        Permission {
            object: PathBuf::from("/tmp"),
            pattern: pattern.to_owned(),
            except: except.iter().map(|s| (*s).to_owned()).collect(),
            types: ObjectTypes::default(),
            owner: None,
            group: None,
            mode: None,
            acls: None,
            context: None,
        }
    }

    #[test]
    fn globs_match_stars_only() {
        assert!(simple_glob("prefix*", "prefix-a"));
        assert!(simple_glob("*.tmp", ".tmp"));
        assert!(simple_glob("a*b*c", "aXbYbc"));
        assert!(!simple_glob("a*b", "aXc"));
        assert!(!simple_glob("file?", "file1"));
        assert!(simple_glob("file?", "file?"));
        assert!(simple_glob("*", ""));
    }

    #[test]
    fn pattern_and_except_match_direct_children_only() {
        // CodeDeploy's full-permission test: pattern `prefix*`, except `*ReadMe`, `*.tmp`.
        let p = permission("prefix*", &["*ReadMe", "*.tmp"]);
        assert!(p.matches(Path::new("/tmp/prefix-file")));
        assert!(!p.matches(Path::new("/tmp/dir/prefix-file")));
        assert!(!p.matches(Path::new("/tmp/other")));
        assert!(!p.matches(Path::new("/tmp/prefixReadMe")));
        assert!(!p.matches(Path::new("/tmp/prefix.tmp")));
        assert!(!p.matches(Path::new("/tmp")));
        assert!(!p.matches(Path::new("/tmpx/prefix-a")));
    }

    #[test]
    fn any_depth_pattern_matches_every_descendant_but_except_only_children() {
        let p = permission("**", &["*.tmp"]);
        assert!(p.matches(Path::new("/tmp/a/b/c")));
        assert!(p.matches(Path::new("/tmp/a/b.tmp")));
        assert!(!p.matches(Path::new("/tmp/b.tmp")));
        assert!(!p.matches(Path::new("/tmp")));
    }

    #[test]
    fn types_select_files_or_directories() {
        let files = ObjectTypes {
            file: true,
            directory: false,
        };
        assert!(files.includes(false) && !files.includes(true));
        assert!(ObjectTypes::default().includes(true));
    }
}
