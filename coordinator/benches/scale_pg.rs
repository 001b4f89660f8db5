//! Bench: the scale bench on both backends (issue 14), side by side in one run. The same fleet of simulated agents
//! (default 10,000; `ROLLCAGE_BENCH_AGENTS`), each its own task and connection speaking the real HTTP protocol, on
//!
//! - (a) one coordinator on SQLite: the baseline every ratio is against;
//! - (b) one coordinator on PostgreSQL;
//! - (c) two coordinators on one PostgreSQL, agents alternating between them (agent i talks to coordinator i mod 2);
//!   the operator's calls go to the first.
//!
//! Each configuration gets fresh coordinators (and a fresh throwaway PostgreSQL server from `rollcage-testpg`:
//! fsync and synchronous_commit off, so the numbers are the engine's and the protocol's, not a disk's) and runs:
//!
//! - **burst**: an all-at-once deployment of 7 no-op steps per instance; every agent reports as fast as it is
//!   answered, so the coordinators run flat out. Completion time, step reports per second, dispatch latency.
//! - **paced** (`ROLLCAGE_BENCH_PACED_RATE` reports/s offered, default 5,000; 0 skips it): the same deployment where
//!   each agent pauses a random 0..2×(agents / rate) before each report, as if its hooks ran, so the fleet offers
//!   about that rate. Under the burst every agent always has a report in flight, so by Little's law the latency is
//!   agents / throughput (10,000 / 10,000 per s = 1 s) whatever the engine does; the paced phase shows the
//!   latency of a fleet the coordinators keep up with.
//!
//! **Dispatch latency**: a step report sent by the agent → the answer to that report, which carries the agent's
//! next command, received by the agent (the report path's whole round trip: HTTP, the report's transaction, the
//! next command read in it). A report that ends an agent's work carries no command and is no sample. Also shown:
//! "first command", the deployment's creation sent → each agent's long poll answered with its first command (in
//! (c), half of them woken through the other coordinator's `LISTEN`).
//!
//! Also per configuration: CPU seconds used during the burst by the coordinators, the PostgreSQL server (postmaster
//! and backends) and this process (the agents), which shows where the machine's cores went, and each coordinator's
//! peak RSS (VmHWM) at the end.
//!
//! File descriptors: each agent holds one connection. This process raises its open-file limit to the hard limit
//! and stops when agents + 512 do not fit; each coordinator is started with a connection cap of agents + 1,024
//! (the default 8,192 would make the rest wait in the listen backlog) and raises its own limit.
//!
//! Run: `cargo bench -p rollcage-coordinator --bench scale_pg` (release profile). Needs PostgreSQL installed
//! (`testpg` finds Debian's `postgresql`).

mod common;

use common::{Coordinator, DeployRun, Http, Serve, SimAgent, ms, quantile};
use rollcage_testpg::Server;
use std::time::{Duration, Instant};

/// The fleet the issue asks the bench to run.
const DEFAULT_AGENTS: usize = 10_000;
/// Reports per second the paced phase offers by default: half of the two-coordinator target (10,000/s).
const DEFAULT_PACED_RATE: u64 = 5_000;

/// The lost-agent sweeper's deadline in the bench's coordinators (default 60 s; see [`run`]).
const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(600);

fn main() {
    common::maybe_serve();
    common::exit_unless_bench_mode();
    let n = common::agent_count(DEFAULT_AGENTS);
    common::raise_fd_limit(n as u64 + 512);
    let rate: u64 = std::env::var("ROLLCAGE_BENCH_PACED_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PACED_RATE);
    // Mean pause = agents / rate, so the fleet offers `rate` reports per second.
    let think = (rate > 0).then(|| Duration::from_secs_f64(n as f64 / rate as f64));
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let started = Instant::now();
    let mut results = Vec::new();
    results.push(rt.block_on(run("(a) SQLite x1", None, 1, n, think)));
    for coordinators in [1, 2] {
        // Started and stopped outside the runtime: the harness blocks.
        let pg = Server::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
        let name = if coordinators == 1 {
            "(b) PostgreSQL x1"
        } else {
            "(c) PostgreSQL x2"
        };
        results.push(rt.block_on(run(name, Some(&pg), coordinators, n, think)));
        drop(pg);
    }
    print_table(n, rate, &results);
    println!(
        "whole run (three configurations, set-up included): {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// What one configuration measured.
struct Outcome {
    name: &'static str,
    enroll: Duration,
    burst: DeployRun,
    paced: Option<DeployRun>,
    /// CPU used during the burst: coordinators (together), PostgreSQL, this process.
    cpu: (Duration, Duration, Duration),
    /// Peak RSS of each coordinator, KiB.
    rss_kib: Vec<u64>,
}

async fn run(
    name: &'static str,
    pg: Option<&Server>,
    coordinators: usize,
    n: usize,
    think: Option<Duration>,
) -> Outcome {
    println!("{name}: starting");
    let serve = Serve {
        database: pg.map(|p| p.url()),
        tokens_from: None,
        max_connections: Some(n + 1024),
        // A report queued in the coordinator is no word of its step to the lost-agent sweeper: with 10,000 agents
        // on PostgreSQL some wait longer than the default 60 s and the sweeper fails their step (see the README).
        heartbeat_deadline: Some(HEARTBEAT_DEADLINE),
    };
    let first = Coordinator::spawn_with(&serve);
    let operator = Http::new(first.addr);
    let names: Vec<String> = (0..n).map(|i| format!("agent-{i:05}")).collect();
    let t = Instant::now();
    let tokens = common::enroll_all(&operator, &first.enroll, &names).await;
    let enroll = t.elapsed();
    let revisions = operator.setup(&first.admin, &names, "all", 2).await;
    // Started once every agent is enrolled, so it knows every agent's token whether or not agent tokens are shared
    // through the database; it takes the first one's admin and enrollment token files.
    let mut coords = vec![first];
    for _ in 1..coordinators {
        coords.push(Coordinator::spawn_with(&Serve {
            tokens_from: Some(coords[0].data_dir().to_owned()),
            ..serve.clone()
        }));
    }
    let https: Vec<Http> = coords.iter().map(|c| Http::new(c.addr)).collect();
    let agents: Vec<SimAgent> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| SimAgent {
            http: https[i % https.len()].clone(),
            token,
        })
        .collect();
    let admin = coords[0].admin.clone();

    let cpu = |coords: &[Coordinator]| {
        (
            coords.iter().map(Coordinator::cpu).sum::<Duration>(),
            pg.map(|p| common::cpu_of_tree(p.pid())).unwrap_or_default(),
            common::cpu_self(),
        )
    };
    let before = cpu(&coords);
    let burst = common::run_deployment(&agents, &operator, &admin, &revisions[0], None).await;
    let after = cpu(&coords);
    println!(
        "{name}: burst done in {:.2} s ({:.0} reports/s)",
        burst.elapsed.as_secs_f64(),
        burst.reports_per_sec()
    );
    let paced = match think {
        Some(think) => {
            let r = common::run_deployment(&agents, &operator, &admin, &revisions[1], Some(think))
                .await;
            println!(
                "{name}: paced done in {:.2} s ({:.0} reports/s)",
                r.elapsed.as_secs_f64(),
                r.reports_per_sec()
            );
            Some(r)
        }
        None => None,
    };
    Outcome {
        name,
        enroll,
        burst,
        paced,
        cpu: (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        rss_kib: coords.iter().map(Coordinator::peak_rss_kib).collect(),
    }
}

/// One line of the table: a label, a cell per configuration, the target.
struct Row {
    label: String,
    cells: Vec<String>,
    target: &'static str,
}

fn row(label: impl Into<String>, cells: Vec<String>, target: &'static str) -> Row {
    Row {
        label: label.into(),
        cells,
        target,
    }
}

/// Cells of `values` (one per configuration), the others with their ratio to the first (the SQLite baseline).
fn with_ratio(values: &[f64], show: impl Fn(f64) -> String) -> Vec<String> {
    let base = values.first().copied().unwrap_or(0.0);
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i == 0 || base == 0.0 {
                show(v)
            } else {
                format!("{} ({:.2}x)", show(v), v / base)
            }
        })
        .collect()
}

fn secs(v: f64) -> String {
    format!("{v:.2} s")
}

fn millis(v: f64) -> String {
    ms(Duration::from_secs_f64(v / 1000.0))
}

/// A quantile of sorted samples, in milliseconds.
fn q_ms(sorted: &[Duration], q: f64) -> f64 {
    quantile(sorted, q).as_secs_f64() * 1000.0
}

/// Rows for one phase's deployments (one per configuration).
fn phase_rows(rows: &mut Vec<Row>, runs: &[&DeployRun], phase: &str, paced: bool) {
    let of = |f: &dyn Fn(&DeployRun) -> f64| runs.iter().map(|r| f(r)).collect::<Vec<f64>>();
    rows.push(row(
        format!("{phase}: completion time"),
        with_ratio(&of(&|r| r.elapsed.as_secs_f64()), secs),
        "all three complete",
    ));
    rows.push(row(
        format!("{phase}: step reports/s"),
        with_ratio(&of(&DeployRun::reports_per_sec), |v| format!("{v:.0}")),
        if paced { "" } else { "(c) >= 10000" },
    ));
    rows.push(row(
        format!("{phase}: reports sent again after an error"),
        runs.iter().map(|r| r.errors.to_string()).collect(),
        "0",
    ));
    for (q, name, target) in [(0.5, "p50", ""), (0.99, "p99", "< 10 ms"), (1.0, "max", "")] {
        rows.push(row(
            format!("{phase}: dispatch {name}"),
            with_ratio(&of(&|r| q_ms(&r.dispatch, q)), millis),
            target,
        ));
    }
    rows.push(row(
        format!("{phase}: first command p50 / p99"),
        runs.iter()
            .map(|r| {
                format!(
                    "{} / {}",
                    millis(q_ms(&r.first, 0.5)),
                    millis(q_ms(&r.first, 0.99))
                )
            })
            .collect(),
        "",
    ));
}

fn print_table(n: usize, rate: u64, results: &[Outcome]) {
    let mut rows = Vec::new();
    rows.push(row(
        format!("setup: enroll {n} agents"),
        with_ratio(
            &results
                .iter()
                .map(|r| r.enroll.as_secs_f64())
                .collect::<Vec<_>>(),
            secs,
        ),
        "",
    ));
    let bursts: Vec<&DeployRun> = results.iter().map(|r| &r.burst).collect();
    phase_rows(&mut rows, &bursts, "burst", false);
    rows.push(row(
        "burst: CPU s coordinators / postgres / agents",
        results
            .iter()
            .map(|r| {
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    r.cpu.0.as_secs_f64(),
                    r.cpu.1.as_secs_f64(),
                    r.cpu.2.as_secs_f64()
                )
            })
            .collect(),
        "",
    ));
    let paced: Vec<&DeployRun> = results.iter().filter_map(|r| r.paced.as_ref()).collect();
    if !paced.is_empty() && paced.len() == results.len() {
        phase_rows(&mut rows, &paced, &format!("paced {rate}/s"), true);
    }
    rows.push(row(
        "coordinator peak RSS (each)",
        results
            .iter()
            .map(|r| {
                r.rss_kib
                    .iter()
                    .map(|k| format!("{} MiB", k / 1024))
                    .collect::<Vec<_>>()
                    .join(" + ")
            })
            .collect(),
        "",
    ));

    let reports = results.first().map(|r| r.burst.reports).unwrap_or(0);
    println!();
    println!(
        "scale on both backends: {n} simulated agents, all-at-once deployments of 7 no-op steps each ({reports} step \
         reports per deployment); baseline (a); (x.xx) = ratio to (a)"
    );
    let label_w = rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
    let mut col_w: Vec<usize> = results.iter().map(|r| r.name.len()).collect();
    for r in &rows {
        for (w, c) in col_w.iter_mut().zip(&r.cells) {
            *w = (*w).max(c.len());
        }
    }
    let mut header = format!("| {:label_w$} |", "");
    for (r, w) in results.iter().zip(&col_w) {
        header.push_str(&format!(" {:w$} |", r.name));
    }
    header.push_str(" target |");
    println!("{header}");
    let mut rule = format!("|{}|", "-".repeat(label_w + 2));
    for w in &col_w {
        rule.push_str(&format!("{}|", "-".repeat(w + 2)));
    }
    rule.push_str("---|");
    println!("{rule}");
    for r in &rows {
        let mut line = format!("| {:label_w$} |", r.label);
        for (c, w) in r.cells.iter().zip(&col_w) {
            line.push_str(&format!(" {c:w$} |"));
        }
        line.push_str(&format!(" {} |", r.target));
        println!("{line}");
    }
}
