//! Shared bench harness: the coordinator runs as a child process (this bench binary re-executed with
//! `ROLLCAGE_BENCH_SERVE=<data dir>`), and simulated agents speak the real HTTP protocol to it.
#![allow(dead_code, reason = "each bench uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench harness: a failure aborts the run loudly"
)]

use rollcage_client::Client;
use rollcage_proto::wire::{
    CreateApplication, CreateDeployment, CreateGroup, Deployment, DeploymentStatus,
    DeploymentStyle, EnrollRequest, PollRequest, StepCommand, StepOutcome, StepReport,
};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bench binaries are run by hand (`cargo bench`), never as part of a test command: cargo passes `--bench` to a
/// `harness = false` bench under `cargo bench`, and nothing when a test run (`cargo test --all-targets`, `--benches`)
/// builds and starts it in test mode. Without it, say so and exit successfully.
pub fn exit_unless_bench_mode() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "a benchmark: run it with `cargo bench -p rollcage-coordinator --bench NAME` (skipped in test mode)"
        );
        std::process::exit(0);
    }
}

/// The environment through which the bench hands the coordinator child its settings (see [`Serve`]).
const ENV_SERVE: &str = "ROLLCAGE_BENCH_SERVE";
const ENV_DATABASE: &str = "ROLLCAGE_BENCH_DATABASE";
const ENV_TOKENS_FROM: &str = "ROLLCAGE_BENCH_TOKENS_FROM";
const ENV_MAX_CONNECTIONS: &str = "ROLLCAGE_BENCH_MAX_CONNECTIONS";
const ENV_HEARTBEAT_DEADLINE_S: &str = "ROLLCAGE_BENCH_HEARTBEAT_DEADLINE_S";

/// If this process is the coordinator child, serve and never return.
pub fn maybe_serve() {
    let Ok(data) = std::env::var(ENV_SERVE) else {
        return;
    };
    // The coordinator's log (RUST_LOG, `warn` by default) on the bench's stderr: errors behind a 5xx show there.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cfg = rollcage_coordinator::ServerConfig::loopback(data.into());
        cfg.database = std::env::var(ENV_DATABASE).ok();
        if let Ok(dir) = std::env::var(ENV_TOKENS_FROM) {
            let dir = std::path::PathBuf::from(dir);
            cfg.admin_token_file = Some(dir.join("admin-token"));
            cfg.enroll_token_file = Some(dir.join("enroll-token"));
        }
        if let Some(s) = std::env::var(ENV_HEARTBEAT_DEADLINE_S)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            cfg.settings.heartbeat_deadline = Duration::from_secs(s);
        }
        if let Some(n) = std::env::var(ENV_MAX_CONNECTIONS)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            cfg.limits.max_connections = n;
        }
        rollcage_coordinator::serve(cfg, |r| println!("ADDR {}", r.addr))
            .await
            .unwrap();
    });
    std::process::exit(0);
}

/// How a coordinator child is started; the default is the plain loopback coordinator on SQLite.
#[derive(Debug, Default, Clone)]
pub struct Serve {
    /// A PostgreSQL URL (`None`: SQLite in the child's data dir).
    pub database: Option<String>,
    /// The data dir of another coordinator of the same database, whose admin and enrollment token files this one
    /// is given (`--admin-token-file`, `--enroll-token-file`), so both accept the same tokens.
    pub tokens_from: Option<PathBuf>,
    /// The connection cap (`ConnLimits::max_connections`); `None` keeps the default.
    pub max_connections: Option<usize>,
    /// The lost-agent sweeper's deadline (`Settings::heartbeat_deadline`); `None` keeps the default (60 s).
    pub heartbeat_deadline: Option<Duration>,
}

/// The coordinator child.
pub struct Coordinator {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: String,
    pub enroll: String,
    pub _data: tempfile::TempDir,
}

impl Coordinator {
    pub fn spawn() -> Self {
        Self::spawn_with(&Serve::default())
    }

    pub fn spawn_with(serve: &Serve) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ENV_SERVE, data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = &serve.database {
            cmd.env(ENV_DATABASE, url);
        }
        if let Some(dir) = &serve.tokens_from {
            cmd.env(ENV_TOKENS_FROM, dir);
        }
        if let Some(d) = serve.heartbeat_deadline {
            cmd.env(ENV_HEARTBEAT_DEADLINE_S, d.as_secs().to_string());
        }
        if let Some(n) = serve.max_connections {
            cmd.env(ENV_MAX_CONNECTIONS, n.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("ADDR ")
            .unwrap_or_else(|| panic!("coordinator child did not start: {line:?}"))
            .parse()
            .unwrap();
        let read = |f: &str| {
            std::fs::read_to_string(data.path().join(f))
                .unwrap()
                .trim()
                .to_owned()
        };
        let (admin, enroll) = match &serve.tokens_from {
            Some(dir) => {
                let read = |f: &str| {
                    std::fs::read_to_string(dir.join(f))
                        .unwrap()
                        .trim()
                        .to_owned()
                };
                (read("admin-token"), read("enroll-token"))
            }
            None => (read("admin-token"), read("enroll-token")),
        };
        Self {
            child,
            addr,
            admin,
            enroll,
            _data: data,
        }
    }

    /// Its data dir (token files, bundles, the SQLite database).
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// Peak resident set size of the coordinator (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the coordinator used so far (user + system).
    pub fn cpu(&self) -> Duration {
        cpu_of(self.child.id())
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) process `pid` used so far, from `/proc/PID/stat`; zero when it cannot be read.
pub fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces, so split after its closing parenthesis): utime and
    // stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_sec())
}

/// CPU time used so far by process `pid` and its living children (PostgreSQL: the postmaster and its backends).
pub fn cpu_of_tree(pid: u32) -> Duration {
    let mut total = cpu_of(pid);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')').and_then(|(_, r)| {
                        r.split_whitespace()
                            .nth(1)
                            .and_then(|p| p.parse::<u32>().ok())
                    })
                });
            if ppid == Some(pid) {
                total += cpu_of(child);
            }
        }
    }
    total
}

/// `/proc` counts CPU time in USER_HZ ticks, which the kernel fixes at 100 per second on every architecture we run.
fn clock_ticks_per_sec() -> f64 {
    100.0
}

/// CPU time (user + system) this process used so far (the simulated agents and the operator's calls).
pub fn cpu_self() -> Duration {
    cpu_of(std::process::id())
}

/// The simulated agents' and the operator's calls, through the typed client over one shared connection pool.
#[derive(Clone)]
pub struct Http {
    client: Client,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::new(&format!("http://{addr}"), None, None).unwrap(),
        }
    }

    /// The shared pool, calling with `token`.
    fn as_(&self, token: &str) -> Client {
        self.client.with_token(Some(token.to_owned()))
    }

    pub async fn enroll(&self, enroll_token: &str, name: &str) -> String {
        let req = EnrollRequest {
            name: name.to_owned(),
            tags: Default::default(),
        };
        self.as_(enroll_token).enroll(&req).await.unwrap().token
    }

    pub async fn poll(&self, token: &str, wait_ms: u64) -> Option<StepCommand> {
        let req = PollRequest {
            wait_ms: Some(wait_ms),
        };
        self.as_(token).poll(&req).await.unwrap().command
    }

    /// Report a no-op success; returns the next command.
    pub async fn report_ok(&self, token: &str, cmd: &StepCommand) -> Option<StepCommand> {
        self.try_report_ok(token, cmd).await.unwrap()
    }

    /// [`Http::report_ok`], returning the coordinator's or the transport's error.
    pub async fn try_report_ok(
        &self,
        token: &str,
        cmd: &StepCommand,
    ) -> Result<Option<StepCommand>, rollcage_client::ClientError> {
        let report = StepReport {
            command_id: cmd.command_id,
            outcome: StepOutcome::Succeeded,
            message: String::new(),
            hooks: vec![],
            duration_ms: 0,
            log: None,
        };
        Ok(self.as_(token).report(&report).await?.command)
    }

    /// Create app `app`, a group of `instances` with `concurrency`, and upload `revisions` distinct bundles.
    pub async fn setup(
        &self,
        admin: &str,
        instances: &[String],
        concurrency: &str,
        revisions: usize,
    ) -> Vec<String> {
        let admin = self.as_(admin);
        admin
            .create_application(&CreateApplication { name: "app".into() })
            .await
            .unwrap();
        let group = CreateGroup {
            name: "web".into(),
            style: DeploymentStyle::InPlace,
            concurrency: concurrency.parse().unwrap(),
            failure_tolerance: 0,
            auto_rollback: false,
            instances: instances.to_vec(),
            tags: Default::default(),
            form: None,
            lb: None,
            webhooks: Vec::new(),
            webhook_secret: None,
        };
        admin.create_group("app", &group).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..revisions {
            let rev = admin
                .upload_revision("app", format!("bundle {i}").into_bytes())
                .await
                .unwrap();
            ids.push(rev.id);
        }
        ids
    }

    pub async fn deploy(&self, admin: &str, revision: &str) -> String {
        let req = CreateDeployment {
            application: "app".into(),
            group: "web".into(),
            revision: revision.to_owned(),
            form: None,
            ignore_application_stop_failures: false,
            file_exists_behavior: None,
            description: None,
        };
        self.as_(admin).create_deployment(&req).await.unwrap().id
    }

    pub async fn deployment(&self, admin: &str, id: &str) -> Deployment {
        self.as_(admin).get_deployment(id).await.unwrap()
    }
}

/// The simulated agents' count from `ROLLCAGE_BENCH_AGENTS`, or `default`.
pub fn agent_count(default: usize) -> usize {
    std::env::var("ROLLCAGE_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Raise this process's open-file limit to the hard limit (each simulated agent holds a connection, one
/// descriptor), and fail loudly when `needed` descriptors still do not fit.
pub fn raise_fd_limit(needed: u64) {
    let limit = rollcage_coordinator::server::conn::raise_fd_limit().unwrap_or(0);
    assert!(
        limit >= needed,
        "open-file limit {limit} is below the {needed} this run needs: raise the hard limit (`ulimit -Hn`)"
    );
}

/// One simulated agent: its token, and the coordinator it talks to.
#[derive(Clone)]
pub struct SimAgent {
    pub http: Http,
    pub token: String,
}

/// Enroll `names` through `http`, 100 at a time; their tokens, in order.
pub async fn enroll_all(http: &Http, enroll_token: &str, names: &[String]) -> Vec<String> {
    let mut tokens = Vec::with_capacity(names.len());
    for chunk in names.chunks(100) {
        let futs = chunk.iter().map(|name| http.enroll(enroll_token, name));
        tokens.extend(futures_util::future::join_all(futs).await);
    }
    tokens
}

/// Agents opening their connection at once, at the start of [`run_deployment`].
const CONNECTS_AT_ONCE: usize = 200;

/// What one deployment driven by simulated agents measured.
#[derive(Debug, Clone, Default)]
pub struct DeployRun {
    /// From the deployment's creation being sent to the last agent's last report answered.
    pub elapsed: Duration,
    /// Step reports answered.
    pub reports: u64,
    /// Reports answered with an error (a 5xx, a transport failure) and sent again.
    pub errors: u64,
    /// Dispatch latency, sorted: a step report sent → its answer, which carries the agent's next command,
    /// received. (A report that ends the agent's work carries none and is not a sample.)
    pub dispatch: Vec<Duration>,
    /// Sorted: the deployment's creation sent → each agent's first command received (its long poll woken).
    pub first: Vec<Duration>,
}

impl DeployRun {
    /// Step reports per second over the whole deployment.
    pub fn reports_per_sec(&self) -> f64 {
        self.reports as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Run one deployment of `revision` (application `app`, group `web`, see [`Http::setup`]) with simulated agents.
/// Every agent first makes one empty poll (so its connection is open before the clock starts), then waits in a
/// long poll; once all wait, the deployment is created through `operator`. Each agent reports every command it
/// gets a no-op success until no command follows; with `think`, it first pauses a random time in 0..2×`think`
/// (the hook's run), so the agents offer about `agents / think` reports per second instead of all they can.
pub async fn run_deployment(
    agents: &[SimAgent],
    operator: &Http,
    admin: &str,
    revision: &str,
    think: Option<Duration>,
) -> DeployRun {
    let ready = Arc::new(AtomicUsize::new(0));
    // Connections are opened a few hundred at a time: 10,000 connects at once overflow the listen backlog, and
    // the dropped SYNs come back only after the kernel's retransmission back-off (seconds), past the connect
    // deadline. Each agent's long poll then reuses the connection its empty poll left idle in the pool.
    let connecting = Arc::new(tokio::sync::Semaphore::new(CONNECTS_AT_ONCE));
    let mut tasks = Vec::with_capacity(agents.len());
    for agent in agents {
        let (agent, ready, connecting) = (agent.clone(), ready.clone(), connecting.clone());
        tasks.push(tokio::spawn(async move {
            {
                let _permit = connecting.acquire().await.unwrap();
                let _ = agent.http.poll(&agent.token, 0).await;
            }
            ready.fetch_add(1, Ordering::Relaxed);
            let mut cmd = loop {
                if let Some(c) = agent.http.poll(&agent.token, 20_000).await {
                    break c;
                }
            };
            let first = Instant::now();
            let mut samples = Vec::with_capacity(8);
            let mut reports = 0u64;
            let mut errors = 0u64;
            loop {
                if let Some(think) = think {
                    let max = u64::try_from(think.as_micros() * 2)
                        .unwrap_or(u64::MAX)
                        .max(1);
                    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..max))).await;
                }
                // Like a real agent (its outbox), a report answered with an error is sent again; the latency
                // counts from the first attempt.
                let t = Instant::now();
                let next = loop {
                    match agent.http.try_report_ok(&agent.token, &cmd).await {
                        Ok(next) => break next,
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("a report failed (sent again in 100 ms): {e}");
                            }
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                };
                reports += 1;
                match next {
                    Some(c) => {
                        samples.push(t.elapsed());
                        cmd = c;
                    }
                    None => break,
                }
            }
            (first, samples, reports, errors)
        }));
    }
    while ready.load(Ordering::Relaxed) < agents.len() {
        // An agent that failed (its task panicked) never gets ready: stop waiting, its panic is reported below.
        if tasks.iter().any(tokio::task::JoinHandle::is_finished) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The long polls were sent right after the counter moved; let them reach the coordinators.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(failed) = tasks.iter().position(tokio::task::JoinHandle::is_finished) {
        let e = tasks.swap_remove(failed).await.err();
        panic!("simulated agent {failed} failed before the deployment started: {e:?}");
    }
    let t0 = Instant::now();
    let id = operator.deploy(admin, revision).await;
    let mut run = DeployRun::default();
    for task in tasks {
        let (first, samples, reports, errors) = task.await.unwrap();
        run.errors += errors;
        run.first.push(first.saturating_duration_since(t0));
        run.dispatch.extend(samples);
        run.reports += reports;
    }
    run.elapsed = t0.elapsed();
    let d = operator.deployment(admin, &id).await;
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    run.dispatch.sort();
    run.first.sort();
    run
}

/// The q-quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
