//! Benchmark: the built-in load balancer against HAProxy on the same backends with the same load generator.
//!
//! Two tiny hyper backends run in this process; HAProxy (`haproxy -db -f <config>`, round robin) and the
//! built-in load balancer run as separate processes (the latter is this binary re-executed with
//! `ROLLCAGE_LB_BENCH_CHILD=1`), each with two threads. An in-process load generator keeps a fixed number of
//! keep-alive connections busy for a fixed time against each proxy in turn, interleaving the runs, and prints
//! throughput and p99 latency per run, their medians and the ratio built-in / HAProxy (target ≥ 0.5).
//!
//! Two modes, each its own set of interleaved rounds:
//! - **round robin**: one group of both backends (issue 5's comparison);
//! - **weighted 50/50 + windows**: one backend per group, half of the requests on each by weight — the
//!   built-in LB's split (`PUT /v1/services/weighted/split`) with its windowed histograms cut every second
//!   through the admin API as a canary analysis would, HAProxy's `rand()`-against-map rule that
//!   `rollcage-lbdriver` drives (`weighted.weight 50` in the map). Target ≥ 0.6× HAProxy's throughput.
//!
//! Run: `cargo bench -p rollcage-lb --bench vs_haproxy` (needs `haproxy` on PATH: `apt-get install haproxy`).
//! Knobs (environment): `BENCH_SECS` (5), `BENCH_ROUNDS` (3), `BENCH_CONCURRENCY` (32).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rollcage_lb::api::Weight;
use rollcage_lb::client::AdminClient;
use rollcage_lb::{GroupSeed, LbConfig, ServiceSeed, Settings};
use std::convert::Infallible;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CHILD_ENV: &str = "ROLLCAGE_LB_BENCH_CHILD";
const BACKENDS_ENV: &str = "ROLLCAGE_LB_BENCH_BACKENDS";
const TOKEN: &str = "bench-token-0123456789abcdef";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), BoxError> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return run_child();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_parent())
}

/// The built-in load balancer as its own process, with two worker threads like HAProxy's `nbthread`.
fn run_child() -> Result<(), BoxError> {
    let backends: Vec<String> = std::env::var(BACKENDS_ENV)?
        .split(',')
        .map(str::to_owned)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let lb = rollcage_lb::start(LbConfig {
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: TOKEN.to_owned(),
            settings: Settings::default(),
            groups: vec![
                GroupSeed {
                    name: "bench".to_owned(),
                    health_check: None,
                    servers: backends.clone(),
                },
                GroupSeed {
                    name: "blue".to_owned(),
                    health_check: None,
                    servers: backends.first().cloned().into_iter().collect(),
                },
                GroupSeed {
                    name: "green".to_owned(),
                    health_check: None,
                    servers: backends.get(1).cloned().into_iter().collect(),
                },
            ],
            services: vec![
                ServiceSeed {
                    name: "bench".to_owned(),
                    listen: "127.0.0.1:0".to_owned(),
                    group: "bench".to_owned(),
                },
                ServiceSeed {
                    name: "weighted".to_owned(),
                    listen: "127.0.0.1:0".to_owned(),
                    group: "blue".to_owned(),
                },
            ],
        })
        .await?;
        let listen = lb.service_addr("bench").ok_or("service not bound")?;
        let weighted = lb.service_addr("weighted").ok_or("service not bound")?;
        println!("READY {} {} {}", lb.admin_addr(), listen, weighted);
        std::io::stdout().flush()?;
        // Runs until the parent closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        lb.shutdown().await;
        Ok::<_, BoxError>(())
    })
}

/// Kills the child process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_backend() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_haproxy(
    dir: &std::path::Path,
    backends: &[SocketAddr],
) -> Result<(Proc, SocketAddr, SocketAddr), BoxError> {
    let port = free_port()?;
    let weighted_port = free_port()?;
    let (Some(b0), Some(b1)) = (backends.first(), backends.get(1)) else {
        return Err("two backends expected".into());
    };
    let map = dir.join("bluegreen.map");
    std::fs::write(
        &map,
        "weighted bk_blue\nweighted.canary bk_green\nweighted.weight 50\n",
    )?;
    let map = map.display();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server s{i} {a} check inter 1s\n"))
        .collect();
    // maxconn 4000 keeps HAProxy within the usual 20000-descriptor limit (it needs 2 per connection).
    // Same shape as the built-in one: keep-alive both sides, round robin, HTTP health checks, 2 threads.
    let cfg = format!(
        "global\n    nbthread 2\n    maxconn 4000\n\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         \x20   option http-keep-alive\n\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend bk\n\n\
         backend bk\n    balance roundrobin\n    option httpchk GET /\n{servers}\n\
         frontend fe_weighted\n    bind 127.0.0.1:{weighted_port}\n\
         \x20   http-request set-var(txn.canary_weight) str(weighted.weight),map({map},0)\n\
         \x20   use_backend %[str(weighted.canary),map({map})] if {{ rand(100),sub(txn.canary_weight) lt 0 }}\n\
         \x20   use_backend %[str(weighted),map({map},bk_blue)]\n\n\
         backend bk_blue\n    option httpchk GET /\n    server s0 {b0} check inter 1s\n\n\
         backend bk_green\n    option httpchk GET /\n    server s1 {b1} check inter 1s\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg)?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?)
        .spawn()
        .map_err(|e| format!("cannot start haproxy (apt-get install haproxy): {e}"))?;
    Ok((
        Proc(child),
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([127, 0, 0, 1], weighted_port)),
    ))
}

/// The built-in LB process: its admin API, the round-robin service and the weighted one.
type Builtin = (Proc, SocketAddr, SocketAddr, SocketAddr);

fn start_builtin(backends: &[SocketAddr]) -> Result<Builtin, BoxError> {
    let list: Vec<String> = backends.iter().map(|a| a.to_string()).collect();
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, "1")
        .env(BACKENDS_ENV, list.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some("READY"), Some(admin), Some(listen), Some(weighted)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("built-in LB did not start: `{line}`").into());
    };
    Ok((proc, admin.parse()?, listen.parse()?, weighted.parse()?))
}

/// Waits until `addr` answers GET / with 200.
async fn wait_ready(addr: SocketAddr) -> Result<(), BoxError> {
    let start = Instant::now();
    loop {
        if let Ok(status) = one_get(addr).await
            && status == 200
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(15) {
            return Err(format!("{addr} not ready after 15 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn one_get(addr: SocketAddr) -> Result<u16, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "bench")
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// Result of one load run.
#[derive(Debug, Clone, Copy)]
struct RunResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// `concurrency` keep-alive connections, each sending GET / back to back for `secs`.
async fn load(addr: SocketAddr, concurrency: usize, secs: u64) -> RunResult {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut lat_us: Vec<u32> = Vec::with_capacity(64 * 1024);
            let mut errors = 0u64;
            'conn: while Instant::now() < deadline {
                let Ok(stream) = TcpStream::connect(addr).await else {
                    errors += 1;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut send, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    errors += 1;
                    continue;
                };
                tokio::spawn(conn);
                while Instant::now() < deadline {
                    let Ok(req) = Request::get("/")
                        .header("host", "bench")
                        .body(Empty::<Bytes>::new())
                    else {
                        errors += 1;
                        break 'conn;
                    };
                    let t = Instant::now();
                    let ok = match send.send_request(req).await {
                        Ok(resp) => {
                            resp.status().is_success() && resp.into_body().collect().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if !ok {
                        errors += 1;
                        continue 'conn;
                    }
                    lat_us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
            (lat_us, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[idx.min(all.len() - 1)]) / 1000.0
    };
    RunResult {
        rps: all.len() as f64 / secs as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

async fn run_parent() -> Result<(), BoxError> {
    let secs = env_num("BENCH_SECS", 5);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let concurrency = env_num("BENCH_CONCURRENCY", 32) as usize;
    let version = Command::new("haproxy")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_else(|e| format!("haproxy not runnable: {e}"));

    let backends = vec![start_backend().await?, start_backend().await?];
    let dir = tempfile::tempdir()?;
    let (haproxy, haproxy_addr, haproxy_weighted) = start_haproxy(dir.path(), &backends)?;
    let (builtin, admin_addr, builtin_addr, builtin_weighted) = start_builtin(&backends)?;
    let admin = AdminClient::new(admin_addr, TOKEN);
    for (group, b) in [
        ("bench", backends[0]),
        ("bench", backends[1]),
        ("blue", backends[0]),
        ("green", backends[1]),
    ] {
        admin
            .register_and_wait(group, &b.to_string(), Duration::from_secs(10))
            .await?;
    }
    admin
        .set_split("weighted", "green", Weight::new(50)?)
        .await?;
    for addr in [haproxy_addr, haproxy_weighted] {
        if let Err(e) = wait_ready(addr).await {
            let log = std::fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default();
            return Err(format!("haproxy: {e}; its output:\n{log}").into());
        }
    }
    wait_ready(builtin_addr).await?;
    wait_ready(builtin_weighted).await?;

    println!(
        "vs_haproxy: {} backends, concurrency {concurrency}, {secs} s per run, {rounds} rounds interleaved",
        backends.len()
    );
    println!("baseline: {version} (nbthread 2); built-in: rollcage-lb (2 worker threads)");
    // Warm-up: connection pools, caches, CPU frequency.
    for addr in [
        haproxy_addr,
        builtin_addr,
        haproxy_weighted,
        builtin_weighted,
    ] {
        load(addr, concurrency, 1).await;
    }

    let modes = [
        ("round robin", haproxy_addr, builtin_addr, 0.5, false),
        (
            "weighted 50/50 + windows",
            haproxy_weighted,
            builtin_weighted,
            0.6,
            true,
        ),
    ];
    for (mode, haproxy_at, builtin_at, target, windows) in modes {
        println!("mode: {mode}");
        let first = if windows {
            Some(admin.cut_window(None).await?)
        } else {
            None
        };
        let (mut h, mut b) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order: [(&str, SocketAddr); 2] = if round % 2 == 0 {
                [("haproxy", haproxy_at), ("builtin", builtin_at)]
            } else {
                [("builtin", builtin_at), ("haproxy", haproxy_at)]
            };
            for (name, addr) in order {
                // The analysis a canary runs: one window cut a second while the load runs.
                let cutter = (windows && name == "builtin").then(|| {
                    let admin = admin.clone();
                    tokio::spawn(async move {
                        let end = Instant::now() + Duration::from_secs(secs);
                        let mut cuts = 0u64;
                        while Instant::now() < end {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if admin.cut_window(None).await.is_ok() {
                                cuts += 1;
                            }
                        }
                        cuts
                    })
                });
                let r = load(addr, concurrency, secs).await;
                let cuts = match cutter {
                    Some(t) => format!("  windows cut {}", t.await.unwrap_or(0)),
                    None => String::new(),
                };
                println!(
                    "round {}: {name:8} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}{cuts}",
                    round + 1,
                    r.rps,
                    r.p50_ms,
                    r.p99_ms,
                    r.errors
                );
                if name == "haproxy" {
                    h.push(r)
                } else {
                    b.push(r)
                }
            }
        }
        let med = |v: &[RunResult], f: fn(&RunResult) -> f64| median(v.iter().map(f).collect());
        let (h_rps, b_rps) = (med(&h, |r| r.rps), med(&b, |r| r.rps));
        let (h_p99, b_p99) = (med(&h, |r| r.p99_ms), med(&b, |r| r.p99_ms));
        println!("median  : haproxy  {h_rps:>9.0} req/s  p99 {h_p99:>6.2} ms");
        println!("median  : builtin  {b_rps:>9.0} req/s  p99 {b_p99:>6.2} ms");
        println!(
            "ratio builtin/haproxy ({mode}): throughput {:.2}x (target >= {target:.2}x), p99 latency {:.2}x",
            b_rps / h_rps,
            b_p99 / h_p99
        );
        if let Some(first) = first {
            // Everything the built-in LB counted since the mode began, by group: the split at work.
            let all = admin.cut_window(Some((&first.lb, first.id))).await?;
            let count = |g: &str| {
                all.groups
                    .iter()
                    .find(|x| x.group == g)
                    .map_or(0, |x| x.figures.requests)
            };
            let (blue, green) = (count("blue"), count("green"));
            let p99 = |g: &str| {
                all.groups
                    .iter()
                    .find(|x| x.group == g)
                    .and_then(|x| x.figures.latency.p99_or_average_ms())
                    .unwrap_or(f64::NAN)
            };
            println!(
                "builtin windows: blue {blue} requests (p99 {:.2} ms), green {green} (p99 {:.2} ms): {:.1} % on green",
                p99("blue"),
                p99("green"),
                green as f64 * 100.0 / (blue + green).max(1) as f64
            );
        }
        let errors: u64 = h.iter().chain(&b).map(|r| r.errors).sum();
        if errors > 0 {
            println!("warning: {errors} failed requests during the runs");
        }
    }
    drop(builtin);
    drop(haproxy);
    Ok(())
}
