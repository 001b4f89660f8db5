//! `rollcage demo`: show rollcage working on this machine with nothing but the binary.
//!
//! Today the demo covers what is built: the single-host lifecycle. In a temporary directory it writes two revisions
//! of the embedded `hello` example (the same files as `hooks-examples/hello`), deploys v1 then v2 with the
//! in-place lifecycle, then a v3 whose ValidateService fails, and checks every expectation: the seed's event order,
//! ApplicationStop taken from the installed revision, the failure reported with its hook and output. It prints a
//! summary table and exits 0 only if every expectation held. The temporary directory is removed at the end (also
//! when an expectation fails). The fleet demo (coordinator, agents, load balancer) replaces it as those land.

use crate::local::{print_failure, run_in_place};
use anyhow::{Context as _, bail};
use rollcage_runtime::appspec::FileExistsBehavior;
use rollcage_runtime::lifecycle::{DeploymentSpec, HostConfig, HostDeployment};
use rollcage_runtime::package::{Source, UnpackLimits};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// The example revision, embedded so the demo needs no checkout. (path, contents, executable)
const HELLO: [(&str, &str, bool); 7] = [
    (
        "appspec.yml",
        include_str!("../../hooks-examples/hello/appspec.yml"),
        false,
    ),
    (
        "VERSION",
        include_str!("../../hooks-examples/hello/VERSION"),
        false,
    ),
    (
        "app/hello.sh",
        include_str!("../../hooks-examples/hello/app/hello.sh"),
        true,
    ),
    (
        "hooks/record.sh",
        include_str!("../../hooks-examples/hello/hooks/record.sh"),
        true,
    ),
    (
        "hooks/stop.sh",
        include_str!("../../hooks-examples/hello/hooks/stop.sh"),
        true,
    ),
    (
        "hooks/start.sh",
        include_str!("../../hooks-examples/hello/hooks/start.sh"),
        true,
    ),
    (
        "hooks/validate.sh",
        include_str!("../../hooks-examples/hello/hooks/validate.sh"),
        true,
    ),
];

/// The absolute directory the example installs into, rewritten to a temp dir by the demo.
const EXAMPLE_BASE: &str = "/opt/rollcage-examples/hello";

fn write_revision(
    dir: &Path,
    base: &Path,
    version: &str,
    broken_validate: bool,
) -> anyhow::Result<()> {
    for (rel, text, exec) in HELLO {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut text = text.replace(EXAMPLE_BASE, &base.to_string_lossy());
        if rel == "VERSION" {
            text = format!("{version}\n");
        }
        if rel == "hooks/validate.sh" && broken_validate {
            text = "#!/bin/sh\necho \"$LIFECYCLE_EVENT $(cat VERSION)\" >> BASE/events.log\necho 'health check failed: 503' >&2\nexit 1\n"
                .replace("BASE", &base.to_string_lossy());
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

struct Row {
    name: String,
    expected_success: bool,
    succeeded: bool,
    seconds: f64,
}

/// Run the demo.
pub async fn run() -> anyhow::Result<ExitCode> {
    let tmp = tempfile::Builder::new()
        .prefix("rollcage-demo-")
        .tempdir()
        .context("creating a temp dir")?;
    // Ctrl-C ends the demo early but still removes the temp dir.
    let result = tokio::select! {
        r = run_in(tmp.path()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let path = tmp.path().to_owned();
    tmp.close()
        .with_context(|| format!("removing {}", path.display()))?;
    result
}

async fn run_in(dir: &Path) -> anyhow::Result<ExitCode> {
    let base = dir.join("srv/hello");
    let host = HostConfig::new(dir.join("agent-root"));
    println!("rollcage demo: single-host lifecycle in {}", dir.display());
    let plan = [
        ("v1", false, true),
        ("v2", false, true),
        ("v3", true, false),
    ];
    let mut rows = Vec::new();
    for (n, (version, broken, expected_success)) in plan.into_iter().enumerate() {
        let rev = dir.join(format!("bundles/{version}"));
        write_revision(&rev, &base, version, broken)?;
        let spec = DeploymentSpec {
            application: "hello".into(),
            group: "demo".into(),
            group_id: "demo".into(),
            deployment_id: format!("d{}-{version}", n + 1),
            source: Source::Directory(rev),
            expected_sha256: None,
            file_exists_behavior: FileExistsBehavior::Disallow,
            limits: UnpackLimits::default(),
            form: None,
        };
        let deployment = HostDeployment::new(&host, spec)?;
        println!(
            "\n== deploy {version}{}",
            if broken {
                " (its ValidateService fails)"
            } else {
                ""
            }
        );
        let started = Instant::now();
        let failed = run_in_place(&deployment).await;
        if let Some(report) = &failed {
            print_failure(report, &deployment);
        }
        rows.push(Row {
            name: format!("{version} in-place"),
            expected_success,
            succeeded: failed.is_none(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let events =
        std::fs::read_to_string(base.join("events.log")).context("reading the events log")?;
    let expected_events = "BeforeInstall v1\nAfterInstall v1\nApplicationStart v1\nValidateService v1\n\
        ApplicationStop v1\nBeforeInstall v2\nAfterInstall v2\nApplicationStart v2\nValidateService v2\n\
        ApplicationStop v2\nBeforeInstall v3\nAfterInstall v3\nApplicationStart v3\nValidateService v3\n";

    println!(
        "\n{:<14} {:<10} {:<10} {:>8}",
        "deployment", "expected", "outcome", "seconds"
    );
    for r in &rows {
        println!(
            "{:<14} {:<10} {:<10} {:>8.2}",
            r.name,
            if r.expected_success {
                "succeed"
            } else {
                "fail"
            },
            if r.succeeded { "succeeded" } else { "failed" },
            r.seconds
        );
    }
    let outcomes_ok = rows.iter().all(|r| r.succeeded == r.expected_success);
    let order_ok = events == expected_events;
    if !order_ok {
        println!("\nevent order differs from the seed's:\n{events}");
    }
    println!(
        "\ndemo: {} deployments, event order {}",
        rows.len(),
        if order_ok { "as expected" } else { "WRONG" }
    );
    if !(outcomes_ok && order_ok) {
        bail!("the demo's expectations did not hold");
    }
    Ok(ExitCode::SUCCESS)
}
