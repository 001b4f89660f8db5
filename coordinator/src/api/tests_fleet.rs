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
    let (s, v) = call(
        st,
        Method::POST,
        "/v1/applications/app/revisions",
        Some(ADMIN),
        Body::from(&b"fake archive bytes"[..]),
        false,
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    Ok(v["id"].as_str().ok_or("no revision id")?.to_owned())
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
    let d = post_ok(
        &st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": rev}),
    )
    .await?;
    let id = d["id"].as_str().ok_or("no id")?.to_owned();
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
        json!({"application": "app", "group": "web", "revision": rev}),
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
    let d = post_ok(
        &st,
        "/v1/deployments",
        ADMIN,
        json!({"application": "app", "group": "web", "revision": rev}),
    )
    .await?;
    let id = d["id"].as_str().ok_or("no id")?.to_owned();
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
