//! `scripts.log` and the bounded output tail every hook outcome carries.
//!
//! Each line is written as `[YYYY-MM-DD HH:MM:SS.mmm] [stream] EVENT location: text` so the log of a whole
//! deployment reads in order and can be grepped per event. The tail keeps the last lines up to a byte budget for
//! reports (CodeDeploy shows ~2 KiB; we keep more).

use rollcage_proto::LifecycleEvent;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

/// Default byte budget of an outcome's log tail.
pub const DEFAULT_TAIL_BYTES: usize = 8 * 1024;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The hook's standard output.
    Stdout,
    /// The hook's standard error.
    Stderr,
    /// A note from the agent itself (start, end, truncation, warnings).
    Agent,
    /// A wasm hook's capability audit (what it used under its grant, what was denied).
    Capability,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Agent => "agent",
            Self::Capability => "capability",
        }
    }
}

/// The append-only `scripts.log` of one deployment; shared by every hook of it.
#[derive(Debug)]
pub struct ScriptLog {
    file: Mutex<File>,
}

impl ScriptLog {
    /// Open (create, append) the log, mode 0600, creating its directory private (hooks run as other users must
    /// not read what hooks run as root printed).
    pub fn open(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::layout::ensure_private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Append one line. Invalid UTF-8 is replaced, trailing newlines are dropped.
    pub fn line(
        &self,
        event: LifecycleEvent,
        location: &str,
        stream: Stream,
        text: &[u8],
    ) -> io::Result<()> {
        let text = String::from_utf8_lossy(text);
        let text = text.trim_end_matches(['\n', '\r']);
        let line = format!(
            "[{}] [{}] {event} {location}: {text}\n",
            timestamp(),
            stream.tag()
        );
        let mut file = self
            .file
            .lock()
            .map_err(|_| io::Error::other("scripts.log lock poisoned"))?;
        file.write_all(line.as_bytes())
    }
}

/// UTC wall-clock time with milliseconds, for log lines.
pub fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The last lines of a hook's output, bounded in bytes.
#[derive(Debug, Clone)]
pub struct OutputTail {
    budget: usize,
    used: usize,
    lines: VecDeque<String>,
}

impl OutputTail {
    /// A tail that keeps at most `budget` bytes of whole lines (a single longer line is cut to its end).
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            used: 0,
            lines: VecDeque::new(),
        }
    }

    /// Add a line (prefixed by its stream for stderr).
    pub fn push(&mut self, stream: Stream, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let text = text.trim_end_matches(['\n', '\r']);
        let mut line = match stream {
            Stream::Stdout => text.to_owned(),
            Stream::Stderr => format!("[stderr] {text}"),
            Stream::Agent => format!("[agent] {text}"),
            Stream::Capability => format!("[capability] {text}"),
        };
        if line.len() > self.budget {
            let mut cut = line.len() - self.budget;
            while !line.is_char_boundary(cut) {
                cut += 1;
            }
            line = line[cut..].to_owned();
        }
        self.used += line.len() + 1;
        self.lines.push_back(line);
        while self.used > self.budget + 1 {
            match self.lines.pop_front() {
                Some(old) => self.used -= old.len() + 1,
                None => break,
            }
        }
    }

    /// The kept lines joined with newlines.
    pub fn render(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_within_budget() {
        let mut t = OutputTail::new(10);
        for i in 0..100 {
            t.push(Stream::Stdout, format!("line{i}").as_bytes());
        }
        let r = t.render();
        assert!(r.len() <= 11, "{r:?}");
        assert!(r.ends_with("line99"));
    }

    #[test]
    fn script_log_appends_tagged_lines() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("logs/scripts.log");
        let log = ScriptLog::open(&path)?;
        log.line(
            LifecycleEvent::BeforeInstall,
            "hooks/a.sh",
            Stream::Stderr,
            b"oops\n",
        )?;
        let text = std::fs::read_to_string(&path)?;
        assert!(
            text.ends_with("[stderr] BeforeInstall hooks/a.sh: oops\n"),
            "{text}"
        );
        Ok(())
    }
}
