//! The delivery task: posts the outbox's due rows, one at a time per endpoint, and records each outcome.
//!
//! Each round it leases the due head of every endpoint's queue ([`crate::store::webhooks::claim`]; at most
//! [`MAX_IN_FLIGHT`] posts at once), renders the body of a first attempt in the same transaction, and posts each
//! on its own task: a slow endpoint holds up only its own queue. A post is delivered when the endpoint answers 2xx
//! within [`POST_TIMEOUT`]; anything else (no answer, a refused connection, a 3xx — redirects are not followed — a
//! 4xx or 5xx) is retried on the schedule of [`super::backoff::Retry`] and given up after its last attempt. It
//! sleeps until the next attempt is due, or until a commit queues a delivery (the store's commit hook wakes it, on
//! PostgreSQL also for another coordinator's commits), or a post ends.

use super::backoff::Next;
use super::body;
use crate::state::State;
use crate::store::webhooks::{self as outbox, Attempt, Claimed};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_proto::webhook::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use rollcage_proto::wire::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Posts in flight at once (over all endpoints).
pub const MAX_IN_FLIGHT: usize = 16;
/// How long one post may take, connection included; past it the attempt failed.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lease on a row lasts: well past one post, so only a coordinator that died mid-post loses it.
const LEASE_MS: i64 = 60_000;
/// Longest sleep between two looks at the outbox when nothing wakes the task (a missed wake costs at most this).
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// How much of an error is kept in the row.
const MAX_ERROR_LEN: usize = 500;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Run the delivery task until the coordinator stops.
pub async fn run(state: State) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot build the HTTP client; no webhook is delivered");
            return;
        }
    };
    let holder = state.store.holder_id();
    // A coordinator that restarts (SQLite keeps its holder name) takes its old leases back at once.
    {
        let st = state.clone();
        let h = holder.clone();
        let released =
            tokio::task::spawn_blocking(move || st.store.write(|tx| outbox::release_all(tx, &h)))
                .await;
        if let Ok(Err(e)) = released {
            tracing::error!(error = %e, "webhooks: releasing this coordinator's old leases failed");
        }
    }
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let ended = Arc::new(Notify::new());
    loop {
        let free = slots.available_permits();
        let round = if free > 0 {
            let st = state.clone();
            let h = holder.clone();
            tokio::task::spawn_blocking(move || claim_round(&st, &h, now_ms(), free)).await
        } else {
            Ok(Ok((Vec::new(), None)))
        };
        let (claimed, next_due) = match round {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "webhooks: reading the outbox failed");
                (Vec::new(), None)
            }
            Err(_) => (Vec::new(), None),
        };
        for d in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (st, h, client, ended) =
                (state.clone(), holder.clone(), client.clone(), ended.clone());
            tokio::spawn(async move {
                deliver(&st, &h, &client, d).await;
                drop(permit);
                ended.notify_one();
            });
        }
        let wait = next_due
            .map(|at| Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)))
            .unwrap_or(IDLE_RECHECK)
            .min(IDLE_RECHECK);
        if wait.is_zero() && slots.available_permits() > 0 {
            // Due now, but leased by this coordinator's own posts: their end wakes us.
            tokio::select! {
                _ = ended.notified() => {}
                _ = state.webhooks().notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.webhooks().notified() => {}
            _ = ended.notified() => {}
        }
    }
}

/// Lease up to `limit` due deliveries and render the bodies of first attempts (one transaction); also when the
/// next one not leased now is due.
fn claim_round(
    state: &State,
    holder: &str,
    now: i64,
    limit: usize,
) -> crate::store::Result<(Vec<Claimed>, Option<i64>)> {
    state.store.write(|tx| {
        let mut claimed = outbox::claim(tx, holder, now, LEASE_MS, limit)?;
        for d in &mut claimed {
            if d.body.is_none() {
                let b = body::render(tx, d)?;
                outbox::set_body(tx, d.seq, &b)?;
                d.body = Some(b);
            }
        }
        let next = outbox::next_due(tx)?;
        Ok((claimed, next))
    })
}

fn client() -> Result<HttpsClient, std::io::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(POST_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(std::io::Error::other)?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Post one delivery and record how it went.
async fn deliver(state: &State, holder: &str, client: &HttpsClient, d: Claimed) {
    let body = d.body.clone().unwrap_or_default();
    let outcome = post(client, &d, body).await;
    let attempts = d.attempts.saturating_add(1);
    let now = now_ms();
    let attempt = match outcome {
        Ok(status) => Attempt::Delivered { status },
        Err((status, error)) => {
            let host = host_of(&d.url);
            match state
                .settings
                .webhook_retry
                .after_failure(attempts, fastrand::f64())
            {
                Next::RetryAfter(after) => {
                    tracing::warn!(delivery = %outbox::delivery_id(d.seq), endpoint = %host, attempts,
                        retry_in_ms = after.as_millis() as u64, %error, "webhook delivery failed; will retry");
                    Attempt::Retry {
                        status,
                        error,
                        next_at: now
                            .saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
                    }
                }
                Next::GiveUp => {
                    tracing::warn!(delivery = %outbox::delivery_id(d.seq), endpoint = %host, attempts, %error,
                        "webhook delivery given up after its last attempt");
                    Attempt::GiveUp { status, error }
                }
            }
        }
    };
    let st = state.clone();
    let h = holder.to_owned();
    let seq = d.seq;
    let recorded = tokio::task::spawn_blocking(move || {
        st.store
            .write(|tx| outbox::record(tx, seq, &h, &attempt, now))
    })
    .await;
    match recorded {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => tracing::warn!(delivery = %outbox::delivery_id(seq),
            "webhook delivery outcome not recorded: its lease lapsed and another coordinator took it over"),
        Ok(Err(e)) => tracing::error!(delivery = %outbox::delivery_id(seq), error = %e,
            "recording a webhook delivery failed (it is posted again once its lease lapses)"),
        Err(_) => {}
    }
}

/// One attempt: the status of a 2xx answer, or the status (if any) and why it failed.
async fn post(
    client: &HttpsClient,
    d: &Claimed,
    body: String,
) -> Result<u16, (Option<u16>, String)> {
    let uri: hyper::Uri = d
        .url
        .parse()
        .map_err(|e| (None, format!("invalid URL: {e}")))?;
    let mut req = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("rollcage-coordinator/", env!("CARGO_PKG_VERSION")),
        )
        .header(DELIVERY_HEADER, outbox::delivery_id(d.seq))
        .header(EVENT_HEADER, d.event.name());
    if let Some(secret) = &d.secret {
        let t = now_ms() / 1000;
        req = req.header(
            SIGNATURE_HEADER,
            super::sign::signature(secret.as_bytes(), t, body.as_bytes()),
        );
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| (None, format!("building the request: {e}")))?;
    let resp = match tokio::time::timeout(POST_TIMEOUT, client.request(req)).await {
        Err(_) => {
            return Err((
                None,
                format!("no answer within {} s", POST_TIMEOUT.as_secs()),
            ));
        }
        Ok(Err(e)) => return Err((None, clip(&chain(&e)))),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err((
            Some(status.as_u16()),
            format!(
                "HTTP {}{}",
                status.as_u16(),
                status
                    .canonical_reason()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            ),
        ))
    }
}

/// An error with its causes (the client's own message alone says only "client error (Connect)").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn clip(s: &str) -> String {
    rollcage_proto::clip::clip_head(s, MAX_ERROR_LEN)
}

/// The endpoint's host, for logs: a webhook URL's path may hold a credential (chat services put their token
/// there), so logs never carry the whole URL.
fn host_of(url: &str) -> String {
    url.split_once("://")
        .map(|(_, r)| r.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default()
        .to_owned()
}
