//! `wasi:http/outgoing-handler` for components, filtered by the hook's `sandbox.http` grant.
//!
//! wasmtime-wasi-http turns the guest's request into an `http::Request` and hands it to
//! [`WasiHttpHooks::send_request`]; [`GrantedHttp`] is that hook. Before anything leaves it runs the same check as
//! the preview-1 `http_get` ([`check_grant`]: scheme, host, port, path prefix, parsed): a refused request never
//! reaches a resolver or a socket, the guest gets `HTTP-request-denied`, and `scripts.log` gets a line naming the
//! URL and the grant. A granted one goes through the agent's hook client ([`HttpClient`]: connect timeout, TLS by
//! rustls with the platform's roots and the hook's `http_ca`), with a deadline for the response headers and a
//! body that is cut at [`HTTP_MAX_BODY_BYTES`] or when [`REQUEST_TIMEOUT`] has passed since the request started.
//!
//! Every request is audited (method, URL, status, bytes read by the guest — or the denial or failure). The hook
//! runs outside the store borrow of the other audited calls, so its records go into a small shared log
//! ([`HttpLog`]) that the runner folds into the hook's [`Audit`] when the guest has ended; bounded like the audit.

use super::audit::{Audit, Kind, MAX_LISTED, Verdict};
use super::http::{self, HttpClient, HttpGrant, REQUEST_TIMEOUT, check_grant};
use super::output::Chunk;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use rollcage_proto::hostcall::HTTP_MAX_BODY_BYTES;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc::UnboundedSender;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// What happened to one request, as far as the audit is concerned.
#[derive(Debug)]
enum Outcome {
    Denied(String),
    Failed(String),
    /// The status, and the body bytes the guest has read so far (final once the guest has ended).
    Answered(u16, Arc<AtomicU64>),
}

/// The `wasi:http` records of one run: the first [`MAX_LISTED`] in full, the rest counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct HttpLog(Arc<Mutex<LogInner>>);

#[derive(Debug, Default)]
struct LogInner {
    listed: Vec<(String, Outcome)>,
    denied_unlisted: u64,
    allowed_unlisted: u64,
}

impl HttpLog {
    fn push(&self, request: String, outcome: Outcome) {
        let Ok(mut log) = self.0.lock() else { return };
        if log.listed.len() < MAX_LISTED {
            log.listed.push((request, outcome));
        } else if matches!(outcome, Outcome::Denied(_)) {
            log.denied_unlisted += 1;
        } else {
            log.allowed_unlisted += 1;
        }
    }

    /// Move the records into the hook's audit (call when the guest has ended).
    pub(crate) fn drain_into(&self, audit: &mut Audit) {
        let Ok(mut log) = self.0.lock() else { return };
        for (request, outcome) in log.listed.drain(..) {
            let (verdict, detail) = match outcome {
                Outcome::Denied(why) => (Verdict::Denied, format!("{request} ({why})")),
                Outcome::Failed(why) => (Verdict::Allowed, format!("{request} -> failed: {why}")),
                Outcome::Answered(status, bytes) => (
                    Verdict::Allowed,
                    format!(
                        "{request} -> {status}, {} bytes",
                        bytes.load(Ordering::Relaxed)
                    ),
                ),
            };
            audit.record(Kind::Http, verdict, detail);
        }
        audit.count_unlisted(Kind::Http, Verdict::Denied, log.denied_unlisted);
        audit.count_unlisted(Kind::Http, Verdict::Allowed, log.allowed_unlisted);
        log.denied_unlisted = 0;
        log.allowed_unlisted = 0;
    }
}

/// The `wasi:http` hooks of one component run: the grant, the client, where refusals and records go.
pub(crate) struct GrantedHttp {
    pub(crate) grant: HttpGrant,
    pub(crate) client: HttpClient,
    pub(crate) notes: UnboundedSender<Chunk>,
    pub(crate) log: HttpLog,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                hyper::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for GrantedHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let method = request.method().to_string();
        let url = request.uri().to_string();
        let shown = format!("{method} {url}");
        if let Err(refusal) = check_grant(&self.grant, &url) {
            http::note(
                &self.notes,
                refusal.note("wasi:http", &method, &url, &self.grant),
            );
            let why = match refusal {
                http::Refusal::BadUrl(_) => "bad URL",
                http::Refusal::Denied => "not granted",
            };
            self.log.push(shown, Outcome::Denied(why.to_owned()));
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let (client, notes, log) = (self.client.clone(), self.notes.clone(), self.log.clone());
        Box::new(async move {
            let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
            let failed = |why: String, error: Error| {
                http::note(&notes, format!("wasi:http {shown} failed: {why}"));
                log.push(shown.clone(), Outcome::Failed(why));
                Err(error)
            };
            let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
                Err(_) => {
                    let why = format!("no response within {} s", REQUEST_TIMEOUT.as_secs());
                    return failed(why, Error::HttpResponseTimeout);
                }
                Ok(Err(e)) => {
                    let why = http::error_chain(&e);
                    let code = if e.is_connect() {
                        Error::ConnectionRefused
                    } else {
                        Error::HttpProtocolError
                    };
                    return failed(why, code);
                }
                Ok(Ok(r)) => r,
            };
            let cap = u64::from(HTTP_MAX_BODY_BYTES);
            if let Some(len) = response.body().size_hint().exact().filter(|&n| n > cap) {
                let why = format!("body of {len} bytes, larger than {HTTP_MAX_BODY_BYTES} bytes");
                return failed(why, Error::HttpResponseBodySize(Some(len)));
            }
            let bytes = Arc::new(AtomicU64::new(0));
            log.push(
                shown,
                Outcome::Answered(response.status().as_u16(), bytes.clone()),
            );
            let response = response.map(|incoming| {
                Bounded {
                    inner: incoming,
                    read: bytes,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                }
                .boxed_unsync()
            });
            let io: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// A response body cut at [`HTTP_MAX_BODY_BYTES`] and at the request's deadline, counting what the guest reads.
struct Bounded {
    inner: hyper::body::Incoming,
    read: Arc<AtomicU64>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let total = self.read.fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if total > u64::from(HTTP_MAX_BODY_BYTES) {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            u64::from(HTTP_MAX_BODY_BYTES),
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chatty_guest_is_listed_up_to_the_cap_and_counted_beyond() {
        let log = HttpLog::default();
        let bytes = Arc::new(AtomicU64::new(7));
        log.push("GET http://a/ok".to_owned(), Outcome::Answered(200, bytes));
        log.push(
            "GET http://a/down".to_owned(),
            Outcome::Failed("connection refused".to_owned()),
        );
        for i in 0..100 {
            log.push(
                format!("GET http://b/{i}"),
                Outcome::Denied("not granted".to_owned()),
            );
        }
        let mut audit = Audit::default();
        log.drain_into(&mut audit);
        let lines = audit.lines();
        assert_eq!(lines.len(), MAX_LISTED + 1, "{lines:#?}");
        assert_eq!(lines[0], "http GET http://a/ok -> 200, 7 bytes allowed");
        assert_eq!(
            lines[1],
            "http GET http://a/down -> failed: connection refused allowed"
        );
        assert_eq!(lines[2], "http GET http://b/0 (not granted) denied");
        let summary = lines.last().map(String::as_str).unwrap_or_default();
        assert!(
            summary.contains("http allowed=2")
                && summary.contains("http denied=100")
                && summary.contains(&format!("{} more not listed", 102 - MAX_LISTED)),
            "{summary}"
        );
    }
}
