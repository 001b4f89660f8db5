//! The committed fuzz inputs (`fuzz/regressions/<target>/`), each run through its target's oracle exactly as the
//! fuzzer runs it: no invariant may fail (an oracle panics when one does), and each input gets the answer its name
//! says: `ok-*` accepted, `err-*` refused. Crashes the fuzzer found are kept here once fixed, with a name saying
//! what they were; the other files are interesting inputs that keep every oracle exercised.

use rollcage_fuzzing::{TARGETS, Verdict};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

fn expected(name: &str) -> Option<Verdict> {
    if name.starts_with("ok-") {
        Some(Verdict::Accepted)
    } else if name.starts_with("err-") {
        Some(Verdict::Refused)
    } else {
        None
    }
}

/// Run every input of one target; every failure is listed, each with its file.
fn run(target: &str) -> TestResult {
    let Some((_, check)) = TARGETS.iter().find(|(name, _)| *name == target) else {
        return Err(format!("no target {target}").into());
    };
    let dir = regressions().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    assert!(
        files.len() >= 5,
        "{}: only {} inputs",
        dir.display(),
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(want) = expected(name) else {
            failures.push(format!("{name}: the name must start with `ok-` or `err-`"));
            continue;
        };
        let data = std::fs::read(file)?;
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{name}: {got:?}, expected {want:?}")),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{name}: an invariant failed: {why}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn every_target_has_regressions_and_every_regression_dir_a_target() -> TestResult {
    let mut dirs: Vec<String> = std::fs::read_dir(regressions())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    dirs.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(dirs, names);
    // Every target has a cargo-fuzz binary of the same name.
    let manifest = std::fs::read_to_string(regressions().join("../Cargo.toml"))?;
    for name in &names {
        assert!(
            manifest.contains(&format!(
                "name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\""
            )),
            "fuzz/Cargo.toml has no target {name}"
        );
    }
    Ok(())
}

#[test]
fn appspec() -> TestResult {
    run("appspec")
}

#[test]
fn form() -> TestResult {
    run("form")
}

#[test]
fn archive() -> TestResult {
    run("archive")
}

#[test]
fn lb() -> TestResult {
    run("lb")
}

#[test]
fn wire() -> TestResult {
    run("wire")
}
