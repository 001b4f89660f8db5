//! Bundles in the database, on both backends: sizes around a chunk boundary come back byte for byte under their
//! sha256, the same bytes pushed twice are kept once, an aborted or dropped upload leaves no chunk, the chunks of
//! uploads abandoned more than a day ago are swept (recent ones are not: another coordinator may be receiving
//! them), and a missing chunk cuts the download instead of passing short bytes as whole.

#![allow(clippy::unwrap_used, reason = "test setup")]

use super::*;
use crate::testkit::{TestResult, stores};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// A store the bundle calls can share (`AppState` is one in the coordinator).
struct Held(Store);

impl AsRef<Store> for Held {
    fn as_ref(&self) -> &Store {
        &self.0
    }
}

/// Each backend's store, shared; an error names the backend.
fn each() -> TestResult<Vec<(&'static str, SharedStore)>> {
    Ok(stores()?
        .into_iter()
        .map(|s| {
            let name = if s.is_postgres() {
                "PostgreSQL"
            } else {
                "SQLite"
            };
            (name, Arc::new(Held(s)) as SharedStore)
        })
        .collect())
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fastrand::Rng::with_seed(seed).fill(&mut v);
    v
}

/// Upload `data` in pieces of `piece` bytes.
async fn put(store: &SharedStore, data: &[u8], piece: usize) -> TestResult<Stored> {
    let mut up = Bundles::Database.upload(store.clone()).await?;
    for p in data.chunks(piece) {
        up.write(p).await?;
    }
    Ok(up.finish().await?)
}

/// The whole stored bundle `sha`, with its announced length.
async fn get(store: &SharedStore, sha: &str) -> TestResult<(u64, Vec<u8>)> {
    let d = Bundles::Database
        .open(store.clone(), sha)
        .await?
        .ok_or("no such bundle")?;
    let mut out = Vec::new();
    let mut bytes = d.bytes;
    while let Some(b) = bytes.next().await {
        out.extend_from_slice(&b?);
    }
    Ok((d.len, out))
}

fn db(s: &SharedStore) -> &Store {
    (**s).as_ref()
}

fn count(store: &SharedStore, sql: &str) -> TestResult<i64> {
    Ok(db(store).read(|c| c.query_row(sql, (), |r| r.get::<i64>(0)))?)
}

#[tokio::test]
async fn sizes_around_a_chunk_come_back_whole_under_their_sha256() -> TestResult {
    for (backend, store) in each()? {
        let sizes = [
            1,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            2 * CHUNK_BYTES + 5,
        ];
        for (i, size) in sizes.into_iter().enumerate() {
            let data = random(size, i as u64);
            // An odd piece size: chunks are cut across the body's frames.
            let stored = put(&store, &data, 100_003).await?;
            assert_eq!(
                stored.sha256,
                hex::encode(Sha256::digest(&data)),
                "{backend}"
            );
            assert_eq!(stored.size, size as u64, "{backend}");
            let chunks: i64 = db(&store).read(|c| {
                c.query_row(
                    "SELECT chunks FROM bundles WHERE sha256 = ?1",
                    [&stored.sha256],
                    |r| r.get(0),
                )
            })?;
            assert_eq!(
                chunks as usize,
                size.div_ceil(CHUNK_BYTES),
                "{backend}: size {size}"
            );
            let (len, back) = get(&store, &stored.sha256).await?;
            assert_eq!(len, size as u64, "{backend}");
            assert!(
                back == data,
                "{backend}: size {size}: other bytes came back"
            );
        }
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM bundle_chunks WHERE sha256 LIKE 'upload-%'"
            )?,
            0,
            "{backend}: temporary keys left"
        );
        assert!(
            Bundles::Database
                .open(store.clone(), &"0".repeat(64))
                .await?
                .is_none(),
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_same_bytes_pushed_twice_are_kept_once() -> TestResult {
    for (backend, store) in each()? {
        let data = random(CHUNK_BYTES + 10, 9);
        let a = put(&store, &data, 65_536).await?;
        let b = put(&store, &data, 4096).await?;
        assert_eq!(a, b, "{backend}");
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM bundles")?,
            1,
            "{backend}"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM bundle_chunks")?,
            2,
            "{backend}"
        );
        assert!(get(&store, &a.sha256).await?.1 == data, "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn an_aborted_or_dropped_upload_leaves_no_chunk() -> TestResult {
    for (backend, store) in each()? {
        let data = random(CHUNK_BYTES * 2 + CHUNK_BYTES / 2, 3);
        let mut up = Bundles::Database.upload(store.clone()).await?;
        up.write(&data).await?;
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM bundle_chunks")?,
            2,
            "{backend}"
        );
        up.abort().await;
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM bundle_chunks")?,
            0,
            "{backend}"
        );

        let mut up = Bundles::Database.upload(store.clone()).await?;
        up.write(&data).await?;
        drop(up);
        // Removed in the background (a drop cannot wait).
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&store, "SELECT COUNT(*) FROM bundle_chunks")? != 0 {
            assert!(
                Instant::now() < deadline,
                "{backend}: a dropped upload's chunks stayed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM bundles")?,
            0,
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn uploads_abandoned_over_a_day_ago_are_swept_recent_ones_are_not() -> TestResult {
    for (backend, store) in each()? {
        let now = rollcage_proto::wire::now_ms();
        let old = upload_key(now - ABANDONED_AFTER_MS - 60_000);
        let recent = upload_key(now - 3_600_000);
        for key in [&old, &recent] {
            db(&store).write(|tx| {
                tx.execute(
                    "INSERT INTO bundle_chunks (sha256, idx, data) VALUES (?1, 0, ?2)",
                    args![key, b"x".as_slice()],
                )
            })?;
        }
        // Beginning an upload sweeps.
        Bundles::Database.upload(store.clone()).await?.abort().await;
        let left: Vec<String> = db(&store)
            .read(|c| c.query_map("SELECT sha256 FROM bundle_chunks", (), |r| r.get(0)))?;
        assert_eq!(left, vec![recent.clone()], "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn a_missing_chunk_cuts_the_download() -> TestResult {
    for (backend, store) in each()? {
        let data = random(CHUNK_BYTES * 3, 5);
        let stored = put(&store, &data, CHUNK_BYTES).await?;
        db(&store).write(|tx| {
            tx.execute(
                "DELETE FROM bundle_chunks WHERE sha256 = ?1 AND idx = 1",
                [&stored.sha256],
            )
        })?;
        let d = Bundles::Database
            .open(store.clone(), &stored.sha256)
            .await?
            .ok_or("no bundle")?;
        let items: Vec<std::io::Result<Bytes>> = d.bytes.collect().await;
        assert_eq!(items.len(), 2, "{backend}: chunk 0, then the error");
        assert!(items[0].is_ok(), "{backend}");
        assert!(items[1].is_err(), "{backend}");
    }
    Ok(())
}

/// Name `sha` by a revision of `app` (created if needed).
fn name_it(store: &SharedStore, app: &str, sha: &str, size: u64) -> TestResult {
    db(store).write(|tx| {
        crate::store::apps::insert_application(tx, app, 1)?;
        crate::store::revisions::upsert(tx, app, sha, None, size, 1)?;
        Ok::<_, StoreError>(())
    })?;
    Ok(())
}

fn forget(store: &SharedStore, app: &str, sha: &str) -> TestResult {
    let id = crate::store::revisions::revision_id(sha);
    db(store).write(|tx| crate::store::revisions::delete(tx, app, &id))?;
    Ok(())
}

#[tokio::test]
async fn bytes_no_revision_names_are_reclaimed_after_the_grace_and_shared_ones_kept() -> TestResult
{
    for (backend, store) in each()? {
        let (a, b, c) = (random(3000, 1), random(5000, 2), random(7000, 3));
        let (a, b, c) = (
            put(&store, &a, 700).await?,
            put(&store, &b, 700).await?,
            put(&store, &c, 700).await?,
        );
        name_it(&store, "one", &a.sha256, a.size)?;
        name_it(&store, "one", &c.sha256, c.size)?;
        name_it(&store, "two", &c.sha256, c.size)?;
        let now = rollcage_proto::wire::now_ms();
        let later = now + RECLAIM_GRACE_MS + 1;

        // Within the grace nothing goes, not even `b`, which nothing names yet (its revision may be on its way).
        assert_eq!(
            Bundles::Database.reclaim(store.clone(), now).await?,
            Reclaimed::default(),
            "{backend}"
        );
        assert_eq!(
            Bundles::Database.reclaim(store.clone(), later).await?,
            Reclaimed {
                bundles: 1,
                bytes: 5000
            },
            "{backend}: only `b`"
        );
        assert!(
            Bundles::Database
                .open(store.clone(), &b.sha256)
                .await?
                .is_none(),
            "{backend}"
        );

        forget(&store, "one", &a.sha256)?;
        forget(&store, "one", &c.sha256)?;
        assert_eq!(
            Bundles::Database.reclaim(store.clone(), later).await?,
            Reclaimed {
                bundles: 1,
                bytes: 3000
            },
            "{backend}: `a`; `c` is still named by app two"
        );
        assert!(
            Bundles::Database
                .open(store.clone(), &a.sha256)
                .await?
                .is_none(),
            "{backend}"
        );
        assert_eq!(get(&store, &c.sha256).await?.1.len(), 7000, "{backend}");
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT COUNT(*) FROM bundle_chunks WHERE sha256 = '{}'",
                    a.sha256
                )
            )?,
            0,
            "{backend}: no chunk of `a` is left"
        );

        // Pushing bytes again restarts their grace: stored long ago, pushed again now, kept.
        forget(&store, "two", &c.sha256)?;
        db(&store).write(|tx| {
            tx.execute(
                "UPDATE bundles SET created_at = ?1 WHERE sha256 = ?2",
                args![now - 2 * RECLAIM_GRACE_MS, c.sha256],
            )
        })?;
        put(&store, &random(7000, 3), 1000).await?;
        assert_eq!(
            Bundles::Database.reclaim(store.clone(), now + 1).await?,
            Reclaimed::default(),
            "{backend}"
        );
        // Counted from when it was pushed again, not from `now`.
        let after_repush = rollcage_proto::wire::now_ms() + RECLAIM_GRACE_MS + 1;
        assert_eq!(
            Bundles::Database
                .reclaim(store.clone(), after_repush)
                .await?,
            Reclaimed {
                bundles: 1,
                bytes: 7000
            },
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn files_no_revision_names_are_reclaimed_after_the_grace_part_files_never() -> TestResult {
    let store: SharedStore = Arc::new(Held(crate::testkit::store()?));
    let dir = tempfile::tempdir()?;
    let bundles = Bundles::Dir(dir.path().join("bundles"));
    let mut stored = Vec::new();
    for (n, seed) in [(100, 7), (200, 8)] {
        let mut up = bundles.upload(store.clone()).await?;
        up.write(&random(n, seed)).await?;
        stored.push(up.finish().await?);
    }
    let part = dir.path().join("bundles/upload-0123456789abcdef.part");
    std::fs::write(&part, b"in progress")?;
    name_it(&store, "one", &stored[0].sha256, stored[0].size)?;
    let now = rollcage_proto::wire::now_ms();
    assert_eq!(
        bundles.reclaim(store.clone(), now).await?,
        Reclaimed::default()
    );
    let later = now + RECLAIM_GRACE_MS + 60_000;
    assert_eq!(
        bundles.reclaim(store.clone(), later).await?,
        Reclaimed {
            bundles: 1,
            bytes: 200
        }
    );
    assert!(
        bundles
            .open(store.clone(), &stored[1].sha256)
            .await?
            .is_none()
    );
    assert!(
        bundles
            .open(store.clone(), &stored[0].sha256)
            .await?
            .is_some()
    );
    forget(&store, "one", &stored[0].sha256)?;
    assert_eq!(
        bundles.reclaim(store.clone(), later).await?,
        Reclaimed {
            bundles: 1,
            bytes: 100
        }
    );
    assert!(part.exists(), "an upload's part file is its own");
    Ok(())
}
