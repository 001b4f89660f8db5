//! The rollcage host agent (`rollcage agent`). It talks to the coordinator through `rollcage_client`.
//!
//! - [`journal`]: the local step journal that makes restarts safe and reports unlosable.
//! - [`executor`]: the [`executor::StepExecutor`] trait and the real executor over the runtime crate.
//! - [`daemon`]: recover, long-poll, run, report; backoff with jitter.
//! - [`delivery`]: what each answer to a report calls for (resend, reduce, keep, give up); a report's wire form.
//! - [`token`]: the agent's own token: enroll, keep, set aside when refused, re-enroll or stop.
//! - [`steplog`]: each step's hook output, bounded, for its report.
//! - [`harden`]: before anything runs: process protections, a root nobody else can write to, private dirs.

pub mod daemon;
pub mod delivery;
pub mod executor;
pub mod harden;
pub mod journal;
pub mod steplog;
pub mod token;

use rollcage_runtime::lifecycle::HostConfig;
use std::path::PathBuf;

/// Everything `rollcage agent` is started with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Coordinator base URLs, tried in this order; the agent stays on the one that answers (see
    /// `rollcage_client::failover`). Its journal and unsent reports do not care which one it talks to.
    pub coordinators: Vec<String>,
    /// The agent's root directory.
    pub root: PathBuf,
    /// The instance name.
    pub name: String,
    /// Enrollment token (first start).
    pub enroll_token: Option<String>,
    /// Where the agent's own token is kept (default `ROOT/agent/token`).
    pub token_file: Option<PathBuf>,
    /// `--var KEY=VALUE` for every hook.
    pub vars: Vec<(String, String)>,
    /// `--tag KEY=VALUE`: the instance's tags, sent at enrollment and on every start.
    pub tags: rollcage_proto::tags::Tags,
    /// The address the application serves on, for load balancers (`ROLLCAGE_SERVICE_ADDR` for hooks).
    pub service_addr: Option<String>,
    /// Extra CA certificate (PEM) to trust for a TLS coordinator.
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the coordinator's own CA, by its fingerprint (`--ca-fingerprint`).
    pub ca_fingerprint: Option<rollcage_proto::fingerprint::CaFingerprint>,
    /// OpenSSH allowed_signers file (`--trusted-signers`): when set, only revisions signed by a key it lists for
    /// `rollcage` are unpacked (see `rollcage_runtime::lifecycle::HostConfig::trusted_signers`).
    pub trusted_signers: Option<PathBuf>,
    /// At most this many bytes of archives in the bundle store (`--max-cache-bytes`); `None`: only the count
    /// bound applies.
    pub max_cache_bytes: Option<u64>,
    /// Loop settings.
    pub loop_config: daemon::LoopConfig,
}

impl AgentConfig {
    /// The variables every hook gets besides CodeDeploy's: `ROLLCAGE_INSTANCE`, `ROLLCAGE_SERVICE_ADDR` and the
    /// `--var`s, in that order.
    pub fn hook_vars(&self) -> Vec<(String, String)> {
        let mut v = vec![("ROLLCAGE_INSTANCE".to_owned(), self.name.clone())];
        if let Some(addr) = &self.service_addr {
            v.push(("ROLLCAGE_SERVICE_ADDR".to_owned(), addr.clone()));
        }
        v.extend(self.vars.iter().cloned());
        v
    }
}

/// The exit code of an agent that stopped because only an operator can help: the coordinator refused its token (or
/// its enrollment), it has neither a token nor an enrollment token, or its root is writable by others. 78 is `EX_CONFIG` of `sysexits.h`; the
/// systemd unit that `rollcage agent install` writes names it in `RestartPreventExitStatus=`, so such an agent is
/// not restarted into the same refusal every few seconds.
pub const EXIT_REFUSED: u8 = 78;

/// Run the agent until SIGTERM or Ctrl-C.
pub async fn run(cfg: AgentConfig) -> Result<(), daemon::AgentError> {
    run_until(cfg, shutdown_signal()).await
}

/// Run the agent until `shutdown` completes. When the coordinator refuses the agent's token, the token file is set
/// aside (never read again) and the agent enrolls again if it has an enrollment token (once per run), else it
/// returns [`daemon::AgentError::TokenRefused`] (see [`token`]).
pub async fn run_until(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), daemon::AgentError> {
    tokio::pin!(shutdown);
    // Before any file is read or written: a root others can write to is refused, and the agent's dir is private.
    harden::prepare(&cfg.root)?;
    let agent_dir = cfg.root.join("agent");
    let token_file = cfg
        .token_file
        .clone()
        .unwrap_or_else(|| agent_dir.join("token"));
    let trust = rollcage_client::Trust {
        ca_file: cfg.ca_file.clone(),
        ca_fingerprint: cfg.ca_fingerprint,
    };
    let base = rollcage_client::Client::with_bases(&cfg.coordinators, None, &trust)
        .map_err(|e| daemon::AgentError::Client(Box::new(e)))?;
    // The journal before the enrollment: an agent that cannot open its journal stops before it replaces the
    // instance's token.
    let journal = journal::Journal::open(&agent_dir.join("journal"))?
        .with_max_log_bytes(cfg.loop_config.max_log_bytes);
    // Acknowledged history older than a week is of no use to restarts.
    if let Ok(n) = journal.prune(7 * 24 * 3600 * 1000)
        && n > 0
    {
        tracing::info!(removed = n, "pruned old journal entries");
    }
    let mut reenrolled = false;
    loop {
        let token = token::obtain(
            &base,
            &cfg.name,
            &token_file,
            cfg.enroll_token.as_deref(),
            &cfg.tags,
            cfg.loop_config.backoff,
        )
        .await?;
        let client = base.with_token(Some(token));
        let mut host = HostConfig::new(&cfg.root);
        host.hook_vars = cfg.hook_vars();
        host.trusted_signers = cfg.trusted_signers.clone();
        host.max_cache_bytes = cfg.max_cache_bytes;
        let exec = executor::RuntimeExecutor::new(host, client.clone());
        tracing::info!(instance = %cfg.name, coordinators = %cfg.coordinators.join(","), root = %cfg.root.display(), "agent running");
        let agent = daemon::AgentLoop::new(client, journal.clone(), exec, cfg.loop_config.clone())
            .with_hello(hello(&cfg.root, &cfg.tags));
        let error = match agent.run(shutdown.as_mut()).await {
            Err(daemon::AgentError::TokenRefused { error, .. }) => error,
            other => return other,
        };
        let removed = error.code() == Some("instance_removed");
        let refused = daemon::AgentError::TokenRefused {
            error,
            set_aside: Some(token::set_aside(&token_file)?),
        };
        match token::after_refusal(cfg.enroll_token.is_some(), reenrolled, removed) {
            token::AfterRefusal::Reenroll => {
                tracing::error!("{refused}: enrolling again with the enrollment token");
                reenrolled = true;
            }
            token::AfterRefusal::Stop => return Err(refused),
        }
    }
}

/// What the agent says on every start: its tags, and per application and group it has deployed here, the
/// deployment whose Install last succeeded (the coordinator brings the host up to date from that). A group dir it
/// cannot read counts as nothing installed: the worst outcome is a redeploy of what the host has.
fn hello(
    root: &std::path::Path,
    tags: &rollcage_proto::tags::Tags,
) -> rollcage_proto::wire::AgentHello {
    let mut installed = Vec::new();
    match rollcage_runtime::layout::GroupLayout::all(root) {
        Ok(groups) => {
            for g in groups {
                if let Ok(Some(deployment)) = g.last_installed() {
                    installed.push(rollcage_proto::wire::InstalledHere {
                        application: g.application().to_owned(),
                        group: g.group().to_owned(),
                        deployment,
                    });
                }
            }
        }
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "listing what is installed here")
        }
    }
    installed.truncate(rollcage_proto::wire::MAX_INSTALLED_ENTRIES);
    rollcage_proto::wire::AgentHello {
        tags: tags.clone(),
        installed,
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
