//! Fetching over HTTP from a local hyper server on 127.0.0.1:0: success with verification, non-2xx, checksum
//! mismatch (nothing left behind), redirects, and a body cut short.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup: a failure to build a fixture should panic loudly

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rollcage_runtime::layout::{DeployLayout, GroupLayout};
use rollcage_runtime::package::{BundleStore, FetchOptions, PackageError, Source, fetch};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bundle() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let data = b"version: 0.0\nos: linux\n";
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "appspec.yml", &data[..]).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&b.into_inner().unwrap()).unwrap();
    enc.finish().unwrap()
}

/// Serve `/bundle.tgz` (200), `/moved` (302 to it), `/loop` (302 to itself), `/short` (declares more bytes than
/// it sends) and 404 for anything else.
async fn serve(body: Arc<Vec<u8>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = body.clone();
                    async move {
                        let resp = match req.uri().path() {
                            "/bundle.tgz" => Response::new(Full::new(Bytes::from(body.to_vec()))),
                            "/moved" => Response::builder()
                                .status(StatusCode::FOUND)
                                .header("location", "/bundle.tgz")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                            "/loop" => Response::builder()
                                .status(StatusCode::FOUND)
                                .header("location", "/loop")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                            _ => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"no such bundle")))
                                .unwrap(),
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Serve a response whose Content-Length promises more than is sent, then close.
async fn serve_short(body: Vec<u8>) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut buf = [0u8; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            body.len() * 2
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let _ = stream.shutdown().await;
    });
    addr
}

struct Env {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    deploy: DeployLayout,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let deploy = GroupLayout::new(&root, "web", "prod")
        .unwrap()
        .deployment("d-1")
        .unwrap();
    Env {
        _tmp: tmp,
        root,
        deploy,
    }
}

fn url(addr: SocketAddr, path: &str) -> Source {
    Source::Url(url::Url::parse(&format!("http://{addr}{path}")).unwrap())
}

fn assert_nothing_left(env: &Env) {
    assert!(!env.deploy.dir().exists(), "deployment dir left behind");
    let mut stack = vec![env.root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            assert!(
                e.file_type().unwrap().is_dir(),
                "left behind: {}",
                e.path().display()
            );
            stack.push(e.path());
        }
    }
}

#[tokio::test]
async fn http_200_is_fetched_and_verified() -> TestResult {
    let data = bundle();
    let addr = serve(Arc::new(data.clone())).await;
    let env = env();
    let sha = hex::encode(Sha256::digest(&data));
    let store = BundleStore::at_root(&env.root);
    let opts = FetchOptions {
        expected_sha256: Some(sha.clone()),
        store: Some(store.clone()),
        ..FetchOptions::default()
    };
    let fetched = fetch(&url(addr, "/bundle.tgz"), &env.deploy, &opts).await?;
    assert_eq!(fetched.sha256, Some(sha.clone()));
    assert_eq!(fetched.bytes, data.len() as u64);
    assert_eq!(
        std::fs::read(env.deploy.revision_dir().join("appspec.yml"))?,
        b"version: 0.0\nos: linux\n"
    );
    // Downloaded once, into the store; the deployment dir refers to it.
    assert_eq!(std::fs::read(store.path(&sha).ok_or("bad sha")?)?, data);
    assert_eq!(env.deploy.stored_bundle()?, Some(sha));
    assert!(!env.deploy.dir().join("bundle").exists());
    Ok(())
}

#[tokio::test]
async fn http_redirect_is_followed() -> TestResult {
    let addr = serve(Arc::new(bundle())).await;
    let env = env();
    fetch(&url(addr, "/moved"), &env.deploy, &FetchOptions::default()).await?;
    assert!(env.deploy.revision_dir().join("appspec.yml").is_file());
    Ok(())
}

#[tokio::test]
async fn http_redirect_loop_is_bounded() {
    let addr = serve(Arc::new(bundle())).await;
    let env = env();
    let err = fetch(&url(addr, "/loop"), &env.deploy, &FetchOptions::default())
        .await
        .expect_err("loop accepted");
    assert!(matches!(err, PackageError::Redirect { .. }), "{err}");
    assert_nothing_left(&env);
}

#[tokio::test]
async fn http_404_names_status_and_url() {
    let addr = serve(Arc::new(bundle())).await;
    let env = env();
    let err = fetch(
        &url(addr, "/missing.tgz"),
        &env.deploy,
        &FetchOptions::default(),
    )
    .await
    .expect_err("404 accepted");
    match &err {
        PackageError::HttpStatus { url, status } => {
            assert_eq!(*status, 404);
            assert!(url.ends_with("/missing.tgz"), "{url}");
        }
        other => panic!("expected HttpStatus, got {other}"),
    }
    assert!(err.to_string().contains("404"), "{err}");
    assert_nothing_left(&env);
}

#[tokio::test]
async fn http_hash_mismatch_leaves_nothing_behind() {
    let data = bundle();
    let addr = serve(Arc::new(data.clone())).await;
    let env = env();
    let opts = FetchOptions {
        expected_sha256: Some("0".repeat(64)),
        ..FetchOptions::default()
    };
    let err = fetch(&url(addr, "/bundle.tgz"), &env.deploy, &opts)
        .await
        .expect_err("mismatch accepted");
    match &err {
        PackageError::ChecksumMismatch { actual, .. } => {
            assert_eq!(*actual, hex::encode(Sha256::digest(&data)))
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert_nothing_left(&env);
}

#[tokio::test]
async fn http_body_cut_short_is_a_download_error() {
    let addr = serve_short(bundle()).await;
    let env = env();
    let err = fetch(&url(addr, "/x"), &env.deploy, &FetchOptions::default())
        .await
        .expect_err("short body accepted");
    assert!(matches!(err, PackageError::Download { .. }), "{err}");
    assert_nothing_left(&env);
}

#[tokio::test]
async fn connection_refused_is_an_http_error() {
    // Bind then drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = env();
    let err = fetch(&url(addr, "/b"), &env.deploy, &FetchOptions::default())
        .await
        .expect_err("accepted");
    assert!(matches!(err, PackageError::Http { .. }), "{err}");
    assert_nothing_left(&env);
}

/// A new ed25519 key in `dir` (by `ssh-keygen`) and an allowed_signers file listing it for rollcage.
fn signer(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join("key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs (scripts/setup.sh installs openssh-client)");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let signers = dir.join("allowed_signers");
    std::fs::write(&signers, format!("ops namespaces=\"rollcage\" {public}")).unwrap();
    (key, signers)
}

#[tokio::test]
async fn a_signed_fetch_over_http_checks_the_whole_archive_before_unpacking() -> TestResult {
    use rollcage_runtime::package::{SignatureCheck, fetch_signed};
    let data = bundle();
    let addr = serve(Arc::new(data.clone())).await;
    let keys = tempfile::tempdir()?;
    let (key, signers) = signer(keys.path());
    let archive = keys.path().join("b.tgz");
    std::fs::write(&archive, &data)?;
    let sig = rollcage_signing::sign::sign_file(&key, &archive)?;
    let sha = hex::encode(Sha256::digest(&data));
    for with_store in [true, false] {
        let env = env();
        let opts = FetchOptions {
            expected_sha256: Some(sha.clone()),
            store: with_store.then(|| BundleStore::at_root(&env.root)),
            ..FetchOptions::default()
        };
        let unsigned = SignatureCheck {
            trusted_signers: &signers,
            signature: None,
        };
        let err = fetch_signed(&url(addr, "/bundle.tgz"), &env.deploy, &opts, unsigned)
            .await
            .err()
            .ok_or("an unsigned revision was fetched")?;
        assert!(
            matches!(
                &err,
                PackageError::Signature {
                    reason: rollcage_signing::VerifyError::NoSignature { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            !env.deploy.dir().exists(),
            "store {with_store}: deployment dir created"
        );
        let signed = SignatureCheck {
            trusted_signers: &signers,
            signature: Some(&sig),
        };
        let (fetched, verified) =
            fetch_signed(&url(addr, "/bundle.tgz"), &env.deploy, &opts, signed).await?;
        assert_eq!(fetched.sha256, Some(sha.clone()));
        assert_eq!(verified.principals, "ops");
        assert!(env.deploy.revision_dir().join("appspec.yml").is_file());
        // Without a store the download lived only for the fetch.
        let group = env.deploy.dir().parent().ok_or("no group dir")?;
        for e in std::fs::read_dir(group)? {
            let name = e?.file_name();
            assert!(
                !name.to_string_lossy().starts_with(".download-"),
                "{name:?} left behind"
            );
        }
        if with_store {
            assert_eq!(env.deploy.stored_bundle()?, Some(sha.clone()));
        }
    }
    Ok(())
}
