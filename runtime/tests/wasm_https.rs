//! `https://` for both kinds of wasm hook: the SDK's `http_get` in a preview-1 module and `wasi:http` in a
//! component, against a local TLS server whose certificate comes from a test CA the hook's grant names as
//! `sandbox.http_ca`. An ungranted host is refused before any connection is made.

#![allow(
    clippy::unwrap_used,
    reason = "test setup; a failure is the test failing"
)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rollcage_hooks_artifacts as artifacts;
use rollcage_proto::{HookStatus, SandboxSpec};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod wasm_support;

use wasm_support::*;

/// A test CA (PEM) and a TLS server on 127.0.0.1 with a certificate it signed for `localhost` and `127.0.0.1`,
/// answering `200 healthy`; returns the CA, the port and a connection counter (counted at TCP accept, before
/// any TLS).
async fn tls_server() -> Result<(String, u16, Arc<AtomicUsize>), Box<dyn std::error::Error>> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "rollcage test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
        .signed_by(&leaf_key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())?,
        )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nhealthy",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Ok((ca_cert.pem(), port, hits))
}

/// Both builds of the `http` test program.
const BOTH: [(&str, &str); 2] = [
    ("module", artifacts::TEST_HTTP),
    ("component", artifacts::P2_TEST_HTTP),
];

#[tokio::test]
async fn a_granted_https_prefix_served_with_the_test_ca_works() -> TestResult {
    let h = Harness::new()?;
    let (ca, port, hits) = tls_server().await?;
    std::fs::create_dir_all(h.revision.join("certs"))?;
    std::fs::write(h.revision.join("certs/test-ca.pem"), ca)?;
    for (kind, program) in BOTH {
        for host in ["localhost", "127.0.0.1"] {
            let base = format!("https://{host}:{port}");
            let sandbox = SandboxSpec {
                http: vec![format!("{base}/")],
                http_ca: Some("certs/test-ca.pem".to_owned()),
                ..args(&[&format!("{base}/health")])
            };
            let out = h.run(program, 10, sandbox).await?;
            assert_eq!(
                out.status,
                HookStatus::Succeeded,
                "{kind}: {}",
                out.log_tail
            );
            assert!(
                out.log_tail.contains("status 200 body healthy"),
                "{kind}: {}",
                out.log_tail
            );
            assert!(
                out.log_tail
                    .contains(&format!("http GET {base}/health -> 200, 7 bytes allowed")),
                "{kind}: {}",
                out.log_tail
            );
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    Ok(())
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_not_trusted() -> TestResult {
    let h = Harness::new()?;
    let (_, port, hits) = tls_server().await?;
    for (kind, program) in BOTH {
        let base = format!("https://127.0.0.1:{port}");
        let sandbox = SandboxSpec {
            http: vec![format!("{base}/")],
            ..args(&[&format!("{base}/health")])
        };
        let out = h.run(program, 10, sandbox).await?;
        assert_eq!(
            out.status,
            HookStatus::Failed { exit_code: 1 },
            "{kind}: {}",
            out.log_tail
        );
        assert!(
            h.log_text().contains("certificate") || h.log_text().contains("UnknownIssuer"),
            "{kind}: {}",
            h.log_text()
        );
    }
    // The connections were made (and the handshakes refused by the client).
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test]
async fn an_ungranted_host_is_refused_before_any_connection() -> TestResult {
    let h = Harness::new()?;
    let (ca, port, hits) = tls_server().await?;
    std::fs::write(h.revision.join("ca.pem"), ca)?;
    for (kind, program) in BOTH {
        for url in [
            // Same server, other name: not the granted host.
            format!("https://127.0.0.1:{port}/health"),
            // Granted host, plain http: a different grant.
            format!("http://localhost:{port}/health"),
        ] {
            let sandbox = SandboxSpec {
                http: vec![format!("https://localhost:{port}/")],
                http_ca: Some("ca.pem".to_owned()),
                ..args(&[&url])
            };
            let out = h.run(program, 10, sandbox).await?;
            assert_eq!(
                out.status,
                HookStatus::Failed { exit_code: 1 },
                "{kind}: {}",
                out.log_tail
            );
            assert!(out.log_tail.contains("denied"), "{kind}: {}", out.log_tail);
            assert!(
                h.log_text().contains(&format!(
                    "GET {url} is not under the hook's grant; sandbox.http grants [\"https://localhost:{port}/\"]"
                )),
                "{kind}: {}",
                h.log_text()
            );
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the server saw a connection"
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_http_ca_fails_the_hook_naming_the_file() -> TestResult {
    let h = Harness::new()?;
    std::fs::write(h.revision.join("not-a-ca.pem"), "hello")?;
    let cases = [
        ("not-a-ca.pem", "no CERTIFICATE block"),
        ("missing.pem", "sandbox.http_ca `missing.pem`"),
    ];
    for (kind, program) in BOTH {
        for (file, want) in cases {
            let sandbox = SandboxSpec {
                http: vec!["https://localhost/".to_owned()],
                http_ca: Some(file.to_owned()),
                ..args(&["https://localhost/"])
            };
            let out = h.run(program, 10, sandbox).await?;
            match &out.status {
                HookStatus::Unknown { reason } => {
                    assert!(reason.contains(want), "{kind}: {reason}");
                    assert!(
                        reason.starts_with(&format!("sandbox.http_ca `{file}`")),
                        "{kind}: {reason}"
                    );
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }
    Ok(())
}
