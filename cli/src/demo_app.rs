//! `rollcage demo-app` (hidden): the sample application deployed by the load-balancer tests and demos. A tiny
//! HTTP server answering `GET /` with `<version> <instance>` after an optional delay (so requests are in flight
//! while a deployment drains the instance) and `GET /health` with 200. Hooks start it in the background
//! (`nohup "$ROLLCAGE_BIN" demo-app ... &`) and stop it by pid.

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
    /// Write the process id to this file once listening.
    #[arg(long)]
    pid_file: Option<std::path::PathBuf>,
}

struct App {
    body: Bytes,
    delay: Duration,
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
            resp(StatusCode::OK, app.body.clone())
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
        delay: Duration::from_millis(args.delay_ms),
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
