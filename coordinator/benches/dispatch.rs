//! Bench (a): dispatch latency. A step report is answered with the agent's next command, and the end of one
//! instance wakes the next instance's long poll; both are "report sent → next command received". Four simulated
//! agents (no-op steps) run 4-instance one-at-a-time deployments against a real coordinator process on loopback.
//! Baseline, in the same process: an empty poll round trip (HTTP + auth + one database read, no write).
//! Targets: median dispatch < 5 ms; a whole 4-instance one-at-a-time deployment < 2 s.

mod common;

use common::{Coordinator, Http, ms, quantile};
use rollcage_proto::wire::DeploymentStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEPLOYMENTS: usize = 30;

fn main() {
    common::maybe_serve();
    common::exit_unless_bench_mode();
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(run());
}

async fn run() {
    let coord = Coordinator::spawn();
    let http = Http::new(coord.addr);
    let names: Vec<String> = (0..4).map(|i| format!("i{i}")).collect();
    let mut tokens = Vec::new();
    for n in &names {
        tokens.push(http.enroll(&coord.enroll, n).await);
    }
    let revisions = http.setup(&coord.admin, &names, "1", 2).await;

    // Baseline: empty polls.
    let mut base = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let c = http.poll(&tokens[0], 0).await;
        base.push(t.elapsed());
        assert!(c.is_none());
    }
    base.sort();

    // Simulated agents: run every command at once, time report -> next command.
    let samples = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let last_report = Arc::new(Mutex::new(None::<Instant>));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut tasks = Vec::new();
    for (i, token) in tokens.iter().cloned().enumerate() {
        let (http, samples, last_report, stop, done_tx) = (
            http.clone(),
            samples.clone(),
            last_report.clone(),
            stop.clone(),
            done_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(mut cmd) = http.poll(&token, 500).await else {
                    continue;
                };
                // A poll woken by the previous instance's last report: that report -> this command.
                if let Some(t) = last_report.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(t.elapsed());
                }
                loop {
                    let t = Instant::now();
                    *last_report.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
                    match http.report_ok(&token, &cmd).await {
                        Some(next) => {
                            last_report.lock().unwrap_or_else(|e| e.into_inner()).take();
                            samples
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(t.elapsed());
                            cmd = next;
                        }
                        None => {
                            let _ = done_tx.send((i, Instant::now()));
                            break;
                        }
                    }
                }
            }
        }));
    }
    let mut totals = Vec::new();
    for d in 0..DEPLOYMENTS {
        let rev = &revisions[d % 2];
        *last_report.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let t = Instant::now();
        let id = http.deploy(&coord.admin, rev).await;
        for _ in 0..4 {
            done_rx.recv().await;
        }
        totals.push(t.elapsed());
        let d = http.deployment(&coord.admin, &id).await;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut s = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    s.sort();
    totals.sort();
    let median = quantile(&s, 0.5);
    let base_median = quantile(&base, 0.5);
    println!(
        "dispatch latency (report sent -> next command received), {} samples over {DEPLOYMENTS} deployments",
        s.len()
    );
    println!(
        "  baseline `empty poll round trip`: median {}",
        ms(base_median)
    );
    println!(
        "  dispatch: median {}  p99 {}  max {}  (ratio vs baseline {:.2}x)   target median < 5 ms",
        ms(median),
        ms(quantile(&s, 0.99)),
        ms(quantile(&s, 1.0)),
        median.as_secs_f64() / base_median.as_secs_f64().max(1e-9)
    );
    println!(
        "  4-instance one-at-a-time deployment, no-op steps: median {}  max {}   target < 2 s",
        ms(quantile(&totals, 0.5)),
        ms(quantile(&totals, 1.0))
    );
    println!("  coordinator peak RSS: {} KiB", coord.peak_rss_kib());
    let _ = Duration::ZERO;
}
