//! HTTP GET through the agent: allowed only under the URL prefixes of the hook's `sandbox.http` grant.
//!
//! WASI preview 1 has no sockets, so this is the hook's only network access (a component's is `wasi:http`, under
//! the same grant). The agent bounds the body to
//! [`MAX_BODY_BYTES`] and applies its own connect/read timeouts; the hook's wall-clock timeout covers the call.

#[cfg(not(all(target_arch = "wasm32", target_env = "p2")))]
use crate::sys;
use rollcage_proto::hostcall;
use std::fmt;

/// Largest body the agent returns.
pub const MAX_BODY_BYTES: usize = hostcall::HTTP_MAX_BODY_BYTES as usize;

#[cfg(not(all(target_arch = "wasm32", target_env = "p2")))]
/// First buffer size tried; most health and config answers fit, larger ones cost one more request.
const FIRST_BUFFER: usize = 16 * 1024;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (at most [`MAX_BODY_BYTES`]).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a GET got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is outside the hook's `sandbox.http` grant.
    Denied {
        /// The URL asked for.
        url: String,
    },
    /// Connecting, sending or reading failed.
    Io {
        /// The URL asked for.
        url: String,
    },
    /// The URL is not a valid `http://` URL.
    BadUrl {
        /// The URL asked for.
        url: String,
    },
    /// The body is larger than [`MAX_BODY_BYTES`].
    TooLarge {
        /// The URL asked for.
        url: String,
    },
    /// Not running inside a rollcage agent (host builds), or the agent answered with an unknown code.
    Unsupported {
        /// The code, if the agent answered.
        code: i32,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied { url } => write!(
                f,
                "GET {url}: denied, not under the hook's sandbox.http grant"
            ),
            Self::Io { url } => write!(f, "GET {url}: connection or I/O error"),
            Self::BadUrl { url } => write!(f, "GET {url}: not a valid http:// or https:// URL"),
            Self::TooLarge { url } => {
                write!(f, "GET {url}: body larger than {MAX_BODY_BYTES} bytes")
            }
            Self::Unsupported { code } => write!(f, "http_get is not available here (code {code})"),
        }
    }
}

impl std::error::Error for HttpError {}

/// GET `url`. Any status is a response (check [`Response::status`]); an error means there was none.
///
/// In a preview-1 module this is the agent's `http_get` import; in a WASI 0.2 component (`wasm32-wasip2`) it is
/// `wasi:http/outgoing-handler`, which the agent filters by the same grant.
#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
pub fn get(url: &str) -> Result<Response, HttpError> {
    wasi_http::get(url)
}

/// GET `url`. Any status is a response (check [`Response::status`]); an error means there was none.
///
/// In a preview-1 module this is the agent's `http_get` import; in a WASI 0.2 component (`wasm32-wasip2`) it is
/// `wasi:http/outgoing-handler`, which the agent filters by the same grant.
#[cfg(not(all(target_arch = "wasm32", target_env = "p2")))]
pub fn get(url: &str) -> Result<Response, HttpError> {
    let mut buf = vec![0u8; FIRST_BUFFER];
    loop {
        let (code, len) = sys::http_get(url, &mut buf);
        let owned = || url.to_owned();
        match code {
            100..=599 => {
                let len = len as usize;
                if len > buf.len() && len <= MAX_BODY_BYTES {
                    // The body did not fit: ask again with room for all of it.
                    buf = vec![0u8; len];
                    continue;
                }
                buf.truncate(len.min(buf.len()));
                return Ok(Response {
                    status: code as u16,
                    body: buf,
                });
            }
            hostcall::HTTP_ERR_DENIED => return Err(HttpError::Denied { url: owned() }),
            hostcall::HTTP_ERR_IO => return Err(HttpError::Io { url: owned() }),
            hostcall::HTTP_ERR_BAD_ARGS => return Err(HttpError::BadUrl { url: owned() }),
            hostcall::HTTP_ERR_TOO_LARGE => return Err(HttpError::TooLarge { url: owned() }),
            code => return Err(HttpError::Unsupported { code }),
        }
    }
}

/// `http::get` over `wasi:http` (components).
#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
mod wasi_http {
    use super::{HttpError, MAX_BODY_BYTES, Response};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme, http_error_code};
    use wasip2::io::streams::StreamError;

    /// Split `scheme://authority/path?query`; the agent parses and checks the URL itself, this only has to hand
    /// its parts over. Pure.
    fn split(url: &str) -> Option<(Scheme, &str, &str)> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return None;
        };
        let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(cut);
        let path = path.split('#').next().unwrap_or_default();
        if authority.is_empty() {
            return None;
        }
        Some((scheme, authority, if path.is_empty() { "/" } else { path }))
    }

    pub(super) fn get(url: &str) -> Result<Response, HttpError> {
        let owned = || url.to_owned();
        let (scheme, authority, path) =
            split(url).ok_or_else(|| HttpError::BadUrl { url: owned() })?;
        let request = OutgoingRequest::new(Fields::new());
        let parts_ok = request.set_scheme(Some(&scheme)).is_ok()
            && request.set_authority(Some(authority)).is_ok()
            && request.set_path_with_query(Some(path)).is_ok();
        if !parts_ok {
            return Err(HttpError::BadUrl { url: owned() });
        }
        let code_error = |code: ErrorCode| match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied { url: owned() },
            ErrorCode::HttpRequestUriInvalid => HttpError::BadUrl { url: owned() },
            ErrorCode::HttpResponseBodySize(_) => HttpError::TooLarge { url: owned() },
            _ => HttpError::Io { url: owned() },
        };
        let pending = outgoing_handler::handle(request, None).map_err(code_error)?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(code))) => return Err(code_error(code)),
            _ => return Err(HttpError::Io { url: owned() }),
        };
        let status = response.status();
        let incoming = response
            .consume()
            .map_err(|()| HttpError::Io { url: owned() })?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| HttpError::Io { url: owned() })?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(match http_error_code(&e) {
                            Some(code) => code_error(code),
                            None => HttpError::Io { url: owned() },
                        });
                    }
                }
                if body.len() > MAX_BODY_BYTES {
                    return Err(HttpError::TooLarge { url: owned() });
                }
            }
        }
        drop(incoming);
        Ok(Response { status, body })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn off_wasm_get_is_unsupported() {
        assert!(matches!(
            get("http://127.0.0.1/"),
            Err(HttpError::Unsupported { .. })
        ));
    }
}
