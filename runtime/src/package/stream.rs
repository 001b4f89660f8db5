//! The single pass over a bundle's bytes: chunks come from a source (a local file, or an HTTP body through a
//! channel), are handed to a hashing thread that also writes them to the `bundle` file, and are read by the
//! decompressor/unpacker on the calling thread. Hashing and writing the copy overlap with decompression, so the
//! whole fetch costs about as much as the decompression alone.

use bytes::{Buf, Bytes};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Size of a chunk read from a local file: large enough that per-chunk overhead vanishes, small enough that the
/// chunks in flight stay a few MiB.
pub(crate) const FILE_CHUNK: usize = 1 << 20;

/// Chunks queued for the hashing thread. With [`FILE_CHUNK`]-sized chunks this bounds the bytes in flight (and so
/// the memory a fetch uses) to about 8 MiB whatever the bundle size.
const HASH_QUEUE: usize = 8;

/// Produces a bundle's bytes in order.
pub(crate) trait ChunkSource: Send {
    /// The next chunk, or `None` at the end.
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>>;
}

/// Chunks of a local file.
pub(crate) struct FileChunks(pub(crate) File);

impl ChunkSource for FileChunks {
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let mut buf = vec![0u8; FILE_CHUNK];
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok((filled > 0).then(|| Bytes::from(buf)))
    }
}

/// Chunks received from an async producer (the HTTP body task).
pub(crate) struct ChannelChunks(pub(crate) tokio::sync::mpsc::Receiver<io::Result<Bytes>>);

impl ChunkSource for ChannelChunks {
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        self.0.blocking_recv().transpose()
    }
}

/// What the hashing thread returns: the sha256 (hex) and the byte count.
type Digested = io::Result<(String, u64)>;

/// Why the source stopped producing bytes, as opposed to the consumer failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceFailure {
    /// Reading failed (connection reset, idle timeout, I/O error).
    Read(String),
    /// More bytes than the limit: the bundle cannot be a legitimate archive within the unpack limits.
    TooLarge(u64),
}

/// Reads a source once, teeing every chunk to the hashing/bundle-writing thread.
pub(crate) struct Tee {
    source: Box<dyn ChunkSource>,
    current: Bytes,
    sender: Option<SyncSender<Bytes>>,
    hasher: Option<JoinHandle<Digested>>,
    eof: bool,
    /// Bytes pulled so far, and the most allowed.
    seen: u64,
    limit: u64,
    /// The source itself failed (as opposed to the consumer).
    failure: Option<SourceFailure>,
}

fn hash_and_write(chunks: Receiver<Bytes>, mut bundle: File) -> Digested {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    for chunk in chunks {
        hasher.update(&chunk);
        bundle.write_all(&chunk)?;
        total += chunk.len() as u64;
    }
    bundle.flush()?;
    Ok((hex::encode(hasher.finalize()), total))
}

impl Tee {
    /// Start teeing `source` into `bundle`, refusing more than `limit` bytes.
    pub(crate) fn start(
        source: Box<dyn ChunkSource>,
        bundle: File,
        limit: u64,
    ) -> io::Result<Self> {
        let (sender, receiver) = sync_channel(HASH_QUEUE);
        let hasher = std::thread::Builder::new()
            .name("rollcage-sha256".into())
            .spawn(move || hash_and_write(receiver, bundle))?;
        Ok(Self {
            source,
            current: Bytes::new(),
            sender: Some(sender),
            hasher: Some(hasher),
            eof: false,
            seen: 0,
            limit,
            failure: None,
        })
    }

    /// Pull the next chunk from the source and hand it to the hasher. `None` at the end.
    fn pull(&mut self) -> io::Result<Option<Bytes>> {
        if self.eof {
            return Ok(None);
        }
        let chunk = match self.source.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                self.eof = true;
                return Ok(None);
            }
            Err(e) => {
                self.failure = Some(SourceFailure::Read(e.to_string()));
                return Err(e);
            }
        };
        self.seen += chunk.len() as u64;
        if self.seen > self.limit {
            self.failure = Some(SourceFailure::TooLarge(self.limit));
            return Err(io::Error::other(format!(
                "bundle is larger than {} bytes",
                self.limit
            )));
        }
        let sent = self
            .sender
            .as_ref()
            .map(|s| s.send(chunk.clone()).is_ok())
            .unwrap_or(false);
        if !sent {
            // The hashing thread stopped: its own error (e.g. disk full writing the bundle) says why.
            return Err(match self.join() {
                Err(e) => e,
                Ok(_) => io::Error::other("bundle writer stopped early"),
            });
        }
        Ok(Some(chunk))
    }

    /// The first `n` bytes (fewer if the source is shorter), without consuming them.
    pub(crate) fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.current.len() < n {
            let Some(chunk) = self.pull()? else { break };
            if self.current.is_empty() {
                self.current = chunk;
            } else {
                let mut joined = Vec::with_capacity(self.current.len() + chunk.len());
                joined.extend_from_slice(&self.current);
                joined.extend_from_slice(&chunk);
                self.current = Bytes::from(joined);
            }
        }
        Ok(&self.current)
    }

    /// Why the source failed, if it did.
    pub(crate) fn failure(&self) -> Option<&SourceFailure> {
        self.failure.as_ref()
    }

    /// Read the rest of the source (an archive may have trailing bytes after its end marker; all of them are hashed)
    /// and return the sha256 and size of everything.
    pub(crate) fn finish(&mut self) -> io::Result<(String, u64)> {
        self.current = Bytes::new();
        while self.pull()?.is_some() {}
        self.join()
    }

    fn join(&mut self) -> Digested {
        self.sender = None;
        match self.hasher.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| io::Error::other("hashing thread panicked"))?,
            None => Err(io::Error::other("hashing thread already finished")),
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // Never leave the thread writing into a staging dir that is about to be removed.
        if self.hasher.is_some() {
            let _ = self.join();
        }
    }
}

impl BufRead for Tee {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.pull()? {
                Some(chunk) => self.current = chunk,
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amt: usize) {
        self.current.advance(amt.min(self.current.len()));
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}
