//! Test fixtures shared by the coordinator's test modules: a shared state over an in-memory store, a record of what
//! each commit touched, and the engine's fixtures (groups, deployments, instances simulated through the executor).
//! Requests through the real router are the router's own fixtures: `api::testkit`.

#![allow(clippy::unwrap_used, reason = "test fixtures")]

use crate::auth::Tokens;
use crate::engine::executor::{
    EngineError, NewDeployment, create_deployment, end_coordinator_step, record_report,
};
use crate::state::{AppState, Settings, State};
use crate::store::{Store, Touched, apps, deployments, revisions};
use rollcage_proto::lb::GroupLb;
use rollcage_proto::wire::{Concurrency, DeploymentStyle, Group, StepOutcome, StepReport};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Result of a test or fixture.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The admin token of [`state`].
pub const ADMIN: &str = "admin-secret";
/// The enrollment token of [`state`].
pub const ENROLL: &str = "enroll-secret";

/// Test tunables: polls held 200 ms (tests wait on them), a 60 s heartbeat, logs kept for ever.
pub fn settings() -> Settings {
    Settings {
        max_poll_wait: Duration::from_millis(200),
        heartbeat_deadline: Duration::from_secs(60),
        log_retention: None,
        enroll_approval: false,
        standing_enroll_token: true,
        webhook_retry: Default::default(),
    }
}

/// A shared state over `store` (tokens [`ADMIN`] and [`ENROLL`], bundles in a fresh temp dir that outlives the
/// test).
pub fn state_over(store: Store, settings: Settings) -> TestResult<State> {
    let dir = tempfile::tempdir()?.keep();
    Ok(Arc::new(AppState::new(
        store,
        Tokens::new(ADMIN, ENROLL, []),
        dir.join("bundles"),
        settings,
    )))
}

/// A shared state over an empty store ([`store`]) with the test [`settings`].
pub fn state() -> TestResult<State> {
    state_over(store()?, settings())
}

/// An empty store: in-memory SQLite, or a fresh PostgreSQL database when `ROLLCAGE_TEST_STORE=postgres` (the
/// test command runs the coordinator's suite once each way).
pub fn store() -> TestResult<Store> {
    match std::env::var("ROLLCAGE_TEST_STORE").as_deref() {
        Ok("postgres") => pg_store(),
        Ok("sqlite") | Err(_) => Ok(Store::open_in_memory()?),
        Ok(other) => {
            Err(format!("ROLLCAGE_TEST_STORE={other}: expected sqlite or postgres").into())
        }
    }
}

/// An empty store on each backend: the store's own tests run on both, whatever `ROLLCAGE_TEST_STORE` says.
pub fn stores() -> TestResult<Vec<Store>> {
    Ok(vec![Store::open_in_memory()?, pg_store()?])
}

/// A store in a fresh database of the shared throwaway PostgreSQL server; the database is dropped with the store.
pub fn pg_store() -> TestResult<Store> {
    // Made on a thread of its own: the blocking PostgreSQL client must not run on a tokio worker.
    let db = std::thread::spawn(rollcage_testpg::shared_database)
        .join()
        .map_err(|_| "starting the test PostgreSQL server panicked")??;
    let url = db.url().to_owned();
    Ok(Store::open_postgres(&url)?.keep_until_dropped(Box::new(db)))
}

/// Every commit's [`Touched`] set from now on (adds a commit hook to `store`).
pub fn commits(store: &Store) -> Arc<Mutex<Vec<Touched>>> {
    let seen: Arc<Mutex<Vec<Touched>>> = Arc::default();
    let sink = seen.clone();
    store.on_commit(Arc::new(move |t| sink.lock().unwrap().push(t.clone())));
    seen
}

// Engine fixtures, on a bare store: application `app` with two revisions, groups, and agents simulated through the
// executor.

/// Application `app` with revisions `r-aaaa…` and `r-bbbb…` (sha256 `aaaa…`, `bbbb…`).
pub fn seed(s: &Store) {
    s.write(|tx| {
        apps::insert_application(tx, "app", 0)?;
        revisions::upsert(tx, "app", &"a".repeat(64), None, 10, 0)?;
        revisions::upsert(tx, "app", &"b".repeat(64), None, 10, 0)?;
        Ok::<_, EngineError>(())
    })
    .unwrap();
}

/// A group to insert: `id`, `name`, `style`, concurrency, auto-rollback, instances and LB settings.
pub fn group(
    (id, name, style): (&str, &str, DeploymentStyle),
    c: Concurrency,
    auto_rollback: bool,
    instances: &[&str],
    lb: Option<GroupLb>,
) -> Group {
    Group {
        id: id.into(),
        application: "app".into(),
        name: name.into(),
        style,
        concurrency: c,
        failure_tolerance: 0,
        auto_rollback,
        instances: instances.iter().map(|s| s.to_string()).collect(),
        tags: Default::default(),
        lb,
        webhooks: Default::default(),
        created_at_ms: 0,
    }
}

pub fn add_group(s: &Store, g: &Group) {
    s.write(|tx| apps::insert_group(tx, g)).unwrap();
}

/// Rolling-with-LB settings: `instances` at `127.0.0.1:8081`… in server group `blue`.
pub fn lb_settings(instances: &[&str]) -> GroupLb {
    let targets: serde_json::Map<String, serde_json::Value> = instances
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), format!("127.0.0.1:{}", 8081 + i).into()))
        .collect();
    let addrs: Vec<serde_json::Value> = targets.values().cloned().collect();
    typed(serde_json::json!({
        "targets": targets,
        "lb": {
            "service": "app1",
            "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/nonexistent" },
            "server_groups": { "blue": addrs }
        }
    }))
}

/// Settings written as the JSON an operator sends, typed.
fn typed(v: serde_json::Value) -> GroupLb {
    serde_json::from_value(v).unwrap()
}

/// Blue/green settings: `b1`, `b2` in `blue` (serving), `g1` in `green`.
pub fn bg_settings(wait_for_continue: bool) -> GroupLb {
    typed(serde_json::json!({
        "active_group": "blue",
        "wait_for_continue": wait_for_continue,
        "targets": { "b1": "127.0.0.1:8081", "b2": "127.0.0.1:8082", "g1": "127.0.0.1:8083" },
        "lb": {
            "service": "app1",
            "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/nonexistent" },
            "server_groups": { "blue": ["127.0.0.1:8081", "127.0.0.1:8082"], "green": ["127.0.0.1:8083"] }
        }
    }))
}

/// Deploy revision `rev` to group `group` of `app` (no enrolled instances).
pub fn deploy(s: &Store, group: &str, rev: &str) -> Result<String, EngineError> {
    s.write(|tx| {
        create_deployment(
            tx,
            &NewDeployment {
                application: "app",
                group,
                revision: rev,
                rollback_of: None,
                concurrency: None,
                catch_up: None,
                overrides: Default::default(),
                description: None,
            },
            &[],
            1,
        )
    })
}

/// Run `inst` to its end in its current deployment: agent steps reported like an agent would, coordinator
/// steps finished like the traffic runner would (`fail_at` fails that event). Returns the events in order.
pub fn run_instance(s: &Store, inst: &str, fail_at: Option<&str>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut deployment: Option<String> = None;
    loop {
        let agent = s.read(|c| deployments::running_step_for(c, inst)).unwrap();
        let coord = s
            .read(deployments::running_coordinator_steps)
            .unwrap()
            .into_iter()
            .find(|st| st.instance == inst);
        assert!(
            agent.is_none() || coord.is_none(),
            "one step in flight at a time"
        );
        let Some(step) = agent.clone().or(coord) else {
            return seen;
        };
        if deployment.get_or_insert_with(|| step.deployment_id.clone()) != &step.deployment_id {
            return seen;
        }
        seen.push(step.event.name().to_owned());
        let outcome = if Some(step.event.name()) == fail_at {
            StepOutcome::Failed
        } else {
            StepOutcome::Succeeded
        };
        let report = StepReport {
            command_id: step.id,
            outcome,
            message: String::new(),
            hooks: vec![],
            duration_ms: 1,
            log: None,
        };
        if agent.is_some() {
            assert!(s.write(|tx| record_report(tx, inst, &report, 2)).unwrap());
        } else {
            // An agent never gets (nor may report) a coordinator step.
            assert!(matches!(
                s.write(|tx| record_report(tx, inst, &report, 2)),
                Err(EngineError::Forbidden(_))
            ));
            assert!(
                s.write(|tx| end_coordinator_step(tx, step.id, outcome, "lb", 2))
                    .unwrap()
            );
        }
    }
}

/// Finish the running deployment-wide step with `outcome`; returns its event.
pub fn finish_switch(s: &Store, outcome: StepOutcome) -> Option<String> {
    let step = s
        .read(deployments::running_coordinator_steps)
        .unwrap()
        .into_iter()
        .find(|st| st.instance == deployments::DEPLOYMENT_WIDE)?;
    s.write(|tx| end_coordinator_step(tx, step.id, outcome, "switched", 3))
        .unwrap();
    Some(step.event.name().to_owned())
}
