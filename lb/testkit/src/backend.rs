//! A backend for tests: `/health` answers 200 or 503 as [`Backend::set_healthy`] says; `/slow` answers after
//! 500 ms; `/sleep?ms=N` after N ms; `/fail` answers 500; anything else answers after `delay_ms`, with a 500
//! for every `fail_every`-th such request (0: never). Bodies are the
//! backend's name; `hits` counts the requests that are not health checks.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running backend; closes its listener and connections when stopped or dropped.
#[derive(Debug)]
pub struct Backend {
    /// Its name: the body of every answer.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What `/health` says.
    pub healthy: Arc<AtomicBool>,
    /// Requests other than health checks.
    pub hits: Arc<AtomicU64>,
    /// Requests other than health checks being answered now (counted until the answer is handed to hyper).
    pub in_flight: Arc<AtomicU64>,
    /// Requests in their wait now (`/slow`, `/sleep`, or a `delay_ms`): what a drain has to wait for.
    pub waiting: Arc<AtomicU64>,
    /// How long plain requests wait before the answer.
    pub delay_ms: Arc<AtomicU64>,
    /// Every N-th plain request answers 500 (0: none): a revision that fails a known fraction.
    pub fail_every: Arc<AtomicU64>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct Shared {
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    waiting: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    fail_every: Arc<AtomicU64>,
    plain: Arc<AtomicU64>,
    name: Arc<str>,
}

impl Backend {
    /// Start on a free loopback port.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start on `addr` (e.g. a port a stopped backend had, to bring it back).
    pub async fn start_on(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            healthy: Arc::new(AtomicBool::new(true)),
            hits: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicU64::new(0)),
            waiting: Arc::new(AtomicU64::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            fail_every: Arc::new(AtomicU64::new(0)),
            plain: Arc::new(AtomicU64::new(0)),
            name: name.into(),
        };
        let stop = CancellationToken::new();
        let (sh, st) = (shared.clone(), stop.clone());
        let task = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    () = st.cancelled() => return,
                };
                let (sh, st) = (sh.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let sh = sh.clone();
                        async move { Ok::<_, Infallible>(answer(req, &sh).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = st.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self {
            name: name.to_owned(),
            addr,
            healthy: shared.healthy,
            hits: shared.hits,
            in_flight: shared.in_flight,
            waiting: shared.waiting,
            delay_ms: shared.delay_ms,
            fail_every: shared.fail_every,
            stop,
            task: Some(task),
        })
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// What `/health` answers from now on.
    pub fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::SeqCst);
    }

    /// Requests other than health checks so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests other than health checks being answered now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Makes every `n`-th plain request answer 500 from now on (0: none).
    pub fn fail_every(&self, n: u64) {
        self.fail_every.store(n, Ordering::SeqCst);
    }

    /// Delays every plain request by `ms` from now on.
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Requests in their wait now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Close the listener and every connection, and wait until the listener is gone.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(req: Request<Incoming>, sh: &Shared) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if path == "/health" {
        return if sh.healthy.load(Ordering::SeqCst) {
            reply(StatusCode::OK, "ok".to_owned())
        } else {
            reply(StatusCode::SERVICE_UNAVAILABLE, "down".to_owned())
        };
    }
    sh.hits.fetch_add(1, Ordering::SeqCst);
    sh.in_flight.fetch_add(1, Ordering::SeqCst);
    let answer = answer_after_wait(req, &path, sh).await;
    sh.in_flight.fetch_sub(1, Ordering::SeqCst);
    answer
}

async fn answer_after_wait(
    req: Request<Incoming>,
    path: &str,
    sh: &Shared,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    let wait = match path {
        "/slow" => 500,
        "/sleep" => req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        _ => sh.delay_ms.load(Ordering::SeqCst),
    };
    if wait > 0 {
        sh.waiting.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        sh.waiting.fetch_sub(1, Ordering::SeqCst);
    }
    if path == "/fail" {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, sh.name.to_string());
    }
    if !matches!(path, "/slow" | "/sleep") {
        let every = sh.fail_every.load(Ordering::SeqCst);
        let n = sh.plain.fetch_add(1, Ordering::SeqCst) + 1;
        if every > 0 && n.is_multiple_of(every) {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, sh.name.to_string());
        }
    }
    reply(StatusCode::OK, sh.name.to_string())
}
