//! The unpacker every source feeds: it turns archive entries (from tar, zip or a directory walk) into files below a
//! staging root, enforcing the entry and byte limits, refusing hostile names and links, clearing setuid/setgid, and
//! finally deciding whether a single wrapper directory is stripped the way CodeDeploy does.

use super::UnpackLimits;
use super::confined::{Confined, WriteError};
use super::entry_path::{LinkProblem, NameProblem, normalize, resolve_link};
use super::error::PackageError;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Copy buffer for file contents: large writes keep the syscall count low on big files.
const COPY_BUF: usize = 256 * 1024;

/// Permission bits kept from an archive: rwx for all plus sticky; setuid and setgid are always cleared.
const KEPT_MODE_BITS: u32 = 0o1777;

/// What one entry is.
pub(crate) enum Kind<'a> {
    /// A directory.
    Dir,
    /// A regular file with its contents and declared size.
    File(&'a mut dyn Read, u64),
    /// A symlink with its raw target.
    Symlink(Vec<u8>),
    /// A hardlink to an earlier entry (raw archive path).
    HardLink(Vec<u8>),
    /// A device, fifo or socket.
    Special(&'static str),
    /// Something else we refuse, described.
    Unsupported(String),
    /// Metadata-only entries (pax global headers) that carry nothing to write.
    Skip,
}

/// The result of a finished unpack.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// The directory that becomes `revision/`: the staging root, or the wrapper directory inside it.
    pub(crate) revision: PathBuf,
    /// Entries seen.
    pub(crate) entries: u64,
}

/// Unpacks entries below `root`.
pub(crate) struct Unpacker {
    out: Confined,
    root: PathBuf,
    origin: String,
    limits: UnpackLimits,
    entries: u64,
    bytes: u64,
    /// Symlinks created: relative path → raw target.
    links: HashMap<PathBuf, Vec<u8>>,
    /// The entry name that made each symlink, for errors.
    link_entries: HashMap<PathBuf, String>,
    /// Explicit directory entries and their archived modes, applied at the end (a read-only directory must stay
    /// writable while its children are unpacked).
    dir_modes: Vec<(PathBuf, u32)>,
    buf: Vec<u8>,
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl Unpacker {
    /// Start unpacking into the (existing, empty) directory `root`.
    pub(crate) fn new(
        root: &Path,
        origin: &str,
        limits: UnpackLimits,
    ) -> Result<Self, PackageError> {
        let out = Confined::open(root).map_err(|e| PackageError::io("open", root, e))?;
        Ok(Self {
            out,
            root: root.to_owned(),
            origin: origin.to_owned(),
            limits,
            entries: 0,
            bytes: 0,
            links: HashMap::new(),
            link_entries: HashMap::new(),
            dir_modes: Vec::new(),
            buf: vec![0; COPY_BUF],
        })
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> UnpackLimits {
        self.limits
    }

    /// The origin used in error messages.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Add one entry named `raw` (as archived) with permission bits `mode`.
    pub(crate) fn add(
        &mut self,
        raw: &[u8],
        mode: u32,
        kind: Kind<'_>,
    ) -> Result<(), PackageError> {
        let entry = lossy(raw);
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(PackageError::TooManyEntries {
                limit: self.limits.max_entries,
                entry,
            });
        }
        match kind {
            Kind::Special(kind) => return Err(PackageError::SpecialFile { entry, kind }),
            Kind::Unsupported(kind) => return Err(PackageError::UnsupportedEntry { entry, kind }),
            Kind::Skip => return Ok(()),
            _ => {}
        }
        let rel = match normalize(raw) {
            Ok(Some(rel)) => rel,
            Ok(None) if matches!(kind, Kind::Dir) => return Ok(()),
            Ok(None) => {
                return Err(PackageError::Conflict {
                    entry,
                    detail: "a non-directory names the revision root".into(),
                });
            }
            Err(NameProblem::Absolute) => return Err(PackageError::AbsolutePath { entry }),
            Err(NameProblem::ParentDir) => return Err(PackageError::ParentTraversal { entry }),
        };
        let mode = mode & KEPT_MODE_BITS;
        match kind {
            Kind::Dir => {
                self.out
                    .create_dir(&rel)
                    .map_err(|e| self.write_error(e, &entry, &rel))?;
                self.dir_modes.push((rel, mode));
            }
            Kind::File(reader, declared) => {
                self.write_file(&rel, &entry, reader, declared, mode)?
            }
            Kind::Symlink(target) => {
                let dir = rel.parent().unwrap_or(Path::new(""));
                if resolve_link(dir, &target, &self.links).is_err() {
                    return Err(PackageError::LinkEscapes {
                        kind: "symlink",
                        entry,
                        target: lossy(&target),
                    });
                }
                self.out
                    .create_symlink(&rel, &target)
                    .map_err(|e| self.write_error(e, &entry, &rel))?;
                self.links.insert(rel.clone(), target);
                self.link_entries.insert(rel, entry);
            }
            Kind::HardLink(target) => {
                let escapes = || PackageError::LinkEscapes {
                    kind: "hardlink",
                    entry: entry.clone(),
                    target: lossy(&target),
                };
                let to = match normalize(&target) {
                    Ok(Some(to)) => to,
                    Ok(None) => {
                        return Err(PackageError::HardlinkTarget {
                            entry,
                            target: lossy(&target),
                        });
                    }
                    Err(_) => return Err(escapes()),
                };
                self.out.create_hardlink(&rel, &to).map_err(|e| match e {
                    WriteError::BadLinkTarget => PackageError::HardlinkTarget {
                        entry: entry.clone(),
                        target: lossy(&target),
                    },
                    e => self.write_error(e, &entry, &rel),
                })?;
                self.forget_link(&rel);
            }
            Kind::Special(_) | Kind::Unsupported(_) | Kind::Skip => {}
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        rel: &Path,
        entry: &str,
        reader: &mut dyn Read,
        declared: u64,
        mode: u32,
    ) -> Result<(), PackageError> {
        let max = self.limits.max_bytes;
        if self.bytes.saturating_add(declared) > max {
            return Err(PackageError::TooManyBytes {
                limit: max,
                entry: entry.to_owned(),
            });
        }
        let mut file = self
            .out
            .create_file(rel)
            .map_err(|e| self.write_error(e, entry, rel))?;
        let path = self.root.join(rel);
        // Count what is actually read, not the declared size: a zip's sizes can lie.
        loop {
            let n = match reader.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(entry, e)),
            };
            self.bytes += n as u64;
            if self.bytes > max {
                return Err(PackageError::TooManyBytes {
                    limit: max,
                    entry: entry.to_owned(),
                });
            }
            file.write_all(&self.buf[..n])
                .map_err(|e| PackageError::io("write", &path, e))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| PackageError::io("set the mode of", &path, e))?;
        self.forget_link(rel);
        Ok(())
    }

    /// A later entry replaced the symlink at `rel`.
    fn forget_link(&mut self, rel: &Path) {
        if self.links.remove(rel).is_some() {
            self.link_entries.remove(rel);
        }
    }

    /// A failure reading an entry's bytes from the archive (truncated or corrupt stream).
    pub(crate) fn read_error(&self, entry: &str, e: std::io::Error) -> PackageError {
        PackageError::Malformed {
            origin: self.origin.clone(),
            entry: Some(entry.to_owned()),
            detail: e.to_string(),
        }
    }

    fn write_error(&self, e: WriteError, entry: &str, rel: &Path) -> PackageError {
        let entry = entry.to_owned();
        match e {
            WriteError::ThroughSymlink(link) => PackageError::ThroughSymlink {
                entry,
                link: link.display().to_string(),
            },
            WriteError::NotADirectory(p) => PackageError::Conflict {
                entry,
                detail: format!("`{}` is not a directory", p.display()),
            },
            WriteError::ReplacesDirectory => PackageError::Conflict {
                entry,
                detail: "it would replace a directory".into(),
            },
            WriteError::DirectoryOverFile => PackageError::Conflict {
                entry,
                detail: "a non-directory already exists at this path".into(),
            },
            WriteError::BadLinkTarget => PackageError::Conflict {
                entry,
                detail: "link target is not a regular file".into(),
            },
            WriteError::Io(e) => PackageError::io("write", self.root.join(rel), e),
        }
    }

    /// Finish: pick the revision root (stripping a CodeDeploy wrapper directory when `strip_wrapper`), check every
    /// symlink against it as the kernel would resolve it, then apply the archived directory modes.
    pub(crate) fn finish(self, strip_wrapper: bool) -> Result<Unpacked, PackageError> {
        let wrapper = if strip_wrapper {
            find_wrapper(&self.root)?
        } else {
            None
        };
        self.check_links(wrapper.as_deref())?;
        let mut dirs = self.dir_modes;
        // Deepest first, so a read-only parent never blocks a child's chmod.
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, mode) in &dirs {
            self.out.chmod_dir(rel, *mode).map_err(|e| match e {
                WriteError::Io(e) => PackageError::io("set the mode of", self.root.join(rel), e),
                _ => PackageError::Conflict {
                    entry: rel.display().to_string(),
                    detail: "directory was replaced by a later entry".into(),
                },
            })?;
        }
        let revision = match &wrapper {
            Some(w) => self.root.join(w),
            None => self.root.clone(),
        };
        Ok(Unpacked {
            revision,
            entries: self.entries,
        })
    }

    /// Every symlink must resolve inside the final revision root, following the other symlinks of the archive. A
    /// link checked when it was created may escape later, through links created after it (`e -> d/..`, then
    /// `d -> .`), or because the wrapper directory is stripped (`../x` from the wrapper's top level).
    fn check_links(&self, wrapper: Option<&std::ffi::OsStr>) -> Result<(), PackageError> {
        let rebase = |p: &Path| -> Option<PathBuf> {
            match wrapper {
                Some(w) => p.strip_prefix(w).ok().map(Path::to_owned),
                None => Some(p.to_owned()),
            }
        };
        let plain: HashMap<PathBuf, Vec<u8>> = self
            .links
            .iter()
            .filter_map(|(k, t)| rebase(k).map(|k| (k, t.clone())))
            .collect();
        let mut all: Vec<_> = self.links.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        for (path, target) in all {
            let entry = self
                .link_entries
                .get(path)
                .cloned()
                .unwrap_or_else(|| path.display().to_string());
            let escapes = || PackageError::LinkEscapes {
                kind: "symlink",
                entry: entry.clone(),
                target: lossy(target),
            };
            let Some(rel) = rebase(path) else {
                return Err(escapes());
            };
            let dir = rel.parent().unwrap_or(Path::new(""));
            match resolve_link(dir, target, &plain) {
                Ok(_) => {}
                Err(LinkProblem::Escapes | LinkProblem::TooManyLinks) => return Err(escapes()),
            }
        }
        Ok(())
    }
}

/// CodeDeploy's rule: the archive root holds exactly one entry, a directory, which contains a name matching
/// /appspec/i. Then that directory is the revision.
fn find_wrapper(root: &Path) -> Result<Option<OsString>, PackageError> {
    let list = |dir: &Path| -> Result<Vec<OsString>, PackageError> {
        std::fs::read_dir(dir)
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect())
            .map_err(|e| PackageError::io("list", dir, e))
    };
    let top = list(root)?;
    let [only] = top.as_slice() else {
        return Ok(None);
    };
    let dir = root.join(only);
    let is_dir = std::fs::symlink_metadata(&dir)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if !is_dir {
        return Ok(None);
    }
    let has_appspec = list(&dir)?
        .iter()
        .any(|n| n.to_string_lossy().to_lowercase().contains("appspec"));
    Ok(has_appspec.then(|| only.clone()))
}
