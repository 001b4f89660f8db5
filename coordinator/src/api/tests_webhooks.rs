//! Groups' webhooks through the API: validated with field paths at creation and update, the secret never returned,
//! the deliveries of a deployment's events listed per group and per deployment.

use super::testkit::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

const SECRET: &str = "whsec-api-0123456789abcdef";

async fn patch(
    st: &crate::state::State,
    uri: &str,
    v: serde_json::Value,
) -> TestResult<(StatusCode, serde_json::Value)> {
    call(
        st,
        Method::PATCH,
        uri,
        Some(ADMIN),
        Body::from(v.to_string()),
        true,
    )
    .await
}

#[tokio::test]
async fn webhooks_are_checked_with_field_paths_and_the_secret_is_never_returned() -> TestResult {
    let st = state()?;
    create_app(&st, "app").await?;
    let bad = json!({"name": "web", "style": "in-place", "concurrency": "1",
        "webhooks": ["https://ok.example/x", "ftp://no.example/", "https://ok.example/x"],
        "webhook_secret": "short"});
    let (s, v) = post_json(&st, "/v1/applications/app/groups", ADMIN, bad).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let msg = v.to_string();
    for path in [
        "field `webhooks[1]`",
        "field `webhooks[2]`",
        "field `webhook_secret`",
    ] {
        assert!(msg.contains(path), "{path} in {msg}");
    }
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        json!({"name": "web", "style": "in-place", "concurrency": "1", "webhook_secret": SECRET}),
    )
    .await?;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a secret without a webhook: {v}"
    );
    assert_eq!(
        get(&st, "/v1/applications/app/groups/web", Some(ADMIN))
            .await?
            .0,
        StatusCode::NOT_FOUND,
        "nothing half-written"
    );

    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        json!({"name": "web", "style": "in-place", "concurrency": "1",
            "webhooks": ["https://hooks.example/a"], "webhook_secret": SECRET}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["webhooks"],
        json!({"urls": ["https://hooks.example/a"], "has_secret": true})
    );
    for uri in [
        "/v1/applications/app/groups/web",
        "/v1/applications/app/groups",
    ] {
        let (s, v) = get(&st, uri, Some(ADMIN)).await?;
        assert_eq!(s, StatusCode::OK);
        assert!(!v.to_string().contains(SECRET), "{uri}: {v}");
        assert!(v.to_string().contains("\"has_secret\":true"), "{uri}: {v}");
    }

    // Update: checked as at creation; a new list replaces the old; `[]` drops the secret too.
    let (s, v) = patch(
        &st,
        "/v1/applications/app/groups/web",
        json!({"webhooks": ["http://user:pw@hooks.example/"]}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("field `webhooks[0]`"), "{v}");
    let (s, v) = patch(
        &st,
        "/v1/applications/app/groups/web",
        json!({"webhooks": ["https://hooks.example/b", "https://hooks.example/c"]}),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["webhooks"],
        json!({"urls": ["https://hooks.example/b", "https://hooks.example/c"], "has_secret": true})
    );
    let (s, v) = patch(
        &st,
        "/v1/applications/app/groups/web",
        json!({"webhooks": []}),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("webhooks").is_none(), "no webhook, no secret: {v}");
    let (s, v) = patch(
        &st,
        "/v1/applications/app/groups/web",
        json!({"webhook_secret": SECRET}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a secret for no webhook: {v}");
    Ok(())
}

#[tokio::test]
async fn a_deployment_s_events_are_queued_for_each_endpoint_and_listed() -> TestResult {
    let Fleet { st, revision, .. } = fleet(1, "1", "in-place").await?;
    let (s, v) = patch(
        &st,
        "/v1/applications/app/groups/web",
        json!({"webhooks": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]}),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = post_ok(
        &st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": revision.id}),
    )
    .await?;
    let id = d["id"].as_str().ok_or("no id")?;
    let (s, v) = get(
        &st,
        &format!("/v1/deployments/{id}/deliveries"),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    let events: Vec<(&str, &str, &str)> = v
        .as_array()
        .ok_or("not a list")?
        .iter()
        .map(|d| {
            (
                d["event"].as_str().unwrap_or(""),
                d["url"].as_str().unwrap_or(""),
                d["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("deployment.created", "http://127.0.0.1:9/a", "pending"),
            ("deployment.created", "http://127.0.0.1:9/b", "pending"),
            ("instance.started", "http://127.0.0.1:9/a", "pending"),
            ("instance.started", "http://127.0.0.1:9/b", "pending"),
        ]
    );
    // Paged per group, oldest first.
    let (s, v) = get(
        &st,
        "/v1/applications/app/groups/web/deliveries?limit=3",
        Some(ADMIN),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(3));
    let cursor = v["next_cursor"].as_str().ok_or("no next page")?.to_owned();
    let (_, v) = get(
        &st,
        &format!("/v1/applications/app/groups/web/deliveries?cursor={cursor}"),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(v["items"][0]["event"], "instance.started");
    assert_eq!(v["items"][0]["url"], "http://127.0.0.1:9/b");
    assert_eq!(
        get(
            &st,
            "/v1/applications/app/groups/nope/deliveries",
            Some(ADMIN)
        )
        .await?
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&st, "/v1/deployments/d-nope/deliveries", Some(ADMIN))
            .await?
            .0,
        StatusCode::NOT_FOUND
    );
    Ok(())
}
