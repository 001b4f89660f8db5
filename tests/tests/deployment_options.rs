//! CodeDeploy's deployment options with a real coordinator and real agents: `--ignore-application-stop-failures`
//! (a previous revision whose ApplicationStop exits 1 blocks the next deployment without it, not with it),
//! `--description` and `--file-exists-behavior` carried to the API and the CLI, and `--min-healthy`: the batch size
//! follows from it, and a deployment that would leave no instance to deploy to is refused with the arithmetic.

use rollcage_e2e::{Fleet, write_bundle};
use rollcage_proto::wire::{DeploymentStatus, StepState};
use rollcage_proto::{FileExistsBehavior, LifecycleEvent};
use std::time::Duration;

fn deploy(fleet: &Fleet, revision: &str, extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec![
        "deploy",
        "--app",
        "shop",
        "--group",
        "web",
        "--revision",
        revision,
    ];
    args.extend_from_slice(extra);
    let (code, out) = fleet.cli(&args)?;
    anyhow::ensure!(code == 0, "deploy exited {code}: {out}");
    Ok(out.trim().to_owned())
}

#[test]
fn a_broken_application_stop_of_the_previous_revision_is_skipped_only_with_the_flag()
-> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    fleet.setup("shop", "web", "all", false)?;
    // v1 installs fine, but its ApplicationStop — run when the next revision replaces it — exits 1.
    let v1 = fleet.dir.path().join("v1");
    write_bundle(
        &v1,
        "v1",
        "0",
        r#"if [ "$LIFECYCLE_EVENT" = ApplicationStop ]; then echo "cannot stop" >&2; exit 1; fi"#,
    )?;
    let v2 = fleet.dir.path().join("v2");
    write_bundle(&v2, "v2", "0", "")?;
    let (r1, r2) = (fleet.push("shop", &v1)?, fleet.push("shop", &v2)?);
    let wait = |id: &str| fleet.wait_end(id, Duration::from_secs(90));

    let d = wait(&deploy(&fleet, &r1, &[])?)?;
    assert_eq!(d.status, DeploymentStatus::Succeeded, "v1: {}", d.message);

    // Without the flag: v1's ApplicationStop fails every instance.
    let d = wait(&deploy(&fleet, &r2, &[])?)?;
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    assert!(!d.ignore_application_stop_failures);
    for i in &d.instances {
        let stop = i
            .steps
            .iter()
            .find(|s| s.event == LifecycleEvent::ApplicationStop);
        assert!(
            stop.is_some_and(|s| s.state == StepState::Failed),
            "{}: {stop:?}",
            i.instance
        );
    }

    // With it: the failure is logged and skipped, v2 installs everywhere.
    let id = deploy(
        &fleet,
        &r2,
        &[
            "--ignore-application-stop-failures",
            "--description",
            "v2 past a broken stop",
            "--file-exists-behavior",
            "overwrite",
        ],
    )?;
    let d = wait(&id)?;
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    assert!(d.ignore_application_stop_failures);
    assert_eq!(d.description.as_deref(), Some("v2 past a broken stop"));
    assert_eq!(d.file_exists_behavior, Some(FileExistsBehavior::Overwrite));
    for i in &d.instances {
        let stop = i
            .steps
            .iter()
            .find(|s| s.event == LifecycleEvent::ApplicationStop);
        assert!(
            stop.is_some_and(|s| s.state == StepState::Succeeded
                && s.message
                    .contains("ignored (--ignore-application-stop-failures)")
                && s.message.contains("exit code 1")),
            "{}: {stop:?}",
            i.instance
        );
    }
    let v2_started = fleet
        .markers()?
        .iter()
        .filter(|m| m.deployment == id && m.label == "v2" && m.event == "ApplicationStart")
        .count();
    assert_eq!(
        v2_started, 4,
        "v2's ApplicationStart ran on both instances (start + end)"
    );

    // The options are in the list (API and CLI) and in `status`.
    let listed = fleet.admin_get("/v1/deployments?application=shop")?;
    assert!(
        listed.contains("\"description\":\"v2 past a broken stop\"")
            && listed.contains("\"ignore_application_stop_failures\":true")
            && listed.contains("\"file_exists_behavior\":\"OVERWRITE\""),
        "{listed}"
    );
    let (_, out) = fleet.cli(&["deployments", "--app", "shop"])?;
    let line = out.lines().find(|l| l.starts_with(&id)).unwrap_or_default();
    assert!(
        line.contains("ignore-application-stop-failures")
            && line.contains("file-exists-behavior OVERWRITE")
            && line.ends_with("— v2 past a broken stop"),
        "{out}"
    );
    let (_, out) = fleet.cli(&["status", &id])?;
    assert!(out.contains("\n  v2 past a broken stop\n"), "{out}");

    // A description is bounded.
    let long = "x".repeat(513);
    let (code, out) = fleet
        .cli(&[
            "deploy",
            "--app",
            "shop",
            "--group",
            "web",
            "--revision",
            &r2,
            "--description",
            &long,
        ])
        .or_else(|e| Ok::<_, anyhow::Error>((1, e.to_string())))?;
    assert_ne!(code, 0);
    assert!(out.contains("at most 512"), "{out}");
    Ok(())
}

#[test]
fn min_healthy_sets_the_batch_and_refuses_an_impossible_deployment() -> anyhow::Result<()> {
    let fleet = Fleet::start(3)?;
    fleet.cli(&["app", "create", "shop"])?;
    let names = "i0,i1,i2";
    // 3 instances, 1 must stay healthy: 2 at a time.
    fleet.cli(&[
        "group",
        "create",
        "--app",
        "shop",
        "web",
        "--style",
        "in-place",
        "--min-healthy",
        "1",
        "--instances",
        names,
    ])?;
    let v1 = fleet.dir.path().join("v1");
    write_bundle(&v1, "v1", "0.3", "")?;
    let r1 = fleet.push("shop", &v1)?;
    let id = deploy(&fleet, &r1, &[])?;
    let d = fleet.wait_end(&id, Duration::from_secs(90))?;
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
    assert_eq!(d.concurrency.to_string(), "min-healthy:1");
    let markers = fleet.markers()?;
    assert_eq!(rollcage_e2e::max_in_flight(&markers, &id), 2);

    // 3 instances with 100% … is not a valid minimum; 3 of 3 is refused when the group is created, with the
    // arithmetic; a group of every enrolled instance is refused at deployment.
    let refused = fleet.cli(&[
        "group",
        "create",
        "--app",
        "shop",
        "all3",
        "--style",
        "in-place",
        "--min-healthy",
        "3",
        "--instances",
        names,
    ]);
    let text = format!("{refused:?}");
    assert!(
        text.contains("3 − 3 = 0") && text.contains("at least 1"),
        "{text}"
    );
    fleet.cli(&[
        "group",
        "create",
        "--app",
        "shop",
        "every",
        "--style",
        "in-place",
        "--min-healthy",
        "95%",
    ])?;
    let refused = fleet.cli(&[
        "deploy",
        "--app",
        "shop",
        "--group",
        "every",
        "--revision",
        &r1,
    ]);
    let text = format!("{refused:?}");
    assert!(
        text.contains("95% × 3 = 2.85, rounded up to 3") && text.contains("3 − 3 = 0"),
        "{text}"
    );
    // Both flags: a clear usage error, before anything is sent.
    let both = std::process::Command::new(rollcage_e2e::rollcage_bin()?)
        .args([
            "group",
            "create",
            "--app",
            "shop",
            "both",
            "--style",
            "in-place",
            "--min-healthy",
            "1",
            "--concurrency",
            "2",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&both.stderr);
    assert!(!both.status.success());
    assert!(
        text.contains("--min-healthy")
            && text.contains("cannot be used with")
            && text.contains("--concurrency"),
        "{text}"
    );
    Ok(())
}
