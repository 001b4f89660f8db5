//! Getting a revision onto the host: fetch (directory, archive, `file://`, `http(s)://`), verify its sha256 while
//! streaming, unpack safely into the deployment dir, and prune old deployment dirs.
//!
//! One pass over the bytes: they are read once, hashed and copied to `bundle` on a second thread, and decompressed
//! and unpacked on the first (`stream`). Unpacking writes only below a staging dir, through descriptors, never
//! following a symlink (`confined`), and refuses hostile entries (`unpack`). The staging dir is renamed into place
//! only once the checksum matched; on any error nothing is left behind.

mod archive;
mod confined;
mod dir_source;
mod entry_path;
mod error;
mod format;
mod http;
mod pipeline;
mod prune;
mod source;
mod stream;
mod unpack;

pub use error::PackageError;
pub use prune::{DEFAULT_MAX_REVISIONS, prune};

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

/// The expected checksum, normalised to lowercase; any other shape is an error before anything is fetched.
fn expected_sha256(opts: &FetchOptions) -> Result<Option<String>, PackageError> {
    match &opts.expected_sha256 {
        None => Ok(None),
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(v.to_ascii_lowercase()))
        }
        Some(v) => Err(PackageError::InvalidChecksum { value: v.clone() }),
    }
}

/// Fetch `source` into `deploy` (bundle, `revision/`, `logs/`), verifying and unpacking as it streams.
///
/// On success `deploy` holds `bundle` (absent for a directory source), `revision/` and `logs/`. On error nothing
/// of this fetch is left: no staging dir, and no deployment dir if this call created it.
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
    let local_archive = match source {
        Source::Directory(dir) => {
            if expected.is_some() {
                return Err(PackageError::ChecksumNotApplicable { path: dir.clone() });
            }
            let dir = dir.clone();
            return blocking(move || pipeline::fetch_directory(&dir, &deploy, limits)).await;
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
            return blocking(move || {
                let chunks = Box::new(stream::ChannelChunks(body));
                pipeline::fetch_archive(chunks, &origin, &deploy, expected.as_deref(), limits)
            })
            .await;
        }
        Source::Url(url) => {
            return Err(PackageError::InvalidSource {
                input: url.to_string(),
                reason: format!(
                    "unsupported URL scheme `{}`: expected file, http or https",
                    url.scheme()
                ),
            });
        }
    };
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
        )
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PackageError> + Send + 'static,
) -> Result<T, PackageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PackageError::Task(e.to_string()))?
}
