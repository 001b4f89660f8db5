//! Validation at the door (issue 12): every bad input is a 4xx in the one error shape naming the field or the
//! names at fault (a table, one row per input), no request at all gets a 5xx (a property test), a taken instance
//! name cannot be enrolled again, and a step report is recorded whatever its text.

use crate::api::testkit::{
    ADMIN, ENROLL, Fleet, TestResult, call, deployment, fleet, fleet_on, post_json, post_ok, send,
};
use crate::state::{AppState, Settings};
use crate::store::apps;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use rollcage_proto::clip::{MAX_LOG_BYTES, MAX_MESSAGE_BYTES};
use rollcage_proto::wire::{
    CONCURRENCY_FORMS, Concurrency, Deployment, DeploymentStyle, EnrollResponse, ErrorBody, Group,
    MAX_GROUP_INSTANCES, PollResponse, ReportResponse, Revision, RevisionSource, StepLogPage,
};
use serde_json::json;
use std::sync::Arc;

/// One bad request: what is sent, the status and error code expected, and what the message must name.
struct Row {
    what: &'static str,
    method: Method,
    uri: String,
    token: String,
    body: Body,
    status: StatusCode,
    code: &'static str,
    names: Vec<String>,
}

fn row(what: &'static str, method: Method, uri: &str, token: &str, body: Body) -> Row {
    Row {
        what,
        method,
        uri: uri.to_owned(),
        token: token.to_owned(),
        body,
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        names: Vec::new(),
    }
}

impl Row {
    fn json(what: &'static str, uri: &str, token: &str, v: serde_json::Value) -> Self {
        row(what, Method::POST, uri, token, Body::from(v.to_string()))
    }

    fn expect(mut self, status: StatusCode, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    fn naming(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }
}

fn group(name: &str, concurrency: &str, instances: &[String]) -> serde_json::Value {
    json!({"name": name, "style": "in-place", "concurrency": concurrency, "instances": instances})
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn every_bad_input_is_a_4xx_in_the_error_shape_naming_what_is_wrong() -> TestResult {
    let Fleet {
        st,
        agents,
        revision,
    } = fleet(2, "1", "in-place").await?;
    let agent = &agents[0].token;
    // Set-up rows refer to: a group naming an instance that never enrolled (accepted: it may enroll later), and a
    // group stored with a repeated name (as a coordinator before these checks could store it; its deployment was
    // the 500 of the issue: the deployment's instance rows collided).
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        group("ghosts", "1", &names(&["i0", "ghost-1", "ghost-2"])),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut repeated: Group = serde_json::from_value(v)?;
    repeated.id = "g-repeated".into();
    repeated.name = "repeated".into();
    repeated.instances = names(&["i0", "i1", "i0"]);
    st.store.write(|tx| apps::insert_group(tx, &repeated))?;
    // A URL revision for the sha256 of the uploaded archive (one source per revision).
    let url_of_uploaded =
        json!({"url": "https://example.invalid/a.tgz", "sha256": revision.sha256});
    let deploy =
        |group: &str| json!({"application": "app", "group": group, "revision": revision.id});
    let relative_form = r#"{"destination": "opt/app"}"#;
    let many: Vec<String> = (0..20_000).map(|i| format!("i{i}")).collect();
    let groups = "/v1/applications/app/groups";

    let rows = vec![
        Row::json(
            "group form with a relative destination",
            groups,
            ADMIN,
            json!({"name": "g1", "style": "in-place", "concurrency": "1", "form": relative_form}),
        )
        .naming(&["form", "destination", "opt/app"]),
        Row::json(
            "deployment form with a relative destination",
            "/v1/deployments",
            ADMIN,
            json!({"application": "app", "group": "web", "revision": revision.id, "form": relative_form}),
        )
        .naming(&["form", "destination"]),
        Row::json("concurrency ` 1`", groups, ADMIN, group("g2", " 1", &[]))
            .naming(&["concurrency", "` 1`", CONCURRENCY_FORMS, "did you mean `1`"]),
        Row::json("concurrency `all `", groups, ADMIN, group("g3", "all ", &[]))
            .naming(&["concurrency", "`all `", CONCURRENCY_FORMS, "did you mean `all`"]),
        Row::json("concurrency `ALL`", groups, ADMIN, group("g4", "ALL", &[]))
            .naming(&["concurrency", "`ALL`", CONCURRENCY_FORMS]),
        Row::json(
            "duplicate instance names",
            groups,
            ADMIN,
            group("g5", "1", &names(&["i0", "i1", "i0", "i1", "i0"])),
        )
        .naming(&["instances", "more than once", "`i0`, `i1`"]),
        Row::json(
            "a 20,000-name instance list",
            groups,
            ADMIN,
            group("g6", "1", &many),
        )
        .naming(&["instances", "20000", &MAX_GROUP_INSTANCES.to_string()]),
        Row::json(
            "an invalid instance name",
            groups,
            ADMIN,
            group("g7", "1", &names(&["i0", "../etc"])),
        )
        .naming(&["instances", "`../etc`"]),
        Row::json("a duplicate group", groups, ADMIN, group("web", "1", &[]))
            .expect(StatusCode::CONFLICT, "conflict")
            .naming(&["`web`", "already"]),
        Row::json(
            "a deployment of a group naming instances not enrolled",
            "/v1/deployments",
            ADMIN,
            deploy("ghosts"),
        )
        .expect(StatusCode::CONFLICT, "conflict")
        .naming(&["not enrolled", "`ghost-1`, `ghost-2`"]),
        Row::json(
            "a deployment of a group stored with a repeated name (was a 500)",
            "/v1/deployments",
            ADMIN,
            deploy("repeated"),
        )
        .naming(&["instances", "more than once", "`i0`"]),
        row(
            "a non-numeric command id",
            Method::GET,
            "/v1/agent/commands/abc",
            agent,
            Body::empty(),
        )
        .naming(&["path parameter `id`", "`abc`", "whole number"]),
        row(
            "an overflowing command id",
            Method::GET,
            "/v1/agent/commands/99999999999999999999",
            agent,
            Body::empty(),
        )
        .naming(&["path parameter `id`", "99999999999999999999"]),
        row(
            "a path parameter that is not UTF-8",
            Method::GET,
            "/v1/deployments/%FF%FE",
            ADMIN,
            Body::empty(),
        )
        .naming(&["path parameter `id`", "UTF-8"]),
        row(
            "a path parameter that is not UTF-8 (events)",
            Method::GET,
            "/v1/deployments/%C3%28/events",
            ADMIN,
            Body::empty(),
        )
        .naming(&["path parameter `id`", "UTF-8"]),
        row(
            "a path parameter that is not UTF-8 (logs)",
            Method::GET,
            "/v1/deployments/%FF/logs",
            ADMIN,
            Body::empty(),
        )
        .naming(&["path parameter `id`", "UTF-8"]),
        Row::json(
            "enrolling under a taken name",
            "/v1/agent/enroll",
            ENROLL,
            json!({"name": "i0"}),
        )
        .expect(StatusCode::CONFLICT, "conflict")
        .naming(&["`i0`", "already enrolled", "DELETE /v1/instances/i0"]),
        Row::json(
            "enrolling under an invalid name",
            "/v1/agent/enroll",
            ENROLL,
            json!({"name": ".hidden"}),
        )
        .naming(&["`name`", "`.hidden`"]),
        Row::json(
            "a URL for an archive uploaded to the coordinator",
            "/v1/applications/app/revisions/url",
            ADMIN,
            url_of_uploaded,
        )
        .expect(StatusCode::CONFLICT, "conflict")
        .naming(&[&revision.id, "already uploaded"]),
        row(
            "removing an instance that is not enrolled",
            Method::DELETE,
            "/v1/instances/nobody",
            ADMIN,
            Body::empty(),
        )
        .expect(StatusCode::NOT_FOUND, "not_found")
        .naming(&["`nobody`"]),
    ];
    for r in rows {
        let what = r.what;
        let (status, v) = call(&st, r.method, &r.uri, Some(&r.token), r.body, true).await?;
        assert_eq!(status, r.status, "{what}: {v}");
        let body: ErrorBody = serde_json::from_value(v.clone())
            .map_err(|e| format!("{what}: not the error shape ({e}): {v}"))?;
        assert_eq!(body.error.code, r.code, "{what}: {v}");
        for n in &r.names {
            assert!(
                body.error.message.contains(n.as_str()),
                "{what}: the message does not name {n:?}: {}",
                body.error.message
            );
        }
        // Bounded whatever was sent (the 20,000 names are not echoed).
        assert!(
            body.error.message.len() < 2_000,
            "{what}: {}",
            body.error.message
        );
    }
    // Nothing was half-done: the refused groups do not exist, and no deployment started.
    let (_, v) = call(&st, Method::GET, groups, Some(ADMIN), Body::empty(), false).await?;
    let listed: rollcage_proto::page::Page<Group> = serde_json::from_value(v)?;
    let mut listed: Vec<String> = listed.items.into_iter().map(|g| g.name).collect();
    listed.sort();
    assert_eq!(listed, ["ghosts", "repeated", "web"]);
    let (_, v) = call(
        &st,
        Method::GET,
        "/v1/deployments",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(v, json!({"items": [], "next_cursor": null}));
    Ok(())
}

#[tokio::test]
async fn the_accepted_spellings_of_concurrency_are_stored_as_given() -> TestResult {
    let Fleet { st, .. } = fleet(1, "all", "in-place").await?;
    for (name, c) in [("a", "all"), ("b", "7"), ("c", "100%")] {
        let v = post_ok(
            &st,
            "/v1/applications/app/groups",
            ADMIN,
            group(name, c, &[]),
        )
        .await?;
        let g: Group = serde_json::from_value(v)?;
        assert_eq!(g.concurrency.to_string(), c);
        assert_eq!(g.style, DeploymentStyle::InPlace);
    }
    let (_, v) = call(
        &st,
        Method::GET,
        "/v1/applications/app/groups/web",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(
        serde_json::from_value::<Group>(v)?.concurrency,
        Concurrency::All
    );
    Ok(())
}

#[tokio::test]
async fn a_group_may_name_instances_before_they_enroll_and_deploys_once_they_have() -> TestResult {
    let Fleet { st, revision, .. } = fleet(1, "1", "in-place").await?;
    post_ok(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        group("later", "1", &names(&["i0", "new-host"])),
    )
    .await?;
    let req = json!({"application": "app", "group": "later", "revision": revision.id});
    let (s, v) = post_json(&st, "/v1/deployments", ADMIN, req.clone()).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    post_ok(&st, "/v1/agent/enroll", ENROLL, json!({"name": "new-host"})).await?;
    let d: Deployment = serde_json::from_value(post_ok(&st, "/v1/deployments", ADMIN, req).await?)?;
    assert_eq!(d.instances.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_taken_name_cannot_be_enrolled_and_the_agent_holding_it_keeps_working() -> TestResult {
    let (st, token, id) = deployment().await?;
    let poll = |t: String| {
        let st = st.clone();
        async move {
            let (s, v) = post_json(&st, "/v1/agent/poll", &t, json!({"wait_ms": 0})).await?;
            TestResult::Ok((s, v))
        }
    };
    let (s, v) = poll(token.clone()).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cmd = serde_json::from_value::<PollResponse>(v)?
        .command
        .ok_or("no command for the agent")?;
    // Someone with the enrollment token tries to take over `i0`: refused, and nothing of i0 changed.
    let (s, v) = post_json(&st, "/v1/agent/enroll", ENROLL, json!({"name": "i0"})).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.get("token").is_none(), "{v}");
    let (s, v) = poll(token.clone()).await?;
    assert_eq!(
        s,
        StatusCode::OK,
        "the original agent's token still authenticates: {v}"
    );
    let again = serde_json::from_value::<PollResponse>(v)?
        .command
        .ok_or("command lost")?;
    assert_eq!(again.command_id, cmd.command_id);
    let report = json!({"command_id": cmd.command_id, "outcome": "succeeded", "message": "ok"});
    let v = post_ok(&st, "/v1/agent/reports", &token, report).await?;
    assert!(serde_json::from_value::<ReportResponse>(v)?.recorded);
    // The documented way to enroll the host again: remove the instance (refused while a deployment that has not
    // ended includes it), then enroll.
    let remove = |st: &Arc<AppState>| {
        let st = st.clone();
        async move {
            call(
                &st,
                Method::DELETE,
                "/v1/instances/i0",
                Some(ADMIN),
                Body::empty(),
                false,
            )
            .await
        }
    };
    let (s, v) = remove(&st).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains(&id), "{v}");
    post_ok(
        &st,
        &format!("/v1/deployments/{id}/stop"),
        ADMIN,
        json!({"force": true}),
    )
    .await?;
    let (s, v) = remove(&st).await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = poll(token.clone()).await?;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a removed instance's token stops working"
    );
    let v = post_ok(&st, "/v1/agent/enroll", ENROLL, json!({"name": "i0"})).await?;
    let fresh: EnrollResponse = serde_json::from_value(v)?;
    let (s, _) = poll(fresh.token).await?;
    assert_eq!(s, StatusCode::OK);
    Ok(())
}

/// The command the agent of `token` is given now.
async fn command(st: &Arc<AppState>, token: &str) -> TestResult<i64> {
    let v = post_ok(st, "/v1/agent/poll", token, json!({"wait_ms": 0})).await?;
    Ok(serde_json::from_value::<PollResponse>(v)?
        .command
        .ok_or("no command")?
        .command_id)
}

#[tokio::test]
async fn a_report_with_oversized_or_broken_text_is_cut_and_recorded_not_refused() -> TestResult {
    let (st, token, id) = deployment().await?;
    // An oversized message and log (what an agent that does not bound its reports sends).
    let first = command(&st, &token).await?;
    let report = json!({
        "command_id": first,
        "outcome": "succeeded",
        "message": "m".repeat(3 * MAX_MESSAGE_BYTES),
        "log": {"text": "l".repeat(MAX_LOG_BYTES + 5000)},
    });
    let v = post_ok(&st, "/v1/agent/reports", &token, report).await?;
    assert!(serde_json::from_value::<ReportResponse>(v)?.recorded);
    // Bytes that are not UTF-8, a lone surrogate escape and a terminal escape, in the message and the log.
    let second = command(&st, &token).await?;
    assert_ne!(first, second);
    let mut body =
        format!(r#"{{"command_id":{second},"outcome":"failed","message":"bad "#).into_bytes();
    body.extend_from_slice(b"\xff\xfe \\ud800 \\\\ud800 \x1b[31m");
    body.extend_from_slice(b"\",\"log\":{\"text\":\"out \xc3\x28 \\udfff end\\n\"}}");
    let (s, v) = call(
        &st,
        Method::POST,
        "/v1/agent/reports",
        Some(&token),
        Body::from(body),
        true,
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(serde_json::from_value::<ReportResponse>(v)?.recorded);

    let (_, v) = call(
        &st,
        Method::GET,
        &format!("/v1/deployments/{id}"),
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    let d: Deployment = serde_json::from_value(v)?;
    let steps = &d.instances[0].steps;
    let cut = steps
        .iter()
        .find(|s| s.message.starts_with("mmm"))
        .ok_or("no cut message")?;
    assert!(
        cut.message.len() <= MAX_MESSAGE_BYTES,
        "{}",
        cut.message.len()
    );
    assert!(
        cut.message
            .ends_with(&format!("[{} bytes in all]", 3 * MAX_MESSAGE_BYTES))
    );
    let broken = steps
        .iter()
        .find(|s| s.message.starts_with("bad "))
        .ok_or("no broken message")?;
    assert_eq!(
        broken.message,
        "bad \u{FFFD}\u{FFFD} \u{FFFD} \\ud800 \u{FFFD}[31m"
    );
    let (_, v) = call(
        &st,
        Method::GET,
        &format!("/v1/deployments/{id}/logs"),
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    let page: StepLogPage = serde_json::from_value(v)?;
    let long = page
        .entries
        .iter()
        .find(|e| e.text.starts_with('l'))
        .ok_or("no long log")?;
    assert!(long.text.len() <= MAX_LOG_BYTES);
    assert!(long.truncated_bytes >= 5000);
    assert!(
        page.entries
            .iter()
            .any(|e| e.text == "out \u{FFFD}( \u{FFFD} end\n"),
        "{:?}",
        page.entries
    );
    Ok(())
}

#[tokio::test]
async fn a_report_over_the_body_limit_is_a_413_in_the_error_shape() -> TestResult {
    let (st, token, _) = deployment().await?;
    let cmd = command(&st, &token).await?;
    let huge = "x".repeat(super::agent::REPORT_BODY_LIMIT);
    let report = json!({"command_id": cmd, "outcome": "succeeded", "message": huge});
    let (s, v) = post_json(&st, "/v1/agent/reports", &token, report).await?;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(
        serde_json::from_value::<ErrorBody>(v)?.error.code,
        "payload_too_large"
    );
    Ok(())
}

#[tokio::test]
async fn pushing_an_archive_registered_by_url_makes_the_coordinator_its_source() -> TestResult {
    let Fleet { st, .. } = fleet(1, "1", "in-place").await?;
    let archive = b"an archive first registered by url";
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(archive))
    };
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/revisions/url",
        ADMIN,
        json!({"url": "https://example.invalid/x.tgz", "sha256": sha}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let by_url: Revision = serde_json::from_value(v)?;
    let upload = |st: &Arc<AppState>| {
        let st = st.clone();
        async move {
            call(
                &st,
                Method::POST,
                "/v1/applications/app/revisions",
                Some(ADMIN),
                Body::from(&archive[..]),
                false,
            )
            .await
        }
    };
    let (s, v) = upload(&st).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    let pushed: Revision = serde_json::from_value(v)?;
    assert_eq!(pushed.id, by_url.id);
    assert_eq!(
        pushed.source,
        RevisionSource::Uploaded {
            size: archive.len() as u64
        }
    );
    // The same push again changes nothing; so does the same URL registration of a fresh archive.
    let (s, v) = upload(&st).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(serde_json::from_value::<Revision>(v)?, pushed);
    Ok(())
}

mod no_5xx {
    //! A property test: random methods, paths (route shapes with random parameters, and random paths), queries,
    //! tokens and bodies (random bytes, and JSON objects of the API's field names with odd values) thrown at the
    //! router over a fleet with a running deployment. No answer is a 5xx, and every error is in the error shape.

    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    const ROUTES: &[&str] = &[
        "/v1/applications",
        "/v1/applications/{}/groups",
        "/v1/applications/{}/groups/{}",
        "/v1/applications/{}/revisions",
        "/v1/applications/{}/revisions/url",
        "/v1/applications/{}/revisions/{}",
        "/v1/deployments",
        "/v1/deployments/{}",
        "/v1/deployments/{}/events",
        "/v1/deployments/{}/stop",
        "/v1/deployments/{}/logs",
        "/v1/deployments/{}/continue",
        "/v1/deployments/{}/rollback",
        "/v1/instances",
        "/v1/instances/{}",
        "/v1/agent/enroll",
        "/v1/agent/poll",
        "/v1/agent/reports",
        "/v1/agent/commands/{}",
        "/v1/agent/applications/{}/revisions/{}/bundle",
        "/v1/openapi.yaml",
        "/metrics",
        "/",
        "/dashboard/{}",
    ];

    const FIELDS: &[&str] = &[
        "name",
        "style",
        "concurrency",
        "instances",
        "form",
        "lb",
        "application",
        "group",
        "revision",
        "force",
        "command_id",
        "outcome",
        "message",
        "log",
        "hooks",
        "duration_ms",
        "wait_ms",
        "url",
        "sha256",
        "failure_tolerance",
        "auto_rollback",
        "text",
        "truncated_bytes",
    ];

    fn segment(known: Vec<String>) -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(known),
            1 => proptest::sample::select(vec![
                "99999999999999999999".to_owned(), "-1".into(), "0".into(), "%FF".into(), "%00".into(),
                "..".into(), "1e3".into(), "%2F".into(), "ALL".into(), "i0".into(),
            ]),
            2 => "[a-zA-Z0-9._~-]{0,24}",
        ]
    }

    fn leaf(known: Vec<String>) -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(json!(u64::MAX)),
            Just(json!(1e300)),
            Just(json!(-0.5)),
            proptest::sample::select(known).prop_map(serde_json::Value::from),
            proptest::sample::select(vec![
                " 1",
                "all ",
                "ALL",
                "50%",
                "0%",
                "in-place",
                "blue-green",
                "succeeded",
                "failed",
                r#"{"destination":"rel"}"#,
                r#"{"destination":"/srv/a"}"#,
                "https://x/y.tgz",
                "",
            ])
            .prop_map(serde_json::Value::from),
            "\\PC{0,40}".prop_map(serde_json::Value::from),
        ]
    }

    fn body(known: Vec<String>) -> impl Strategy<Value = Vec<u8>> {
        let value = leaf(known).prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(proptest::sample::select(FIELDS), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                    )),
            ]
        });
        let object = proptest::collection::btree_map(proptest::sample::select(FIELDS), value, 0..7)
            .prop_map(|m| {
                let m: serde_json::Map<_, _> =
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                serde_json::Value::Object(m).to_string().into_bytes()
            });
        prop_oneof![
            4 => object,
            1 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => Just(Vec::new()),
        ]
    }

    #[derive(Debug, Clone)]
    struct Req {
        method: Method,
        uri: String,
        token: Option<String>,
        body: Vec<u8>,
        json: bool,
    }

    fn request(known: Vec<String>, tokens: Vec<Option<String>>) -> impl Strategy<Value = Req> {
        let method = proptest::sample::select(vec![
            Method::GET,
            Method::POST,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ]);
        let routed = (
            proptest::sample::select(ROUTES),
            proptest::collection::vec(segment(known.clone()), 3),
        )
            .prop_map(|(route, segs)| {
                let mut out = String::new();
                let mut segs = segs.into_iter();
                for (i, part) in route.split("{}").enumerate() {
                    if i > 0 {
                        out.push_str(&segs.next().unwrap_or_default());
                    }
                    out.push_str(part);
                }
                out
            });
        let path = prop_oneof![9 => routed, 1 => "/[a-zA-Z0-9/%._~-]{0,60}"];
        // `wait_ms` is left out of queries: a long poll that waits is not a failure, only slow.
        let query = proptest::option::of((
            proptest::sample::select(vec!["after", "instance", "event", "limit", "cursor", "x"]),
            "[a-zA-Z0-9%-]{0,12}",
        ));
        (
            method,
            path,
            query,
            proptest::sample::select(tokens),
            body(known),
            any::<bool>(),
        )
            .prop_map(|(method, path, query, token, body, json)| {
                let uri = match query {
                    Some((k, v)) => format!("{path}?{k}={v}"),
                    None => path,
                };
                Req {
                    method,
                    uri,
                    token,
                    body,
                    json,
                }
            })
    }

    #[test]
    fn no_request_gets_a_5xx() -> TestResult {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Polls are held 10 ms at most, so a case costs milliseconds.
        let settings = Settings {
            max_poll_wait: std::time::Duration::from_millis(10),
            ..crate::testkit::settings()
        };
        let (st, known, tokens) = rt.block_on(async {
            let st = crate::testkit::state_over(crate::testkit::store()?, settings)?;
            let Fleet {
                st,
                agents,
                revision,
            } = fleet_on(st, 2, "1", "in-place").await?;
            let d = post_ok(
                &st,
                "/v1/deployments",
                ADMIN,
                json!({"application": "app", "group": "web", "revision": revision.id}),
            )
            .await?;
            let id = d["id"].as_str().ok_or("no deployment id")?.to_owned();
            let known = vec![
                "app".to_owned(),
                "web".into(),
                revision.id.clone(),
                id,
                "i0".into(),
                "i1".into(),
                "1".into(),
                "2".into(),
                "url".into(),
                "index.html".into(),
            ];
            let mut tokens = vec![None, Some("junk".to_owned()), Some(ENROLL.to_owned())];
            tokens.extend(std::iter::repeat_n(Some(ADMIN.to_owned()), 3));
            tokens.extend(agents.into_iter().map(|a| Some(a.token)));
            TestResult::Ok((st, known, tokens))
        })?;
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&request(known, tokens), |req| {
            let Ok(uri) = req.uri.parse::<axum::http::Uri>() else {
                return Ok(());
            };
            let answer = rt.block_on(async {
                let resp = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    send(
                        &st,
                        req.method.clone(),
                        &uri.to_string(),
                        req.token.as_deref(),
                        Body::from(req.body.clone()),
                        req.json,
                    ),
                )
                .await
                .map_err(|_| "no answer within 5 s".to_owned())?
                .map_err(|e| e.to_string())?;
                let status = resp.status();
                let is_json = resp
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                let body = if status.is_client_error() || status.is_server_error() {
                    use http_body_util::BodyExt;
                    resp.into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes()
                } else {
                    Default::default()
                };
                Ok::<_, String>((status, is_json, body))
            });
            let (status, is_json, bytes) = answer.map_err(TestCaseError::fail)?;
            prop_assert!(
                !status.is_server_error(),
                "{} {}: {status} {}",
                req.method,
                req.uri,
                String::from_utf8_lossy(&bytes)
            );
            if status.is_client_error() {
                prop_assert!(is_json, "{} {}: {status} not JSON", req.method, req.uri);
                prop_assert!(
                    serde_json::from_slice::<ErrorBody>(&bytes).is_ok(),
                    "{} {}: {status} not the error shape: {}",
                    req.method,
                    req.uri,
                    String::from_utf8_lossy(&bytes)
                );
            }
            Ok(())
        });
        result.map_err(|e| e.to_string().into())
    }
}
