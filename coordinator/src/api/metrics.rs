//! `GET /metrics`: the coordinator's Prometheus metrics ([`crate::metrics`]) as OpenMetrics text.
//!
//! **Auth**: the route takes a bearer token like the rest of the API, so that deployment and fleet figures are not
//! public. Two tokens work: the admin token, or the read-only scrape token in `DATA/metrics-token` (created on
//! first start, mode 0600), which is the one to give Prometheus (`authorization: {credentials_file: …}`) since it
//! can do nothing else.

use super::ApiError;
use crate::metrics::CONTENT_TYPE;
use crate::state::State;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rollcage_proto::wire::now_ms;

/// `GET /metrics`: the admin token or the scrape token.
pub async fn scrape(headers: HeaderMap, AxState(st): AxState<State>) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "missing `Authorization: Bearer <token>` header (admin or metrics token)".into(),
            )
        })?;
    if !st.tokens.is_admin(token) && !st.metrics.is_scrape_token(token) {
        return Err(ApiError::Unauthorized(
            "invalid token: /metrics takes the admin token or DATA/metrics-token".into(),
        ));
    }
    let now = now_ms();
    let deadline = i64::try_from(st.settings.heartbeat_deadline.as_millis()).unwrap_or(i64::MAX);
    let connected = |name: &str| st.last_seen(name).is_some_and(|t| now - t <= deadline);
    let body = st
        .metrics
        .render(&st.store, connected)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(resp)
}
