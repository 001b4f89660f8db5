//! [`ClientError`]: every way a call to the coordinator can fail, and whether retrying can help.

use hyper::{Method, StatusCode};
use rollcage_proto::wire::ErrorBody;
use std::path::PathBuf;

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
    /// The call was tried on several coordinators of the client's list and failed on each; every attempt's error
    /// in the order tried (each names its URL). The last one decides [`Self::is_retryable`], [`Self::status`] and
    /// [`Self::code`].
    #[error("no coordinator could serve the call: {}", list(tried))]
    Failover {
        /// Every attempt's error, in order (at least two).
        tried: Vec<ClientError>,
    },
}

fn list(errors: &[ClientError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
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
            Self::Failover { tried } => tried.last().is_some_and(Self::is_retryable),
        }
    }

    /// The HTTP status, when the coordinator answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Failover { tried } => tried.last().and_then(Self::status),
            _ => None,
        }
    }

    /// The API's error code (`not_found`, `conflict`, …), when the coordinator answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => Some(code),
            Self::Failover { tried } => tried.last().and_then(Self::code),
            _ => None,
        }
    }
}

/// The one mapping of a non-2xx answer to an error: the API's `{"error":{"code","message"}}` when the body is one,
/// else the body as text under the code `http_error` (a proxy's error page, say).
pub(crate) fn status_error(
    method: Method,
    url: String,
    status: StatusCode,
    body: &[u8],
) -> ClientError {
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

/// An error with its sources, on one line (hyper's errors say little at the top).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_body_gives_code_and_message() {
        let e = status_error(
            Method::GET,
            "http://c/v1/x".into(),
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"not_found","message":"no deployment `d-1`"}}"#,
        );
        assert_eq!(e.code(), Some("not_found"));
        assert_eq!(e.status(), Some(StatusCode::NOT_FOUND));
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("no deployment `d-1`"), "{e}");
    }

    #[test]
    fn another_body_is_kept_as_text_and_server_errors_are_retryable() {
        let e = status_error(
            Method::POST,
            "http://c/v1/x".into(),
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
        );
        assert_eq!(e.code(), Some("http_error"));
        assert!(e.to_string().contains("<html>bad gateway</html>"), "{e}");
        assert!(e.is_retryable());
        let busy = status_error(Method::POST, "u".into(), StatusCode::TOO_MANY_REQUESTS, b"");
        assert!(busy.is_retryable());
    }
}
