//! The single pass over a bundle's bytes: chunks come from a source (a local file, or an HTTP body through a
//! channel), are handed to a worker thread that hashes them and/or writes them to a copy, and are read by the
//! decompressor/unpacker on the calling thread. Hashing and writing the copy overlap with decompression, so the
//! whole fetch costs about as much as the decompression alone. An archive the caller already verified while writing
//! it (see [`super::Source::Stored`]) is neither hashed nor copied: no worker is started.

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

/// What the worker thread returns: the sha256 (hex), when it hashed.
type Digested = io::Result<Option<String>>;

/// Why the source stopped producing bytes, as opposed to the consumer failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceFailure {
    /// Reading failed (connection reset, idle timeout, I/O error).
    Read(String),
    /// More bytes than the limit: the bundle cannot be a legitimate archive within the unpack limits.
    TooLarge(u64),
}

/// What the worker does with every chunk.
pub(crate) struct Sink {
    /// Compute the sha256 of the bytes.
    pub(crate) hash: bool,
    /// Write the bytes to this file.
    pub(crate) copy: Option<File>,
}

/// Reads a source once, teeing every chunk to the hashing/copying worker (if there is one).
pub(crate) struct Tee {
    source: Box<dyn ChunkSource>,
    current: Bytes,
    /// True when a worker was started: every chunk must reach it.
    teed: bool,
    sender: Option<SyncSender<Bytes>>,
    hasher: Option<JoinHandle<Digested>>,
    eof: bool,
    /// Bytes pulled so far, and the most allowed.
    seen: u64,
    limit: u64,
    /// The source itself failed (as opposed to the consumer).
    failure: Option<SourceFailure>,
}

fn hash_and_write(chunks: Receiver<Bytes>, sink: Sink) -> Digested {
    let Sink { hash, mut copy } = sink;
    let mut hasher = hash.then(Sha256::new);
    for chunk in chunks {
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        if let Some(f) = copy.as_mut() {
            f.write_all(&chunk)?;
        }
    }
    if let Some(f) = copy.as_mut() {
        f.flush()?;
    }
    Ok(hasher.map(|h| hex::encode(h.finalize())))
}

impl Tee {
    /// Start teeing `source` into `sink`, refusing more than `limit` bytes.
    pub(crate) fn start(source: Box<dyn ChunkSource>, sink: Sink, limit: u64) -> io::Result<Self> {
        let teed = sink.hash || sink.copy.is_some();
        let (sender, hasher) = if teed {
            let (sender, receiver) = sync_channel(HASH_QUEUE);
            let hasher = std::thread::Builder::new()
                .name("rollcage-sha256".into())
                .spawn(move || hash_and_write(receiver, sink))?;
            (Some(sender), Some(hasher))
        } else {
            (None, None)
        };
        Ok(Self {
            source,
            current: Bytes::new(),
            teed,
            sender,
            hasher,
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
        if !self.teed {
            return Ok(Some(chunk));
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
    /// and return the sha256 (when hashing) and size of everything.
    pub(crate) fn finish(&mut self) -> io::Result<(Option<String>, u64)> {
        self.current = Bytes::new();
        while self.pull()?.is_some() {}
        Ok((self.join()?, self.seen))
    }

    fn join(&mut self) -> Digested {
        if !self.teed {
            return Ok(None);
        }
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
