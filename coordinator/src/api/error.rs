//! One error shape for every failure of the API ([`ApiError`], answered as [`ErrorBody`]), the extractors whose
//! rejections use it ([`Json`] for bodies, [`LenientJson`] for bodies whose text must never be the reason for a
//! refusal, [`Path`] for path parameters), and the layer that logs internal errors ([`log_internal_errors`]).
//!
//! Turning an error into a response has no side effect: an [`ApiError::Internal`] answers with a generic text and
//! carries the real message in an [`InternalError`] response extension, which the router's
//! [`log_internal_errors`] middleware logs (with the request's method and path) and removes.

use crate::engine::executor::EngineError;
use crate::store::StoreError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rollcage_proto::wire::{ErrorBody, ErrorDetail};

/// Every failure of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or a token that is not valid here.
    #[error("{0}")]
    Unauthorized(String),
    /// An agent token of an instance an operator removed: the agent stops instead of enrolling again by itself.
    #[error("{0}")]
    InstanceRemoved(String),
    /// A valid token that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource or route.
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Malformed or invalid request.
    #[error("{0}")]
    Invalid(String),
    /// Wrong HTTP method for the route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A body over the route's size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A feature that is not implemented yet.
    #[error("{0}")]
    Unsupported(String),
    /// A fault on our side; the message is logged, the client sees a generic text.
    #[error("{0}")]
    Internal(String),
}

/// The real message of an internal error, riding on its response to the logging middleware (never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalError(pub String);

/// What the client reads instead of an internal error's message.
pub const INTERNAL_MESSAGE: &str = "internal error; see the coordinator's log";

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InstanceRemoved(_) => (StatusCode::UNAUTHORIZED, "instance_removed"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let (message, internal) = match self {
            Self::Internal(m) => (INTERNAL_MESSAGE.to_owned(), Some(InternalError(m))),
            other => (other.to_string(), None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(internal) = internal {
            resp.extensions_mut().insert(internal);
        }
        resp
    }
}

/// Middleware: log the real message of an internal error (see [`InternalError`]) with the request it answered.
pub async fn log_internal_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let mut resp = next.run(req).await;
    if let Some(InternalError(message)) = resp.extensions_mut().remove::<InternalError>() {
        tracing::error!(%method, %path, error = %message, "internal error");
    }
    resp
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // Client input the database cannot hold: the client's to fix.
            StoreError::NulByte => Self::Invalid(e.to_string()),
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<crate::bundles::BundleError> for ApiError {
    fn from(e: crate::bundles::BundleError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::NotFound { .. } => Self::NotFound(e.to_string()),
            EngineError::Conflict(m) => Self::Conflict(m),
            EngineError::Invalid(m) => Self::Invalid(m),
            EngineError::Forbidden(m) => Self::Forbidden(m),
        }
    }
}

/// A JSON body whose rejections use the API's error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge(
                format!("request body too large: {}", rej.body_text()),
            )),
            Err(rej) => Err(ApiError::Invalid(format!(
                "malformed request body: {}",
                rej.body_text()
            ))),
        }
    }
}

/// A JSON body read leniently: bytes that are not UTF-8 and `\uD800`-style escapes of lone surrogates (which no
/// Rust string can hold) become `U+FFFD`, and raw control characters in strings are escaped, before decoding
/// ([`lenient_json_text`]), so a body is refused for its shape, never for its text.
/// For messages whose text comes from places the sender does not control (a hook's output in a step report). No
/// `content-type` is required.
#[derive(Debug, Clone, Copy, Default)]
pub struct LenientJson<T>(pub T);

impl<T, S> FromRequest<S> for LenientJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::TooLarge(format!(
                    "request body too large: {}",
                    rej.body_text()
                )));
            }
            Err(rej) => {
                return Err(ApiError::Invalid(format!(
                    "reading the request body: {}",
                    rej.body_text()
                )));
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let text = lenient_json_text(&text);
        serde_json::from_str(&text)
            .map(Self)
            .map_err(|e| ApiError::Invalid(format!("malformed request body: {e}")))
    }
}

/// JSON text made decodable without changing its shape: inside strings, every `\uXXXX` escape of a lone surrogate
/// (one not part of a high-low pair, which no Rust string can hold) and every NUL (`\u0000` or a raw 0 byte; no
/// stored text may hold one, see `StoreError::NulByte`) becomes `\uFFFD`, and another raw control character
/// (invalid in JSON) becomes its `\u00XX` escape. Borrowed when there is nothing to change; linear. An escaped
/// backslash (`\\u…`) is left alone.
pub(crate) fn lenient_json_text(text: &str) -> std::borrow::Cow<'_, str> {
    fn escape_at(b: &[u8], i: usize) -> Option<u16> {
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let b = text.as_bytes();
    // Each change is at an ASCII position: (where, how many bytes it replaces, with what).
    let mut changes: Vec<(usize, usize, String)> = Vec::new();
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'\\' if in_string => match escape_at(b, i) {
                Some(0xD800..=0xDBFF) if matches!(escape_at(b, i + 6), Some(0xDC00..=0xDFFF)) => {
                    i += 12
                }
                Some(0xD800..=0xDFFF | 0) => {
                    changes.push((i, 6, "\\uFFFD".to_owned()));
                    i += 6;
                }
                Some(_) => i += 6,
                // `\\`, `\n`, `\"`, …: skip the escaped character so it never ends the string or starts an escape.
                None => i += 2,
            },
            0 if in_string => {
                changes.push((i, 1, "\\uFFFD".to_owned()));
                i += 1;
            }
            c if in_string && c < 0x20 => {
                changes.push((i, 1, format!("\\u{c:04x}")));
                i += 1;
            }
            _ => i += 1,
        }
    }
    if changes.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 6 * changes.len());
    let mut from = 0;
    for (at, len, with) in changes {
        out.push_str(&text[from..at]);
        out.push_str(&with);
        from = at + len;
    }
    out.push_str(&text[from..]);
    std::borrow::Cow::Owned(out)
}

/// A path parameter whose parse failure (`/agent/commands/abc`, an id past `i64::MAX`, invalid UTF-8 after
/// percent-decoding) is a 400 in the API's error shape naming the parameter, instead of axum's plain-text answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let err = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => return Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => e.into_kind(),
            Err(other) => {
                return Err(ApiError::Internal(format!(
                    "path parameters: {}",
                    other.body_text()
                )));
            }
        };
        // The names of the route's parameters, in order (for the kinds that carry no key).
        let names: Vec<String> = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map(|raw| raw.iter().map(|(k, _)| k.to_owned()).collect())
            .unwrap_or_default();
        let shown = |v: &str| rollcage_proto::clip::clip_head(v, 160);
        let message = match err {
            ErrorKind::ParseErrorAtKey {
                key,
                value,
                expected_type,
            } => {
                format!(
                    "path parameter `{key}`: `{}` is not {}",
                    shown(&value),
                    expected(expected_type)
                )
            }
            ErrorKind::ParseErrorAtIndex {
                index,
                value,
                expected_type,
            } => format!(
                "path parameter `{}`: `{}` is not {}",
                names.get(index).map_or("?", String::as_str),
                shown(&value),
                expected(expected_type)
            ),
            ErrorKind::ParseError {
                value,
                expected_type,
            } => format!(
                "path parameter `{}`: `{}` is not {}",
                names.first().map_or("?", String::as_str),
                shown(&value),
                expected(expected_type)
            ),
            ErrorKind::InvalidUtf8InPathParam { key } => {
                format!("path parameter `{key}`: not UTF-8 once percent-decoded")
            }
            ErrorKind::DeserializeError {
                key,
                value,
                message,
            } => {
                format!("path parameter `{key}`: `{}`: {message}", shown(&value))
            }
            // A handler whose `Path` type does not fit its route: our bug, not the client's.
            other @ (ErrorKind::WrongNumberOfParameters { .. }
            | ErrorKind::UnsupportedType { .. }) => {
                return Err(ApiError::Internal(format!("path parameters: {other}")));
            }
            other => format!("path parameters: {other}"),
        };
        Err(ApiError::Invalid(message))
    }
}

/// What a path parameter's Rust type means to a client.
fn expected(rust_type: &str) -> String {
    match rust_type {
        "i64" => format!("a whole number from {} to {}", i64::MIN, i64::MAX),
        "u64" => format!("a whole number from 0 to {}", u64::MAX),
        "i32" | "u32" | "u16" | "u8" | "usize" => "a whole number in range".to_owned(),
        other => format!("a valid `{other}`"),
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// The log lines written while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    #[test]
    fn lenient_json_text_fixes_only_what_json_cannot_hold() -> Result<(), serde_json::Error> {
        let fixed = |t: &str| lenient_json_text(t).into_owned();
        // Nothing to fix: borrowed, unchanged (a pair, an escaped backslash, an escape outside a string).
        for ok in [r#"{"a":"\ud83d\ude00 \\ud800 \n"}"#, "[1, 2]", r#""é""#] {
            assert!(
                matches!(lenient_json_text(ok), std::borrow::Cow::Borrowed(_)),
                "{ok}"
            );
        }
        assert_eq!(fixed(r#""\ud800""#), r#""\uFFFD""#);
        assert_eq!(fixed(r#""\udfff\ud800x""#), r#""\uFFFD\uFFFDx""#);
        assert_eq!(fixed(r#""\ud800\u0041""#), r#""\uFFFD\u0041""#);
        // No stored text holds a NUL, escaped or raw.
        assert_eq!(fixed("\"a\\u0000b\u{0}c\""), r#""a\uFFFDb\uFFFDc""#);
        assert_eq!(fixed("\"a\u{1b}b\nc\""), r#""a\u001bb\u000ac""#);
        // A quote escaped inside a string does not end it; control characters after it are still escaped.
        assert_eq!(fixed("\"\\\"\u{1}\""), r#""\"\u0001""#);
        let v: serde_json::Value = serde_json::from_str(&fixed("{\"m\":\"x\\ud800\u{7}\"}"))?;
        assert_eq!(v["m"], "x\u{FFFD}\u{7}");
        Ok(())
    }

    #[tokio::test]
    async fn an_internal_error_is_logged_by_the_layer_not_by_into_response() -> TestResult {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        // Into a response: a generic text for the client, the real message in the extension, nothing logged.
        let resp = ApiError::Internal("disk on fire".into()).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.extensions().get::<InternalError>(),
            Some(&InternalError("disk on fire".into()))
        );
        let body = resp.into_body().collect().await?.to_bytes();
        let body: ErrorBody = serde_json::from_slice(&body)?;
        assert_eq!(body.error.code, "internal");
        assert_eq!(body.error.message, INTERNAL_MESSAGE);
        assert!(!log.text().contains("disk on fire"), "{}", log.text());

        // Through the layer: logged once with the request, and the message never leaves the process.
        let app = Router::new()
            .route(
                "/boom",
                get(|| async { ApiError::Internal("database locked".into()) }),
            )
            .route("/nope", get(|| async { ApiError::NotFound("no".into()) }))
            .layer(axum::middleware::from_fn(log_internal_errors));
        let resp = app
            .clone()
            .oneshot(axum::http::Request::get("/boom").body(Body::empty())?)
            .await?;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.extensions().get::<InternalError>().is_none());
        let body = resp.into_body().collect().await?.to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("database locked"));
        let text = log.text();
        assert_eq!(text.matches("database locked").count(), 1, "{text}");
        assert!(text.contains("/boom") && text.contains("ERROR"), "{text}");
        // Client errors are not the coordinator's faults: not logged.
        let resp = app
            .oneshot(axum::http::Request::get("/nope").body(Body::empty())?)
            .await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(!log.text().contains("/nope"), "{}", log.text());
        Ok(())
    }
}
