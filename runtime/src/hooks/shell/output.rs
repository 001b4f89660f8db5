//! Reading a hook's stdout and stderr line by line.
//!
//! Each stream gets its own task that splits the bytes into lines (bounded in length) and sends them to the run
//! loop, which writes them to `scripts.log` and the outcome's tail. When the run loop stops listening (the script
//! exited but a background process still holds the pipe), the task keeps reading and discards what it reads until
//! the last writer closes the pipe: the daemon must not die of SIGPIPE because the agent looked away.

use super::super::log::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Longest line sent as one; longer lines are split into pieces of this size. Bounds the memory a hook printing
/// megabytes without a newline can make the agent hold, while keeping ordinary long lines (JSON, stack traces)
/// whole.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Read buffer size per stream.
const READ_CHUNK: usize = 8 * 1024;

/// One line of output (without its newline), or a piece of an over-long line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it came from.
    pub stream: Stream,
    /// The bytes, without the trailing newline.
    pub text: Vec<u8>,
}

/// Splits a byte stream into lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    pending: Vec<u8>,
    /// The last piece was cut at `max` bytes: a newline right after it ends that line, not a new empty one.
    cut: bool,
}

impl LineSplitter {
    /// A splitter cutting lines longer than `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            pending: Vec::new(),
            cut: false,
        }
    }

    /// Add bytes; return every line completed by them.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            if std::mem::take(&mut self.cut) && bytes[0] == b'\n' {
                bytes = &bytes[1..];
                continue;
            }
            let room = self.max - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&window[..i]);
                    lines.push(std::mem::take(&mut self.pending));
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.pending.len() == self.max {
                        lines.push(std::mem::take(&mut self.pending));
                        self.cut = true;
                    }
                }
            }
        }
        lines
    }

    /// The unterminated last line, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Read `pipe` to its end, sending lines to `tx`; after `tx` is closed, keep draining and discard.
pub async fn pump<R: AsyncRead + Unpin>(mut pipe: R, stream: Stream, tx: mpsc::Sender<Line>) {
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut listening = true;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(?stream, error = %e, "reading hook output failed");
                break;
            }
        };
        if !listening {
            continue;
        }
        for text in splitter.push(&buf[..n]) {
            if tx.send(Line { stream, text }).await.is_err() {
                listening = false;
                break;
            }
        }
    }
    if listening && let Some(text) = splitter.finish() {
        // The receiver may be gone already; the line is then lost like any output after the grace.
        let _ = tx.send(Line { stream, text }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_newlines_across_pushes() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.push(b"ab"), Vec::<Vec<u8>>::new());
        assert_eq!(
            s.push(b"c\nde\n\nf"),
            vec![b"abc".to_vec(), b"de".to_vec(), Vec::new()]
        );
        assert_eq!(s.finish(), Some(b"f".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_are_cut_into_bounded_pieces() {
        let mut s = LineSplitter::new(4);
        let lines = s.push(b"0123456789\nab\n");
        assert_eq!(
            lines,
            vec![
                b"0123".to_vec(),
                b"4567".to_vec(),
                b"89".to_vec(),
                b"ab".to_vec()
            ]
        );
        assert!(lines.iter().all(|l| l.len() <= 4));
    }

    #[test]
    fn a_newline_right_after_a_full_piece_adds_no_empty_line() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"abcd\n"), vec![b"abcd".to_vec()]);
        assert_eq!(s.push(b"efgh"), vec![b"efgh".to_vec()]);
        assert_eq!(s.push(b"\n\n"), vec![Vec::<u8>::new()]);
    }

    #[tokio::test]
    async fn pump_sends_lines_then_drains_after_the_receiver_leaves() {
        let (tx, mut rx) = mpsc::channel(1);
        let data: &[u8] = b"one\ntwo\nthree";
        let task = tokio::spawn(pump(data, Stream::Stderr, tx));
        let first = rx.recv().await;
        assert_eq!(
            first,
            Some(Line {
                stream: Stream::Stderr,
                text: b"one".to_vec()
            })
        );
        drop(rx);
        // The task must end (drain to EOF) even though nobody listens any more.
        assert!(task.await.is_ok());
    }
}
