//! The map file on disk: HAProxy reads it at start-up and on every reload, and forgets runtime `set map`
//! changes then, so a blue/green switch is also written into the file. Rewriting is pure
//! ([`with_entry`]); writing is atomic (temp file in the same directory, fsync, rename).

use std::io::Write as _;
use std::path::Path;

/// `content` with `key` mapped to `value`: the first line for `key` is replaced (keeping comments and
/// other keys as they are), further lines for it are dropped, and a missing key is appended.
pub fn with_entry(content: &str, key: &str, value: &str) -> String {
    let mut out = String::with_capacity(content.len() + key.len() + value.len() + 2);
    let mut done = false;
    for line in content.lines() {
        let first = line.split_whitespace().next();
        let is_key = first == Some(key) && !line.trim_start().starts_with('#');
        if is_key {
            if !done {
                out.push_str(&format!("{key} {value}\n"));
                done = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&format!("{key} {value}\n"));
    }
    out
}

/// The value of `key` in a map file's content.
pub fn value_of<'a>(content: &'a str, key: &str) -> Option<&'a str> {
    content.lines().find_map(|line| {
        if line.trim_start().starts_with('#') {
            return None;
        }
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then_some(())?;
        parts.next()
    })
}

/// Replaces `path` with `content` atomically, keeping the old file's permissions.
pub fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".rollcage-map-")
        .tempfile_in(dir)?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.write_all(content.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_key_keeping_the_rest() {
        let before = "# blue/green\napp1 bk_blue\napp2 bk_blue\n";
        assert_eq!(
            with_entry(before, "app1", "bk_green"),
            "# blue/green\napp1 bk_green\napp2 bk_blue\n"
        );
        assert_eq!(
            value_of(&with_entry(before, "app1", "bk_green"), "app1"),
            Some("bk_green")
        );
    }

    #[test]
    fn appends_a_missing_key_and_drops_duplicates() {
        assert_eq!(with_entry("app2 x\n", "app1", "y"), "app2 x\napp1 y\n");
        assert_eq!(with_entry("", "app1", "y"), "app1 y\n");
        assert_eq!(with_entry("app1 a\napp1 b\n", "app1", "c"), "app1 c\n");
        assert_eq!(with_entry("#app1 a\n", "app1", "c"), "#app1 a\napp1 c\n");
        assert_eq!(value_of("#app1 a\n", "app1"), None);
    }

    #[test]
    fn write_is_atomic_and_keeps_mode() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bg.map");
        std::fs::write(&path, "app1 blue\n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
        write_atomic(&path, "app1 green\n")?;
        assert_eq!(std::fs::read_to_string(&path)?, "app1 green\n");
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_dir(dir.path())?.count(),
            1,
            "no temp file left"
        );
        Ok(())
    }
}
