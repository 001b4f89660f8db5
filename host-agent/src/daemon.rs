//! The agent's main loop: enroll (once), recover the journal, send the outbox, then long-poll for a command, run
//! it through the [`StepExecutor`], journal it, report it, and run the next command the report is answered with.
//!
//! On errors the loop checks for shutdown first, then backs off exponentially with full jitter (so a fleet that
//! lost its coordinator does not reconnect in lock-step). Reports are retried until the coordinator has them.

use crate::executor::StepExecutor;
use crate::journal::{EntryState, Journal, JournalError};
use crate::steplog::{self, LogMark};
use rollcage_client::{Client, ClientError};
use rollcage_proto::wire::{
    CommandState, EnrollRequest, EnrollResponse, PollRequest, StepCommand, StepOutcome, StepReport,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The agent stopped for a reason retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The journal could not be written: running steps without it would be unsafe.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The coordinator refused our token or the enrollment.
    #[error("coordinator refused the agent: {0}")]
    Refused(ClientError),
    /// The token file could not be written.
    #[error(transparent)]
    TokenWrite(#[from] rollcage_secretfile::WriteError),
    /// Token file I/O.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Neither a token file nor an enrollment token was given.
    #[error(
        "no agent token at {0} and no enrollment token given: pass --enroll-token or --token-file"
    )]
    NoToken(PathBuf),
}

/// Retry delays: exponential from `base` to `max`, with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        // Short first retries so a coordinator restart costs little; capped so a long outage is noticed within 10 s
        // of its end.
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): uniform in [d/2, d] where d doubles up to `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        let d = exp.min(self.max);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(2);
        Duration::from_millis(fastrand::u64(ms / 2..=ms))
    }
}

/// The loop's settings.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// How long a poll may wait at the coordinator.
    pub poll_wait: Duration,
    /// How often a running step checks whether it was cancelled (also the heartbeat during long hooks).
    pub cancel_check: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// Bound of the hook output a report carries (the newest bytes are kept).
    pub max_log_bytes: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            poll_wait: Duration::from_secs(20),
            cancel_check: Duration::from_secs(2),
            backoff: Backoff::default(),
            max_log_bytes: crate::steplog::DEFAULT_MAX_LOG_BYTES,
        }
    }
}

/// Get this agent's token: from `token_file` if it exists, else by enrolling (and saving it there, mode 0600).
pub async fn obtain_token(
    client: &Client,
    name: &str,
    token_file: &Path,
    enroll_token: Option<&str>,
    backoff: Backoff,
) -> Result<String, AgentError> {
    if token_file.is_file() {
        let t = std::fs::read_to_string(token_file).map_err(|source| AgentError::Io {
            what: "reading token file",
            path: token_file.to_owned(),
            source,
        })?;
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let Some(enroll) = enroll_token else {
        return Err(AgentError::NoToken(token_file.to_owned()));
    };
    let enroller = client.with_token(Some(enroll.to_owned()));
    let mut attempt = 0;
    let resp: EnrollResponse = loop {
        match enroller
            .enroll(&EnrollRequest {
                name: name.to_owned(),
            })
            .await
        {
            Ok(r) => break r,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "enrollment failed; retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(AgentError::Refused(e)),
        }
    };
    rollcage_secretfile::write_secret(token_file, resp.token.as_bytes())?;
    tracing::info!(instance = %resp.instance, "enrolled");
    Ok(resp.token)
}

/// The agent loop over one executor.
#[derive(Debug)]
pub struct AgentLoop<E> {
    client: Client,
    journal: Journal,
    exec: E,
    cfg: LoopConfig,
}

impl<E: StepExecutor> AgentLoop<E> {
    /// A loop talking through `client` (carrying the agent's token), journaling into `journal`.
    pub fn new(client: Client, journal: Journal, exec: E, cfg: LoopConfig) -> Self {
        Self {
            client,
            journal,
            exec,
            cfg,
        }
    }

    /// Run until `shutdown` completes (or a fatal error). A step in progress at shutdown is finished first.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        let outbox = self.journal.recover()?;
        if !outbox.is_empty() {
            tracing::info!(
                reports = outbox.len(),
                "sending reports kept in the journal"
            );
        }
        let mut next = None;
        for (cmd, report) in outbox {
            // The answer's command is the agent's current step; the last answer is the freshest.
            next = self.deliver(&cmd, &report).await?;
        }
        let mut attempt = 0u32;
        loop {
            if let Some(cmd) = next.take() {
                // Between two steps, honour a shutdown asked while the previous one ran; the coordinator offers
                // this command again after the restart.
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return Ok(()),
                    _ = std::future::ready(()) => {}
                }
                next = self.process(cmd).await?;
                continue;
            }
            let req = PollRequest {
                wait_ms: Some(u64::try_from(self.cfg.poll_wait.as_millis()).unwrap_or(u64::MAX)),
            };
            let poll = self.client.poll(&req);
            let result = tokio::select! {
                r = poll => r,
                _ = &mut shutdown => return Ok(()),
            };
            match result {
                Ok(p) => {
                    attempt = 0;
                    next = p.command;
                }
                Err(e) if e.is_retryable() => {
                    let d = self.cfg.backoff.delay(attempt);
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "poll failed");
                    attempt += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = &mut shutdown => return Ok(()),
                    }
                }
                Err(e) => return Err(AgentError::Refused(e)),
            }
        }
    }

    /// Run one command (unless the journal says it ran), report it, and return the next command.
    pub async fn process(&self, cmd: StepCommand) -> Result<Option<StepCommand>, AgentError> {
        let report = match self.journal.get(&cmd)? {
            Some(entry) => match entry.state {
                EntryState::Finished { mut report, .. } => {
                    tracing::info!(deployment = %cmd.deployment_id, event = %cmd.event,
                        "step already ran on this host; re-sending its report");
                    report.command_id = cmd.command_id;
                    report
                }
                // Only possible if recovery was skipped: never run a step twice.
                EntryState::Started { .. } => StepReport {
                    command_id: cmd.command_id,
                    outcome: StepOutcome::Failed,
                    message: format!("{}: {}", cmd.event, crate::journal::INTERRUPTED),
                    hooks: Vec::new(),
                    duration_ms: 0,
                    log: None,
                },
            },
            None => {
                let mark = self.exec.log_file(&cmd).map(|p| LogMark::at_end_of(&p));
                self.journal.start_marked(&cmd, mark.clone())?;
                tracing::info!(deployment = %cmd.deployment_id, event = %cmd.event, command = cmd.command_id, "step starting");
                let mut report = self.run_cancellable(&cmd).await;
                // Also for a cancelled step: what its hooks wrote until then.
                report.log = mark.and_then(|m| steplog::capture(&m, self.cfg.max_log_bytes));
                steplog::fit(&mut report, steplog::MAX_REPORT_BYTES);
                tracing::info!(deployment = %cmd.deployment_id, event = %cmd.event, outcome = ?report.outcome,
                    message = %report.message, "step ended");
                report
            }
        };
        self.journal.finish(&cmd, &report)?;
        self.deliver(&cmd, &report).await
    }

    async fn run_cancellable(&self, cmd: &StepCommand) -> StepReport {
        let step = self.exec.run(cmd);
        tokio::pin!(step);
        let mut tick = tokio::time::interval(self.cfg.cancel_check);
        tick.tick().await;
        loop {
            tokio::select! {
                r = &mut step => return r,
                _ = tick.tick() => {
                    if let Ok(CommandState { cancelled: true }) = self.client.command_state(cmd.command_id).await {
                        tracing::warn!(deployment = %cmd.deployment_id, event = %cmd.event, "step cancelled by a forced stop");
                        return StepReport {
                            command_id: cmd.command_id,
                            outcome: StepOutcome::Failed,
                            message: format!("{}: cancelled by a forced stop", cmd.event),
                            hooks: Vec::new(),
                            duration_ms: 0,
                            log: None,
                        };
                    }
                }
            }
        }
    }

    /// Send a report until the coordinator has it; mark it acknowledged; return the next command.
    async fn deliver(
        &self,
        cmd: &StepCommand,
        report: &StepReport,
    ) -> Result<Option<StepCommand>, AgentError> {
        let mut attempt = 0u32;
        loop {
            match self.client.report(report).await {
                Ok(resp) => {
                    self.journal.ack(cmd, report)?;
                    return Ok(resp.command);
                }
                Err(e) if e.is_retryable() => {
                    let d = self.cfg.backoff.delay(attempt);
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "report not delivered; retrying");
                    attempt += 1;
                    tokio::time::sleep(d).await;
                }
                Err(e) if e.status() == Some(rollcage_client::StatusCode::UNAUTHORIZED) => {
                    return Err(AgentError::Refused(e));
                }
                Err(e) => {
                    // The coordinator no longer knows or wants this command (e.g. its data dir was reset): keeping
                    // the report would block every later one.
                    tracing::error!(error = %e, command = cmd.command_id, "report refused; dropping it");
                    self.journal.ack(cmd, report)?;
                    return Ok(None);
                }
            }
        }
    }
}
