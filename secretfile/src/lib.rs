//! Atomic writes of small files that hold secrets (tokens, keys) or must never be seen half-written (configs).
//!
//! One home for "stage and rename": the content goes to a temp file in the destination's directory, created with
//! the final mode *before* any byte is written (a secret is never readable by others, not even for an instant),
//! synced, then renamed over the destination. A reader sees the old file or the new one, never a mix, and a crash
//! leaves at most a stray temp file (named `.NAME.XXXX`, removed on drop when the write fails).
//!
//! The coordinator (admin, enrollment and metrics tokens), the built-in load balancer (its admin token), the agent
//! (its own token) and `rollcage agent install` (token, config, unit) all write through here.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The mode of a secret: read and write for the owner only.
pub const SECRET_MODE: u32 = 0o600;

/// Writing the file failed; nothing was replaced.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct WriteError {
    /// What was being done.
    pub what: &'static str,
    /// The file (or its directory).
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

/// Write `content` to `path` with mode 0600, atomically. A missing parent directory is created with mode 0700
/// (it holds secrets).
pub fn write_secret(path: &Path, content: &[u8]) -> Result<(), WriteError> {
    write_atomic(path, content, SECRET_MODE)
}

/// Write `content` to `path` with `mode`, atomically (temp file in the same directory, then rename). A missing
/// parent directory is created with mode 0700.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<(), WriteError> {
    let err = |what, path: &Path, source| WriteError {
        what,
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err("creating the directory", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile creates the file 0600 with O_EXCL; the final mode is set before any content is written.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .map_err(|e| err("creating a temp file for", path, e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| err("setting the mode of", path, e))?;
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| err("writing", path, e))?;
    tmp.persist(path)
        .map_err(|e| err("renaming into place", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_secret_is_0600_in_a_0700_dir_and_replaces_the_old_one_whole() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("new").join("token");
        write_secret(&path, b"one\n")?;
        assert_eq!(std::fs::read(&path)?, b"one\n");
        assert_eq!(std::fs::metadata(&path)?.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(tmp.path().join("new"))?.mode() & 0o777,
            0o700
        );
        write_secret(&path, b"two\n")?;
        assert_eq!(std::fs::read(&path)?, b"two\n");
        // No temp file is left beside it.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("new"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["token"]);
        Ok(())
    }

    #[test]
    fn another_mode_is_kept_and_a_failed_write_replaces_nothing() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("agent.toml");
        write_atomic(&path, b"a = 1\n", 0o644)?;
        assert_eq!(std::fs::metadata(&path)?.mode() & 0o777, 0o644);
        // A directory in the way: the rename fails, the error names the path, nothing is left behind.
        let blocked = tmp.path().join("dir");
        std::fs::create_dir(&blocked)?;
        std::fs::write(blocked.join("x"), b"")?;
        let e = write_secret(&blocked, b"s")
            .err()
            .ok_or("write over a dir succeeded")?;
        assert_eq!(e.path, blocked);
        let stray = std::fs::read_dir(tmp.path())?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".dir."))
            .count();
        assert_eq!(stray, 0);
        Ok(())
    }
}
