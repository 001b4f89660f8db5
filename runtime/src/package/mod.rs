//! Getting a revision onto the host: fetch (directory, archive, `file://`, `http(s)://`), verify its sha256 while
//! streaming, unpack safely into the deployment dir, and prune old deployment dirs.
//!
//! (Owned by the package-pipeline work; this file fixes the public API the rest of the runtime codes against.)

use crate::layout::{DeployLayout, GroupLayout};
use std::path::PathBuf;

/// Where a revision comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local directory, copied as the revision.
    Directory(PathBuf),
    /// A local archive file (tar, tar.gz, zip; detected by content).
    Archive(PathBuf),
    /// A `file://`, `http://` or `https://` URL of an archive.
    Url(url::Url),
}

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most entries (files, dirs, links) an archive may hold.
    pub max_entries: u64,
    /// Most bytes its files may unpack to.
    pub max_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        // Generous for real applications (a JVM app with its libs is ~50k entries / a few GiB), small enough that a
        // zip bomb cannot fill the disk.
        Self {
            max_entries: 200_000,
            max_bytes: 8 << 30,
        }
    }
}

/// How to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Expected sha256 of the archive, lowercase hex.
    pub expected_sha256: Option<String>,
    /// Unpack limits.
    pub limits: UnpackLimits,
}

/// What a fetch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// sha256 of the archive as fetched (lowercase hex); `None` for a directory source.
    pub sha256: Option<String>,
    /// Archive size in bytes.
    pub bytes: u64,
    /// Entries unpacked.
    pub entries: u64,
}

/// Fetching or unpacking failed. (Variants are filled in by the package-pipeline work.)
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Not implemented yet.
    #[error("package pipeline is not implemented yet")]
    NotImplemented,
}

/// Fetch `source` into `deploy` (bundle, `revision/`, `logs/`), verifying and unpacking as it streams.
pub async fn fetch(
    source: &Source,
    deploy: &DeployLayout,
    opts: &FetchOptions,
) -> Result<Fetched, PackageError> {
    let _ = (source, deploy, opts);
    Err(PackageError::NotImplemented)
}

/// Keep the newest `max_revisions` deployment dirs of the group, never deleting those in `keep`. Returns the ids
/// removed.
pub fn prune(
    group: &GroupLayout,
    max_revisions: usize,
    keep: &[&str],
) -> Result<Vec<String>, PackageError> {
    let _ = (group, max_revisions, keep);
    Err(PackageError::NotImplemented)
}
