//! Fleet commands of the `rollcage` binary: run the coordinator or an agent, and operate deployments.
//!
//! Remote commands take the coordinator URL (or several, comma-separated) from `--coordinator` or
//! `ROLLCAGE_COORDINATOR`, and the token from a file (`--token-file FILE` or `ROLLCAGE_TOKEN_FILE`) or
//! `ROLLCAGE_TOKEN` — never from the command line, where every local user reads it in `/proc/PID/cmdline`; read
//! commands take `--output json` for scripts. Waiting commands follow the deployment live over the coordinator's
//! event stream ([`watch`]).
//!
//! Exit codes scripts can rely on:
//! - `0`: success (for `deploy --wait`/`rollback --wait`/`continue --wait`/`watch`: the deployment succeeded,
//!   or waits in `ready` for `continue`);
//! - `1`: the command could not be carried out (bad arguments, coordinator unreachable, API error);
//! - `2`: the deployment waited for failed;
//! - `3`: the deployment waited for was stopped.

mod enroll_tokens;
mod logs;
pub(crate) mod pack;
mod people;
pub(crate) mod progress;
mod render;
mod watch;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use rollcage_client::{CaFingerprint, Client, Trust};
use rollcage_proto::Form;
use rollcage_proto::healthy::MinHealthy;
use rollcage_proto::lb::GroupLb;
use rollcage_proto::wire::{
    Concurrency, CreateApplication, CreateDeployment, CreateGroup, Deployment, DeploymentStyle,
    RegisterUrlRevision, StopDeployment,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code: the deployment failed.
pub const EXIT_DEPLOYMENT_FAILED: u8 = 2;
/// Exit code: the deployment was stopped.
pub const EXIT_DEPLOYMENT_STOPPED: u8 = 3;

/// Where the coordinator is and who we are.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Coordinator base URL, e.g. http://127.0.0.1:7700, or several separated by commas (tried in order: a read
    /// moves on when one is unreachable or answers 5xx, a change only when it could not reach one).
    #[arg(long, env = "ROLLCAGE_COORDINATOR")]
    coordinator: Option<String>,
    /// File holding the operator token: the bootstrap admin token (the coordinator's DATA/admin-token) or one
    /// made by `rollcage token create`. Without it, the token is read from
    /// the environment variable ROLLCAGE_TOKEN.
    #[arg(long, env = "ROLLCAGE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Refused: a token on the command line is readable by every local user (`--token-file` replaces it).
    #[arg(long = "token", hide = true)]
    token_on_command_line: Option<std::ffi::OsString>,
    /// Extra CA certificate (PEM) to trust for a TLS coordinator.
    #[arg(long, env = "ROLLCAGE_CA_FILE", conflicts_with = "ca_fingerprint")]
    ca_file: Option<PathBuf>,
    /// Trust exactly the coordinator's own CA, by the fingerprint it printed at start (SHA256:…, also in its
    /// DATA/tls/ca.fingerprint).
    #[arg(long, env = "ROLLCAGE_CA_FINGERPRINT")]
    ca_fingerprint: Option<CaFingerprint>,
}

/// The error when no token was given.
const NO_TOKEN: &str =
    "no token: pass --token-file FILE or set ROLLCAGE_TOKEN (the coordinator's DATA/admin-token)";

impl Remote {
    fn client(&self) -> anyhow::Result<Client> {
        let url = self
            .coordinator
            .as_deref()
            .context("no coordinator: pass --coordinator URL or set ROLLCAGE_COORDINATOR")?;
        if self.token_on_command_line.is_some() {
            bail!(refused_secret_flag(
                "--token",
                "pass --token-file FILE or set ROLLCAGE_TOKEN"
            ));
        }
        let token = match &self.token_file {
            Some(path) => crate::secret::read_token_file(path, "token file")?,
            None => std::env::var("ROLLCAGE_TOKEN")
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .context(NO_TOKEN)?,
        };
        let trust = Trust {
            ca_file: self.ca_file.clone(),
            ca_fingerprint: self.ca_fingerprint,
        };
        Ok(Client::with_trust(url, Some(token), &trust)?)
    }
}

/// Output format of read commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// The fleet subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Run the coordinator (HTTP API, SQLite state, deployment engine).
    Coordinator(CoordinatorArgs),
    /// Run the agent of this host.
    Agent(AgentArgs),
    /// Applications.
    #[command(subcommand)]
    App(AppCommand),
    /// Deployment groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// An application's revisions (`push` adds one).
    #[command(subcommand)]
    Revision(RevisionCommand),
    /// Upload a revision (a directory, packed as tar.gz, or an archive), or register one stored at a URL;
    /// prints the revision id alone.
    Push {
        /// Application.
        #[arg(long)]
        app: String,
        /// Directory or archive (tar, tar.gz, zip).
        #[arg(required_unless_present = "url", conflicts_with = "url")]
        path: Option<PathBuf>,
        /// Register an archive at this http(s):// or file:// URL instead of uploading.
        #[arg(long, requires = "sha256")]
        url: Option<String>,
        /// sha256 of the archive at --url.
        #[arg(long, requires = "url")]
        sha256: Option<String>,
        /// The archive's signature (`ssh-keygen -Y sign -n rollcage -f KEY ARCHIVE` writes ARCHIVE.sig), uploaded
        /// with it; agents with `--trusted-signers` deploy only signed revisions.
        #[arg(long, conflicts_with = "sign_key")]
        signature: Option<PathBuf>,
        /// Sign the archive pushed (a directory is signed as packed) with this OpenSSH private key: in-process for
        /// an unencrypted key, through `ssh-keygen` (which asks for the passphrase) for an encrypted one.
        #[arg(long, conflicts_with = "url")]
        sign_key: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Start a deployment.
    Deploy {
        /// Application.
        #[arg(long)]
        app: String,
        /// Deployment group.
        #[arg(long)]
        group: String,
        /// Revision id (from `push`).
        #[arg(long)]
        revision: String,
        /// A deployment form (TOML or YAML: destination, stop/start/check scripts) overriding the group's and
        /// the package's appspec.yml.
        #[arg(long)]
        form: Option<PathBuf>,
        /// Log and skip failures of ApplicationStop, BeforeBlockTraffic and AfterBlockTraffic, which run the
        /// scripts of the revision installed before (CodeDeploy's escape hatch for a broken one).
        #[arg(long)]
        ignore_application_stop_failures: bool,
        /// What Install does with existing files the previous deployment did not create, overriding the
        /// AppSpec's (or form's) `file_exists_behavior`: DISALLOW, OVERWRITE or RETAIN.
        #[arg(long, value_parser = parse_file_exists_behavior)]
        file_exists_behavior: Option<rollcage_proto::FileExistsBehavior>,
        /// A line for people, shown with the deployment (at most 512 bytes).
        #[arg(long)]
        description: Option<String>,
        /// Wait for the end; exit 2 if it failed, 3 if stopped.
        #[arg(long)]
        wait: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// List deployments, newest first: id, application/group, revision, status, description.
    Deployments {
        /// Only this application's.
        #[arg(long)]
        app: Option<String>,
        /// Only this group's (needs --app).
        #[arg(long, requires = "app")]
        group: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Follow a deployment live (one row per instance on a terminal, timestamped lines otherwise) to its end;
    /// exit 2 if it failed, 3 if stopped.
    Watch {
        /// Deployment id.
        id: String,
        /// Output format (`json`: only the final deployment).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a deployment.
    Status {
        /// Deployment id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Roll a deployment's group back to its last successful revision.
    Rollback {
        /// Deployment id.
        id: String,
        /// Wait for the rollback to end; exit 2 if it failed, 3 if stopped.
        #[arg(long)]
        wait: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Let a blue/green deployment waiting in `ready` switch traffic to the new group.
    Continue {
        /// Deployment id.
        id: String,
        /// Wait for the deployment to end; exit 2 if it failed, 3 if stopped.
        #[arg(long)]
        wait: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop a deployment: in-flight instances finish (or are cancelled with --force).
    Stop {
        /// Deployment id.
        id: String,
        /// Cancel in-flight steps.
        #[arg(long)]
        force: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the full hook output of a deployment's steps, each line prefixed with `[instance Event]`.
    Logs {
        /// Deployment id.
        id: String,
        /// Only this instance's steps.
        #[arg(long)]
        instance: Option<String>,
        /// Only this lifecycle event's steps (e.g. AfterInstall).
        #[arg(long)]
        event: Option<String>,
        /// Keep printing new output until the deployment ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Named operator tokens with roles (admin, deployer, viewer): create, list, revoke.
    #[command(subcommand)]
    Token(people::TokenCommand),
    /// The audit trail (admin): every state-changing request and every refusal, newest first.
    Audit(people::AuditArgs),
    /// Per-use enrollment tokens: create (prints the token alone), list, revoke.
    #[command(subcommand)]
    EnrollToken(enroll_tokens::EnrollTokenCommand),
    /// List enrolled instances (or `instances approve NAME`, `instances remove NAME`).
    Instances {
        #[command(subcommand)]
        action: Option<InstancesAction>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `rollcage instances …` actions.
#[derive(Debug, Subcommand)]
pub enum InstancesAction {
    /// Approve an instance pending approval (enrolled on a coordinator started with --enroll-approval): from now
    /// on deployments may include it.
    Approve {
        /// Instance name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Forget an instance: its agent's token stops working (a running agent is told it was removed and stops),
    /// groups stop naming it, and its name may be enrolled again (how a host whose token was lost enrolls again).
    /// Refused while a deployment that has not ended includes it, unless --force.
    Remove {
        /// Instance name.
        name: String,
        /// Remove it even from deployments that have not ended: its steps there are cancelled and they go on
        /// without it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `rollcage coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Data directory (SQLite database, bundles, token files, TLS material).
    #[arg(long)]
    data: PathBuf,
    /// Keep the state in this PostgreSQL database (`postgres://USER@HOST:PORT/DB`, or `postgres:///DB?host=/run/postgresql`
    /// for a unix socket), shared with any number of coordinators, instead of SQLite in DATA. A password goes in
    /// ROLLCAGE_DATABASE, never on the command line.
    #[arg(long, env = DATABASE_ENV, value_name = "URL", hide_env_values = true)]
    database: Option<String>,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// TLS certificate chain (PEM). Without it, a coordinator listening off loopback serves TLS with its own CA
    /// (made on first start in DATA/tls, its fingerprint printed for agents to pin).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A name (DNS name or IP address) agents reach the coordinator at, for its own server certificate besides
    /// the listen address (repeatable).
    #[arg(long = "tls-san", value_name = "NAME|IP", conflicts_with_all = ["tls_cert", "insecure_http"])]
    tls_sans: Vec<String>,
    /// Serve plain HTTP off loopback (tokens and bundles cross the network in the clear): only behind a
    /// TLS-terminating proxy.
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_http: bool,
    /// Use this existing admin token file instead of DATA/admin-token.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Use this existing enrollment token file instead of DATA/enroll-token (the standing token: unlimited uses,
    /// no expiry).
    #[arg(long, conflicts_with = "no_standing_enroll_token")]
    enroll_token_file: Option<PathBuf>,
    /// Disable the standing enrollment token (DATA/enroll-token is neither read nor created): only per-use tokens
    /// (`rollcage enroll-token create`) enroll.
    #[arg(long)]
    no_standing_enroll_token: bool,
    /// Hold newly enrolled instances as `pending` (no deployment, no command, no bundle) until
    /// `rollcage instances approve NAME`.
    #[arg(long)]
    enroll_approval: bool,
    /// Seconds of silence after which an agent is lost and its in-flight step fails.
    #[arg(long, default_value_t = 60)]
    heartbeat_deadline: u64,
    /// Days the full hook output of an ended deployment (`rollcage logs`) and the audit trail's entries
    /// (`rollcage audit`) are kept; 0 keeps them for ever.
    #[arg(long, default_value_t = 30)]
    log_retention_days: u64,
    /// Most client connections served at once (more wait in the listen backlog); lowered to fit the open-file
    /// limit.
    #[arg(long, default_value_t = rollcage_coordinator::server::ConnLimits::default().max_connections)]
    max_connections: usize,
    /// Webhooks: milliseconds before the first retry of a failed delivery (doubling after each failure, up to
    /// --webhook-retry-cap-ms, a random half taken off).
    #[arg(long, default_value_t = rollcage_coordinator::webhooks::backoff::DEFAULT_BASE_MS, value_parser = clap::value_parser!(u64).range(1..))]
    webhook_retry_base_ms: u64,
    /// Webhooks: the longest wait between two attempts, in milliseconds.
    #[arg(long, default_value_t = rollcage_coordinator::webhooks::backoff::DEFAULT_CAP_MS, value_parser = clap::value_parser!(u64).range(1..))]
    webhook_retry_cap_ms: u64,
    /// Webhooks: attempts before a delivery is given up (and the endpoint's next event goes out).
    #[arg(long, default_value_t = rollcage_coordinator::webhooks::backoff::DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=1000))]
    webhook_max_attempts: u32,
}

/// `rollcage agent`: run the agent (from flags, a `--config` file, or both: flags win), or `agent install`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    action: Option<AgentAction>,
    /// Config file (TOML, as `rollcage agent install` writes it); flags given as well override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Coordinator base URL, or several separated by commas (tried in order; the agent stays on the one that
    /// answers, and moves on when it is unreachable or answers 5xx).
    #[arg(long, env = "ROLLCAGE_COORDINATOR")]
    coordinator: Option<String>,
    /// Root directory of this agent's deployments.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Instance name (ROLLCAGE_INSTANCE for hooks).
    #[arg(long)]
    name: Option<String>,
    /// File holding the enrollment token, mode 0600 (first start; the agent then keeps its own token and the
    /// file may be deleted).
    #[arg(long)]
    enroll_token_file: Option<PathBuf>,
    /// Refused: a token on the command line is readable by every local user (`--enroll-token-file` replaces it).
    #[arg(long = "enroll-token", hide = true)]
    enroll_token_on_command_line: Option<std::ffi::OsString>,
    /// Where the agent's own token is kept (default ROOT/agent/token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The address the application serves on (ROLLCAGE_SERVICE_ADDR for hooks).
    #[arg(long)]
    service_addr: Option<String>,
    /// KEY=VALUE given to every hook (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// KEY=VALUE tag of this instance (repeatable; `tags` in the config file, flags win per key). Sent at
    /// enrollment and on every start: groups select their instances by tags (`rollcage group create --tags`).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Extra CA certificate (PEM) to trust for a TLS coordinator.
    #[arg(long, conflicts_with = "ca_fingerprint")]
    ca_file: Option<PathBuf>,
    /// Trust exactly the coordinator's own CA, by the fingerprint it printed at start (SHA256:…).
    #[arg(long, env = "ROLLCAGE_CA_FINGERPRINT")]
    ca_fingerprint: Option<CaFingerprint>,
    /// Most bytes of one step's hook output sent to the coordinator (the newest are kept; default 256 KiB, at
    /// most 1 MiB).
    #[arg(long)]
    max_log_bytes: Option<usize>,
    /// Keep at most this many bytes of revision archives in the agent's cache (`ROOT/agent/bundles`), on top of
    /// the count bound; the installed revision's and the deployment's own are never removed.
    #[arg(long)]
    max_cache_bytes: Option<u64>,
    /// Deploy only revisions signed by a key this OpenSSH allowed_signers file lists with
    /// `namespaces="rollcage"`; others fail DownloadBundle before anything is unpacked.
    #[arg(long)]
    trusted_signers: Option<PathBuf>,
}

/// `rollcage agent …` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// Write a systemd unit and a config file to run this host's agent as a service.
    Install(Box<crate::agent_service::InstallArgs>),
}

/// Flags over the config file: a flag given wins, hook variables from both (flags last, so they win).
fn agent_config(a: AgentArgs) -> anyhow::Result<rollcage_agent::AgentConfig> {
    let file = a
        .config
        .as_deref()
        .map(crate::agent_service::AgentFile::load)
        .transpose()?;
    let missing =
        |flag: &str| anyhow::anyhow!("no {flag}: pass --{flag} or --config FILE with `{flag} = …`");
    if a.enroll_token_on_command_line.is_some() {
        bail!(refused_secret_flag(
            "--enroll-token",
            "put the token in a file (mode 0600) and pass --enroll-token-file FILE"
        ));
    }
    // The agent's environment is inherited by every process it starts that does not clear it, and a wasm hook's
    // `sandbox.env` grant passes host variables through by name: no secret lives there.
    if std::env::var_os(ENROLL_TOKEN_ENV).is_some() {
        bail!(
            "{ENROLL_TOKEN_ENV} is set: the agent no longer reads the enrollment token from its environment (a \
             sandboxed hook could be granted it); unset it, put the token in a file (mode 0600) and pass \
             --enroll-token-file FILE"
        );
    }
    let enroll_token_file = a
        .enroll_token_file
        .or_else(|| file.as_ref().and_then(|f| f.enroll_token_file.clone()));
    let enroll_token = enroll_token_file
        .as_deref()
        .map(crate::secret::read_enroll_token)
        .transpose()?
        .flatten();
    let mut vars: Vec<(String, String)> = file
        .as_ref()
        .map(|f| f.vars.clone().into_iter().collect())
        .unwrap_or_default();
    for (k, v) in a.vars {
        vars.retain(|(fk, _)| *fk != k);
        vars.push((k, v));
    }
    let mut tags = file.as_ref().map(|f| f.tags.clone()).unwrap_or_default();
    tags.extend(a.tags);
    rollcage_proto::tags::check_tags(&tags).context("agent tags")?;
    let max_log_bytes = a
        .max_log_bytes
        .or_else(|| file.as_ref().and_then(|f| f.max_log_bytes))
        .unwrap_or(rollcage_agent::steplog::DEFAULT_MAX_LOG_BYTES);
    if max_log_bytes > rollcage_agent::steplog::MAX_LOG_BYTES_LIMIT {
        bail!(
            "max-log-bytes {max_log_bytes} is too large: the coordinator keeps at most {} bytes per step",
            rollcage_agent::steplog::MAX_LOG_BYTES_LIMIT
        );
    }
    let trusted_signers = a
        .trusted_signers
        .or_else(|| file.as_ref().and_then(|f| f.trusted_signers.clone()));
    if let Some(path) = &trusted_signers {
        // Checked now so a broken file stops the agent at start, naming its line; each check reads it again.
        let signers = rollcage_signing::AllowedSigners::load(path)?;
        let usable = signers
            .entries()
            .iter()
            .filter(|e| e.lists_namespace(rollcage_signing::NAMESPACE))
            .count();
        if usable == 0 {
            bail!(
                "trusted signers {}: no key is listed with namespaces=\"{}\", so no revision could deploy",
                path.display(),
                rollcage_signing::NAMESPACE
            );
        }
        tracing::info!(path = %path.display(), keys = usable, "only signed revisions will be deployed");
    }
    Ok(rollcage_agent::AgentConfig {
        trusted_signers,
        max_cache_bytes: a
            .max_cache_bytes
            .or_else(|| file.as_ref().and_then(|f| f.max_cache_bytes)),
        coordinators: match (a.coordinator, &file) {
            (Some(flag), _) => crate::agent_service::Coordinators::parse(&flag)
                .context("--coordinator")?
                .urls()
                .to_vec(),
            (None, Some(f)) => f.coordinator.urls().to_vec(),
            (None, None) => return Err(missing("coordinator")),
        },
        root: a
            .root
            .or_else(|| file.as_ref().map(|f| f.root.clone()))
            .ok_or_else(|| missing("root"))?,
        name: a
            .name
            .or_else(|| file.as_ref().map(|f| f.name.clone()))
            .ok_or_else(|| missing("name"))?,
        enroll_token,
        token_file: a
            .token_file
            .or_else(|| file.as_ref().and_then(|f| f.token_file.clone())),
        vars,
        tags,
        service_addr: a
            .service_addr
            .or_else(|| file.as_ref().and_then(|f| f.service_addr.clone())),
        ca_file: a
            .ca_file
            .or_else(|| file.as_ref().and_then(|f| f.ca_file.clone())),
        ca_fingerprint: a
            .ca_fingerprint
            .or_else(|| file.as_ref().and_then(|f| f.ca_fingerprint)),
        loop_config: rollcage_agent::daemon::LoopConfig {
            max_log_bytes,
            ..Default::default()
        },
    })
}

/// The environment variable the agent once read the enrollment token from; refused now.
const ENROLL_TOKEN_ENV: &str = "ROLLCAGE_ENROLL_TOKEN";

/// The error for a flag that took a secret on the command line, naming what replaced it.
pub(crate) fn refused_secret_flag(flag: &str, instead: &str) -> String {
    format!(
        "{flag} is refused: a secret on the command line is readable by every local user (/proc/PID/cmdline) and \
         lands in shell histories; {instead}"
    )
}

/// A signature file given with `--signature`: read bounded and checked to be an SSH signature, so a wrong file
/// is named here rather than by the coordinator.
pub(crate) fn read_signature(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let max = rollcage_signing::MAX_SIGNATURE_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading signature {}", path.display()))?;
    let sig = rollcage_signing::Sshsig::parse_bytes(&bytes)
        .with_context(|| format!("--signature {}", path.display()))?;
    Ok(sig.armored()?)
}

/// `--tags KEY=VALUE[,KEY=VALUE…]`: one alternative of a group's tag filter.
pub(crate) fn parse_tag_set(s: &str) -> Result<rollcage_proto::tags::Tags, String> {
    rollcage_proto::tags::parse_set(s).map_err(|e| e.to_string())
}

/// `--tag KEY=VALUE` ([`rollcage_proto::tags`]'s rules).
pub(crate) fn parse_tag(s: &str) -> Result<(String, String), String> {
    rollcage_proto::tags::parse_pair(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid --var `{s}`: expected KEY=VALUE"))?;
    rollcage_proto::hookvar::check_var_name(k).map_err(|e| format!("--var: {e}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// `rollcage app …`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an application.
    Create {
        /// Name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the applications.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete an application (refused while it has deployment groups or revisions).
    Delete {
        /// Name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `rollcage revision …`.
#[derive(Debug, Subcommand)]
pub enum RevisionCommand {
    /// List an application's revisions.
    List {
        /// Application.
        #[arg(long)]
        app: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one revision (source, size, sha256, downloads, signer).
    Show {
        /// Application.
        #[arg(long)]
        app: String,
        /// Revision id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Forget a revision (refused while a deployment that has not ended deploys it, or while it is a group's last
    /// successful revision).
    Delete {
        /// Application.
        #[arg(long)]
        app: String,
        /// Revision id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// One line per revision: id, where it comes from, size, downloads, signer.
fn revision_line(r: &rollcage_proto::wire::Revision) -> String {
    let source = match &r.source {
        rollcage_proto::wire::RevisionSource::Uploaded { size } => format!("uploaded {size} bytes"),
        rollcage_proto::wire::RevisionSource::Url { url } => format!("at {url}"),
    };
    format!(
        "{:<20} sha256 {} {source}, {} download(s){}",
        r.id,
        r.sha256,
        r.downloads,
        r.signed_by
            .as_deref()
            .map(|s| format!(", signed by {s}"))
            .unwrap_or_default()
    )
}

/// `rollcage group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a deployment group.
    Create {
        /// Application.
        #[arg(long)]
        app: String,
        /// Group name.
        name: String,
        /// in-place | in-place-lb | blue-green.
        #[arg(long, value_parser = parse_style)]
        style: DeploymentStyle,
        #[command(flatten)]
        pace: PaceArgs,
        /// Failed instances tolerated.
        #[arg(long, default_value_t = 0)]
        failure_tolerance: u32,
        /// Roll back automatically when a deployment fails.
        #[arg(long)]
        auto_rollback: bool,
        /// Instance names, comma-separated (default: every enrolled instance at deployment time).
        #[arg(long, value_delimiter = ',', conflicts_with = "tags")]
        instances: Vec<String>,
        /// Select instances by tags instead: KEY=VALUE[,KEY=VALUE…], an instance matches when it has every pair;
        /// repeat for alternatives (it matches any one set). New hosts with matching tags catch up by themselves.
        #[arg(long = "tags", value_parser = parse_tag_set)]
        tags: Vec<rollcage_proto::tags::Tags>,
        /// The group's default deployment form (TOML or YAML: destination, stop/start/check scripts), used
        /// instead of the package's appspec.yml.
        #[arg(long)]
        form: Option<PathBuf>,
        /// Load-balancer settings for `in-place-lb` / `blue-green` (a `.toml`, `.yaml`/`.yml` or `.json` file:
        /// `[lb]` = driver, service, server groups, drain timeout; `[targets]` = instance → host:port;
        /// `active_group`, `wait_for_continue`; see coordinator/README.md).
        #[arg(long, value_name = "FILE")]
        lb: Option<std::path::PathBuf>,
        #[command(flatten)]
        webhooks: WebhookArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// List an application's deployment groups.
    List {
        /// Application.
        #[arg(long)]
        app: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// The group's webhook deliveries, oldest first: event, deployment, endpoint, state, attempts, last
    /// status or error, next attempt.
    Deliveries {
        /// Application.
        #[arg(long)]
        app: String,
        /// Group name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one deployment group.
    Show {
        /// Application.
        #[arg(long)]
        app: String,
        /// Group name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change a group's settings (only those given), checked as at creation; refused while a deployment of the
    /// group has not ended.
    Update {
        /// Application.
        #[arg(long)]
        app: String,
        /// Group name.
        name: String,
        /// N, P% or all.
        #[arg(long, value_parser = parse_concurrency)]
        concurrency: Option<Concurrency>,
        /// CodeDeploy's minimum healthy hosts instead (N or P%; see `group create`).
        #[arg(long, value_parser = parse_min_healthy, conflicts_with = "concurrency")]
        min_healthy: Option<MinHealthy>,
        /// Failed instances tolerated.
        #[arg(long)]
        failure_tolerance: Option<u32>,
        /// Roll back automatically when a deployment fails (true or false).
        #[arg(long)]
        auto_rollback: Option<bool>,
        /// Select these instances by name (comma-separated; drops the tags).
        #[arg(long, value_delimiter = ',', conflicts_with = "tags")]
        instances: Option<Vec<String>>,
        /// Select by tags (KEY=VALUE[,KEY=VALUE…], repeat for alternatives; drops the names).
        #[arg(long = "tags", value_parser = parse_tag_set)]
        tags: Vec<rollcage_proto::tags::Tags>,
        /// The group's default deployment form.
        #[arg(long)]
        form: Option<PathBuf>,
        /// Load-balancer settings (replacing the group's).
        #[arg(long, value_name = "FILE")]
        lb: Option<std::path::PathBuf>,
        #[command(flatten)]
        webhooks: WebhookArgs,
        /// Remove every webhook of the group (and its secret).
        #[arg(long, conflicts_with_all = ["webhook", "webhook_secret_file"])]
        no_webhooks: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a deployment group (refused while a deployment of it has not ended; its past deployments stay).
    Delete {
        /// Application.
        #[arg(long)]
        app: String,
        /// Group name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// A list as JSON, or one text line per item.
fn print_items<T: serde::Serialize>(
    output: Output,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => print_json(&items)?,
        Output::Text => {
            for item in items {
                println!("{}", line(item));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One item as JSON, or its text line.
fn print_item<T: serde::Serialize>(
    output: Output,
    item: &T,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => print_json(item)?,
        Output::Text => println!("{}", line(item)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A group's webhooks: where its deployment and instance events are posted, and the file with the key they are
/// signed with (never the key itself on the command line).
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Post the group's deployment and instance events to this http(s) URL (repeatable, at most 8; on update the
    /// list replaces the group's). See "Notifications" in coordinator/README.md.
    #[arg(long = "webhook", value_name = "URL")]
    webhook: Vec<String>,
    /// Sign the posts with the secret in this file (HMAC-SHA256, 16–1024 bytes, trimmed; mode 0600). Stored by the
    /// coordinator, never shown again.
    #[arg(long, value_name = "FILE")]
    webhook_secret_file: Option<std::path::PathBuf>,
}

impl WebhookArgs {
    fn secret(&self) -> anyhow::Result<Option<rollcage_proto::webhook::WebhookSecret>> {
        self.webhook_secret_file
            .as_deref()
            .map(|p| {
                crate::secret::read_token_file(p, "webhook secret file")
                    .map(rollcage_proto::webhook::WebhookSecret)
            })
            .transpose()
    }
}

/// One line per webhook delivery.
fn delivery_line(d: &rollcage_proto::webhook::WebhookDelivery) -> String {
    let mut line = format!(
        "{:<8} {:<24} {:<12} {:<10} {:<9} attempts {}",
        d.id,
        d.event.name(),
        d.deployment_id,
        d.instance.as_deref().unwrap_or("-"),
        d.state.name(),
        d.attempts
    );
    if let Some(status) = d.last_status {
        line.push_str(&format!(" last HTTP {status}"));
    }
    if let Some(e) = &d.last_error {
        line.push_str(&format!(" ({e})"));
    }
    if let Some(at) = d.next_attempt_at_ms {
        let secs = (at - rollcage_proto::wire::now_ms()).max(0) / 1000;
        line.push_str(&format!(" next in {secs} s"));
    }
    line
}

/// One line per group: name, style, concurrency, how it selects its instances.
fn group_line(g: &rollcage_proto::wire::Group) -> String {
    let selects = if !g.tags.is_empty() {
        let sets: Vec<String> = g.tags.0.iter().map(rollcage_proto::tags::show).collect();
        format!("tags {}", sets.join(" | "))
    } else if g.instances.is_empty() {
        "every enrolled instance".to_owned()
    } else {
        format!("instances {}", g.instances.join(","))
    };
    let hooks = match g.webhooks.urls.len() {
        0 => String::new(),
        n => format!(
            " webhooks {n}{}",
            if g.webhooks.has_secret {
                " (signed)"
            } else {
                " (unsigned)"
            }
        ),
    };
    format!(
        "{:<20} {:<12} concurrency {:<5} tolerance {} auto-rollback {} {selects}{hooks}",
        g.name, g.style, g.concurrency, g.failure_tolerance, g.auto_rollback
    )
}

/// How many instances of a group deploy at once: `--concurrency` or `--min-healthy`, exactly one (every command
/// that sets a group's pace flattens this, so both flags are accepted wherever one is).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct PaceArgs {
    /// Instances in flight at once: N, P% (of the group, rounded down, at least 1) or all.
    #[arg(long, value_parser = parse_concurrency)]
    concurrency: Option<Concurrency>,
    /// CodeDeploy's minimum healthy hosts, instead of --concurrency: N instances (HOST_COUNT) or P% of them
    /// (FLEET_PERCENT, 0–99, rounded up) stay healthy, every other one deploys at once (9 hosts, 6 → 3 at a time);
    /// a deployment that would leave none to deploy to is refused.
    #[arg(long, value_parser = parse_min_healthy)]
    min_healthy: Option<MinHealthy>,
}

impl PaceArgs {
    /// The concurrency these flags give (clap has made sure exactly one is there).
    pub fn concurrency(&self) -> anyhow::Result<Concurrency> {
        match (self.concurrency, self.min_healthy) {
            (Some(c), None) => Ok(c),
            (None, Some(m)) => Ok(Concurrency::MinHealthy(m)),
            _ => bail!("give exactly one of --concurrency and --min-healthy"),
        }
    }
}

fn parse_file_exists_behavior(s: &str) -> Result<rollcage_proto::FileExistsBehavior, String> {
    let upper = s.to_ascii_uppercase();
    rollcage_proto::FileExistsBehavior::from_name(&upper).ok_or_else(|| {
        format!("invalid file exists behavior `{s}`: expected DISALLOW, OVERWRITE or RETAIN")
    })
}

fn parse_min_healthy(s: &str) -> Result<MinHealthy, String> {
    s.parse()
        .map_err(|e: rollcage_proto::healthy::InvalidMinHealthy| e.to_string())
}

/// Read and validate a form file (every problem reported with its field path).
fn load_form(path: &std::path::Path) -> anyhow::Result<Form> {
    rollcage_runtime::form::load(path).context("--form")
}

/// Read a group's load-balancer settings from a TOML, YAML or JSON file (by extension; JSON otherwise) into the
/// typed settings (a field of the wrong shape is named here); the coordinator checks them against the group's
/// style and instances.
fn read_lb_file(path: &std::path::Path) -> anyhow::Result<GroupLb> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading load-balancer settings {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let value = match ext {
        "toml" => toml::from_str::<GroupLb>(&text).map_err(anyhow::Error::from),
        "yaml" | "yml" => serde_yaml::from_str(&text).map_err(anyhow::Error::from),
        _ => serde_json::from_str(&text).map_err(anyhow::Error::from),
    };
    value.with_context(|| {
        format!(
            "{}: expected load-balancer settings in {} syntax",
            path.display(),
            if ext.is_empty() { "json" } else { ext }
        )
    })
}

/// The command that installs an agent of this coordinator on a host, ready to paste once the enrollment token file
/// is copied there (the token itself never goes on a command line).
fn join_hint(
    ready: &rollcage_coordinator::Ready,
    fp: CaFingerprint,
    enroll_file: &std::path::Path,
) -> String {
    let ip = ready.addr.ip();
    // On 0.0.0.0 / :: the certificate covers the host name, which is what agents elsewhere reach it by.
    let host = if ip.is_unspecified() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "HOST".to_owned())
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!(
        "agents join with (after copying {} to the host as ./enroll-token): rollcage agent install \
         --coordinator https://{host}:{} --ca-fingerprint {fp} --token-file ./enroll-token --name NAME --enable",
        enroll_file.display(),
        ready.addr.port()
    )
}

fn parse_style(s: &str) -> Result<DeploymentStyle, String> {
    s.parse()
        .map_err(|e: rollcage_proto::wire::UnknownName| e.to_string())
}

fn parse_concurrency(s: &str) -> Result<Concurrency, String> {
    s.parse()
        .map_err(|e: rollcage_proto::wire::InvalidConcurrency| e.to_string())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

impl FleetCommand {
    /// True for the long-running services (`coordinator`, `agent`).
    pub fn is_daemon(&self) -> bool {
        match self {
            Self::Coordinator(_) => true,
            Self::Agent(a) => a.action.is_none(),
            _ => false,
        }
    }
}

/// The environment variable that may hold the coordinator's database URL (with its password, if it has one).
const DATABASE_ENV: &str = "ROLLCAGE_DATABASE";

/// The coordinator's database URL, checked: a PostgreSQL URL, and a password only from the environment (a command
/// line is readable by every local user).
fn database_url(given: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(url) = given else {
        return Ok(None);
    };
    let parsed = url::Url::parse(&url).map_err(|e| {
        anyhow::anyhow!("--database: not a URL ({e}); expected postgres://USER@HOST:PORT/DB")
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        bail!(
            "--database: scheme `{}` is not supported; expected postgres://USER@HOST:PORT/DB (without \
             --database, the state is kept in SQLite in --data)",
            parsed.scheme()
        );
    }
    let from_env = std::env::var(DATABASE_ENV).is_ok_and(|v| v == url);
    if parsed.password().is_some() && !from_env {
        bail!(refused_secret_flag(
            "a password in --database",
            "put the whole URL in ROLLCAGE_DATABASE instead"
        ));
    }
    Ok(Some(url))
}

/// Run a fleet command.
pub async fn run(cmd: FleetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FleetCommand::Coordinator(a) => {
            let database = database_url(a.database)?;
            let cfg = rollcage_coordinator::ServerConfig {
                data: a.data,
                database,
                listen: a.listen,
                tls: match (a.tls_cert, a.tls_key) {
                    (Some(cert), Some(key)) => rollcage_coordinator::TlsSetup::Files { cert, key },
                    _ if a.insecure_http => rollcage_coordinator::TlsSetup::InsecureHttp,
                    _ => rollcage_coordinator::TlsSetup::Auto {
                        extra_sans: a.tls_sans,
                    },
                },
                admin_token_file: a.admin_token_file,
                enroll_token_file: a.enroll_token_file,
                settings: rollcage_coordinator::Settings {
                    heartbeat_deadline: Duration::from_secs(a.heartbeat_deadline),
                    log_retention: (a.log_retention_days > 0).then(|| {
                        Duration::from_secs(a.log_retention_days.saturating_mul(24 * 3600))
                    }),
                    enroll_approval: a.enroll_approval,
                    standing_enroll_token: !a.no_standing_enroll_token,
                    webhook_retry: rollcage_coordinator::webhooks::Retry {
                        base: Duration::from_millis(a.webhook_retry_base_ms),
                        cap: Duration::from_millis(a.webhook_retry_cap_ms),
                        max_attempts: a.webhook_max_attempts,
                    },
                    ..Default::default()
                },
                limits: rollcage_coordinator::server::ConnLimits {
                    max_connections: a.max_connections,
                    ..Default::default()
                },
            };
            let enroll_file = cfg
                .enroll_token_file
                .clone()
                .unwrap_or_else(|| cfg.data.join("enroll-token"));
            rollcage_coordinator::serve(cfg, |ready| {
                if let Some(fp) = ready.ca_fingerprint {
                    // What operators copy to agents (`--ca-fingerprint`); scripts read DATA/tls/ca.fingerprint.
                    println!("rollcage coordinator CA fingerprint {fp}");
                    println!("{}", join_hint(&ready, fp, &enroll_file));
                }
                // Tests and scripts that listen on port 0 read the bound address from here.
                eprintln!("rollcage coordinator listening on {}", ready.addr);
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Agent(AgentArgs {
            action: Some(AgentAction::Install(i)),
            ..
        }) => crate::agent_service::install(&i),
        FleetCommand::Agent(a) => {
            let cfg = agent_config(a)?;
            Ok(crate::agent_service::run(cfg).await)
        }
        FleetCommand::App(AppCommand::Create {
            name,
            output,
            remote,
        }) => {
            let app = remote
                .client()?
                .create_application(&CreateApplication { name })
                .await?;
            match output {
                Output::Json => print_json(&app)?,
                Output::Text => println!("application {} created", app.name),
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::App(AppCommand::List { output, remote }) => {
            let list = remote.client()?.list_applications().await?;
            print_items(output, &list, |a| a.name.clone())
        }
        FleetCommand::App(AppCommand::Delete { name, remote }) => {
            remote.client()?.delete_application(&name).await?;
            println!("application {name} deleted");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Revision(RevisionCommand::List {
            app,
            output,
            remote,
        }) => {
            let list = remote.client()?.list_revisions(&app).await?;
            print_items(output, &list, revision_line)
        }
        FleetCommand::Revision(RevisionCommand::Show {
            app,
            id,
            output,
            remote,
        }) => {
            let r = remote.client()?.get_revision(&app, &id).await?;
            print_item(output, &r, revision_line)
        }
        FleetCommand::Revision(RevisionCommand::Delete { app, id, remote }) => {
            remote.client()?.delete_revision(&app, &id).await?;
            println!("revision {app}/{id} deleted");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Group(GroupCommand::List {
            app,
            output,
            remote,
        }) => {
            let list = remote.client()?.list_groups(&app).await?;
            print_items(output, &list, group_line)
        }
        FleetCommand::Group(GroupCommand::Deliveries {
            app,
            name,
            output,
            remote,
        }) => {
            let list = remote.client()?.group_deliveries(&app, &name).await?;
            print_items(output, &list, delivery_line)
        }
        FleetCommand::Group(GroupCommand::Show {
            app,
            name,
            output,
            remote,
        }) => {
            let g = remote.client()?.get_group(&app, &name).await?;
            print_item(output, &g, group_line)
        }
        FleetCommand::Group(GroupCommand::Update {
            app,
            name,
            concurrency,
            min_healthy,
            failure_tolerance,
            auto_rollback,
            instances,
            tags,
            form,
            lb,
            webhooks,
            no_webhooks,
            output,
            remote,
        }) => {
            let req = rollcage_proto::wire::UpdateGroup {
                concurrency: concurrency.or(min_healthy.map(Concurrency::MinHealthy)),
                failure_tolerance,
                auto_rollback,
                instances,
                tags: (!tags.is_empty()).then_some(rollcage_proto::tags::TagFilter(tags)),
                form: form.as_deref().map(load_form).transpose()?,
                lb: lb.map(|path| read_lb_file(&path)).transpose()?,
                webhook_secret: webhooks.secret()?,
                webhooks: if no_webhooks {
                    Some(Vec::new())
                } else {
                    (!webhooks.webhook.is_empty()).then_some(webhooks.webhook)
                },
            };
            let g = remote.client()?.update_group(&app, &name, &req).await?;
            match output {
                Output::Json => print_json(&g)?,
                Output::Text => println!(
                    "group {}/{} updated: {}",
                    g.application,
                    g.name,
                    group_line(&g)
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Group(GroupCommand::Delete { app, name, remote }) => {
            remote.client()?.delete_group(&app, &name).await?;
            println!("group {app}/{name} deleted");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Group(GroupCommand::Create {
            app,
            name,
            style,
            pace,
            failure_tolerance,
            auto_rollback,
            instances,
            tags,
            form,
            lb,
            webhooks,
            output,
            remote,
        }) => {
            let lb = lb.map(|path| read_lb_file(&path)).transpose()?;
            let req = CreateGroup {
                name,
                style,
                concurrency: pace.concurrency()?,
                failure_tolerance,
                auto_rollback,
                instances,
                tags: rollcage_proto::tags::TagFilter(tags),
                form: form.as_deref().map(load_form).transpose()?,
                lb,
                webhook_secret: webhooks.secret()?,
                webhooks: webhooks.webhook,
            };
            let g = remote.client()?.create_group(&app, &req).await?;
            match output {
                Output::Json => print_json(&g)?,
                Output::Text => println!(
                    "group {}/{} created ({}, concurrency {}, auto-rollback {})",
                    g.application, g.name, g.style, g.concurrency, g.auto_rollback
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Push {
            app,
            path,
            url,
            sha256,
            signature,
            sign_key,
            remote,
        } => {
            let client = remote.client()?;
            let signature = signature.as_deref().map(read_signature).transpose()?;
            let rev = match (path, url, sha256) {
                (_, Some(url), Some(sha256)) => {
                    let req = RegisterUrlRevision {
                        url,
                        sha256,
                        signature,
                    };
                    client.register_url_revision(&app, &req).await?
                }
                (Some(path), _, _) => {
                    let bytes = pack::archive_bytes(&path)?;
                    let signature = match &sign_key {
                        Some(key) => Some(pack::sign(key, &path, &bytes)?),
                        None => signature,
                    };
                    match signature {
                        Some(sig) => client.upload_signed_revision(&app, bytes, &sig).await?,
                        None => client.upload_revision(&app, bytes).await?,
                    }
                }
                _ => bail!("give a directory or archive to upload, or --url and --sha256"),
            };
            println!("{}", rev.id);
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Deploy {
            app,
            group,
            revision,
            form,
            ignore_application_stop_failures,
            file_exists_behavior,
            description,
            wait,
            output,
            remote,
        } => {
            let form = form.as_deref().map(load_form).transpose()?;
            if let Some(text) = &description {
                rollcage_proto::wire::check_description(text).context("--description")?;
            }
            let client = remote.client()?;
            let d = client
                .create_deployment(&CreateDeployment {
                    application: app,
                    group,
                    revision,
                    form,
                    ignore_application_stop_failures,
                    file_exists_behavior,
                    description,
                })
                .await?;
            finish(&client, d, wait, output).await
        }
        FleetCommand::Deployments {
            app,
            group,
            limit,
            output,
            remote,
        } => {
            let page = remote
                .client()?
                .list_deployments(&rollcage_proto::wire::DeploymentQuery {
                    application: app,
                    group,
                    limit: Some(limit),
                    cursor: None,
                })
                .await?;
            match output {
                Output::Json => print_json(&page.items)?,
                Output::Text => {
                    for d in &page.items {
                        println!("{}", render::summary_line(d));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Watch { id, output, remote } => {
            watch::watch(&remote.client()?, &id, output).await
        }
        FleetCommand::Status { id, output, remote } => {
            let d = remote.client()?.get_deployment(&id).await?;
            print_deployment(&d, output)?;
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Rollback {
            id,
            wait,
            output,
            remote,
        } => act_on_deployment(&remote, &id, Action::Rollback, wait, output).await,
        FleetCommand::Continue {
            id,
            wait,
            output,
            remote,
        } => act_on_deployment(&remote, &id, Action::Continue, wait, output).await,
        FleetCommand::Stop {
            id,
            force,
            output,
            remote,
        } => {
            let d = remote
                .client()?
                .stop_deployment(&id, &StopDeployment { force })
                .await?;
            print_deployment(&d, output)?;
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Logs {
            id,
            instance,
            event,
            follow,
            remote,
        } => {
            let req = logs::LogsRequest {
                id,
                instance,
                event,
                follow,
            };
            // Exit 1 as documented above (main maps other errors to 2): an unknown id or an unreachable
            // coordinator is a command that could not be carried out.
            match async { logs::run(&remote.client()?, &req).await }.await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("rollcage: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        FleetCommand::Token(cmd) => {
            let client = people::token_remote(&cmd).client()?;
            people::token(&client, cmd, &mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Audit(args) => {
            let client = people::audit_remote(&args).client()?;
            let now = rollcage_proto::wire::now_ms();
            people::audit(&client, &args, now, &mut std::io::stdout().lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::EnrollToken(cmd) => enroll_tokens::run(cmd).await,
        FleetCommand::Instances {
            action: Some(InstancesAction::Approve { name, remote }),
            ..
        } => {
            let i = remote.client()?.approve_instance(&name).await?;
            println!("instance {} approved; deployments may include it", i.name);
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Instances {
            action:
                Some(InstancesAction::Remove {
                    name,
                    force,
                    remote,
                }),
            ..
        } => {
            remote.client()?.remove_instance(&name, force).await?;
            println!("instance {name} removed; it may enroll again");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Instances {
            action: None,
            output,
            remote,
        } => {
            let list = remote.client()?.list_instances().await?;
            match output {
                Output::Json => print_json(&list)?,
                Output::Text => print!("{}", render::instances(&list)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An action on a deployment without parameters.
#[derive(Debug, Clone, Copy)]
enum Action {
    Rollback,
    Continue,
}

/// Run `action` on deployment `id`, then as `deploy`: print the answer, or follow it with `wait`.
async fn act_on_deployment(
    remote: &Remote,
    id: &str,
    action: Action,
    wait: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let client = remote.client()?;
    let d = match action {
        Action::Rollback => client.rollback_deployment(id).await?,
        Action::Continue => client.continue_deployment(id).await?,
    };
    finish(&client, d, wait, output).await
}

/// One deployment on stdout: the table for people, or its JSON.
fn print_deployment(d: &Deployment, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(d)?,
        Output::Text => print!("{}", render::deployment(d)),
    }
    Ok(())
}

/// Print a started deployment; with `wait`, follow it live to its end and map the outcome to the exit code.
async fn finish(
    client: &Client,
    d: Deployment,
    wait: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    if !wait {
        match output {
            Output::Json => print_json(&d)?,
            Output::Text => println!("{}", d.id),
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Followed over the coordinator's event stream (no polling); `ready` (blue/green waiting for `continue`)
    // is where waiting stops too: the operator acts next.
    watch::watch(client, &d.id, output).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: FleetCommand,
    }

    #[test]
    fn vars_are_key_value_with_plain_names() {
        assert_eq!(parse_var("PORT=8080"), Ok(("PORT".into(), "8080".into())));
        assert_eq!(parse_var("A=b=c"), Ok(("A".into(), "b=c".into())));
        for bad in ["PORT", "=1", "1A=2", "A-B=1", "A B=1"] {
            assert!(parse_var(bad).is_err(), "{bad}");
        }
        for loader in [
            "LD_PRELOAD=/tmp/x.so",
            "LD_LIBRARY_PATH=/tmp",
            "LD_AUDIT=/x",
            "GCONV_PATH=/x",
        ] {
            let e = parse_var(loader).err().unwrap_or_default();
            assert!(
                e.contains("changes how programs are loaded"),
                "{loader}: {e}"
            );
        }
    }

    #[test]
    fn group_create_parses_style_concurrency_and_instances() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "x",
            "group",
            "create",
            "--app",
            "shop",
            "web",
            "--style",
            "in-place",
            "--concurrency",
            "50%",
            "--auto-rollback",
            "--instances",
            "i1,i2,i3",
        ])?;
        match cli.cmd {
            FleetCommand::Group(GroupCommand::Create {
                style,
                pace,
                auto_rollback,
                instances,
                ..
            }) => {
                assert_eq!(style, DeploymentStyle::InPlace);
                assert_eq!(pace.concurrency().ok(), Some(Concurrency::Percent(50)));
                assert!(auto_rollback);
                assert_eq!(instances, ["i1", "i2", "i3"]);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            Cli::try_parse_from([
                "x",
                "group",
                "create",
                "--app",
                "a",
                "g",
                "--style",
                "rolling",
                "--concurrency",
                "1"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "x",
                "group",
                "create",
                "--app",
                "a",
                "g",
                "--style",
                "in-place",
                "--concurrency",
                "0"
            ])
            .is_err()
        );
        Ok(())
    }

    #[test]
    fn group_create_takes_a_minimum_healthy_instead_of_a_concurrency() -> Result<(), clap::Error> {
        let base = [
            "x", "group", "create", "--app", "a", "g", "--style", "in-place",
        ];
        let parse = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra.iter()));
        for (flag, want) in [
            ("6", MinHealthy::HostCount(6)),
            ("40%", MinHealthy::FleetPercent(40)),
            ("0", MinHealthy::HostCount(0)),
        ] {
            match parse(&["--min-healthy", flag])?.cmd {
                FleetCommand::Group(GroupCommand::Create { pace, .. }) => {
                    assert_eq!(pace.concurrency().ok(), Some(Concurrency::MinHealthy(want)));
                }
                other => panic!("parsed as {other:?}"),
            }
        }
        let both = parse(&["--concurrency", "2", "--min-healthy", "6"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            both.contains("--concurrency")
                && both.contains("--min-healthy")
                && both.contains("cannot be used with"),
            "{both}"
        );
        let neither = parse(&[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            neither.contains("--concurrency") && neither.contains("--min-healthy"),
            "{neither}"
        );
        let bad = parse(&["--min-healthy", "100%"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(bad.contains("0–99"), "{bad}");
        Ok(())
    }

    #[test]
    fn instances_lists_or_removes_one() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["x", "instances", "--output", "json"])?;
        assert!(matches!(
            cli.cmd,
            FleetCommand::Instances {
                action: None,
                output: Output::Json,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["x", "instances", "remove", "web-1"])?;
        match cli.cmd {
            FleetCommand::Instances {
                action: Some(InstancesAction::Remove { name, .. }),
                ..
            } => assert_eq!(name, "web-1"),
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["x", "instances", "remove"]).is_err());
        let cli = Cli::try_parse_from(["x", "instances", "approve", "web-2"])?;
        match cli.cmd {
            FleetCommand::Instances {
                action: Some(InstancesAction::Approve { name, .. }),
                ..
            } => assert_eq!(name, "web-2"),
            other => panic!("parsed as {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn the_coordinator_takes_approval_mode_and_can_drop_the_standing_token()
    -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "x",
            "coordinator",
            "--data",
            "d",
            "--enroll-approval",
            "--no-standing-enroll-token",
        ])?;
        match cli.cmd {
            FleetCommand::Coordinator(a) => {
                assert!(a.enroll_approval && a.no_standing_enroll_token);
            }
            other => panic!("parsed as {other:?}"),
        }
        // A standing token file and no standing token contradict each other.
        assert!(
            Cli::try_parse_from([
                "x",
                "coordinator",
                "--data",
                "d",
                "--enroll-token-file",
                "f",
                "--no-standing-enroll-token"
            ])
            .is_err()
        );
        Ok(())
    }

    #[test]
    fn push_takes_a_path_or_a_url_with_its_sha256() {
        assert!(Cli::try_parse_from(["x", "push", "--app", "a", "dir"]).is_ok());
        assert!(
            Cli::try_parse_from([
                "x",
                "push",
                "--app",
                "a",
                "--url",
                "https://e/b.tgz",
                "--sha256",
                "ab"
            ])
            .is_ok()
        );
        assert!(Cli::try_parse_from(["x", "push", "--app", "a"]).is_err());
        assert!(
            Cli::try_parse_from(["x", "push", "--app", "a", "--url", "https://e/b.tgz"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "x", "push", "--app", "a", "dir", "--url", "u", "--sha256", "s"
            ])
            .is_err()
        );
    }
}
