//! Signed revisions at the coordinator: a signature comes with an upload (header) or a URL registration (field),
//! is refused unless it is an SSH signature for namespace `rollcage` (and, for an upload, verifies over the archive
//! with the key it names), is stored with the revision and shown by it, and travels to the agent with every
//! command. Signatures are made by the real `ssh-keygen` (installed by scripts/setup.sh).

use crate::api::testkit::{ADMIN, Fleet, TestResult, fleet, post_json};
use crate::router;
use crate::state::State;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rollcage_proto::wire::{PollResponse, Revision, SIGNATURE_HEADER, signature_header_value};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use tower::ServiceExt;

/// `ssh-keygen -Y sign -n NAMESPACE` of `archive` with a new ed25519 key in `dir`: (armored signature, the key's
/// `SHA256:` fingerprint).
pub(super) fn keygen_sign(
    dir: &Path,
    archive: &[u8],
    namespace: &str,
) -> TestResult<(String, String)> {
    let key = dir.join(format!("key-{namespace}"));
    let file = dir.join(format!("archive-{namespace}"));
    std::fs::write(&file, archive)?;
    let ok = |c: &mut Command| -> TestResult<String> {
        let out = c.output()?;
        if !out.status.success() {
            return Err(format!("{c:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8(out.stdout)?)
    };
    ok(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key))?;
    ok(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(&key)
        .arg(&file))?;
    let fp = ok(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))?;
    let fp = fp
        .split_whitespace()
        .nth(1)
        .ok_or("no fingerprint")?
        .to_owned();
    Ok((
        std::fs::read_to_string(dir.join(format!("archive-{namespace}.sig")))?,
        fp,
    ))
}

/// Upload `archive` with the signature header `header`: (status, body).
async fn upload(
    st: &State,
    archive: &[u8],
    header: Option<&str>,
) -> TestResult<(StatusCode, serde_json::Value)> {
    let mut req = Request::post("/v1/applications/app/revisions")
        .header("authorization", format!("Bearer {ADMIN}"));
    if let Some(h) = header {
        req = req.header(SIGNATURE_HEADER, h);
    }
    let resp = router(st.clone())
        .oneshot(req.body(Body::from(archive.to_vec()))?)
        .await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes)?))
}

#[tokio::test]
async fn an_uploaded_signature_is_checked_stored_and_sent_with_each_command() -> TestResult {
    let Fleet { st, agents, .. } = fleet(1, "1", "in-place").await?;
    let dir = tempfile::tempdir()?;
    let archive = b"a signed archive";
    let (sig, fp) = keygen_sign(dir.path(), archive, "rollcage")?;

    // Over other bytes: refused, naming why; nothing registered.
    let (s, v) = upload(&st, b"other bytes", Some(&signature_header_value(&sig))).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("bad signature"), "{v}");
    // Garbage, and a signature cut short.
    let (s, v) = upload(&st, archive, Some("AAAA")).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let cut = signature_header_value(&sig);
    let (s, v) = upload(&st, archive, Some(&cut[..cut.len() / 2])).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // Too large.
    let (s, v) = upload(&st, archive, Some(&"A".repeat(20_000))).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("more than"), "{v}");
    // Another namespace.
    let (git, _) = keygen_sign(dir.path(), archive, "git")?;
    let (s, v) = upload(&st, archive, Some(&signature_header_value(&git))).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("namespace \\\"git\\\""), "{v}");

    let (s, v) = upload(&st, archive, Some(&signature_header_value(&sig))).await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rev: Revision = serde_json::from_value(v)?;
    assert!(
        rev.signed_by
            .as_deref()
            .is_some_and(|b| b == format!("ssh-ed25519 {fp}")),
        "{rev:?}"
    );
    let stored = rev.signature.clone().ok_or("no signature stored")?;
    // The stored text is the same signature, re-armored.
    assert_eq!(
        signature_header_value(&stored),
        signature_header_value(&sig)
    );

    // A deployment of it: the agent's command carries the signature.
    let (s, v) = post_json(
        &st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": rev.id}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = post_json(&st, "/v1/agent/poll", &agents[0].token, json!({})).await?;
    let p: PollResponse = serde_json::from_value(v)?;
    let cmd = p.command.ok_or("no command")?;
    assert_eq!(cmd.revision.signature.as_deref(), Some(stored.as_str()));
    Ok(())
}

#[tokio::test]
async fn a_url_revision_takes_a_signature_that_parses_for_rollcage() -> TestResult {
    let Fleet { st, .. } = fleet(1, "1", "in-place").await?;
    let dir = tempfile::tempdir()?;
    let (sig, fp) = keygen_sign(dir.path(), b"elsewhere", "rollcage")?;
    let (git, _) = keygen_sign(dir.path(), b"elsewhere", "git")?;
    let sha = "ab".repeat(32);
    let url = "/v1/applications/app/revisions/url";
    let body =
        |s: &str| json!({"url": "https://example.invalid/a.tgz", "sha256": sha, "signature": s});
    let (s, v) = post_json(&st, url, ADMIN, body("not a signature")).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("field `signature`"), "{v}");
    let (s, v) = post_json(&st, url, ADMIN, body(&git)).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = post_json(&st, url, ADMIN, body(&sig)).await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rev: Revision = serde_json::from_value(v)?;
    assert!(
        rev.signed_by.as_deref().is_some_and(|b| b.ends_with(&fp)),
        "{rev:?}"
    );
    // Without a field, an old client's body still parses and the signature is kept.
    let (s, v) = post_json(
        &st,
        url,
        ADMIN,
        json!({"url": "https://example.invalid/a.tgz", "sha256": sha}),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(serde_json::from_value::<Revision>(v)?.signature.is_some());
    Ok(())
}
