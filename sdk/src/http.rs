//! HTTP GET through the agent: allowed only under the URL prefixes of the hook's `sandbox.http` grant.
//!
//! WASI preview 1 has no sockets, so this is the hook's only network access. The agent bounds the body to
//! [`MAX_BODY_BYTES`] and applies its own connect/read timeouts; the hook's wall-clock timeout covers the call.

use crate::sys;
use rollcage_proto::hostcall;
use std::fmt;

/// Largest body the agent returns.
pub const MAX_BODY_BYTES: usize = hostcall::HTTP_MAX_BODY_BYTES as usize;

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
            Self::BadUrl { url } => write!(f, "GET {url}: not a valid http:// URL"),
            Self::TooLarge { url } => {
                write!(f, "GET {url}: body larger than {MAX_BODY_BYTES} bytes")
            }
            Self::Unsupported { code } => write!(f, "http_get is not available here (code {code})"),
        }
    }
}

impl std::error::Error for HttpError {}

/// GET `url`. Any status is a response (check [`Response::status`]); an error means there was none.
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
