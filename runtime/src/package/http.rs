//! Downloading a bundle over `http(s)://` with hyper (rustls, Mozilla's webpki roots): follows a few redirects,
//! refuses non-2xx answers and https → http downgrades, and streams the body as chunks into a bounded channel that
//! the blocking unpack side reads.

use super::error::PackageError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Redirect hops followed before giving up (CodeDeploy's GitHub download follows redirects; S3 presigned URLs and
/// artifact stores use one or two).
const MAX_REDIRECTS: usize = 5;
/// Time to establish a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time from sending the request to receiving the response headers.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause between two body chunks before the download is abandoned. An idle limit rather than a total one:
/// a large bundle on a slow link is fine as long as bytes keep coming.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Body chunks buffered between the network task and the unpacker (hyper's chunks are a few KiB to 1 MiB).
const BODY_QUEUE: usize = 32;

/// The chunks of a response body, or the error that ended it.
pub(crate) type BodyChunks = tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>;

fn http_err(url: &Url, detail: impl std::fmt::Display) -> PackageError {
    PackageError::Http {
        url: redact(url),
        detail: detail.to_string(),
    }
}

/// GET `url`, following redirects, and start streaming its body. Returns the final URL and the body's chunks.
pub(crate) async fn get(url: &Url) -> Result<(Url, BodyChunks), PackageError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| http_err(url, e))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);

    let mut current = url.clone();
    let mut hops = 0;
    let response = loop {
        let response = send(&client, &current).await?;
        let status = response.status();
        if status.is_success() {
            break response;
        }
        if !is_redirect(status) {
            return Err(PackageError::HttpStatus {
                url: redact(&current),
                status: status.as_u16(),
            });
        }
        hops += 1;
        let redirect_err = |reason: String| PackageError::Redirect {
            url: redact(&current),
            reason,
        };
        if hops > MAX_REDIRECTS {
            return Err(redirect_err(format!("more than {MAX_REDIRECTS} redirects")));
        }
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| redirect_err("missing or non-ASCII Location header".into()))?;
        let next = current
            .join(location)
            .map_err(|e| redirect_err(format!("invalid Location `{location}`: {e}")))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(redirect_err(format!(
                "Location `{}` is not http(s)",
                redact(&next)
            )));
        }
        if current.scheme() == "https" && next.scheme() == "http" {
            return Err(redirect_err(format!(
                "refusing https → http downgrade to `{}`",
                redact(&next)
            )));
        }
        tracing::debug!(from = %redact(&current), to = %redact(&next), "following redirect");
        current = next;
    };

    let (tx, rx) = tokio::sync::mpsc::channel(BODY_QUEUE);
    let mut body = response.into_body();
    tokio::spawn(async move {
        loop {
            let item = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => Ok(data),
                    Err(_) => continue, // trailers
                },
                Ok(Some(Err(e))) => Err(std::io::Error::other(e)),
                Ok(None) => break,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no data for {} s", IDLE_TIMEOUT.as_secs()),
                )),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Ok((current, rx))
}

/// A URL fit for logs and errors: no password, and no query string (presigned URLs carry their signature there).
pub(crate) fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("…"));
    }
    shown.to_string()
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

async fn send<C>(
    client: &Client<C, Empty<Bytes>>,
    url: &Url,
) -> Result<Response<Incoming>, PackageError>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let request = Request::get(url.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("rollcage/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| http_err(url, e))?;
    match tokio::time::timeout(HEADERS_TIMEOUT, client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(http_err(url, error_chain(&e))),
        Err(_) => Err(http_err(
            url,
            format!("no response within {} s", HEADERS_TIMEOUT.as_secs()),
        )),
    }
}

/// hyper-util's error says only "client error (Connect)"; the useful part is in its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_and_signatures() -> Result<(), url::ParseError> {
        let url = Url::parse("https://u:secret@host/b.tgz?X-Amz-Signature=abc")?;
        let shown = redact(&url);
        assert!(
            !shown.contains("secret") && !shown.contains("abc"),
            "{shown}"
        );
        assert!(shown.starts_with("https://u@host/b.tgz?"), "{shown}");
        Ok(())
    }
}
