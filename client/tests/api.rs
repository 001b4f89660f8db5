//! The typed client against the real coordinator (in-process, on loopback) and against a tiny echo server: odd
//! names travel percent-encoded, non-2xx answers map to `ClientError::Status` with the API's code and message, and
//! every route group round-trips its `proto` types.

use rollcage_client::{Client, ClientError, StatusCode};
use rollcage_coordinator::server::{ServerConfig, spawn};
use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::{
    Concurrency, CreateApplication, CreateDeployment, CreateGroup, DeploymentQuery,
    DeploymentStatus, DeploymentStyle, EnrollRequest, LogQuery, PollRequest, RegisterUrlRevision,
    RevisionLocation, RevisionSource, StepOutcome, StepReport, StopDeployment,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Coordinator {
    _data: tempfile::TempDir,
    base: String,
    admin: Client,
    enroll_token: String,
}

async fn coordinator() -> Result<Coordinator, Box<dyn std::error::Error>> {
    let data = tempfile::tempdir()?;
    let base = format!(
        "http://{}",
        spawn(ServerConfig::loopback(data.path().to_owned())).await?
    );
    let read = |f: &str| std::fs::read_to_string(data.path().join(f)).map(|t| t.trim().to_owned());
    Ok(Coordinator {
        admin: Client::new(&base, Some(read("admin-token")?), None)?,
        enroll_token: read("enroll-token")?,
        base,
        _data: data,
    })
}

fn group(name: &str, instances: &[&str]) -> CreateGroup {
    CreateGroup {
        name: name.to_owned(),
        style: DeploymentStyle::InPlace,
        concurrency: Concurrency::Percent(50),
        failure_tolerance: 0,
        auto_rollback: false,
        instances: instances.iter().map(|i| (*i).to_owned()).collect(),
        tags: Default::default(),
        form: None,
        lb: None,
        webhooks: Vec::new(),
        webhook_secret: None,
    }
}

/// `(status, code, message)` of a `ClientError::Status`; panics (fails the test) on any other error.
fn status_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (StatusCode, String, String) {
    match r {
        Err(ClientError::Status {
            status,
            code,
            message,
            ..
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn applications_and_groups_round_trip() -> TestResult {
    let c = coordinator().await?;
    let app = c
        .admin
        .create_application(&CreateApplication {
            name: "shop".into(),
        })
        .await?;
    assert_eq!(app.name, "shop");
    let apps = c.admin.list_applications().await?;
    assert_eq!(apps, vec![app]);

    let created = c.admin.create_group("shop", &group("web", &["i1"])).await?;
    assert_eq!(
        (
            created.application.as_str(),
            created.name.as_str(),
            created.style,
            created.concurrency,
            created.instances.clone()
        ),
        (
            "shop",
            "web",
            DeploymentStyle::InPlace,
            Concurrency::Percent(50),
            vec!["i1".to_owned()]
        )
    );
    assert_eq!(c.admin.list_groups("shop").await?, vec![created.clone()]);
    assert_eq!(c.admin.get_group("shop", "web").await?, created);
    Ok(())
}

#[tokio::test]
async fn list_methods_read_every_page() -> TestResult {
    let c = coordinator().await?;
    // One more than the largest page: the list takes two pages, read in turn, in order.
    let n = rollcage_proto::page::MAX_PAGE_SIZE as usize + 1;
    let mut names: Vec<String> = (0..n).map(|i| format!("app-{i:05}")).collect();
    for name in &names {
        c.admin
            .create_application(&CreateApplication { name: name.clone() })
            .await?;
    }
    names.sort();
    let listed: Vec<String> = c
        .admin
        .list_applications()
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(listed, names);
    Ok(())
}

#[tokio::test]
async fn revisions_round_trip() -> TestResult {
    let c = coordinator().await?;
    c.admin
        .create_application(&CreateApplication {
            name: "shop".into(),
        })
        .await?;
    let up = c
        .admin
        .upload_revision("shop", &b"archive bytes"[..])
        .await?;
    assert_eq!(up.application, "shop");
    assert_eq!(up.source, RevisionSource::Uploaded { size: 13 });
    assert_eq!(c.admin.get_revision("shop", &up.id).await?, up);

    let sha = "ab".repeat(32);
    let url = c
        .admin
        .register_url_revision(
            "shop",
            &RegisterUrlRevision {
                url: "https://example.invalid/a.tar.gz".into(),
                sha256: sha.clone(),
                signature: None,
            },
        )
        .await?;
    assert_eq!(url.sha256, sha);
    assert_eq!(
        url.source,
        RevisionSource::Url {
            url: "https://example.invalid/a.tar.gz".into()
        }
    );
    assert_eq!(c.admin.get_revision("shop", &url.id).await?, url);
    Ok(())
}

#[tokio::test]
async fn deployments_agents_logs_events_and_bundles_round_trip() -> TestResult {
    let c = coordinator().await?;
    c.admin
        .create_application(&CreateApplication {
            name: "shop".into(),
        })
        .await?;
    c.admin.create_group("shop", &group("web", &["i1"])).await?;
    let enroller = Client::new(&c.base, Some(c.enroll_token.clone()), None)?;
    let enrolled = enroller
        .enroll(&EnrollRequest {
            name: "i1".into(),
            tags: Default::default(),
        })
        .await?;
    assert_eq!(enrolled.instance, "i1");
    let agent = enroller.with_token(Some(enrolled.token));
    let instances = c.admin.list_instances().await?;
    assert_eq!(
        instances
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["i1"]
    );

    let archive = b"the bundle".to_vec();
    let rev = c.admin.upload_revision("shop", archive.clone()).await?;
    let d = c
        .admin
        .create_deployment(&CreateDeployment {
            application: "shop".into(),
            group: "web".into(),
            revision: rev.id.clone(),
            form: None,
            ignore_application_stop_failures: false,
            file_exists_behavior: None,
            description: None,
        })
        .await?;
    assert_eq!(d.status, DeploymentStatus::InProgress);
    assert_eq!(c.admin.get_deployment(&d.id).await?.id, d.id);
    let listed = c
        .admin
        .list_deployments(&DeploymentQuery {
            application: Some("shop".into()),
            ..Default::default()
        })
        .await?;
    assert_eq!(listed.next_cursor, None);
    assert!(listed.items.iter().any(|x| x.id == d.id));

    // The agent side: the command says "from the coordinator" and the client finds the bundle route itself.
    let cmd = agent
        .poll(&PollRequest {
            wait_ms: Some(5_000),
        })
        .await?
        .command
        .ok_or("no command")?;
    assert_eq!(cmd.event, LifecycleEvent::DownloadBundle);
    assert_eq!(cmd.revision.location, RevisionLocation::Coordinator);
    assert!(!agent.command_state(cmd.command_id).await?.cancelled);
    let dir = tempfile::tempdir()?;
    let dest = dir.path().join("bundle");
    let size = agent
        .download_bundle(
            &cmd.application,
            &cmd.revision.id,
            &dest,
            &cmd.revision.sha256,
        )
        .await?;
    assert_eq!(size, archive.len() as u64);
    assert_eq!(std::fs::read(&dest)?, archive);
    // A wrong checksum leaves nothing behind at the destination.
    let other = dir.path().join("other");
    let wrong = agent
        .download_bundle(&cmd.application, &cmd.revision.id, &other, &"0".repeat(64))
        .await;
    assert!(
        matches!(wrong, Err(ClientError::Checksum { .. })),
        "{wrong:?}"
    );
    assert!(!other.exists());

    let answer = agent
        .report(&StepReport {
            command_id: cmd.command_id,
            outcome: StepOutcome::Succeeded,
            message: "downloaded".into(),
            hooks: vec![],
            duration_ms: 1,
            log: None,
        })
        .await?;
    assert!(answer.recorded);
    let next = answer.command.ok_or("no next command")?;
    assert_ne!(next.command_id, cmd.command_id);

    let page = c.admin.deployment_logs(&d.id, &LogQuery::default()).await?;
    assert!(!page.deployment_ended);

    // The event stream opens and its first event is the deployment's snapshot.
    let mut events = c.admin.deployment_events(&d.id).await?;
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        use http_body_util::BodyExt;
        let mut seen = Vec::new();
        while let Some(frame) = events.frame().await {
            if let Ok(data) = frame?.into_data() {
                seen.extend_from_slice(&data);
            }
            if seen.windows(2).any(|w| w == b"\n\n") {
                break;
            }
        }
        Ok::<_, hyper::Error>(String::from_utf8_lossy(&seen).into_owned())
    })
    .await??;
    assert!(first.contains("event: deployment"), "{first}");
    assert!(first.contains(&d.id), "{first}");

    // Actions: continue and rollback reach their routes (and are refused for this deployment), stop works.
    let (status, code, message) = status_of(c.admin.continue_deployment(&d.id).await);
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    assert!(message.contains(&d.id), "{message}");
    let (status, code, _) = status_of(c.admin.rollback_deployment(&d.id).await);
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    let stopped = c
        .admin
        .stop_deployment(&d.id, &StopDeployment { force: true })
        .await?;
    assert_eq!(stopped.status, DeploymentStatus::Stopped);
    assert!(agent.command_state(next.command_id).await?.cancelled);
    Ok(())
}

#[tokio::test]
async fn errors_carry_the_api_code_and_message_and_odd_names_arrive_whole() -> TestResult {
    let c = coordinator().await?;
    c.admin
        .create_application(&CreateApplication {
            name: "shop".into(),
        })
        .await?;

    let (status, code, message) = status_of(c.admin.get_deployment("d-nope").await);
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(message.contains("d-nope"), "{message}");

    let stranger = Client::new(&c.base, Some("not-a-token".into()), None)?;
    let err = stranger.list_applications().await;
    let (status, code, _) = status_of(err);
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    let invalid = c
        .admin
        .create_application(&CreateApplication { name: "a b".into() })
        .await;
    let (status, code, message) = status_of(invalid);
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(message.contains("`a b`"), "{message}");

    // Slashes, dots, `?` and `#` in a segment reach the handler as one decoded segment: the route does not change.
    let (status, code, message) = status_of(c.admin.get_group("shop", "we b/../x?y#z").await);
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(message.contains("`shop/we b/../x?y#z`"), "{message}");
    let (_, _, message) = status_of(c.admin.get_revision("shop", "..").await);
    assert!(message.contains("`shop/..`"), "{message}");
    Ok(())
}

/// A server that answers every request with an API error whose message is the request's raw path and query, or
/// with a proxy-like text page for paths containing `plain`.
async fn echo_server() -> Result<String, Box<dyn std::error::Error>> {
    use axum::http::Uri;
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(|uri: Uri| async move {
        let raw = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        if raw.contains("plain") {
            return (StatusCode::BAD_GATEWAY, "bad gateway").into_response();
        }
        let body = serde_json::json!({"error": {"code": "echo", "message": raw}});
        (StatusCode::IM_A_TEAPOT, axum::Json(body)).into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

#[tokio::test]
async fn paths_on_the_wire_are_encoded_segment_by_segment() -> TestResult {
    let client = Client::new(&echo_server().await?, Some("t".into()), None)?;
    let raw = |r: Result<_, ClientError>| -> String {
        let (status, code, message) = status_of::<()>(r.map(|_: ()| ()));
        assert_eq!((status, code.as_str()), (StatusCode::IM_A_TEAPOT, "echo"));
        message
    };
    assert_eq!(
        raw(client.get_group("a/b", "c d").await.map(drop)),
        "/v1/applications/a%2Fb/groups/c%20d"
    );
    let dir = tempfile::tempdir()?;
    let dest = dir.path().join("b");
    assert_eq!(
        raw(client
            .download_bundle("..", "r-1?x", &dest, "00")
            .await
            .map(drop)),
        "/v1/agent/applications/%2E%2E/revisions/r-1%3Fx/bundle"
    );
    let q = LogQuery {
        instance: Some("i 1&x=y".into()),
        after: Some(3),
        ..Default::default()
    };
    assert_eq!(
        raw(client.deployment_logs("d#1", &q).await.map(drop)),
        "/v1/deployments/d%231/logs?after=3&instance=i%201%26x%3Dy"
    );
    assert_eq!(
        raw(client.command_state(42).await.map(drop)),
        "/v1/agent/commands/42"
    );
    assert_eq!(
        raw(client.deployment_events("d/1").await.map(drop)),
        "/v1/deployments/d%2F1/events"
    );

    // A body that is not the API's error shape is kept as text; a 5xx may be retried, a 4xx may not.
    let err = client.get_deployment("plain").await;
    let retryable = err.as_ref().is_err_and(ClientError::is_retryable);
    let (status, code, message) = status_of(err);
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (StatusCode::BAD_GATEWAY, "http_error", "bad gateway")
    );
    assert!(retryable);
    assert!(
        !client
            .list_instances()
            .await
            .is_err_and(|e| e.is_retryable())
    );
    Ok(())
}
