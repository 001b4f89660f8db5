//! Router-level tests with `oneshot`: auth on every route, the error shape, and the agent protocol.

use crate::api::testkit::{ADMIN, ENROLL, TestResult, call, create_app, fleet, post_json, state};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use rollcage_proto::wire::{
    EnrollResponse, ErrorBody, PollResponse, ReportResponse, StepOutcome, StepReport,
};
use std::time::Duration;

fn assert_error_shape(v: &serde_json::Value, code: &str) -> TestResult {
    let body: ErrorBody = serde_json::from_value(v.clone())?;
    assert_eq!(body.error.code, code, "{v}");
    assert!(!body.error.message.is_empty());
    Ok(())
}

/// Every route with a valid-looking path, for the auth checks.
fn routes() -> Vec<(Method, &'static str)> {
    vec![
        (Method::POST, "/v1/applications"),
        (Method::GET, "/v1/applications"),
        (Method::POST, "/v1/applications/app/groups"),
        (Method::GET, "/v1/applications/app/groups"),
        (Method::GET, "/v1/applications/app/groups/web"),
        (Method::POST, "/v1/applications/app/revisions"),
        (Method::POST, "/v1/applications/app/revisions/url"),
        (Method::GET, "/v1/applications/app/revisions/r-1"),
        (Method::POST, "/v1/deployments"),
        (Method::GET, "/v1/deployments"),
        (Method::GET, "/v1/deployments/d-1"),
        (Method::POST, "/v1/deployments/d-1/stop"),
        (Method::POST, "/v1/deployments/d-1/rollback"),
        (Method::GET, "/v1/instances"),
        (Method::POST, "/v1/instances/i1/approve"),
        (Method::POST, "/v1/enroll-tokens"),
        (Method::GET, "/v1/enroll-tokens"),
        (Method::POST, "/v1/enroll-tokens/et-1/revoke"),
        (Method::POST, "/v1/agent/enroll"),
        (Method::POST, "/v1/agent/hello"),
        (Method::POST, "/v1/agent/poll"),
        (Method::POST, "/v1/agent/reports"),
        (Method::GET, "/v1/agent/commands/1"),
        (
            Method::GET,
            "/v1/agent/applications/app/revisions/r-1/bundle",
        ),
    ]
}

#[tokio::test]
async fn every_route_rejects_a_missing_or_wrong_token_with_401() -> TestResult {
    let st = state()?;
    for (m, uri) in routes() {
        for token in [None, Some("wrong"), Some("")] {
            let (status, body) = call(&st, m.clone(), uri, token, Body::from("{}"), true).await?;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {uri} with {token:?}");
            assert_error_shape(&body, "unauthorized")?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn tokens_are_not_interchangeable() -> TestResult {
    let st = state()?;
    let (_, v) = post_json(
        &st,
        "/v1/agent/enroll",
        ENROLL,
        serde_json::json!({"name": "i1"}),
    )
    .await?;
    let agent: EnrollResponse = serde_json::from_value(v)?;
    // The agent token and the enrollment token are not admin tokens, and the admin token is no agent's.
    for t in [agent.token.as_str(), ENROLL] {
        let (s, _) = call(
            &st,
            Method::GET,
            "/v1/instances",
            Some(t),
            Body::empty(),
            false,
        )
        .await?;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _) = post_json(&st, "/v1/agent/poll", ADMIN, serde_json::json!({})).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = post_json(
        &st,
        "/v1/agent/enroll",
        ADMIN,
        serde_json::json!({"name": "x"}),
    )
    .await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn malformed_json_and_unknown_routes_get_the_error_shape() -> TestResult {
    let st = state()?;
    let cases = [
        ("{not json", true),
        ("{\"name\": 5}", true),
        ("{\"nam\": \"x\"}", true),
        ("{\"name\": \"x\"}", false), // no content type
    ];
    for (body, json) in cases {
        let (s, v) = call(
            &st,
            Method::POST,
            "/v1/applications",
            Some(ADMIN),
            Body::from(body),
            json,
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_error_shape(&v, "invalid_request")?;
    }
    let (s, v) = call(
        &st,
        Method::GET,
        "/v1/nope",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error_shape(&v, "not_found")?;
    let (s, v) = call(
        &st,
        Method::DELETE,
        "/v1/applications",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error_shape(&v, "method_not_allowed")?;
    let (s, v) = post_json(
        &st,
        "/v1/applications",
        ADMIN,
        serde_json::json!({"name": "../etc"}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_shape(&v, "invalid_request")?;
    Ok(())
}

#[tokio::test]
async fn load_balancer_styles_need_valid_lb_settings_at_group_creation() -> TestResult {
    let st = state()?;
    create_app(&st, "app").await?;
    for style in ["blue-green", "in-place-lb"] {
        let (s, v) = post_json(
            &st,
            "/v1/applications/app/groups",
            ADMIN,
            serde_json::json!({"name": "g", "style": style, "concurrency": "1"}),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_error_shape(&v, "invalid_request")?;
        assert!(v.to_string().contains("`lb`"), "{v}");
    }
    let lb = serde_json::json!({
        "targets": { "a": "127.0.0.1:8081" },
        "lb": {
            "service": "app1",
            "driver": { "kind": "haproxy", "socket": "/run/haproxy.sock" },
            "server_groups": { "web": ["127.0.0.1:8081"] }
        }
    });
    let mut bad = lb.clone();
    bad["targets"]["b"] = "127.0.0.1:9".into();
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        serde_json::json!({"name": "g", "style": "in-place-lb", "concurrency": "1", "lb": bad}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v.to_string().contains("lb.targets.b"), "{v}");
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        serde_json::json!({"name": "g", "style": "in-place-lb", "concurrency": "1", "instances": ["a"], "lb": lb}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["lb"], lb);
    Ok(())
}

/// The error message of a 400 answer to `body` posted at `uri`.
async fn invalid_request_message(
    st: &crate::state::State,
    uri: &str,
    body: serde_json::Value,
) -> TestResult<String> {
    let (s, v) = post_json(st, uri, ADMIN, body).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error_shape(&v, "invalid_request")?;
    let body: ErrorBody = serde_json::from_value(v)?;
    Ok(body.error.message)
}

#[tokio::test]
async fn bad_lb_settings_and_bad_forms_answer_400_naming_the_field() -> TestResult {
    let st = state()?;
    create_app(&st, "app").await?;
    let lb = serde_json::json!({
        "active_group": "blue",
        "targets": { "a": "127.0.0.1:8081", "b": "127.0.0.1:8082" },
        "lb": {
            "service": "app1",
            "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/t" },
            "server_groups": { "blue": ["127.0.0.1:8081"], "green": ["127.0.0.1:8082"] }
        }
    });
    let group = |lb: serde_json::Value| serde_json::json!({"name": "g", "style": "blue-green", "concurrency": "1", "lb": lb});
    let groups = "/v1/applications/app/groups";
    // A value the settings' rules refuse: every problem, each with its path from the group.
    let mut bad = lb.clone();
    bad["lb"]["drain_timeout_secs"] = 0.into();
    bad["active_group"] = "red".into();
    let m = invalid_request_message(&st, groups, group(bad)).await?;
    assert!(m.contains("`lb.lb.drain_timeout_secs`"), "{m}");
    assert!(m.contains("`lb.active_group`"), "{m}");
    // A settings file of the wrong shape: the decoder names the field.
    let mut bad = lb.clone();
    bad["lb"]["driver"]["kind"] = "nginx".into();
    let m = invalid_request_message(&st, groups, group(bad)).await?;
    assert!(m.contains("lb.lb.driver"), "{m}");
    let mut bad = lb.clone();
    bad["lb"]["server_groups"]["blue"] = "127.0.0.1:8081".into();
    let m = invalid_request_message(&st, groups, group(bad)).await?;
    assert!(m.contains("lb.lb.server_groups.blue"), "{m}");
    // A form the form's rules refuse, at group and at deployment creation.
    let bad_form = r#"{"destination":"opt/app","check":{"script":"x","timeout":0}}"#;
    let mut body = group(lb.clone());
    body["form"] = bad_form.into();
    let m = invalid_request_message(&st, groups, body).await?;
    assert!(m.contains("form"), "{m}");
    assert!(m.contains("check.timeout"), "{m}");
    assert!(m.contains("destination"), "{m}");
    let m = invalid_request_message(
        &st,
        "/v1/deployments",
        serde_json::json!({"application": "app", "group": "g", "revision": "r-1", "form": bad_form}),
    )
    .await?;
    assert!(m.contains("check.timeout"), "{m}");
    // Nothing was created by the refusals; the good settings and form are stored and answered typed.
    let mut body = group(lb.clone());
    body["form"] = r#"{"destination":"/opt/app","start":"./run"}"#.into();
    let (s, v) = post_json(&st, groups, ADMIN, body).await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["lb"], lb, "{v}");
    let (s, v) = call(
        &st,
        Method::GET,
        "/v1/applications/app/groups/g",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["lb"]["active_group"], "blue", "{v}");
    Ok(())
}

#[tokio::test]
async fn agent_protocol_report_is_answered_with_the_next_command() -> TestResult {
    let f = fleet(2, "1", "in-place").await?;
    let (s, v) = post_json(
        &f.st,
        "/v1/deployments",
        ADMIN,
        serde_json::json!({"application": "app", "group": "web", "revision": f.revision.id}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let dep_id = v["id"].as_str().ok_or("no id")?.to_owned();
    // Only i0 has work (one at a time).
    let (_, v) = post_json(
        &f.st,
        "/v1/agent/poll",
        &f.agents[1].token,
        serde_json::json!({"wait_ms": 50}),
    )
    .await?;
    let p: PollResponse = serde_json::from_value(v)?;
    assert!(p.command.is_none());
    let (_, v) = post_json(
        &f.st,
        "/v1/agent/poll",
        &f.agents[0].token,
        serde_json::json!({}),
    )
    .await?;
    let p: PollResponse = serde_json::from_value(v)?;
    let mut cmd = p.command.ok_or("i0 has a command")?;
    assert_eq!(cmd.event.name(), "DownloadBundle");
    assert_eq!(cmd.deployment_id, dep_id);

    // Another agent touching i0's work: 403 on report, command state and (before it has work) the bundle.
    let foreign =
        serde_json::json!({"command_id": cmd.command_id, "outcome": "succeeded", "message": ""});
    let (s, v) = post_json(&f.st, "/v1/agent/reports", &f.agents[1].token, foreign).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_error_shape(&v, "forbidden")?;
    let uri = format!("/v1/agent/commands/{}", cmd.command_id);
    let (s, _) = call(
        &f.st,
        Method::GET,
        &uri,
        Some(&f.agents[1].token),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let bundle = format!(
        "/v1/agent/applications/app/revisions/{}/bundle",
        f.revision.id
    );
    let (s, _) = call(
        &f.st,
        Method::GET,
        &bundle,
        Some(&f.agents[1].token),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = call(
        &f.st,
        Method::GET,
        &bundle,
        Some(&f.agents[0].token),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, serde_json::Value::String("fake archive bytes".into()));

    let mut events = vec![cmd.event.name().to_owned()];
    loop {
        let report = StepReport {
            command_id: cmd.command_id,
            outcome: StepOutcome::Succeeded,
            message: "ok".into(),
            hooks: vec![],
            duration_ms: 1,
            log: None,
        };
        let (s, v) = post_json(
            &f.st,
            "/v1/agent/reports",
            &f.agents[0].token,
            serde_json::to_value(&report)?,
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        let r: ReportResponse = serde_json::from_value(v)?;
        assert!(r.recorded);
        // Sending the same report again is acknowledged, not recorded twice.
        let (_, v) = post_json(
            &f.st,
            "/v1/agent/reports",
            &f.agents[0].token,
            serde_json::to_value(&report)?,
        )
        .await?;
        let again: ReportResponse = serde_json::from_value(v)?;
        assert!(!again.recorded);
        match r.command {
            Some(next) => {
                events.push(next.event.name().to_owned());
                cmd = next;
            }
            None => break,
        }
    }
    let want: Vec<&str> =
        rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
            .per_instance
            .iter()
            .map(|e| e.name())
            .collect();
    assert_eq!(events, want);
    // Now i1 has its first step.
    let (_, v) = post_json(
        &f.st,
        "/v1/agent/poll",
        &f.agents[1].token,
        serde_json::json!({"wait_ms": 50}),
    )
    .await?;
    let p: PollResponse = serde_json::from_value(v)?;
    assert_eq!(p.command.map(|c| c.event.name()), Some("DownloadBundle"));
    let (_, v) = call(
        &f.st,
        Method::GET,
        &format!("/v1/applications/app/revisions/{}", f.revision.id),
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(v["downloads"], 1);
    Ok(())
}

#[tokio::test]
async fn a_waiting_poll_is_woken_by_a_dispatch() -> TestResult {
    let f = fleet(1, "all", "in-place").await?;
    let st = f.st.clone();
    let token = f.agents[0].token.clone();
    let poller = tokio::spawn(async move {
        post_json(
            &st,
            "/v1/agent/poll",
            &token,
            serde_json::json!({"wait_ms": 5000}),
        )
        .await
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    post_json(
        &f.st,
        "/v1/deployments",
        ADMIN,
        serde_json::json!({"application": "app", "group": "web", "revision": f.revision.id}),
    )
    .await?;
    let (_, v) = poller.await??;
    let p: PollResponse = serde_json::from_value(v)?;
    assert!(p.command.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "woken, not timed out"
    );
    Ok(())
}

#[tokio::test]
async fn second_deployment_is_refused_with_conflict() -> TestResult {
    let f = fleet(1, "1", "in-place").await?;
    let req = serde_json::json!({"application": "app", "group": "web", "revision": f.revision.id});
    let (s, _) = post_json(&f.st, "/v1/deployments", ADMIN, req.clone()).await?;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = post_json(&f.st, "/v1/deployments", ADMIN, req).await?;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error_shape(&v, "conflict")?;
    Ok(())
}
