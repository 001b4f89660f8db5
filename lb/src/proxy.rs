//! The data path: one HTTP/1.1 listener per backend service, forwarding each request to a server of the
//! service's current group (or, with a split, to its second group for the weight's share of new requests) over a
//! pooled keep-alive client, streaming bodies both ways. Every answer is counted in the traffic window of its
//! group and server (`window`).
//!
//! Retry policy: when the connection to the chosen server cannot be opened (nothing was sent), a request with
//! an idempotent method and no body is sent once more to the next eligible server. This covers a server that
//! went away before its health checks noticed; a request that reached a server is never re-sent, and a request
//! with a body is not retried (its body is streamed, not buffered). Errors become 502 (no answer), 503 (no
//! eligible server) or 504 (no response head within the response timeout).

use crate::group::{Counters, Group, GroupInFlight, InFlight, Server};
use crate::policy;
use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rollcage_proto::traffic::Weight;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

/// Body sent upstream: the client's streamed body, or nothing (which lets a retry rebuild the request).
type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// The pooled upstream client.
pub(crate) type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// Timeouts of the data path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) response: Duration,
    pub(crate) header_read: Duration,
    pub(crate) shutdown_grace: Duration,
}

/// A pooled keep-alive client for the servers.
pub(crate) fn upstream_client(t: &Timeouts) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(t.connect));
    // Idle connections are kept 30 s and up to 256 per server: enough for a few hundred concurrent
    // clients without reconnecting, few enough not to exhaust a small server's connection limit.
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// A backend service: a listener whose traffic goes to one server group, or is split by weight between that
/// group and a second ("new") one.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    route: RwLock<Route>,
    /// Counts the service's requests for the weighted split (see `policy::to_new_group`).
    split_ticket: AtomicU64,
}

/// Where a service's requests go.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The group the service points at.
    pub(crate) active: Arc<Group>,
    /// A second group and the percentage of new requests it gets.
    pub(crate) split: Option<(Arc<Group>, Weight)>,
}

impl Service {
    pub(crate) fn new(name: String, listen: SocketAddr, group: Arc<Group>) -> Self {
        Self {
            name,
            listen,
            route: RwLock::new(Route {
                active: group,
                split: None,
            }),
            split_ticket: AtomicU64::new(0),
        }
    }

    /// The route now.
    pub(crate) fn route(&self) -> Route {
        self.route
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The group the service points at.
    pub(crate) fn group(&self) -> Arc<Group> {
        self.route
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .active
            .clone()
    }

    /// The group a new request goes to: the split decides when there is one with a weight above 0.
    fn pick(&self) -> Arc<Group> {
        let route = self.route.read().unwrap_or_else(PoisonError::into_inner);
        match &route.split {
            Some((new, w)) if w.percent() > 0 => {
                let ticket = self.split_ticket.fetch_add(1, Ordering::Relaxed);
                if policy::to_new_group(ticket, w.percent()) {
                    new.clone()
                } else {
                    route.active.clone()
                }
            }
            _ => route.active.clone(),
        }
    }

    /// Points the service at another group and ends any split; requests already in flight finish on the
    /// group they went to.
    pub(crate) fn switch(&self, group: Arc<Group>) {
        *self.route.write().unwrap_or_else(PoisonError::into_inner) = Route {
            active: group,
            split: None,
        };
    }

    /// Sends `weight` % of new requests to `new` (the rest to the active group); applies to the next request.
    pub(crate) fn set_split(&self, new: Arc<Group>, weight: Weight) {
        self.route
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .split = Some((new, weight));
    }
}

/// What every connection handler needs.
#[derive(Debug)]
pub(crate) struct ProxyCtx {
    pub(crate) client: UpstreamClient,
    pub(crate) timeouts: Timeouts,
}

/// Accepts connections for `service` until `shutdown`, then lets open connections finish their current
/// request (up to the shutdown grace time).
pub(crate) fn spawn_listener(
    tasks: &TaskTracker,
    listener: TcpListener,
    service: Arc<Service>,
    ctx: Arc<ProxyCtx>,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(ctx.timeouts.header_read)
            .keep_alive(true);
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(service = %service.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            let ctx = ctx.clone();
            let conn = builder.serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let service = service.clone();
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(forward(&ctx, &service, peer.ip(), req).await) }
                }),
            );
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
            });
        }
        drop(listener);
        let grace = ctx.timeouts.shutdown_grace;
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(service = %service.name, "connections still open after the shutdown grace time");
        }
    });
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in `Connection` are hop-by-hop too.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::PROXY_AUTHORIZATION);
}

fn add_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {client}"),
        None => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// Forwards one request; never fails (errors become 5xx answers).
async fn forward(
    ctx: &ProxyCtx,
    service: &Service,
    client_ip: IpAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let group_guard = GroupInFlight::new(service.pick());
    let group = group_guard.group.clone();
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    add_forwarded_for(&mut headers, client_ip);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let retryable = policy::may_retry(&parts.method, body.is_end_stream());
    let mut body = if retryable { None } else { Some(body) };
    let mut avoid: Option<Arc<Server>> = None;
    loop {
        let Some(slot) = group.acquire(avoid.as_ref()) else {
            return fail(
                &group,
                None,
                started,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no healthy server in group `{}`", group.name),
            );
        };
        if avoid.is_some() {
            Counters::bump(&group.counters.retries);
            Counters::bump(&slot.server.counters.retries);
        }
        let uri = match Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(slot.server.authority.clone())
            .path_and_query(path.clone())
            .build()
        {
            Ok(u) => u,
            Err(e) => {
                return fail(
                    &group,
                    Some(&slot.server),
                    started,
                    StatusCode::BAD_GATEWAY,
                    e.to_string(),
                );
            }
        };
        let last_try = !retryable || avoid.is_some();
        let upstream_body = match body.take() {
            Some(b) => Either::Left(b),
            None => Either::Right(Empty::new()),
        };
        let mut up = Request::new(upstream_body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = if last_try {
            std::mem::take(&mut headers)
        } else {
            headers.clone()
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(ctx.timeouts.response, ctx.client.request(up)) => r,
            () = slot.server.removed.cancelled() => {
                return fail(&group, Some(&slot.server), started, StatusCode::BAD_GATEWAY,
                    format!("server {} was removed from group `{}`", slot.server.address, group.name));
            }
        };
        match outcome {
            Ok(Ok(resp)) => {
                let is_5xx = resp.status().is_server_error();
                if is_5xx {
                    Counters::bump(&group.counters.responses_5xx);
                    Counters::bump(&slot.server.counters.responses_5xx);
                }
                answered(&group, Some(&slot.server), started, is_5xx);
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                let killed = Box::pin(slot.server.removed.clone().cancelled_owned());
                let body = ProxyBody::Upstream {
                    inner: rbody,
                    killed,
                    _server: slot,
                    _group: group_guard,
                };
                return Response::from_parts(rparts, body);
            }
            Ok(Err(e)) if e.is_connect() => {
                Counters::bump(&slot.server.counters.connect_failures);
                tracing::debug!(group = %group.name, server = %slot.server.address,
                    error = %crate::error::chain(&e), "connect failed");
                if last_try {
                    return fail(
                        &group,
                        Some(&slot.server),
                        started,
                        StatusCode::BAD_GATEWAY,
                        format!("cannot connect to server {}", slot.server.address),
                    );
                }
                avoid = Some(slot.server.clone());
            }
            Ok(Err(e)) => {
                tracing::debug!(group = %group.name, server = %slot.server.address,
                    error = %crate::error::chain(&e), "upstream request failed");
                return fail(
                    &group,
                    Some(&slot.server),
                    started,
                    StatusCode::BAD_GATEWAY,
                    format!("server {} gave no valid answer", slot.server.address),
                );
            }
            Err(_) => {
                return fail(
                    &group,
                    Some(&slot.server),
                    started,
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "server {} sent no response within {} ms",
                        slot.server.address,
                        ctx.timeouts.response.as_millis()
                    ),
                );
            }
        }
    }
}

/// Counts an answer (response head, or the proxy's own error answer) in the current traffic window of the group
/// and of the server it came from or concerns.
fn answered(group: &Group, server: Option<&Server>, started: Instant, is_5xx: bool) {
    let latency = started.elapsed();
    group.window.record(is_5xx, latency);
    if let Some(s) = server {
        s.window.record(is_5xx, latency);
    }
}

/// A proxy-made error answer, counted as a 5xx on the group (and the server it concerns).
fn fail(
    group: &Group,
    server: Option<&Arc<Server>>,
    started: Instant,
    status: StatusCode,
    message: String,
) -> Response<ProxyBody> {
    Counters::bump(&group.counters.responses_5xx);
    if let Some(s) = server {
        Counters::bump(&s.counters.responses_5xx);
    }
    answered(group, server.map(|s| &**s), started, true);
    let mut resp = Response::new(ProxyBody::Fixed(Some(Bytes::from(message + "\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Response body towards the client. The upstream variant keeps the request counted in flight (on server and
/// group) until the body ends or the client goes away, and cuts the body if the server is removed by force.
pub(crate) enum ProxyBody {
    /// Streamed from a server.
    Upstream {
        inner: Incoming,
        killed: Pin<Box<WaitForCancellationFutureOwned>>,
        _server: InFlight,
        _group: GroupInFlight,
    },
    /// Made by the proxy.
    Fixed(Option<Bytes>),
}

/// Error of a response body: the server's stream failed, or the server was removed by force.
type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Fixed(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Upstream { inner, killed, .. } => {
                if killed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(
                        "server removed by force during the response".into()
                    )));
                }
                Pin::new(inner)
                    .poll_frame(cx)
                    .map(|f| f.map(|r| r.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Fixed(d) => d.is_none(),
            Self::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Fixed(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Self::Fixed(None) => SizeHint::with_exact(0),
            Self::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
