//! The `http_get` host function of `rollcage:hook/v1`: a GET through the agent, allowed only under the URL
//! prefixes of the hook's `sandbox.http` grant, with a bounded body and timeouts.
//!
//! WASI preview 1 cannot open sockets, so this function is a hook's whole network. The grant check ([`check_grant`],
//! also the one of components' `wasi:http`, [`super::wasi_http`]) parses both
//! URLs and compares scheme, host, port and path segments — never raw string prefixes, which
//! `http://127.0.0.1:80@evil/` would defeat. A refusal returns [`HTTP_ERR_DENIED`] to the guest and writes an
//! agent line naming the URL and the grant to `scripts.log`.

use super::HookState;
use super::audit::{Kind, Verdict};
use super::output::Chunk;
use crate::hooks::log::Stream;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_proto::hostcall::{
    HTTP_ERR_BAD_ARGS, HTTP_ERR_DENIED, HTTP_ERR_IO, HTTP_ERR_TOO_LARGE, HTTP_MAX_BODY_BYTES,
    HTTP_MAX_URL_BYTES,
};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use url::Url;
use wasmtime::{Caller, Extern};

/// Connect timeout. Health endpoints are local or near; a black-holed address should fail fast so the hook can
/// retry within its own deadline.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout (headers and body). The hook's wall-clock timeout still applies on top.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body as both kinds of hook send it: empty for `http_get`, the guest's stream for `wasi:http`.
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The HTTP client of the agent's wasm hooks (`http_get` and `wasi:http` alike): `http://` and `https://`, TLS by
/// rustls. Cheap to clone (a shared pool).
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// A client trusting the platform's roots plus `extra_ca` (a hook's `sandbox.http_ca`), with the connect timeout
/// set. Plain `http://` goes through the same connector.
pub(crate) fn client(extra_ca: &[rustls::pki_types::CertificateDer<'static>]) -> HttpClient {
    let mut roots = platform_roots().clone();
    for cert in extra_ca {
        // A certificate rustls cannot use as a trust anchor is reported when the CA file is read (`read_ca`).
        let _ = roots.add(cert.clone());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.enforce_http(false);
    let https = match tls {
        Ok(tls) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector),
        // ring's defaults always include TLS 1.2 and 1.3; unreachable in practice, and then https fails cleanly.
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector),
    };
    Client::builder(TokioExecutor::new()).build(https)
}

/// Largest `sandbox.http_ca` file read: a bundle of a few internal CAs is a few KiB.
pub(crate) const MAX_CA_BYTES: u64 = 1 << 20;

/// Read the hook's `sandbox.http_ca` (a path inside the revision; a symlink may not lead out of it) and parse its
/// certificates; each must be usable as a trust anchor.
pub(crate) fn read_ca(
    revision_dir: &std::path::Path,
    rel: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, super::sandbox::HttpCaError> {
    use rustls::pki_types::pem::PemObject as _;
    let fail = |reason: String| super::sandbox::HttpCaError {
        path: rel.to_owned(),
        reason,
    };
    let path = super::confine(revision_dir, &revision_dir.join(rel)).map_err(fail)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?,
            MAX_CA_BYTES + 1,
        ),
        &mut bytes,
    )
    .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_CA_BYTES {
        return Err(fail("too large".to_owned()));
    }
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE block in it".to_owned()));
    }
    let mut check = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        check
            .add(cert.clone())
            .map_err(|e| fail(format!("certificate {}: {e}", i + 1)))?;
    }
    Ok(certs)
}

/// The platform's trust roots (the system store as `rustls-native-certs` finds it), loaded once per agent; when the
/// machine has none (no `ca-certificates`), the Mozilla roots compiled into `webpki-roots`.
fn platform_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                errors = found.errors.len(),
                "no platform TLS roots found; hooks' https:// requests trust the webpki-roots set"
            );
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// The URL prefixes one hook may request, parsed once per run.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpGrant {
    prefixes: Vec<Url>,
    /// The grant as written, for messages.
    shown: Vec<String>,
}

impl HttpGrant {
    /// Parse the `sandbox.http` entries; entries that do not parse as `http://` or `https://` URLs grant nothing
    /// (the AppSpec validator reports them).
    pub(crate) fn new(prefixes: &[String]) -> Self {
        let parsed = prefixes
            .iter()
            .filter_map(|p| Url::parse(p).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .collect();
        Self {
            prefixes: parsed,
            shown: prefixes.to_vec(),
        }
    }

    /// The grant as a reason, for refusal messages.
    pub(crate) fn describe(&self) -> String {
        if self.shown.is_empty() {
            "sandbox.http is empty (no URL is granted)".to_owned()
        } else {
            format!("sandbox.http grants {:?}", self.shown)
        }
    }
}

/// Why a URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a valid absolute `http://`/`https://` URL without user info.
    BadUrl(String),
    /// Valid, but under no granted prefix.
    Denied,
}

impl Refusal {
    /// The `scripts.log` line of a refused request: the URL and why (the grant, for a denial). One wording for
    /// `http_get` and `wasi:http`.
    pub(crate) fn note(&self, via: &str, method: &str, url: &str, grant: &HttpGrant) -> String {
        match self {
            Self::BadUrl(why) => format!("{via} refused: {why}"),
            Self::Denied => format!(
                "{via} refused: {method} {url} is not under the hook's grant; {}",
                grant.describe()
            ),
        }
    }

    /// The audit detail of a refused request.
    pub(crate) fn audit_detail(&self, method: &str, url: &str) -> String {
        match self {
            Self::BadUrl(_) => format!("{method} {url} (bad URL)"),
            Self::Denied => format!("{method} {url} (not granted)"),
        }
    }
}

/// Decide whether `url` is under one of the granted prefixes. Pure. The one grant check of both kinds of hook:
/// `http_get` (preview 1) and `wasi:http` (components) call it before anything is sent.
///
/// A prefix matches when scheme, host and port are equal and its path is a segment-wise prefix of the URL's
/// (`/api` covers `/api` and `/api/x`, not `/apix`; `/api/` covers `/api/x`). `http://` and `https://` are
/// different grants. Paths are compared after URL normalisation, so `..` cannot climb out of a granted path.
pub(crate) fn check_grant(grant: &HttpGrant, url: &str) -> Result<Url, Refusal> {
    let parsed =
        Url::parse(url).map_err(|e| Refusal::BadUrl(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refusal::BadUrl(format!(
            "`{url}`: only http:// and https:// URLs can be fetched"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refusal::BadUrl(format!(
            "`{url}`: URLs with user info are not allowed"
        )));
    }
    if parsed.host_str().is_none() {
        return Err(Refusal::BadUrl(format!("`{url}` has no host")));
    }
    let covered = grant.prefixes.iter().any(|p| {
        p.scheme() == parsed.scheme()
            && p.host_str() == parsed.host_str()
            && p.port_or_known_default() == parsed.port_or_known_default()
            && path_covers(p.path(), parsed.path())
    });
    if covered {
        Ok(parsed)
    } else {
        Err(Refusal::Denied)
    }
}

fn path_covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// What a GET produced.
enum Fetch {
    Response { status: u16, body: Bytes },
    Failed(i32, String),
}

async fn fetch(client: &HttpClient, url: &Url) -> Fetch {
    let empty = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let request = match hyper::Request::get(url.as_str()).body(empty) {
        Ok(r) => r,
        Err(e) => return Fetch::Failed(HTTP_ERR_BAD_ARGS, format!("building the request: {e}")),
    };
    let exchange = async {
        let resp = client
            .request(request)
            .await
            .map_err(|e| (HTTP_ERR_IO, error_chain(&e)))?;
        let status = resp.status().as_u16();
        let limited = Limited::new(resp.into_body(), HTTP_MAX_BODY_BYTES as usize);
        match limited.collect().await {
            Ok(body) => Ok((status, body.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err((
                HTTP_ERR_TOO_LARGE,
                format!("body larger than {HTTP_MAX_BODY_BYTES} bytes"),
            )),
            Err(e) => Err((HTTP_ERR_IO, format!("reading the body: {e}"))),
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok((status, body))) => Fetch::Response { status, body },
        Ok(Err((code, msg))) => Fetch::Failed(code, msg),
        Err(_) => Fetch::Failed(
            HTTP_ERR_IO,
            format!(
                "no complete response within {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// A client error with its causes (hyper-util's own text is only "client error (Connect)").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn note(tx: &UnboundedSender<Chunk>, text: String) {
    let _ = tx.send((Stream::Agent, Bytes::from(text)));
}

/// The host side of `http_get(url_ptr, url_len, body_ptr, body_cap, body_len_ptr) -> i32`; see
/// [`rollcage_proto::hostcall`]. Policy denials and I/O failures are return codes; only a host bug would trap.
pub(crate) async fn http_get(
    mut caller: Caller<'_, HookState>,
    args: (i32, i32, i32, i32, i32),
) -> i32 {
    let (url_ptr, url_len, body_ptr, body_cap, body_len_ptr) = args;
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return HTTP_ERR_BAD_ARGS;
    };
    // Guest pointers are u32 offsets; i32 is only the ABI's spelling.
    let (url_ptr, url_len) = (url_ptr as u32 as usize, url_len as u32 as usize);
    let (body_ptr, body_cap, body_len_ptr) = (
        body_ptr as u32 as usize,
        body_cap as u32 as usize,
        body_len_ptr as u32 as usize,
    );
    if url_len > HTTP_MAX_URL_BYTES as usize {
        return HTTP_ERR_BAD_ARGS;
    }
    let mut raw = vec![0u8; url_len];
    if memory.read(&caller, url_ptr, &mut raw).is_err() {
        return HTTP_ERR_BAD_ARGS;
    }
    let Ok(url) = String::from_utf8(raw) else {
        return HTTP_ERR_BAD_ARGS;
    };
    let state = caller.data();
    let notes = state.notes.clone();
    let parsed = match check_grant(&state.http, &url) {
        Ok(u) => u,
        Err(refusal) => {
            note(&notes, refusal.note("http_get", "GET", &url, &state.http));
            let detail = refusal.audit_detail("GET", &url);
            caller
                .data_mut()
                .audit
                .record(Kind::Http, Verdict::Denied, detail);
            return match refusal {
                Refusal::BadUrl(_) => HTTP_ERR_BAD_ARGS,
                Refusal::Denied => HTTP_ERR_DENIED,
            };
        }
    };
    let client = state.client.clone();
    match fetch(&client, &parsed).await {
        Fetch::Response { status, body } => {
            caller.data_mut().audit.record(
                Kind::Http,
                Verdict::Allowed,
                format!("GET {url} -> {status}, {} bytes", body.len()),
            );
            let keep = body.len().min(body_cap);
            let len = (body.len() as u32).to_le_bytes();
            if memory.write(&mut caller, body_ptr, &body[..keep]).is_err()
                || memory.write(&mut caller, body_len_ptr, &len).is_err()
            {
                return HTTP_ERR_BAD_ARGS;
            }
            i32::from(status)
        }
        Fetch::Failed(code, why) => {
            note(&notes, format!("http_get GET {url} failed: {why}"));
            let detail = format!("GET {url} -> failed: {why}");
            caller
                .data_mut()
                .audit
                .record(Kind::Http, Verdict::Allowed, detail);
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(p: &[&str]) -> HttpGrant {
        HttpGrant::new(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn prefixes_compare_parsed_parts() {
        let g = grant(&["http://127.0.0.1:8080/", "http://svc.local/api"]);
        assert!(check_grant(&g, "http://127.0.0.1:8080/health").is_ok());
        assert!(check_grant(&g, "http://svc.local/api").is_ok());
        assert!(check_grant(&g, "http://svc.local:80/api/v1").is_ok());
        assert_eq!(
            check_grant(&g, "http://svc.local/apix"),
            Err(Refusal::Denied)
        );
        assert_eq!(
            check_grant(&g, "http://svc.local/api/../admin"),
            Err(Refusal::Denied)
        );
        assert_eq!(
            check_grant(&g, "http://127.0.0.1:8081/health"),
            Err(Refusal::Denied)
        );
        assert_eq!(
            check_grant(&g, "http://127.0.0.1/health"),
            Err(Refusal::Denied)
        );
    }

    #[test]
    fn user_info_and_other_schemes_are_bad_urls() {
        let g = grant(&["http://127.0.0.1:8080/"]);
        assert!(matches!(
            check_grant(&g, "http://a:b@127.0.0.1:8080/"),
            Err(Refusal::BadUrl(_))
        ));
        assert!(matches!(
            check_grant(&g, "http://127.0.0.1:8080@evil.example/"),
            Err(Refusal::BadUrl(_))
        ));
        assert!(matches!(
            check_grant(&g, "file:///etc/passwd"),
            Err(Refusal::BadUrl(_))
        ));
        assert!(matches!(
            check_grant(&g, "not a url"),
            Err(Refusal::BadUrl(_))
        ));
        assert_eq!(
            check_grant(&grant(&[]), "http://127.0.0.1:8080/"),
            Err(Refusal::Denied)
        );
    }
}
