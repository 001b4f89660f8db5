//! A plain pooled HTTP client and a load generator that records every request's outcome and timing.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The client type of [`http_client`].
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A pooled keep-alive client.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` on `addr`: status and body, or what went wrong.
pub async fn get(
    client: &HttpClient,
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
    /// When it was sent.
    pub started: Instant,
    /// When its answer (or error) came.
    pub finished: Instant,
    /// Status and body, or what went wrong.
    pub outcome: Result<(u16, String), String>,
}

impl Sample {
    /// Answered 200.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Ok((200, _)))
    }

    /// The body (the backend's name) of an answer.
    pub fn served_by(&self) -> Option<&str> {
        self.outcome.as_ref().ok().map(|(_, b)| b.as_str())
    }
}

/// Every sample that did not answer 200, described.
pub fn failures(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| !s.ok())
        .map(|s| format!("{:?}", s.outcome))
        .collect()
}

/// Sends GETs of `path` to `addr` from `concurrency` tasks, back to back, until `stop`; returns every outcome.
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
                    out.push(Sample {
                        started,
                        finished: Instant::now(),
                        outcome,
                    });
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

/// Sends exactly `total` GETs of `path` to `addr` from `concurrency` tasks, back to back; returns every outcome.
pub async fn send_n(addr: SocketAddr, path: &str, concurrency: usize, total: usize) -> Vec<Sample> {
    let client = http_client();
    let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(total));
    let path: std::sync::Arc<str> = path.into();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, left, path) = (client.clone(), left.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                let started = Instant::now();
                let outcome = get(&client, addr, &path).await;
                out.push(Sample {
                    started,
                    finished: Instant::now(),
                    outcome,
                });
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
}

/// How many samples each backend (by the name in the body) answered, whatever the status.
pub fn served_counts(samples: &[Sample]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in samples {
        if let Some(b) = s.served_by() {
            *m.entry(b.to_owned()).or_insert(0) += 1;
        }
    }
    m
}
