//! Capturing one step's full hook output for its report.
//!
//! Every hook of a deployment appends to that deployment's `logs/scripts.log` (see `rollcage_runtime::layout`).
//! The agent runs one step at a time, so the bytes appended to that file between a step's start and its end are
//! exactly that step's output: the agent notes the file's length before the step ([`LogMark`], kept in the
//! journal so a step interrupted by a restart still reports what it wrote), and reads from there afterwards
//! ([`capture`]). Deployments of different groups have different files, so they never mix.
//!
//! The report carries at most `max` bytes (the newest; see [`rollcage_proto::wire::StepLog::keep_newest`]):
//! reports are sent as one JSON body and kept in the journal until acknowledged.

use rollcage_proto::wire::{StepLog, StepReport};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Default bound of one step's log in its report. Generous for hook output, small next to the coordinator's
/// request body limit (2 MB).
pub const DEFAULT_MAX_LOG_BYTES: usize = 256 * 1024;

/// The largest bound accepted for `--max-log-bytes`: the coordinator keeps no more per step (and refuses report
/// bodies over 2 MB), so a larger value would only make reports fail.
pub const MAX_LOG_BYTES_LIMIT: usize = 1024 * 1024;

/// Largest JSON body of a report the agent sends. The coordinator refuses bodies over 2 MB, and output full of
/// control characters grows up to six times when JSON-escaped, so the byte bound alone does not guarantee a fit;
/// a refused report would be re-sent forever.
pub const MAX_REPORT_BYTES: usize = 1536 * 1024;

/// Below this many bytes a log that still does not fit is dropped rather than halved again.
const MIN_LOG_BYTES: usize = 1024;

/// Shrink `report.log` (newest bytes kept, the cut counted) until the JSON report fits in `max_body` bytes; drop
/// the log if even a small one does not fit.
pub fn fit(report: &mut StepReport, max_body: usize) {
    loop {
        let size = serde_json::to_vec(&*report).map_or(usize::MAX, |v| v.len());
        if size <= max_body {
            return;
        }
        let Some(log) = report.log.take() else {
            return;
        };
        let half = log.text.len() / 2;
        if half < MIN_LOG_BYTES {
            tracing::warn!(
                command = report.command_id,
                "the step's output does not fit in its report; sending the report without it"
            );
            return;
        }
        report.log = Some(log.keep_newest(half));
    }
}

/// Where a step's output starts in its deployment's `scripts.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMark {
    /// The deployment's `scripts.log`.
    pub path: PathBuf,
    /// Its length before the step started.
    pub offset: u64,
}

impl LogMark {
    /// Mark the current end of `path` (0 if it does not exist yet).
    pub fn at_end_of(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self {
            path: path.to_owned(),
            offset,
        }
    }
}

/// What the step appended to its log since `mark`, bounded to the newest `max` bytes; `None` when it wrote
/// nothing (a step without hooks) or the log cannot be read (the report matters more than its log).
pub fn capture(mark: &LogMark, max: usize) -> Option<StepLog> {
    match read_since(mark, max) {
        Ok(log) => log,
        Err(e) => {
            tracing::warn!(path = %mark.path.display(), error = %e, "could not read the step's output for its report");
            None
        }
    }
}

fn read_since(mark: &LogMark, max: usize) -> std::io::Result<Option<StepLog>> {
    let mut file = match std::fs::File::open(&mark.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len <= mark.offset {
        return Ok(None);
    }
    // One byte more than the bound, so `keep_newest` can tell whether the cut falls on a line start.
    let budget = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let start = mark.offset.max(len.saturating_sub(budget));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    // `take`: the file may grow while we read (it should not: the step has ended).
    file.take(len - start).read_to_end(&mut bytes)?;
    Ok(Some(bound(&bytes, start - mark.offset, max)))
}

/// The newest `max` bytes of `bytes` (which follow `already_cut` bytes not read) as a [`StepLog`]. Pure.
pub fn bound(bytes: &[u8], already_cut: u64, max: usize) -> StepLog {
    // A read starting inside a multi-byte character: drop its continuation bytes (counted as cut).
    let skip = if already_cut > 0 {
        bytes
            .iter()
            .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
            .count()
    } else {
        0
    };
    let mut text = String::from_utf8_lossy(&bytes[skip..]).into_owned();
    let mut cut = already_cut + skip as u64;
    // Inside a character means inside a line: drop the rest of that line when a whole one follows.
    if skip > 0
        && let Some(nl) = text.find('\n')
        && nl + 1 < text.len()
    {
        text.drain(..=nl);
        cut += nl as u64 + 1;
    }
    let log = StepLog {
        text,
        truncated_bytes: cut,
    };
    // Without a skip, the read holds one byte more than `max` whenever it started after the mark, so
    // `keep_newest` sees the byte before its cut and keeps whole lines.
    log.keep_newest(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(text.as_bytes())
    }

    #[test]
    fn the_bound_keeps_the_newest_bytes_and_counts_the_cut() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("scripts.log");
        let mark = LogMark::at_end_of(&path);
        let mut all = String::new();
        for i in 0..1000 {
            all.push_str(&format!("[t] [stdout] Install hooks/a.sh: line {i}\n"));
        }
        append(&path, &all)?;
        let log = capture(&mark, 1024).ok_or_else(|| std::io::Error::other("no log"))?;
        assert!(log.text.len() <= 1024, "{}", log.text.len());
        assert!(log.text.ends_with("line 999\n"), "{}", log.text);
        assert!(
            log.text.starts_with("[t] "),
            "starts at a line: {}",
            log.text
        );
        assert_eq!(
            log.text.len() as u64 + log.truncated_bytes,
            all.len() as u64
        );
        // Within the bound: everything, nothing cut.
        let full = capture(&mark, all.len()).ok_or_else(|| std::io::Error::other("no log"))?;
        assert_eq!(full.text, all);
        assert_eq!(full.truncated_bytes, 0);
        Ok(())
    }

    #[test]
    fn one_steps_output_does_not_leak_into_the_next() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("scripts.log");
        let first = LogMark::at_end_of(&path);
        append(
            &path,
            "[t] [stdout] BeforeInstall a.sh: from before-install\n",
        )?;
        let before = capture(&first, DEFAULT_MAX_LOG_BYTES);
        let second = LogMark::at_end_of(&path);
        append(
            &path,
            "[t] [stdout] AfterInstall b.sh: from after-install\n",
        )?;
        let after = capture(&second, DEFAULT_MAX_LOG_BYTES)
            .ok_or_else(|| std::io::Error::other("no log"))?;
        assert_eq!(
            before.map(|l| l.text),
            Some("[t] [stdout] BeforeInstall a.sh: from before-install\n".to_owned())
        );
        assert_eq!(
            after.text,
            "[t] [stdout] AfterInstall b.sh: from after-install\n"
        );
        // A step that wrote nothing (no hooks) has no log, and neither has a deployment without a log file.
        let third = LogMark::at_end_of(&path);
        assert_eq!(capture(&third, DEFAULT_MAX_LOG_BYTES), None);
        let missing = LogMark::at_end_of(&dir.path().join("none/scripts.log"));
        assert_eq!(capture(&missing, DEFAULT_MAX_LOG_BYTES), None);
        Ok(())
    }

    #[test]
    fn deployments_of_two_groups_on_one_host_keep_their_outputs_apart() -> std::io::Result<()> {
        // Each deployment has its own scripts.log; steps of the two interleave on the host.
        let dir = tempfile::tempdir()?;
        let (a, b) = (
            dir.path().join("group-a/deploy-1/logs/scripts.log"),
            dir.path().join("group-b/deploy-2/logs/scripts.log"),
        );
        for p in [&a, &b] {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
        }
        append(&a, "a: earlier step\n")?;
        let mark_a = LogMark::at_end_of(&a);
        append(&b, "b: install\n")?;
        let mark_b = LogMark::at_end_of(&b);
        append(&a, "a: install\n")?;
        append(&b, "b: validate\n")?;
        let text = |m: &LogMark| capture(m, DEFAULT_MAX_LOG_BYTES).map(|l| l.text);
        assert_eq!(text(&mark_a), Some("a: install\n".to_owned()));
        assert_eq!(text(&mark_b), Some("b: validate\n".to_owned()));
        Ok(())
    }

    #[test]
    fn a_report_whose_escaped_log_is_too_big_is_shrunk_to_fit() -> Result<(), serde_json::Error> {
        // Control characters: 1 byte each in the log, 6 (`\u0001`) in the JSON body.
        let text = ("\u{1}".repeat(99) + "\n").repeat(10_000) + "last line\n";
        let mut report = StepReport {
            command_id: 1,
            outcome: rollcage_proto::wire::StepOutcome::Succeeded,
            message: "ok".into(),
            hooks: vec![],
            duration_ms: 1,
            log: Some(bound(text.as_bytes(), 0, MAX_LOG_BYTES_LIMIT)),
        };
        assert!(serde_json::to_vec(&report)?.len() > MAX_REPORT_BYTES);
        fit(&mut report, MAX_REPORT_BYTES);
        assert!(serde_json::to_vec(&report)?.len() <= MAX_REPORT_BYTES);
        let log = report
            .log
            .as_ref()
            .map(|l| (l.text.len(), l.truncated_bytes));
        let (kept, cut) = log.unwrap_or_default();
        assert!(kept > 0, "the newest output is still sent");
        assert_eq!(kept as u64 + cut, text.len() as u64);
        assert!(report.log.is_some_and(|l| l.text.ends_with("last line\n")));
        // A report that fits is left alone.
        let mut small = StepReport {
            command_id: 2,
            outcome: rollcage_proto::wire::StepOutcome::Failed,
            message: String::new(),
            hooks: vec![],
            duration_ms: 0,
            log: Some(bound(b"one line\n", 0, 100)),
        };
        fit(&mut small, MAX_REPORT_BYTES);
        assert_eq!(small.log.map(|l| l.text), Some("one line\n".to_owned()));
        Ok(())
    }

    #[test]
    fn a_read_starting_inside_a_character_drops_its_rest() {
        // "é" is 0xC3 0xA9: a read that starts at 0xA9 skips it.
        let log = bound(
            "\u{e9}abc\nxyz\n".as_bytes().get(1..).unwrap_or_default(),
            1,
            100,
        );
        assert_eq!(log.text, "xyz\n");
        assert_eq!(log.truncated_bytes, 2 + 4);
    }
}
