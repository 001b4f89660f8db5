//! People, roles and the audit trail (issue 13): the route × role matrix over every operation of the OpenAPI
//! document, a deployer confined to its applications, a viewer that watches but cannot stop, revocation at once,
//! and the audit entries of a deployer's deployment and a viewer's refused stop.

use super::guard::{RULES, rule_for};
use crate::api::testkit::{
    ADMIN, Fleet, PEER, TestResult, call, fleet, get, post_json, post_ok, send,
};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use rollcage_proto::access::{AuditEntry, CreatedToken, TokenInfo, WhoAmI};
use rollcage_proto::page::Page;
use rollcage_proto::wire::Deployment;
use serde_json::json;

/// Who calls, in the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    /// A deployer of `app` (the fleet's application).
    DeployerA,
    /// A deployer of `other`.
    DeployerB,
    Viewer,
    NoToken,
    Revoked,
    Agent,
}

/// Admins last: what they change (a deployment stopped, an instance removed) must not change the others' answers.
const WHO: [Who; 7] = [
    Who::NoToken,
    Who::Revoked,
    Who::Agent,
    Who::Viewer,
    Who::DeployerB,
    Who::DeployerA,
    Who::Admin,
];

/// The status class expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// 2xx, or a 4xx that is not about who calls (404, 409, 400…).
    Ok,
    Unauthorized,
    Forbidden,
}

/// What each operation needs, written out here (not read from `guard::RULES`, which it checks).
#[derive(Debug, Clone, Copy)]
enum Needs {
    Public,
    Read,
    DeployApp,
    Admin,
    AgentToken,
    EnrollToken,
    Metrics,
}

fn needs(method: &str, path: &str) -> Option<Needs> {
    use Needs::*;
    Some(match (method, path) {
        ("get", "/v1/openapi.yaml") | ("get", "/healthz") => Public,
        ("get", "/v1/whoami") => Read,
        ("post" | "get", "/v1/tokens") | ("delete", "/v1/tokens/{name}") => Admin,
        ("get", "/v1/audit") => Admin,
        ("post", "/v1/applications") | ("post", "/v1/applications/{app}/groups") => Admin,
        ("get", "/v1/applications")
        | ("get", "/v1/applications/{app}/groups")
        | ("get", "/v1/applications/{app}/groups/{group}")
        | ("get", "/v1/applications/{app}/groups/{group}/deliveries")
        | ("get", "/v1/applications/{app}/revisions/{id}")
        | ("get", "/v1/applications/{app}/revisions")
        | ("get", "/v1/deployments")
        | ("get", "/v1/deployments/{id}")
        | ("get", "/v1/deployments/{id}/events")
        | ("get", "/v1/deployments/{id}/logs")
        | ("get", "/v1/deployments/{id}/deliveries")
        | ("get", "/v1/instances") => Read,
        ("post", "/v1/applications/{app}/revisions")
        | ("delete", "/v1/applications/{app}/revisions/{id}")
        | ("post", "/v1/applications/{app}/revisions/url")
        | ("post", "/v1/deployments")
        | ("post", "/v1/deployments/{id}/stop")
        | ("post", "/v1/deployments/{id}/rollback")
        | ("post", "/v1/deployments/{id}/continue") => DeployApp,
        ("delete", "/v1/instances/{name}")
        | ("delete", "/v1/applications/{app}")
        | ("patch" | "delete", "/v1/applications/{app}/groups/{group}")
        | ("post", "/v1/instances/{name}/approve")
        | ("post" | "get", "/v1/enroll-tokens")
        | ("post", "/v1/enroll-tokens/{id}/revoke") => Admin,
        ("post", "/v1/agent/enroll") => EnrollToken,
        ("post", "/v1/agent/hello")
        | ("post", "/v1/agent/poll")
        | ("post", "/v1/agent/reports")
        | ("get", "/v1/agent/commands/{id}")
        | ("get", "/v1/agent/applications/{app}/revisions/{id}/bundle") => AgentToken,
        ("get", "/metrics") => Metrics,
        _ => return None,
    })
}

fn expected(needs: Needs, who: Who) -> Class {
    use Class::*;
    let operator = matches!(
        who,
        Who::Admin | Who::DeployerA | Who::DeployerB | Who::Viewer
    );
    match needs {
        Needs::Public => Ok,
        Needs::Read if operator => Ok,
        Needs::DeployApp if matches!(who, Who::Admin | Who::DeployerA) => Ok,
        Needs::DeployApp if operator => Forbidden,
        Needs::Admin if who == Who::Admin => Ok,
        Needs::Admin if operator => Forbidden,
        Needs::AgentToken if who == Who::Agent => Ok,
        Needs::Metrics if who == Who::Admin => Ok,
        _ => Unauthorized,
    }
}

fn class(s: StatusCode) -> Class {
    match s {
        StatusCode::UNAUTHORIZED => Class::Unauthorized,
        StatusCode::FORBIDDEN => Class::Forbidden,
        _ => Class::Ok,
    }
}

/// A fleet with a deployment of `app/web` running on `i0`, and a token for each [`Who`].
struct World {
    fleet: Fleet,
    deployment: String,
    tokens: Vec<(Who, Option<String>)>,
}

/// Create a named token as the bootstrap admin; its secret.
async fn token(f: &Fleet, name: &str, role: &str, apps: &[&str]) -> TestResult<String> {
    let v = post_ok(
        &f.st,
        "/v1/tokens",
        ADMIN,
        json!({"name": name, "role": role, "apps": apps}),
    )
    .await?;
    let created: CreatedToken = serde_json::from_value(v)?;
    Ok(created.token)
}

async fn world() -> TestResult<World> {
    let f = fleet(1, "1", "in-place").await?;
    let d = post_ok(
        &f.st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": f.revision.id}),
    )
    .await?;
    let deployment = d["id"].as_str().ok_or("no id")?.to_owned();
    let a = token(&f, "dep-a", "deployer", &["app"]).await?;
    let b = token(&f, "dep-b", "deployer", &["other"]).await?;
    let v = token(&f, "view", "viewer", &[]).await?;
    let r = token(&f, "gone", "admin", &[]).await?;
    let (s, _) = call(
        &f.st,
        Method::DELETE,
        "/v1/tokens/gone",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let agent = f.agents[0].token.clone();
    let tokens = vec![
        (Who::Admin, Some(ADMIN.to_owned())),
        (Who::DeployerA, Some(a)),
        (Who::DeployerB, Some(b)),
        (Who::Viewer, Some(v)),
        (Who::NoToken, None),
        (Who::Revoked, Some(r)),
        (Who::Agent, Some(agent)),
    ];
    Ok(World {
        fleet: f,
        deployment,
        tokens,
    })
}

impl World {
    fn token(&self, who: Who) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(w, _)| *w == who)
            .and_then(|(_, t)| t.as_deref())
    }

    /// A request every handler could accept for `method path`: the URI and the body.
    fn request(&self, method: &str, path: &str) -> (String, Body, bool) {
        let rev = &self.fleet.revision.id;
        let uri = path
            .replace("/tokens/{name}", "/tokens/view")
            .replace("/instances/{name}", "/instances/i0")
            .replace("/commands/{id}", "/commands/1")
            .replace("/revisions/{id}", &format!("/revisions/{rev}"))
            .replace(
                "/deployments/{id}",
                &format!("/deployments/{}", self.deployment),
            )
            .replace("{app}", "app")
            .replace("{group}", "web");
        let body = match (method, path) {
            ("post", "/v1/tokens") => json!({"name": "newer", "role": "viewer"}),
            ("post", "/v1/enroll-tokens") => json!({"uses": 1, "ttl_secs": 3600}),
            ("post", "/v1/applications") => json!({"name": "newapp"}),
            ("post", "/v1/applications/{app}/groups") => {
                json!({"name": "g2", "style": "in-place", "concurrency": "all", "instances": []})
            }
            ("post", "/v1/applications/{app}/revisions") => {
                return (uri, Body::from(&b"more archive bytes"[..]), false);
            }
            ("post", "/v1/applications/{app}/revisions/url") => {
                json!({"url": "https://example.com/b.tgz", "sha256": "ab".repeat(32)})
            }
            ("post", "/v1/deployments") => {
                json!({"application": "app", "group": "web", "revision": rev})
            }
            ("post", "/v1/agent/enroll") => json!({"name": "newi"}),
            ("post", "/v1/agent/reports") => json!({"command_id": 1, "outcome": "succeeded"}),
            _ => json!({}),
        };
        (uri, Body::from(body.to_string()), true)
    }
}

#[tokio::test]
async fn every_documented_route_answers_each_role_as_the_role_allows() -> TestResult {
    let ops = super::tests_ops::documented()?;
    let mut failures = Vec::new();
    for (method, path) in &ops {
        let Some(n) = needs(method, path) else {
            failures.push(format!("{method} {path}: not in this test's table: add it"));
            continue;
        };
        // A fresh world per route: what one route changes cannot change another's answer.
        let w = world().await?;
        for who in WHO {
            let (uri, body, json) = w.request(method, path);
            let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let resp = send(&w.fleet.st, m, &uri, w.token(who), body, json).await?;
            let got = resp.status();
            if got.is_server_error() || class(got) != expected(n, who) {
                failures.push(format!(
                    "{method} {path} as {who:?}: {got}, expected {:?}",
                    expected(n, who)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn every_route_of_the_router_and_the_document_has_an_access_rule() -> TestResult {
    // Deny by default: a route without a rule is refused to everyone, so a missing rule is a bug this test shows.
    for (method, path) in super::tests_ops::documented()? {
        let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
        assert!(
            rule_for(&m, &path).is_some(),
            "no access rule for {method} {path}"
        );
    }
    for path in crate::api::route_paths() {
        assert!(
            RULES.iter().any(|r| r.path == path),
            "no access rule for {path}"
        );
    }
    for r in RULES {
        assert!(
            crate::api::route_paths().iter().any(|p| p == r.path),
            "rule for a route the router does not have: {}",
            r.path
        );
    }
    Ok(())
}

/// The error message of a refusal.
fn message(v: &serde_json::Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_deployer_is_confined_to_its_applications() -> TestResult {
    let w = world().await?;
    let st = &w.fleet.st;
    // Application `other` with a group and a revision, and a deployment of it by the admin.
    post_ok(st, "/v1/applications", ADMIN, json!({"name": "other"})).await?;
    post_ok(
        st,
        "/v1/applications/other/groups",
        ADMIN,
        json!({"name": "web", "style": "in-place", "concurrency": "all", "instances": ["i0"]}),
    )
    .await?;
    let a = w.token(Who::DeployerA).ok_or("no token")?;
    let (s, v) = call(
        st,
        Method::POST,
        "/v1/applications/other/revisions",
        Some(a),
        Body::from(&b"bytes"[..]),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        message(&v),
        "token `dep-a` (deployer for app) may not push revisions of other"
    );
    let (s, v) = post_json(
        st,
        "/v1/deployments",
        a,
        json!({"application": "other", "group": "web", "revision": w.fleet.revision.id}),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(
        message(&v).contains("may not create deployments of other"),
        "{v}"
    );
    // Its own application's deployment it may stop; another's it may not.
    let b = w.token(Who::DeployerB).ok_or("no token")?;
    let stop = format!("/v1/deployments/{}/stop", w.deployment);
    let (s, v) = post_json(st, &stop, b, json!({})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        message(&v),
        "token `dep-b` (deployer for other) may not stop deployments of app"
    );
    let (s, v) = post_json(st, &stop, a, json!({})).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d: Deployment = serde_json::from_value(v)?;
    assert_eq!(d.actors.stopped_by.as_deref(), Some("dep-a"));
    assert_eq!(d.actors.created_by.as_deref(), Some("bootstrap"));
    // A deployer may not create tokens, applications or groups.
    let (s, v) = post_json(st, "/v1/tokens", a, json!({"name": "x", "role": "admin"})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("needs the admin role"), "{v}");
    Ok(())
}

#[tokio::test]
async fn a_viewer_watches_and_reads_logs_but_cannot_stop() -> TestResult {
    let w = world().await?;
    let st = &w.fleet.st;
    let v = w.token(Who::Viewer).ok_or("no token")?;
    let events = send(
        st,
        Method::GET,
        &format!("/v1/deployments/{}/events", w.deployment),
        Some(v),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    drop(events);
    let (s, _) = call(
        st,
        Method::GET,
        &format!("/v1/deployments/{}/logs", w.deployment),
        Some(v),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = post_json(
        st,
        &format!("/v1/deployments/{}/stop", w.deployment),
        v,
        json!({}),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        message(&body),
        "token `view` (viewer) may not stop deployments: it needs the deployer or admin role"
    );
    let (s, who) = get(st, "/v1/whoami", Some(v)).await?;
    assert_eq!(s, StatusCode::OK);
    let who: WhoAmI = serde_json::from_value(who)?;
    assert_eq!((who.name.as_str(), who.role.name()), ("view", "viewer"));
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_the_list_never_shows_a_secret() -> TestResult {
    let f = fleet(1, "1", "in-place").await?;
    let secret = token(&f, "ci", "deployer", &["app"]).await?;
    let (s, v) = get(&f.st, "/v1/tokens", Some(ADMIN)).await?;
    assert_eq!(s, StatusCode::OK);
    let text = v.to_string();
    assert!(!text.contains(&secret), "{text}");
    assert!(!text.contains(&crate::auth::hash_token(&secret)), "{text}");
    let page: Page<TokenInfo> = serde_json::from_value(v)?;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].apps, ["app"]);
    assert!(page.items[0].last_used_ms.is_none());
    let (s, _) = get(&f.st, "/v1/whoami", Some(&secret)).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = get(&f.st, "/v1/tokens", Some(ADMIN)).await?;
    assert_eq!(s, StatusCode::OK);
    let page: Page<TokenInfo> = serde_json::from_value(v)?;
    assert!(page.items[0].last_used_ms.is_some(), "a use is recorded");
    let (s, _) = call(
        &f.st,
        Method::DELETE,
        "/v1/tokens/ci",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = get(&f.st, "/v1/whoami", Some(&secret)).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(message(&v).contains("revoked"), "{v}");
    let (s, v) = call(
        &f.st,
        Method::DELETE,
        "/v1/tokens/bootstrap",
        Some(ADMIN),
        Body::empty(),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        message(&v).contains("cannot be revoked through the API"),
        "{v}"
    );
    Ok(())
}

#[tokio::test]
async fn the_audit_trail_names_a_deployer_s_deployment_and_a_viewer_s_refused_stop() -> TestResult {
    let f = fleet(1, "1", "in-place").await?;
    let ci = token(&f, "ci", "deployer", &["app"]).await?;
    let viewer = token(&f, "watcher", "viewer", &[]).await?;
    let d = post_ok(
        &f.st,
        "/v1/deployments",
        &ci,
        json!({"application": "app", "group": "web", "revision": f.revision.id}),
    )
    .await?;
    let id = d["id"].as_str().ok_or("no id")?.to_owned();
    assert_eq!(d["actors"]["created_by"], "ci");
    let (s, _) = post_json(
        &f.st,
        &format!("/v1/deployments/{id}/stop"),
        &viewer,
        json!({}),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A read is not recorded; an unknown token is.
    let (s, _) = get(&f.st, "/v1/deployments", Some(&viewer)).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get(&f.st, "/v1/instances", Some("nope")).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Only admins read the trail.
    let (s, _) = get(&f.st, "/v1/audit", Some(&viewer)).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = get(&f.st, "/v1/audit", Some(ADMIN)).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    let page: Page<AuditEntry> = serde_json::from_value(v)?;
    let find = |action: &str, actor: &str| {
        page.items
            .iter()
            .find(|e| e.action == action && e.actor == actor)
            .cloned()
            .ok_or(format!("no {action} by {actor} in {:?}", page.items))
    };
    let created = find("deployment.create", "ci")?;
    assert_eq!(created.role.as_deref(), Some("deployer"));
    assert_eq!(created.target, id);
    assert_eq!((created.status, created.outcome.as_str()), (201, "ok"));
    assert_eq!(created.remote_addr, PEER.to_string());
    let refused = find("deployment.stop", "watcher")?;
    assert_eq!(refused.role.as_deref(), Some("viewer"));
    assert_eq!(refused.target, id);
    assert_eq!(refused.status, 403);
    assert!(
        refused.outcome.contains("may not stop deployments"),
        "{refused:?}"
    );
    assert_eq!(refused.remote_addr, PEER.to_string());
    let unknown = find("instance.list", "unknown token")?;
    assert_eq!(unknown.status, 401);
    assert!(
        page.items.iter().all(|e| e.action != "deployment.list"),
        "reads are not recorded"
    );
    assert!(
        page.items
            .iter()
            .any(|e| e.action == "token.create" && e.target == "ci" && e.actor == "bootstrap"),
        "{:?}",
        page.items
    );
    assert!(
        page.items.iter().any(|e| e.action == "agent.enroll"
            && e.actor == "enrollment token"
            && e.status == 200),
        "{:?}",
        page.items
    );
    // No secret anywhere in the trail.
    let text = serde_json::to_string(&page.items)?;
    for secret in [ci.as_str(), viewer.as_str(), ADMIN] {
        assert!(!text.contains(secret));
    }
    // Filtered by actor, paged.
    let (s, v) = get(&f.st, "/v1/audit?actor=watcher&limit=1", Some(ADMIN)).await?;
    assert_eq!(s, StatusCode::OK);
    let page: Page<AuditEntry> = serde_json::from_value(v)?;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].actor, "watcher");
    Ok(())
}
