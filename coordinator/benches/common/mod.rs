//! Shared bench harness: the coordinator runs as a child process (this bench binary re-executed with
//! `ROLLCAGE_BENCH_SERVE=<data dir>`), and simulated agents speak the real HTTP protocol to it.
#![allow(dead_code, reason = "each bench uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench harness: a failure aborts the run loudly"
)]

use rollcage_client::Client;
use rollcage_proto::wire::{
    CreateApplication, CreateDeployment, CreateGroup, Deployment, DeploymentStyle, EnrollRequest,
    PollRequest, StepCommand, StepOutcome, StepReport,
};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// If this process is the coordinator child, serve and never return.
pub fn maybe_serve() {
    let Ok(data) = std::env::var("ROLLCAGE_BENCH_SERVE") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = rollcage_coordinator::ServerConfig::loopback(data.into());
        rollcage_coordinator::serve(cfg, |r| println!("ADDR {}", r.addr))
            .await
            .unwrap();
    });
    std::process::exit(0);
}

/// The coordinator child.
pub struct Coordinator {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: String,
    pub enroll: String,
    pub _data: tempfile::TempDir,
}

impl Coordinator {
    pub fn spawn() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("ROLLCAGE_BENCH_SERVE", data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("ADDR ").unwrap().parse().unwrap();
        let read = |f: &str| {
            std::fs::read_to_string(data.path().join(f))
                .unwrap()
                .trim()
                .to_owned()
        };
        Self {
            child,
            addr,
            admin: read("admin-token"),
            enroll: read("enroll-token"),
            _data: data,
        }
    }

    /// Peak resident set size of the coordinator (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulated agents' and the operator's calls, through the typed client over one shared connection pool.
#[derive(Clone)]
pub struct Http {
    client: Client,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::new(&format!("http://{addr}"), None, None).unwrap(),
        }
    }

    /// The shared pool, calling with `token`.
    fn as_(&self, token: &str) -> Client {
        self.client.with_token(Some(token.to_owned()))
    }

    pub async fn enroll(&self, enroll_token: &str, name: &str) -> String {
        let req = EnrollRequest {
            name: name.to_owned(),
        };
        self.as_(enroll_token).enroll(&req).await.unwrap().token
    }

    pub async fn poll(&self, token: &str, wait_ms: u64) -> Option<StepCommand> {
        let req = PollRequest {
            wait_ms: Some(wait_ms),
        };
        self.as_(token).poll(&req).await.unwrap().command
    }

    /// Report a no-op success; returns the next command.
    pub async fn report_ok(&self, token: &str, cmd: &StepCommand) -> Option<StepCommand> {
        let report = StepReport {
            command_id: cmd.command_id,
            outcome: StepOutcome::Succeeded,
            message: String::new(),
            hooks: vec![],
            duration_ms: 0,
            log: None,
        };
        self.as_(token).report(&report).await.unwrap().command
    }

    /// Create app `app`, a group of `instances` with `concurrency`, and upload `revisions` distinct bundles.
    pub async fn setup(
        &self,
        admin: &str,
        instances: &[String],
        concurrency: &str,
        revisions: usize,
    ) -> Vec<String> {
        let admin = self.as_(admin);
        admin
            .create_application(&CreateApplication { name: "app".into() })
            .await
            .unwrap();
        let group = CreateGroup {
            name: "web".into(),
            style: DeploymentStyle::InPlace,
            concurrency: concurrency.parse().unwrap(),
            failure_tolerance: 0,
            auto_rollback: false,
            instances: instances.to_vec(),
            form: None,
            lb: None,
        };
        admin.create_group("app", &group).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..revisions {
            let rev = admin
                .upload_revision("app", format!("bundle {i}").into_bytes())
                .await
                .unwrap();
            ids.push(rev.id);
        }
        ids
    }

    pub async fn deploy(&self, admin: &str, revision: &str) -> String {
        let req = CreateDeployment {
            application: "app".into(),
            group: "web".into(),
            revision: revision.to_owned(),
            form: None,
        };
        self.as_(admin).create_deployment(&req).await.unwrap().id
    }

    pub async fn deployment(&self, admin: &str, id: &str) -> Deployment {
        self.as_(admin).get_deployment(id).await.unwrap()
    }
}

/// The q-quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
