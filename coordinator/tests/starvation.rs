//! Whoever can reach the coordinator's port cannot take it off the air: idle connections, a silent client and a
//! stalled upload cost a bounded slot for a bounded time, and operators and agents are still answered.
//!
//! Each test starts a real coordinator in this process. The 1,100-connection case, which needs the coordinator in a
//! process of its own (its open-file limit), is in the end-to-end tests (`tests/tests/starvation.rs`).

use rollcage_client::Client;
use rollcage_coordinator::server::{ConnLimits, ServerConfig, spawn};
use rollcage_proto::wire::{CreateApplication, EnrollRequest, StepOutcome, StepReport};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn token(data: &Path, file: &str) -> Result<String, std::io::Error> {
    Ok(std::fs::read_to_string(data.join(file))?.trim().to_owned())
}

async fn idle_connections(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, std::io::Error> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(TcpStream::connect(addr).await?);
    }
    Ok(held)
}

/// An operator's request and an agent's report, each answered (any HTTP answer) within `within`.
async fn still_answered(addr: SocketAddr, data: &Path, within: Duration) -> TestResult {
    let url = format!("http://{addr}");
    let admin = Client::new(&url, Some(token(data, "admin-token")?), None)?;
    let t = Instant::now();
    tokio::time::timeout(
        within,
        admin.create_application(&CreateApplication {
            name: format!("app-{}", fastrand::u32(..)),
        }),
    )
    .await
    .map_err(|_| format!("admin request not answered within {within:?}"))??;
    let admin_took = t.elapsed();

    let enroller = Client::new(&url, Some(token(data, "enroll-token")?), None)?;
    let name = format!("i-{}", fastrand::u32(..));
    let enrolled = tokio::time::timeout(
        within,
        enroller.enroll(&EnrollRequest {
            name,
            tags: Default::default(),
        }),
    )
    .await
    .map_err(|_| format!("enrollment not answered within {within:?}"))??;
    let agent = Client::new(&url, Some(enrolled.token), None)?;
    let t = Instant::now();
    let report = StepReport {
        command_id: 999_999,
        outcome: StepOutcome::Succeeded,
        message: "done".into(),
        hooks: Vec::new(),
        duration_ms: 1,
        log: None,
    };
    // No such command: the answer is a refusal, but it is an answer.
    let answer = tokio::time::timeout(within, agent.report(&report))
        .await
        .map_err(|_| format!("agent report not answered within {within:?}"))?;
    let err = answer
        .err()
        .ok_or("a report of an unknown command was accepted")?;
    assert!(err.status().is_some(), "an HTTP answer, not {err}");
    eprintln!(
        "admin request answered in {admin_took:?}, agent report in {:?}",
        t.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_silent_clients_are_cut_off_and_others_get_in() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cfg = ServerConfig {
        database: None,
        limits: ConnLimits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 20,
            ..ConnLimits::default()
        },
        ..ServerConfig::loopback(data.clone())
    };
    let addr = spawn(cfg).await?;
    // More silent clients than the cap: every slot is taken, and more wait in the backlog.
    let mut held = idle_connections(addr, 50).await?;
    // A silent client is cut off once the header deadline passes.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(3), held[0].read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection is closed by the coordinator, got {read:?}"
    );
    // Slots free up every 300 ms, 20 at a time: the 50 silent ones are gone within a second or so.
    still_answered(addr, &data, Duration::from_secs(3)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_dropped_after_the_body_idle_deadline() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cfg = ServerConfig {
        database: None,
        limits: ConnLimits {
            body_idle_timeout: Duration::from_millis(300),
            ..ConnLimits::default()
        },
        ..ServerConfig::loopback(data.clone())
    };
    let addr = spawn(cfg).await?;
    let admin = token(&data, "admin-token")?;
    Client::new(&format!("http://{addr}"), Some(admin.clone()), None)?
        .create_application(&CreateApplication { name: "app".into() })
        .await?;
    let mut s = TcpStream::connect(addr).await?;
    // Headers promise 1 MB; ten bytes come, then nothing.
    let head = format!(
        "POST /v1/applications/app/revisions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n0123456789"
    );
    s.write_all(head.as_bytes()).await?;
    let t = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "a stalled upload is still held open after 5 s (deadline 300 ms)"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "the upload is refused as unreadable, got {text}"
    );
    eprintln!(
        "stalled upload ended after {:?}: {}",
        t.elapsed(),
        text.lines().next().unwrap_or("(closed)")
    );
    // Nothing half-written is left behind.
    let parts: Vec<_> = std::fs::read_dir(data.join("bundles"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(parts.is_empty(), "left in the bundles dir: {parts:?}");
    Ok(())
}
