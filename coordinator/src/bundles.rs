//! Where the bytes of uploaded bundles (revision archives) live, by sha256, and how they stream in and out.
//!
//! Two homes, picked from the store ([`Bundles::for_store`]):
//! - [`Bundles::Dir`] (SQLite mode): one file per bundle, `DATA/bundles/<sha256>`. An upload is written to
//!   `upload-<random>.part` beside it, synced, then renamed, so a half-written upload is never served.
//! - [`Bundles::Database`] (PostgreSQL mode): the bundle in the shared database, so a revision pushed to any
//!   coordinator can be downloaded from every one. Table `bundle_chunks (sha256, idx, data)` holds it in
//!   [`CHUNK_BYTES`] pieces, each written in a short transaction of its own while the upload streams in, under a
//!   temporary key (`upload-<ms>-<random>`); table `bundles (sha256, size, chunks, created_at)` gets the bundle's
//!   row, and its chunks their final key, in the one transaction that ends a checked upload. Only a bundle with a
//!   row is served, so an upload that fails, does not match or is dropped is never seen; its chunks are removed
//!   (when it fails, or when its upload is dropped), and the chunks of one abandoned by a coordinator killed
//!   mid-way are removed by the next upload once they are [`ABANDONED_AFTER_MS`] old.
//!
//! Either way only one piece of a bundle is in memory at a time: an upload holds at most one chunk (or one body
//! frame), a download reads chunk `idx + 1` only once chunk `idx` has been taken by the response.
//!
//! The sha256 (and size) is computed here, while the bytes stream in: a bundle is stored under what its bytes hash
//! to, never under a name a client gave. The HTTP layer decides who may upload or download and what else to check
//! (signatures, size limit); this module neither knows nor cares.

use crate::store::{Store, StoreError, args};
use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// One chunk of a bundle in the database. 1 MiB: large enough that a 200 MiB bundle is 200 short transactions
/// (the per-statement round trip is noise next to the copy), small enough that the one chunk an upload or download
/// holds, plus the database client's copy of it, stays a few MiB of the coordinator's memory, and far under
/// PostgreSQL's 1 GiB limit on one value.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Chunks of an upload that never finished are removed once they are this old (ms). A coordinator killed mid-upload
/// cannot remove them itself, and another coordinator may be receiving an upload right now, so only old ones go: a
/// day is far longer than the largest upload allowed (8 GiB) takes on any link an operator would push over.
pub const ABANDONED_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Bytes no revision names any more are reclaimed once they were last stored this long ago (ms). An upload stores
/// its bytes first and registers its revision just after, in the same request; a revision of the same archive deleted
/// in between must not take the bytes from under it. Storing the same bytes again restarts the clock (a file is
/// renamed anew; a database row's `created_at` is set to the new upload's time), and an hour is far longer than the
/// gap between an upload's two halves.
pub const RECLAIM_GRACE_MS: i64 = 3600 * 1000;

/// The prefix of an upload's temporary key in `bundle_chunks` (a real key is 64 hex digits, so they never meet).
const UPLOAD_KEY_PREFIX: &str = "upload-";

/// Storing or reading a bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the bundles dir.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking task that ran a database call panicked or was cancelled (the runtime is shutting down).
    #[error("a bundle database call did not finish: {0}")]
    Task(String),
}

type Result<T, E = BundleError> = std::result::Result<T, E>;

/// The store the database variant reads and writes through: the shared state, which outlives the blocking tasks that
/// run each database call (`Arc<AppState>` coerces to it).
pub type SharedStore = Arc<dyn AsRef<Store> + Send + Sync>;

/// Where bundle bytes live (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bundles {
    /// SQLite mode: files in this directory (`DATA/bundles`), named by sha256.
    Dir(PathBuf),
    /// PostgreSQL mode: tables `bundles` and `bundle_chunks` of the shared database.
    Database,
}

/// The bytes of a stored bundle, streamed.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A stored bundle, opened for download.
pub struct Download {
    /// Its size in bytes (the `Content-Length`).
    pub len: u64,
    /// Its bytes, one piece at a time.
    pub bytes: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What [`Bundles::reclaim`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Bundles removed.
    pub bundles: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What a finished upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The sha256 of its bytes (lowercase hex): its key.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Bundles {
    /// Where a coordinator over `store` keeps bundles: the database when it is PostgreSQL (shared with the other
    /// coordinators), else `dir`.
    pub fn for_store(store: &Store, dir: PathBuf) -> Self {
        if store.is_postgres() {
            Self::Database
        } else {
            Self::Dir(dir)
        }
    }

    /// Remove the stored bundles that no revision (of any application) names and that were last stored more than
    /// [`RECLAIM_GRACE_MS`] before `now_ms`; what was removed. Called after a revision is deleted.
    pub async fn reclaim(&self, store: SharedStore, now_ms: i64) -> Result<Reclaimed> {
        let cut = now_ms.saturating_sub(RECLAIM_GRACE_MS);
        match self {
            Self::Dir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || reclaim_files(&dir, (*store).as_ref(), cut))
                    .await
                    .map_err(|e| BundleError::Task(e.to_string()))?
            }
            Self::Database => blocking(&store, move |s| reclaim_rows(s, cut)).await,
        }
    }

    /// Begin receiving a bundle: write its bytes with [`Upload::write`], then [`Upload::finish`] (stores it under
    /// its sha256) or [`Upload::abort`]. Dropped unfinished, it removes what it wrote.
    pub async fn upload(&self, store: SharedStore) -> Result<Upload> {
        let target = match self {
            Self::Dir(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|source| BundleError::Io {
                        what: "creating the bundles dir",
                        path: dir.clone(),
                        source,
                    })?;
                let tmp = dir.join(format!("upload-{}.part", crate::auth::random_hex(8)));
                let file =
                    tokio::fs::File::create(&tmp)
                        .await
                        .map_err(|source| BundleError::Io {
                            what: "creating upload file",
                            path: tmp.clone(),
                            source,
                        })?;
                Target::File {
                    dir: dir.clone(),
                    tmp,
                    file,
                }
            }
            Self::Database => {
                let now = rollcage_proto::wire::now_ms();
                let key = upload_key(now);
                let swept = blocking(&store, move |s| sweep_abandoned(s, now)).await?;
                if swept > 0 {
                    tracing::info!(
                        chunks = swept,
                        "removed the chunks of bundle uploads abandoned more than a day ago"
                    );
                }
                Target::Chunks {
                    store,
                    key,
                    next_idx: 0,
                    buf: Vec::with_capacity(CHUNK_BYTES),
                }
            }
        };
        Ok(Upload {
            target: Some(target),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// The bundle stored under `sha256`, opened for download; `Ok(None)` when there is none.
    pub async fn open(&self, store: SharedStore, sha256: &str) -> Result<Option<Download>> {
        match self {
            Self::Dir(dir) => {
                let path = dir.join(sha256);
                let file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => {
                        return Err(BundleError::Io {
                            what: "opening bundle",
                            path,
                            source,
                        });
                    }
                };
                let len = file
                    .metadata()
                    .await
                    .map_err(|source| BundleError::Io {
                        what: "reading the size of bundle",
                        path,
                        source,
                    })?
                    .len();
                Ok(Some(Download {
                    len,
                    bytes: Box::pin(tokio_util::io::ReaderStream::new(file)),
                }))
            }
            Self::Database => {
                let sha = sha256.to_owned();
                let Some((size, chunks)) = blocking(&store, move |s| stored(s, &sha)).await? else {
                    return Ok(None);
                };
                Ok(Some(Download {
                    len: size,
                    bytes: chunk_stream(store, sha256.to_owned(), size, chunks),
                }))
            }
        }
    }
}

/// Where an upload's bytes go.
enum Target {
    File {
        dir: PathBuf,
        tmp: PathBuf,
        file: tokio::fs::File,
    },
    Chunks {
        store: SharedStore,
        /// The temporary key its chunks are written under.
        key: String,
        next_idx: i64,
        /// The chunk being filled (at most [`CHUNK_BYTES`]).
        buf: Vec<u8>,
    },
}

/// A bundle being received (see [`Bundles::upload`]).
pub struct Upload {
    /// `None` once finished or aborted.
    target: Option<Target>,
    hasher: Sha256,
    size: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append `data` (hashed, and stored once a chunk is full).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        match &mut self.target {
            None => Ok(()),
            Some(Target::File { tmp, file, .. }) => {
                file.write_all(data)
                    .await
                    .map_err(|source| BundleError::Io {
                        what: "writing upload file",
                        path: tmp.clone(),
                        source,
                    })
            }
            Some(Target::Chunks {
                store,
                key,
                next_idx,
                buf,
            }) => {
                while !data.is_empty() {
                    let take = (CHUNK_BYTES - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() == CHUNK_BYTES {
                        let full = std::mem::take(buf);
                        *buf = put_chunk(store, key, *next_idx, full).await?;
                        *next_idx += 1;
                    }
                }
                Ok(())
            }
        }
    }

    /// Store what was received under its sha256 (a bundle already stored under it is kept, the copy dropped). On
    /// an error what was written is removed.
    pub async fn finish(mut self) -> Result<Stored> {
        let sha256 = hex::encode(self.hasher.clone().finalize());
        let size = self.size;
        // The target stays in `self` until it is stored: if this future is dropped mid-way, `Drop` still cleans up
        // (and `commit` refuses to record a bundle whose chunks that cleanup already removed).
        let done = match &mut self.target {
            None => Ok(()),
            Some(Target::File { dir, tmp, file }) => {
                let io = |what| {
                    let path = tmp.clone();
                    move |source| BundleError::Io { what, path, source }
                };
                match file.sync_all().await.map_err(io("syncing upload file")) {
                    Ok(()) => tokio::fs::rename(&tmp, dir.join(&sha256))
                        .await
                        .map_err(io("storing the archive")),
                    Err(e) => Err(e),
                }
            }
            Some(Target::Chunks {
                store,
                key,
                next_idx,
                buf,
            }) => {
                async {
                    if !buf.is_empty() {
                        let last = std::mem::take(buf);
                        put_chunk(store, key, *next_idx, last).await?;
                        *next_idx += 1;
                    }
                    let (k, sha, chunks) = (key.clone(), sha256.clone(), *next_idx);
                    let now = rollcage_proto::wire::now_ms();
                    blocking(store, move |s| commit(s, &k, &sha, size, chunks, now)).await
                }
                .await
            }
        };
        match done {
            Ok(()) => {
                self.target = None;
                Ok(Stored { sha256, size })
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Give up: remove what was written.
    pub async fn abort(mut self) {
        match self.target.take() {
            None => {}
            Some(Target::File { tmp, file, .. }) => {
                drop(file);
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            Some(Target::Chunks { store, key, .. }) => remove_chunks(store, key).await,
        }
    }
}

impl Drop for Upload {
    /// An upload dropped unfinished (the client went away mid-body, the request was cancelled): remove what it
    /// wrote, in the background (a drop cannot wait).
    fn drop(&mut self) {
        match self.target.take() {
            None => {}
            Some(Target::File { tmp, .. }) => {
                let _ = std::fs::remove_file(&tmp);
            }
            Some(Target::Chunks { store, key, .. }) => {
                // A thread of its own: the store's PostgreSQL calls must not run on a tokio worker, and there may be
                // no runtime left to spawn on.
                let spawned = std::thread::Builder::new()
                    .name("rollcage-bundle-cleanup".into())
                    .spawn(move || {
                        if let Err(e) = delete_chunks((*store).as_ref(), &key) {
                            tracing::warn!(error = %e, key, "removing the chunks of a dropped upload");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "could not start the thread that removes a dropped upload's chunks");
                }
            }
        }
    }
}

/// Run one blocking store call off the async workers (a PostgreSQL call blocks its thread for the round trip, and a
/// chunk's is a MiB long).
async fn blocking<T: Send + 'static>(
    store: &SharedStore,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f((*store).as_ref()))
        .await
        .map_err(|e| BundleError::Task(e.to_string()))?
        .map_err(BundleError::from)
}

/// Write chunk `idx` of the upload under `key`, in its own transaction; the buffer comes back emptied for reuse.
async fn put_chunk(store: &SharedStore, key: &str, idx: i64, data: Vec<u8>) -> Result<Vec<u8>> {
    let key = key.to_owned();
    blocking(store, move |s| {
        s.write(|tx| {
            tx.execute(
                "INSERT INTO bundle_chunks (sha256, idx, data) VALUES (?1, ?2, ?3)",
                args![key, idx, data],
            )
        })?;
        let mut data = data;
        data.clear();
        Ok(data)
    })
    .await
}

/// Remove the chunks under `key`, logging a failure (nothing is served from them anyway).
async fn remove_chunks(store: SharedStore, key: String) {
    let k = key.clone();
    if let Err(e) = blocking(&store, move |s| delete_chunks(s, &k)).await {
        tracing::warn!(error = %e, key, "removing the chunks of a failed upload");
    }
}

/// The temporary key of an upload begun at `now_ms`: zero-padded, so keys order by age (see [`sweep_abandoned`]).
fn upload_key(now_ms: i64) -> String {
    format!(
        "{UPLOAD_KEY_PREFIX}{now_ms:013}-{}",
        crate::auth::random_hex(8)
    )
}

/// Remove the chunks of uploads begun more than [`ABANDONED_AFTER_MS`] before `now_ms`; how many.
fn sweep_abandoned(store: &Store, now_ms: i64) -> Result<usize, StoreError> {
    let cutoff = format!(
        "{UPLOAD_KEY_PREFIX}{:013}",
        now_ms.saturating_sub(ABANDONED_AFTER_MS).max(0)
    );
    store.write(|tx| {
        tx.execute(
            "DELETE FROM bundle_chunks WHERE sha256 LIKE 'upload-%' AND sha256 < ?1",
            args![cutoff],
        )
    })
}

/// Remove every chunk stored under `key`.
fn delete_chunks(store: &Store, key: &str) -> Result<(), StoreError> {
    store.write(|tx| {
        tx.execute("DELETE FROM bundle_chunks WHERE sha256 = ?1", [key])
            .map(drop)
    })
}

/// End an upload whose `chunks` chunks are under `key`: in one transaction, the bundle's row and its chunks' final
/// key `sha256`. When the bundle is already stored (pushed before, or by another coordinator at the same moment:
/// the row's primary key decides, the later insert waits for the first to commit), the copy is removed instead.
fn commit(
    store: &Store,
    key: &str,
    sha256: &str,
    size: u64,
    chunks: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    store.write(|tx| {
        let inserted = tx.execute(
            "INSERT INTO bundles (sha256, size, chunks, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (sha256) DO NOTHING",
            args![sha256, size, chunks, now_ms],
        )?;
        if inserted == 1 {
            let moved = tx.execute(
                "UPDATE bundle_chunks SET sha256 = ?1 WHERE sha256 = ?2",
                [sha256, key],
            )?;
            // Fewer when the upload was dropped while finishing and its cleanup ran first: no row then.
            if i64::try_from(moved).ok() != Some(chunks) {
                return Err(StoreError::Corrupt {
                    what: "bundle_chunks",
                    detail: format!("{moved} of its {chunks} chunks were found under {key}"),
                });
            }
        } else {
            tx.execute("DELETE FROM bundle_chunks WHERE sha256 = ?1", [key])?;
            // Stored again: the reclaim grace restarts, as a file's does when it is renamed anew.
            tx.execute(
                "UPDATE bundles SET created_at = ?2 WHERE sha256 = ?1",
                args![sha256, now_ms],
            )?;
        }
        Ok(())
    })
}

/// The condition of a bundle row no revision names, stored before `?1`.
const UNNAMED_BEFORE: &str = "created_at < ?1 AND NOT EXISTS \
     (SELECT 1 FROM revisions WHERE revisions.sha256 = bundles.sha256)";

/// [`Bundles::reclaim`] in the database: rows and chunks go in one transaction.
fn reclaim_rows(store: &Store, cut: i64) -> Result<Reclaimed, StoreError> {
    store.write(|tx| {
        let (bundles, bytes) = tx.query_row(
            &format!("SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM bundles WHERE {UNNAMED_BEFORE}"),
            args![cut],
            |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)),
        )?;
        if bundles == 0 {
            return Ok(Reclaimed::default());
        }
        tx.execute(
            &format!(
                "DELETE FROM bundle_chunks WHERE sha256 IN (SELECT sha256 FROM bundles WHERE {UNNAMED_BEFORE})"
            ),
            args![cut],
        )?;
        tx.execute(
            &format!("DELETE FROM bundles WHERE {UNNAMED_BEFORE}"),
            args![cut],
        )?;
        Ok(Reclaimed {
            bundles: u64::try_from(bundles).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    })
}

/// [`Bundles::reclaim`] in a bundles dir: a file named by a sha256 that no revision names, last written before
/// `cut`. Upload part files are not touched (an upload in progress owns its own).
fn reclaim_files(dir: &Path, store: &Store, cut: i64) -> Result<Reclaimed> {
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| BundleError::Io { what, path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Reclaimed::default()),
        Err(e) => return Err(io("listing the bundles dir", dir)(e)),
    };
    let mut done = Reclaimed::default();
    for entry in entries {
        let entry = entry.map_err(io("listing the bundles dir", dir))?;
        let name = entry.file_name();
        let Some(sha) = name.to_str().filter(|n| is_sha256(n)) else {
            continue;
        };
        let path = entry.path();
        let meta = entry.metadata().map_err(io("reading", &path))?;
        let stored_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .unwrap_or(i64::MAX);
        if stored_ms >= cut || named(store, sha)? {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                done.bundles += 1;
                done.bytes += meta.len();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &path)(e)),
        }
    }
    Ok(done)
}

fn is_sha256(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a revision of any application names `sha256`.
fn named(store: &Store, sha256: &str) -> Result<bool, StoreError> {
    store.read(|c| {
        c.query_row(
            "SELECT COUNT(*) FROM revisions WHERE sha256 = ?1",
            [sha256],
            |r| r.get::<i64>(0),
        )
        .map(|n| n > 0)
    })
}

/// The size and chunk count of the bundle stored under `sha256`, if it is.
fn stored(store: &Store, sha256: &str) -> Result<Option<(u64, i64)>, StoreError> {
    use crate::store::OptionalExt;
    store.read(|c| {
        c.query_row(
            "SELECT size, chunks FROM bundles WHERE sha256 = ?1",
            [sha256],
            |r| Ok((r.get::<u64>(0)?, r.get::<i64>(1)?)),
        )
        .optional()
    })
}

/// Chunk `idx` of the bundle stored under `sha256`.
fn read_chunk(store: &Store, sha256: &str, idx: i64) -> Result<Option<Vec<u8>>, StoreError> {
    use crate::store::OptionalExt;
    store.read(|c| {
        c.query_row(
            "SELECT data FROM bundle_chunks WHERE sha256 = ?1 AND idx = ?2",
            args![sha256, idx],
            |r| r.get::<Vec<u8>>(0),
        )
        .optional()
    })
}

/// The bytes of a stored bundle of `size` bytes in `chunks` chunks, read one chunk at a time: chunk `idx + 1` is
/// read only when the response asks for more after taking chunk `idx`. A missing chunk, or chunks that do not add up
/// to `size`, end the stream with an error (the client sees a cut-off body, never wrong bytes passed as whole).
fn chunk_stream(store: SharedStore, sha256: String, size: u64, chunks: i64) -> ByteStream {
    struct Cursor {
        store: SharedStore,
        sha256: String,
        idx: i64,
        sent: u64,
    }
    let start = Cursor {
        store,
        sha256,
        idx: 0,
        sent: 0,
    };
    let broken = |what: String| std::io::Error::other(what);
    Box::pin(futures_util::stream::unfold(
        Some(start),
        move |cur| async move {
            let mut cur = cur?;
            if cur.idx >= chunks {
                if cur.sent != size {
                    let e = broken(format!(
                        "bundle {}: its chunks hold {} bytes, its row says {size}",
                        cur.sha256, cur.sent
                    ));
                    return Some((Err(e), None));
                }
                return None;
            }
            let (sha, idx) = (cur.sha256.clone(), cur.idx);
            let read = blocking(&cur.store, move |s| read_chunk(s, &sha, idx)).await;
            let data = match read {
                Ok(Some(d)) => d,
                Ok(None) => {
                    let e = broken(format!("bundle {}: chunk {idx} is missing", cur.sha256));
                    return Some((Err(e), None));
                }
                Err(e) => return Some((Err(broken(e.to_string())), None)),
            };
            cur.sent += data.len() as u64;
            if cur.sent > size {
                let e = broken(format!(
                    "bundle {}: its chunks hold more than the {size} bytes its row says",
                    cur.sha256
                ));
                return Some((Err(e), None));
            }
            cur.idx += 1;
            Some((Ok(Bytes::from(data)), Some(cur)))
        },
    ))
}

#[cfg(test)]
mod tests;
