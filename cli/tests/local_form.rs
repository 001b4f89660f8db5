//! `rollcage local --form` and `rollcage appspec check --form`, run as real processes on a plain tar.gz.

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A plain `.tar.gz` (no appspec.yml) holding `payload.txt` = `version`.
fn plain_archive(path: &Path, version: &str) -> TestResult {
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let body = format!("{version}\n");
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "payload.txt", body.as_bytes())?;
    tar.into_inner()?.finish()?;
    Ok(())
}

/// A YAML form whose scripts append `<version> <step> <payload in cwd>` to `log`.
fn write_form(path: &Path, dest: &Path, log: &Path, version: &str) -> TestResult {
    let line = |step: &str| {
        format!(
            "echo \"{version} {step} $(cat payload.txt)\" >> '{}'",
            log.display()
        )
    };
    let text = format!(
        "destination: {}\nstop: |\n  {}\nstart:\n  script: |\n    {}\n  timeout: 30\ncheck: |\n  {}\n",
        dest.display(),
        line("stop"),
        line("start"),
        line("check")
    );
    std::fs::write(path, text)?;
    Ok(())
}

fn rollcage(args: &[&str], paths: &[(&str, &Path)]) -> std::io::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollcage"));
    cmd.args(args);
    for (flag, p) in paths {
        cmd.arg(flag).arg(p);
    }
    cmd.output()
}

#[test]
fn local_form_runs_stop_start_check_with_stop_from_the_previous_form() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dest, log, root) = (
        tmp.path().join("srv"),
        tmp.path().join("events.log"),
        tmp.path().join("root"),
    );
    for (id, v) in [("d1", "v1"), ("d2", "v2")] {
        let bundle = tmp.path().join(format!("{v}.tar.gz"));
        let form = tmp.path().join(format!("{v}.yml"));
        plain_archive(&bundle, v)?;
        write_form(&form, &dest, &log, v)?;
        let out = rollcage(
            &["local", "--deployment-id", id],
            &[("--bundle", &bundle), ("--form", &form), ("--root", &root)],
        )?;
        assert!(
            out.status.success(),
            "{id}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("payload.txt"))?,
            format!("{v}\n")
        );
    }
    assert_eq!(
        std::fs::read_to_string(&log)?.lines().collect::<Vec<_>>(),
        [
            "v1 start v1",
            "v1 check v1",
            "v1 stop v1",
            "v2 start v2",
            "v2 check v2"
        ]
    );
    Ok(())
}

#[test]
fn local_without_appspec_or_form_fails_download_naming_both_fixes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let bundle = tmp.path().join("plain.tar.gz");
    plain_archive(&bundle, "v1")?;
    let out = rollcage(
        &["local"],
        &[("--bundle", &bundle), ("--root", &tmp.path().join("root"))],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed at DownloadBundle"), "{err}");
    assert!(
        err.contains("add an appspec.yml") && err.contains("--form"),
        "{err}"
    );
    Ok(())
}

#[test]
fn appspec_check_form_reports_field_paths_and_exit_codes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        "destination = '/srv/app'\nstart = 'true'\ncheck = 'true'\n",
    )?;
    let out = rollcage(&["appspec", "check"], &[("--form", &good)])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("valid form") && stdout.contains("start, check"),
        "{stdout}"
    );

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "destination: srv/app\nstop: ''\nchek: 'true'\n")?;
    let out = rollcage(&["appspec", "check"], &[("--form", &bad)])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for needle in [
        "destination: ",
        "stop: ",
        "chek: unknown key `chek` (did you mean `check`?)",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in {stdout}");
    }
    assert_eq!(stdout.lines().count(), 3, "{stdout}");

    let out = rollcage(
        &["appspec", "check"],
        &[("--form", &tmp.path().join("missing.toml"))],
    )?;
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}
