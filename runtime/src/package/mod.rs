//! Getting a revision onto the host: fetch (directory, archive, `file://`, `http(s)://`, or the host's bundle
//! store), verify its sha256 while streaming, unpack safely into the deployment dir, and prune old deployment dirs
//! and stored archives.
//!
//! One pass over the bytes: they are read once, hashed and (when the host has a [`BundleStore`]) written to the
//! store on a second thread, and decompressed and unpacked on the first (`stream`). Each archive is hashed once per
//! fetch, and not at all when the caller already verified it while writing it ([`Source::Stored`]). Unpacking
//! writes only below a staging dir, through descriptors, never following a symlink (`confined`), and refuses
//! hostile entries (`unpack`): names and link targets past PATH_MAX, trees past [`UnpackLimits::max_depth`], a path
//! named twice, and extension headers larger than their bound, refused from their declared size before they are
//! read (`archive`), so the memory a fetch uses does not depend on what the archive claims. gzip members are read
//! one by one, and bytes after the last one are located precisely (`gunzip`). The staging dir is renamed into place only once the checksum matched; on any error
//! nothing is left behind.
//!
//! A host that requires signed revisions fetches with [`fetch_signed`] (`signed`): the archive is complete on the
//! host and its signature checked before anything is unpacked.

mod archive;
mod confined;
mod dir_source;
mod entry_path;
mod error;
mod format;
mod gunzip;
mod http;
mod pipeline;
mod prune;
mod signed;
mod source;
pub mod space;
mod store;
mod stream;
mod unpack;
mod zip_directory;

pub use archive::MAX_ZIP_MEMBERS;
pub use error::{EntryPosition, PackageError};
pub use prune::{DEFAULT_MAX_REVISIONS, prune};
pub use signed::{SignatureCheck, fetch_signed};
pub use store::BundleStore;
pub(crate) use store::is_sha256;

use crate::layout::DeployLayout;
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
    /// An archive in the host's bundle store ([`FetchOptions::store`]), by sha256: unpacked from there, never
    /// copied.
    Stored {
        /// Its sha256 (hex), the name it is stored under.
        sha256: String,
        /// The caller hashed it while writing it into the store for this fetch (the agent's download), so it is not
        /// hashed again. Otherwise it is hashed while it is unpacked: a file reused for another deployment may have
        /// sat on disk for weeks, and one pass over the bytes that the unpack reads anyway is the cheapest place to
        /// catch a corrupt or altered copy (it is then removed from the store, see
        /// [`PackageError::StoredMismatch`]).
        verified: bool,
    },
}

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most entries (files, dirs, links) an archive may hold.
    pub max_entries: u64,
    /// Most bytes its files may unpack to.
    pub max_bytes: u64,
    /// Most path components an entry may have (`a/b/c` has 3).
    pub max_depth: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        // Generous for real applications (a JVM app with its libs is ~50k entries / a few GiB), small enough that a
        // zip bomb cannot fill the disk, and that what the unpacker remembers per entry (a 16-byte key for the
        // duplicate check) stays a few MiB.
        //
        // Depth: real trees stay under ~40 levels (a deep `node_modules` is ~30). 256 leaves room for anything
        // generated, and bounds what one entry costs: the unpacker holds one descriptor per level of the current
        // path, and a path operation touches at most this many components.
        Self {
            max_entries: 100_000,
            max_bytes: 8 << 30,
            max_depth: 256,
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
    /// The host's bundle store: archives fetched from a file or URL are kept there once, by sha256, and the
    /// deployment dir refers to them (`bundle.sha256`). `None` (`rollcage local`) keeps no copy of the archive.
    pub store: Option<BundleStore>,
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

/// The expected checksum, normalised to lowercase; any other shape is an error before anything is fetched.
fn expected_sha256(opts: &FetchOptions) -> Result<Option<String>, PackageError> {
    match &opts.expected_sha256 {
        None => Ok(None),
        Some(v) if is_sha256(v) => Ok(Some(v.to_ascii_lowercase())),
        Some(v) => Err(PackageError::InvalidChecksum { value: v.clone() }),
    }
}

/// Fetch `source` into `deploy` (`revision/`, `logs/`), verifying and unpacking as it streams.
///
/// On success `deploy` holds `revision/` and `logs/`, and `bundle.sha256` when the archive is in `opts.store` (for
/// an archive or URL source when there is a store, and for a stored source). On error nothing of this fetch is left:
/// no staging dir, no half-written store file, and no deployment dir if this call created it.
pub async fn fetch(
    source: &Source,
    deploy: &DeployLayout,
    opts: &FetchOptions,
) -> Result<Fetched, PackageError> {
    let expected = expected_sha256(opts)?;
    let limits = opts.limits;
    let deploy = deploy.clone();
    let origin = source.describe();
    tracing::info!(source = %origin, deploy = %deploy.dir().display(), "fetching revision");
    let keep = || match &opts.store {
        Some(store) => pipeline::Keep::Store(store.clone()),
        None => pipeline::Keep::Nowhere,
    };
    let local_archive = match source {
        Source::Directory(dir) => {
            if expected.is_some() {
                return Err(PackageError::ChecksumNotApplicable { path: dir.clone() });
            }
            let dir = dir.clone();
            return blocking(move || pipeline::fetch_directory(&dir, &deploy, limits)).await;
        }
        Source::Stored { sha256, verified } => {
            let (path, keep) = stored(opts, sha256, *verified, expected.as_deref())?;
            return blocking(move || {
                let file = match std::fs::File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(PackageError::InvalidSource {
                            input: path.display().to_string(),
                            reason: "not in the host's bundle store".into(),
                        });
                    }
                    Err(e) => return Err(PackageError::io("open", &path, e)),
                };
                let origin = path.display().to_string();
                let chunks = Box::new(stream::FileChunks(file));
                pipeline::fetch_archive(chunks, &origin, &deploy, expected.as_deref(), limits, keep)
            })
            .await;
        }
        Source::Archive(path) => path.clone(),
        Source::Url(url) if url.scheme() == "file" => {
            url.to_file_path()
                .map_err(|()| PackageError::InvalidSource {
                    input: url.to_string(),
                    reason: "not a local file path".into(),
                })?
        }
        Source::Url(url) if matches!(url.scheme(), "http" | "https") => {
            let (final_url, body) = http::get(url).await?;
            let origin = http::redact(&final_url);
            let keep = keep();
            return blocking(move || {
                let chunks = Box::new(stream::ChannelChunks(body));
                pipeline::fetch_archive(chunks, &origin, &deploy, expected.as_deref(), limits, keep)
            })
            .await;
        }
        Source::Url(url) => {
            return Err(source::unsupported_scheme(url));
        }
    };
    let keep = keep();
    blocking(move || {
        let file = std::fs::File::open(&local_archive)
            .map_err(|e| PackageError::io("open", &local_archive, e))?;
        let origin = local_archive.display().to_string();
        pipeline::fetch_archive(
            Box::new(stream::FileChunks(file)),
            &origin,
            &deploy,
            expected.as_deref(),
            limits,
            keep,
        )
    })
    .await
}

/// How to read the stored archive `sha256`: it must be in `opts.store` under that name, and be what is expected.
fn stored(
    opts: &FetchOptions,
    sha256: &str,
    verified: bool,
    expected: Option<&str>,
) -> Result<(PathBuf, pipeline::Keep), PackageError> {
    let store = opts
        .store
        .as_ref()
        .ok_or_else(|| PackageError::InvalidSource {
            input: sha256.to_owned(),
            reason: "a stored bundle was named, but this host has no bundle store".into(),
        })?;
    let path = store
        .path(sha256)
        .ok_or_else(|| PackageError::InvalidChecksum {
            value: sha256.to_owned(),
        })?;
    let sha256 = sha256.to_ascii_lowercase();
    if let Some(expected) = expected
        && expected != sha256
    {
        return Err(PackageError::InvalidSource {
            input: sha256,
            reason: format!("the stored bundle named is not the expected one ({expected})"),
        });
    }
    let keep = pipeline::Keep::Stored {
        path: path.clone(),
        sha256,
        verified,
    };
    Ok((path, keep))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PackageError> + Send + 'static,
) -> Result<T, PackageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PackageError::Task(e.to_string()))?
}
