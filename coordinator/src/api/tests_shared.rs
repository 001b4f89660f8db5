//! Two coordinators on one PostgreSQL database, through their routers: what one records, the other honours
//! (agent and operator tokens, revocations) and hears about (commits wake the other's waiters).

use super::testkit::{ADMIN, ENROLL, TestResult, call, get, post_json, post_ok};
use crate::state::State;
use crate::store::Store;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use std::time::{Duration, Instant};

/// Two states over one fresh database (the database is dropped after both).
fn two() -> TestResult<(State, State)> {
    let db = rollcage_testpg::shared_database()?;
    let a = Store::open_postgres(db.url())?;
    let b = Store::open_postgres(db.url())?.keep_until_dropped(Box::new(db));
    let a = crate::testkit::state_over(a, crate::testkit::settings())?;
    let b = crate::testkit::state_over(b, crate::testkit::settings())?;
    crate::state::refresh_tokens_on_commit(&a);
    crate::state::refresh_tokens_on_commit(&b);
    Ok((a, b))
}

/// Retry `check` for up to 5 s (what another coordinator hears arrives through `LISTEN`, asynchronously).
async fn eventually<F, Fut>(what: &str, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResult<bool>>,
{
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{what}: not within 5 s").into())
}

#[tokio::test]
async fn an_agent_enrolled_through_one_coordinator_is_known_to_the_other() -> TestResult {
    let (a, b) = two()?;
    let v = post_ok(
        &a,
        "/v1/agent/enroll",
        ENROLL,
        serde_json::json!({"name": "web-1"}),
    )
    .await?;
    let token = v["token"].as_str().ok_or("no token")?.to_owned();
    let (s, v) = post_json(
        &b,
        "/v1/agent/poll",
        &token,
        serde_json::json!({"wait_ms": 10}),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A made-up token is still refused by both.
    let (s, _) = post_json(
        &b,
        "/v1/agent/poll",
        "0123",
        serde_json::json!({"wait_ms": 10}),
    )
    .await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn an_operator_token_made_on_one_works_on_the_other_until_revoked_there() -> TestResult {
    let (a, b) = two()?;
    let v = post_ok(
        &a,
        "/v1/tokens",
        ADMIN,
        serde_json::json!({"name": "ci", "role": "viewer"}),
    )
    .await?;
    let token = v["token"].as_str().ok_or("no token")?.to_owned();
    let (s, v) = get(&b, "/v1/whoami", Some(&token)).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "ci", "{v}");
    let (s, v) = call(
        &a,
        Method::DELETE,
        "/v1/tokens/ci",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert!(s.is_success(), "{s} {v}");
    eventually("B refuses the token A revoked", || {
        let (b, token) = (b.clone(), token.clone());
        async move { Ok(get(&b, "/v1/whoami", Some(&token)).await?.0 == StatusCode::UNAUTHORIZED) }
    })
    .await
}

#[tokio::test]
async fn a_commit_through_one_wakes_a_follower_of_the_other() -> TestResult {
    let (a, b) = two()?;
    let mut rx = b.changes().subscribe("d-x");
    let t = Instant::now();
    a.store.write(|tx| {
        tx.touch_deployment("d-x");
        Ok::<_, crate::store::StoreError>(())
    })?;
    tokio::time::timeout(Duration::from_secs(2), rx.changed()).await??;
    // The bound for a change made through another coordinator.
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    Ok(())
}
