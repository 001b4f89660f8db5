//! What the agent's integration tests share: a real coordinator in this process (loopback) with its admin client and
//! enrollment token, one in-place group, fast agent-loop settings, and a probe command for journal look-ups.

#![allow(dead_code, reason = "each test file uses its part")]

use rollcage_agent::daemon::{Backoff, LoopConfig};
use rollcage_client::Client;
use rollcage_coordinator::server::{ServerConfig, spawn};
use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::{
    Concurrency, CreateApplication, CreateDeployment, CreateGroup, Deployment, DeploymentStyle,
    EnrollRequest, RevisionLocation, RevisionRef, StepCommand,
};
use std::path::Path;
use std::time::{Duration, Instant};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A coordinator serving on loopback.
pub struct Coord {
    /// Its data dir (token files, database).
    pub data: tempfile::TempDir,
    /// `http://ADDR`.
    pub base: String,
    /// A client with the admin token.
    pub admin: Client,
    /// The enrollment token.
    pub enroll_token: String,
}

/// A coordinator on loopback; with `enroll_token_file`, that enrollment token instead of a fresh one; with
/// `heartbeat_deadline`, that deadline instead of the default.
pub async fn coordinator(
    enroll_token_file: Option<&Path>,
    heartbeat_deadline: Option<Duration>,
) -> TestResult<Coord> {
    let data = tempfile::tempdir()?;
    let mut cfg = ServerConfig::loopback(data.path().to_owned());
    cfg.enroll_token_file = enroll_token_file.map(Path::to_owned);
    if let Some(d) = heartbeat_deadline {
        cfg.settings.heartbeat_deadline = d;
    }
    let addr = spawn(cfg).await?;
    let base = format!("http://{addr}");
    let read =
        |f: &Path| -> TestResult<String> { Ok(std::fs::read_to_string(f)?.trim().to_owned()) };
    let admin_token = read(&data.path().join("admin-token"))?;
    let enroll_token = read(enroll_token_file.unwrap_or(&data.path().join("enroll-token")))?;
    Ok(Coord {
        admin: Client::new(&base, Some(admin_token), None)?,
        base,
        enroll_token,
        data,
    })
}

impl Coord {
    /// Application `app` and its in-place group `web` over `instances`, one at a time.
    pub async fn group(&self, instances: &[&str], auto_rollback: bool) -> TestResult {
        self.admin
            .create_application(&CreateApplication { name: "app".into() })
            .await?;
        self.admin
            .create_group(
                "app",
                &CreateGroup {
                    name: "web".into(),
                    style: DeploymentStyle::InPlace,
                    concurrency: Concurrency::Count(1),
                    failure_tolerance: 0,
                    auto_rollback,
                    instances: instances.iter().map(|i| (*i).to_owned()).collect(),
                    tags: Default::default(),
                    form: None,
                    lb: None,
                    webhooks: Vec::new(),
                    webhook_secret: None,
                },
            )
            .await?;
        Ok(())
    }

    /// Push `archive` as a revision of `app` and deploy it to `web`; returns the deployment id.
    pub async fn deploy(&self, archive: Vec<u8>) -> TestResult<String> {
        let rev = self.admin.upload_revision("app", archive).await?;
        let d = self
            .admin
            .create_deployment(&CreateDeployment {
                application: "app".into(),
                group: "web".into(),
                revision: rev.id,
                form: None,
                ignore_application_stop_failures: false,
                file_exists_behavior: None,
                description: None,
            })
            .await?;
        Ok(d.id)
    }

    /// The deployment once it ended, or an error if it did not within `within`.
    pub async fn wait_end(&self, id: &str, within: Duration) -> TestResult<Deployment> {
        let start = Instant::now();
        while start.elapsed() < within {
            let d = self.admin.get_deployment(id).await?;
            if d.status.is_terminal() {
                return Ok(d);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("deployment {id} did not end within {within:?}").into())
    }
}

/// Enroll `name` at `base` with `enroll_token`; a client carrying the agent's token.
pub async fn enrolled(base: &str, enroll_token: &str, name: &str) -> TestResult<Client> {
    let c = Client::new(base, Some(enroll_token.to_owned()), None)?;
    let r = c
        .enroll(&EnrollRequest {
            name: name.to_owned(),
            tags: Default::default(),
        })
        .await?;
    Ok(c.with_token(Some(r.token)))
}

/// Agent-loop settings for tests: short polls and cancel checks, a backoff capped at 100 ms.
pub fn loop_config() -> LoopConfig {
    LoopConfig {
        poll_wait: Duration::from_millis(300),
        cancel_check: Duration::from_millis(200),
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
        max_log_bytes: rollcage_agent::steplog::DEFAULT_MAX_LOG_BYTES,
    }
}

/// A command with only the fields a journal look-up reads to fill in (`deployment_id`, `event`).
pub fn probe_command() -> StepCommand {
    StepCommand {
        command_id: 0,
        deployment_id: String::new(),
        application: String::new(),
        group: String::new(),
        group_id: String::new(),
        event: LifecycleEvent::DownloadBundle,
        revision: RevisionRef {
            id: String::new(),
            sha256: String::new(),
            location: RevisionLocation::Url { url: String::new() },
            signature: None,
            size: None,
        },
        rollback: false,
        form: None,
        overrides: Default::default(),
    }
}
