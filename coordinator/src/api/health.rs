//! `GET /healthz`: whether this coordinator can serve, for a load balancer in front of several (HAProxy's `option
//! httpchk GET /healthz`, the built-in LB's health check). Public: it says nothing but `ok` or why not.
//!
//! 200 `ok` when the database answers a trivial query within [`DATABASE_DEADLINE`]; 503 with a short reason
//! otherwise. The database is the one thing a coordinator cannot serve without (every route reads or writes it);
//! the one call into the store is [`database_answers`].

use crate::state::State;
use axum::extract::State as AxState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// A database slower than this to answer `SELECT 1` counts as down: a health checker gives up after a few seconds
/// anyway (HAProxy's default `timeout check` is its connect timeout), and an answer it never sees helps nobody.
pub const DATABASE_DEADLINE: Duration = Duration::from_secs(2);

/// `GET /healthz`.
pub async fn healthz(AxState(st): AxState<State>) -> Response {
    // The store call blocks (a lock, a query): off the async workers, and bounded.
    let check = tokio::task::spawn_blocking(move || database_answers(&st));
    let (status, body) = match tokio::time::timeout(DATABASE_DEADLINE, check).await {
        Ok(Ok(Ok(()))) => (StatusCode::OK, "ok".to_owned()),
        Ok(Ok(Err(e))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {e}"),
        ),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database check failed: {e}"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "database did not answer within {} s",
                DATABASE_DEADLINE.as_secs()
            ),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The one call into the store: a trivial query that only a working database answers.
fn database_answers(st: &State) -> Result<(), crate::store::StoreError> {
    st.store.read(|c| {
        c.query_row("SELECT 1", (), |_| Ok(()))
            .map_err(crate::store::sql)
    })
}
