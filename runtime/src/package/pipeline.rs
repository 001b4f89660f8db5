//! The blocking half of a fetch: create the deployment dir, unpack into a temporary dir inside it while the archive
//! is hashed and kept as [`Keep`] says, verify the checksum, then rename the revision into place (and the archive
//! into the host's bundle store). On any error the staging dir and a half-written store file are removed, and so is
//! the deployment dir if this fetch created it.

use super::archive::{unpack_tar, unpack_zip};
use super::dir_source::copy_dir;
use super::error::{PackageError, SHOWN_NAME_BYTES, one_line};
use super::format::{Format, SNIFF_LEN, detect, head_hex};
use super::gunzip::Gunzip;
use super::store::BundleStore;
use super::stream::{ChunkSource, Sink, SourceFailure, Tee};
use super::unpack::{Unpacked, Unpacker};
use super::{Fetched, UnpackLimits};
use crate::layout::DeployLayout;
use std::path::{Path, PathBuf};

/// What becomes of an archive's bytes.
pub(crate) enum Keep {
    /// Written to the host's bundle store under their sha256 once verified; the deployment dir refers to them.
    Store(BundleStore),
    /// Not kept (`rollcage local`, which has no store): staged in the staging dir during the fetch (the format is
    /// known only once bytes flowed, and zip needs random access), and removed with it.
    Nowhere,
    /// The archive already is the store's file `path`, named `sha256`: read in place, never copied. When the caller
    /// hashed it while writing it for this fetch (`verified`), it is not hashed again.
    Stored {
        /// The file.
        path: PathBuf,
        /// Its name: the sha256 it was verified to have.
        sha256: String,
        /// The caller verified it while writing it, just now.
        verified: bool,
    },
}

/// Removes the deployment dir on drop unless committed, when this fetch created it.
struct DeployDirGuard {
    dir: PathBuf,
    created: bool,
    committed: bool,
}

impl DeployDirGuard {
    /// Create the deployment dir private (`crate::layout::ensure_private_dir`: only the agent enters it).
    fn create(dir: &Path) -> Result<Self, PackageError> {
        let created = crate::layout::ensure_private_dir(dir)
            .map_err(|e| PackageError::io("create", dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            created,
            committed: false,
        })
    }
}

impl Drop for DeployDirGuard {
    fn drop(&mut self) {
        if self.created
            && !self.committed
            && let Err(e) = std::fs::remove_dir_all(&self.dir)
        {
            tracing::warn!(path = %self.dir.display(), error = %e, "could not remove failed deployment dir");
        }
    }
}

/// The most bytes a bundle may have: what it may unpack to, plus room for headers (a few KiB per entry covers tar
/// headers with long names and zip's local and central records) and padding. Anything larger cannot be a
/// legitimate archive within the limits, and must not fill the disk.
pub(crate) fn bundle_limit(limits: &UnpackLimits) -> u64 {
    limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(4096))
        .saturating_add(1 << 20)
}

fn staging_dir(deploy: &Path) -> Result<tempfile::TempDir, PackageError> {
    tempfile::Builder::new()
        .prefix("staging-")
        .tempdir_in(deploy)
        .map_err(|e| PackageError::io("create staging dir in", deploy, e))
}

/// Fetch an archive whose bytes come from `source`, keeping them as `keep` says.
pub(crate) fn fetch_archive(
    source: Box<dyn ChunkSource>,
    origin: &str,
    deploy: &DeployLayout,
    expected: Option<&str>,
    limits: UnpackLimits,
    keep: Keep,
) -> Result<Fetched, PackageError> {
    let mut guard = DeployDirGuard::create(deploy.dir())?;
    let staging = staging_dir(deploy.dir())?;
    // The file being written (if any), and the file zip reads back once the checksum matched.
    let (incoming, copy, archive_path) = match &keep {
        Keep::Store(store) => {
            let tmp = store.incoming()?;
            let file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| PackageError::io("open", tmp.path(), e))?;
            let path = tmp.path().to_owned();
            (Some(tmp), Some(file), path)
        }
        Keep::Nowhere => {
            let path = staging.path().join("bundle");
            let file = std::fs::File::create_new(&path)
                .map_err(|e| PackageError::io("create", &path, e))?;
            (None, Some(file), path)
        }
        Keep::Stored { path, .. } => (None, None, path.clone()),
    };
    let sink = Sink {
        hash: !matches!(keep, Keep::Stored { verified: true, .. }),
        copy,
    };
    let root = staging.path().join("root");
    std::fs::create_dir(&root).map_err(|e| PackageError::io("create", &root, e))?;
    // A failing source surfaces downstream as a corrupt archive or a read error; report what really happened.
    let source_err = |tee: &Tee, fallback: PackageError| match tee.failure() {
        Some(SourceFailure::Read(detail)) => PackageError::Download {
            origin: origin.to_owned(),
            detail: detail.clone(),
        },
        Some(SourceFailure::TooLarge(limit)) => PackageError::BundleTooLarge {
            origin: origin.to_owned(),
            limit: *limit,
        },
        None => fallback,
    };

    let mut tee = Tee::start(source, sink, bundle_limit(&limits))
        .map_err(|e| PackageError::io("start hashing", &archive_path, e))?;
    let head = match tee.peek(SNIFF_LEN) {
        Ok(head) => head,
        Err(e) => {
            return Err(source_err(
                &tee,
                PackageError::io("write", &archive_path, e),
            ));
        }
    };
    let format = detect(head).ok_or_else(|| PackageError::UnknownFormat {
        origin: origin.to_owned(),
        head: head_hex(head),
    })?;
    tracing::debug!(origin, ?format, "detected bundle format");

    let mut unpacker = Unpacker::new(&root, origin, limits)?;
    let streamed = match format {
        Format::Tar => unpack_tar(&mut tee, &mut unpacker),
        Format::Gzip => {
            // Multi-member, like `gzip -d`; reads straight from the tee's chunks (no extra buffer copy).
            let mut gz = Gunzip::new(&mut tee);
            let unpacked = unpack_tar(&mut gz, &mut unpacker).and_then(|()| {
                // Decompress the tail after the tar end marker too, so the gzip CRC and length are checked.
                std::io::copy(&mut gz, &mut std::io::sink())
                    .map(|_| ())
                    .map_err(|e| PackageError::Malformed {
                        origin: origin.to_owned(),
                        entry: None,
                        detail: one_line(&e.to_string(), 2 * SHOWN_NAME_BYTES),
                    })
            });
            // Bytes after the last member explain a failure better than what the tar reader made of it.
            match gz.trailing() {
                Some(t) => Err(PackageError::TrailingData {
                    origin: origin.to_owned(),
                    end: t.end,
                    trailing: t.bytes,
                }),
                None => unpacked,
            }
        }
        Format::Zip => Ok(()),
    };
    if let Err(e) = streamed {
        return Err(source_err(&tee, e));
    }
    let (hashed, bytes) = match tee.finish() {
        Ok(done) => done,
        Err(e) => {
            return Err(source_err(
                &tee,
                PackageError::io("write", &archive_path, e),
            ));
        }
    };
    drop(tee);
    let actual = match (hashed, &keep) {
        (Some(actual), _) => actual,
        // Not hashed: a stored archive its caller verified while writing it, named by its sha256.
        (None, Keep::Stored { sha256, .. }) => sha256.clone(),
        (None, _) => return Err(PackageError::Task("the archive was not hashed".into())),
    };
    if let Keep::Stored { path, sha256, .. } = &keep
        && *sha256 != actual
    {
        // The file changed since it was verified (disk error, tampering): drop it, so that the next fetch of this
        // revision downloads it again instead of failing on it forever.
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a corrupt stored bundle");
        }
        return Err(PackageError::StoredMismatch {
            path: path.clone(),
            expected: sha256.clone(),
            actual,
        });
    }
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(PackageError::ChecksumMismatch {
            origin: origin.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    // Zip needs random access: it is unpacked from the archive file, after the checksum matched.
    if format == Format::Zip {
        unpack_zip(&archive_path, &mut unpacker)?;
    }
    let unpacked = unpacker.finish(true)?;
    let reference = match (&keep, incoming) {
        (Keep::Store(store), Some(tmp)) => {
            // Named by the sha256 just computed over exactly these bytes; a file already there has the same bytes.
            let dest = store.dir().join(&actual);
            tmp.persist(&dest)
                .map_err(|e| PackageError::io("rename into place", &dest, e.error))?;
            Some(actual.as_str())
        }
        (Keep::Stored { .. }, _) => Some(actual.as_str()),
        _ => None,
    };
    commit(deploy, &unpacked, reference)?;
    guard.committed = true;
    tracing::info!(origin, sha256 = %actual, bytes, entries = unpacked.entries, "bundle fetched and unpacked");
    Ok(Fetched {
        sha256: Some(actual),
        bytes,
        entries: unpacked.entries,
    })
}

/// Copy a local directory as the revision.
pub(crate) fn fetch_directory(
    src: &Path,
    deploy: &DeployLayout,
    limits: UnpackLimits,
) -> Result<Fetched, PackageError> {
    let meta = std::fs::metadata(src).map_err(|e| PackageError::io("stat", src, e))?;
    if !meta.is_dir() {
        return Err(PackageError::InvalidSource {
            input: src.display().to_string(),
            reason: "not a directory".into(),
        });
    }
    let mut guard = DeployDirGuard::create(deploy.dir())?;
    let staging = staging_dir(deploy.dir())?;
    let root = staging.path().join("root");
    std::fs::create_dir(&root).map_err(|e| PackageError::io("create", &root, e))?;
    let origin = src.display().to_string();
    let mut unpacker = Unpacker::new(&root, &origin, limits)?;
    copy_dir(src, &mut unpacker)?;
    // A directory is taken as is: CodeDeploy strips wrappers only from archives.
    let unpacked = unpacker.finish(false)?;
    commit(deploy, &unpacked, None)?;
    guard.committed = true;
    tracing::info!(
        origin,
        entries = unpacked.entries,
        "directory revision copied"
    );
    Ok(Fetched {
        sha256: None,
        bytes: 0,
        entries: unpacked.entries,
    })
}

/// Move the staged revision into place, record which stored archive it came from (`bundle.sha256`, when the archive
/// is in the host's store) and create `logs/`. A previous fetch into the same deployment dir is replaced.
fn commit(
    deploy: &DeployLayout,
    unpacked: &Unpacked,
    stored_sha256: Option<&str>,
) -> Result<(), PackageError> {
    let revision = deploy.revision_dir();
    let reference = deploy.bundle_ref_file();
    remove_if_present(&revision)?;
    remove_if_present(&reference)?;
    std::fs::rename(&unpacked.revision, &revision)
        .map_err(|e| PackageError::io("rename into place", &revision, e))?;
    if let Some(sha) = stored_sha256
        && let Err(e) = std::fs::write(&reference, format!("{sha}\n"))
    {
        let _ = std::fs::remove_dir_all(&revision);
        return Err(PackageError::io("write", &reference, e));
    }
    let logs = deploy.logs_dir();
    crate::layout::ensure_private_dir(&logs)
        .map(|_| ())
        .map_err(|e| PackageError::io("create", &logs, e))
}

fn remove_if_present(path: &Path) -> Result<(), PackageError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| PackageError::io("remove", path, e))
}
