//! The coordinator serves TLS (rustls) when given a certificate, and the client trusts it through `--ca-file`.

use rollcage_client::Client;
use rollcage_coordinator::Settings;
use rollcage_coordinator::server::{ServerConfig, serve};
use rollcage_proto::wire::{EnrollRequest, PollRequest};

#[tokio::test]
async fn agent_enrolls_and_polls_over_tls() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())?;
    let cfg = ServerConfig {
        data: dir.path().join("data"),
        listen: "127.0.0.1:0".parse()?,
        tls: Some((cert_path.clone(), key_path)),
        admin_token_file: None,
        enroll_token_file: None,
        settings: Settings::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = serve(cfg, move |addr| {
            let _ = tx.send(addr);
        })
        .await;
    });
    let addr = rx.await?;
    let enroll = std::fs::read_to_string(dir.path().join("data/enroll-token"))?
        .trim()
        .to_owned();
    let url = format!("https://localhost:{}", addr.port());

    // Without the CA the handshake fails: the connection is really TLS and really verified.
    let untrusting = Client::new(&url, Some(enroll.clone()), None)?;
    let enroll_i1 = EnrollRequest { name: "i1".into() };
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
