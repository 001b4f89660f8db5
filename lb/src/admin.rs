//! The admin API: JSON over HTTP/1.1, every request authenticated with the bearer token; routes and bodies
//! are listed in `api`. Requests are parsed here and handed to `Control`; errors use the one shape
//! `{"error":{"code","message"}}`.

use crate::api::{CreateGroup, ErrorBody, ErrorDetail, PutService, PutSplit};
use crate::control::Control;
use crate::error::ControlError;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest admin request body: the bodies are a few small JSON fields.
const MAX_BODY: usize = 64 * 1024;

/// Serves the admin API on `listener` until `shutdown`.
pub(crate) fn spawn(
    tasks: &TaskTracker,
    listener: TcpListener,
    control: Arc<Control>,
    token: Arc<str>,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let control = control.clone();
            let token = token.clone();
            let conn = builder.serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let control = control.clone();
                    let token = token.clone();
                    async move { Ok::<_, Infallible>(handle(&control, &token, req).await) }
                }),
            );
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    });
}

async fn handle(control: &Control, token: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let result = if authorized(&req, token) {
        route(control, req).await
    } else {
        Err(ControlError::Unauthorized)
    };
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %path, error = %e, "admin request refused");
            let mut resp = json(
                e.status(),
                &ErrorBody {
                    error: ErrorDetail {
                        code: e.code().to_owned(),
                        message: e.to_string(),
                    },
                },
            );
            if matches!(e, ControlError::Unauthorized) {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

/// Checks `Authorization: Bearer <token>` in constant time (for equal lengths).
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(
    control: &Control,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ControlError> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<String> = raw_path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ControlError::BadRequest(format!("path segment `{s}` is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ok = |v: &dyn erased::Json| Ok(v.to_response());
    match (&method, segs.as_slice()) {
        (&Method::GET, ["v1", "groups"]) => ok(&control.groups()),
        (&Method::PUT, ["v1", "groups", g]) => {
            let body: CreateGroup = read_json_or_default(req).await?;
            ok(&control.create_group(g, body.health_check)?)
        }
        (&Method::GET, ["v1", "groups", g]) => ok(&control.group(g)?),
        (&Method::PUT, ["v1", "groups", g, "servers", s]) => ok(&control.register(g, s)?),
        (&Method::GET, ["v1", "groups", g, "servers", s]) => ok(&control.server(g, s)?),
        (&Method::DELETE, ["v1", "groups", g, "servers", s]) => {
            let (timeout, force) = parse_deregister_query(&query)?;
            ok(&control.deregister(g, s, timeout, force)?)
        }
        (&Method::GET, ["v1", "services"]) => ok(&control.services()),
        (&Method::PUT, ["v1", "services", name]) => {
            let body: PutService = read_json(req).await?;
            ok(&control.put_service(name, &body)?)
        }
        (&Method::GET, ["v1", "services", name]) => ok(&control.service(name)?),
        (&Method::PUT, ["v1", "services", name, "split"]) => {
            let body: PutSplit = read_json(req).await?;
            ok(&control.set_split(name, &body)?)
        }
        (&Method::GET, ["v1", "counters"]) => ok(&control.counters()),
        (&Method::POST, ["v1", "windows"]) => {
            let (since, lb) = parse_window_query(&query)?;
            ok(&control.cut_window(since, lb.as_deref())?)
        }
        (&Method::GET, ["v1", "windows", id]) => {
            let id: u64 = id.parse().map_err(|_| {
                ControlError::BadRequest(format!("window id `{id}` is not a number"))
            })?;
            let (since, lb) = parse_window_query(&query)?;
            ok(&control.window(id, since, lb.as_deref())?)
        }
        _ => Err(ControlError::NoRoute {
            method: method.to_string(),
            path: raw_path,
        }),
    }
}

/// `drain_timeout_ms=N` and `force=true|false`; anything else is refused.
fn parse_deregister_query(query: &str) -> Result<(Option<Duration>, bool), ControlError> {
    let mut timeout = None;
    let mut force = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "drain_timeout_ms" => {
                let ms: u64 = v.parse().map_err(|_| {
                    ControlError::BadRequest(format!(
                        "drain_timeout_ms `{v}` is not a number of milliseconds"
                    ))
                })?;
                timeout = Some(Duration::from_millis(ms));
            }
            "force" => {
                force = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ControlError::BadRequest(format!(
                            "force `{v}`: expected true or false"
                        )));
                    }
                }
            }
            _ => {
                return Err(ControlError::BadRequest(format!(
                    "unknown query parameter `{k}`; expected drain_timeout_ms or force"
                )));
            }
        }
    }
    Ok((timeout, force))
}

/// `since=M` (a window id) and `lb=L` (the LB process the mark came from); anything else is refused.
fn parse_window_query(query: &str) -> Result<(Option<u64>, Option<String>), ControlError> {
    let mut since = None;
    let mut lb = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "since" => {
                since = Some(v.parse().map_err(|_| {
                    ControlError::BadRequest(format!("since `{v}` is not a window id"))
                })?);
            }
            "lb" => {
                let decoded = percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .map_err(|_| ControlError::BadRequest(format!("lb `{v}` is not UTF-8")))?;
                lb = Some(decoded.into_owned());
            }
            _ => {
                return Err(ControlError::BadRequest(format!(
                    "unknown query parameter `{k}`; expected since or lb"
                )));
            }
        }
    }
    Ok((since, lb))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ControlError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            ControlError::BadRequest(format!("cannot read body (max {MAX_BODY} bytes): {e}"))
        })
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, ControlError> {
    let bytes = read_body(req).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ControlError::BadRequest(format!("body is not the expected JSON: {e}")))
}

async fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, ControlError> {
    let bytes = read_body(req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ControlError::BadRequest(format!("body is not the expected JSON: {e}")))
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"code":"internal","message":"cannot encode answer: {e}"}}}}"#)
            .into_bytes()
    });
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Lets the router return differently typed views through one helper.
mod erased {
    use super::*;

    pub(super) trait Json {
        fn to_response(&self) -> Response<Full<Bytes>>;
    }

    impl<T: Serialize> Json for T {
        fn to_response(&self) -> Response<Full<Bytes>> {
            json(StatusCode::OK, self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deregister_query_is_parsed_strictly() {
        assert!(matches!(parse_deregister_query(""), Ok((None, false))));
        assert!(matches!(
            parse_deregister_query("drain_timeout_ms=250&force=true"),
            Ok((Some(d), true)) if d == Duration::from_millis(250)
        ));
        assert!(parse_deregister_query("drain_timeout_ms=soon").is_err());
        assert!(parse_deregister_query("forse=true").is_err());
    }

    #[test]
    fn window_query_is_parsed_strictly() {
        assert!(matches!(parse_window_query(""), Ok((None, None))));
        assert!(matches!(
            parse_window_query("since=7&lb=1a-2b"),
            Ok((Some(7), Some(l))) if l == "1a-2b"
        ));
        assert!(parse_window_query("since=last").is_err());
        assert!(parse_window_query("from=3").is_err());
    }
}
