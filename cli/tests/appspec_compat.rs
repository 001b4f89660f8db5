//! AppSpecs found in the wild, run through the real binary (`rollcage appspec check` and `rollcage local`):
//! a hook `location` with a leading `/` is a revision path, as CodeDeploy's agent takes it (accepted with a
//! located warning, still confined), and an ECS/Lambda AppSpec is refused with one error saying what it is.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// An AWS sample's shape: `location: /scripts/…`.
const LEADING_SLASH: &str = "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: /scripts/start.sh\n      timeout: 30\n";

/// An ECS AppSpec (CodeDeploy's documented example, shortened).
const ECS: &str = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"arn:aws:ecs:us-east-1:111222333444:task-definition/my-task:1\"\n        LoadBalancerInfo:\n          ContainerName: \"web\"\n          ContainerPort: 80\nHooks:\n  - BeforeInstall: \"LambdaFunctionToValidateBeforeInstall\"\n";

/// A Lambda AppSpec.
const LAMBDA: &str = "version: 0.0\nResources:\n  - myLambdaFunction:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: \"myLambdaFunction\"\n        Alias: \"myLambdaFunctionAlias\"\n        CurrentVersion: \"1\"\n        TargetVersion: \"2\"\n";

fn rollcage(args: &[&std::ffi::OsStr]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_rollcage"))
        .args(args)
        .env_remove("ROLLCAGE_LOG")
        .output()
}

fn check(path: &Path) -> std::io::Result<(i32, String)> {
    let out = rollcage(&["appspec".as_ref(), "check".as_ref(), path.as_os_str()])?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn local(revision: &Path, root: &Path, id: &str) -> std::io::Result<Output> {
    rollcage(&[
        "local".as_ref(),
        "--bundle".as_ref(),
        revision.as_os_str(),
        "--root".as_ref(),
        root.as_os_str(),
        "--deployment-id".as_ref(),
        id.as_ref(),
    ])
}

/// A revision dir with `appspec` and an executable `scripts/start.sh` that writes `marker`.
fn revision(dir: &Path, appspec: &str, marker: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("scripts"))?;
    std::fs::write(dir.join("appspec.yml"), appspec)?;
    let script = dir.join("scripts/start.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho started > '{}'\n", marker.display()),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[test]
fn appspec_check_takes_a_leading_slash_location_relative_to_the_revision_with_a_located_warning()
-> TestResult {
    let tmp = tempfile::tempdir()?;
    let rev = tmp.path().join("rev");
    revision(&rev, LEADING_SLASH, &tmp.path().join("marker"))?;
    let (code, out) = check(&rev)?;
    assert_eq!(code, 0, "{out}");
    let file = rev.join("appspec.yml");
    assert!(
        out.contains(&format!(
            "{}:5:17: warning: hooks.ApplicationStart[0].location: `/scripts/start.sh` is taken relative to the revision root",
            file.display()
        )),
        "{out}"
    );
    assert!(
        out.lines().last().is_some_and(|l| l.contains(": valid (")),
        "{out}"
    );

    // Still confined: `..` is refused, and so is a symlink out of the revision, leading `/` or not.
    std::fs::write(
        &file,
        LEADING_SLASH.replace("/scripts/start.sh", "/scripts/../../etc/passwd"),
    )?;
    let (code, out) = check(&rev)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no `..` components"), "{out}");
    std::os::unix::fs::symlink("/etc/passwd", rev.join("scripts/out.sh"))?;
    std::fs::write(
        &file,
        LEADING_SLASH.replace("/scripts/start.sh", "/scripts/out.sh"),
    )?;
    let (code, out) = check(&rev)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("outside the revision"), "{out}");
    Ok(())
}

#[test]
fn appspec_check_refuses_an_ecs_or_lambda_appspec_with_one_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    for (name, text) in [("ecs", ECS), ("lambda", LAMBDA)] {
        let file = tmp.path().join(name).join("appspec.yml");
        std::fs::create_dir_all(tmp.path().join(name))?;
        std::fs::write(&file, text)?;
        let (code, out) = check(&file)?;
        assert_eq!(code, 1, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "one error and nothing else:\n{out}");
        assert!(
            lines[0].starts_with(&format!("{}:2:1: Resources: ", file.display())),
            "{out}"
        );
        for part in [
            "ECS/Lambda AppSpec",
            "rollcage deploys to hosts",
            "EC2/on-premises",
        ] {
            assert!(lines[0].contains(part), "`{part}` missing: {out}");
        }
        assert!(
            !out.contains("warning")
                && !out.contains("unsupported os")
                && !out.contains("unknown key"),
            "{out}"
        );
    }
    Ok(())
}

#[test]
fn rollcage_local_runs_a_leading_slash_hook_from_the_revision_and_says_so() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let rev = tmp.path().join("rev");
    let marker = tmp.path().join("marker");
    revision(&rev, LEADING_SLASH, &marker)?;
    let out = local(&rev, &tmp.path().join("root"), "d1")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&marker)?, "started\n");
    let download = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("DownloadBundle"))
        .unwrap_or_default();
    assert!(
        download.contains(":5:17: warning: hooks.ApplicationStart[0].location: `/scripts/start.sh` is taken relative"),
        "{stdout}"
    );
    assert!(
        stdout.contains("scripts/start.sh succeeded"),
        "the hook ran from the revision:\n{stdout}"
    );
    Ok(())
}

#[test]
fn rollcage_local_refuses_an_ecs_appspec_at_download_bundle_with_one_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let rev = tmp.path().join("rev");
    let marker = tmp.path().join("marker");
    revision(&rev, ECS, &marker)?;
    let out = local(&rev, &tmp.path().join("root"), "d1")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let failed = stderr
        .lines()
        .find(|l| l.starts_with("deployment failed at DownloadBundle: "))
        .unwrap_or_default();
    assert!(
        failed.contains("1 problem(s)")
            && failed.contains(":2:1: Resources: this is an ECS/Lambda AppSpec"),
        "{stderr}"
    );
    assert!(!failed.contains("unsupported os"), "{stderr}");
    assert!(!marker.exists(), "nothing ran");
    Ok(())
}
