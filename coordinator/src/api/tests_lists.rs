//! The paged list routes (bounds, cursors stable under inserts, deployment summaries without per-instance
//! progress), the headers of every response, and the API's promises the OpenAPI document makes about optional
//! bodies and query bounds (`stop` without a body, `after=-1` refused).

use crate::api::testkit::{ADMIN, TestResult, call, create_app, fleet, post_ok, send};
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use rollcage_proto::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use serde_json::Value;

/// `GET uri` as the admin: the status and the JSON answer.
async fn get(st: &crate::state::State, uri: &str) -> TestResult<(StatusCode, Value)> {
    call(st, Method::GET, uri, Some(ADMIN), Body::empty(), false).await
}

/// The names of a page's items (`field` of each).
fn names(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_invalid(s: StatusCode, v: &Value, what: &str) {
    assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
    assert_eq!(v["error"]["code"], "invalid_request", "{what}: {v}");
}

#[tokio::test]
async fn applications_are_paged_by_name_with_a_cursor_that_stays_put_under_inserts() -> TestResult {
    let st = crate::api::testkit::state()?;
    for n in ["b", "c", "d", "e", "f"] {
        create_app(&st, n).await?;
    }
    let (s, p1) = get(&st, "/v1/applications?limit=2").await?;
    assert_eq!(s, StatusCode::OK, "{p1}");
    assert_eq!(names(&p1, "name"), ["b", "c"]);
    let cursor = p1["next_cursor"]
        .as_str()
        .ok_or("a next cursor")?
        .to_owned();
    // Inserted before the cursor and after it: the next page goes on right after `c` and sees the later one.
    for n in ["a", "cc"] {
        create_app(&st, n).await?;
    }
    let (_, p2) = get(&st, &format!("/v1/applications?limit=2&cursor={cursor}")).await?;
    assert_eq!(names(&p2, "name"), ["cc", "d"]);
    let cursor = p2["next_cursor"]
        .as_str()
        .ok_or("a next cursor")?
        .to_owned();
    let (_, p3) = get(&st, &format!("/v1/applications?limit=2&cursor={cursor}")).await?;
    assert_eq!(names(&p3, "name"), ["e", "f"]);
    assert_eq!(p3["next_cursor"], Value::Null, "{p3}");
    // No limit: the default page size; out of bounds or not a number: refused in the error shape.
    let (_, all) = get(&st, "/v1/applications").await?;
    assert_eq!(names(&all, "name").len(), 7);
    assert_eq!(all["next_cursor"], Value::Null);
    for bad in [
        "limit=0".to_owned(),
        format!("limit={}", MAX_PAGE_SIZE + 1),
        "limit=-1".to_owned(),
        "limit=x".to_owned(),
        "limt=3".to_owned(),
    ] {
        let (s, v) = get(&st, &format!("/v1/applications?{bad}")).await?;
        assert_invalid(s, &v, &bad);
    }
    Ok(())
}

#[tokio::test]
async fn a_list_without_a_limit_answers_the_default_page_size() -> TestResult {
    let st = crate::api::testkit::state()?;
    let n = DEFAULT_PAGE_SIZE as usize + 1;
    st.store.write(|tx| {
        for i in 0..n {
            let name = format!("i{i:04}");
            let e = crate::store::instances::Enrollment {
                name: &name,
                token_hash: &name,
                state: rollcage_proto::wire::InstanceState::Approved,
                enrolled_with: "standing",
            };
            crate::store::instances::enroll(tx, &e, 0)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })?;
    let (s, p) = get(&st, "/v1/instances").await?;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(names(&p, "name").len(), DEFAULT_PAGE_SIZE as usize);
    let cursor = p["next_cursor"].as_str().ok_or("a next cursor")?;
    let (_, rest) = get(&st, &format!("/v1/instances?cursor={cursor}")).await?;
    assert_eq!(names(&rest, "name"), [format!("i{:04}", n - 1)]);
    assert_eq!(rest["next_cursor"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn deployments_are_listed_as_summaries_newest_first_filtered_and_paged() -> TestResult {
    let f = fleet(2, "1", "in-place").await?;
    let st = &f.st;
    // Three groups over the same two instances, one deployment each (a group has one active deployment).
    let mut ids = Vec::new();
    for g in ["g1", "g2", "g3"] {
        post_ok(
            st,
            "/v1/applications/app/groups",
            ADMIN,
            serde_json::json!({"name": g, "style": "in-place", "concurrency": "1", "instances": ["i0", "i1"]}),
        )
        .await?;
        let d = post_ok(
            st,
            "/v1/deployments",
            ADMIN,
            serde_json::json!({"application": "app", "group": g, "revision": f.revision.id}),
        )
        .await?;
        ids.push(d["id"].as_str().ok_or("an id")?.to_owned());
    }
    let (s, p1) = get(st, "/v1/deployments?limit=2").await?;
    assert_eq!(s, StatusCode::OK, "{p1}");
    assert_eq!(names(&p1, "id"), [ids[2].clone(), ids[1].clone()]);
    // A summary: no per-instance progress (the full object is `GET /v1/deployments/{id}`).
    for item in p1["items"].as_array().ok_or("items")? {
        assert!(item.get("instances").is_none(), "{item}");
        assert_eq!(item["status"], "in_progress", "{item}");
    }
    let cursor = p1["next_cursor"]
        .as_str()
        .ok_or("a next cursor")?
        .to_owned();
    let (_, p2) = get(st, &format!("/v1/deployments?limit=2&cursor={cursor}")).await?;
    assert_eq!(names(&p2, "id"), [ids[0].clone()]);
    assert_eq!(p2["next_cursor"], Value::Null);
    let (_, g2) = get(st, "/v1/deployments?application=app&group=g2").await?;
    assert_eq!(names(&g2, "id"), [ids[1].clone()]);
    let (_, none) = get(st, "/v1/deployments?application=other").await?;
    assert_eq!(names(&none, "id"), Vec::<String>::new());
    for bad in ["cursor=abc", "cursor=-5", "group=g2", "limit=0"] {
        let (s, v) = get(st, &format!("/v1/deployments?{bad}")).await?;
        assert_invalid(s, &v, bad);
    }
    Ok(())
}

#[tokio::test]
async fn every_response_carries_nosniff_and_api_answers_are_not_stored() -> TestResult {
    let st = crate::api::testkit::state()?;
    let cases: [(Method, &str, Option<&str>, StatusCode); 6] = [
        (Method::GET, "/v1/applications", Some(ADMIN), StatusCode::OK),
        (
            Method::GET,
            "/v1/applications",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (Method::GET, "/v1/nope", Some(ADMIN), StatusCode::NOT_FOUND),
        (
            Method::DELETE,
            "/v1/deployments",
            Some(ADMIN),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/v1/openapi.yaml", None, StatusCode::OK),
        (Method::GET, "/metrics", Some(ADMIN), StatusCode::OK),
    ];
    for (method, uri, token, status) in cases {
        let resp = send(&st, method.clone(), uri, token, Body::empty(), false).await?;
        assert_eq!(resp.status(), status, "{method} {uri}");
        let h = resp.headers();
        assert_eq!(
            h[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{method} {uri}"
        );
        assert_eq!(h[header::CACHE_CONTROL], "no-store", "{method} {uri}");
    }
    // The live stream too (axum's own `no-cache` replaced).
    let (dst, _, id) = crate::api::testkit::deployment().await?;
    let uri = format!("/v1/deployments/{id}/events");
    let resp = send(&dst, Method::GET, &uri, Some(ADMIN), Body::empty(), false).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    // The dashboard's files keep their own choice (revalidate, see `dashboard.rs`), and nosniff.
    for uri in ["/", "/dashboard/app.js"] {
        let resp = send(&st, Method::GET, uri, None, Body::empty(), false).await?;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            resp.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{uri}"
        );
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache", "{uri}");
    }
    Ok(())
}

#[tokio::test]
async fn stop_takes_an_absent_or_empty_body_and_refuses_a_malformed_one() -> TestResult {
    // (body, with a JSON content type): none at all, an empty JSON body, whitespace, a forced stop.
    let bodies = [
        ("", false),
        ("", true),
        (" \n", false),
        (r#"{"force":true}"#, true),
    ];
    for (body, json) in bodies {
        let (st, _, id) = crate::api::testkit::deployment().await?;
        let uri = format!("/v1/deployments/{id}/stop");
        // Malformed first: refused, and nothing changes.
        let (s, v) = call(
            &st,
            Method::POST,
            &uri,
            Some(ADMIN),
            Body::from("{force"),
            true,
        )
        .await?;
        assert_invalid(s, &v, "malformed");
        let (s, v) = call(&st, Method::POST, &uri, Some(ADMIN), Body::from(body), json).await?;
        assert_eq!(s, StatusCode::OK, "{body:?} (json: {json}): {v}");
        assert!(
            v["status"] == "stopping" || v["status"] == "stopped",
            "{body:?}: {v}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_negative_log_cursor_is_refused() -> TestResult {
    let (st, _, id) = crate::api::testkit::deployment().await?;
    let (s, v) = get(&st, &format!("/v1/deployments/{id}/logs?after=-1")).await?;
    assert_invalid(s, &v, "after=-1");
    let (s, v) = get(&st, &format!("/v1/deployments/{id}/logs?after=0")).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    Ok(())
}
