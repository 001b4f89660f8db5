//! The blocking half of a fetch: create the deployment dir, stage the bundle and the unpacked tree in a temporary
//! dir inside it, verify the checksum, then rename both into place. On any error the staging dir is removed, and so
//! is the deployment dir if this fetch created it.

use super::archive::{unpack_tar, unpack_zip};
use super::dir_source::copy_dir;
use super::error::PackageError;
use super::format::{Format, SNIFF_LEN, detect, head_hex};
use super::stream::{ChunkSource, SourceFailure, Tee};
use super::unpack::{Unpacked, Unpacker};
use super::{Fetched, UnpackLimits};
use crate::layout::DeployLayout;
use std::path::{Path, PathBuf};

/// Removes the deployment dir on drop unless committed, when this fetch created it.
struct DeployDirGuard {
    dir: PathBuf,
    created: bool,
    committed: bool,
}

impl DeployDirGuard {
    fn create(dir: &Path) -> Result<Self, PackageError> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| PackageError::io("create", parent, e))?;
        }
        let created = match std::fs::create_dir(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(PackageError::io("create", dir, e)),
        };
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
fn bundle_limit(limits: &UnpackLimits) -> u64 {
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

/// Fetch an archive whose bytes come from `source`.
pub(crate) fn fetch_archive(
    source: Box<dyn ChunkSource>,
    origin: &str,
    deploy: &DeployLayout,
    expected: Option<&str>,
    limits: UnpackLimits,
) -> Result<Fetched, PackageError> {
    let mut guard = DeployDirGuard::create(deploy.dir())?;
    let staging = staging_dir(deploy.dir())?;
    let bundle_path = staging.path().join("bundle");
    let bundle = std::fs::File::create_new(&bundle_path)
        .map_err(|e| PackageError::io("create", &bundle_path, e))?;
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

    let mut tee = Tee::start(source, bundle, bundle_limit(&limits))
        .map_err(|e| PackageError::io("start hashing", &bundle_path, e))?;
    let head = match tee.peek(SNIFF_LEN) {
        Ok(head) => head,
        Err(e) => return Err(source_err(&tee, PackageError::io("write", &bundle_path, e))),
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
            let mut gz = flate2::bufread::MultiGzDecoder::new(&mut tee);
            unpack_tar(&mut gz, &mut unpacker).and_then(|()| {
                // Decompress the tail after the tar end marker too, so the gzip CRC and length are checked.
                std::io::copy(&mut gz, &mut std::io::sink())
                    .map(|_| ())
                    .map_err(|e| PackageError::Malformed {
                        origin: origin.to_owned(),
                        entry: None,
                        detail: e.to_string(),
                    })
            })
        }
        Format::Zip => Ok(()),
    };
    if let Err(e) = streamed {
        return Err(source_err(&tee, e));
    }
    let (actual, bytes) = match tee.finish() {
        Ok(done) => done,
        Err(e) => return Err(source_err(&tee, PackageError::io("write", &bundle_path, e))),
    };
    drop(tee);
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(PackageError::ChecksumMismatch {
            origin: origin.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    // Zip needs random access: it is unpacked from the bundle file, after the checksum matched.
    if format == Format::Zip {
        unpack_zip(&bundle_path, &mut unpacker)?;
    }
    let unpacked = unpacker.finish(true)?;
    commit(deploy, &unpacked, Some(&bundle_path))?;
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

/// Move the staged revision (and bundle) into place and create `logs/`. A previous fetch into the same deployment
/// dir is replaced.
fn commit(
    deploy: &DeployLayout,
    unpacked: &Unpacked,
    bundle: Option<&Path>,
) -> Result<(), PackageError> {
    let revision = deploy.revision_dir();
    let bundle_dst = deploy.bundle_file();
    remove_if_present(&revision)?;
    remove_if_present(&bundle_dst)?;
    std::fs::rename(&unpacked.revision, &revision)
        .map_err(|e| PackageError::io("rename into place", &revision, e))?;
    if let Some(bundle) = bundle
        && let Err(e) = std::fs::rename(bundle, &bundle_dst)
    {
        let _ = std::fs::remove_dir_all(&revision);
        return Err(PackageError::io("rename into place", &bundle_dst, e));
    }
    let logs = deploy.logs_dir();
    std::fs::create_dir_all(&logs).map_err(|e| PackageError::io("create", &logs, e))
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
