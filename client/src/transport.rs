//! The transport under the typed methods: hyper-util's pooled client with rustls, the bearer token, deadlines, and
//! streaming downloads checked against their sha256. Every non-2xx answer goes through the one mapping in
//! [`crate::error`].
//!
//! Which TLS certificates it trusts is a [`Trust`]: the webpki roots (plus an optional CA file), or exactly the
//! CA of a pinned fingerprint ([`crate::pin`]), which is how agents and operators trust a coordinator serving with
//! its own CA.
//!
//! The methods here take a path built by [`crate::routes`] and are private to the crate: callers outside it use
//! the typed methods of [`Client`].

use crate::error::{ClientError, error_chain, status_error};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_proto::fingerprint::CaFingerprint;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Deadline of an ordinary API call (long polls and uploads have their own).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Uploads may be large; they get far longer than API calls.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// A download idle this long means the coordinator is gone; a slow but moving one is fine.
const DOWNLOAD_STALL: Duration = Duration::from_secs(60);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The webpki roots, plus the certificates of `ca_file` if given.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca_file {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ClientError::Config(format!("reading CA file {}: {e}", ca.display())))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| ClientError::Config(format!("CA file {}: {e}", ca.display())))?;
        }
    }
    Ok(roots)
}

/// A failed connection or exchange, said plainly: a pinned-CA mismatch by itself, anything else with its sources.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    match crate::pin::find_mismatch(e) {
        Some(m) => m.to_string(),
        None => error_chain(e),
    }
}

/// A client bound to one coordinator and one bearer token (the admin token, the enrollment token or an agent's
/// own token, depending on the routes it calls).
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<Connector, Full<Bytes>>,
}

/// Which certificates a TLS coordinator may present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// An extra CA certificate file (PEM), trusted besides the webpki roots (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the CA whose certificate has this fingerprint, and nothing else (`--ca-fingerprint`).
    pub ca_fingerprint: Option<CaFingerprint>,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7700`), trusting the webpki roots and `ca_file` if given.
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let trust = Trust {
            ca_file: ca_file.map(Path::to_owned),
            ca_fingerprint: None,
        };
        Self::with_trust(base, token, &trust)
    }

    /// A client for `base` trusting what `trust` says: the pinned CA alone when a fingerprint is given, else the
    /// webpki roots and the CA file if given.
    pub fn with_trust(
        base: &str,
        token: Option<String>,
        trust: &Trust,
    ) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "invalid coordinator URL `{base}`: expected http://HOST:PORT or https://HOST:PORT"
            )));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        let tls = match (&trust.ca_fingerprint, &trust.ca_file) {
            (Some(_), Some(file)) => {
                return Err(ClientError::Config(format!(
                    "both a CA fingerprint and a CA file ({}) given: pass one (the fingerprint trusts exactly \
                     the coordinator's own CA)",
                    file.display()
                )));
            }
            (Some(pin), None) => tls
                .dangerous()
                .with_custom_certificate_verifier(std::sync::Arc::new(crate::pin::PinnedCa::new(
                    *pin, provider,
                ))),
            (None, ca_file) => tls.with_root_certificates(roots(ca_file.as_deref())?),
        }
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
        Ok(Self { base, token, http })
    }

    /// The same client (sharing its connection pool) with another token.
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let url = self.url(path);
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

    /// Send `req`, read the whole answer within `timeout`, and map a non-2xx answer to [`ClientError::Status`].
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
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
                .map_err(|e| transport(describe(&e)))?;
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
            return Ok(body);
        }
        Err(status_error(method, url, status, &body))
    }

    /// Send `req` and return the response once its head says success; only the head has the call deadline.
    async fn open(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let method = req.method().clone();
        let url = req.uri().to_string();
        let transport = |detail: String| ClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            detail,
        };
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| transport(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))?
            .map_err(|e| transport(describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // The error body is read best-effort: the status alone is already the error.
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(status_error(method, url, status, &body))
    }

    fn decode<R: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<R, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Decode {
            url: self.url(path),
            detail: e.to_string(),
        })
    }

    /// POST a JSON body within `timeout`, decode a JSON answer.
    pub(crate) async fn post_json<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
        timeout: Option<Duration>,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Config(e.to_string()))?;
        let req = self.request(Method::POST, path, Bytes::from(json), "application/json")?;
        let body = self.send(req, timeout.unwrap_or(CALL_TIMEOUT)).await?;
        self.decode(path, &body)
    }

    /// GET and decode a JSON answer.
    pub(crate) async fn get_json<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        let req = self.request(Method::GET, path, Bytes::new(), "application/json")?;
        let body = self.send(req, CALL_TIMEOUT).await?;
        self.decode(path, &body)
    }

    /// DELETE a resource (the answer has no body).
    pub(crate) async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let req = self.request(Method::DELETE, path, Bytes::new(), "application/json")?;
        self.send(req, CALL_TIMEOUT).await.map(drop)
    }

    /// POST raw bytes (an archive upload), decode a JSON answer.
    pub(crate) async fn post_bytes<R: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Bytes,
    ) -> Result<R, ClientError> {
        self.post_bytes_with(path, bytes, None).await
    }

    /// [`Self::post_bytes`] with one extra request header `(name, value)`.
    pub(crate) async fn post_bytes_with<R: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Bytes,
        header: Option<(&str, &str)>,
    ) -> Result<R, ClientError> {
        let mut req = self.request(Method::POST, path, bytes, "application/octet-stream")?;
        if let Some((name, value)) = header {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Config(format!("header name `{name}`: {e}")))?;
            let value = hyper::header::HeaderValue::from_str(value)
                .map_err(|e| ClientError::Config(format!("header `{name}`: {e}")))?;
            req.headers_mut().insert(name, value);
        }
        let body = self.send(req, UPLOAD_TIMEOUT).await?;
        self.decode(path, &body)
    }

    /// GET a streaming answer: the body, once the status is a success. Only the wait for the response head has a
    /// deadline; the caller bounds the idle time between frames.
    pub(crate) async fn get_stream(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let mut req = self.request(Method::GET, path, Bytes::new(), "application/json")?;
        if let Ok(v) = hyper::header::HeaderValue::from_str(accept) {
            req.headers_mut().insert(hyper::header::ACCEPT, v);
        }
        Ok(self.open(req).await?.into_body())
    }

    /// Download `path` into `dest`, verifying its sha256 while streaming; written to `dest.part` then renamed, so
    /// `dest` only ever holds a verified archive.
    pub(crate) async fn download(
        &self,
        path: &str,
        dest: &Path,
        sha256: &str,
    ) -> Result<u64, ClientError> {
        let url = self.url(path);
        let req = self.request(Method::GET, path, Bytes::new(), "application/octet-stream")?;
        let resp = self.open(req).await?;
        let transport = |detail: String| ClientError::Transport {
            method: Method::GET,
            url: url.clone(),
            detail,
        };
        let part = dest.with_extension("part");
        let io = |what, source| ClientError::Io {
            what,
            path: part.clone(),
            source,
        };
        let written = async {
            let mut file = tokio::fs::File::create(&part)
                .await
                .map_err(|e| io("creating", e))?;
            let mut hasher = Sha256::new();
            let mut body = resp.into_body();
            let mut size = 0u64;
            loop {
                let frame = tokio::time::timeout(DOWNLOAD_STALL, body.frame())
                    .await
                    .map_err(|_| {
                        transport(format!(
                            "download stalled for {} s",
                            DOWNLOAD_STALL.as_secs()
                        ))
                    })?;
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
                return Err(ClientError::Checksum {
                    url: url.clone(),
                    expected: sha256.to_owned(),
                    actual,
                });
            }
            tokio::fs::rename(&part, dest)
                .await
                .map_err(|e| io("renaming", e))?;
            Ok(size)
        }
        .await;
        if written.is_err() {
            // Best effort: a `.part` left by a full disk would hold the very space the next attempt needs.
            let _ = tokio::fs::remove_file(&part).await;
        }
        written
    }
}
