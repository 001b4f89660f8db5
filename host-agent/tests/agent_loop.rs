//! The agent loop against a real coordinator (in-process, on loopback) with a fake step executor: protocol,
//! journal recovery after a simulated SIGKILL, and the outbox.

use rollcage_agent::daemon::{AgentLoop, Backoff};
use rollcage_agent::executor::{BoxFuture, StepExecutor};
use rollcage_agent::journal::{EntryState, Journal};
use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::{
    DeploymentStatus, DeploymentStyle, LogQuery, PollRequest, StepCommand, StepOutcome, StepReport,
    StopDeployment,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{TestResult, coordinator, enrolled, loop_config, probe_command};

#[derive(Clone, Default)]
struct Fake {
    ran: Arc<Mutex<Vec<(String, LifecycleEvent)>>>,
    fail_on: Option<LifecycleEvent>,
    /// (event, how long it takes)
    slow: Option<(LifecycleEvent, Duration)>,
    completed_slow: Arc<std::sync::atomic::AtomicBool>,
}

impl StepExecutor for Fake {
    fn run<'a>(&'a self, cmd: &'a StepCommand) -> BoxFuture<'a, StepReport> {
        Box::pin(async move {
            self.ran
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((cmd.deployment_id.clone(), cmd.event));
            if let Some((event, d)) = self.slow
                && event == cmd.event
            {
                tokio::time::sleep(d).await;
                self.completed_slow
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let outcome = if Some(cmd.event) == self.fail_on {
                StepOutcome::Failed
            } else {
                StepOutcome::Succeeded
            };
            StepReport {
                command_id: cmd.command_id,
                outcome,
                message: "fake".into(),
                hooks: vec![],
                duration_ms: 0,
                log: None,
            }
        })
    }
}

impl Fake {
    fn ran(&self) -> Vec<(String, LifecycleEvent)> {
        self.ran.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[tokio::test]
async fn agent_runs_every_step_once_in_the_seed_order() -> TestResult {
    let env = coordinator(None, None).await?;
    let client = enrolled(&env.base, &env.enroll_token, "i1").await?;
    env.group(&["i1"], false).await?;
    let id = env.deploy(b"archive".to_vec()).await?;
    let dir = tempfile::tempdir()?;
    let fake = Fake::default();
    let agent = AgentLoop::new(
        client,
        Journal::open(dir.path())?,
        fake.clone(),
        loop_config(),
    );
    let stop = tokio::time::sleep(Duration::from_secs(30));
    let run = tokio::spawn(async move { agent.run(stop).await.map_err(|e| e.to_string()) });
    let d = env.wait_end(&id, Duration::from_secs(5)).await?;
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    let events: Vec<_> = fake.ran().into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        events,
        rollcage_proto::plan(DeploymentStyle::InPlace, false).per_instance
    );
    Ok(())
}

#[tokio::test]
async fn restart_reports_interrupted_step_failed_and_never_reruns_it() -> TestResult {
    let env = coordinator(None, None).await?;
    let client = enrolled(&env.base, &env.enroll_token, "i1").await?;
    env.group(&["i1"], false).await?;
    let id = env.deploy(b"archive".to_vec()).await?;
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(dir.path())?;
    // First life: DownloadBundle ran and was reported; ApplicationStop ran but its report never left (killed
    // before delivery); BeforeInstall had started when the agent was killed.
    let first = Fake::default();
    let agent = AgentLoop::new(
        client.clone(),
        journal.clone(),
        first.clone(),
        loop_config(),
    );
    let p = client.poll(&PollRequest { wait_ms: Some(100) }).await?;
    let dl = p.command.ok_or("first command")?;
    let stop_cmd = agent.process(dl).await?.ok_or("second command")?;
    let seed = rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false);
    assert_eq!(stop_cmd.event, seed.per_instance[1]);
    let stop_report = StepReport {
        command_id: stop_cmd.command_id,
        outcome: StepOutcome::Succeeded,
        message: "ran before the kill".into(),
        hooks: vec![],
        duration_ms: 3,
        log: None,
    };
    journal.start(&stop_cmd)?;
    journal.finish(&stop_cmd, &stop_report)?;
    // The coordinator still waits for ApplicationStop; pretend BeforeInstall was started too (as if its command had
    // been the one in flight): the journal says started, never finished.
    let mut before = stop_cmd.clone();
    before.event = seed.per_instance[2];
    before.command_id = stop_cmd.command_id + 1;
    journal.start(&before)?;
    drop(agent);

    // Second life.
    let second = Fake::default();
    let agent = AgentLoop::new(
        client,
        Journal::open(dir.path())?,
        second.clone(),
        loop_config(),
    );
    let stop = tokio::time::sleep(Duration::from_secs(30));
    let run = tokio::spawn(async move { agent.run(stop).await.map_err(|e| e.to_string()) });
    let d = env.wait_end(&id, Duration::from_secs(5)).await?;
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    let steps = &d.instances[0].steps;
    assert_eq!(
        steps[1].message, "ran before the kill",
        "the outbox report was delivered"
    );
    assert!(
        steps[2].message.contains("interrupted by agent restart"),
        "{:?}",
        steps[2]
    );
    // Neither ApplicationStop nor BeforeInstall ran again; nothing after them ran at all.
    assert!(second.ran().is_empty(), "{:?}", second.ran());
    assert_eq!(first.ran().len(), 1);
    // Both are acknowledged in the journal.
    assert!(matches!(
        Journal::open(dir.path())?.get(&before)?.map(|e| e.state),
        Some(EntryState::Finished { acked: true, .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_failed_step_fails_the_deployment_and_stops_the_instance() -> TestResult {
    let env = coordinator(None, None).await?;
    let client = enrolled(&env.base, &env.enroll_token, "i1").await?;
    env.group(&["i1"], false).await?;
    let id = env.deploy(b"archive".to_vec()).await?;
    let dir = tempfile::tempdir()?;
    let fake = Fake {
        fail_on: Some(LifecycleEvent::AfterInstall),
        ..Fake::default()
    };
    let agent = AgentLoop::new(
        client,
        Journal::open(dir.path())?,
        fake.clone(),
        loop_config(),
    );
    let run = tokio::spawn(async move {
        agent
            .run(tokio::time::sleep(Duration::from_secs(30)))
            .await
            .map_err(|e| e.to_string())
    });
    let d = env.wait_end(&id, Duration::from_secs(5)).await?;
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert_eq!(
        fake.ran().last().map(|(_, e)| *e),
        Some(LifecycleEvent::AfterInstall)
    );
    assert_eq!(fake.ran().len(), 5);
    Ok(())
}

#[test]
fn backoff_grows_with_jitter_and_is_capped() {
    let b = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    for attempt in 0..20 {
        let full = Duration::from_millis(100u64 << attempt.min(16)).min(Duration::from_secs(2));
        let d = b.delay(attempt);
        assert!(
            d <= full && d >= full / 2,
            "attempt {attempt}: {d:?} vs {full:?}"
        );
    }
    let samples: std::collections::HashSet<_> = (0..50).map(|_| b.delay(5)).collect();
    assert!(samples.len() > 1, "jittered");
}

#[tokio::test]
async fn forced_stop_cancels_the_running_step_on_the_agent() -> TestResult {
    let env = coordinator(None, None).await?;
    let client = enrolled(&env.base, &env.enroll_token, "i1").await?;
    env.group(&["i1"], false).await?;
    let id = env.deploy(b"archive".to_vec()).await?;
    let dir = tempfile::tempdir()?;
    let fake = Fake {
        slow: Some((LifecycleEvent::BeforeInstall, Duration::from_secs(20))),
        ..Fake::default()
    };
    let journal = Journal::open(dir.path())?;
    let agent = AgentLoop::new(client, journal.clone(), fake.clone(), loop_config());
    let run = tokio::spawn(async move {
        agent
            .run(tokio::time::sleep(Duration::from_secs(60)))
            .await
            .map_err(|e| e.to_string())
    });
    for _ in 0..200 {
        if fake
            .ran()
            .iter()
            .any(|(_, e)| *e == LifecycleEvent::BeforeInstall)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = env
        .admin
        .stop_deployment(&id, &StopDeployment { force: true })
        .await?;
    assert_eq!(d.status, DeploymentStatus::Stopped);
    // The agent notices within its cancel-check interval and journals the step as cancelled.
    let mut cancelled = false;
    for _ in 0..100 {
        let ran = fake.ran();
        if let Some((dep, _)) = ran.last() {
            let mut probe =
                rollcage_agent::journal::Journal::open(dir.path())?.get(&StepCommand {
                    deployment_id: dep.clone(),
                    event: LifecycleEvent::BeforeInstall,
                    ..probe_command()
                })?;
            if let Some(rollcage_agent::journal::Entry {
                state: EntryState::Finished { report, .. },
                ..
            }) = probe.take()
            {
                assert!(
                    report.message.contains("cancelled by a forced stop"),
                    "{}",
                    report.message
                );
                cancelled = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    assert!(cancelled, "the agent journaled the cancellation");
    assert!(
        !fake
            .completed_slow
            .load(std::sync::atomic::Ordering::SeqCst),
        "the step was abandoned, not waited for"
    );
    Ok(())
}

struct LogWriting {
    log: std::path::PathBuf,
    quiet: LifecycleEvent,
}

impl StepExecutor for LogWriting {
    fn run<'a>(&'a self, cmd: &'a StepCommand) -> BoxFuture<'a, StepReport> {
        Box::pin(async move {
            if cmd.event != self.quiet {
                use std::io::Write;
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .and_then(|mut f| writeln!(f, "output of {}", cmd.event));
                assert!(written.is_ok(), "{written:?}");
            }
            StepReport {
                command_id: cmd.command_id,
                outcome: StepOutcome::Succeeded,
                message: "fake".into(),
                hooks: vec![],
                duration_ms: 0,
                log: None,
            }
        })
    }

    fn log_file(&self, _cmd: &StepCommand) -> Option<std::path::PathBuf> {
        Some(self.log.clone())
    }
}

#[tokio::test]
async fn each_report_carries_its_own_steps_output_and_the_coordinator_serves_it() -> TestResult {
    let env = coordinator(None, None).await?;
    let client = enrolled(&env.base, &env.enroll_token, "i1").await?;
    env.group(&["i1"], false).await?;
    let id = env.deploy(b"archive".to_vec()).await?;
    let dir = tempfile::tempdir()?;
    let exec = LogWriting {
        log: dir.path().join("scripts.log"),
        quiet: LifecycleEvent::Install,
    };
    let agent = AgentLoop::new(
        client,
        Journal::open(&dir.path().join("journal"))?,
        exec,
        loop_config(),
    );
    let stop = tokio::time::sleep(Duration::from_secs(30));
    let run = tokio::spawn(async move { agent.run(stop).await.map_err(|e| e.to_string()) });
    let d = env.wait_end(&id, Duration::from_secs(5)).await?;
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    let page = env.admin.deployment_logs(&id, &LogQuery::default()).await?;
    assert!(page.deployment_ended);
    let got: Vec<(LifecycleEvent, String)> = page
        .entries
        .iter()
        .map(|e| (e.event, e.text.clone()))
        .collect();
    let want: Vec<(LifecycleEvent, String)> = rollcage_proto::plan(DeploymentStyle::InPlace, false)
        .per_instance
        .iter()
        .filter(|e| **e != LifecycleEvent::Install)
        .map(|e| (*e, format!("output of {e}\n")))
        .collect();
    assert_eq!(got, want);
    Ok(())
}
