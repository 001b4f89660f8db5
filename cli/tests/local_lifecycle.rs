//! `rollcage local` end to end: the example bundle `hooks-examples/hello`, deployed twice on one host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const EXAMPLE_BASE: &str = "/opt/rollcage-examples/hello";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks-examples/hello")
}

/// Copy the example bundle to `to`, pointing every absolute path at `base` and setting its VERSION.
fn make_revision(to: &Path, base: &Path, version: &str) -> TestResult {
    copy_tree(&example_dir(), to, base)?;
    std::fs::write(to.join("VERSION"), format!("{version}\n"))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, base: &Path) -> TestResult {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target, base)?;
        } else {
            let text = std::fs::read_to_string(entry.path())?;
            std::fs::write(&target, text.replace(EXAMPLE_BASE, &base.to_string_lossy()))?;
            std::fs::set_permissions(&target, entry.metadata()?.permissions())?;
        }
    }
    Ok(())
}

fn rollcage_local(bundle: &Path, root: &Path, id: &str) -> Result<Output, std::io::Error> {
    Command::new(env!("CARGO_BIN_EXE_rollcage"))
        .args([
            "local",
            "--app",
            "hello",
            "--group",
            "dev",
            "--deployment-id",
            id,
            "--bundle",
        ])
        .arg(bundle)
        .arg("--root")
        .arg(root)
        .output()
}

fn events(base: &Path) -> Result<Vec<String>, std::io::Error> {
    Ok(std::fs::read_to_string(base.join("events.log"))?
        .lines()
        .map(str::to_owned)
        .collect())
}

#[test]
fn two_revisions_run_in_the_seed_order_with_stop_from_the_installed_one() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path().join("srv");
    let root = tmp.path().join("root");
    make_revision(&tmp.path().join("v1"), &base, "v1")?;
    make_revision(&tmp.path().join("v2"), &base, "v2")?;

    let first = rollcage_local(&tmp.path().join("v1"), &root, "d1")?;
    assert!(
        first.status.success(),
        "first run failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = String::from_utf8_lossy(&first.stdout);
    let printed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // `rollcage local` runs the agent's steps of the one rolling plan, in its order.
    let plan: Vec<&str> =
        rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
            .agent_steps()
            .map(|e| e.name())
            .collect();
    let steps: Vec<&str> = printed
        .iter()
        .copied()
        .filter(|w| w.parse::<rollcage_proto::LifecycleEvent>().is_ok())
        .collect();
    assert_eq!(steps, plan, "printed steps:\n{out}");
    assert!(
        out.contains("ApplicationStop    skipped"),
        "first ApplicationStop must be a no-op:\n{out}"
    );

    let second = rollcage_local(&tmp.path().join("v2"), &root, "d2")?;
    assert!(
        second.status.success(),
        "second run failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );

    // Each deployment runs the plan's hooks in its order; the steps that stop or drain the running app take the
    // scripts of the revision that was installed (none on the first deployment), the others the new revision's.
    let hooks = |installed: Option<&str>, new: &str| -> Vec<String> {
        rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
            .hooks(installed, new)
            .map(|(e, v)| format!("{e} {v}"))
            .collect()
    };
    let want = [hooks(None, "v1"), hooks(Some("v1"), "v2")].concat();
    assert_eq!(want.len(), 9, "{want:?}");
    assert!(want.contains(&"ApplicationStop v1".to_owned()));
    assert_eq!(events(&base)?, want);
    assert_eq!(std::fs::read_to_string(base.join("app/VERSION"))?, "v2\n");
    assert_eq!(std::fs::read_to_string(base.join("running"))?, "v2\n");
    // The seed's cache layout.
    for d in ["d1", "d2"] {
        let dir = root.join(format!("app-hello/group-dev/deploy-{d}"));
        assert!(
            dir.join("revision/appspec.yml").is_file(),
            "{} has no revision",
            dir.display()
        );
        assert!(
            dir.join("logs/scripts.log").is_file(),
            "{} has no scripts.log",
            dir.display()
        );
    }
    Ok(())
}

#[test]
fn a_failing_validate_names_the_step_the_hook_and_its_output() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path().join("srv");
    let root = tmp.path().join("root");
    let rev = tmp.path().join("bad");
    make_revision(&rev, &base, "v1")?;
    std::fs::write(
        rev.join("hooks/validate.sh"),
        "#!/bin/sh\necho checking port 8080\necho 'not healthy' >&2\nexit 7\n",
    )?;

    let run = rollcage_local(&rev, &root, "d1")?;
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("ValidateService"), "{err}");
    assert!(err.contains("hooks/validate.sh"), "{err}");
    assert!(err.contains("exit code 7"), "{err}");
    assert!(err.contains("not healthy"), "log tail missing: {err}");
    Ok(())
}

#[test]
fn an_archive_bundle_with_a_wrapper_directory_deploys_too() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path().join("srv");
    let root = tmp.path().join("root");
    make_revision(&tmp.path().join("pkg/hello-1.0"), &base, "v1")?;
    let archive = tmp.path().join("hello.bin"); // the name says nothing: the format is detected by content
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(tmp.path().join("pkg"))
        .arg("hello-1.0")
        .status()?;
    assert!(tar.success());
    let run = rollcage_local(&archive, &root, "d1")?;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(std::fs::read_to_string(base.join("running"))?, "v1\n");
    Ok(())
}
