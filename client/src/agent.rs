//! The agents' routes: enroll (enrollment token), then hello, poll, report, check a command and download a bundle (the
//! agent's own token).

use crate::failover::Resend;
use crate::routes;
use crate::{Client, ClientError};
use rollcage_proto::wire::{
    AgentHello, CommandState, DEFAULT_POLL_WAIT_MS, EnrollRequest, EnrollResponse, HelloResponse,
    PollRequest, PollResponse, ReportResponse, StepReport,
};
use std::path::Path;
use std::time::Duration;

/// How much longer than the poll's own wait the client waits for its answer: a slow network or a busy
/// coordinator must not turn every idle poll into a timeout.
const POLL_MARGIN: Duration = Duration::from_secs(30);

impl Client {
    /// `POST /v1/agent/enroll`, with the enrollment token as this client's token: the agent's own token.
    ///
    /// Sent to another coordinator only when it reached none: a coordinator that had it may have enrolled the
    /// name (its answer lost), and then a second enrollment is refused (the name is taken) and, with a per-use
    /// token, spends a second use. The agent's retries start again at the coordinator that answers.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.post_json(&routes::enroll(), req, None, Resend::OnlyIfUnsent)
            .await
    }

    /// `POST /v1/agent/hello`: the agent's tags and what it has installed, on every start; answers with the
    /// deployments that bring it up to date.
    ///
    /// Safe to send to the next coordinator after any failure: the coordinator decides under the group's lock and
    /// starts nothing for a host that a running deployment already includes.
    pub async fn hello(&self, req: &AgentHello) -> Result<HelloResponse, ClientError> {
        self.post_json(&routes::hello(), req, None, Resend::Idempotent)
            .await
    }

    /// `POST /v1/agent/poll`: the next command, waiting up to `req.wait_ms` (the coordinator's default when
    /// absent) for one. The answer is awaited that long plus a margin.
    ///
    /// Safe to send to the next coordinator after any failure: a poll only reads (a command stays offered until
    /// its report comes, so one whose answer was lost is offered again).
    pub async fn poll(&self, req: &PollRequest) -> Result<PollResponse, ClientError> {
        let wait = Duration::from_millis(req.wait_ms.unwrap_or(DEFAULT_POLL_WAIT_MS));
        let timeout = Some(wait + POLL_MARGIN);
        self.post_json(&routes::poll(), req, timeout, Resend::Idempotent)
            .await
    }

    /// `POST /v1/agent/reports`: the end of one step; answers with the next command.
    ///
    /// Safe to send to the next coordinator after any failure: a report names its command, and a coordinator
    /// records a step's end once and ignores the same report sent again.
    pub async fn report(&self, report: &StepReport) -> Result<ReportResponse, ClientError> {
        self.post_json(&routes::reports(), report, None, Resend::Idempotent)
            .await
    }

    /// `GET /v1/agent/commands/{id}`: whether a sent command is still wanted.
    pub async fn command_state(&self, command_id: i64) -> Result<CommandState, ClientError> {
        self.get_json(&routes::command(command_id)).await
    }

    /// `GET /v1/agent/applications/{app}/revisions/{revision}/bundle` into `dest`, checked against `sha256`
    /// while streaming (written to `dest.part`, renamed once verified); returns its size in bytes.
    pub async fn download_bundle(
        &self,
        app: &str,
        revision: &str,
        dest: &Path,
        sha256: &str,
    ) -> Result<u64, ClientError> {
        self.download(&routes::bundle(app, revision), dest, sha256)
            .await
    }
}
