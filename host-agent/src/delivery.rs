//! What the agent does with each answer to a report it sends: the pure decision, apart from the sending (which is
//! [`crate::daemon::AgentLoop`]'s).
//!
//! A report is never dropped because it is too big or malformed: every report leaves the agent in its wire form
//! ([`wire_form`]: within `rollcage_proto::clip`'s bounds, and within the body limit of coordinators that predate
//! server-side truncation), and one the coordinator still refuses as malformed is sent again reduced
//! (`StepReport::reduced`: outcome, short message, no output). If even that is refused, the report stays unacknowledged in
//! the journal and is sent again later, with backoff, when the coordinator offers its command again or the agent
//! restarts. Only a coordinator that does not know or want the command (404, 403, 409) makes the agent give a report
//! up, with an error in its log.

use crate::steplog;
use rollcage_client::{ClientError, StatusCode};
use rollcage_proto::wire::StepReport;

/// What a refused (or failed) report delivery calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The coordinator could not be reached or is overloaded: send the same report again after a backoff.
    Retry,
    /// The coordinator refused the report itself (400, 413, 422): send a reduced one, then keep it for later.
    Malformed,
    /// The coordinator refused the agent's token (401): the agent cannot go on with it.
    Unauthorized,
    /// The coordinator does not know or want this command (404, 403, 409, an answer that is not the API's): give
    /// the report up, loudly.
    Unwanted,
}

/// Classify the error of a report delivery. Pure.
pub fn classify(e: &ClientError) -> Refusal {
    if e.is_retryable() {
        return Refusal::Retry;
    }
    match e.status() {
        Some(StatusCode::UNAUTHORIZED) => Refusal::Unauthorized,
        Some(
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY,
        ) => Refusal::Malformed,
        _ => Refusal::Unwanted,
    }
}

/// The form of `report` the agent sends (and journals): every string within the wire's bounds
/// (`StepReport::bounded`), and the output shortened further if the JSON body would pass
/// [`steplog::MAX_REPORT_BYTES`]. Idempotent.
pub fn wire_form(report: StepReport) -> StepReport {
    let mut r = report.bounded();
    steplog::fit(&mut r, steplog::MAX_REPORT_BYTES);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_client::ClientError;

    fn status(code: u16) -> ClientError {
        ClientError::Status {
            method: rollcage_client::Method::POST,
            url: "http://c/v1/agent/reports".into(),
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
            code: "x".into(),
            message: "y".into(),
        }
    }

    #[test]
    fn every_answer_has_one_course() {
        for (code, want) in [
            (400, Refusal::Malformed),
            (413, Refusal::Malformed),
            (422, Refusal::Malformed),
            (401, Refusal::Unauthorized),
            (403, Refusal::Unwanted),
            (404, Refusal::Unwanted),
            (409, Refusal::Unwanted),
            (429, Refusal::Retry),
            (500, Refusal::Retry),
            (503, Refusal::Retry),
        ] {
            assert_eq!(classify(&status(code)), want, "{code}");
        }
        let down = ClientError::Transport {
            method: rollcage_client::Method::POST,
            url: "http://c".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(classify(&down), Refusal::Retry);
    }

    #[test]
    fn the_wire_form_of_a_hostile_report_fits_the_old_body_limit() -> Result<(), serde_json::Error>
    {
        // 60 hooks printing 9 KB of control bytes each: 3.2 MB of JSON as it was, over the coordinator's 2 MB.
        let ctl = "\u{1}".repeat(9 * 1024);
        let report = StepReport {
            command_id: 7,
            outcome: rollcage_proto::wire::StepOutcome::Failed,
            message: format!("cannot unpack {}", "n".repeat(1 << 20)),
            hooks: (0..60)
                .map(|i| rollcage_proto::HookOutcome {
                    location: format!("scripts/{i}.sh"),
                    status: rollcage_proto::HookStatus::Failed { exit_code: 1 },
                    duration_ms: 1,
                    log_tail: ctl.clone(),
                    warnings: vec![],
                    capabilities: Vec::new(),
                })
                .collect(),
            duration_ms: 1,
            log: Some(rollcage_proto::wire::StepLog {
                text: ctl.repeat(100),
                truncated_bytes: 0,
            }),
        };
        let before = serde_json::to_vec(&report)?.len();
        assert!(before > 2_000_000);
        let sent = wire_form(report);
        let after = serde_json::to_vec(&sent)?.len();
        eprintln!("report JSON: {before} bytes as built, {after} in wire form");
        assert!(after <= steplog::MAX_REPORT_BYTES);
        assert!(sent.message.len() <= rollcage_proto::clip::MAX_MESSAGE_BYTES);
        assert_eq!(sent.hooks.len(), 60);
        assert_eq!(wire_form(sent.clone()), sent, "idempotent");
        Ok(())
    }
}
