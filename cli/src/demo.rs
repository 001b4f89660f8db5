//! `rollcage demo`: the whole system working on this machine with nothing but the binary.
//!
//! In a temporary directory it starts a coordinator (SQLite), the built-in load balancer and 4 agents as separate
//! processes (each with its own root), then deploys the example bundle `hooks-examples/demo-web` — a small web
//! app the hooks start and stop — five times (see [`plan`] for how the deployments map onto groups):
//! v1 rolling without LB (it brings the app up; traffic starts once it serves), v2 rolling with LB, v3
//! blue/green as a canary walking its weighted steps, v4 blue/green whose ValidateService fails on one instance →
//! automatic rollback, v5 a canary that fails real requests → aborted by the judge.
//! Live traffic goes through the LB from v1's end to the last deployment's. It prints one line per step as
//! each instance reports it, a traffic line per deployment, a summary table and
//! `demo: N deployments, M requests, F failed` (N counts the automatic rollback, a deployment of its own; M and F
//! every request through the LB). It exits 0 only if every expectation held: each deployment's outcome, the
//! seed's per-instance event order of its style, the version served after it, and F = 0. Every process it
//! started (and the apps the hooks started) is stopped and the temp dir removed at the end, also on failure,
//! panic, Ctrl-C or SIGTERM (exit 130 or 143); `--keep` keeps the temp dir (logs, agent roots) and prints its path.

mod bundles;
mod cluster;
mod plan;
mod procs;
mod report;
mod traffic;

use anyhow::{Context as _, bail};
use plan::Expect;
use procs::Supervisor;
use report::Row;
use rollcage_client::Client;
use rollcage_proto::wire::{CreateDeployment, Deployment, StepState};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use traffic::{Snapshot, Traffic};

/// Arguments of `rollcage demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Keep the temp dir (logs, coordinator data, agent roots) and print its path.
    #[arg(long)]
    keep: bool,
}

/// Threads sending requests through the LB: eight concurrent clients, enough for a canary's share of them to be
/// judged every second. Each mostly waits for the app's delayed answer, so they load the fleet steadily without
/// starving it of CPU.
const LOAD_WORKERS: usize = 8;
/// Requests the demo's traffic must reach before it stops: fewer would make "0 failed" a small sample. The
/// deployments take about that many on this kind of machine; when they were quicker the traffic runs on, at most
/// [`TOP_UP_LIMIT`] longer, with the fleet on v3 (a failure then still counts).
const MIN_REQUESTS: u64 = 1000;
/// The longest the traffic runs on after the last deployment to reach [`MIN_REQUESTS`].
const TOP_UP_LIMIT: Duration = Duration::from_secs(10);

/// A deployment that takes longer than this failed the demo.
const DEPLOYMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the demo reads the deployment it follows.
const POLL: Duration = Duration::from_millis(100);

/// Run the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the rollcage binary")?;
    let sup = Supervisor::new(args.keep)?;
    println!("rollcage demo in {}", sup.dir().display());
    let result = tokio::select! {
        r = scenario(&sup, &exe) => r,
        (sig, code) = interrupted() => {
            println!("\ndemo: {sig}: stopping every process and removing the temp dir");
            Ok(ExitCode::from(code))
        }
    };
    if let Some(kept) = sup.shutdown() {
        println!("demo: kept {}", kept.display());
    }
    result
}

/// Resolves on SIGINT or SIGTERM, with the signal's name and the exit code shells report for it (128 + number).
async fn interrupted() -> (&'static str, u8) {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => ("interrupted (SIGINT)", 130),
            _ = term.recv() => ("terminated (SIGTERM)", 143),
        },
        // Without signal handlers the demo still runs; the supervisor's drop cleans up on the way out.
        _ => std::future::pending().await,
    }
}

/// A deployment followed to its end, with what the LB served meanwhile.
struct Followed {
    d: Deployment,
    traffic: Snapshot,
}

async fn scenario(sup: &Supervisor, exe: &Path) -> anyhow::Result<ExitCode> {
    let demo_start = Instant::now();
    let cluster = cluster::start(sup, exe).await?;
    let client = &cluster.client;
    let mut load: Option<Traffic> = None;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for stage in plan::scenario() {
        let rev_dir = sup.dir().join("revisions").join(stage.version);
        bundles::write_revision(&rev_dir, stage.version, stage.faults)?;
        let bytes = crate::fleet::pack::archive_bytes(&rev_dir)?;
        let rev = client
            .upload_revision(plan::APP, bytes)
            .await
            .with_context(|| format!("uploading revision {}", stage.version))?;
        println!(
            "\n== {} to group `{}`: {}{}",
            stage.version,
            stage.group,
            stage.expect.mode,
            match stage.faults {
                plan::Faults {
                    fail_on: Some(i), ..
                } => format!(" (its ValidateService fails on {i})"),
                plan::Faults {
                    fail_percent: p @ 1..,
                    ..
                } => format!(" (it answers {p} % of requests with a 500; health checks pass)"),
                _ => String::new(),
            }
        );
        let d = client
            .create_deployment(&CreateDeployment {
                application: plan::APP.to_owned(),
                group: stage.group.to_owned(),
                revision: rev.id.clone(),
                form: None,
                ignore_application_stop_failures: false,
                file_exists_behavior: None,
                description: None,
            })
            .await
            .with_context(|| format!("starting deployment {}", stage.version))?;
        let f = follow(sup, client, stage.version, &d.id, load.as_ref()).await?;
        let label = stage.version.to_owned();
        let ok = settle(
            sup,
            &label,
            &stage.expect,
            &f,
            &cluster,
            load.as_ref(),
            &mut problems,
        )
        .await;
        rows.push(row(&label, &stage.expect, &f, ok));
        if let Some(rb_expect) = &stage.rollback {
            let rb_id = rollback_of(sup, client, &f.d).await?;
            let label = format!("{} rollback", stage.version);
            let rb = follow(sup, client, &label, &rb_id, load.as_ref()).await?;
            let ok = settle(
                sup,
                &label,
                rb_expect,
                &rb,
                &cluster,
                load.as_ref(),
                &mut problems,
            )
            .await;
            rows.push(row(&label, rb_expect, &rb, ok));
        }
        if load.is_none() && stage.starts_traffic {
            load = Some(start_traffic(&cluster));
        }
    }
    if let Some(l) = &load {
        let begin = Instant::now();
        if l.snapshot().requests < MIN_REQUESTS {
            println!(
                "\ntraffic: {} requests so far; running on to {MIN_REQUESTS}, so that the figures mean something",
                l.snapshot().requests
            );
        }
        while l.snapshot().requests < MIN_REQUESTS && begin.elapsed() < TOP_UP_LIMIT {
            tokio::time::sleep(POLL).await;
        }
    }
    let total = load.as_ref().map(Traffic::stop).unwrap_or_default();
    if total.requests == 0 {
        problems.push("no request went through the load balancer".to_owned());
    }
    if total.failed > 0 {
        let first = load
            .as_ref()
            .and_then(Traffic::first_failure)
            .unwrap_or_default();
        problems.push(format!(
            "{} of {} requests failed; the first: {first}",
            total.failed, total.requests
        ));
    }
    // The 500s a bad canary answered before its abort are its users' cost, reported on their own line; a 500
    // injected by any other version (one that should never have served) fails the demo like any failure.
    let injected = load.as_ref().map(Traffic::injected_by).unwrap_or_default();
    let aborted = plan::aborted_canaries();
    let mut other_injected = 0;
    for (version, n) in &injected {
        if aborted.contains(&version.as_str()) {
            println!(
                "\ncanary: {version} answered {n} of the {} requests with its injected 500 while its first step \
                 was judged; the judge set its weight back to 0 (not counted as failed below)",
                total.requests
            );
        } else {
            other_injected += n;
            problems.push(format!(
                "{version} answered {n} requests with an injected 500, but it was never to take traffic"
            ));
        }
    }
    for version in aborted {
        if !injected.contains_key(version) {
            problems.push(format!(
                "the canary {version} was to fail some real requests before its abort, but no client saw one: \
                 it never took traffic"
            ));
        }
    }
    println!("\n{}", report::table(&rows));
    for p in &problems {
        println!("expectation failed: {p}");
    }
    println!(
        "took {:.1}s; {}",
        demo_start.elapsed().as_secs_f64(),
        if problems.is_empty() {
            "every expectation held"
        } else {
            "SOME EXPECTATIONS FAILED"
        }
    );
    println!(
        "{}",
        report::summary_line(rows.len(), total.requests, total.failed + other_injected)
    );
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Check a finished deployment and the version served after it; prints its traffic line. True if all held.
async fn settle(
    sup: &Supervisor,
    label: &str,
    want: &Expect,
    f: &Followed,
    cluster: &cluster::Cluster,
    load: Option<&Traffic>,
    problems: &mut Vec<String>,
) -> bool {
    let mut mine = plan::check(label, want, &f.d);
    let served = if load.is_some() {
        traffic::probe(cluster.service, 4).await
    } else {
        // Before any traffic (v1): the LB needs a few health checks to see the app; wait until every serving
        // instance answers, or the next deployment's first drain could leave it none.
        wait_served(cluster.service, &plan::BLUE.1).await
    }
    .map(|bodies| {
        bodies
            .iter()
            .map(|b| traffic::version_of(b).to_owned())
            .collect::<Vec<_>>()
    });
    let mut logs = Vec::new();
    let serving = match &served {
        Ok(versions) => {
            let mut seen: Vec<&str> = versions.iter().map(String::as_str).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.join("+")
        }
        Err(_) => "nothing".to_owned(),
    };
    match served {
        Ok(versions) if versions.iter().all(|v| v == want.served_after) => {}
        Ok(versions) => mine.push(format!(
            "{label}: the LB served {versions:?} after it, expected {}",
            want.served_after
        )),
        Err(e) => {
            mine.push(format!("{label}: probing the LB after it: {e}"));
            logs.push("lb".to_owned());
        }
    }
    if !mine.is_empty() {
        // The agents of instances with a failed step, where the hook output and the agent's view are.
        logs.extend(
            f.d.instances
                .iter()
                .filter(|i| i.steps.iter().any(|s| s.state == StepState::Failed))
                .map(|i| format!("{}{}", procs::AGENT_PREFIX, i.instance)),
        );
        logs.push("coordinator".to_owned());
    }
    let so_far = load.map(Traffic::snapshot);
    println!(
        "{label} {} in {:.1}s; {}",
        f.d.status,
        seconds(&f.d),
        match so_far {
            Some(total) => format!(
                "traffic: {} requests during it ({} failed{}), {} so far ({} failed); the LB serves {serving}",
                f.traffic.requests,
                f.traffic.failed,
                match f.traffic.injected {
                    0 => String::new(),
                    n => format!(", {n} answered an injected 500"),
                },
                total.requests,
                total.failed
            ),
            None => format!("the LB serves {serving}; no traffic yet"),
        }
    );
    if !f.d.message.is_empty() {
        println!("{label}: {}", f.d.message);
    }
    for name in logs {
        if let Some(path) = sup.log_of(&name) {
            println!(
                "last lines of {} ({name}):\n{}",
                path.display(),
                procs::log_tail(&path, procs::TAIL_LINES)
            );
        }
    }
    let ok = mine.is_empty();
    problems.extend(mine);
    ok
}

/// Probe until every one of `instances` answered through the LB (at most 15 s); the answers of the last probe.
async fn wait_served(addr: SocketAddr, instances: &[&str]) -> Result<Vec<String>, String> {
    let begin = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let result = traffic::probe(addr, 4).await;
        if let Ok(bodies) = &result {
            seen.extend(bodies.iter().map(|b| traffic::instance_of(b).to_owned()));
            if instances.iter().all(|i| seen.contains(*i)) {
                return result;
            }
        }
        if begin.elapsed() > Duration::from_secs(15) {
            return match result {
                Ok(_) => Err(format!(
                    "only {seen:?} of {instances:?} answered through the LB within 15 s"
                )),
                Err(e) => Err(e),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_traffic(cluster: &cluster::Cluster) -> Traffic {
    println!(
        "\ntraffic: {LOAD_WORKERS} workers sending GET / through the LB ({}) from now on; it starts only now \
         because before v1 nothing served, and a rolling deployment without a load balancer would restart \
         instances under their users' feet",
        cluster.service
    );
    Traffic::start(cluster.service, LOAD_WORKERS)
}

/// The automatic rollback a failed deployment started (it may take a moment to be recorded).
async fn rollback_of(sup: &Supervisor, client: &Client, d: &Deployment) -> anyhow::Result<String> {
    let begin = Instant::now();
    let mut last = d.clone();
    loop {
        if let Some(id) = &last.rollback_deployment {
            return Ok(id.clone());
        }
        if begin.elapsed() > Duration::from_secs(10) {
            bail!(
                "deployment {} ended {} without starting an automatic rollback ({})",
                d.id,
                d.status,
                d.message
            );
        }
        sup.check_alive()?;
        tokio::time::sleep(POLL).await;
        last = client.get_deployment(&d.id).await?;
    }
}

/// Follow deployment `id` to its end, printing each step as it ends.
async fn follow(
    sup: &Supervisor,
    client: &Client,
    label: &str,
    id: &str,
    load: Option<&Traffic>,
) -> anyhow::Result<Followed> {
    let before = load.map(Traffic::snapshot).unwrap_or_default();
    let begin = Instant::now();
    let mut last: Option<Deployment> = None;
    // The canary's steps, weights and verdicts, as `rollcage watch` prints them.
    let mut bakes = crate::fleet::progress::Tracker::new();
    loop {
        let d = client
            .get_deployment(id)
            .await
            .with_context(|| format!("reading deployment {id}"))?;
        for change in plan::step_changes(last.as_ref(), &d) {
            println!("{}", plan::progress_line(label, &change));
        }
        for line in bakes.update(&d, rollcage_proto::wire::now_ms()) {
            if line.bake {
                println!("{label} {}", line.text);
            }
        }
        if d.status.is_terminal() {
            let after = load.map(Traffic::snapshot).unwrap_or_default();
            return Ok(Followed {
                d,
                traffic: after.since(before),
            });
        }
        last = Some(d);
        if begin.elapsed() > DEPLOYMENT_TIMEOUT {
            let log = sup
                .log_of("coordinator")
                .map(|p| procs::log_tail(&p, procs::TAIL_LINES))
                .unwrap_or_default();
            bail!(
                "{label} ({id}) did not end within {DEPLOYMENT_TIMEOUT:?}; last lines of the coordinator's log:\n{log}"
            );
        }
        sup.check_alive()?;
        tokio::time::sleep(POLL).await;
    }
}

fn seconds(d: &Deployment) -> f64 {
    d.ended_at_ms
        .map(|e| (e - d.created_at_ms).max(0) as f64 / 1000.0)
        .unwrap_or(0.0)
}

fn row(label: &str, want: &Expect, f: &Followed, as_expected: bool) -> Row {
    Row {
        label: label.to_owned(),
        mode: want.mode.to_owned(),
        outcome: f.d.status.to_string(),
        seconds: seconds(&f.d),
        instances: f.d.instances.len(),
        requests: f.traffic.requests,
        failed: f.traffic.failed,
        as_expected,
    }
}
