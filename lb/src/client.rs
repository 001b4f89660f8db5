//! Typed async client of the admin API, for the coordinator's `builtin` driver and for tests.
//!
//! Besides one method per route it offers the waits a deployment needs: [`AdminClient::register_and_wait`]
//! (until the server is healthy) and [`AdminClient::deregister_and_wait`] (until its in-flight requests are
//! done and it left the group).

use crate::api::{
    CountersReport, CreateGroup, DeregisterView, ErrorBody, GroupView, HealthCheckSpec, PutService,
    PutSplit, ServerPhase, ServerView, ServiceView, Weight, WindowReport,
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the waits poll the admin API.
const POLL: Duration = Duration::from_millis(50);

/// Characters kept as they are in path segments: names and IPv4 `host:port` stay readable.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// A failed admin API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or the answer not read.
    #[error("admin API at {addr}: {what}: {message}")]
    Transport {
        /// The admin API address.
        addr: SocketAddr,
        /// `METHOD path`.
        what: String,
        /// The error.
        message: String,
    },
    /// The load balancer answered with an error.
    #[error("admin API {what}: {status} {code}: {message}")]
    Api {
        /// `METHOD path`.
        what: String,
        /// HTTP status.
        status: u16,
        /// Error code (e.g. `group_not_found`).
        code: String,
        /// Error message.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("admin API {what}: unexpected answer: {message}")]
    Decode {
        /// `METHOD path`.
        what: String,
        /// The decoding error.
        message: String,
    },
    /// A wait did not reach its goal in time.
    #[error(
        "server `{address}` in group `{group}`: not {goal} after {waited_ms} ms (last state: {last})"
    )]
    Timeout {
        /// The group.
        group: String,
        /// The server.
        address: String,
        /// `healthy` or `drained`.
        goal: &'static str,
        /// How long it waited.
        waited_ms: u64,
        /// Last state seen.
        last: String,
    },
}

impl ClientError {
    /// The API error code, when the load balancer answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Client of one load balancer's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    addr: SocketAddr,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for the admin API at `addr` using bearer `token`.
    pub fn new(addr: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            addr,
            token: token.into(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// All server groups.
    pub async fn groups(&self) -> Result<Vec<GroupView>, ClientError> {
        self.call(Method::GET, "/v1/groups".to_owned(), None).await
    }

    /// Creates a group (idempotent); `None` uses the load balancer's default health check.
    pub async fn create_group(
        &self,
        group: &str,
        health_check: Option<HealthCheckSpec>,
    ) -> Result<GroupView, ClientError> {
        let body = serde_json::to_vec(&CreateGroup { health_check }).ok();
        self.call(Method::PUT, format!("/v1/groups/{}", enc(group)), body)
            .await
    }

    /// One group with its servers.
    pub async fn group(&self, group: &str) -> Result<GroupView, ClientError> {
        self.call(Method::GET, format!("/v1/groups/{}", enc(group)), None)
            .await
    }

    /// Registers a server (idempotent; cancels a drain). It gets traffic once healthy.
    pub async fn register(&self, group: &str, address: &str) -> Result<ServerView, ClientError> {
        self.call(Method::PUT, server_path(group, address), None)
            .await
    }

    /// The state of a server; `None` when it is not in the group.
    pub async fn server(
        &self,
        group: &str,
        address: &str,
    ) -> Result<Option<ServerView>, ClientError> {
        match self
            .call(Method::GET, server_path(group, address), None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some("server_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Registers a server and waits until it is healthy (eligible for traffic).
    pub async fn register_and_wait(
        &self,
        group: &str,
        address: &str,
        timeout: Duration,
    ) -> Result<ServerView, ClientError> {
        let start = Instant::now();
        let mut view = self.register(group, address).await?;
        while !view.eligible {
            if start.elapsed() >= timeout {
                return Err(ClientError::Timeout {
                    group: group.to_owned(),
                    address: address.to_owned(),
                    goal: "healthy",
                    waited_ms: millis(start.elapsed()),
                    last: format!(
                        "healthy={}, phase={:?}, last check error: {}",
                        view.healthy,
                        view.phase,
                        view.last_check_error.as_deref().unwrap_or("none")
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
            view = match self.server(group, address).await? {
                Some(v) => v,
                // Removed meanwhile (e.g. a concurrent deregistration): register again.
                None => self.register(group, address).await?,
            };
        }
        Ok(view)
    }

    /// Deregisters a server: it drains (no new requests) and leaves the group when its in-flight requests
    /// are done or after `drain_timeout` (default: the load balancer's). `force` removes it at once.
    pub async fn deregister(
        &self,
        group: &str,
        address: &str,
        drain_timeout: Option<Duration>,
        force: bool,
    ) -> Result<DeregisterView, ClientError> {
        let mut query = Vec::new();
        if let Some(t) = drain_timeout {
            query.push(format!("drain_timeout_ms={}", millis(t)));
        }
        if force {
            query.push("force=true".to_owned());
        }
        let mut path = server_path(group, address);
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        self.call(Method::DELETE, path, None).await
    }

    /// Deregisters a server and waits until it has left the group (drained, or forced at `drain_timeout`).
    pub async fn deregister_and_wait(
        &self,
        group: &str,
        address: &str,
        drain_timeout: Duration,
    ) -> Result<(), ClientError> {
        let start = Instant::now();
        let view = self
            .deregister(group, address, Some(drain_timeout), false)
            .await?;
        if view.phase == ServerPhase::Removed {
            return Ok(());
        }
        // The load balancer removes it by force at the deadline; allow it a little past that.
        let limit = drain_timeout + Duration::from_secs(5);
        loop {
            tokio::time::sleep(POLL).await;
            match self.server(group, address).await? {
                None => return Ok(()),
                Some(v) if start.elapsed() >= limit => {
                    return Err(ClientError::Timeout {
                        group: group.to_owned(),
                        address: address.to_owned(),
                        goal: "drained",
                        waited_ms: millis(start.elapsed()),
                        last: format!("phase={:?}, in_flight={}", v.phase, v.in_flight),
                    });
                }
                Some(_) => {}
            }
        }
    }

    /// All backend services.
    pub async fn services(&self) -> Result<Vec<ServiceView>, ClientError> {
        self.call(Method::GET, "/v1/services".to_owned(), None)
            .await
    }

    /// One backend service.
    pub async fn service(&self, service: &str) -> Result<ServiceView, ClientError> {
        self.call(Method::GET, format!("/v1/services/{}", enc(service)), None)
            .await
    }

    /// Creates a backend service listening on `listen` and sending traffic to `group`.
    pub async fn create_service(
        &self,
        service: &str,
        listen: &str,
        group: &str,
    ) -> Result<ServiceView, ClientError> {
        self.put_service(
            service,
            &PutService {
                group: group.to_owned(),
                listen: Some(listen.to_owned()),
            },
        )
        .await
    }

    /// Switches a backend service to another group (blue/green); idempotent.
    pub async fn switch_service(
        &self,
        service: &str,
        group: &str,
    ) -> Result<ServiceView, ClientError> {
        self.put_service(
            service,
            &PutService {
                group: group.to_owned(),
                listen: None,
            },
        )
        .await
    }

    async fn put_service(
        &self,
        service: &str,
        put: &PutService,
    ) -> Result<ServiceView, ClientError> {
        let body = serde_json::to_vec(put).ok();
        self.call(Method::PUT, format!("/v1/services/{}", enc(service)), body)
            .await
    }

    /// Sends `weight` % of a service's new requests to `group` (the rest to the group it points at).
    pub async fn set_split(
        &self,
        service: &str,
        group: &str,
        weight: Weight,
    ) -> Result<ServiceView, ClientError> {
        let body = serde_json::to_vec(&PutSplit {
            group: group.to_owned(),
            weight,
        })
        .ok();
        self.call(
            Method::PUT,
            format!("/v1/services/{}/split", enc(service)),
            body,
        )
        .await
    }

    /// Closes the current traffic window of every group and server; reports windows `since+1..=N` (window `N`
    /// alone without `since`). `since` is `(lb, window id)` of an earlier report.
    pub async fn cut_window(
        &self,
        since: Option<(&str, u64)>,
    ) -> Result<WindowReport, ClientError> {
        self.call(
            Method::POST,
            format!("/v1/windows{}", window_query(since)),
            None,
        )
        .await
    }

    /// Reads closed windows `since+1..=id` again (window `id` alone without `since`).
    pub async fn window(
        &self,
        id: u64,
        since: Option<(&str, u64)>,
    ) -> Result<WindowReport, ClientError> {
        self.call(
            Method::GET,
            format!("/v1/windows/{id}{}", window_query(since)),
            None,
        )
        .await
    }

    /// Counters of every group and server.
    pub async fn counters(&self) -> Result<CountersReport, ClientError> {
        self.call(Method::GET, "/v1/counters".to_owned(), None)
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let transport = |message: String| ClientError::Transport {
            addr: self.addr,
            what: what.clone(),
            message,
        };
        let has_body = body.is_some();
        let mut req = Request::new(Full::new(Bytes::from(body.unwrap_or_default())));
        *req.method_mut() = method;
        *req.uri_mut() = format!("http://{}{path}", self.addr)
            .parse()
            .map_err(|e| transport(format!("bad URI: {e}")))?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| transport("the token is not a valid header value".to_owned()))?;
        req.headers_mut().insert(header::AUTHORIZATION, auth);
        if has_body {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| transport(crate::error::chain(&e)))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    what,
                    status: status.as_u16(),
                    code: e.error.code,
                    message: e.error.message,
                },
                Err(_) => ClientError::Api {
                    what,
                    status: status.as_u16(),
                    code: "unknown".to_owned(),
                    message: String::from_utf8_lossy(&bytes).into_owned(),
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            what,
            message: e.to_string(),
        })
    }
}

fn enc(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

fn window_query(since: Option<(&str, u64)>) -> String {
    since.map_or_else(String::new, |(lb, id)| {
        format!("?since={id}&lb={}", enc(lb))
    })
}

fn server_path(group: &str, address: &str) -> String {
    format!("/v1/groups/{}/servers/{}", enc(group), enc(address))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
