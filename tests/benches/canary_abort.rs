//! Abort latency of a bad canary (issue 16): how long clients keep reaching a revision that answers 500s, from its
//! first bad answer to the last answer it gives after the judge set its weight to 0. Real coordinator, agents,
//! built-in LB and a load generator; one fleet, RUNS bad deployments in a row (each to the idle server group,
//! aborted in its first step), and the median and max against the target `interval_secs` + 1 s.
//!
//! `cargo build --release --bin rollcage && cargo bench -p rollcage-e2e --bench canary_abort` (`RUNS=N` to change
//! the number of runs, 10 by default; `ROLLCAGE_E2E_BIN=target/debug/rollcage` to run the debug build instead —
//! the latency is bound by the canary's interval, not by the binary's speed).
//!
//! What is measured, from the clients' side: t0 = the send time of the first 500 after the bad deployment
//! started; t1 = the end of the last request the bad group answered (a 500, or a 200 naming the bad revision).
//! t1 − t0 bounds the abort latency from above (an in-flight request finishes where it started, ~20 ms here).

use anyhow::{Context, bail};
use rollcage_e2e::lb::{
    BuiltinLb, DemoApps, Faults, LbGroup, Load, create_lb_group_with, write_app_bundle_with_faults,
};
use rollcage_e2e::{Fleet, rollcage_bin};
use rollcage_proto::wire::DeploymentStatus;
use std::time::Duration;

/// The app's answer delay: short, so the load makes a few hundred requests a second.
const DELAY_MS: u64 = 20;
/// Load generator threads.
const WORKERS: usize = 16;
/// The canary's judged interval; the target is this + 1 s.
const INTERVAL_SECS: u64 = 1;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let (ports, apps) = DemoApps::slots(2)?;
    let bin = rollcage_bin()?;
    let pid_files = apps.0.clone();
    let fleet = Fleet::start_with_vars(2, |i| {
        vec![
            format!("PORT={}", ports[i]),
            format!("ROLLCAGE_BIN={}", bin.display()),
            format!("DEMO_PID={}", pid_files[i].display()),
        ]
    })?;
    let lb = BuiltinLb::start(fleet.dir.path(), &["blue", "green"], "blue")?;
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    create_lb_group_with(
        &fleet,
        &LbGroup {
            style: "blue-green",
            targets: vec![addr(0), addr(1)],
            driver: lb.driver(),
            server_groups: serde_json::json!({"blue": [addr(0)], "green": [addr(1)]}),
            active: Some("blue"),
            wait_for_continue: false,
        },
        serde_json::json!({"canary": {
            "steps": [50, 100],
            "bake_secs": INTERVAL_SECS,
            "interval_secs": INTERVAL_SECS,
            "min_requests": 10,
            "max_error_rate": 0.05,
            "max_p99_ratio": 5.0,
            "failure_limit": 0,
        }}),
    )?;
    let push = |label: &str, fail_percent: u64| -> anyhow::Result<String> {
        let dir = fleet.dir.path().join(format!("bundle-{label}"));
        let faults = Faults {
            fail_percent,
            only_on: None,
        };
        write_app_bundle_with_faults(&dir, label, "", DELAY_MS, &faults)?;
        fleet.push("shop", &dir)
    };
    // v1 everywhere a server group will serve: to green (the idle one), walking the canary, then it serves.
    let good = push("v1", 0)?;
    let (_, d) = fleet.deploy_wait("shop", "web", &good)?;
    if d.status != DeploymentStatus::Succeeded {
        bail!("the good revision did not go out: {}", d.message);
    }
    let load = Load::start(lb.service, WORKERS);
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::new();
    let mut windows = Vec::new();
    for run in 1..=runs {
        let label = format!("bad{run}");
        let rev = push(&label, 20)?;
        let started = rollcage_e2e::lb::now_ms();
        let (_, d) = fleet.deploy_wait("shop", "web", &rev)?;
        if d.status != DeploymentStatus::Failed || !d.message.contains("canary aborted") {
            bail!(
                "run {run}: expected an aborted canary, got {} ({})",
                d.status,
                d.message
            );
        }
        windows.push((
            label,
            started,
            d.ended_at_ms.context("an ended deployment")?,
        ));
        println!("run {run}: {}", d.message.lines().next().unwrap_or(""));
        // Let the rollback end before the next run (it only points the service where it already is).
        std::thread::sleep(Duration::from_millis(300));
    }
    let samples = load.finish();
    // A run's window ends where the next run starts: a 500 carries no version, and the next bad revision's
    // canary answers some soon after.
    let bounds: Vec<i64> = windows
        .iter()
        .skip(1)
        .map(|(_, started, _)| *started)
        .chain(std::iter::once(i64::MAX))
        .collect();
    for ((label, started, ended), next) in windows.iter().zip(bounds) {
        let until = (*ended + 2000).min(next);
        let mine = |s: &&rollcage_e2e::lb::Sample| match &s.result {
            Ok(body) => body.split_whitespace().next() == Some(label.as_str()),
            // The good group never answers 500: a 500 in this run's window is the bad revision's.
            Err(e) => e.contains(" 500"),
        };
        let in_run: Vec<_> = samples
            .iter()
            .filter(|s| s.start_ms >= *started && s.start_ms < until)
            .filter(mine)
            .collect();
        let first_bad = in_run
            .iter()
            .filter(|s| s.result.is_err())
            .map(|s| s.start_ms)
            .min()
            .with_context(|| format!("{label}: no client saw a 500"))?;
        let last = in_run.iter().map(|s| s.end_ms).max().unwrap_or(first_bad);
        latencies.push(last - first_bad);
    }
    latencies.sort_unstable();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    let target = i64::try_from(INTERVAL_SECS * 1000 + 1000).unwrap_or(i64::MAX);
    println!(
        "abort latency over {runs} runs (first 500 -> last answer of the bad group), ms: {latencies:?}"
    );
    #[allow(clippy::cast_precision_loss)]
    let ratio = |v: i64| v as f64 / target as f64;
    println!(
        "median {median} ms ({:.2}x the target), max {max} ms ({:.2}x the target); target interval_secs + 1 s = {target} ms",
        ratio(median),
        ratio(max)
    );
    Ok(())
}
