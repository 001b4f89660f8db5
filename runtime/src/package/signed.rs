//! A fetch that requires a signed revision: the archive is complete on this host and its signature checked
//! (`rollcage_signing::verify`) before a single entry is unpacked. A local or stored archive is checked where it
//! is; an `http(s)://` one, which an ordinary fetch unpacks while it streams in, is first downloaded whole (into the
//! host's bundle store when there is one, else next to the deployment dir) and its sha256 checked. On refusal
//! nothing of the revision exists under the deployment dir: the deployment dir is not even created.

use super::error::PackageError;
use super::stream::{ChannelChunks, ChunkSource};
use super::{FetchOptions, Fetched, Source, fetch, http, source};
use crate::layout::DeployLayout;
use rollcage_signing::{Verified, VerifyError};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a host requires: a valid signature, from a key its allowed_signers file lists for `rollcage`.
#[derive(Debug, Clone, Copy)]
pub struct SignatureCheck<'a> {
    /// The host's allowed_signers file (read at each check, so an edit applies without a restart).
    pub trusted_signers: &'a Path,
    /// The revision's armored signature, if it came with one.
    pub signature: Option<&'a str>,
}

/// [`fetch`] after checking the archive's signature as `check` says. Returns who signed it too.
pub async fn fetch_signed(
    source: &Source,
    deploy: &DeployLayout,
    opts: &FetchOptions,
    check: SignatureCheck<'_>,
) -> Result<(Fetched, Verified), PackageError> {
    let origin = source.describe();
    // A download kept here until the fetch is done (no store: the archive lives only for this fetch).
    let mut _download: Option<tempfile::NamedTempFile> = None;
    let (archive, source): (PathBuf, Source) = match source {
        Source::Directory(dir) => {
            return Err(PackageError::Signature {
                origin,
                reason: VerifyError::Read {
                    path: dir.clone(),
                    source: std::io::Error::other(
                        "a directory has no archive bytes that a signature could cover: pack it (tar, tar.gz, \
                         zip) and sign the archive",
                    ),
                },
            });
        }
        Source::Stored { sha256, .. } => {
            let path = opts
                .store
                .as_ref()
                .and_then(|s| s.path(sha256))
                .ok_or_else(|| PackageError::InvalidSource {
                    input: sha256.clone(),
                    reason: "a stored bundle was named, but this host has no bundle store".into(),
                })?;
            (path, source.clone())
        }
        Source::Archive(path) => (path.clone(), source.clone()),
        Source::Url(url) if url.scheme() == "file" => {
            let path = url
                .to_file_path()
                .map_err(|()| PackageError::InvalidSource {
                    input: url.to_string(),
                    reason: "not a local file path".into(),
                })?;
            (path, source.clone())
        }
        Source::Url(url) if matches!(url.scheme(), "http" | "https") => {
            let (sha256, file) = download(url, deploy, opts).await?;
            match (&opts.store, file) {
                (Some(store), None) => {
                    let path = store.path(&sha256).ok_or_else(|| {
                        PackageError::Task(format!("download stored under a bad name {sha256}"))
                    })?;
                    let source = Source::Stored {
                        sha256,
                        verified: true,
                    };
                    (path, source)
                }
                (_, Some(file)) => {
                    let path = file.path().to_owned();
                    _download = Some(file);
                    (path.clone(), Source::Archive(path))
                }
                (None, None) => return Err(PackageError::Task("the download was not kept".into())),
            }
        }
        Source::Url(url) => {
            return Err(source::unsupported_scheme(url));
        }
    };
    let signers = check.trusted_signers.to_owned();
    let signature = check.signature.map(str::to_owned);
    let verified = tokio::task::spawn_blocking(move || {
        rollcage_signing::verify::verify_file(signature.as_deref(), &signers, &archive)
    })
    .await
    .map_err(|e| PackageError::Task(e.to_string()))?
    .map_err(|reason| PackageError::Signature {
        origin: origin.clone(),
        reason,
    })?;
    tracing::info!(origin = %origin, signer = %verified.signer, listed_at = %verified.listed_at, "revision signature verified");
    let fetched = fetch(&source, deploy, opts).await?;
    Ok((fetched, verified))
}

/// Download `url` whole, checking its sha256 against the expected one: into the host's bundle store (returns
/// `(sha256, None)`), or, without a store, into a temporary file beside the deployment dir (`(sha256,
/// Some(file))`).
async fn download(
    url: &url::Url,
    deploy: &DeployLayout,
    opts: &FetchOptions,
) -> Result<(String, Option<tempfile::NamedTempFile>), PackageError> {
    let expected = super::expected_sha256(opts)?;
    let (final_url, body) = http::get(url).await?;
    let origin = http::redact(&final_url);
    let limit = super::pipeline::bundle_limit(&opts.limits);
    let store = opts.store.clone();
    let beside = deploy
        .dir()
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(std::env::temp_dir);
    tokio::task::spawn_blocking(move || {
        let tmp = match &store {
            Some(store) => store.incoming()?,
            None => {
                std::fs::create_dir_all(&beside)
                    .map_err(|e| PackageError::io("create", &beside, e))?;
                tempfile::Builder::new()
                    .prefix(".download-")
                    .tempfile_in(&beside)
                    .map_err(|e| PackageError::io("create a temporary file in", &beside, e))?
            }
        };
        let mut chunks = ChannelChunks(body);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut out = std::io::BufWriter::new(tmp.as_file());
        loop {
            let chunk = chunks.next_chunk().map_err(|e| PackageError::Download {
                origin: origin.clone(),
                detail: e.to_string(),
            })?;
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            if size > limit {
                return Err(PackageError::BundleTooLarge {
                    origin: origin.clone(),
                    limit,
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .map_err(|e| PackageError::io("write", tmp.path(), e))?;
        }
        out.flush()
            .map_err(|e| PackageError::io("write", tmp.path(), e))?;
        drop(out);
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(PackageError::ChecksumMismatch {
                origin,
                expected,
                actual,
            });
        }
        match &store {
            Some(store) => {
                let dest = store.dir().join(&actual);
                tmp.persist(&dest)
                    .map_err(|e| PackageError::io("rename into place", &dest, e.error))?;
                Ok((actual, None))
            }
            None => Ok((actual, Some(tmp))),
        }
    })
    .await
    .map_err(|e| PackageError::Task(e.to_string()))?
}
