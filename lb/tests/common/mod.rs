//! Test fixtures: tiny hyper backends that say who they are, a load balancer on 127.0.0.1:0 with fast health
//! checks, a plain HTTP client and a load generator that records every request's outcome.
#![allow(dead_code)] // Each test binary uses a different subset.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rollcage_lb::api::HealthCheckSpec;
use rollcage_lb::client::AdminClient;
use rollcage_lb::{LbConfig, LoadBalancer, Settings};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A backend: `/health` answers 200 or 503 as `healthy` says; `/slow` answers after 500 ms; `/sleep?ms=N`
/// after N ms; `/fail` answers 500; anything else answers after `delay_ms`. Bodies are the backend's name.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    pub hits: Arc<AtomicU64>,
    pub delay_ms: Arc<AtomicU64>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> std::io::Result<Self> {
        Self::start_on(name, "127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (h, c, d, s, n) = (
            healthy.clone(),
            hits.clone(),
            delay_ms.clone(),
            stop.clone(),
            name.to_owned(),
        );
        let task = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    () = s.cancelled() => return,
                };
                let (h, c, d, s, n) = (h.clone(), c.clone(), d.clone(), s.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, c, d, n) = (h.clone(), c.clone(), d.clone(), n.clone());
                        async move { Ok::<_, Infallible>(answer(req, &h, &c, &d, &n).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = s.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self {
            name: name.to_owned(),
            addr,
            healthy,
            hits,
            delay_ms,
            stop,
            task,
        })
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::SeqCst);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn answer(
    req: Request<Incoming>,
    healthy: &AtomicBool,
    hits: &AtomicU64,
    delay_ms: &AtomicU64,
    name: &str,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if path == "/health" {
        return if healthy.load(Ordering::SeqCst) {
            reply(StatusCode::OK, "ok".to_owned())
        } else {
            reply(StatusCode::SERVICE_UNAVAILABLE, "down".to_owned())
        };
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let wait = match path.as_str() {
        "/slow" => 500,
        "/sleep" => req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        _ => delay_ms.load(Ordering::SeqCst),
    };
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    if path == "/fail" {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, name.to_owned());
    }
    reply(StatusCode::OK, name.to_owned())
}

/// Health checks every 50 ms, two in a row to change state.
pub fn fast_health() -> HealthCheckSpec {
    HealthCheckSpec {
        path: "/health".to_owned(),
        interval_ms: 50,
        timeout_ms: 500,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    }
}

/// A load balancer with no groups or services, its admin API on 127.0.0.1:0.
pub async fn start_lb() -> Result<(LoadBalancer, AdminClient), rollcage_lb::LbError> {
    let settings = Settings {
        health_check: fast_health(),
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    let lb = rollcage_lb::start(LbConfig {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: TOKEN.to_owned(),
        settings,
        groups: Vec::new(),
        services: Vec::new(),
    })
    .await?;
    let admin = AdminClient::new(lb.admin_addr(), TOKEN);
    Ok((lb, admin))
}

/// A group with these backends registered and healthy, and a service `svc` on 127.0.0.1:0 pointing at it.
pub async fn group_with(
    admin: &AdminClient,
    group: &str,
    backends: &[&Backend],
) -> Result<(), rollcage_lb::client::ClientError> {
    admin.create_group(group, None).await?;
    for b in backends {
        admin
            .register_and_wait(group, &b.address(), Duration::from_secs(5))
            .await?;
    }
    Ok(())
}

/// A pooled keep-alive client.
pub fn http_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` on `addr`: status and body.
pub async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String), String> {
    let uri: hyper::Uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let resp = client.get(uri).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One request of the load generator.
#[derive(Debug, Clone)]
pub struct Sample {
    pub started: Instant,
    pub outcome: Result<(u16, String), String>,
}

/// Sends GETs of `path` to `addr` from `concurrency` tasks until `stop`; returns every outcome.
pub fn spawn_load(
    addr: SocketAddr,
    path: &'static str,
    concurrency: usize,
    stop: CancellationToken,
) -> JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let client = http_client();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let client = client.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.is_cancelled() {
                    let started = Instant::now();
                    let outcome = get(&client, addr, path).await;
                    out.push(Sample { started, outcome });
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(v) = t.await {
                all.extend(v);
            }
        }
        all
    })
}

/// Polls `f` every 10 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
