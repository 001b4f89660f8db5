//! A small JSON-over-HTTP(S) client for the coordinator API, shared by the agent and the CLI.
//!
//! Built on hyper-util's pooled client with rustls (webpki roots, plus an optional extra CA file for
//! self-signed coordinators). Every call has a deadline; failures say whether retrying can help
//! ([`ClientError::is_retryable`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_proto::wire::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A call to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator could not be reached, or the connection broke (retryable).
    #[error("{method} {url}: {detail}")]
    Transport {
        /// Method.
        method: Method,
        /// URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The coordinator answered with an error.
    #[error("{method} {url}: {status} {code}: {message}")]
    Status {
        /// Method.
        method: Method,
        /// URL.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// The error code of the body (`unauthorized`, …).
        code: String,
        /// The message of the body.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("{url}: unexpected response body: {detail}")]
    Decode {
        /// URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Local file I/O around a transfer.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A download's sha256 did not match.
    #[error("{url}: sha256 mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// URL.
        url: String,
        /// Expected.
        expected: String,
        /// Actual.
        actual: String,
    },
    /// Client configuration (base URL, CA file) is invalid.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// True when the same call may succeed later (coordinator down, restarting, overloaded).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Self::Checksum { .. } => true,
            Self::Decode { .. } | Self::Io { .. } | Self::Config(_) => false,
        }
    }

    /// The HTTP status, when the coordinator answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client bound to one coordinator and one bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7700`), trusting the webpki roots and `ca_file` if given.
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "invalid coordinator URL `{base}`: expected http://HOST:PORT or https://HOST:PORT"
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots_certs());
        if let Some(ca) = ca_file {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ClientError::Config(format!("reading CA file {}: {e}", ca.display()))
                })?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ClientError::Config(format!("CA file {}: {e}", ca.display())))?;
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            base,
            token,
            http,
            timeout: Duration::from_secs(60),
        })
    }

    /// The same client with another token.
    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            token,
            ..self.clone()
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, content_type);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        req.body(Full::new(body))
            .map_err(|e| ClientError::Config(format!("building request for {url}: {e}")))
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let method = req.method().clone();
        let url = req.uri().to_string();
        let transport = |detail: String| ClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            detail,
        };
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| transport(error_chain(&e)))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(format!("reading response: {e}")))?
                .to_bytes();
            Ok::<_, ClientError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| transport(format!("no answer within {} s", timeout.as_secs())))??;
        if status.is_success() {
            return Ok((status, body));
        }
        Err(status_error(method, url, status, &body))
    }

    fn decode<R: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<R, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Decode {
            url: format!("{}{path}", self.base),
            detail: e.to_string(),
        })
    }

    /// POST a JSON body, decode a JSON answer.
    pub async fn post<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Config(e.to_string()))?;
        let req = self.request(Method::POST, path, Bytes::from(json), "application/json")?;
        let (_, body) = self.send(req, self.timeout).await?;
        self.decode(path, &body)
    }

    /// POST a JSON body with a longer deadline (long polls).
    pub async fn post_long<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Config(e.to_string()))?;
        let req = self.request(Method::POST, path, Bytes::from(json), "application/json")?;
        let (_, body) = self.send(req, timeout).await?;
        self.decode(path, &body)
    }

    /// GET and decode a JSON answer.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        let req = self.request(Method::GET, path, Bytes::new(), "application/json")?;
        let (_, body) = self.send(req, self.timeout).await?;
        self.decode(path, &body)
    }

    /// GET a streaming answer (server-sent events): the body, once the status is a success. Only the wait for the
    /// response head has a deadline; the caller bounds the idle time between frames.
    pub async fn get_stream(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.request(Method::GET, path, Bytes::new(), "application/json")?;
        if let Ok(v) = hyper::header::HeaderValue::from_str(accept) {
            req.headers_mut().insert(hyper::header::ACCEPT, v);
        }
        let transport = |detail: String| ClientError::Transport {
            method: Method::GET,
            url: url.clone(),
            detail,
        };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| transport(format!("no answer within {} s", self.timeout.as_secs())))?
            .map_err(|e| transport(error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(status_error(Method::GET, url, status, &body))
    }

    /// POST raw bytes (an archive upload), decode a JSON answer.
    pub async fn post_bytes<R: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Bytes,
    ) -> Result<R, ClientError> {
        let req = self.request(Method::POST, path, bytes, "application/octet-stream")?;
        // Uploads may be large; allow them longer than API calls.
        let (_, body) = self.send(req, Duration::from_secs(3600)).await?;
        self.decode(path, &body)
    }

    /// Download `path` into `dest`, verifying its sha256 while streaming; written to `dest.part` then renamed.
    pub async fn download(
        &self,
        path: &str,
        dest: &Path,
        sha256: &str,
    ) -> Result<u64, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.request(Method::GET, path, Bytes::new(), "application/octet-stream")?;
        let transport = |detail: String| ClientError::Transport {
            method: Method::GET,
            url: url.clone(),
            detail,
        };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| transport("no answer".into()))?
            .map_err(|e| transport(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(status_error(Method::GET, url, status, &body));
        }
        let part = dest.with_extension("part");
        let io = |what, source| ClientError::Io {
            what,
            path: part.clone(),
            source,
        };
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| io("creating", e))?;
        let mut hasher = Sha256::new();
        let mut body = resp.into_body();
        let mut size = 0u64;
        loop {
            // An idle connection for a minute means the coordinator is gone; a slow but moving one is fine.
            let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
                .await
                .map_err(|_| transport("download stalled for 60 s".into()))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| transport(format!("reading body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                hasher.update(data);
                size += data.len() as u64;
                file.write_all(data).await.map_err(|e| io("writing", e))?;
            }
        }
        file.sync_all().await.map_err(|e| io("syncing", e))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if !actual.eq_ignore_ascii_case(sha256) {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(ClientError::Checksum {
                url,
                expected: sha256.to_owned(),
                actual,
            });
        }
        tokio::fs::rename(&part, dest)
            .await
            .map_err(|e| io("renaming", e))?;
        Ok(size)
    }
}

fn webpki_roots_certs() -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.to_vec()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A non-2xx answer as an error: the API's `{"error":{"code","message"}}` when the body is one, else the body as
/// text under the code `http_error` (a proxy's error page, say).
fn status_error(method: Method, url: String, status: StatusCode, body: &[u8]) -> ClientError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            "http_error".to_owned(),
            String::from_utf8_lossy(body).into_owned(),
        ),
    };
    ClientError::Status {
        method,
        url,
        status,
        code,
        message,
    }
}
