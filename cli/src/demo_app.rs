//! `rollcage demo-app` (hidden): the sample application deployed by the load-balancer tests and demos. A tiny
//! HTTP server answering `GET /` with `<version> <instance>` after an optional delay (so requests are in flight
//! while a deployment drains the instance) and `GET /health` with 200. Hooks start it in the background
//! (`nohup "$ROLLCAGE_BIN" demo-app ... &`) and stop it by pid.
//!
//! **Faults** (the one knob a revision turns to be "bad" for a canary or an analysis gate while its health checks
//! and ValidateService still pass): `--fail-percent P` answers that share of `GET /` with a 500, spread evenly
//! (request n fails when `floor((n+1)·P/100) > floor(n·P/100)`, so any 100 consecutive requests hold exactly P
//! failures); a slow revision is `--delay-ms`. `/health` always answers 200.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `rollcage demo-app`.
#[derive(Debug, clap::Args)]
pub struct DemoAppArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Version served (the first word of every answer to `GET /`).
    #[arg(long)]
    version: String,
    /// Instance name in answers (default: the listen address).
    #[arg(long)]
    instance: Option<String>,
    /// Delay before answering `GET /`, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Percent (0–100) of `GET /` answered `500 Internal Server Error`, spread evenly over the requests.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
    fail_percent: u64,
    /// Write the process id to this file once listening.
    #[arg(long)]
    pid_file: Option<std::path::PathBuf>,
}

struct App {
    body: Bytes,
    /// The answer of a failing request: `<version> <instance> injected failure`, so a client knows whose it is.
    failure: Bytes,
    delay: Duration,
    fail_percent: u64,
    served: std::sync::atomic::AtomicU64,
}

impl App {
    /// Whether this request is one of the `fail_percent` % that answer 500 (evenly spread; see the module doc).
    fn fails_next(&self) -> bool {
        let n = self
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (n + 1) * self.fail_percent / 100 > n * self.fail_percent / 100
    }
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let resp = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    Ok(match req.uri().path() {
        "/health" => resp(StatusCode::OK, Bytes::from_static(b"ok\n")),
        "/" => {
            if !app.delay.is_zero() {
                tokio::time::sleep(app.delay).await;
            }
            if app.fails_next() {
                resp(StatusCode::INTERNAL_SERVER_ERROR, app.failure.clone())
            } else {
                resp(StatusCode::OK, app.body.clone())
            }
        }
        _ => resp(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    })
}

/// Serve until killed.
pub async fn run(args: DemoAppArgs) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("demo-app: binding {}", args.listen))?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("demo-app: writing pid file {}", p.display()))?;
    }
    let instance = args.instance.unwrap_or_else(|| args.listen.to_string());
    let app = Arc::new(App {
        body: Bytes::from(format!("{} {instance}\n", args.version)),
        failure: Bytes::from(format!(
            "{} {instance} injected failure (--fail-percent)\n",
            args.version
        )),
        delay: Duration::from_millis(args.delay_ms),
        fail_percent: args.fail_percent,
        served: std::sync::atomic::AtomicU64::new(0),
    });
    tracing::info!(listen = %args.listen, version = %args.version, "demo-app serving");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "demo-app: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(app.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(fail_percent: u64) -> App {
        App {
            body: Bytes::new(),
            failure: Bytes::new(),
            delay: Duration::ZERO,
            fail_percent,
            served: std::sync::atomic::AtomicU64::new(0),
        }
    }

    #[test]
    fn fail_percent_fails_exactly_that_share_spread_evenly() {
        for p in [0, 1, 20, 50, 100] {
            let a = app(p);
            let fails: Vec<bool> = (0..1000).map(|_| a.fails_next()).collect();
            assert_eq!(fails.iter().filter(|f| **f).count() as u64, p * 10, "{p} %");
            // Any window of 100 requests holds exactly p failures.
            for w in fails.windows(100).step_by(7) {
                assert_eq!(w.iter().filter(|f| **f).count() as u64, p, "{p} %");
            }
        }
    }
}
