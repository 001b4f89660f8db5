//! The transport under the typed methods: hyper-util's pooled client with rustls, the bearer token, deadlines, and
//! streaming downloads checked against their sha256. Every non-2xx answer goes through the one mapping in
//! [`crate::error`]. Every call goes through [`crate::failover`], which picks the coordinator of the client's list;
//! this module makes one attempt at a time and says how it failed.
//!
//! Which TLS certificates it trusts is a [`Trust`]: the webpki roots (plus an optional CA file), or exactly the
//! CA of a pinned fingerprint ([`crate::pin`]), which is how agents and operators trust a coordinator serving with
//! its own CA.
//!
//! The methods here take a path built by [`crate::routes`] and are private to the crate: callers outside it use
//! the typed methods of [`Client`].

use crate::error::{ClientError, error_chain, status_error};
use crate::failover::{Bases, Failed, Failure, Resend};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
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

/// A coordinator that takes longer to accept a connection is taken as down, and the next one of the list is
/// tried: well above a slow link's handshake, well below a call's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A client of one coordinator or several (tried in order, staying on the one that answers: [`crate::failover`]),
/// with one bearer token (the admin token, the enrollment token or an agent's own token, depending on the routes
/// it calls).
#[derive(Clone, Debug)]
pub struct Client {
    bases: Bases,
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

/// One request as the typed methods describe it, sent to whichever coordinator [`Bases::call`] picks.
pub(crate) struct Call<'a> {
    method: Method,
    path: &'a str,
    body: Bytes,
    content_type: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
    resend: Resend,
    timeout: Duration,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str, resend: Resend) -> Self {
        Self {
            method,
            path,
            body: Bytes::new(),
            content_type: "application/json",
            headers: Vec::new(),
            resend,
            timeout: CALL_TIMEOUT,
        }
    }
}

/// How a failed exchange failed: no connection at all, or one that broke on the way.
fn transport_failure(e: &hyper_util::client::legacy::Error) -> Failure {
    if e.is_connect() {
        Failure::Unreached
    } else {
        Failure::Broken
    }
}

/// How a non-2xx answer failed: a 5xx may be the coordinator's trouble alone, anything else is its word.
fn status_failure(status: hyper::StatusCode) -> Failure {
    if status.is_server_error() {
        Failure::Server
    } else {
        Failure::Final
    }
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:7700`, or several URLs separated by commas), trusting the
    /// webpki roots and `ca_file` if given.
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

    /// A client for `base` (one URL, or several separated by commas: [`crate::failover::parse_bases`]) trusting
    /// what `trust` says: the pinned CA alone when a fingerprint is given, else the webpki roots and the CA file
    /// if given.
    pub fn with_trust(
        base: &str,
        token: Option<String>,
        trust: &Trust,
    ) -> Result<Self, ClientError> {
        Self::with_bases(&[base], token, trust)
    }

    /// A client for several coordinators, tried in this order (each entry one URL or a comma-separated list);
    /// every one is reached with the same `trust`.
    pub fn with_bases<S: AsRef<str>>(
        bases: &[S],
        token: Option<String>,
        trust: &Trust,
    ) -> Result<Self, ClientError> {
        let bases = Bases::new(bases)?;
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
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self { bases, token, http })
    }

    /// The same client (sharing its connection pool and the coordinator it stays on) with another token.
    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            token,
            ..self.clone()
        }
    }

    /// The base URL calls start at: the coordinator that answered last (the first of the list until then).
    pub fn base(&self) -> &str {
        self.bases.current()
    }

    /// Every base URL, in the order they are tried.
    pub fn bases(&self) -> &[String] {
        self.bases.all()
    }

    fn request(&self, base: &str, call: &Call<'_>) -> Result<Request<Full<Bytes>>, ClientError> {
        let url = format!("{base}{}", call.path);
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, call.content_type);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (name, value) in &call.headers {
            req = req.header(name, value);
        }
        req.body(Full::new(call.body.clone()))
            .map_err(|e| ClientError::Config(format!("building request for {url}: {e}")))
    }

    /// Send `call` (to the coordinators in turn, see [`Bases::call`]), read the whole answer within the call's
    /// deadline, and map a non-2xx answer to [`ClientError::Status`]. Returns the URL that answered and the body.
    async fn send(&self, call: &Call<'_>) -> Result<(String, Bytes), ClientError> {
        self.bases
            .call(call.resend, |base| self.send_to(base, call))
            .await
    }

    async fn send_to(&self, base: String, call: &Call<'_>) -> Result<(String, Bytes), Failed> {
        let req = self
            .request(&base, call)
            .map_err(|e| Failed::new(Failure::Final, e))?;
        let method = req.method().clone();
        let url = req.uri().to_string();
        let transport = |how: Failure, detail: String| {
            let error = ClientError::Transport {
                method: method.clone(),
                url: url.clone(),
                detail,
            };
            Failed::new(how, error)
        };
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| transport(transport_failure(&e), describe(&e)))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(Failure::Broken, format!("reading response: {e}")))?
                .to_bytes();
            Ok::<_, Failed>((status, body))
        };
        let (status, body) = tokio::time::timeout(call.timeout, fut)
            .await
            .map_err(|_| {
                let detail = format!("no answer within {} s", call.timeout.as_secs());
                transport(Failure::Broken, detail)
            })??;
        if status.is_success() {
            return Ok((url, body));
        }
        let error = status_error(method.clone(), url.clone(), status, &body);
        Err(Failed::new(status_failure(status), error))
    }

    /// Send `call` (to the coordinators in turn) and return the response once its head says success; only the
    /// head has the call deadline, and only a failure before it moves on to another coordinator. Returns the URL
    /// that answered and the response.
    async fn open(
        &self,
        call: &Call<'_>,
    ) -> Result<(String, hyper::Response<hyper::body::Incoming>), ClientError> {
        self.bases
            .call(call.resend, |base| self.open_at(base, call))
            .await
    }

    async fn open_at(
        &self,
        base: String,
        call: &Call<'_>,
    ) -> Result<(String, hyper::Response<hyper::body::Incoming>), Failed> {
        let req = self
            .request(&base, call)
            .map_err(|e| Failed::new(Failure::Final, e))?;
        let method = req.method().clone();
        let url = req.uri().to_string();
        let transport = |how: Failure, detail: String| {
            let error = ClientError::Transport {
                method: method.clone(),
                url: url.clone(),
                detail,
            };
            Failed::new(how, error)
        };
        let resp = tokio::time::timeout(call.timeout, self.http.request(req))
            .await
            .map_err(|_| {
                let detail = format!("no answer within {} s", call.timeout.as_secs());
                transport(Failure::Broken, detail)
            })?
            .map_err(|e| transport(transport_failure(&e), describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok((url, resp));
        }
        // The error body is read best-effort: the status alone is already the error.
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let error = status_error(method.clone(), url.clone(), status, &body);
        Err(Failed::new(status_failure(status), error))
    }

    fn decode<R: DeserializeOwned>(url: String, body: &[u8]) -> Result<R, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Decode {
            url,
            detail: e.to_string(),
        })
    }

    /// POST a JSON body within `timeout`, decode a JSON answer. `resend` says whether the call may go to another
    /// coordinator once one may have had it (each route says why).
    pub(crate) async fn post_json<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
        timeout: Option<Duration>,
        resend: Resend,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Config(e.to_string()))?;
        let mut call = Call::new(Method::POST, path, resend);
        call.body = Bytes::from(json);
        call.timeout = timeout.unwrap_or(CALL_TIMEOUT);
        let (url, body) = self.send(&call).await?;
        Self::decode(url, &body)
    }

    /// PATCH a JSON body, decode a JSON answer. Sent to another coordinator only when it reached none (a change
    /// applied twice could race another change in between).
    pub(crate) async fn patch_json<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Config(e.to_string()))?;
        let mut call = Call::new(Method::PATCH, path, Resend::OnlyIfUnsent);
        call.body = Bytes::from(json);
        let (url, body) = self.send(&call).await?;
        Self::decode(url, &body)
    }

    /// GET and decode a JSON answer. A GET changes nothing, so it may go to the next coordinator after any failure.
    pub(crate) async fn get_json<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        let call = Call::new(Method::GET, path, Resend::Idempotent);
        let (url, body) = self.send(&call).await?;
        Self::decode(url, &body)
    }

    /// DELETE a resource (the answer has no body). Not sent to another coordinator once one may have had it: the
    /// second would answer 404 for what the first removed, which reads as a failure.
    pub(crate) async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let call = Call::new(Method::DELETE, path, Resend::OnlyIfUnsent);
        self.send(&call).await.map(drop)
    }

    /// POST raw bytes (an archive upload), decode a JSON answer.
    pub(crate) async fn post_bytes<R: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Bytes,
    ) -> Result<R, ClientError> {
        self.post_bytes_with(path, bytes, None).await
    }

    /// [`Self::post_bytes`] with one extra request header `(name, value)`. An upload goes to another coordinator
    /// only when it reached none: once its body started to go out it is never sent again elsewhere (an upload
    /// may be large, and is meant to become a stream that cannot be replayed).
    pub(crate) async fn post_bytes_with<R: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Bytes,
        header: Option<(&str, &str)>,
    ) -> Result<R, ClientError> {
        let mut call = Call::new(Method::POST, path, Resend::OnlyIfUnsent);
        call.body = bytes;
        call.content_type = "application/octet-stream";
        call.timeout = UPLOAD_TIMEOUT;
        if let Some((name, value)) = header {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Config(format!("header name `{name}`: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ClientError::Config(format!("header `{name}`: {e}")))?;
            call.headers.push((name, value));
        }
        let (url, body) = self.send(&call).await?;
        Self::decode(url, &body)
    }

    /// GET a streaming answer: the body, once the status is a success. Only the wait for the response head has a
    /// deadline; the caller bounds the idle time between frames. A stream that breaks later is the caller's to
    /// open again (and then it starts at the coordinator that answers).
    pub(crate) async fn get_stream(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let mut call = Call::new(Method::GET, path, Resend::Idempotent);
        if let Ok(v) = HeaderValue::from_str(accept) {
            call.headers.push((hyper::header::ACCEPT, v));
        }
        Ok(self.open(&call).await?.1.into_body())
    }

    /// Download `path` into `dest`, verifying its sha256 while streaming; written to `dest.part` then renamed, so
    /// `dest` only ever holds a verified archive.
    pub(crate) async fn download(
        &self,
        path: &str,
        dest: &Path,
        sha256: &str,
    ) -> Result<u64, ClientError> {
        let mut call = Call::new(Method::GET, path, Resend::Idempotent);
        call.content_type = "application/octet-stream";
        let (url, resp) = self.open(&call).await?;
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
