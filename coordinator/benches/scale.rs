//! Bench (b): scale. One process simulates 2,000 agents over the real HTTP protocol (each its own task and
//! connection) against a coordinator process; an all-at-once deployment of 7 no-op steps per instance.
//! Prints completion time, step reports per second (target >= 5,000/s on 2 cores) and the coordinator's peak RSS.
//! Baseline, in the same process and with the same 2,000 agents: empty polls per second (the protocol with no
//! database write), so the ratio shows what the engine's transaction per report costs.

mod common;

use common::{Coordinator, Http, SimAgent};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn main() {
    common::maybe_serve();
    common::exit_unless_bench_mode();
    let agents = common::agent_count(2000);
    common::raise_fd_limit(agents as u64 + 256);
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(run(agents));
}

async fn run(n: usize) {
    let coord = Coordinator::spawn();
    let http = Http::new(coord.addr);
    let names: Vec<String> = (0..n).map(|i| format!("agent-{i:05}")).collect();
    let t = Instant::now();
    let tokens = common::enroll_all(&http, &coord.enroll, &names).await;
    let revisions = http.setup(&coord.admin, &names, "all", 1).await;
    println!(
        "setup: {n} agents enrolled in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Baseline: every agent does 7 empty polls.
    let t = Instant::now();
    let base_reqs = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for token in &tokens {
        let (http, count, token) = (http.clone(), base_reqs.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..7 {
                let _ = http.poll(&token, 0).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let base_secs = t.elapsed().as_secs_f64();
    let base_rate = base_reqs.load(Ordering::Relaxed) as f64 / base_secs;

    // All agents wait in a long poll, then the deployment starts.
    let agents: Vec<SimAgent> = tokens
        .into_iter()
        .map(|token| SimAgent {
            http: http.clone(),
            token,
        })
        .collect();
    let run = common::run_deployment(&agents, &http, &coord.admin, &revisions[0], None).await;
    let (secs, total, rate) = (
        run.elapsed.as_secs_f64(),
        run.reports,
        run.reports_per_sec(),
    );
    println!("scale: {n} simulated agents, all-at-once deployment, 7 no-op steps each");
    println!("  baseline `empty polls`: {:.0} requests/s", base_rate);
    println!(
        "  deployment completed in {secs:.2} s; {total} step reports = {rate:.0} reports/s (ratio vs baseline {:.2}x)   target >= 5000/s",
        rate / base_rate
    );
    println!(
        "  dispatch (report sent -> next command received): p50 {}  p99 {}",
        common::ms(common::quantile(&run.dispatch, 0.5)),
        common::ms(common::quantile(&run.dispatch, 0.99))
    );
    println!(
        "  coordinator peak RSS: {} MiB",
        coord.peak_rss_kib() / 1024
    );
}
