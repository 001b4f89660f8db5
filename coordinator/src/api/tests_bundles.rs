//! Bundles through the router on PostgreSQL (issue 14): an upload comes back byte for byte from the agent route
//! (same sha256, same `Content-Length`) out of the database, not a file; an upload cut off mid-body, one whose
//! signature does not match its bytes and one dropped mid-way leave nothing stored; and two coordinators' states over
//! one database serve each other's uploads.

#![allow(clippy::unwrap_used, reason = "test setup")]

use crate::api::testkit::{ADMIN, ENROLL, Fleet, TestResult, call, fleet_on, post_ok, send};
use crate::auth::Tokens;
use crate::bundles::{Bundles, CHUNK_BYTES};
use crate::state::{AppState, State};
use crate::store::{Store, instances};
use crate::testkit::{pg_store, settings, state_over};
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use rollcage_proto::wire::Revision;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fastrand::Rng::with_seed(seed).fill(&mut v);
    v
}

fn count(st: &State, sql: &str) -> TestResult<i64> {
    Ok(st
        .store
        .read(|c| c.query_row(sql, (), |r| r.get::<i64>(0)))?)
}

/// Upload `archive` as an operator: the new revision.
async fn upload(st: &State, archive: Vec<u8>) -> TestResult<Revision> {
    let (s, v) = call(
        st,
        Method::POST,
        "/v1/applications/app/revisions",
        Some(ADMIN),
        Body::from(archive),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    Ok(serde_json::from_value(v)?)
}

/// Start a deployment of `revision` to group `web` and let agent `token` take its first command (so it may fetch the
/// bundle).
async fn deploy(st: &State, revision: &str, token: &str) -> TestResult {
    post_ok(
        st,
        "/v1/deployments",
        ADMIN,
        serde_json::json!({"application": "app", "group": "web", "revision": revision}),
    )
    .await?;
    let p = post_ok(st, "/v1/agent/poll", token, serde_json::json!({})).await?;
    assert!(!p["command"].is_null(), "no command: {p}");
    Ok(())
}

/// Download `revision`'s bundle through `st`'s agent route: (Content-Length, bytes).
async fn download(st: &State, revision: &str, token: &str) -> TestResult<(u64, Vec<u8>)> {
    let uri = format!("/v1/agent/applications/app/revisions/{revision}/bundle");
    let resp = send(st, Method::GET, &uri, Some(token), Body::empty(), false).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let len = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .ok_or("no Content-Length")?
        .to_str()?
        .parse()?;
    Ok((len, resp.into_body().collect().await?.to_bytes().to_vec()))
}

/// A [`Fleet`] of one agent on a fresh PostgreSQL database.
async fn pg_fleet() -> TestResult<Fleet> {
    let st = state_over(pg_store()?, settings())?;
    assert_eq!(st.bundles, Bundles::Database);
    fleet_on(st, 1, "1", "in-place").await
}

#[tokio::test]
async fn an_upload_comes_back_whole_from_the_database() -> TestResult {
    let Fleet { st, agents, .. } = pg_fleet().await?;
    let archive = random(2 * CHUNK_BYTES + 12_345, 1);
    let sha = hex::encode(Sha256::digest(&archive));
    let rev = upload(&st, archive.clone()).await?;
    assert_eq!(rev.sha256, sha);
    assert_eq!(
        count(
            &st,
            "SELECT COUNT(*) FROM bundle_chunks WHERE sha256 LIKE 'upload-%'"
        )?,
        0
    );
    deploy(&st, &rev.id, &agents[0].token).await?;
    let (len, back) = download(&st, &rev.id, &agents[0].token).await?;
    assert_eq!(len, archive.len() as u64);
    assert_eq!(hex::encode(Sha256::digest(&back)), sha);
    Ok(())
}

#[tokio::test]
async fn failed_and_dropped_uploads_leave_nothing() -> TestResult {
    let Fleet { st, .. } = pg_fleet().await?;
    // What the fleet's own revision left: one bundle of one chunk.
    let before = (
        count(&st, "SELECT COUNT(*) FROM bundles")?,
        count(&st, "SELECT COUNT(*) FROM bundle_chunks")?,
    );
    assert_eq!(before, (1, 1));
    let revisions = |st: &State| count(st, "SELECT COUNT(*) FROM revisions");
    let revs = revisions(&st)?;

    // Cut off mid-body (the client's stream fails after two and a half chunks).
    let pieces: Vec<std::io::Result<Vec<u8>>> = vec![
        Ok(random(CHUNK_BYTES, 2)),
        Ok(random(CHUNK_BYTES + CHUNK_BYTES / 2, 3)),
        Err(std::io::Error::other("connection reset")),
    ];
    let (s, v) = call(
        &st,
        Method::POST,
        "/v1/applications/app/revisions",
        Some(ADMIN),
        Body::from_stream(futures_util::stream::iter(pieces)),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // A signature over other bytes.
    let dir = tempfile::tempdir()?;
    let (sig, _) = super::tests_signed::keygen_sign(dir.path(), b"signed bytes", "rollcage")?;
    let req = axum::http::Request::post("/v1/applications/app/revisions")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header(
            rollcage_proto::wire::SIGNATURE_HEADER,
            rollcage_proto::wire::signature_header_value(&sig),
        )
        .extension(axum::extract::ConnectInfo(super::testkit::PEER))
        .body(Body::from(random(3 * CHUNK_BYTES, 4)))?;
    let resp = tower::ServiceExt::oneshot(crate::router(st.clone()), req).await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        (
            count(&st, "SELECT COUNT(*) FROM bundles")?,
            count(&st, "SELECT COUNT(*) FROM bundle_chunks")?
        ),
        before
    );

    // Dropped mid-body: the request is abandoned once two chunks are in.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let body = Body::from_stream(tokio_stream_from(rx));
    let st2 = st.clone();
    let request = tokio::spawn(async move {
        call(
            &st2,
            Method::POST,
            "/v1/applications/app/revisions",
            Some(ADMIN),
            body,
            false,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    });
    for seed in 0..2 {
        tx.send(Ok(random(CHUNK_BYTES, 10 + seed))).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&st, "SELECT COUNT(*) FROM bundle_chunks")? < before.1 + 2 {
        assert!(
            Instant::now() < deadline,
            "the upload's chunks never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    request.abort();
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&st, "SELECT COUNT(*) FROM bundle_chunks")? != before.1 {
        assert!(
            Instant::now() < deadline,
            "a dropped upload's chunks stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&st, "SELECT COUNT(*) FROM bundles")?, before.0);
    assert_eq!(
        revisions(&st)?,
        revs,
        "a failed upload registered a revision"
    );
    Ok(())
}

/// A stream of what `rx` receives.
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[tokio::test]
async fn a_bundle_pushed_to_one_coordinator_downloads_from_another() -> TestResult {
    // Two stores on one database, as two coordinators would open it.
    let (db, a, b) = std::thread::spawn(|| -> TestResult<_> {
        let db = rollcage_testpg::shared_database()?;
        let a = Store::open_postgres(db.url())?;
        let b = Store::open_postgres(db.url())?;
        Ok((db, a, b))
    })
    .join()
    .map_err(|_| "opening the stores panicked")??;
    let a = state_over(a, settings())?;
    let Fleet { agents, .. } = fleet_on(a.clone(), 1, "1", "in-place").await?;
    let archive = random(3 * CHUNK_BYTES + 1, 6);
    let rev = upload(&a, archive.clone()).await?;
    deploy(&a, &rev.id, &agents[0].token).await?;

    // B knows the agent as a coordinator started now would (from the database).
    let known = b.read(instances::all)?;
    let dir = tempfile::tempdir()?;
    let b: State = Arc::new(AppState::new(
        b,
        Tokens::new(ADMIN, ENROLL, known.into_iter().map(|(n, h, _)| (n, h))),
        dir.path().join("bundles"),
        settings(),
    ));
    let (len, back) = download(&b, &rev.id, &agents[0].token).await?;
    assert_eq!(len, archive.len() as u64);
    assert_eq!(hex::encode(Sha256::digest(&back)), rev.sha256);
    assert!(!dir.path().join("bundles").exists(), "B served from a file");
    drop((a, b));
    drop(db);
    Ok(())
}
