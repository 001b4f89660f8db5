//! What the validator may ask about the revision the AppSpec came with: what is at a revision-relative path.
//!
//! An unpacked directory answers through [`DirRevision`]; `rollcage appspec check` answers for an archive from its
//! entry list without unpacking it. Keeping this a trait keeps the validator free of I/O decisions.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// The first four bytes of every WebAssembly binary (`\0asm`).
pub const WASM_MAGIC: [u8; 4] = *b"\0asm";

/// What a revision-relative path resolves to (symlinks followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionEntry {
    /// Nothing there (or a dangling symlink).
    Missing,
    /// A symlink on the way leads outside the revision.
    Escapes {
        /// Where it leads, as far as known.
        target: String,
    },
    /// A directory.
    Directory,
    /// A regular file.
    File {
        /// Starts with [`WASM_MAGIC`].
        wasm: bool,
    },
    /// A device, fifo, socket, …
    Other,
}

/// A revision the validator can look into.
pub trait RevisionView {
    /// Resolve `relative` (already checked to be relative and free of `..`) inside the revision.
    fn lookup(&self, relative: &str) -> RevisionEntry;
}

/// An unpacked revision directory.
#[derive(Debug, Clone)]
pub struct DirRevision {
    root: PathBuf,
}

impl DirRevision {
    /// The revision unpacked at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
}

impl RevisionView for DirRevision {
    fn lookup(&self, relative: &str) -> RevisionEntry {
        let Ok(root) = self.root.canonicalize() else {
            return RevisionEntry::Missing;
        };
        let resolved = match root.join(relative).canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return missing_or_escaping(&root, relative);
            }
            Err(_) => return RevisionEntry::Other,
        };
        if !resolved.starts_with(&root) {
            return RevisionEntry::Escapes {
                target: resolved.display().to_string(),
            };
        }
        match std::fs::metadata(&resolved) {
            Ok(m) if m.is_dir() => RevisionEntry::Directory,
            Ok(m) if m.is_file() => {
                let mut magic = [0u8; 4];
                let wasm = File::open(&resolved)
                    .and_then(|mut f| f.read_exact(&mut magic))
                    .is_ok()
                    && magic == WASM_MAGIC;
                RevisionEntry::File { wasm }
            }
            Ok(_) => RevisionEntry::Other,
            Err(_) => RevisionEntry::Missing,
        }
    }
}

/// `relative` does not resolve: still say it escapes when the part that does exist already leads outside (a
/// symlink to `../..` followed by a name that is not there).
fn missing_or_escaping(root: &Path, relative: &str) -> RevisionEntry {
    let full = root.join(relative);
    for ancestor in full.ancestors().skip(1) {
        if let Ok(resolved) = ancestor.canonicalize() {
            if !resolved.starts_with(root) {
                return RevisionEntry::Escapes {
                    target: resolved.display().to_string(),
                };
            }
            break;
        }
    }
    RevisionEntry::Missing
}
