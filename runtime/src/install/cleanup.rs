//! The cleanup list: what an Install created, so the next Install of the group can remove exactly that.
//!
//! Format (`state/cleanup.json`): **JSON Lines**, one object per line, each ending in `\n`:
//!
//! ```text
//! {"kind":"header","format":1,"deployment":"d-2"}
//! {"kind":"dir","path":"/srv/app"}
//! {"kind":"file","path":"/srv/app/index.html"}
//! {"kind":"symlink","path":"/srv/app/current"}
//! {"kind":"selinux_fcontext","path":"/srv/app/index.html"}
//! ```
//!
//! Entries are appended and fsynced **before** the object is created (write-ahead), so after a crash the list
//! names everything that may exist. Appending keeps that cheap: a whole file is never rewritten. A final line
//! without `\n` is a write torn by a crash and is dropped: its object was never created.
//!
//! Replay walks the list **in reverse** (contents before their directories): files and symlinks are unlinked
//! (with a stale staging file next to them), directories removed only when empty, SELinux file-context rules
//! deleted with `semanage fcontext -d`; a missing object is fine. Then the list itself is deleted.

use super::error::InstallError;
use super::tools;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Version of the line format, in the header.
pub const FORMAT: u32 = 1;

/// One line of the cleanup list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CleanupEntry {
    /// First line: which deployment wrote the list.
    Header {
        /// [`FORMAT`].
        format: u32,
        /// The deployment id.
        deployment: String,
    },
    /// A directory this deployment created.
    Dir {
        /// Absolute path.
        path: String,
    },
    /// A regular file this deployment copied.
    File {
        /// Absolute path.
        path: String,
    },
    /// A symlink this deployment re-created.
    Symlink {
        /// Absolute path.
        path: String,
    },
    /// A `semanage fcontext` rule this deployment added for the path.
    SelinuxFcontext {
        /// Absolute path.
        path: String,
    },
}

impl CleanupEntry {
    /// The object's path (`None` for the header).
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Header { .. } => None,
            Self::Dir { path }
            | Self::File { path }
            | Self::Symlink { path }
            | Self::SelinuxFcontext { path } => Some(path),
        }
    }
}

/// Where a file or symlink is staged before it is renamed onto `path`: a fixed name beside it, so a copy torn by
/// a crash is found (and removed) by the next cleanup.
pub fn staging_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_else(|| OsStr::new("root"));
    let mut staged = std::ffi::OsString::from(".");
    staged.push(name);
    staged.push(".rollcage-tmp");
    path.with_file_name(staged)
}

/// Appends entries to a new cleanup list.
#[derive(Debug)]
pub struct CleanupWriter {
    file: File,
    path: PathBuf,
    /// Appended lines not yet written.
    pending: Vec<u8>,
}

impl CleanupWriter {
    /// Start the list of `deployment` at `path` (replacing any list there; replay has already consumed it).
    pub fn create(path: &Path, deployment: &str) -> Result<Self, InstallError> {
        let err = |source| InstallError::WriteCleanupList {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(err)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(err)?;
        let mut writer = Self {
            file,
            path: path.to_owned(),
            pending: Vec::new(),
        };
        writer.append(&CleanupEntry::Header {
            format: FORMAT,
            deployment: deployment.to_owned(),
        })?;
        writer.sync()?;
        // Make the new directory entry itself durable.
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(writer)
    }

    /// Append one entry. It is buffered: written and durable only after [`Self::sync`], which must run before
    /// the object is created.
    pub fn append(&mut self, entry: &CleanupEntry) -> Result<(), InstallError> {
        serde_json::to_writer(&mut self.pending, entry)
            .map_err(|e| self.err(std::io::Error::other(e)))?;
        self.pending.push(b'\n');
        Ok(())
    }

    /// Write every appended entry (whole lines, in one write) and make them durable.
    pub fn sync(&mut self) -> Result<(), InstallError> {
        let pending = std::mem::take(&mut self.pending);
        self.file.write_all(&pending).map_err(|e| self.err(e))?;
        self.file.sync_data().map_err(|e| self.err(e))
    }

    fn err(&self, source: std::io::Error) -> InstallError {
        InstallError::WriteCleanupList {
            path: self.path.clone(),
            source,
        }
    }
}

/// Parse a cleanup list. A final line without `\n` (torn write) is dropped.
pub fn parse(path: &Path, text: &str) -> Result<Vec<CleanupEntry>, InstallError> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut entries = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let corrupt = |reason: String| InstallError::CorruptCleanupList {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let entry: CleanupEntry = serde_json::from_str(line).map_err(|e| corrupt(e.to_string()))?;
        // Only absolute paths are ever written; anything else would be resolved against the agent's cwd.
        if entry.path().is_some_and(|p| !Path::new(p).is_absolute()) {
            return Err(corrupt("relative path".to_owned()));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Replay the cleanup list at `list` in reverse, then delete it. Returns how many objects were removed.
/// `tool_path` is searched for `semanage`.
pub fn replay(list: &Path, tool_path: &OsStr) -> Result<u64, InstallError> {
    let bytes = match fs::read(list) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(InstallError::ReadCleanupList {
                path: list.to_owned(),
                source,
            });
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| InstallError::CorruptCleanupList {
        path: list.to_owned(),
        line: 0,
        reason: format!("not UTF-8: {e}"),
    })?;
    let entries = parse(list, &text)?;
    let mut removed = 0;
    for entry in entries.iter().rev() {
        match entry {
            CleanupEntry::Header { deployment, .. } => {
                tracing::info!(%deployment, list = %list.display(), "cleaned up the previous install");
            }
            CleanupEntry::Dir { path } => {
                removed += u64::from(remove_dir_if_empty(Path::new(path))?)
            }
            CleanupEntry::File { path } | CleanupEntry::Symlink { path } => {
                let path = Path::new(path);
                remove_non_dir(&staging_path(path))?;
                removed += u64::from(remove_non_dir(path)?);
            }
            CleanupEntry::SelinuxFcontext { path } => remove_fcontext(Path::new(path), tool_path),
        }
    }
    fs::remove_file(list).map_err(|source| InstallError::WriteCleanupList {
        path: list.to_owned(),
        source,
    })?;
    Ok(removed)
}

/// Remove a file or symlink we created; a directory now at that path is not ours and is left alone.
fn remove_non_dir(path: &Path) -> Result<bool, InstallError> {
    match fs::symlink_metadata(path) {
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(false),
        Err(source) => Err(InstallError::Cleanup {
            path: path.to_owned(),
            source,
        }),
        Ok(m) if m.is_dir() => {
            tracing::warn!(path = %path.display(), "listed as a file but now a directory; left in place");
            Ok(false)
        }
        Ok(_) => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(source) => Err(InstallError::Cleanup {
                path: path.to_owned(),
                source,
            }),
        },
    }
}

/// Remove a directory we created if it is empty; one with other content (or no longer a directory) stays.
fn remove_dir_if_empty(path: &Path) -> Result<bool, InstallError> {
    match fs::symlink_metadata(path) {
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(false);
        }
        Err(source) => {
            return Err(InstallError::Cleanup {
                path: path.to_owned(),
                source,
            });
        }
        Ok(m) if !m.is_dir() => {
            tracing::warn!(path = %path.display(), "listed as a directory but no longer one; left in place");
            return Ok(false);
        }
        Ok(_) => {}
    }
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::DirectoryNotEmpty) => {
            tracing::debug!(path = %path.display(), "directory kept: not empty");
            Ok(false)
        }
        Err(source) => Err(InstallError::Cleanup {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Delete a file-context rule. A failure is only logged: a stale rule does not block the next deployment.
fn remove_fcontext(path: &Path, tool_path: &OsStr) {
    let Some(semanage) = tools::find_tool("semanage", tool_path) else {
        tracing::warn!(path = %path.display(), "semanage not found; SELinux file-context rule left in place");
        return;
    };
    let spec = tools::fcontext_spec(path);
    let args = [
        OsStr::new("fcontext"),
        OsStr::new("-d"),
        OsStr::new("--"),
        OsStr::new(&spec),
    ];
    if let Err(e) = tools::run(&semanage, &args, path) {
        tracing::warn!(path = %path.display(), error = %e, "SELinux file-context rule left in place");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_torn_last_line_is_dropped() -> Result<(), InstallError> {
        let text = "{\"kind\":\"header\",\"format\":1,\"deployment\":\"d-1\"}\n{\"kind\":\"dir\",\"path\":\"/a\"}\n{\"kind\":\"fi";
        let entries = parse(Path::new("c"), text)?;
        assert_eq!(
            entries,
            vec![
                CleanupEntry::Header {
                    format: 1,
                    deployment: "d-1".into()
                },
                CleanupEntry::Dir { path: "/a".into() }
            ]
        );
        Ok(())
    }

    #[test]
    fn a_corrupt_complete_line_is_an_error_naming_it() {
        let err = parse(
            Path::new("c"),
            "{\"kind\":\"dir\",\"path\":\"/a\"}\nnot json\n",
        );
        assert!(matches!(
            err,
            Err(InstallError::CorruptCleanupList { line: 2, .. })
        ));
        let err = parse(
            Path::new("c"),
            "{\"kind\":\"file\",\"path\":\"etc/passwd\"}\n",
        );
        assert!(matches!(
            err,
            Err(InstallError::CorruptCleanupList { line: 1, .. })
        ));
    }

    #[test]
    fn staging_sits_beside_the_target() {
        assert_eq!(
            staging_path(Path::new("/srv/app/a.txt")),
            Path::new("/srv/app/.a.txt.rollcage-tmp")
        );
    }
}
