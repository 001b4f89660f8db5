//! The notifier cannot be forgotten: every write path of the store and the engine, run through the shared state,
//! wakes a waiting agent long poll and the deployment's followers (SSE stream, logs long poll) after its commit.

#![allow(clippy::unwrap_used, reason = "test setup on an in-memory database")]

use super::State;
use crate::engine::executor::{self, EngineError};
use crate::engine::traffic;
use crate::notify::Subscription;
use crate::store::{Store, deployments, logs};
use crate::testkit::{
    TestResult, add_group, bg_settings, commits, deploy, finish_switch, group, lb_settings,
    run_instance, seed, state,
};
use futures_util::FutureExt;
use rollcage_proto::wire::{
    Concurrency, DeploymentStatus, DeploymentStyle, StepLog, StepOutcome, StepReport,
};
use std::pin::Pin;
use tokio::sync::futures::OwnedNotified;

/// Waiters registered before a write: an agent's long poll, and the followers of some deployments.
struct Waiting {
    what: &'static str,
    agent: Option<(String, Pin<Box<OwnedNotified>>)>,
    followers: Vec<(String, Subscription)>,
}

/// Register the waiters a write must wake: `agent`'s long poll (when the write gives that agent work) and the
/// followers of `followed`.
fn waiting(st: &State, what: &'static str, agent: Option<&str>, followed: &[&str]) -> Waiting {
    let agent = agent.map(|a| {
        // Exactly what `POST /agent/poll` does: enabled before the write, so only a wake can complete it.
        let mut n = Box::pin(st.waker(a).notified_owned());
        n.as_mut().enable();
        (a.to_owned(), n)
    });
    let followers = followed
        .iter()
        .map(|d| (d.to_string(), st.changes().subscribe(d)))
        .collect();
    Waiting {
        what,
        agent,
        followers,
    }
}

impl Waiting {
    fn assert_woken(self) {
        if let Some((a, n)) = self.agent {
            assert!(
                n.now_or_never().is_some(),
                "{}: agent `{a}`'s long poll was not woken",
                self.what
            );
        }
        for (d, sub) in &self.followers {
            assert!(
                sub.has_changed().unwrap_or(false),
                "{}: the followers of `{d}` were not woken",
                self.what
            );
        }
    }
}

/// Whether a commit since the last call woke the traffic runner (its permit is taken).
fn traffic_woken(st: &State) -> bool {
    st.traffic().notified().now_or_never().is_some()
}

/// Report `inst`'s running agent step as an agent does (`POST /agent/reports`: batched, log stored with it).
async fn report(st: &State, inst: &str, step_id: i64) -> TestResult<bool> {
    let report = StepReport {
        command_id: step_id,
        outcome: StepOutcome::Succeeded,
        message: String::new(),
        hooks: vec![],
        duration_ms: 1,
        log: Some(StepLog {
            text: "output\n".into(),
            truncated_bytes: 0,
        }),
    };
    let inst = inst.to_owned();
    Ok(st
        .store
        .write_batched(move |tx| {
            let row = deployments::step(tx, step_id)?;
            let recorded = executor::record_report(tx, &inst, &report, 2)?;
            if let (Some(row), Some(log)) = (row, &report.log) {
                logs::insert(tx, &row, log, 2)?;
            }
            Ok::<_, EngineError>(recorded)
        })
        .await?)
}

fn running(s: &Store, inst: &str) -> deployments::StepRow {
    s.read(|c| deployments::running_step_for(c, inst))
        .unwrap()
        .unwrap()
}

fn last_commit_touched(commits: &std::sync::Mutex<Vec<crate::store::Touched>>, id: &str) -> bool {
    commits
        .lock()
        .unwrap()
        .last()
        .is_some_and(|t| t.deployments.contains(id))
}

#[tokio::test]
async fn every_write_path_wakes_the_agent_long_poll_and_the_followers_after_its_commit()
-> TestResult {
    let st = state()?;
    let s = &st.store;
    let commits = commits(s);
    seed(s);
    // `web`: a then b, one failure tolerated (so a lost agent's step hands the work to the next agent).
    let mut web = group(
        ("g-1", "web", DeploymentStyle::InPlace),
        Concurrency::Count(1),
        false,
        &["a", "b"],
        None,
    );
    web.failure_tolerance = 1;
    add_group(s, &web);
    let lb = Some(lb_settings(&["c"]));
    let lbweb = ("g-2", "lbweb", DeploymentStyle::InPlaceLb);
    add_group(s, &group(lbweb, Concurrency::Count(1), false, &["c"], lb));
    let bg = ("g-3", "bg", DeploymentStyle::BlueGreen);
    let bg_lb = Some(bg_settings(true));
    add_group(s, &group(bg, Concurrency::Count(1), false, &[], bg_lb));
    let (v1, v2) = (
        format!("r-{}", "a".repeat(16)),
        format!("r-{}", "b".repeat(16)),
    );

    // Create: the first agent is sent a step. Nobody can follow a deployment before it exists; its id is in the
    // commit's set, which is what the followers' wake is made of.
    let w = waiting(&st, "create deployment", Some("a"), &[]);
    let d1 = deploy(s, "web", &v1)?;
    w.assert_woken();
    assert!(last_commit_touched(&commits, &d1));

    // Agent report (the batched path): a's last step ends, b is sent its first.
    loop {
        let step = running(s, "a");
        if step.event.name() == "ValidateService" {
            let w = waiting(&st, "agent report", Some("b"), &[&d1]);
            assert!(report(&st, "a", step.id).await?);
            w.assert_woken();
            break;
        }
        report(&st, "a", step.id).await?;
    }
    run_instance(s, "b", None);

    // A stop lets a's step run on and sends nobody anything new: only the followers re-read.
    let d2 = deploy(s, "web", &v2)?;
    let w = waiting(&st, "stop", None, &[&d2]);
    s.write(|tx| executor::stop(tx, &d2, false, 3))?;
    w.assert_woken();
    run_instance(s, "a", None);

    // A forced stop cancels a's step: a's poll re-reads (its command is no longer offered).
    let d3 = deploy(s, "web", &v2)?;
    let cancelled = running(s, "a");
    let w = waiting(&st, "force stop", Some("a"), &[&d3]);
    s.write(|tx| executor::stop(tx, &d3, true, 3))?;
    w.assert_woken();
    // The cancelled step's report comes late: not recorded, but its log is stored (logs long polls wake).
    let w = waiting(&st, "late log", None, &[&d3]);
    assert!(!report(&st, "a", cancelled.id).await?);
    w.assert_woken();

    // Rollback: the rolled-back deployment notes it, and a is sent the rollback's first step.
    let w = waiting(&st, "rollback", Some("a"), &[&d3]);
    let rb = s.write(|tx| executor::rollback(tx, &d3, 4))?;
    w.assert_woken();
    assert!(last_commit_touched(&commits, &rb));

    // Lost agent (the server's sweeper): a's step fails, b takes over.
    let w = waiting(&st, "lost agent", Some("b"), &[&rb]);
    let hour_later = rollcage_proto::wire::now_ms() + 3_600_000;
    assert_eq!(crate::server::sweep_lost(&st, hour_later)?, 1);
    w.assert_woken();
    run_instance(s, "b", None);

    // Coordinator step end (the traffic runner's): dispatching BlockTraffic wakes the runner; its end sends c its
    // next step.
    let dl = deploy(s, "lbweb", &v1)?;
    let block = loop {
        let coord = s.read(deployments::running_coordinator_steps)?;
        if let Some(step) = coord.into_iter().find(|c| c.deployment_id == dl) {
            break step;
        }
        let _ = traffic_woken(&st);
        report(&st, "c", running(s, "c").id).await?;
        if s.read(deployments::running_coordinator_steps)?.is_empty() {
            assert!(!traffic_woken(&st), "no coordinator step: runner not woken");
        } else {
            assert!(
                traffic_woken(&st),
                "a coordinator step wakes the traffic runner"
            );
        }
    };
    let w = waiting(&st, "coordinator step end", Some("c"), &[&dl]);
    s.write(|tx| traffic::finish_step(tx, block.id, StepOutcome::Succeeded, "lb", 5))?;
    w.assert_woken();
    run_instance(s, "c", None);

    // Continue (blue/green): SwitchTraffic is the coordinator's, deployment-wide: no agent, but the runner wakes.
    let db = deploy(s, "bg", &v1)?;
    run_instance(s, "g1", None);
    assert_eq!(
        s.read(|c| deployments::get(c, &db))?.map(|d| d.status),
        Some(DeploymentStatus::Ready)
    );
    let _ = traffic_woken(&st);
    let w = waiting(&st, "continue", None, &[&db]);
    s.write(|tx| executor::continue_deployment(tx, &db, 6))?;
    w.assert_woken();
    assert!(traffic_woken(&st), "continue wakes the traffic runner");
    assert_eq!(
        finish_switch(s, StepOutcome::Succeeded).as_deref(),
        Some("SwitchTraffic")
    );

    // Resume (start-up): a deployment whose first step was never sent (undone by hand, as a coordinator with new
    // rules could find one) is dispatched, and a wakes.
    let d4 = deploy(s, "web", &v2)?;
    s.write(|tx| {
        tx.execute(
            "UPDATE steps SET state = 'pending', started_at = NULL WHERE deployment_id = ?1 AND instance = 'a'",
            [&d4],
        )
        .map_err(crate::store::sql)?;
        tx.execute(
            "UPDATE deployment_instances SET status = 'pending', running_step = NULL WHERE deployment_id = ?1",
            [&d4],
        )
        .map_err(crate::store::sql)
    })?;
    assert!(s.read(|c| deployments::running_step_for(c, "a"))?.is_none());
    let w = waiting(&st, "resume", Some("a"), &[&d4]);
    assert_eq!(crate::server::resume(&st, 7)?, 1);
    w.assert_woken();
    Ok(())
}

#[tokio::test]
async fn nothing_is_woken_inside_the_transaction_nor_for_a_write_that_rolls_back() -> TestResult {
    let st = state()?;
    let s = &st.store;
    seed(s);
    let web = ("g-1", "web", DeploymentStyle::InPlace);
    add_group(s, &group(web, Concurrency::Count(1), false, &["a"], None));
    let new = |tx: &crate::store::Tx<'_>| {
        executor::create_deployment(
            tx,
            &executor::NewDeployment {
                application: "app",
                group: "web",
                revision: &format!("r-{}", "a".repeat(16)),
                rollback_of: None,
                concurrency: None,
                catch_up: None,
                overrides: Default::default(),
                description: None,
            },
            &[],
            1,
        )
    };
    let mut w = waiting(&st, "refused", Some("a"), &[]);
    let refused: Result<String, EngineError> = s.write(|tx| {
        new(tx)?;
        let (_, n) = w.agent.as_mut().unwrap();
        assert!(
            n.as_mut().now_or_never().is_none(),
            "dispatched, but not committed yet: nobody hears of it"
        );
        Err(EngineError::Conflict("refused after the dispatch".into()))
    });
    assert!(refused.is_err());
    let batched: Result<String, EngineError> = s
        .write_batched(move |tx| {
            new(tx)?;
            Err(EngineError::Conflict("refused after the dispatch".into()))
        })
        .await;
    assert!(batched.is_err());
    let (_, n) = w.agent.take().unwrap();
    assert!(
        n.now_or_never().is_none(),
        "a rolled-back dispatch wakes nobody"
    );
    // The same write, committed, does wake.
    let w = waiting(&st, "committed", Some("a"), &[]);
    s.write(new)?;
    w.assert_woken();
    Ok(())
}
