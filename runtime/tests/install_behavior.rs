//! Install copy semantics: where sources land, file_exists_behavior (DISALLOW / OVERWRITE / RETAIN) for files and
//! nested directory trees, symlinks and modes, conflicting mappings.

mod install_support;

use install_support::*;
use rollcage_runtime::appspec::FileExistsBehavior;
use rollcage_runtime::install::InstallError;
use std::fs;
use std::os::unix::fs::PermissionsExt;

#[test]
fn directory_source_copies_contents_and_file_source_lands_inside_destination() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision(
        "1",
        &[
            ("web/index.html", "hi"),
            ("web/css/site.css", "x"),
            ("conf/app.ini", "k=v"),
        ],
    )?;
    let s = spec(&[("web", &f.d("www/html")), ("conf/app.ini", &f.d("etc/app"))]);
    let report = f.install(&s, &rev, "d-1")?;
    assert_eq!(fs::read_to_string(f.d("www/html/index.html"))?, "hi");
    assert_eq!(fs::read_to_string(f.d("www/html/css/site.css"))?, "x");
    assert_eq!(fs::read_to_string(f.d("etc/app/app.ini"))?, "k=v");
    assert!(
        !exists(&f.d("www/html/web")),
        "the directory itself is not copied, only its contents"
    );
    // www, www/html, www/html/css, etc, etc/app
    assert_eq!(report.dirs_created, 5);
    assert_eq!(report.copied, 3);
    assert!(staging_leftovers(&f.d("www/html"))?.is_empty());
    Ok(())
}

#[test]
fn whole_revision_source_and_symlinks_keep_their_target_text() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision("1", &[("bin/tool", "#!"), ("data/", "")])?;
    std::os::unix::fs::symlink("bin/tool", rev.join("current"))?;
    std::os::unix::fs::symlink("/nonexistent/elsewhere", rev.join("dangling"))?;
    f.install(&spec(&[("/", &f.d("app"))]), &rev, "d-1")?;
    assert_eq!(
        fs::read_link(f.d("app/current"))?,
        std::path::Path::new("bin/tool")
    );
    assert_eq!(
        fs::read_link(f.d("app/dangling"))?,
        std::path::Path::new("/nonexistent/elsewhere")
    );
    assert!(
        fs::symlink_metadata(f.d("app/data"))?.is_dir(),
        "empty directories are created too"
    );
    Ok(())
}

#[test]
fn modes_are_preserved_without_setuid_and_setgid() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision(
        "1",
        &[("run.sh", "#!/bin/sh"), ("secret", "s"), ("d/x", "")],
    )?;
    fs::set_permissions(rev.join("run.sh"), fs::Permissions::from_mode(0o6755))?;
    fs::set_permissions(rev.join("secret"), fs::Permissions::from_mode(0o600))?;
    fs::set_permissions(rev.join("d"), fs::Permissions::from_mode(0o1750))?;
    f.install(&spec(&[("/", &f.d("app"))]), &rev, "d-1")?;
    assert_eq!(mode(&f.d("app/run.sh"))?, 0o755);
    assert_eq!(mode(&f.d("app/secret"))?, 0o600);
    assert_eq!(
        mode(&f.d("app/d"))?,
        0o1750,
        "sticky kept, directory mode preserved"
    );
    Ok(())
}

#[test]
fn disallow_fails_naming_the_existing_file_before_copying_anything() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("app"))?;
    fs::write(f.d("app/b.txt"), "theirs")?;
    let rev = f.revision("1", &[("a.txt", "a"), ("b.txt", "ours")])?;
    let err = f.install(&spec(&[("/", &f.d("app"))]), &rev, "d-1");
    match err {
        Err(InstallError::FileExists { path }) => assert_eq!(path, f.d("app/b.txt")),
        other => panic!("expected FileExists, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(f.d("app/b.txt"))?, "theirs");
    assert!(!exists(&f.d("app/a.txt")), "planning fails before any copy");
    Ok(())
}

#[test]
fn disallow_error_message_is_codedeploys() -> TestResult {
    let f = Fixture::new()?;
    fs::write(f.d("b.txt"), "theirs")?;
    let rev = f.revision("1", &[("b.txt", "ours")])?;
    let err = f
        .install(&spec(&[("b.txt", &f.dest)]), &rev, "d-1")
        .err()
        .ok_or("install succeeded")?;
    let msg = err.to_string();
    assert!(
        msg.contains("a specified file already exists at this location"),
        "{msg}"
    );
    assert!(msg.contains(&f.d("b.txt").display().to_string()), "{msg}");
    Ok(())
}

#[test]
fn overwrite_replaces_existing_files_in_nested_trees() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("app/a/b"))?;
    fs::write(f.d("app/top.txt"), "old")?;
    fs::write(f.d("app/a/b/deep.txt"), "old")?;
    fs::write(f.d("app/a/b/unrelated.txt"), "keep")?;
    std::os::unix::fs::symlink("/etc/hostname", f.d("app/a/link"))?;
    let rev = f.revision(
        "1",
        &[
            ("top.txt", "new"),
            ("a/b/deep.txt", "new"),
            ("a/link", "now a file"),
        ],
    )?;
    let mut s = spec(&[("/", &f.d("app"))]);
    s.file_exists_behavior = Some(FileExistsBehavior::Overwrite);
    let report = f.install(&s, &rev, "d-1")?;
    assert_eq!(fs::read_to_string(f.d("app/top.txt"))?, "new");
    assert_eq!(fs::read_to_string(f.d("app/a/b/deep.txt"))?, "new");
    assert_eq!(fs::read_to_string(f.d("app/a/b/unrelated.txt"))?, "keep");
    assert!(
        fs::symlink_metadata(f.d("app/a/link"))?.is_file(),
        "the symlink itself is replaced, not followed"
    );
    assert_eq!(report.dirs_created, 0, "existing directories are reused");
    assert_eq!(report.copied, 3);
    assert!(staging_leftovers(&f.d("app/a/b"))?.is_empty());
    Ok(())
}

#[test]
fn retain_keeps_existing_files_in_nested_trees_and_copies_the_rest() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("app/a/b"))?;
    fs::write(f.d("app/a/b/deep.txt"), "theirs")?;
    let rev = f.revision(
        "1",
        &[
            ("a/b/deep.txt", "ours"),
            ("a/b/new.txt", "ours"),
            ("a/c/x.txt", "ours"),
        ],
    )?;
    let mut s = spec(&[("/", &f.d("app"))]);
    s.file_exists_behavior = Some(FileExistsBehavior::Retain);
    let report = f.install(&s, &rev, "d-1")?;
    assert_eq!(fs::read_to_string(f.d("app/a/b/deep.txt"))?, "theirs");
    assert_eq!(fs::read_to_string(f.d("app/a/b/new.txt"))?, "ours");
    assert_eq!(fs::read_to_string(f.d("app/a/c/x.txt"))?, "ours");
    assert_eq!(
        (report.retained, report.copied, report.dirs_created),
        (1, 2, 1)
    );
    // The retained file is not ours: the next deployment's cleanup must leave it.
    f.install(&spec(&[]), &rev, "d-2")?;
    assert_eq!(fs::read_to_string(f.d("app/a/b/deep.txt"))?, "theirs");
    assert!(!exists(&f.d("app/a/b/new.txt")));
    assert!(
        !exists(&f.d("app/a/c")),
        "our directory, empty after cleanup, is removed"
    );
    Ok(())
}

#[test]
fn disallow_applies_to_nested_files_of_a_directory_tree() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("app/a/b"))?;
    fs::write(f.d("app/a/b/deep.txt"), "theirs")?;
    let rev = f.revision("1", &[("a/b/deep.txt", "ours")])?;
    let err = f.install(&spec(&[("/", &f.d("app"))]), &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::FileExists { ref path }) if *path == f.d("app/a/b/deep.txt")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn the_appspec_behaviour_wins_over_the_deployment_default() -> TestResult {
    let f = Fixture::new()?;
    fs::write(f.d("x"), "theirs")?;
    let rev = f.revision("1", &[("x", "ours")])?;
    // Default OVERWRITE from the deployment, AppSpec says RETAIN.
    let mut s = spec(&[("x", &f.dest)]);
    s.file_exists_behavior = Some(FileExistsBehavior::Retain);
    f.install_default(&s, &rev, "d-1", FileExistsBehavior::Overwrite)?;
    assert_eq!(fs::read_to_string(f.d("x"))?, "theirs");
    // Without an AppSpec value the default applies.
    s.file_exists_behavior = None;
    f.install_default(&s, &rev, "d-2", FileExistsBehavior::Overwrite)?;
    assert_eq!(fs::read_to_string(f.d("x"))?, "ours");
    Ok(())
}

#[test]
fn two_sources_to_one_destination_fail_before_copying() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision(
        "1",
        &[("a/conf.ini", "a"), ("b/conf.ini", "b"), ("a/other", "o")],
    )?;
    let err = f.install(
        &spec(&[("a", &f.d("app")), ("b", &f.d("app"))]),
        &rev,
        "d-1",
    );
    assert!(
        matches!(err, Err(InstallError::DuplicateDestination { ref path, .. }) if *path == f.d("app/conf.ini")),
        "{err:?}"
    );
    assert!(!exists(&f.d("app")), "nothing was created");
    Ok(())
}

#[test]
fn a_file_where_a_directory_exists_is_a_clash_whatever_the_behaviour() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("app/conf"))?;
    let rev = f.revision("1", &[("conf", "a file")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    s.file_exists_behavior = Some(FileExistsBehavior::Overwrite);
    let err = f.install(&s, &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::FileDirClash { ref path, expected: "a file", .. }) if *path == f.d("app/conf")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_source_is_never_reached_through_a_symlink() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision("1", &[("real/x", "x")])?;
    std::os::unix::fs::symlink("real", rev.join("alias"))?;
    let err = f.install(&spec(&[("alias/x", &f.d("app"))]), &rev, "d-1");
    assert!(
        matches!(
            err,
            Err(InstallError::SourceThroughSymlink { index: 0, .. })
        ),
        "{err:?}"
    );
    let err = f.install(&spec(&[("missing", &f.d("app"))]), &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::SourceMissing { index: 0, .. })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn nothing_is_ever_copied_into_the_agent_root() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision("1", &[("cleanup.json", "{}")])?;
    let state = f.group.state_dir();
    let err = f.install(&spec(&[("cleanup.json", &state)]), &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::DestinationInAgentRoot { .. })),
        "{err:?}"
    );
    assert!(!exists(&state), "refused before anything was created");
    Ok(())
}
