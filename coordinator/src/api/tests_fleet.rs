//! A living fleet through the API: groups that select instances by tags, and instances that catch up by
//! themselves when they join a group (the agent's hello).

use super::testkit::*;
use crate::state::State;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use rollcage_proto::wire::{
    Deployment, DeploymentKind, DeploymentStatus, HelloResponse, PollResponse, StepReport,
};
use serde_json::json;

/// Enroll `name` with `tags`; its token.
async fn enroll(st: &State, name: &str, tags: serde_json::Value) -> TestResult<String> {
    let v = post_ok(
        st,
        "/v1/agent/enroll",
        ENROLL,
        json!({"name": name, "tags": tags}),
    )
    .await?;
    Ok(v["token"].as_str().ok_or("no token")?.to_owned())
}

/// The agent's hello with what it says it has installed: the deployments started or joined for it.
async fn hello(
    st: &State,
    token: &str,
    tags: serde_json::Value,
    installed: serde_json::Value,
) -> TestResult<Vec<String>> {
    let v = post_ok(
        st,
        "/v1/agent/hello",
        token,
        json!({"tags": tags, "installed": installed}),
    )
    .await?;
    Ok(serde_json::from_value::<HelloResponse>(v)?.deployments)
}

/// Run every step the agent is given until it has none: the events it ran.
async fn run_agent(st: &State, token: &str) -> TestResult<Vec<String>> {
    let mut events = Vec::new();
    let v = post_ok(st, "/v1/agent/poll", token, json!({"wait_ms": 0})).await?;
    let mut next = serde_json::from_value::<PollResponse>(v)?.command;
    while let Some(cmd) = next {
        events.push(cmd.event.name().to_owned());
        let report = StepReport {
            command_id: cmd.command_id,
            outcome: rollcage_proto::wire::StepOutcome::Succeeded,
            message: String::new(),
            hooks: vec![],
            duration_ms: 1,
            log: None,
        };
        let v = post_ok(
            st,
            "/v1/agent/reports",
            token,
            serde_json::to_value(&report)?,
        )
        .await?;
        next = serde_json::from_value(v["command"].clone())?;
    }
    Ok(events)
}

/// Start a deployment of revision `rev` to group `app/web`: its id.
async fn start(st: &State, rev: &str) -> TestResult<String> {
    let d = post_ok(
        st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": rev}),
    )
    .await?;
    Ok(d["id"].as_str().ok_or("no deployment id")?.to_owned())
}

async fn deployment(st: &State, id: &str) -> TestResult<Deployment> {
    let (s, v) = get(st, &format!("/v1/deployments/{id}"), Some(ADMIN)).await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    Ok(serde_json::from_value(v)?)
}

/// App `app`, group `web` selecting `env=prod,role=web` (or `env=canary`), and one revision: its id.
async fn tagged_group(st: &State) -> TestResult<String> {
    create_app(st, "app").await?;
    post_ok(
        st,
        "/v1/applications/app/groups",
        ADMIN,
        json!({"name": "web", "style": "in-place", "concurrency": "all",
               "tags": [{"env": "prod", "role": "web"}, {"env": "canary"}]}),
    )
    .await?;
    Ok(upload(st, "app", b"fake archive bytes").await?.id)
}

#[tokio::test]
async fn a_group_selected_by_tags_deploys_to_matching_instances_only() -> TestResult {
    let st = state()?;
    let rev = tagged_group(&st).await?;
    let web = enroll(
        &st,
        "web-1",
        json!({"env": "prod", "role": "web", "az": "b"}),
    )
    .await?;
    let canary = enroll(&st, "canary-1", json!({"env": "canary"})).await?;
    let db = enroll(&st, "db-1", json!({"env": "prod", "role": "db"})).await?;
    let id = start(&st, &rev).await?;
    let names: Vec<String> = deployment(&st, &id)
        .await?
        .instances
        .into_iter()
        .map(|i| i.instance)
        .collect();
    assert_eq!(
        names,
        ["canary-1", "web-1"],
        "every set's matches, nothing else"
    );
    assert_eq!(run_agent(&st, &db).await?, Vec::<String>::new());
    assert_eq!(run_agent(&st, &web).await?.len(), 7);
    assert_eq!(run_agent(&st, &canary).await?.len(), 7);
    assert_eq!(
        deployment(&st, &id).await?.status,
        DeploymentStatus::Succeeded
    );

    // The instance list shows tags and what each installed.
    let (_, v) = get(&st, "/v1/instances", Some(ADMIN)).await?;
    let items = v["items"].as_array().ok_or("items")?;
    let web_row = items
        .iter()
        .find(|i| i["name"] == "web-1")
        .ok_or("web-1 listed")?;
    assert_eq!(
        web_row["tags"],
        json!({"env": "prod", "role": "web", "az": "b"})
    );
    assert_eq!(web_row["installed"][0]["revision"], json!(rev));
    assert_eq!(web_row["installed"][0]["deployment"], json!(id));
    let db_row = items
        .iter()
        .find(|i| i["name"] == "db-1")
        .ok_or("db-1 listed")?;
    assert_eq!(db_row["installed"], json!([]));
    Ok(())
}

#[tokio::test]
async fn bad_tags_are_refused_with_the_field_and_the_rule() -> TestResult {
    let st = state()?;
    create_app(&st, "app").await?;
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        json!({"name": "web", "style": "in-place", "concurrency": "all", "tags": [{}]}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("field `tags`: tag set 1: empty"),
        "{v}"
    );
    let (s, v) = post_json(
        &st,
        "/v1/applications/app/groups",
        ADMIN,
        json!({"name": "web", "style": "in-place", "concurrency": "all", "instances": ["a"], "tags": [{"env": "x"}]}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not both"),
        "{v}"
    );
    let (s, v) = post_json(
        &st,
        "/v1/agent/enroll",
        ENROLL,
        json!({"name": "a", "tags": {"bad;key": "x"}}),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid tag key `bad;key`"),
        "{v}"
    );
    Ok(())
}

#[tokio::test]
async fn a_newcomer_with_matching_tags_catches_up_and_a_restart_does_not_redeploy() -> TestResult {
    let st = state()?;
    let rev = tagged_group(&st).await?;
    let first = enroll(&st, "web-1", json!({"env": "prod", "role": "web"})).await?;
    // Before the group ever deployed, a hello starts nothing.
    assert_eq!(
        hello(
            &st,
            &first,
            json!({"env": "prod", "role": "web"}),
            json!([])
        )
        .await?,
        Vec::<String>::new()
    );
    let d = post_ok(
        &st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": rev,
               "ignore_application_stop_failures": true, "file_exists_behavior": "OVERWRITE"}),
    )
    .await?;
    let d1 = d["id"].as_str().ok_or("no id")?.to_owned();
    run_agent(&st, &first).await?;
    assert_eq!(
        deployment(&st, &d1).await?.status,
        DeploymentStatus::Succeeded
    );

    // A new host with matching tags: its hello starts a one-instance catch-up of the group's revision.
    let tags = json!({"env": "prod", "role": "web"});
    let newcomer = enroll(&st, "web-2", tags.clone()).await?;
    let started = hello(&st, &newcomer, tags.clone(), json!([])).await?;
    assert_eq!(started.len(), 1, "{started:?}");
    let c = deployment(&st, &started[0]).await?;
    assert_eq!(
        c.kind,
        DeploymentKind::CatchUp {
            instance: "web-2".into()
        }
    );
    assert_eq!(c.revision, rev);
    assert_eq!(c.instances.len(), 1);
    assert!(
        c.ignore_application_stop_failures,
        "installed with the options the group's last deployment had"
    );
    assert_eq!(
        c.file_exists_behavior,
        Some(rollcage_proto::FileExistsBehavior::Overwrite)
    );
    assert_eq!(run_agent(&st, &newcomer).await?.len(), 7);
    assert_eq!(
        deployment(&st, &started[0]).await?.status,
        DeploymentStatus::Succeeded
    );

    // Its agent restarts, saying it installed that: nothing more. Nor for a host whose tags no group matches.
    let again = hello(
        &st,
        &newcomer,
        tags.clone(),
        json!([{"application": "app", "group": "web", "deployment": started[0]}]),
    )
    .await?;
    assert_eq!(
        again,
        Vec::<String>::new(),
        "an agent restart does not redeploy"
    );
    let other = enroll(&st, "db-1", json!({"env": "prod", "role": "db"})).await?;
    assert_eq!(
        hello(&st, &other, json!({"env": "prod", "role": "db"}), json!([])).await?,
        Vec::<String>::new()
    );
    assert_eq!(run_agent(&st, &other).await?, Vec::<String>::new());

    // The first host re-imaged (its root lost): it says nothing is installed and catches up again.
    let back = hello(
        &st,
        &first,
        json!({"env": "prod", "role": "web"}),
        json!([]),
    )
    .await?;
    assert_eq!(back.len(), 1, "a host that lost its root catches up");
    run_agent(&st, &first).await?;

    // Retagged out of the group (a restart with other tags): nothing.
    let gone = hello(&st, &first, json!({"env": "staging"}), json!([])).await?;
    assert_eq!(gone, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_newcomer_joins_a_running_deployment_of_its_group_instead() -> TestResult {
    let st = state()?;
    let rev = tagged_group(&st).await?;
    let tags = json!({"env": "canary"});
    let first = enroll(&st, "c-1", tags.clone()).await?;
    let id = start(&st, &rev).await?;
    let late = enroll(&st, "c-2", tags.clone()).await?;
    assert_eq!(
        hello(&st, &late, tags.clone(), json!([])).await?,
        vec![id.clone()]
    );
    assert_eq!(
        hello(&st, &late, tags, json!([])).await?,
        Vec::<String>::new(),
        "added once"
    );
    assert_eq!(run_agent(&st, &late).await?.len(), 7);
    assert_eq!(run_agent(&st, &first).await?.len(), 7);
    let d = deployment(&st, &id).await?;
    assert_eq!(d.instances.len(), 2);
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    Ok(())
}

async fn delete(st: &State, uri: &str) -> TestResult<(StatusCode, serde_json::Value)> {
    call(st, Method::DELETE, uri, Some(ADMIN), Body::empty(), false).await
}

async fn patch(
    st: &State,
    uri: &str,
    body: serde_json::Value,
) -> TestResult<(StatusCode, serde_json::Value)> {
    call(
        st,
        Method::PATCH,
        uri,
        Some(ADMIN),
        Body::from(body.to_string()),
        true,
    )
    .await
}

fn message(v: &serde_json::Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn group_update_is_checked_as_at_creation_and_the_next_deployment_honours_it() -> TestResult {
    let f = fleet(3, "all", "in-place").await?;
    let st = &f.st;
    let (s, v) = patch(
        st,
        "/v1/applications/app/groups/web",
        json!({"concurrency": "1", "failure_tolerance": 2}),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["concurrency"].as_str(), v["failure_tolerance"].as_u64()),
        (Some("1"), Some(2))
    );
    // Checked as at creation: a bad instance name, tags and names at once, an unknown field.
    for (body, says) in [
        (json!({"instances": ["bad name"]}), "invalid instance names"),
        (
            json!({"instances": ["i0"], "tags": [{"env": "x"}]}),
            "not both",
        ),
        (json!({"style": "blue-green"}), "unknown field"),
    ] {
        let (s, v) = patch(st, "/v1/applications/app/groups/web", body).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains(says), "{says}: {v}");
    }
    let (s, _) = patch(st, "/v1/applications/app/groups/nope", json!({})).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The next deployment runs one at a time.
    let id = start(st, &f.revision.id).await?;
    let d = deployment(st, &id).await?;
    assert_eq!(d.concurrency.to_string(), "1");
    let started = d
        .instances
        .iter()
        .filter(|i| i.steps.iter().any(|s| s.started_at_ms.is_some()))
        .count();
    assert_eq!(started, 1, "one instance at a time");
    // While it runs, the group can be neither changed nor deleted, nor its application.
    let (s, v) = patch(
        st,
        "/v1/applications/app/groups/web",
        json!({"concurrency": "all"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains(&id), "{v}");
    let (s, v) = delete(st, "/v1/applications/app/groups/web").await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = delete(st, "/v1/applications/app").await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains("`web`"), "{v}");
    for a in &f.agents {
        run_agent(st, &a.token).await?;
    }
    assert_eq!(
        deployment(st, &id).await?.status,
        DeploymentStatus::Succeeded
    );
    // Ended: the group goes; the application still has its revision.
    let (s, v) = delete(st, "/v1/applications/app/groups/web").await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = get(st, "/v1/applications/app/groups/web", Some(ADMIN)).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = delete(st, "/v1/applications/app").await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains("1 revision"), "{v}");
    create_app(st, "empty").await?;
    let (s, v) = delete(st, "/v1/applications/empty").await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    Ok(())
}

#[tokio::test]
async fn a_removed_instance_leaves_its_groups_and_its_token_says_so() -> TestResult {
    let f = fleet(2, "all", "in-place").await?;
    let st = &f.st;
    let id = start(st, &f.revision.id).await?;
    // In a running deployment: refused, unless forced.
    let (s, v) = delete(st, "/v1/instances/i1").await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        message(&v).contains(&id) && message(&v).contains("force"),
        "{v}"
    );
    let (s, v) = delete(st, "/v1/instances/i1?force=true").await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    // Its old token: 401 that says it was removed.
    let (s, v) = post_json(
        st,
        "/v1/agent/poll",
        &f.agents[1].token,
        json!({"wait_ms": 0}),
    )
    .await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "instance_removed", "{v}");
    // The deployment goes on without it and succeeds with the other.
    run_agent(st, &f.agents[0].token).await?;
    let d = deployment(st, &id).await?;
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    // The group no longer names it: the next deployment is i0's alone.
    let (_, g) = get(st, "/v1/applications/app/groups/web", Some(ADMIN)).await?;
    assert_eq!(g["instances"], json!(["i0"]));
    let d2 = post_ok(
        st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": f.revision.id}),
    )
    .await?;
    assert_eq!(d2["instances"].as_array().map(Vec::len), Some(1));
    run_agent(st, &f.agents[0].token).await?;
    // With no deployment running, removal needs no force; an unknown name is a 404.
    let (s, v) = delete(st, "/v1/instances/i0").await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = delete(st, "/v1/instances/i0").await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn a_revision_is_deleted_only_once_nothing_depends_on_it() -> TestResult {
    let f = fleet(1, "all", "in-place").await?;
    let st = &f.st;
    let v1 = f.revision.id.clone();
    let v2 = upload(st, "app", b"other archive bytes").await?.id;
    let (_, list) = get(st, "/v1/applications/app/revisions", Some(ADMIN)).await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    let uri = |id: &str| format!("/v1/applications/app/revisions/{id}");
    let id = start(st, &v1).await?;
    let (s, v) = delete(st, &uri(&v1)).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains(&id), "being deployed: {v}");
    run_agent(st, &f.agents[0].token).await?;
    let (s, v) = delete(st, &uri(&v1)).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        message(&v).contains("last successful revision of group(s) `web`"),
        "{v}"
    );
    // Never deployed: it goes; then it is gone.
    let (s, v) = delete(st, &uri(&v2)).await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = get(st, &uri(&v2), Some(ADMIN)).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = delete(st, &uri(&v2)).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    Ok(())
}
