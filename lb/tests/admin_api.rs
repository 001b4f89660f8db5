//! The admin API over real sockets: bearer-token authentication, the one error shape with codes and messages
//! that name the group/server/service, and idempotent operations.

mod common;

use bytes::Bytes;
use common::{Backend, TOKEN, TestResult, get, http_client, start_lb};
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rollcage_lb::api::ServerPhase;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// Sends a raw admin request; returns status and JSON body.
async fn raw(
    admin: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_owned())))?)
        .await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes)?))
}

/// method, path, body, expected status, expected code, words the message must contain.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static [&'static str],
);

fn error_of(v: &Value) -> (String, String) {
    (
        v["error"]["code"]
            .as_str()
            .unwrap_or("<no code>")
            .to_owned(),
        v["error"]["message"]
            .as_str()
            .unwrap_or("<no message>")
            .to_owned(),
    )
}

#[tokio::test]
async fn requests_without_the_right_token_get_401() -> TestResult {
    let (lb, _) = start_lb().await?;
    let addr = lb.admin_addr();
    let bearer = format!("Bearer {TOKEN}");
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789ab"),
        Some(TOKEN),
        Some("Basic x"),
    ] {
        for (method, path) in [
            ("GET", "/v1/groups"),
            ("PUT", "/v1/groups/blue"),
            ("GET", "/nope"),
        ] {
            let (status, body) = raw(addr, method, path, auth, "").await?;
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            assert_eq!(error_of(&body).0, "unauthorized");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("token"))
            );
            assert_eq!(
                body.as_object().map(|o| o.len()),
                Some(1),
                "only `error`: {body}"
            );
        }
    }
    // Nothing was created by the refused PUTs.
    let (status, groups) = raw(addr, "GET", "/v1/groups", Some(&bearer), "").await?;
    assert_eq!((status, groups), (200, serde_json::json!([])));
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn errors_have_one_shape_and_name_what_failed() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let addr = lb.admin_addr();
    let auth = format!("Bearer {TOKEN}");
    let a = Some(auth.as_str());
    admin.create_group("blue", None).await?;

    let cases: [Case; 9] = [
        (
            "PUT",
            "/v1/groups/nosuch/servers/127.0.0.1:8080",
            "",
            404,
            "group_not_found",
            &["nosuch"],
        ),
        (
            "GET",
            "/v1/groups/blue/servers/127.0.0.1%3A9",
            "",
            404,
            "server_not_found",
            &["blue", "127.0.0.1:9"],
        ),
        (
            "PUT",
            "/v1/groups/blue/servers/no-port",
            "",
            400,
            "invalid_address",
            &["blue", "no-port"],
        ),
        (
            "PUT",
            "/v1/groups/bad%2Fname",
            "",
            400,
            "invalid_name",
            &["bad/name"],
        ),
        (
            "GET",
            "/v1/services/web",
            "",
            404,
            "service_not_found",
            &["web"],
        ),
        (
            "PUT",
            "/v1/services/web",
            r#"{"group":"blue"}"#,
            409,
            "service_conflict",
            &["web", "listen"],
        ),
        (
            "PUT",
            "/v1/services/web",
            r#"{"group":"green","listen":"127.0.0.1:0"}"#,
            404,
            "group_not_found",
            &["green"],
        ),
        (
            "PUT",
            "/v1/groups/blue",
            r#"{"health_check":{"path":"nope"}}"#,
            400,
            "bad_request",
            &["blue", "path"],
        ),
        (
            "POST",
            "/v1/groups",
            "",
            404,
            "no_route",
            &["POST", "/v1/groups"],
        ),
    ];
    for (method, path, body, want_status, want_code, words) in cases {
        let (status, v) = raw(addr, method, path, a, body).await?;
        let (code, message) = error_of(&v);
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{method} {path}: {v}"
        );
        for w in words {
            assert!(
                message.contains(w),
                "{method} {path}: message `{message}` lacks `{w}`"
            );
        }
    }
    // A group that exists with another health check is a conflict, not a silent change.
    let (status, v) = raw(
        addr,
        "PUT",
        "/v1/groups/blue",
        a,
        r#"{"health_check":{"path":"/other"}}"#,
    )
    .await?;
    assert_eq!((status, error_of(&v).0.as_str()), (409, "group_conflict"));
    // The typed client surfaces the code.
    let err = admin
        .register("nosuch", "127.0.0.1:1")
        .await
        .err()
        .ok_or("expected error")?;
    assert_eq!(err.code(), Some("group_not_found"));
    assert!(err.to_string().contains("nosuch"));
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn operations_are_idempotent() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let b = Backend::start("b").await?;
    let g1 = admin.create_group("blue", None).await?;
    let g2 = admin.create_group("blue", None).await?;
    assert_eq!(g1, g2);
    admin.create_group("green", None).await?;
    let s1 = admin
        .register_and_wait("blue", &b.address(), Duration::from_secs(5))
        .await?;
    let s2 = admin.register("blue", &b.address()).await?;
    assert_eq!((s1.phase, s1.healthy), (s2.phase, s2.healthy));
    assert_eq!(
        admin.group("blue").await?.servers.len(),
        1,
        "registered once"
    );

    let svc = admin.create_service("web", "127.0.0.1:0", "blue").await?;
    // Creating again with the same (resolved) address, or with port 0, returns the same service.
    assert_eq!(admin.create_service("web", &svc.listen, "blue").await?, svc);
    assert_eq!(
        admin.create_service("web", "127.0.0.1:0", "blue").await?,
        svc
    );
    let sw1 = admin.switch_service("web", "green").await?;
    let sw2 = admin.switch_service("web", "green").await?;
    assert_eq!(sw1, sw2);
    assert_eq!(sw1.group, "green");
    assert_eq!(admin.services().await?, vec![sw1.clone()]);
    admin.switch_service("web", "blue").await?;
    let addr = svc.listen.parse()?;
    assert_eq!(get(&http_client(), addr, "/").await?, (200, "b".to_owned()));

    let d1 = admin.deregister("blue", &b.address(), None, false).await?;
    let d2 = admin.deregister("blue", &b.address(), None, false).await?;
    assert_eq!(
        d1.phase,
        ServerPhase::Removed,
        "nothing in flight: removed at once"
    );
    assert_eq!(d2.phase, ServerPhase::Removed);
    assert!(admin.server("blue", &b.address()).await?.is_none());
    lb.shutdown().await;
    Ok(())
}
