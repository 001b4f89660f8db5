//! `rollcage appspec check` run as a real process: output format, exit statuses, and every kind of PATH
//! (file, revision directory, tar, tar.gz and zip archives, with and without a wrapper directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VALID: &str = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /srv/app\nhooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n  ValidateService:\n    - location: scripts/check.sh\n    - location: hooks/v.wasm\n      sandbox:\n        memory_mb: 32\npermissions:\n  - object: /srv/app\n    mode: 0755\n";

fn run(args: &[&std::ffi::OsStr]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_rollcage"))
        .args(args)
        .env_remove("ROLLCAGE_LOG")
        .output()
}

fn check(path: &Path) -> std::io::Result<(i32, String)> {
    let out = run(&["appspec".as_ref(), "check".as_ref(), path.as_os_str()])?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn write(path: &Path, text: &[u8]) -> std::io::Result<PathBuf> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    Ok(path.to_owned())
}

/// Revision files (name, content, unix mode) for archives; `wrapper` puts them under one top directory.
fn revision_entries() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("appspec.yml", VALID.as_bytes()),
        ("app/index.html", b"hi"),
        ("scripts/start.sh", b"#!/bin/sh\n"),
        ("scripts/check.sh", b"#!/bin/sh\n"),
        ("hooks/v.wasm", b"\0asm\x01\0\0\0"),
    ]
}

fn tar_bytes(wrapper: &str, extra_symlink: Option<(&str, &str)>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in revision_entries() {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, format!("{wrapper}{name}"), content)?;
    }
    if let Some((name, target)) = extra_symlink {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, format!("{wrapper}{name}"), target)?;
    }
    builder.into_inner()
}

#[test]
fn valid_file_prints_a_summary_and_exits_0() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = write(&dir.path().join("appspec.yml"), VALID.as_bytes())?;
    let (code, out) = check(&file)?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "{}: valid (1 file, 3 hooks in 2 events, 1 permission)",
            file.display()
        )
    );
    Ok(())
}

#[test]
fn problems_print_file_line_col_and_exit_1() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = "version: 0.0\nos: linux\nhooks:\n  ValidateServices:\n    - location: v.sh\n      timeout: 0\n";
    let file = write(&dir.path().join("appspec.yml"), text.as_bytes())?;
    let (code, out) = check(&file)?;
    assert_eq!(code, 1, "{out}");
    let f = file.display();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "{f}:4:3: hooks.ValidateServices: unknown lifecycle event"
        )),
        "{out}"
    );
    assert!(
        lines[0].ends_with("did you mean `ValidateService`?"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{f}:6:16: hooks.ValidateServices[0].timeout: invalid timeout `0`"
        )),
        "{out}"
    );
    Ok(())
}

#[test]
fn problem_without_position_prints_file_and_message() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = write(&dir.path().join("appspec.yml"), b"   \n")?;
    let (code, out) = check(&file)?;
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!("{}: the AppSpec file was empty", file.display())),
        "{out}"
    );
    Ok(())
}

#[test]
fn syntax_error_has_a_position() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = write(
        &dir.path().join("appspec.yml"),
        b"version: 0.0\nos: [linux\n",
    )?;
    let (code, out) = check(&file)?;
    assert_eq!(code, 1);
    let rest = out
        .strip_prefix(&format!("{}:", file.display()))
        .unwrap_or_default();
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().and_then(|l| l.parse::<usize>().ok());
    let col = parts.next().and_then(|c| c.parse::<usize>().ok());
    assert!(line.is_some() && col.is_some(), "{out}");
    assert!(out.contains("YAML syntax error"), "{out}");
    Ok(())
}

#[test]
fn usage_and_io_errors_exit_2() -> std::io::Result<()> {
    let out = run(&["appspec".as_ref(), "check".as_ref()])?;
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["appspec".as_ref(), "frobnicate".as_ref()])?;
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir()?;
    let (code, _) = check(&dir.path().join("missing.yml"))?;
    assert_eq!(code, 2);
    Ok(())
}

#[test]
fn revision_directory_checks_hook_locations() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, content) in revision_entries() {
        write(&dir.path().join(name), content)?;
    }
    let (code, out) = check(dir.path())?;
    assert_eq!(code, 0, "{out}");
    std::fs::remove_file(dir.path().join("scripts/check.sh"))?;
    let (code, out) = check(dir.path())?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "hooks.ValidateService[0].location: `scripts/check.sh` does not exist in the revision"
        ),
        "{out}"
    );
    Ok(())
}

#[test]
fn revision_directory_without_appspec_is_a_problem() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, out) = check(dir.path())?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no appspec.yml or appspec.yaml"), "{out}");
    Ok(())
}

#[test]
fn tar_gz_with_a_wrapper_directory_is_read_in_place() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes("myapp-1.2/", None)?)?;
    // Named .zip on purpose: the format is detected by content.
    let archive = write(&dir.path().join("bundle.zip"), &gz.finish()?)?;
    let (code, out) = check(&archive)?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!(
            "{}!myapp-1.2/appspec.yml: valid",
            archive.display()
        )),
        "{out}"
    );
    // Read-only: nothing next to the archive.
    let names: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["bundle.zip"]);
    Ok(())
}

#[test]
fn tar_hook_symlinked_out_of_the_revision_is_refused() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = VALID.replace("scripts/check.sh", "scripts/evil.sh");
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in revision_entries() {
        let content = if name == "appspec.yml" {
            text.as_bytes()
        } else {
            content
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, name, content)?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder.append_link(&mut header, "scripts/evil.sh", "../../../bin/sh")?;
    let archive = write(&dir.path().join("bundle.tar"), &builder.into_inner()?)?;
    let (code, out) = check(&archive)?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("hooks.ValidateService[0].location:") && out.contains("outside the revision"),
        "{out}"
    );
    Ok(())
}

#[test]
fn tar_symlink_inside_the_revision_is_fine() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = tar_bytes("", Some(("scripts/alias.sh", "start.sh")))?;
    let archive = write(&dir.path().join("bundle.tar"), &bytes)?;
    let (code, out) = check(&archive)?;
    assert_eq!(code, 0, "{out}");
    Ok(())
}

#[test]
fn zip_archive_is_checked_against_its_entries() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, content) in revision_entries() {
        if name == "hooks/v.wasm" {
            continue;
        }
        zip.start_file(name, options)
            .map_err(std::io::Error::other)?;
        zip.write_all(content)?;
    }
    let bytes = zip.finish().map_err(std::io::Error::other)?.into_inner();
    let archive = write(&dir.path().join("bundle.bin"), &bytes)?;
    let (code, out) = check(&archive)?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("hooks.ValidateService[1].location: `hooks/v.wasm` does not exist"),
        "{out}"
    );
    Ok(())
}

#[test]
fn archive_without_appspec_is_a_problem() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_cksum();
    builder.append_data(&mut header, "a/b/appspec.yml", &b"hi"[..])?;
    let archive = write(&dir.path().join("bundle.tar"), &builder.into_inner()?)?;
    let (code, out) = check(&archive)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no appspec.yml"), "{out}");
    Ok(())
}

#[test]
fn unknown_top_level_keys_are_warnings_not_failures() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = format!("{VALID}hook:\n  AfterInstall: []\n");
    let file = write(&dir.path().join("appspec.yml"), text.as_bytes())?;
    let (code, out) = check(&file)?;
    assert_eq!(code, 0, "{out}");
    let f = file.display();
    assert!(
        out.contains(&format!("{f}:17:1: warning: hook: unknown key `hook`")),
        "{out}"
    );
    assert!(out.contains("did you mean `hooks`?"), "{out}");
    assert!(
        out.lines().last().is_some_and(|l| l.contains(": valid (")),
        "{out}"
    );
    Ok(())
}

#[test]
fn tar_made_with_dot_prefix_names_is_read() -> std::io::Result<()> {
    // `tar -czf bundle.tgz -C dir .` names every entry `./…` and adds a `./` directory entry.
    let dir = tempfile::tempdir()?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append_data(&mut header, "./", std::io::empty())?;
    for (name, content) in revision_entries() {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, format!("./{name}"), content)?;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&builder.into_inner()?)?;
    let archive = write(&dir.path().join("bundle.tgz"), &gz.finish()?)?;
    let (code, out) = check(&archive)?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("{}!appspec.yml: valid", archive.display())),
        "{out}"
    );
    Ok(())
}
