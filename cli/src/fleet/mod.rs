//! Fleet commands of the `rollcage` binary: run the coordinator or an agent, and operate deployments.
//!
//! Remote commands take the coordinator URL and the admin token from `--coordinator`/`--token` or
//! `ROLLCAGE_COORDINATOR`/`ROLLCAGE_TOKEN`; read commands take `--output json` for scripts. Waiting commands
//! follow the deployment live over the coordinator's event stream ([`watch`]).
//!
//! Exit codes scripts can rely on:
//! - `0`: success (for `deploy --wait`/`rollback --wait`/`continue --wait`/`watch`: the deployment succeeded,
//!   or waits in `ready` for `continue`);
//! - `1`: the command could not be carried out (bad arguments, coordinator unreachable, API error);
//! - `2`: the deployment waited for failed;
//! - `3`: the deployment waited for was stopped.

mod logs;
pub(crate) mod pack;
mod progress;
mod render;
mod watch;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use rollcage_client::Client;
use rollcage_proto::Form;
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
    /// Coordinator base URL, e.g. http://127.0.0.1:7700.
    #[arg(long, env = "ROLLCAGE_COORDINATOR")]
    coordinator: Option<String>,
    /// Admin token (the content of DATA/admin-token).
    #[arg(long, env = "ROLLCAGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Extra CA certificate (PEM) to trust for a TLS coordinator.
    #[arg(long, env = "ROLLCAGE_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl Remote {
    fn client(&self) -> anyhow::Result<Client> {
        let url = self
            .coordinator
            .as_deref()
            .context("no coordinator: pass --coordinator URL or set ROLLCAGE_COORDINATOR")?;
        let token = self.token.clone().context(
            "no token: pass --token T or set ROLLCAGE_TOKEN (the coordinator's DATA/admin-token)",
        )?;
        Ok(Client::new(url, Some(token), self.ca_file.as_deref())?)
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
        /// Wait for the end; exit 2 if it failed, 3 if stopped.
        #[arg(long)]
        wait: bool,
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
    /// List enrolled instances (or `instances remove NAME`).
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
    /// Forget an instance: its agent's token stops working and its name may be enrolled again (how a host whose
    /// token was lost enrolls again). Refused while a deployment that has not ended includes it.
    Remove {
        /// Instance name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `rollcage coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Data directory (database, bundles, token files).
    #[arg(long)]
    data: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Use this existing admin token file instead of DATA/admin-token.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Use this existing enrollment token file instead of DATA/enroll-token.
    #[arg(long)]
    enroll_token_file: Option<PathBuf>,
    /// Seconds of silence after which an agent is lost and its in-flight step fails.
    #[arg(long, default_value_t = 60)]
    heartbeat_deadline: u64,
    /// Days the full hook output of an ended deployment is kept (`rollcage logs`); 0 keeps it for ever.
    #[arg(long, default_value_t = 30)]
    log_retention_days: u64,
    /// Most client connections served at once (more wait in the listen backlog); lowered to fit the open-file
    /// limit.
    #[arg(long, default_value_t = rollcage_coordinator::server::ConnLimits::default().max_connections)]
    max_connections: usize,
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
    /// Coordinator base URL.
    #[arg(long, env = "ROLLCAGE_COORDINATOR")]
    coordinator: Option<String>,
    /// Root directory of this agent's deployments.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Instance name (ROLLCAGE_INSTANCE for hooks).
    #[arg(long)]
    name: Option<String>,
    /// Enrollment token (first start; the agent then keeps its own token).
    #[arg(long, env = "ROLLCAGE_ENROLL_TOKEN", hide_env_values = true)]
    enroll_token: Option<String>,
    /// Where the agent's own token is kept (default ROOT/agent/token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The address the application serves on (ROLLCAGE_SERVICE_ADDR for hooks).
    #[arg(long)]
    service_addr: Option<String>,
    /// KEY=VALUE given to every hook (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Extra CA certificate (PEM) to trust for a TLS coordinator.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Most bytes of one step's hook output sent to the coordinator (the newest are kept; default 256 KiB, at
    /// most 1 MiB).
    #[arg(long)]
    max_log_bytes: Option<usize>,
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
    let enroll_token = match (a.enroll_token, &file) {
        (Some(t), _) => Some(t),
        (None, Some(f)) => f.enroll_token()?,
        (None, None) => None,
    };
    let mut vars: Vec<(String, String)> = file
        .as_ref()
        .map(|f| f.vars.clone().into_iter().collect())
        .unwrap_or_default();
    for (k, v) in a.vars {
        vars.retain(|(fk, _)| *fk != k);
        vars.push((k, v));
    }
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
        coordinator: a
            .coordinator
            .or_else(|| file.as_ref().map(|f| f.coordinator.clone()))
            .ok_or_else(|| missing("coordinator"))?,
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
        service_addr: a
            .service_addr
            .or_else(|| file.as_ref().and_then(|f| f.service_addr.clone())),
        ca_file: a
            .ca_file
            .or_else(|| file.as_ref().and_then(|f| f.ca_file.clone())),
        loop_config: rollcage_agent::daemon::LoopConfig {
            max_log_bytes,
            ..Default::default()
        },
    })
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

pub(crate) fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid --var `{s}`: expected KEY=VALUE"))?;
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "invalid --var name `{k}`: expected letters, digits and `_`, not starting with a digit"
        ));
    }
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
        /// N, P% or all.
        #[arg(long, value_parser = parse_concurrency)]
        concurrency: Concurrency,
        /// Failed instances tolerated.
        #[arg(long, default_value_t = 0)]
        failure_tolerance: u32,
        /// Roll back automatically when a deployment fails.
        #[arg(long)]
        auto_rollback: bool,
        /// Instance names, comma-separated (default: every enrolled instance at deployment time).
        #[arg(long, value_delimiter = ',')]
        instances: Vec<String>,
        /// The group's default deployment form (TOML or YAML: destination, stop/start/check scripts), used
        /// instead of the package's appspec.yml.
        #[arg(long)]
        form: Option<PathBuf>,
        /// Load-balancer settings for `in-place-lb` / `blue-green` (a `.toml`, `.yaml`/`.yml` or `.json` file:
        /// `[lb]` = driver, service, server groups, drain timeout; `[targets]` = instance → host:port;
        /// `active_group`, `wait_for_continue`; see coordinator/README.md).
        #[arg(long, value_name = "FILE")]
        lb: Option<std::path::PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
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

/// Run a fleet command.
pub async fn run(cmd: FleetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FleetCommand::Coordinator(a) => {
            let cfg = rollcage_coordinator::ServerConfig {
                data: a.data,
                listen: a.listen,
                tls: a.tls_cert.zip(a.tls_key),
                admin_token_file: a.admin_token_file,
                enroll_token_file: a.enroll_token_file,
                settings: rollcage_coordinator::Settings {
                    heartbeat_deadline: Duration::from_secs(a.heartbeat_deadline),
                    log_retention: (a.log_retention_days > 0).then(|| {
                        Duration::from_secs(a.log_retention_days.saturating_mul(24 * 3600))
                    }),
                    ..Default::default()
                },
                limits: rollcage_coordinator::server::ConnLimits {
                    max_connections: a.max_connections,
                    ..Default::default()
                },
            };
            rollcage_coordinator::serve(cfg, |addr| {
                // Tests and scripts that listen on port 0 read the bound address from here.
                eprintln!("rollcage coordinator listening on {addr}");
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
        FleetCommand::Group(GroupCommand::Create {
            app,
            name,
            style,
            concurrency,
            failure_tolerance,
            auto_rollback,
            instances,
            form,
            lb,
            output,
            remote,
        }) => {
            let lb = lb.map(|path| read_lb_file(&path)).transpose()?;
            let req = CreateGroup {
                name,
                style,
                concurrency,
                failure_tolerance,
                auto_rollback,
                instances,
                form: form.as_deref().map(load_form).transpose()?,
                lb,
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
            wait,
            output,
            remote,
        } => {
            let form = form.as_deref().map(load_form).transpose()?;
            let client = remote.client()?;
            let d = client
                .create_deployment(&CreateDeployment {
                    application: app,
                    group,
                    revision,
                    form,
                })
                .await?;
            finish(&client, d, wait, output).await
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
        FleetCommand::Instances {
            action: Some(InstancesAction::Remove { name, remote }),
            ..
        } => {
            remote.client()?.remove_instance(&name).await?;
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
                concurrency,
                auto_rollback,
                instances,
                ..
            }) => {
                assert_eq!(style, DeploymentStyle::InPlace);
                assert_eq!(concurrency, Concurrency::Percent(50));
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
