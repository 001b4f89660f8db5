//! A change made through coordinator B wakes what waits on coordinator A within 100 ms (the bound): an
//! agent's long poll (`POST /v1/agent/poll` held on A returns the command of a deployment created through B) and a
//! progress stream (`GET /v1/deployments/{id}/events` on A sends the snapshot of a stop asked through B). Measured
//! by timestamps: the instant B's answer to the change arrived against the instant A's waiter got its answer.

use anyhow::{Context, bail};
use http_body_util::BodyExt;
use rollcage_client::Client;
use rollcage_e2e::cluster::ClusterSpec;
use rollcage_e2e::{Fleet, write_bundle};
use rollcage_proto::wire::{
    CreateDeployment, Deployment, DeploymentStatus, EnrollRequest, PollRequest, StopDeployment,
};
use std::time::{Duration, Instant};

/// The bound on a wake across coordinators.
const WAKE_BOUND: Duration = Duration::from_millis(100);

/// How long the waiter is held on A before the change: far longer than a request takes to arrive, so the change
/// finds it waiting (checked: it has not answered yet).
const SETTLE: Duration = Duration::from_millis(500);

#[test]
fn a_change_through_b_wakes_a_long_poll_and_a_progress_stream_on_a_within_100_ms()
-> anyhow::Result<()> {
    let pg = rollcage_testpg::Server::start()?;
    let fleet = Fleet::start_cluster(&ClusterSpec {
        database: &pg.url(),
        coordinators: 2,
        agents: 0,
        agent_coordinators: &|_| Vec::new(),
        vars: &|_| Vec::new(),
    })?;
    let result = rollcage_e2e::caught(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(wake(&fleet))
    });
    if let Err(e) = &result {
        eprintln!("{e:#}\nfleet kept at {}", fleet.keep().display());
    }
    result
}

async fn wake(fleet: &Fleet) -> anyhow::Result<()> {
    let (a, b) = (fleet.coordinator_k(0)?, fleet.coordinator_k(1)?);
    // An agent of our own (the client crate) enrolls through A and long-polls A.
    let agent_token = Client::new(&a.url(), Some(a.enroll_token.clone()), None)?
        .enroll(&EnrollRequest {
            name: "i0".into(),
            tags: Default::default(),
        })
        .await?
        .token;
    let agent = Client::new(&a.url(), Some(agent_token), None)?;
    // Everything else goes through B.
    fleet.cli_on(b, &["app", "create", "shop"])?;
    fleet.cli_on(
        b,
        &[
            "group",
            "create",
            "--app",
            "shop",
            "web",
            "--style",
            "in-place",
            "--concurrency",
            "1",
            "--instances",
            "i0",
        ],
    )?;
    let bundle = fleet.dir.path().join("v1");
    write_bundle(&bundle, "v1", "0", "")?;
    let (_, out) = fleet.cli_on(b, &["push", "--app", "shop", &bundle.display().to_string()])?;
    let revision = out.trim().to_owned();
    let admin_a = Client::new(&a.url(), Some(a.admin_token.clone()), None)?;
    let admin_b = Client::new(&b.url(), Some(b.admin_token.clone()), None)?;

    // 1. A long poll held on A, woken by a deployment created through B.
    let poll = tokio::spawn(async move {
        let answer = agent
            .poll(&PollRequest {
                wait_ms: Some(30_000),
            })
            .await;
        (answer, Instant::now())
    });
    tokio::time::sleep(SETTLE).await;
    if poll.is_finished() {
        let (answer, _) = poll.await?;
        bail!("the poll on A answered before any change: {answer:?}");
    }
    let d = admin_b
        .create_deployment(&CreateDeployment {
            application: "shop".into(),
            group: "web".into(),
            revision,
            form: None,
            ignore_application_stop_failures: false,
            file_exists_behavior: None,
            description: None,
        })
        .await?;
    let changed = Instant::now();
    let (answer, woke) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .context("the poll on A was not woken within 10 s")??;
    let command = answer?
        .command
        .context("the poll on A answered without a command")?;
    assert_eq!(command.deployment_id, d.id, "{command:?}");
    let late = woke.saturating_duration_since(changed);
    eprintln!("long poll on A woke {late:?} after B answered the deployment's creation");
    assert!(
        late < WAKE_BOUND,
        "the long poll on A woke {late:?} after the change through B (bound {WAKE_BOUND:?})"
    );

    // 2. A progress stream on A, woken by a stop asked through B.
    let body = admin_a.deployment_events(&d.id).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(read_snapshots(body, tx));
    let (first, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("no first snapshot within 10 s")?
        .context("the stream ended before its first snapshot")?;
    assert_eq!(first.status, DeploymentStatus::InProgress, "{first:?}");
    tokio::time::sleep(SETTLE).await;
    if let Ok(extra) = rx.try_recv() {
        bail!("the stream on A sent a snapshot before any change: {extra:?}");
    }
    let stopping = admin_b
        .stop_deployment(&d.id, &StopDeployment { force: false })
        .await?;
    let changed = Instant::now();
    assert_eq!(stopping.status, DeploymentStatus::Stopping);
    let (snapshot, woke) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("the stream on A sent nothing within 10 s of the stop through B")?
        .context("the stream on A ended without the stop")?;
    assert_eq!(snapshot.status, DeploymentStatus::Stopping, "{snapshot:?}");
    let late = woke.saturating_duration_since(changed);
    eprintln!("progress stream on A woke {late:?} after B answered the stop");
    assert!(
        late < WAKE_BOUND,
        "the progress stream on A woke {late:?} after the change through B (bound {WAKE_BOUND:?})"
    );
    reader.abort();
    Ok(())
}

/// Send every `deployment` snapshot of an SSE body with the instant it was read, until the stream ends.
async fn read_snapshots(
    mut body: hyper::body::Incoming,
    tx: tokio::sync::mpsc::UnboundedSender<(Deployment, Instant)>,
) -> anyhow::Result<()> {
    let mut buf = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.push_str(std::str::from_utf8(&data)?);
        // Events end with a blank line; the coordinator sends `\n` line ends.
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let mut name = "message";
            let mut json = String::new();
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    json.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if name == "deployment" {
                let d: Deployment = serde_json::from_str(&json)
                    .with_context(|| format!("a snapshot that is not a deployment: {json}"))?;
                if tx.send((d, Instant::now())).is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
