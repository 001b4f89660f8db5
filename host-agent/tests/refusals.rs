//! The agent against a coordinator that refuses: a report refused as malformed is re-sent reduced and the deployment
//! ends; a report refused even reduced is kept in the journal and sent again later (the agent neither drops it nor
//! spins); a report far over the coordinator's body limit reaches it in wire form; a refused token is set aside and
//! the agent either enrolls again (with its enrollment token) or stops with its distinct exit code; a report that
//! every coordinator of the agent's list fails stays in the journal and reaches the first that takes it.
//!
//! The refusals come from a small proxy between the agent and a real coordinator (in-process, on loopback), so these
//! tests do not depend on how the coordinator itself bounds reports or enrollments.

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_agent::daemon::{AgentError, AgentLoop};
use rollcage_agent::executor::{BoxFuture, StepExecutor};
use rollcage_agent::journal::{EntryState, Journal};
use rollcage_client::Client;
use rollcage_proto::wire::{DeploymentStatus, EnrollRequest, StepCommand, StepOutcome, StepReport};
use rollcage_proto::{HookOutcome, HookStatus, LifecycleEvent};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{TestResult, coordinator, enrolled, loop_config, probe_command};

// ---------------------------------------------------------------------------------------------------------------
// A coordinator, and a proxy in front of it.

/// A plain tar revision with an empty AppSpec: every step of it succeeds on a host.
fn archive() -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let spec = b"version: 0.0\nos: linux\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(spec.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "appspec.yml", &spec[..])?;
    tar.into_inner()
}

/// One report the proxy saw, and the status it answered.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    report: StepReport,
    status: u16,
}

/// Decides whether the proxy refuses a report (with which status) instead of forwarding it.
type Rule = Box<dyn Fn(&StepReport, &[Seen]) -> Option<u16> + Send + Sync>;

struct Proxy {
    upstream: Mutex<String>,
    rule: Mutex<Option<Rule>>,
    seen: Mutex<Vec<Seen>>,
    http: HttpClient<HttpConnector, Full<bytes_of::Bytes>>,
}

/// `bytes::Bytes` without a direct dependency: axum's re-export.
mod bytes_of {
    pub use axum::body::Bytes;
}

impl Proxy {
    async fn start(upstream: &str) -> TestResult<(Arc<Self>, String)> {
        let proxy = Arc::new(Self {
            upstream: Mutex::new(upstream.to_owned()),
            rule: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((proxy, format!("http://{addr}")))
    }

    fn refuse(&self, rule: impl Fn(&StepReport, &[Seen]) -> Option<u16> + Send + Sync + 'static) {
        *lock(&self.rule) = Some(Box::new(rule));
    }

    fn forward_all(&self) {
        *lock(&self.rule) = None;
    }

    fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    fn point_at(&self, upstream: &str) {
        *lock(&self.upstream) = upstream.to_owned();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(State(proxy): State<Arc<Proxy>>, req: Request<Body>) -> Response {
    match forward(&proxy, req).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn forward(proxy: &Proxy, req: Request<Body>) -> TestResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let report = (parts.uri.path() == "/v1/agent/reports")
        .then(|| serde_json::from_slice::<StepReport>(&bytes))
        .transpose()?;
    if let Some(report) = &report {
        let refusal = {
            let seen = lock(&proxy.seen);
            lock(&proxy.rule)
                .as_ref()
                .and_then(|rule| rule(report, &seen))
        };
        if let Some(status) = refusal {
            lock(&proxy.seen).push(Seen {
                at: Instant::now(),
                report: report.clone(),
                status,
            });
            let body =
                r#"{"error":{"code":"invalid_request","message":"refused by the test proxy"}}"#;
            return Ok((StatusCode::from_u16(status)?, body).into_response());
        }
    }
    let upstream = lock(&proxy.upstream).clone();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST {
            out = out.header(name, value);
        }
    }
    let resp = proxy.http.request(out.body(Full::new(bytes))?).await?;
    let (rparts, rbody) = resp.into_parts();
    let rbytes = rbody.collect().await?.to_bytes();
    if let Some(report) = report {
        lock(&proxy.seen).push(Seen {
            at: Instant::now(),
            report,
            status: rparts.status.as_u16(),
        });
    }
    Ok(Response::from_parts(rparts, Body::from(rbytes)))
}

// ---------------------------------------------------------------------------------------------------------------
// Executors.

/// Every step succeeds with a report carrying its hook's output (so a reduced report differs from the full one).
#[derive(Clone, Default)]
struct Chatty;

impl StepExecutor for Chatty {
    fn run<'a>(&'a self, cmd: &'a StepCommand) -> BoxFuture<'a, StepReport> {
        Box::pin(async move {
            StepReport {
                command_id: cmd.command_id,
                outcome: StepOutcome::Succeeded,
                message: format!("{} done: {}", cmd.event, "details ".repeat(200)),
                hooks: vec![HookOutcome {
                    location: "scripts/hook.sh".into(),
                    status: HookStatus::Succeeded,
                    duration_ms: 1,
                    log_tail: "the hook's last words\n".repeat(50),
                    warnings: vec!["a warning".into()],
                    capabilities: Vec::new(),
                }],
                duration_ms: 1,
                // The loop fills the step's log from the executor's log file (none here).
                log: None,
            }
        })
    }
}

/// BeforeInstall fails with what a hostile revision makes of a report: a huge message, 60 hooks that each printed
/// 9 KB of control bytes, and all of it in the step's log (JSON-escaped: over 3 MB of hook tails alone, over the
/// coordinator's 2 MB body limit).
#[derive(Clone)]
struct Hostile {
    log: std::path::PathBuf,
}

impl StepExecutor for Hostile {
    fn run<'a>(&'a self, cmd: &'a StepCommand) -> BoxFuture<'a, StepReport> {
        Box::pin(async move {
            if cmd.event != LifecycleEvent::BeforeInstall {
                return StepReport {
                    command_id: cmd.command_id,
                    outcome: StepOutcome::Succeeded,
                    message: String::new(),
                    hooks: vec![],
                    duration_ms: 0,
                    log: None,
                };
            }
            let ctl = "\u{1}".repeat(9 * 1024);
            let written = std::fs::write(&self.log, ctl.repeat(60));
            assert!(written.is_ok(), "{written:?}");
            StepReport {
                command_id: cmd.command_id,
                outcome: StepOutcome::Failed,
                message: format!("cannot unpack `{}`", "n".repeat(8 << 20)),
                hooks: (0..60)
                    .map(|i| HookOutcome {
                        location: format!("scripts/{i}.sh"),
                        status: HookStatus::Failed { exit_code: 1 },
                        duration_ms: 1,
                        log_tail: ctl.clone(),
                        warnings: vec![],
                        capabilities: Vec::new(),
                    })
                    .collect(),
                duration_ms: 1,
                log: None,
            }
        })
    }

    fn log_file(&self, _cmd: &StepCommand) -> Option<std::path::PathBuf> {
        Some(self.log.clone())
    }
}

/// A report with its hooks' output (as [`Chatty`] makes them), not reduced.
fn is_full(r: &StepReport) -> bool {
    r.hooks.iter().any(|h| !h.log_tail.is_empty())
}

type Running = tokio::task::JoinHandle<Result<(), String>>;

fn start<E: StepExecutor + 'static>(client: Client, journal: Journal, exec: E) -> Running {
    let agent = AgentLoop::new(client, journal, exec, loop_config());
    tokio::spawn(async move {
        agent
            .run(tokio::time::sleep(Duration::from_secs(120)))
            .await
            .map_err(|e| e.to_string())
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Reports.

#[tokio::test]
async fn a_report_refused_as_malformed_is_sent_again_reduced_and_the_deployment_ends() -> TestResult
{
    let coord = coordinator(None, None).await?;
    let (proxy, url) = Proxy::start(&coord.base).await?;
    coord.group(&["i1"], false).await?;
    // The first report the coordinator gets is refused as malformed.
    proxy.refuse(|_, seen| seen.is_empty().then_some(400));
    let client = enrolled(&url, &coord.enroll_token, "i1").await?;
    let dir = tempfile::tempdir()?;
    let run = start(client, Journal::open(dir.path())?, Chatty);
    let id = coord.deploy(archive()?).await?;
    let d = coord.wait_end(&id, Duration::from_secs(30)).await?;
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);

    let seen = proxy.seen();
    let (first, second) = (&seen[0], &seen[1]);
    assert_eq!(first.status, 400);
    assert!(is_full(&first.report), "the full report went first");
    assert_eq!(second.status, 200, "then the reduced one was taken");
    assert_eq!(second.report.command_id, first.report.command_id);
    assert_eq!(second.report.outcome, first.report.outcome);
    assert!(!is_full(&second.report), "reduced: no output");
    assert!(
        second.report.message.len() <= rollcage_proto::clip::REDUCED_MESSAGE_BYTES,
        "reduced: a short message ({} bytes)",
        second.report.message.len()
    );
    assert!(
        second.report.hooks.iter().all(|h| h.log_tail.is_empty()),
        "reduced: no hook output"
    );
    // What the coordinator recorded for that step is the reduced message; every later report went whole.
    let step = &d.instances[0].steps[0];
    assert_eq!(step.message, second.report.message);
    assert!(
        seen[2..]
            .iter()
            .all(|s| s.status == 200 && is_full(&s.report))
    );
    Ok(())
}

#[tokio::test]
async fn a_report_every_coordinator_fails_stays_in_the_journal_and_reaches_the_one_that_recovers()
-> TestResult {
    // Two coordinators in front of one database: A answers 503 to every report (its writes fail), B to the
    // first three, then takes them. The agent is given A then B.
    let coord = coordinator(None, None).await?;
    let (a, a_url) = Proxy::start(&coord.base).await?;
    let (b, b_url) = Proxy::start(&coord.base).await?;
    a.refuse(|_, _| Some(503));
    b.refuse(|_, seen| (seen.len() < 3).then_some(503));
    coord.group(&["i1"], false).await?;
    let client = enrolled(&format!("{a_url},{b_url}"), &coord.enroll_token, "i1").await?;
    assert_eq!(client.bases(), [a_url.clone(), b_url.clone()]);
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(dir.path())?;
    let run = start(client.clone(), journal.clone(), Chatty);
    let id = coord.deploy(archive()?).await?;
    let d = coord.wait_end(&id, Duration::from_secs(30)).await?;
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);

    let (at_a, at_b) = (a.seen(), b.seen());
    assert!(at_a.iter().all(|s| s.status == 503), "{at_a:?}");
    let first = &at_a.first().ok_or("no report reached A")?.report;
    // The first report failed on A and on B (three times each way), was kept, and was delivered whole to B.
    assert_eq!(
        at_b.iter().map(|s| s.status).take(4).collect::<Vec<_>>(),
        [503, 503, 503, 200]
    );
    assert!(at_b[..4].iter().all(|s| s.report == *first));
    // Every step's report reached the coordinator through B, once each, and the journal has them acknowledged.
    let mut delivered: Vec<i64> = at_b
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.report.command_id)
        .collect();
    let n = delivered.len();
    delivered.dedup();
    assert_eq!(
        delivered.len(),
        n,
        "no report delivered twice: {delivered:?}"
    );
    assert_eq!(n, d.instances[0].steps.len());
    assert_eq!(client.base(), b_url, "the agent stays on B");
    for step in &d.instances[0].steps {
        let probe = StepCommand {
            deployment_id: id.clone(),
            event: step.event,
            ..probe_command()
        };
        assert!(
            matches!(
                journal.get(&probe)?.map(|e| e.state),
                Some(EntryState::Finished { acked: true, .. })
            ),
            "{:?} acknowledged in the journal",
            step.event
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_report_refused_even_reduced_is_kept_and_sent_again_later_without_spinning() -> TestResult
{
    let coord = coordinator(None, None).await?;
    let (proxy, url) = Proxy::start(&coord.base).await?;
    coord.group(&["i1"], false).await?;
    // Every report of the first step is refused (413), full or reduced.
    let first_cmd: Arc<Mutex<Option<i64>>> = Arc::default();
    let pinned = first_cmd.clone();
    proxy.refuse(move |r, _| {
        let mut first = lock(&pinned);
        (*first.get_or_insert(r.command_id) == r.command_id).then_some(413)
    });
    let client = enrolled(&url, &coord.enroll_token, "i1").await?;
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(dir.path())?;
    let run = start(client, journal.clone(), Chatty);
    let id = coord.deploy(archive()?).await?;

    // For 3 s the coordinator takes nothing: the agent keeps offering the report, full then reduced, backing off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!run.is_finished(), "the agent keeps running");
    let refused = proxy.seen();
    let reduced = refused.iter().filter(|s| !is_full(&s.report)).count();
    let full = refused.len() - reduced;
    assert!(
        full >= 3 && reduced >= 3,
        "offered again and again: {full} full, {reduced} reduced"
    );
    // The loop's backoff is capped at 100 ms here: a spinning agent would send thousands in 3 s.
    assert!(refused.len() <= 120, "{} attempts in 3 s", refused.len());
    assert!(refused.iter().all(|s| s.status == 413));
    let gaps: Vec<Duration> = refused
        .windows(2)
        .filter(|w| is_full(&w[1].report))
        .map(|w| w[1].at - w[0].at)
        .collect();
    eprintln!(
        "refused for 3 s: {full} full and {reduced} reduced offers, longest pause {:?}",
        gaps.iter().max()
    );
    assert!(
        gaps.iter().any(|g| *g >= Duration::from_millis(40)),
        "a pause before each new offer: {gaps:?}"
    );
    // The report is still in the journal, unacknowledged.
    let probe = StepCommand {
        deployment_id: id.clone(),
        event: LifecycleEvent::DownloadBundle,
        ..probe_command()
    };
    assert!(matches!(
        journal.get(&probe)?.map(|e| e.state),
        Some(EntryState::Finished { acked: false, .. })
    ));
    assert_eq!(
        coord.admin.get_deployment(&id).await?.status,
        DeploymentStatus::InProgress
    );

    // Once the coordinator takes it, the deployment goes on to its end.
    proxy.forward_all();
    let d = coord.wait_end(&id, Duration::from_secs(30)).await?;
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    assert!(matches!(
        journal.get(&probe)?.map(|e| e.state),
        Some(EntryState::Finished { acked: true, .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_step_whose_report_can_never_be_delivered_fails_at_the_heartbeat_deadline() -> TestResult
{
    // The agent stays alive and keeps calling, but no report of its first step ever gets through: the coordinator
    // fails the step once the deadline passes without word of it, so the deployment ends.
    let coord = coordinator(None, Some(Duration::from_secs(2))).await?;
    let (proxy, url) = Proxy::start(&coord.base).await?;
    coord.group(&["i1"], false).await?;
    proxy.refuse(|_, _| Some(400));
    let client = enrolled(&url, &coord.enroll_token, "i1").await?;
    let dir = tempfile::tempdir()?;
    let run = start(client, Journal::open(dir.path())?, Chatty);
    let id = coord.deploy(archive()?).await?;
    let d = coord.wait_end(&id, Duration::from_secs(20)).await?;
    assert!(!run.is_finished(), "the agent keeps running");
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    let step = &d.instances[0].steps[0];
    assert!(
        step.message.contains("gave no word of this step"),
        "{}",
        step.message
    );
    assert!(
        proxy.seen().len() >= 2,
        "reports were offered and refused: {}",
        proxy.seen().len()
    );
    Ok(())
}

#[tokio::test]
async fn a_report_far_over_the_body_limit_reaches_the_coordinator_and_the_deployment_ends()
-> TestResult {
    // No proxy: the coordinator's own body limit is the refusal a report used to be dropped for.
    let coord = coordinator(None, None).await?;
    coord.group(&["i1"], false).await?;
    let client = enrolled(&coord.base, &coord.enroll_token, "i1").await?;
    let dir = tempfile::tempdir()?;
    let exec = Hostile {
        log: dir.path().join("scripts.log"),
    };
    let run = start(client, Journal::open(&dir.path().join("journal"))?, exec);
    let id = coord.deploy(archive()?).await?;
    let d = coord.wait_end(&id, Duration::from_secs(30)).await?;
    assert!(!run.is_finished(), "the agent keeps running");
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    let step = d.instances[0]
        .steps
        .iter()
        .find(|s| s.event == LifecycleEvent::BeforeInstall)
        .ok_or("no BeforeInstall step")?;
    assert!(
        step.message.starts_with("cannot unpack `nnn"),
        "{}",
        step.message
    );
    assert!(
        step.message.len() <= rollcage_proto::clip::MAX_MESSAGE_BYTES
            && step.message.ends_with("bytes in all]"),
        "cut with a marker: {} bytes",
        step.message.len()
    );
    Ok(())
}

fn agent_config(url: &str, root: &Path, enroll_token: Option<&str>) -> rollcage_agent::AgentConfig {
    rollcage_agent::AgentConfig {
        coordinators: vec![url.to_owned()],
        root: root.to_owned(),
        name: "i1".into(),
        enroll_token: enroll_token.map(str::to_owned),
        token_file: None,
        vars: vec![],
        tags: Default::default(),
        service_addr: None,
        ca_file: None,
        ca_fingerprint: None,
        trusted_signers: None,
        max_cache_bytes: None,
        loop_config: loop_config(),
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> TestResult {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("{what}: not within 20 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_token_without_an_enrollment_token_stops_the_agent_for_good() -> TestResult {
    let first = coordinator(None, None).await?;
    let (proxy, url) = Proxy::start(&first.base).await?;
    let root = tempfile::tempdir()?;
    let token_file = root.path().join("agent/token");
    // Enrolled before (its own token on disk), started without the enrollment token, as after `agent install`
    // once the enrollment token file was deleted.
    let c = Client::new(&url, Some(first.enroll_token.clone()), None)?;
    let token = c
        .enroll(&EnrollRequest {
            name: "i1".into(),
            tags: Default::default(),
        })
        .await?
        .token;
    std::fs::create_dir_all(root.path().join("agent"))?;
    std::fs::write(&token_file, &token)?;
    let cfg = agent_config(&url, root.path(), None);
    let run = tokio::spawn(rollcage_agent::run_until(
        cfg.clone(),
        tokio::time::sleep(Duration::from_secs(60)),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!run.is_finished(), "running with its token");

    let second = coordinator(None, None).await?;
    proxy.point_at(&second.base);
    let err = tokio::time::timeout(Duration::from_secs(20), run)
        .await??
        .err()
        .ok_or("the agent went on with a refused token")?;
    assert!(matches!(err, AgentError::TokenRefused { .. }), "{err:?}");
    assert_eq!(err.exit_code(), rollcage_agent::EXIT_REFUSED);
    let text = err.to_string();
    assert!(
        text.contains("coordinator refused this agent's token")
            && text.contains("removed or re-enrolled")
            && text.contains("--enroll-token-file"),
        "{text}"
    );
    let aside = root.path().join("agent/token.refused");
    assert!(text.contains(&aside.display().to_string()), "{text}");
    assert!(
        !token_file.exists(),
        "the dead token is not left to be reused"
    );
    assert_eq!(std::fs::read_to_string(&aside)?, token);

    // Started again, it does not try the dead token: it stops at once, saying why.
    let polls_before = proxy.seen().len();
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        rollcage_agent::run_until(cfg, std::future::pending()),
    )
    .await?
    .err()
    .ok_or("started again without a token, it ran")?;
    assert!(matches!(again, AgentError::NoToken { .. }), "{again:?}");
    assert_eq!(again.exit_code(), rollcage_agent::EXIT_REFUSED);
    assert!(
        again.to_string().contains("refused the last one"),
        "{again}"
    );
    assert_eq!(proxy.seen().len(), polls_before);
    drop((first.data, second.data));
    Ok(())
}

#[tokio::test]
async fn a_refused_token_with_an_enrollment_token_enrolls_again_and_goes_on() -> TestResult {
    let first = coordinator(None, None).await?;
    let (proxy, url) = Proxy::start(&first.base).await?;
    let root = tempfile::tempdir()?;
    let cfg = agent_config(&url, root.path(), Some(&first.enroll_token));
    let run = tokio::spawn(rollcage_agent::run_until(
        cfg,
        tokio::time::sleep(Duration::from_secs(60)),
    ));
    let token_file = root.path().join("agent/token");
    wait_for("first enrollment", || token_file.is_file()).await?;
    let old = std::fs::read_to_string(&token_file)?;

    // A coordinator that never heard of the agent, with the same enrollment token.
    let second = coordinator(Some(&first.data.path().join("enroll-token")), None).await?;
    second.group(&["i1"], false).await?;
    proxy.point_at(&second.base);
    wait_for("re-enrollment", || {
        std::fs::read_to_string(&token_file).is_ok_and(|t| t != old)
    })
    .await?;
    assert_eq!(
        std::fs::read_to_string(root.path().join("agent/token.refused"))?,
        old,
        "the refused token was set aside"
    );
    // The agent works for the new coordinator: a deployment runs to its end.
    let id = second.deploy(archive()?).await?;
    let d = second.wait_end(&id, Duration::from_secs(30)).await?;
    assert!(!run.is_finished(), "the agent keeps running");
    run.abort();
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    Ok(())
}
