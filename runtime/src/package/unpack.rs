//! The unpacker every source feeds: it turns archive entries (from tar, zip or a directory walk) into files below a
//! staging root, enforcing the limits (entries, bytes, depth, name and link-target lengths, and what it keeps in
//! memory), refusing hostile names and links and any path named twice (except a directory), clearing
//! setuid/setgid, and finally deciding whether a single wrapper directory is stripped the way CodeDeploy does.
//! Every name it quotes in an error is clipped ([`shown`]), so an error is a line whatever the archive holds.

use super::UnpackLimits;
use super::confined::{Confined, WriteError};
use super::entry_path::{
    LinkProblem, MAX_NAME_BYTES, MAX_PATH_BYTES, NameProblem, normalize, resolve_link,
};
use super::error::{EntryPosition, PackageError, SHOWN_NAME_BYTES, one_line, shown};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
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

/// Most bytes of paths and link targets the unpacker keeps until [`Unpacker::finish`] (every symlink, for the final
/// escape check, and directories whose archived mode is applied at the end). Everything else is forgotten once
/// written, so this is what bounds the unpacker's memory whatever the archive holds. 16 MiB is ~150,000 symlinks
/// with 100-byte names and targets (a large `node_modules` has a few thousand).
const MAX_TRACKED_BYTES: usize = 16 << 20;

/// A path's key in the duplicate check: 128 bits of its sha256 (16 bytes per entry, however long the path).
type PathKey = [u8; 16];

fn path_key(rel: &Path) -> PathKey {
    let digest = Sha256::digest(rel.as_os_str().as_bytes());
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The error for a name or link target over [`MAX_PATH_BYTES`].
pub(crate) fn name_too_long(what: &'static str, raw: &[u8]) -> PackageError {
    PackageError::NameTooLong {
        what,
        len: raw.len() as u64,
        limit: MAX_PATH_BYTES as u64,
        prefix: shown(raw),
    }
}

/// Unpacks entries below `root`.
pub(crate) struct Unpacker {
    out: Confined,
    root: PathBuf,
    origin: String,
    limits: UnpackLimits,
    entries: u64,
    bytes: u64,
    /// Every file and link unpacked so far, by path, and where it was: a second entry for the same path is refused
    /// (naming both), never allowed to replace the first. A directory may be listed twice (its later mode wins):
    /// that replaces nothing.
    seen: HashMap<PathKey, EntryPosition>,
    /// Symlinks created: relative path → raw target.
    links: HashMap<PathBuf, Vec<u8>>,
    /// Directories whose archived mode would stop us writing into them (no rwx for the owner), applied at the end.
    /// Other modes are applied at once.
    dir_modes: HashMap<PathBuf, u32>,
    /// Bytes held in `links` and `dir_modes`, bounded by [`MAX_TRACKED_BYTES`].
    tracked: usize,
    buf: Vec<u8>,
    /// Bytes free on the staging dir's filesystem when unpacking started (`None` when it cannot be told): an entry
    /// whose declared size would take the unpacked total past it is refused before it is written.
    free: Option<u64>,
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
            seen: HashMap::new(),
            links: HashMap::new(),
            dir_modes: HashMap::new(),
            tracked: 0,
            buf: vec![0; COPY_BUF],
            free: super::space::free_bytes(root).ok(),
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

    /// Where the next entry added will be, given the byte offset of its first header.
    pub(crate) fn next_position(&self, offset: Option<u64>) -> EntryPosition {
        EntryPosition {
            index: self.entries + 1,
            offset,
        }
    }

    /// Count `bytes` more of tracked state for entry `entry`, refusing past [`MAX_TRACKED_BYTES`].
    fn track(&mut self, bytes: usize, entry: &[u8]) -> Result<(), PackageError> {
        self.tracked = self.tracked.saturating_add(bytes);
        if self.tracked > MAX_TRACKED_BYTES {
            return Err(PackageError::TooMuchToTrack {
                limit: MAX_TRACKED_BYTES as u64,
                entry: shown(entry),
            });
        }
        Ok(())
    }

    /// Add one entry named `raw` (as archived) with permission bits `mode`; `offset` is the byte offset of its first
    /// header in the archive, when the format has one.
    pub(crate) fn add(
        &mut self,
        raw: &[u8],
        offset: Option<u64>,
        mode: u32,
        kind: Kind<'_>,
    ) -> Result<(), PackageError> {
        let position = self.next_position(offset);
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(PackageError::TooManyEntries {
                limit: self.limits.max_entries,
                entry: shown(raw),
            });
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(name_too_long("entry name", raw));
        }
        let entry = shown(raw);
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
            Err(NameProblem::ComponentTooLong) => {
                let long = raw
                    .split(|b| *b == b'/')
                    .find(|c| c.len() > MAX_NAME_BYTES)
                    .unwrap_or(raw);
                return Err(PackageError::NameTooLong {
                    what: "entry name component",
                    len: long.len() as u64,
                    limit: MAX_NAME_BYTES as u64,
                    prefix: shown(long),
                });
            }
            Err(NameProblem::Nul) => {
                return Err(PackageError::Malformed {
                    origin: self.origin.clone(),
                    entry: Some(entry),
                    detail: "the name has a NUL byte".into(),
                });
            }
        };
        let depth = rel.components().count() as u64;
        if depth > self.limits.max_depth {
            return Err(PackageError::TooDeep {
                entry,
                depth,
                limit: self.limits.max_depth,
            });
        }
        if !matches!(kind, Kind::Dir) {
            match self.seen.entry(path_key(&rel)) {
                Entry::Occupied(first) => {
                    return Err(PackageError::DuplicateEntry {
                        entry: shown(rel.as_os_str().as_bytes()),
                        first: *first.get(),
                        second: position,
                    });
                }
                Entry::Vacant(v) => {
                    v.insert(position);
                }
            }
        }
        let mode = mode & KEPT_MODE_BITS;
        match kind {
            Kind::Dir => {
                // A mode that leaves the owner rwx is set at once; any other would stop us writing the directory's
                // children (when not root), so it is applied at the end, children first.
                let now = mode & 0o700 == 0o700;
                self.out
                    .create_dir(&rel, now.then_some(mode))
                    .map_err(|e| self.write_error(e, &entry, &rel))?;
                if now {
                    self.dir_modes.remove(&rel);
                } else {
                    self.track(rel.as_os_str().len(), raw)?;
                    self.dir_modes.insert(rel, mode);
                }
            }
            Kind::File(reader, declared) => {
                self.write_file(&rel, &entry, reader, declared, mode)?
            }
            Kind::Symlink(target) => {
                if target.len() > MAX_PATH_BYTES {
                    return Err(name_too_long("symlink target", &target));
                }
                let dir = rel.parent().unwrap_or(Path::new(""));
                if resolve_link(dir, &target, &self.links).is_err() {
                    return Err(PackageError::LinkEscapes {
                        kind: "symlink",
                        entry,
                        target: shown(&target),
                    });
                }
                self.out
                    .create_symlink(&rel, &target)
                    .map_err(|e| self.write_error(e, &entry, &rel))?;
                self.track(rel.as_os_str().len() + target.len(), raw)?;
                self.links.insert(rel, target);
            }
            Kind::HardLink(target) => {
                if target.len() > MAX_PATH_BYTES {
                    return Err(name_too_long("hardlink target", &target));
                }
                let escapes = || PackageError::LinkEscapes {
                    kind: "hardlink",
                    entry: entry.clone(),
                    target: shown(&target),
                };
                let to = match normalize(&target) {
                    Ok(Some(to)) => to,
                    Ok(None) => {
                        return Err(PackageError::HardlinkTarget {
                            entry,
                            target: shown(&target),
                        });
                    }
                    Err(_) => return Err(escapes()),
                };
                self.out.create_hardlink(&rel, &to).map_err(|e| match e {
                    WriteError::BadLinkTarget => PackageError::HardlinkTarget {
                        entry: entry.clone(),
                        target: shown(&target),
                    },
                    e => self.write_error(e, &entry, &rel),
                })?;
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
        if let Some(free) = self.free
            && self.bytes.saturating_add(declared) > free
        {
            return Err(PackageError::NoSpace {
                path: self.root.clone(),
                what: format!(
                    "unpacking the revision (its entries' declared sizes, up to `{entry}`)"
                ),
                needed: self.bytes.saturating_add(declared),
                free,
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
        Ok(())
    }

    /// A failure reading an entry's bytes from the archive (truncated or corrupt stream).
    pub(crate) fn read_error(&self, entry: &str, e: std::io::Error) -> PackageError {
        PackageError::Malformed {
            origin: self.origin.clone(),
            entry: Some(entry.to_owned()),
            detail: one_line(&e.to_string(), 2 * SHOWN_NAME_BYTES),
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
            WriteError::Exists => PackageError::Conflict {
                entry,
                detail: "something is already at this path".into(),
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
        let mut out = self.out;
        let mut dirs: Vec<_> = self.dir_modes.into_iter().collect();
        // Children before their parents (a path sorts after its prefixes), so a read-only parent never blocks a
        // child's chmod, and neighbours are together so the walks share their prefixes.
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, mode) in &dirs {
            out.chmod_dir(rel, *mode).map_err(|e| match e {
                WriteError::Io(e) => PackageError::io("set the mode of", self.root.join(rel), e),
                _ => PackageError::Conflict {
                    entry: shown(rel.as_os_str().as_bytes()),
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
            let escapes = || PackageError::LinkEscapes {
                kind: "symlink",
                entry: shown(path.as_os_str().as_bytes()),
                target: shown(target),
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
