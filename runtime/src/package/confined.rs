//! Writing below one directory without ever following a symlink: every path is walked component by component with
//! `openat(O_DIRECTORY | O_NOFOLLOW)` from a descriptor of the root, and leaves are created with `O_EXCL |
//! O_NOFOLLOW` (or `mkdirat`/`symlinkat`/`linkat`, which never follow the last component). Whatever an archive
//! holds, nothing can be created outside the root, and nothing is written through a symlink.

use rustix::fs::{
    AtFlags, CWD, FileType, Mode, OFlags, linkat, mkdirat, openat, statat, symlinkat,
};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Why a write below the root was refused or failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// This prefix of the path is a symlink.
    ThroughSymlink(PathBuf),
    /// This prefix of the path exists and is not a directory.
    NotADirectory(PathBuf),
    /// The path is an existing directory and the new entry is not one.
    ReplacesDirectory,
    /// The path exists and is not a directory, but the new entry is one.
    DirectoryOverFile,
    /// A non-directory is already at the path (an earlier entry; the unpacker refuses duplicates before this).
    Exists,
    /// A hardlink target that is missing or not a regular file.
    BadLinkTarget,
    /// Any other I/O error.
    Io(std::io::Error),
}

impl From<Errno> for WriteError {
    fn from(e: Errno) -> Self {
        Self::Io(e.into())
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
const NEW_FILE_FLAGS: OFlags = OFlags::WRONLY
    .union(OFlags::CREATE)
    .union(OFlags::EXCL)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Directory descriptors kept open along the last path walked (its deepest levels). Enough that an archive listed
/// depth first never re-walks from the root while it goes down or climbs back a few levels; few enough to be no
/// burden on the process's descriptor limit whatever `max_depth` is.
const OPEN_WINDOW: usize = 64;

/// A directory we write below.
pub(crate) struct Confined {
    root: OwnedFd,
    /// The components of the last path walked.
    names: Vec<OsString>,
    /// Descriptors of its deepest directories: the last one is the directory `names` names, each one before it its
    /// parent; at most [`OPEN_WINDOW`]. A walk reuses the longest prefix it shares with the last one, so an archive
    /// listed depth first (as every tar tool writes it) costs about one `openat` per directory, not one per ancestor
    /// per entry (the quadratic that made a 5,000-deep tree take a minute). Valid for the whole unpack because
    /// directories are never removed or replaced.
    open: VecDeque<OwnedFd>,
}

fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(OsStr::new(".")),
    )
}

impl Confined {
    /// Open `root` (which must be a real directory, not a symlink).
    pub(crate) fn open(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: openat(CWD, root, DIR_FLAGS, Mode::empty())?,
            names: Vec::new(),
            open: VecDeque::new(),
        })
    }

    /// Walk to directory `rel` below the root, creating missing components when `create`, starting from the deepest
    /// directory still open that `rel` shares with the previous walk.
    fn walk(&mut self, rel: &Path, create: bool) -> Result<&OwnedFd, WriteError> {
        let shared = self
            .names
            .iter()
            .zip(rel.iter())
            .take_while(|(name, comp)| name.as_os_str() == *comp)
            .count();
        // Close what lies below the shared prefix; if nothing of it is still open, start again from the root.
        while self.names.len() > shared {
            self.names.pop();
            self.open.pop_back();
        }
        if self.open.is_empty() {
            self.names.clear();
        }
        for (i, comp) in rel.iter().enumerate().skip(self.names.len()) {
            let cur = self.open.back().unwrap_or(&self.root);
            let so_far = || rel.iter().take(i + 1).collect::<PathBuf>();
            let fd = match openat(cur, comp, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match mkdirat(cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(cur, comp, DIR_FLAGS, Mode::empty())
                        .map_err(|e| classify(cur, comp, &so_far(), e))?
                }
                Err(e) => return Err(classify(cur, comp, &so_far(), e)),
            };
            self.names.push(comp.to_owned());
            self.open.push_back(fd);
            if self.open.len() > OPEN_WINDOW {
                self.open.pop_front();
            }
        }
        Ok(self.open.back().unwrap_or(&self.root))
    }

    /// The (created if missing) parent directory `rel`.
    fn parent(&mut self, rel: &Path) -> Result<&OwnedFd, WriteError> {
        self.walk(rel, true)
    }

    /// Create directory `rel` (or accept an existing one), and set `mode` on it when given.
    pub(crate) fn create_dir(&mut self, rel: &Path, mode: Option<u32>) -> Result<(), WriteError> {
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        match mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            Err(Errno::EXIST) => match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) => return Err(WriteError::DirectoryOverFile),
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(classify(dir, name, rel, e)),
        }
        if let Some(mode) = mode {
            let fd = openat(dir, name, DIR_FLAGS, Mode::empty())?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        }
        Ok(())
    }

    /// Create regular file `rel`, open for writing, mode 0600 until the caller sets the archived mode. Something
    /// already at `rel` is an error: an entry never replaces another.
    pub(crate) fn create_file(&mut self, rel: &Path) -> Result<File, WriteError> {
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        match openat(dir, name, NEW_FILE_FLAGS, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::EXIST) => Err(exists(dir, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Create symlink `rel` -> `target`. The target is not checked here. Something already at `rel` is an error.
    pub(crate) fn create_symlink(&mut self, rel: &Path, target: &[u8]) -> Result<(), WriteError> {
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        match symlinkat(target, dir, name) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(exists(dir, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Create hardlink `rel` to the regular file `target` (both relative to the root, neither walked through a
    /// symlink). Something already at `rel` is an error.
    pub(crate) fn create_hardlink(&mut self, rel: &Path, target: &Path) -> Result<(), WriteError> {
        let (tparent, tname) = split(target);
        // A descriptor of its own: the walk to `rel`'s parent below may close the cached one.
        let tdir = self
            .walk(tparent, false)
            .and_then(|fd| Ok(openat(fd, ".", DIR_FLAGS, Mode::empty())?))
            .map_err(|_| WriteError::BadLinkTarget)?;
        match statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            _ => return Err(WriteError::BadLinkTarget),
        }
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        // No AT_SYMLINK_FOLLOW: the link is made to the target entry itself.
        match linkat(&tdir, tname, dir, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(exists(dir, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Set the mode of directory `rel` (walked without following symlinks). Called children first, so the walks
    /// share their prefixes.
    pub(crate) fn chmod_dir(&mut self, rel: &Path, mode: u32) -> Result<(), WriteError> {
        let fd = self.walk(rel, false)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }
}

/// What is in the way at `name`: a directory, or an earlier non-directory entry.
fn exists(dir: &OwnedFd, name: &OsStr) -> WriteError {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            WriteError::ReplacesDirectory
        }
        Ok(_) => WriteError::Exists,
        Err(e) => e.into(),
    }
}

/// Turn an `openat` failure on `comp` into "is a symlink" / "is not a directory" when that is the cause.
fn classify(dir: &OwnedFd, comp: &OsStr, so_far: &Path, e: Errno) -> WriteError {
    if (e == Errno::LOOP || e == Errno::NOTDIR)
        && let Ok(st) = statat(dir, comp, AtFlags::SYMLINK_NOFOLLOW)
    {
        return match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => WriteError::ThroughSymlink(so_far.to_owned()),
            _ => WriteError::NotADirectory(so_far.to_owned()),
        };
    }
    WriteError::Io(e.into())
}
