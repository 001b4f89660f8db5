//! A local directory as a revision: walked depth-first (sorted, so errors are deterministic) and fed to the same
//! unpacker as archives, so the same rules hold: symlinks must stay inside, special files are refused, limits apply,
//! setuid/setgid are cleared.

use super::error::PackageError;
use super::unpack::{Kind, Unpacker};
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Feed every entry below `src` to `u`.
pub(crate) fn copy_dir(src: &Path, u: &mut Unpacker) -> Result<(), PackageError> {
    walk(src, Path::new(""), u)
}

fn walk(src: &Path, rel: &Path, u: &mut Unpacker) -> Result<(), PackageError> {
    let dir = src.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
        })
        .map_err(|e| PackageError::io("list", &dir, e))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = src.join(&rel);
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| PackageError::io("stat", &path, e))?;
        let raw = rel.as_os_str().as_bytes();
        let ft = meta.file_type();
        let mode = meta.mode() & 0o7777;
        if ft.is_dir() {
            u.add(raw, None, mode, Kind::Dir)?;
            walk(src, &rel, u)?;
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| PackageError::io("read link", &path, e))?;
            u.add(
                raw,
                None,
                mode,
                Kind::Symlink(target.as_os_str().as_bytes().to_vec()),
            )?;
        } else if ft.is_file() {
            // O_NOFOLLOW: if the file was swapped for a symlink since the stat, refuse rather than follow it.
            let mut file: File = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| PackageError::io("open", &path, e))?;
            u.add(raw, None, mode, Kind::File(&mut file, meta.len()))?;
        } else {
            let kind = if ft.is_char_device() {
                "character device"
            } else if ft.is_block_device() {
                "block device"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            u.add(raw, None, mode, Kind::Special(kind))?;
        }
    }
    Ok(())
}
