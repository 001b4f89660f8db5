//! The wire's bounds on what one step report carries, and the one way text is cut to fit them.
//!
//! A report is built from data the agent does not control (an archive's entry names, a hook's output), so every
//! string in it is cut before it is sent and again when the coordinator receives it: [`StepReport::bounded`] is the
//! rule both sides apply. Cut text ends (or starts) with a marker saying how many bytes were cut, and control
//! characters other than newline and tab are shown as `U+FFFD` so that a report's JSON is at most
//! [`MAX_REPORT_JSON_BYTES`] whatever the hooks printed (JSON escapes a control byte as six bytes).
//!
//! When the coordinator still refuses a report, the agent sends [`StepReport::reduced`] instead: the same outcome,
//! a short message, no output. A report is never dropped.

use crate::HookStatus;
use crate::wire::{StepLog, StepReport};

/// A report's `message` (one line for people), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// A hook's `location` in a report, in bytes.
pub const MAX_LOCATION_BYTES: usize = 1024;
/// A hook's `log_tail`, in bytes (the newest are kept; the whole output is in the step's `log`).
pub const MAX_LOG_TAIL_BYTES: usize = 4 * 1024;
/// Warnings kept per hook, and the bytes of each.
pub const MAX_WARNINGS: usize = 8;
/// See [`MAX_WARNINGS`].
pub const MAX_WARNING_BYTES: usize = 512;
/// Hooks listed in one report (an AppSpec event with more hooks than this is already unusual; the rest are counted in
/// the message).
pub const MAX_HOOKS: usize = 64;
/// Capability counts kept per hook: one per kind and result of [`crate::outcome::CAPABILITY_KINDS`] ×
/// [`crate::outcome::CAPABILITY_RESULTS`], with room for a few kinds a newer agent may add.
pub const MAX_CAPABILITY_COUNTS: usize = 16;
/// Longest capability kind or result kept.
pub const MAX_CAPABILITY_LABEL_BYTES: usize = 16;
/// The text of a hook's status (`reason`, `user`, `trap`), in bytes.
pub const MAX_STATUS_TEXT_BYTES: usize = 512;
/// Frames kept of a trapped wasm hook's backtrace, and the bytes of each (guest function names).
pub const MAX_BACKTRACE_FRAMES: usize = 16;
/// See [`MAX_BACKTRACE_FRAMES`].
pub const MAX_FRAME_BYTES: usize = 128;
/// A step's `log`, in bytes (the newest are kept). The agent's own capture bound may be lower.
pub const MAX_LOG_BYTES: usize = 1024 * 1024;
/// A reduced report's message, in bytes.
pub const REDUCED_MESSAGE_BYTES: usize = 512;
/// The largest JSON body a bounded report can have (a JSON string escapes at most `"` and `\` to two bytes once
/// control characters are replaced, and `U+FFFD` is three bytes for the one it replaces: 3× the text plus the
/// fixed fields). The coordinator's body limit on reports must be at least this.
pub const MAX_REPORT_JSON_BYTES: usize = 3
    * (MAX_MESSAGE_BYTES
        + MAX_HOOKS
            * (MAX_LOCATION_BYTES
                + MAX_LOG_TAIL_BYTES
                + MAX_WARNINGS * MAX_WARNING_BYTES
                + MAX_STATUS_TEXT_BYTES
                + MAX_BACKTRACE_FRAMES * MAX_FRAME_BYTES)
        + MAX_LOG_BYTES)
    + 64 * 1024;

/// `text` cut to at most `max` bytes keeping its start, with a marker (`…[N bytes in all]`) when cut. The marker
/// counts in `max`, so the result is never longer than `max` (for `max` ≥ 40). Linear in `max`, not in `text`.
pub fn clip_head(text: &str, max: usize) -> String {
    let raw = &text[..text.floor_char_boundary(max)];
    let shown = visible(raw);
    if raw.len() == text.len() && shown.len() <= max {
        return shown;
    }
    let end = shown.floor_char_boundary(max.saturating_sub(marker_room(text.len())));
    format!("{}…[{} bytes in all]", &shown[..end], text.len())
}

/// `text` cut to at most `max` bytes keeping its end, with a marker (`[N bytes in all]…`) when cut.
pub fn clip_tail(text: &str, max: usize) -> String {
    let raw = &text[text.ceil_char_boundary(text.len().saturating_sub(max))..];
    let shown = visible(raw);
    if raw.len() == text.len() && shown.len() <= max {
        return shown;
    }
    let keep = max.saturating_sub(marker_room(text.len())).min(shown.len());
    let start = shown.ceil_char_boundary(shown.len() - keep);
    format!("[{} bytes in all]…{}", text.len(), &shown[start..])
}

/// Bytes a marker for a text of `len` bytes needs: brackets, words, `…` (3 bytes) and the digits.
fn marker_room(len: usize) -> usize {
    "…[ bytes in all]".len() + len.to_string().len()
}

/// Control characters other than `\n` and `\t` replaced by `U+FFFD` (a terminal escape in a hook's output must not
/// reach an operator's terminal, and must not cost six JSON bytes each).
fn visible(text: &str) -> String {
    if !text.chars().any(is_hidden) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| if is_hidden(c) { '\u{FFFD}' } else { c })
        .collect()
}

fn is_hidden(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// The texts a hook's status carries (an interpreter line, a module's compile error, a backtrace of guest function
/// names) come from the revision: cut them too.
fn bound_status(status: &mut HookStatus, text_max: usize, frames: usize) {
    match status {
        HookStatus::NotExecutable { reason }
        | HookStatus::Unknown { reason }
        | HookStatus::InvalidModule { reason }
        | HookStatus::SandboxViolation { reason }
        | HookStatus::UnknownUser { user: reason } => {
            *reason = clip_head(reason, text_max);
        }
        HookStatus::Trapped { trap, backtrace } => {
            *trap = clip_head(trap, text_max);
            backtrace.truncate(frames);
            for frame in backtrace {
                *frame = clip_head(frame, MAX_FRAME_BYTES);
            }
        }
        HookStatus::Succeeded
        | HookStatus::ScriptMissing
        | HookStatus::TimedOut { .. }
        | HookStatus::Failed { .. }
        | HookStatus::OutputsLeftOpen
        | HookStatus::InterruptedByRestart
        | HookStatus::KilledBySignal { .. }
        | HookStatus::MemoryLimitExceeded { .. } => {}
    }
}

impl StepReport {
    /// This report within the wire's bounds (see the module doc). Idempotent.
    pub fn bounded(mut self) -> Self {
        self.message = clip_head(&self.message, MAX_MESSAGE_BYTES);
        if self.hooks.len() > MAX_HOOKS {
            let more = self.hooks.len() - MAX_HOOKS;
            self.hooks.truncate(MAX_HOOKS);
            self.message = clip_head(
                &format!("{} ({more} more hooks not listed)", self.message),
                MAX_MESSAGE_BYTES,
            );
        }
        for hook in &mut self.hooks {
            hook.location = clip_head(&hook.location, MAX_LOCATION_BYTES);
            hook.log_tail = clip_tail(&hook.log_tail, MAX_LOG_TAIL_BYTES);
            hook.warnings.truncate(MAX_WARNINGS);
            for w in &mut hook.warnings {
                *w = clip_head(w, MAX_WARNING_BYTES);
            }
            hook.capabilities.truncate(MAX_CAPABILITY_COUNTS);
            for c in &mut hook.capabilities {
                c.kind = clip_head(&c.kind, MAX_CAPABILITY_LABEL_BYTES);
                c.result = clip_head(&c.result, MAX_CAPABILITY_LABEL_BYTES);
            }
            bound_status(
                &mut hook.status,
                MAX_STATUS_TEXT_BYTES,
                MAX_BACKTRACE_FRAMES,
            );
        }
        // Cut first (so the work is bounded by the bound, not by what was sent), make visible (which may grow the
        // text up to 3×), cut again.
        self.log = self.log.map(|log| {
            let StepLog {
                text,
                truncated_bytes,
            } = log.keep_newest(MAX_LOG_BYTES);
            StepLog {
                text: visible(&text),
                truncated_bytes,
            }
            .keep_newest(MAX_LOG_BYTES)
        });
        self
    }

    /// The smallest faithful form of this report: its outcome and duration, a short message, the hooks without
    /// their output, and no log. Sent when the coordinator refuses the full report.
    pub fn reduced(self) -> Self {
        let mut r = self.bounded();
        r.message = clip_head(&r.message, REDUCED_MESSAGE_BYTES);
        for hook in &mut r.hooks {
            hook.location = clip_head(&hook.location, 256);
            hook.log_tail.clear();
            hook.warnings.clear();
            bound_status(&mut hook.status, 128, 0);
        }
        r.log = None;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HookOutcome;
    use crate::wire::StepOutcome;

    #[test]
    fn clip_keeps_short_text_and_marks_a_cut() {
        assert_eq!(clip_head("short", 64), "short");
        let long = "x".repeat(1000);
        let c = clip_head(&long, 64);
        assert!(c.len() <= 64, "{}", c.len());
        assert!(
            c.starts_with("xxx") && c.ends_with("[1000 bytes in all]"),
            "{c}"
        );
        let t = clip_tail(&format!("{long}END"), 64);
        assert!(
            t.len() <= 64 && t.ends_with("END") && t.starts_with('['),
            "{t}"
        );
        // Never splits a character.
        let e = clip_head(&"é".repeat(100), 41);
        assert!(e.len() <= 41);
        let t = clip_tail(&"é".repeat(100), 41);
        assert!(t.len() <= 41);
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(clip_head("a\u{1b}[31mb\n\tc", 64), "a\u{FFFD}[31mb\n\tc");
    }

    fn hostile() -> StepReport {
        let ctl = "\u{1}".repeat(64 * 1024);
        StepReport {
            command_id: 1,
            outcome: StepOutcome::Failed,
            message: format!("cannot unpack {}", "n".repeat(64 << 20)),
            hooks: (0..100)
                .map(|i| HookOutcome {
                    location: format!("{i}{ctl}"),
                    status: HookStatus::Trapped {
                        trap: ctl.clone(),
                        backtrace: vec![ctl[..4096].to_owned(); 100],
                    },
                    duration_ms: 1,
                    log_tail: ctl.clone(),
                    warnings: vec![ctl[..4096].to_owned(); 10],
                    capabilities: Vec::new(),
                })
                .collect(),
            duration_ms: 5,
            log: Some(StepLog {
                text: "\"\\".repeat(4 << 20),
                truncated_bytes: 0,
            }),
        }
    }

    #[test]
    fn a_bounded_report_fits_the_json_bound_whatever_it_held() -> Result<(), String> {
        let b = hostile().bounded();
        let json = serde_json::to_vec(&b).map_err(|e| e.to_string())?;
        assert!(
            json.len() <= MAX_REPORT_JSON_BYTES,
            "{} > {MAX_REPORT_JSON_BYTES}",
            json.len()
        );
        assert_eq!(b.hooks.len(), MAX_HOOKS);
        assert!(
            matches!(&b.hooks[0].status, HookStatus::Trapped { trap, backtrace }
                if trap.len() <= MAX_STATUS_TEXT_BYTES && backtrace.len() == MAX_BACKTRACE_FRAMES
                    && backtrace.iter().all(|f| f.len() <= MAX_FRAME_BYTES)),
            "a hook's status is cut too"
        );
        assert!(b.message.ends_with("bytes in all]"), "{}", b.message);
        assert_eq!(b.clone().bounded(), b, "idempotent");
        assert_eq!(b.outcome, StepOutcome::Failed);
        Ok(())
    }

    #[test]
    fn a_reduced_report_keeps_the_outcome_and_is_small() -> Result<(), String> {
        let r = hostile().reduced();
        assert_eq!(r.outcome, StepOutcome::Failed);
        assert_eq!(r.command_id, 1);
        assert!(r.log.is_none());
        assert!(r.message.len() <= REDUCED_MESSAGE_BYTES);
        assert!(serde_json::to_vec(&r).map_err(|e| e.to_string())?.len() < 64 * 1024);
        Ok(())
    }
}
