//! The agent's main loop: enroll (once), recover the journal, send the outbox, then long-poll for a command, run
//! it through the [`StepExecutor`], journal it, report it, and run the next command the report is answered with.
//!
//! On errors the loop checks for shutdown first, then backs off exponentially with full jitter (so a fleet that
//! lost its coordinator does not reconnect in lock-step). Reports are retried until the coordinator has them, and
//! never dropped for their size or content ([`crate::delivery`]). A step's own I/O errors, a full disk's included,
//! fail that step and never stop the loop; only a refused token does ([`AgentError::TokenRefused`]).

use crate::delivery::{self, Refusal};
use crate::executor::StepExecutor;
use crate::journal::{EntryState, Journal, JournalError};
use crate::steplog::{self, LogMark};
use rollcage_client::{Client, ClientError};
use rollcage_proto::clip::{MAX_MESSAGE_BYTES, clip_head};
use rollcage_proto::wire::{
    AgentHello, CommandState, PollRequest, StepCommand, StepOutcome, StepReport,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The agent stopped for a reason retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent's root is unsafe, or the process or its private dirs could not be protected.
    #[error(transparent)]
    Prepare(#[from] crate::harden::PrepareError),
    /// The journal could not be opened or listed: running steps without it would be unsafe.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The coordinator client could not be set up (base URL, CA file).
    #[error("coordinator client: {0}")]
    Client(Box<ClientError>),
    /// The coordinator refused the agent's own token (401).
    #[error(
        "coordinator refused this agent's token: the instance was removed or re-enrolled, or the coordinator's \
         data was reset{}; re-enroll by giving the agent the enrollment token in a file (`--enroll-token-file FILE`, or \
         `enroll_token_file` in the agent's config as `rollcage agent install` writes it) ({error})",
        set_aside.as_ref().map(|p| format!("; the dead token was moved to {} and will not be used again", p.display())).unwrap_or_default()
    )]
    TokenRefused {
        /// The refusal.
        error: Box<ClientError>,
        /// Where the refused token file went.
        set_aside: Option<PathBuf>,
    },
    /// The coordinator refused to enroll the agent (a wrong enrollment token, or a name held by another agent).
    #[error(
        "coordinator refused to enroll this agent: check the enrollment token, and that no other agent holds \
         this name ({0})"
    )]
    EnrollRefused(Box<ClientError>),
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
        "no agent token at {} and no enrollment token given{}: give it in a file (mode 0600) with \
         `--enroll-token-file FILE` or as `enroll_token_file` in the agent's config",
        token_file.display(),
        refused.as_ref().map(|p| format!(" (the coordinator refused the last one, kept at {})", p.display())).unwrap_or_default()
    )]
    NoToken {
        /// Where the token was looked for.
        token_file: PathBuf,
        /// A token set aside after the coordinator refused it, if any.
        refused: Option<PathBuf>,
    },
}

impl AgentError {
    /// The process exit code for this error: [`crate::EXIT_REFUSED`] when only an operator can help (the unit is not
    /// restarted), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::TokenRefused { .. }
            | Self::EnrollRefused(_)
            | Self::NoToken { .. }
            | Self::Prepare(crate::harden::PrepareError::Unsafe(_)) => crate::EXIT_REFUSED,
            Self::Prepare(_) => 1,
            Self::Journal(_) | Self::Client(_) | Self::Io { .. } => 1,
        }
    }
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

/// The agent loop over one executor.
#[derive(Debug)]
pub struct AgentLoop<E> {
    client: Client,
    journal: Journal,
    exec: E,
    cfg: LoopConfig,
    /// Reports kept in a row because the coordinator refused even their reduced form: the backoff before the agent
    /// asks for work (and so offers them) again.
    kept: AtomicU32,
    /// What to say to the coordinator before the first poll ([`AgentLoop::with_hello`]).
    hello: Option<AgentHello>,
}

/// How sending one report ended.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per report, returned once and never stored"
)]
enum Delivered {
    /// The coordinator has it, or gave it up as unwanted; the next command its answer carried.
    Done(Option<StepCommand>),
    /// Refused even reduced: it stays unacknowledged in the journal and is sent again later.
    Kept,
}

impl<E: StepExecutor> AgentLoop<E> {
    /// A loop talking through `client` (carrying the agent's token), journaling into `journal`.
    pub fn new(client: Client, journal: Journal, exec: E, cfg: LoopConfig) -> Self {
        Self {
            client,
            journal,
            exec,
            cfg,
            kept: AtomicU32::new(0),
            hello: None,
        }
    }

    /// Say `hello` (tags, what is installed) once at start, before the first poll: the coordinator brings the host
    /// up to date from it. Retried like a poll while the coordinator is unreachable; a coordinator that does not
    /// know the route (an older version) is told nothing, and the agent works on.
    pub fn with_hello(mut self, hello: AgentHello) -> Self {
        self.hello = Some(hello);
        self
    }

    /// Send the hello, if one is due; `true` once it is settled (sent, or refused for good).
    async fn say_hello(&self, hello: &AgentHello) -> Result<bool, ClientError> {
        match self.client.hello(hello).await {
            Ok(r) => {
                if r.deployments.is_empty() {
                    tracing::info!("said hello: nothing to catch up");
                } else {
                    tracing::info!(deployments = ?r.deployments, "said hello: the coordinator is bringing this host up to date");
                }
                Ok(true)
            }
            Err(e) => match delivery::classify(&e) {
                Refusal::Retry | Refusal::Unauthorized => Err(e),
                Refusal::Malformed | Refusal::Unwanted => {
                    tracing::warn!(error = %e, "the coordinator refused this agent's hello (tags, catch-up); working on without");
                    Ok(true)
                }
            },
        }
    }

    /// Run until `shutdown` completes or the coordinator refuses the agent's token. A step in progress at shutdown
    /// is finished first. I/O errors of a step (a full disk included) fail that step, never the loop.
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
            if let Delivered::Done(c) = self.deliver(&cmd, report).await? {
                next = c;
            }
        }
        let mut attempt = 0u32;
        let mut hello = self.hello.clone();
        loop {
            if let Some(cmd) = next.take() {
                // Between two steps, honour a shutdown asked while the previous one ran; the coordinator offers
                // this command again after the restart.
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return Ok(()),
                    _ = std::future::ready(()) => {}
                }
                match self.step(cmd).await? {
                    Delivered::Done(c) => next = c,
                    Delivered::Kept => {
                        // The coordinator offers the command again at the next poll: not at once.
                        let kept = self.kept.fetch_add(1, Ordering::Relaxed);
                        let d = self.cfg.backoff.delay(kept);
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = &mut shutdown => return Ok(()),
                        }
                    }
                }
                continue;
            }
            let e = if let Some(greeting) = hello.as_ref() {
                let said = tokio::select! {
                    r = self.say_hello(greeting) => r,
                    _ = &mut shutdown => return Ok(()),
                };
                match said {
                    Ok(_) => {
                        attempt = 0;
                        hello = None;
                        continue;
                    }
                    Err(e) => e,
                }
            } else {
                let req = PollRequest {
                    wait_ms: Some(
                        u64::try_from(self.cfg.poll_wait.as_millis()).unwrap_or(u64::MAX),
                    ),
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
                        continue;
                    }
                    Err(e) => e,
                }
            };
            let d = self.cfg.backoff.delay(attempt);
            attempt += 1;
            match delivery::classify(&e) {
                Refusal::Unauthorized => {
                    return Err(AgentError::TokenRefused {
                        error: Box::new(e),
                        set_aside: None,
                    });
                }
                Refusal::Retry => {
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "poll failed");
                }
                // Not something a restart would change (a proxy's answer, a coordinator of another version):
                // keep asking, slowly, and say so.
                Refusal::Malformed | Refusal::Unwanted => {
                    tracing::error!(error = %e, retry_in_ms = d.as_millis() as u64, "poll refused");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = &mut shutdown => return Ok(()),
            }
        }
    }

    /// Run one command (unless the journal says it ran), report it, and return the next command.
    pub async fn process(&self, cmd: StepCommand) -> Result<Option<StepCommand>, AgentError> {
        Ok(match self.step(cmd).await? {
            Delivered::Done(next) => next,
            Delivered::Kept => None,
        })
    }

    async fn step(&self, cmd: StepCommand) -> Result<Delivered, AgentError> {
        let report = match self.journal.get(&cmd) {
            Ok(Some(entry)) => match entry.state {
                EntryState::Finished { mut report, .. } => {
                    tracing::info!(deployment = %cmd.deployment_id, event = %cmd.event,
                        "step already ran on this host; re-sending its report");
                    report.command_id = cmd.command_id;
                    report
                }
                // Only possible if recovery was skipped: never run a step twice.
                EntryState::Started { .. } => failed(
                    &cmd,
                    format!("{}: {}", cmd.event, crate::journal::INTERRUPTED),
                ),
            },
            Ok(None) => self.run_journaled(&cmd).await,
            Err(e) => {
                // Whether it ran is unknown (or its id cannot name a journal entry): never run it blind.
                tracing::error!(error = %e, deployment = %clip_head(&cmd.deployment_id, 256), event = %cmd.event,
                    "cannot read the step's journal entry; reporting it failed without running it");
                failed(&cmd, format!("{}: not run: {e}", cmd.event))
            }
        };
        if let Err(e) = self.journal.finish(&cmd, &report) {
            // The report still goes out; after a restart the journal would call this step interrupted, which the
            // coordinator ignores for a step that has ended.
            tracing::error!(error = %e, deployment = %cmd.deployment_id, event = %cmd.event,
                "cannot journal the step's report; sending it anyway");
        }
        self.deliver(&cmd, report).await
    }

    /// Journal the step's start, run it, and return its report in wire form. A step whose start cannot be journaled
    /// (a full disk) is not run: a restart could not tell whether it had.
    async fn run_journaled(&self, cmd: &StepCommand) -> StepReport {
        let mark = self.exec.log_file(cmd).map(|p| LogMark::at_end_of(&p));
        if let Err(e) = self.journal.start_marked(cmd, mark.clone()) {
            tracing::error!(error = %e, deployment = %cmd.deployment_id, event = %cmd.event,
                "cannot journal the step's start; reporting it failed without running it");
            return failed(
                cmd,
                format!(
                    "{}: not run: the agent cannot write its journal: {e}",
                    cmd.event
                ),
            );
        }
        tracing::info!(deployment = %cmd.deployment_id, event = %cmd.event, command = cmd.command_id, "step starting");
        let mut report = self.run_cancellable(cmd).await;
        // Also for a cancelled step: what its hooks wrote until then.
        report.log = mark.and_then(|m| steplog::capture(&m, self.cfg.max_log_bytes));
        let report = delivery::wire_form(report);
        tracing::info!(deployment = %cmd.deployment_id, event = %cmd.event, outcome = ?report.outcome,
            message = %report.message, "step ended");
        report
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
                        return failed(cmd, format!("{}: cancelled by a forced stop", cmd.event));
                    }
                }
            }
        }
    }

    /// Send a report until the coordinator has it (see [`delivery`]): retried while the coordinator is away, sent
    /// reduced when refused as malformed, kept in the journal when refused even so. Acknowledged in the journal once
    /// delivered.
    async fn deliver(
        &self,
        cmd: &StepCommand,
        report: StepReport,
    ) -> Result<Delivered, AgentError> {
        // Reports journaled by an older agent may be unbounded.
        let full = delivery::wire_form(report);
        let mut reduced: Option<StepReport> = None;
        let mut attempt = 0u32;
        loop {
            let sending = reduced.as_ref().unwrap_or(&full);
            let e = match self.client.report(sending).await {
                Ok(resp) => {
                    self.acknowledge(cmd, &full);
                    self.kept.store(0, Ordering::Relaxed);
                    return Ok(Delivered::Done(resp.command));
                }
                Err(e) => e,
            };
            match delivery::classify(&e) {
                Refusal::Retry => {
                    let d = self.cfg.backoff.delay(attempt);
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "report not delivered; retrying");
                    attempt += 1;
                    tokio::time::sleep(d).await;
                }
                Refusal::Malformed if reduced.is_none() => {
                    tracing::warn!(error = %e, command = cmd.command_id, event = %cmd.event,
                        "the coordinator refused the report; sending it reduced (outcome and a short message, no output)");
                    reduced = Some(full.clone().reduced());
                }
                Refusal::Malformed => {
                    tracing::error!(error = %e, command = cmd.command_id, deployment = %cmd.deployment_id,
                        event = %cmd.event, outcome = ?full.outcome,
                        "the coordinator refused even the reduced report; keeping it in the journal to send again later");
                    return Ok(Delivered::Kept);
                }
                Refusal::Unauthorized => {
                    return Err(AgentError::TokenRefused {
                        error: Box::new(e),
                        set_aside: None,
                    });
                }
                Refusal::Unwanted => {
                    // The coordinator no longer knows or wants this command (e.g. its data dir was reset): keeping
                    // the report would block every later one.
                    tracing::error!(error = %e, command = cmd.command_id, deployment = %cmd.deployment_id,
                        event = %cmd.event, outcome = ?full.outcome, "report refused; giving it up");
                    self.acknowledge(cmd, &full);
                    return Ok(Delivered::Done(None));
                }
            }
        }
    }

    /// Mark a report acknowledged. A journal that cannot be written (a full disk) only costs a re-send after a
    /// restart, which the coordinator ignores.
    fn acknowledge(&self, cmd: &StepCommand, report: &StepReport) {
        if let Err(e) = self.journal.ack(cmd, report) {
            tracing::warn!(error = %e, deployment = %cmd.deployment_id, event = %cmd.event,
                "cannot mark the report delivered in the journal");
        }
    }
}

/// A failed report for `cmd` that ran no hooks.
fn failed(cmd: &StepCommand, message: String) -> StepReport {
    StepReport {
        command_id: cmd.command_id,
        outcome: StepOutcome::Failed,
        message: clip_head(&message, MAX_MESSAGE_BYTES),
        hooks: Vec::new(),
        duration_ms: 0,
        log: None,
    }
}
