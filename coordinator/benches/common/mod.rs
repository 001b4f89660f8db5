//! Shared bench harness: the coordinator runs as a child process (this bench binary re-executed with
//! `ROLLCAGE_BENCH_SERVE=<data dir>`), and simulated agents speak the real HTTP protocol to it.
#![allow(dead_code, reason = "each bench uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench harness: a failure aborts the run loudly"
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_proto::wire::{
    EnrollResponse, PollResponse, ReportResponse, StepCommand, StepOutcome, StepReport,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
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
        let cfg = rollcage_coordinator::ServerConfig {
            data: data.into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            admin_token_file: None,
            enroll_token_file: None,
            settings: Default::default(),
        };
        rollcage_coordinator::serve(cfg, |addr| println!("ADDR {addr}"))
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

/// A tiny JSON client over one shared connection pool.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(120))
            .build(conn);
        Self {
            client,
            base: format!("http://{addr}"),
        }
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Bytes,
        ct: &str,
    ) -> (u16, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", ct)
            .body(Full::new(body))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    pub async fn post<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &T,
    ) -> R {
        let (status, bytes) = self
            .raw(
                "POST",
                path,
                token,
                Bytes::from(serde_json::to_vec(body).unwrap()),
                "application/json",
            )
            .await;
        assert!(
            status < 300,
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).unwrap()
    }

    pub async fn get<R: DeserializeOwned>(&self, path: &str, token: &str) -> R {
        let (status, bytes) = self
            .raw("GET", path, token, Bytes::new(), "application/json")
            .await;
        assert!(
            status < 300,
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).unwrap()
    }

    pub async fn enroll(&self, enroll_token: &str, name: &str) -> String {
        let r: EnrollResponse = self
            .post(
                "/v1/agent/enroll",
                enroll_token,
                &serde_json::json!({ "name": name }),
            )
            .await;
        r.token
    }

    pub async fn poll(&self, token: &str, wait_ms: u64) -> Option<StepCommand> {
        let r: PollResponse = self
            .post(
                "/v1/agent/poll",
                token,
                &serde_json::json!({ "wait_ms": wait_ms }),
            )
            .await;
        r.command
    }

    /// Report a no-op success; returns the next command.
    pub async fn report_ok(&self, token: &str, cmd: &StepCommand) -> Option<StepCommand> {
        let r: ReportResponse = self
            .post(
                "/v1/agent/reports",
                token,
                &StepReport {
                    command_id: cmd.command_id,
                    outcome: StepOutcome::Succeeded,
                    message: String::new(),
                    hooks: vec![],
                    duration_ms: 0,
                    log: None,
                },
            )
            .await;
        r.command
    }

    /// Create app `app`, a group of `instances` with `concurrency`, and upload `revisions` distinct bundles.
    pub async fn setup(
        &self,
        admin: &str,
        instances: &[String],
        concurrency: &str,
        revisions: usize,
    ) -> Vec<String> {
        let _: serde_json::Value = self
            .post(
                "/v1/applications",
                admin,
                &serde_json::json!({"name": "app"}),
            )
            .await;
        let _: serde_json::Value = self
            .post(
                "/v1/applications/app/groups",
                admin,
                &serde_json::json!({"name": "web", "style": "in-place", "concurrency": concurrency, "instances": instances}),
            )
            .await;
        let mut ids = Vec::new();
        for i in 0..revisions {
            let (status, bytes) = self
                .raw(
                    "POST",
                    "/v1/applications/app/revisions",
                    admin,
                    Bytes::from(format!("bundle {i}")),
                    "application/octet-stream",
                )
                .await;
            assert_eq!(status, 201);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
        ids
    }

    pub async fn deploy(&self, admin: &str, revision: &str) -> String {
        let v: serde_json::Value = self
            .post(
                "/v1/deployments",
                admin,
                &serde_json::json!({"application": "app", "group": "web", "revision": revision}),
            )
            .await;
        v["id"].as_str().unwrap().to_owned()
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
