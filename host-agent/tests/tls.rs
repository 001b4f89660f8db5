//! The coordinator serves TLS (rustls) when given a certificate, and the client trusts it through `--ca-file`; or
//! with its own CA, which the client trusts by its fingerprint alone (`--ca-fingerprint`).

use rollcage_client::{CaFingerprint, Client, Trust};
use rollcage_coordinator::TlsSetup;
use rollcage_coordinator::server::{ServerConfig, spawn, spawn_ready};
use rollcage_proto::wire::{EnrollRequest, PollRequest};

#[tokio::test]
async fn agent_enrolls_and_polls_over_tls() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())?;
    let cfg = ServerConfig {
        database: None,
        tls: TlsSetup::Files {
            cert: cert_path.clone(),
            key: key_path,
        },
        ..ServerConfig::loopback(dir.path().join("data"))
    };
    let addr = spawn(cfg).await?;
    let enroll = std::fs::read_to_string(dir.path().join("data/enroll-token"))?
        .trim()
        .to_owned();
    let url = format!("https://localhost:{}", addr.port());

    // Without the CA the handshake fails: the connection is really TLS and really verified.
    let untrusting = Client::new(&url, Some(enroll.clone()), None)?;
    let enroll_i1 = EnrollRequest {
        name: "i1".into(),
        tags: Default::default(),
    };
    let err = untrusting.enroll(&enroll_i1).await;
    assert!(err.is_err());

    let client = Client::new(&url, Some(enroll), Some(&cert_path))?;
    let r = client.enroll(&enroll_i1).await?;
    let agent = client.with_token(Some(r.token));
    let p = agent.poll(&PollRequest { wait_ms: Some(0) }).await?;
    assert!(p.command.is_none());
    // Plain HTTP to the TLS port is refused.
    let plain = Client::new(&format!("http://127.0.0.1:{}", addr.port()), None, None)?;
    assert!(plain.list_instances().await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_coordinator_with_its_own_ca_is_trusted_by_fingerprint_and_only_by_the_right_one()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cfg = ServerConfig {
        database: None,
        tls: TlsSetup::SelfCa {
            extra_sans: vec!["localhost".into()],
        },
        ..ServerConfig::loopback(data.clone())
    };
    let ready = spawn_ready(cfg).await?;
    let pin = ready
        .ca_fingerprint
        .ok_or("no CA fingerprint from a coordinator with its own CA")?;
    assert!(ready.tls);
    assert_eq!(
        std::fs::read_to_string(data.join("tls/ca.fingerprint"))?.trim(),
        pin.to_string()
    );
    let enroll = std::fs::read_to_string(data.join("enroll-token"))?
        .trim()
        .to_owned();
    let enroll_i1 = EnrollRequest {
        name: "i1".into(),
        tags: Default::default(),
    };
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}", ready.addr.port());
        let trust = Trust {
            ca_fingerprint: Some(pin),
            ..Trust::default()
        };
        let client = Client::with_trust(&url, Some(enroll.clone()), &trust)?;
        // Any answer from the coordinator (401 without a token) proves the handshake and the name check.
        match client.with_token(None).list_instances().await {
            Err(e) if e.status().is_none() => return Err(format!("{host}: {e}").into()),
            _ => {}
        }
    }
    let url = format!("https://127.0.0.1:{}", ready.addr.port());
    let pinned = Client::with_trust(
        &url,
        Some(enroll.clone()),
        &Trust {
            ca_fingerprint: Some(pin),
            ..Trust::default()
        },
    )?;
    pinned.enroll(&enroll_i1).await?;

    // A wrong pin: refused, naming the expected and the presented fingerprints.
    let wrong = CaFingerprint::of_der(b"not the coordinator's CA");
    let err = Client::with_trust(
        &url,
        Some(enroll.clone()),
        &Trust {
            ca_fingerprint: Some(wrong),
            ..Trust::default()
        },
    )?
    .enroll(&EnrollRequest {
        name: "i2".into(),
        tags: Default::default(),
    })
    .await
    .err()
    .ok_or("a wrong fingerprint was accepted")?;
    let text = err.to_string();
    assert!(text.contains(&format!("expected {wrong}")), "{text}");
    assert!(text.contains(&pin.to_string()), "{text}");
    // Without a pin or CA file, the webpki roots do not know the coordinator's own CA.
    assert!(
        Client::new(&url, Some(enroll), None)?
            .enroll(&EnrollRequest {
                name: "i3".into(),
                tags: Default::default()
            })
            .await
            .is_err()
    );
    Ok(())
}

/// A coordinator with its own CA on loopback: its `https://127.0.0.1:PORT` URL and its CA's fingerprint.
async fn self_ca_coordinator(
    data: std::path::PathBuf,
) -> Result<(String, CaFingerprint), Box<dyn std::error::Error>> {
    let cfg = ServerConfig {
        tls: TlsSetup::SelfCa { extra_sans: vec![] },
        ..ServerConfig::loopback(data)
    };
    let ready = spawn_ready(cfg).await?;
    let pin = ready.ca_fingerprint.ok_or("no CA fingerprint")?;
    Ok((format!("https://127.0.0.1:{}", ready.addr.port()), pin))
}

#[tokio::test]
async fn the_pin_applies_to_every_url_of_the_list() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (ours, pin) = self_ca_coordinator(dir.path().join("ours")).await?;
    let (theirs, their_pin) = self_ca_coordinator(dir.path().join("theirs")).await?;
    assert_ne!(pin, their_pin);
    let trust = Trust {
        ca_fingerprint: Some(pin),
        ..Trust::default()
    };
    // Another CA's coordinator first: refused at the handshake (nothing sent), so the call moves on to ours.
    let client = Client::with_bases(&[theirs.as_str(), ours.as_str()], None, &trust)?;
    match client.list_instances().await {
        Err(e) if e.status().is_none() => return Err(format!("ours not reached: {e}").into()),
        _ => {}
    }
    assert_eq!(client.base(), ours);
    // Only theirs left (after a dead URL): the pin is checked there too, and the error says so.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    let err = Client::with_bases(&[closed.as_str(), theirs.as_str()], None, &trust)?
        .list_instances()
        .await
        .err()
        .ok_or("another CA's coordinator was trusted")?;
    let text = err.to_string();
    assert!(
        text.contains(&closed) && text.contains(&theirs),
        "both URLs named: {text}"
    );
    assert!(
        text.contains(&format!("expected {pin}")) && text.contains(&their_pin.to_string()),
        "{text}"
    );
    Ok(())
}
