//! Target `wire`: the agent protocol's JSON ([`rollcage_proto::wire`]): what an agent reads from a poll or a
//! report's answer ([`PollResponse`], [`ReportResponse`], the [`StepCommand`] in them) and what the coordinator
//! reads from an agent ([`StepReport`]), with a report's bounds ([`StepReport::bounded`],
//! [`StepReport::reduced`]).
//!
//! Asserts: no panic; every value read survives a JSON round trip unchanged; a bounded report keeps every field
//! within its bound, shows no control character but newline and tab, fits [`MAX_REPORT_JSON_BYTES`] and is bounded
//! again unchanged; a reduced report keeps the command, outcome, duration and hook statuses' kinds, carries no
//! output and stays under 64 KiB of JSON. A report whose `duration_ms` is odd is also checked amplified: each of
//! its texts repeated past its bound and its hooks past [`MAX_HOOKS`], so the cutting paths see the fuzzer's
//! characters at every size (a fuzz input is a few KiB, the bounds are up to 1 MiB).

use crate::Verdict;
use rollcage_proto::HookStatus;
use rollcage_proto::clip::{
    MAX_BACKTRACE_FRAMES, MAX_FRAME_BYTES, MAX_HOOKS, MAX_LOCATION_BYTES, MAX_LOG_BYTES,
    MAX_LOG_TAIL_BYTES, MAX_MESSAGE_BYTES, MAX_REPORT_JSON_BYTES, MAX_STATUS_TEXT_BYTES,
    MAX_WARNING_BYTES, MAX_WARNINGS, REDUCED_MESSAGE_BYTES,
};
use rollcage_proto::wire::{PollResponse, ReportResponse, StepCommand, StepLog, StepReport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// A reduced report's JSON stays under this (the bound the agent relies on when the full report was refused).
const REDUCED_JSON_BYTES: usize = 64 * 1024;

/// Run `data` through the agent protocol's readers; accepted when it is one of the protocol's messages.
pub fn check(data: &[u8]) -> Verdict {
    let poll = round_trip::<PollResponse>(data);
    let answer = round_trip::<ReportResponse>(data);
    let command = round_trip::<StepCommand>(data);
    let report = round_trip::<StepReport>(data);
    // A poll answer's only field is optional and unknown fields are let through (the agent tolerates a newer
    // coordinator), so any JSON object reads as an idle one: it counts as accepted only when it names `command`.
    let names_command =
        serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| v.get("command").is_some());
    let accepted = [
        names_command && (poll.is_some() || answer.is_some()),
        command.is_some(),
        report.is_some(),
    ];
    if let Some(report) = report {
        if report.duration_ms % 2 == 1 {
            bounds(amplified(&report));
        }
        bounds(report);
    }
    Verdict::any(accepted)
}

/// `data` read as `T`, after checking that writing it and reading it back gives the same value.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let json = match serde_json::to_vec(&value) {
        Ok(j) => j,
        Err(e) => panic!("a value that was read cannot be written: {e}: {value:?}"),
    };
    match serde_json::from_slice::<T>(&json) {
        Ok(back) => assert_eq!(
            back,
            value,
            "round trip through {}",
            String::from_utf8_lossy(&json)
        ),
        Err(e) => panic!(
            "written JSON does not read back: {e}: {}",
            String::from_utf8_lossy(&json)
        ),
    }
    Some(value)
}

fn bounds(report: StepReport) {
    let bounded = report.clone().bounded();
    within_bounds(&bounded);
    assert_eq!(bounded.command_id, report.command_id);
    assert_eq!(bounded.outcome, report.outcome);
    assert_eq!(bounded.duration_ms, report.duration_ms);
    assert_eq!(bounded.hooks.len(), report.hooks.len().min(MAX_HOOKS));
    let json = json_len(&bounded);
    assert!(
        json <= MAX_REPORT_JSON_BYTES,
        "bounded report of {json} bytes of JSON"
    );
    assert_eq!(bounded.clone().bounded(), bounded, "bounded twice");

    let reduced = report.clone().reduced();
    within_bounds(&reduced);
    assert_eq!(reduced.command_id, report.command_id);
    assert_eq!(reduced.outcome, report.outcome);
    assert_eq!(reduced.duration_ms, report.duration_ms);
    assert!(reduced.log.is_none(), "a reduced report carries a log");
    assert!(reduced.message.len() <= REDUCED_MESSAGE_BYTES);
    for (r, b) in reduced.hooks.iter().zip(&bounded.hooks) {
        assert!(r.log_tail.is_empty() && r.warnings.is_empty(), "{r:?}");
        assert_eq!(r.status.code(), b.status.code(), "a reduced hook's status");
    }
    let json = json_len(&reduced);
    assert!(
        json < REDUCED_JSON_BYTES,
        "reduced report of {json} bytes of JSON"
    );
    assert_eq!(reduced.clone().reduced(), reduced, "reduced twice");
}

fn json_len(report: &StepReport) -> usize {
    match serde_json::to_vec(report) {
        Ok(j) => j.len(),
        Err(e) => panic!("a report cannot be written: {e}"),
    }
}

fn within_bounds(r: &StepReport) {
    text(&r.message, MAX_MESSAGE_BYTES, "message");
    assert!(r.hooks.len() <= MAX_HOOKS, "{} hooks", r.hooks.len());
    for h in &r.hooks {
        text(&h.location, MAX_LOCATION_BYTES, "location");
        text(&h.log_tail, MAX_LOG_TAIL_BYTES, "log_tail");
        assert!(
            h.warnings.len() <= MAX_WARNINGS,
            "{} warnings",
            h.warnings.len()
        );
        for w in &h.warnings {
            text(w, MAX_WARNING_BYTES, "warning");
        }
        match &h.status {
            HookStatus::NotExecutable { reason }
            | HookStatus::Unknown { reason }
            | HookStatus::InvalidModule { reason }
            | HookStatus::SandboxViolation { reason }
            | HookStatus::UnknownUser { user: reason } => {
                text(reason, MAX_STATUS_TEXT_BYTES, "status");
            }
            HookStatus::Trapped { trap, backtrace } => {
                text(trap, MAX_STATUS_TEXT_BYTES, "trap");
                assert!(
                    backtrace.len() <= MAX_BACKTRACE_FRAMES,
                    "{} frames",
                    backtrace.len()
                );
                for f in backtrace {
                    text(f, MAX_FRAME_BYTES, "frame");
                }
            }
            _ => {}
        }
    }
    if let Some(log) = &r.log {
        text(&log.text, MAX_LOG_BYTES, "log");
    }
}

/// A cut text: within `max` bytes, with no control character but newline and tab.
fn text(s: &str, max: usize, what: &str) {
    assert!(s.len() <= max, "{what}: {} bytes > {max}", s.len());
    assert!(
        !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{what} shows a control character: {s:?}"
    );
}

/// `s` repeated to just past `bound` bytes (empty stays empty).
fn past(s: &str, bound: usize) -> String {
    if s.is_empty() {
        return String::new();
    }
    s.repeat(bound / s.len() + 2)
}

/// `report` with every text repeated past its bound and its hooks past [`MAX_HOOKS`].
fn amplified(report: &StepReport) -> StepReport {
    let mut r = report.clone();
    r.message = past(&r.message, MAX_MESSAGE_BYTES);
    for h in &mut r.hooks {
        h.location = past(&h.location, MAX_LOCATION_BYTES);
        h.log_tail = past(&h.log_tail, MAX_LOG_TAIL_BYTES);
        if let Some(w) = h.warnings.first().cloned() {
            h.warnings = vec![past(&w, MAX_WARNING_BYTES); MAX_WARNINGS + 1];
        }
        match &mut h.status {
            HookStatus::NotExecutable { reason }
            | HookStatus::Unknown { reason }
            | HookStatus::InvalidModule { reason }
            | HookStatus::SandboxViolation { reason }
            | HookStatus::UnknownUser { user: reason } => {
                *reason = past(reason, MAX_STATUS_TEXT_BYTES);
            }
            HookStatus::Trapped { trap, backtrace } => {
                *trap = past(trap, MAX_STATUS_TEXT_BYTES);
                if let Some(f) = backtrace.first().cloned() {
                    *backtrace = vec![past(&f, MAX_FRAME_BYTES); MAX_BACKTRACE_FRAMES + 1];
                }
            }
            _ => {}
        }
    }
    if let Some(first) = r.hooks.first().cloned() {
        while r.hooks.len() <= MAX_HOOKS {
            r.hooks.push(first.clone());
        }
    }
    r.log = r.log.map(|log| StepLog {
        text: past(&log.text, MAX_LOG_BYTES),
        truncated_bytes: log.truncated_bytes,
    });
    r
}
