//! Bundles in PostgreSQL, the acceptance bound of issue 14: a real `rollcage coordinator --database URL` receives
//! a 200 MiB bundle, streamed by the test from a generator (never a buffer), and its peak resident memory (the
//! kernel's `VmHWM`, which counts start-up too) stays under 64 MiB; the bundle then downloads through the agent
//! route with the same sha256, still under the bound.

use anyhow::{Context, bail, ensure};
use rollcage_client::Client;
use rollcage_e2e::Coordinator;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The bundle: 200 MiB, as the issue says.
const BUNDLE_BYTES: u64 = 200 << 20;
/// The bound on the coordinator's resident memory, as the issue says.
const RSS_BOUND_KIB: u64 = 64 << 10;

/// A field of `/proc/PID/status` in KiB (`VmHWM`: the peak resident set; `VmRSS`: now).
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    line.split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()
        .with_context(|| format!("parsing {line:?}"))
}

/// `POST` `size` pseudo-random bytes (made 256 KiB at a time as the socket takes them) as application `app`'s
/// revision, over plain HTTP/1.1 with a `Content-Length`: (the status, the answer's body, the bytes' sha256).
async fn upload_generated(
    addr: SocketAddr,
    token: &str,
    app: &str,
    size: u64,
) -> anyhow::Result<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST /v1/applications/{app}/revisions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let mut rng = fastrand::Rng::with_seed(14);
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 256 << 10];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64))?;
        rng.fill(&mut block[..n]);
        hasher.update(&block[..n]);
        s.write_all(&block[..n]).await?;
        left -= n as u64;
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()
        .with_context(|| format!("parsing the status of {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body, hex::encode(hasher.finalize())))
}

/// The sha256 of a file, read in pieces.
fn file_sha256(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Samples the coordinator's `VmRSS` every 20 ms until dropped; the largest seen.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

#[test]
fn a_200_mib_bundle_streams_through_postgresql_under_64_mib_of_coordinator_memory()
-> anyhow::Result<()> {
    let db = rollcage_testpg::shared_database()?;
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(
        &dir.path().join("coordinator"),
        "127.0.0.1:0".parse()?,
        &["--database", db.url()],
    )?;
    ensure!(
        coordinator.ca_fingerprint.is_none(),
        "expected plain HTTP on loopback"
    );
    let pid = coordinator.proc.pid();
    let url = coordinator.url();
    let rt = tokio::runtime::Runtime::new()?;
    let outcome = rt.block_on(async {
        let admin = Client::new(&url, Some(coordinator.admin_token.clone()), None)?;
        let enroll = admin.with_token(Some(coordinator.enroll_token.clone()));
        let agent = enroll
            .enroll(&serde_json::from_value(serde_json::json!({"name": "big-1"}))?)
            .await?;
        let agent = admin.with_token(Some(agent.token));
        admin
            .create_application(&serde_json::from_value(serde_json::json!({"name": "big"}))?)
            .await?;
        admin
            .create_group(
                "big",
                &serde_json::from_value(serde_json::json!({
                    "name": "web", "style": "in-place", "concurrency": "1", "instances": ["big-1"]
                }))?,
            )
            .await?;
        let started_kib = status_kib(pid, "VmRSS")?;

        let sampler = Sampler::start(pid);
        let (status, body, sha) =
            upload_generated(coordinator.addr, &coordinator.admin_token, "big", BUNDLE_BYTES).await?;
        let upload_rss = sampler.peak();
        let upload_hwm = status_kib(pid, "VmHWM")?;
        if status != 201 {
            bail!("upload answered {status}: {body}");
        }
        let rev: rollcage_proto::wire::Revision = serde_json::from_str(&body)?;
        ensure!(rev.sha256 == sha, "stored as {}, sent {sha}", rev.sha256);

        admin
            .create_deployment(&serde_json::from_value(serde_json::json!({
                "application": "big", "group": "web", "revision": rev.id
            }))?)
            .await?;
        let poll = agent
            .poll(&serde_json::from_value(serde_json::json!({"wait_ms": 5000}))?)
            .await?;
        ensure!(poll.command.is_some(), "the agent was given no command");
        let dest = dir.path().join("downloaded");
        let sampler = Sampler::start(pid);
        // Checked against the sha256 while streaming (an error when it differs), and again below from the file.
        let size = agent.download_bundle("big", &rev.id, &dest, &sha).await?;
        let download_rss = sampler.peak();
        let hwm = status_kib(pid, "VmHWM")?;
        ensure!(size == BUNDLE_BYTES, "downloaded {size} bytes");
        ensure!(file_sha256(&dest)? == sha, "the downloaded bytes differ");
        eprintln!(
            "coordinator RSS (KiB): {started_kib} before the upload; sampled peak {upload_rss} while uploading, \
             {download_rss} while downloading; VmHWM {upload_hwm} after the upload, {hwm} after the download"
        );
        ensure!(
            hwm < RSS_BOUND_KIB,
            "the coordinator's peak RSS was {hwm} KiB, over {RSS_BOUND_KIB} KiB"
        );
        anyhow::Ok(())
    });
    if outcome.is_err() {
        eprintln!(
            "coordinator log:\n{}",
            std::fs::read_to_string(&coordinator.proc.log).unwrap_or_default()
        );
    }
    drop(coordinator);
    drop(db);
    outcome
}
