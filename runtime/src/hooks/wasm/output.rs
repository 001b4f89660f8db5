//! Hook output: a truncating sink for the guest's stdout/stderr, and the line assembler that writes what it
//! captured to `scripts.log` and the outcome's tail.
//!
//! The stock `MemoryOutputPipe` reports a full buffer as a closed stream, which makes Rust guests panic on the
//! next `println!`. This sink instead accepts every write, keeps the first `cap` bytes (both streams together)
//! and drops the rest, so a chatty hook keeps running and the agent's memory stays bounded; the log then says
//! the output was cut. Chunks travel over a channel to the task running the hook, which writes them as lines
//! while the guest runs.

use crate::hooks::log::{OutputTail, ScriptLog, Stream};
use bytes::Bytes;
use rollcage_proto::LifecycleEvent;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept whole; a longer run of bytes without a newline is logged in pieces of this size.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// What the sink tells the guest it may write at once. Any value works since writes never fail; 1 MiB keeps
/// wasi's chunking loop short.
const WRITE_PERMIT: usize = 1 << 20;

/// One piece of output on its way to the log.
pub(crate) type Chunk = (Stream, Bytes);

/// The byte budget shared by a hook's stdout and stderr.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    cap: usize,
    remaining: AtomicUsize,
    truncated: AtomicBool,
}

impl OutputBudget {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            remaining: AtomicUsize::new(cap),
            truncated: AtomicBool::new(false),
        }
    }

    /// Take up to `want` bytes of the budget; returns how many were granted.
    fn take(&self, want: usize) -> usize {
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                granted = want.min(left);
                Some(left - granted)
            });
        if granted < want {
            self.truncated.store(true, Ordering::Relaxed);
        }
        granted
    }

    /// True when some output was dropped.
    pub(crate) fn truncated(&self) -> bool {
        self.truncated.load(Ordering::Relaxed)
    }

    /// The cap in bytes.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
}

/// The guest's stdout or stderr.
#[derive(Debug, Clone)]
pub(crate) struct CappedSink {
    stream: Stream,
    tx: UnboundedSender<Chunk>,
    budget: Arc<OutputBudget>,
}

/// The two sinks of one hook run, the agent-note sender for host functions, and the receiving end.
pub(crate) struct OutputChannel {
    pub(crate) stdout: CappedSink,
    pub(crate) stderr: CappedSink,
    pub(crate) notes: UnboundedSender<Chunk>,
    pub(crate) rx: UnboundedReceiver<Chunk>,
    pub(crate) budget: Arc<OutputBudget>,
}

impl OutputChannel {
    /// Sinks sharing a budget of `cap` bytes.
    pub(crate) fn new(cap: usize) -> Self {
        let (tx, rx) = unbounded_channel();
        let budget = Arc::new(OutputBudget::new(cap));
        let sink = |stream| CappedSink {
            stream,
            tx: tx.clone(),
            budget: budget.clone(),
        };
        Self {
            stdout: sink(Stream::Stdout),
            stderr: sink(Stream::Stderr),
            notes: tx.clone(),
            rx,
            budget,
        }
    }
}

impl CappedSink {
    /// Write text the host produced for the guest (a `rollcage:hook/log` line), under the same budget.
    pub(crate) fn write_text(&self, text: &str) {
        self.accept(Bytes::copy_from_slice(text.as_bytes()));
    }

    fn accept(&self, bytes: Bytes) {
        let take = self.budget.take(bytes.len());
        if take > 0 {
            // The receiver is gone only after the run ended; late output has nowhere to go.
            let _ = self.tx.send((self.stream, bytes.slice(..take)));
        }
    }
}

impl IsTerminal for CappedSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedSink {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for CappedSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Turns output chunks into log lines and tail lines.
pub(crate) struct LineWriter<'a> {
    log: &'a ScriptLog,
    event: LifecycleEvent,
    location: &'a str,
    tail: OutputTail,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    log_error: Option<std::io::Error>,
}

impl<'a> LineWriter<'a> {
    /// A writer for one hook's output.
    pub(crate) fn new(
        log: &'a ScriptLog,
        event: LifecycleEvent,
        location: &'a str,
        tail: OutputTail,
    ) -> Self {
        Self {
            log,
            event,
            location,
            tail,
            stdout: Vec::new(),
            stderr: Vec::new(),
            log_error: None,
        }
    }

    /// Add a chunk; complete lines are written at once. Agent notes are whole lines.
    pub(crate) fn feed(&mut self, (stream, bytes): Chunk) {
        let mut partial = match stream {
            Stream::Stdout => std::mem::take(&mut self.stdout),
            Stream::Stderr => std::mem::take(&mut self.stderr),
            Stream::Agent | Stream::Capability => return self.emit(stream, &bytes),
        };
        let mut rest: &[u8] = &bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            partial.extend_from_slice(&rest[..nl]);
            self.emit(stream, &partial);
            partial.clear();
            rest = &rest[nl + 1..];
        }
        partial.extend_from_slice(rest);
        while partial.len() >= MAX_LINE_BYTES {
            let piece: Vec<u8> = partial.drain(..MAX_LINE_BYTES).collect();
            self.emit(stream, &piece);
        }
        match stream {
            Stream::Stdout => self.stdout = partial,
            _ => self.stderr = partial,
        }
    }

    /// Write an agent note.
    pub(crate) fn note(&mut self, text: &str) {
        self.emit(Stream::Agent, text.as_bytes());
    }

    /// Write a `[capability]` line of the audit.
    pub(crate) fn capability(&mut self, text: &str) {
        self.emit(Stream::Capability, text.as_bytes());
    }

    /// Flush unterminated lines; returns the tail and the first error writing `scripts.log`, if any.
    pub(crate) fn finish(mut self) -> (OutputTail, Option<std::io::Error>) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let partial = match stream {
                Stream::Stdout => std::mem::take(&mut self.stdout),
                _ => std::mem::take(&mut self.stderr),
            };
            if !partial.is_empty() {
                self.emit(stream, &partial);
            }
        }
        (self.tail, self.log_error)
    }

    fn emit(&mut self, stream: Stream, line: &[u8]) {
        if let Err(e) = self.log.line(self.event, self.location, stream, line) {
            self.log_error.get_or_insert(e);
        }
        self.tail.push(stream, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_truncation_is_recorded() {
        let b = OutputBudget::new(10);
        assert_eq!(b.take(6), 6);
        assert!(!b.truncated());
        assert_eq!(b.take(6), 4);
        assert_eq!(b.take(1), 0);
        assert!(b.truncated());
    }

    #[test]
    fn lines_are_assembled_across_chunks() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = ScriptLog::open(&dir.path().join("scripts.log"))?;
        let mut w = LineWriter::new(
            &log,
            LifecycleEvent::ValidateService,
            "h.wasm",
            OutputTail::new(1024),
        );
        w.feed((Stream::Stdout, Bytes::from_static(b"hel")));
        w.feed((Stream::Stderr, Bytes::from_static(b"err\n")));
        w.feed((Stream::Stdout, Bytes::from_static(b"lo\nworld")));
        let (tail, err) = w.finish();
        assert!(err.is_none());
        assert_eq!(tail.render(), "[stderr] err\nhello\nworld");
        let text = std::fs::read_to_string(dir.path().join("scripts.log"))?;
        assert!(
            text.contains("[stdout] ValidateService h.wasm: hello\n"),
            "{text}"
        );
        Ok(())
    }
}
