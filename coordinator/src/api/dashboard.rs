//! The web dashboard: static HTML, CSS and JavaScript files under `coordinator/dashboard/`, compiled into the
//! binary (no front-end build step, nothing fetched from elsewhere) and served at `GET /` and
//! `GET /dashboard/{file}`.
//!
//! The pages are public because they hold no data: the page's script asks for the admin token and sends it as
//! `Authorization: Bearer …` on every `/v1` call it makes, like any other API client. A strict
//! content-security-policy (same origin only, no inline script or style) keeps hostile text from deployment logs
//! from running as code, on top of the script putting text into the page with `textContent` only.

use super::{ApiError, Path};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// Paths of the dashboard's routes, which are not part of the API (the OpenAPI test leaves them out).
pub const PAGE_PATHS: [&str; 2] = ["/", "/dashboard/{file}"];

/// Same origin only; no inline script or style, no framing, no plugins, forms post nowhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");

/// The assets under `/dashboard/`: (file name, content type, body).
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/app.js"),
    ),
    (
        "model.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/model.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/api.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../dashboard/favicon.svg"),
    ),
];

/// The content type and body of the asset `file`, if there is one.
pub fn asset_named(file: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|&(_, ty, body)| (ty, body))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Always revalidate: a new coordinator binary brings new assets under the same names.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard's page.
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /dashboard/{file}`: one of the page's assets.
pub async fn asset(Path(file): Path<String>) -> Response {
    match asset_named(&file) {
        Some((ty, body)) => page(ty, body),
        None => ApiError::NotFound(format!(
            "no dashboard file `{file}`: expected one of {}",
            ASSETS.map(|(n, _, _)| n).join(", ")
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_references_is_served() {
        for (name, _, _) in ASSETS {
            assert!(
                INDEX_HTML.contains(&format!("/dashboard/{name}"))
                    || ASSETS
                        .iter()
                        .any(|(_, _, b)| b.contains(&format!("./{name}"))),
                "{name} is served but nothing loads it"
            );
        }
        for link in INDEX_HTML.split("/dashboard/").skip(1) {
            let name: String = link
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            assert!(asset_named(&name).is_some(), "index.html loads {name}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        // The content-security-policy would block them: everything lives in the asset files.
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("onclick"));
        for chunk in INDEX_HTML.split("<script").skip(1) {
            assert!(
                chunk.contains("src=\"/dashboard/"),
                "inline script: {chunk}"
            );
        }
        // Hostile log text must never be parsed as HTML.
        for (name, _, body) in ASSETS {
            assert!(!body.contains("innerHTML"), "{name} uses innerHTML");
            assert!(!body.contains("insertAdjacentHTML"), "{name}");
        }
    }
}

#[cfg(test)]
mod route_tests {
    use crate::api::testkit::{TestResult, send, state};
    use axum::body::Body;
    use axum::http::{Method, StatusCode, header};
    use http_body_util::BodyExt;

    /// `GET uri` without a token.
    async fn get(uri: &str) -> TestResult<axum::response::Response> {
        send(&state()?, Method::GET, uri, None, Body::empty(), false).await
    }

    #[tokio::test]
    async fn page_and_assets_are_served_without_a_token_with_strict_headers() -> TestResult {
        for (uri, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/dashboard/app.js", "text/javascript; charset=utf-8"),
            ("/dashboard/model.js", "text/javascript; charset=utf-8"),
            ("/dashboard/style.css", "text/css; charset=utf-8"),
        ] {
            let resp = get(uri).await?;
            assert_eq!(resp.status(), StatusCode::OK, "{uri}");
            let h = resp.headers();
            assert_eq!(h[header::CONTENT_TYPE], ty, "{uri}");
            assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{uri}");
            assert_eq!(
                h[header::CONTENT_SECURITY_POLICY],
                super::CONTENT_SECURITY_POLICY
            );
            let body = resp.into_body().collect().await?.to_bytes();
            assert!(!body.is_empty(), "{uri}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn unknown_assets_are_404_in_the_api_error_shape() -> TestResult {
        for uri in ["/dashboard/nope.js", "/dashboard/..%2Fsrc%2Flib.rs"] {
            let resp = get(uri).await?;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{uri}");
            let body = resp.into_body().collect().await?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            assert_eq!(v["error"]["code"], "not_found", "{v}");
        }
        Ok(())
    }

    #[test]
    fn the_policy_allows_nothing_but_the_same_origin() {
        let csp = super::CONTENT_SECURITY_POLICY;
        assert!(csp.starts_with("default-src 'none'"));
        assert!(!csp.contains("unsafe"));
        assert!(!csp.contains("http"));
    }
}
