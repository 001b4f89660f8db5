//! The headers every response of the coordinator carries, set by one layer around the whole router
//! ([`every_response`]), errors and fallbacks included:
//!
//! - `X-Content-Type-Options: nosniff`: a browser takes the declared content type as it is, so text from a
//!   deployment's log (served as JSON) can never be sniffed into a page or a script.
//! - `Cache-Control: no-store` unless the handler chose: API answers hold tokens' work (deployments, logs,
//!   instance names) that no browser or proxy cache should keep. The dashboard's page and assets choose
//!   `no-cache` themselves (they hold no data, and revalidating lets a new coordinator's files show at once).

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// Set the headers above on `resp`.
pub async fn every_response(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
