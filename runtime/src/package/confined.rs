//! Writing below one directory without ever following a symlink: every path is walked component by component with
//! `openat(O_DIRECTORY | O_NOFOLLOW)` from a descriptor of the root, and leaves are created with `O_EXCL |
//! O_NOFOLLOW` (or `mkdirat`/`symlinkat`/`linkat`, which never follow the last component). Whatever an archive
//! holds, nothing can be created outside the root, and nothing is written through a symlink.

use rustix::fs::{
    AtFlags, CWD, FileType, Mode, OFlags, linkat, mkdirat, openat, statat, symlinkat, unlinkat,
};
use rustix::io::Errno;
use std::ffi::OsStr;
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

/// A directory we write below.
pub(crate) struct Confined {
    root: OwnedFd,
    /// The parent directory of the previous entry: archives list siblings together, so this saves most walks.
    /// Valid for the whole unpack because directories are never removed or replaced.
    last: Option<(PathBuf, OwnedFd)>,
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
            last: None,
        })
    }

    /// Walk to directory `rel` below the root, creating missing components when `create`.
    fn walk(&self, rel: &Path, create: bool) -> Result<OwnedFd, WriteError> {
        let mut cur = openat(&self.root, ".", DIR_FLAGS, Mode::empty())?;
        let mut so_far = PathBuf::new();
        for comp in rel.iter() {
            so_far.push(comp);
            cur = match openat(&cur, comp, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&cur, comp, DIR_FLAGS, Mode::empty())
                        .map_err(|e| classify(&cur, comp, &so_far, e))?
                }
                Err(e) => return Err(classify(&cur, comp, &so_far, e)),
            };
        }
        Ok(cur)
    }

    /// The (created if missing) parent directory `rel`, from the one-entry cache when possible.
    fn parent(&mut self, rel: &Path) -> Result<&OwnedFd, WriteError> {
        if rel.as_os_str().is_empty() {
            return Ok(&self.root);
        }
        let hit = matches!(&self.last, Some((p, _)) if p == rel);
        if !hit {
            let fd = self.walk(rel, true)?;
            self.last = Some((rel.to_owned(), fd));
        }
        match &self.last {
            Some((_, fd)) => Ok(fd),
            None => Ok(&self.root),
        }
    }

    /// Create directory `rel` (or accept an existing one).
    pub(crate) fn create_dir(&mut self, rel: &Path) -> Result<(), WriteError> {
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        match mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(()),
                Ok(_) => Err(WriteError::DirectoryOverFile),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(classify(dir, name, rel, e)),
        }
    }

    /// Create regular file `rel` (replacing an earlier non-directory entry), open for writing, mode 0600 until the
    /// caller sets the archived mode.
    pub(crate) fn create_file(&mut self, rel: &Path) -> Result<File, WriteError> {
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        let fd = match openat(dir, name, NEW_FILE_FLAGS, Mode::from_raw_mode(0o600)) {
            Err(Errno::EXIST) => {
                remove_leaf(dir, name)?;
                openat(dir, name, NEW_FILE_FLAGS, Mode::from_raw_mode(0o600))?
            }
            other => other?,
        };
        Ok(File::from(fd))
    }

    /// Create symlink `rel` -> `target` (replacing an earlier non-directory entry). The target is not checked here.
    pub(crate) fn create_symlink(&mut self, rel: &Path, target: &[u8]) -> Result<(), WriteError> {
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        match symlinkat(target, dir, name) {
            Err(Errno::EXIST) => {
                remove_leaf(dir, name)?;
                Ok(symlinkat(target, dir, name)?)
            }
            other => Ok(other?),
        }
    }

    /// Create hardlink `rel` to the regular file `target` (both relative to the root, neither walked through a
    /// symlink).
    pub(crate) fn create_hardlink(&mut self, rel: &Path, target: &Path) -> Result<(), WriteError> {
        let (tparent, tname) = split(target);
        let tdir = self
            .walk(tparent, false)
            .map_err(|_| WriteError::BadLinkTarget)?;
        match statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            _ => return Err(WriteError::BadLinkTarget),
        }
        let (parent, name) = split(rel);
        let dir = self.parent(parent)?;
        // No AT_SYMLINK_FOLLOW: the link is made to the target entry itself.
        match linkat(&tdir, tname, dir, name, AtFlags::empty()) {
            Err(Errno::EXIST) => {
                remove_leaf(dir, name)?;
                Ok(linkat(&tdir, tname, dir, name, AtFlags::empty())?)
            }
            other => Ok(other?),
        }
    }

    /// Set the mode of directory `rel` (walked without following symlinks).
    pub(crate) fn chmod_dir(&self, rel: &Path, mode: u32) -> Result<(), WriteError> {
        let fd = self.walk(rel, false)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }
}

/// Remove an existing non-directory leaf so an entry can replace it (tar semantics: the later entry wins).
fn remove_leaf(dir: &OwnedFd, name: &OsStr) -> Result<(), WriteError> {
    let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return Err(WriteError::ReplacesDirectory);
    }
    unlinkat(dir, name, AtFlags::empty())?;
    Ok(())
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
