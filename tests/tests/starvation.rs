//! 1,100 idle TCP connections (more than systemd's default of 1,024 open files) do not take a real coordinator off
//! the air: an operator's request and an agent's report are both answered within a second.
//!
//! The coordinator starts at a soft open-file limit of 1,024, as a systemd service does; before the fix every
//! accept failed with EMFILE once the idle connections had taken the descriptors.

use rollcage_client::Client;
use rollcage_e2e::Coordinator;
use rollcage_proto::wire::{CreateApplication, EnrollRequest, StepOutcome, StepReport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_idle_connections_do_not_stop_admin_requests_or_agent_reports()
-> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    anyhow::ensure!(
        hard >= 4_096,
        "this test needs a hard open-file limit of at least 4,096 (it is {hard})"
    );
    let dir = tempfile::tempdir()?;
    // The child inherits the limit it starts with; this process takes its own back at once.
    setrlimit(Resource::RLIMIT_NOFILE, 1_024, hard)?;
    let started = Coordinator::start(
        &dir.path().join("data"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &[],
    );
    setrlimit(Resource::RLIMIT_NOFILE, soft.max(4_096), hard)?;
    let coord = started?;

    let t = Instant::now();
    let mut held = Vec::with_capacity(1_100);
    for _ in 0..1_100 {
        held.push(TcpStream::connect(coord.addr).await?);
    }
    // Let the coordinator accept them all: each then holds one of its descriptors.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // They are all still open when the requests come (well within the 10 s header deadline that would cut them
    // off): room is made by the descriptors and the cap, not by the deadline.
    let open = held
        .iter()
        .filter(|s| {
            let mut byte = [0u8; 1];
            matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    anyhow::ensure!(
        open == held.len(),
        "{} of {} idle connections were closed before the requests ({:?} after the first)",
        held.len() - open,
        held.len(),
        t.elapsed()
    );

    let within = Duration::from_secs(1);
    let admin = Client::new(&coord.url(), Some(coord.admin_token.clone()), None)?;
    let t = Instant::now();
    tokio::time::timeout(
        within,
        admin.create_application(&CreateApplication { name: "app".into() }),
    )
    .await
    .map_err(|_| anyhow::anyhow!("admin request not answered within {within:?}"))??;
    let admin_took = t.elapsed();

    let enroller = Client::new(&coord.url(), Some(coord.enroll_token.clone()), None)?;
    let enrolled = tokio::time::timeout(
        within,
        enroller.enroll(&EnrollRequest {
            name: "i1".into(),
            tags: Default::default(),
        }),
    )
    .await
    .map_err(|_| anyhow::anyhow!("enrollment not answered within {within:?}"))??;
    let agent = Client::new(&coord.url(), Some(enrolled.token), None)?;
    let report = StepReport {
        command_id: 999_999,
        outcome: StepOutcome::Succeeded,
        message: "done".into(),
        hooks: Vec::new(),
        duration_ms: 1,
        log: None,
    };
    let t = Instant::now();
    // No such command: the answer is a refusal, but it is an answer.
    let answer = tokio::time::timeout(within, agent.report(&report))
        .await
        .map_err(|_| anyhow::anyhow!("agent report not answered within {within:?}"))?;
    let err = answer
        .err()
        .ok_or_else(|| anyhow::anyhow!("a report of an unknown command was accepted"))?;
    anyhow::ensure!(err.status().is_some(), "an HTTP answer, not {err}");
    eprintln!(
        "with 1,100 idle connections: admin request answered in {admin_took:?}, agent report in {:?}",
        t.elapsed()
    );
    drop(held);
    Ok(())
}
