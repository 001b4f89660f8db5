//! One error shape for every failure of the API ([`ApiError`], answered as [`ErrorBody`]), the JSON extractor whose
//! rejections use it ([`Json`]), and the layer that logs internal errors ([`log_internal_errors`]).
//!
//! Turning an error into a response has no side effect: an [`ApiError::Internal`] answers with a generic text and
//! carries the real message in an [`InternalError`] response extension, which the router's
//! [`log_internal_errors`] middleware logs (with the request's method and path) and removes.

use crate::engine::executor::EngineError;
use crate::store::StoreError;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rollcage_proto::wire::{ErrorBody, ErrorDetail};

/// Every failure of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or a token that is not valid here.
    #[error("{0}")]
    Unauthorized(String),
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
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
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
            Err(rej) => Err(ApiError::Invalid(format!(
                "malformed request body: {}",
                rej.body_text()
            ))),
        }
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
