//! The cleanup list: the next install removes exactly what the previous one created (in reverse, directories only
//! when empty), a half-done install is cleaned by the next one, and the list is written ahead of the copies.

mod install_support;

use install_support::*;
use rollcage_runtime::appspec::{FileExistsBehavior, Mode};
use rollcage_runtime::install::InstallError;
use rollcage_runtime::install::cleanup::{CleanupEntry, parse};
use std::fs;

#[test]
fn the_next_install_removes_what_the_previous_one_created_and_nothing_else() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("shared"))?;
    fs::write(f.d("shared/preexisting.txt"), "admin's")?;
    let rev1 = f.revision(
        "1",
        &[
            ("a.txt", "1"),
            ("sub/b.txt", "1"),
            ("keep/c.txt", "1"),
            ("empty/", ""),
        ],
    )?;
    std::os::unix::fs::symlink("a.txt", rev1.join("link"))?;
    let s = spec(&[("/", &f.d("shared/app")), ("a.txt", &f.d("shared"))]);
    f.install(&s, &rev1, "d-1")?;
    assert!(exists(&f.d("shared/app/link")) && exists(&f.d("shared/a.txt")));
    // Someone adds a file inside a directory we created: that directory must survive cleanup.
    fs::write(f.d("shared/app/keep/added-by-hook.log"), "x")?;

    let rev2 = f.revision("2", &[("new.txt", "2")])?;
    let report = f.install(&spec(&[("new.txt", &f.d("other"))]), &rev2, "d-2")?;

    for gone in [
        "shared/a.txt",
        "shared/app/a.txt",
        "shared/app/sub",
        "shared/app/link",
        "shared/app/keep/c.txt",
        "shared/app/empty",
    ] {
        assert!(!exists(&f.d(gone)), "{gone} should have been cleaned up");
    }
    assert_eq!(
        fs::read_to_string(f.d("shared/preexisting.txt"))?,
        "admin's",
        "pre-existing files are untouched"
    );
    assert!(
        exists(&f.d("shared/app/keep/added-by-hook.log")),
        "non-empty directories are kept"
    );
    assert!(
        exists(&f.d("shared/app")),
        "kept because its child directory was kept"
    );
    assert!(exists(&f.d("shared")), "existed before, never ours");
    assert_eq!(fs::read_to_string(f.d("other/new.txt"))?, "2");
    // a.txt ×2, sub/b.txt, sub, keep/c.txt, empty, link, and not app/keep/app (non-empty).
    assert_eq!(report.cleaned, 7);
    Ok(())
}

#[test]
fn files_of_the_previous_deployment_do_not_count_as_existing() -> TestResult {
    let f = Fixture::new()?;
    let rev1 = f.revision("1", &[("a.txt", "1")])?;
    let rev2 = f.revision("2", &[("a.txt", "2")])?;
    let s = spec(&[("/", &f.d("app"))]);
    f.install(&s, &rev1, "d-1")?;
    // DISALLOW, yet a.txt is replaced: the previous deployment created it, so cleanup removed it first.
    f.install(&s, &rev2, "d-2")?;
    assert_eq!(fs::read_to_string(f.d("app/a.txt"))?, "2");
    Ok(())
}

#[test]
fn the_new_list_names_every_created_object_in_order_and_not_retained_ones() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("app"))?;
    fs::write(f.d("app/kept.txt"), "theirs")?;
    let rev = f.revision("1", &[("kept.txt", "x"), ("d/f.txt", "x")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    s.file_exists_behavior = Some(FileExistsBehavior::Retain);
    f.install(&s, &rev, "d-1")?;
    let list = f.group.cleanup_file();
    let text = fs::read_to_string(&list)?;
    let p = |rel: &str| f.d(rel).display().to_string();
    assert_eq!(
        parse(&list, &text)?,
        vec![
            CleanupEntry::Header {
                format: 1,
                deployment: "d-1".into()
            },
            CleanupEntry::Dir { path: p("app/d") },
            CleanupEntry::File {
                path: p("app/d/f.txt")
            },
        ]
    );
    assert_eq!(f.group.last_installed()?, Some("d-1".to_owned()));
    Ok(())
}

#[test]
fn a_half_done_install_is_cleaned_by_the_next_one() -> TestResult {
    let mut f = Fixture::new()?;
    // A setfacl that fails: the install dies after its copies, like a crash between copy and permissions.
    let bin = f.tmp.path().join("bin");
    script(
        &bin,
        "setfacl",
        "echo 'setfacl: simulated failure' >&2; exit 1",
    )?;
    f.options.tool_search_path = bin.into_os_string();
    let rev1 = f.revision("1", &[("a.txt", "1"), ("d/b.txt", "1")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut perm = permission(&f.d("app"));
    perm.acls = Some(vec![rollcage_runtime::appspec::AclEntry {
        default: false,
        tag: rollcage_runtime::appspec::AclTag::Other,
        name: String::new(),
        perms: 4,
    }]);
    perm.mode = Some(Mode(0o640));
    s.permissions = vec![perm];
    let err = f.install(&s, &rev1, "d-1");
    assert!(
        matches!(err, Err(InstallError::ToolFailed { .. })),
        "{err:?}"
    );
    assert!(
        exists(&f.d("app/a.txt")),
        "the copies happened before the failure"
    );
    assert_eq!(
        f.group.last_installed()?,
        None,
        "a failed install is not the last successful one"
    );

    let rev2 = f.revision("2", &[("c.txt", "2")])?;
    let report = f.install(&spec(&[("/", &f.d("app2"))]), &rev2, "d-2")?;
    for gone in ["app/a.txt", "app/d/b.txt", "app/d", "app"] {
        assert!(
            !exists(&f.d(gone)),
            "{gone} left behind by the failed install"
        );
    }
    assert_eq!(report.cleaned, 4);
    Ok(())
}

#[test]
fn a_list_torn_by_a_crash_is_replayed_and_missing_entries_are_fine() -> TestResult {
    let f = Fixture::new()?;
    // What a crash mid-install leaves: entries written ahead, only some objects created, the last line torn.
    fs::create_dir_all(f.d("app/d"))?;
    fs::write(f.d("app/d/done.txt"), "copied")?;
    fs::write(f.d("app/d/.half.txt.rollcage-tmp"), "half a co")?;
    fs::write(f.d("app/untouched.txt"), "not listed")?;
    let p = |rel: &str| f.d(rel).display().to_string();
    let lines = [
        r#"{"kind":"header","format":1,"deployment":"d-crashed"}"#.to_owned(),
        format!(r#"{{"kind":"dir","path":"{}"}}"#, p("app/d")),
        format!(r#"{{"kind":"file","path":"{}"}}"#, p("app/d/done.txt")),
        format!(r#"{{"kind":"file","path":"{}"}}"#, p("app/d/half.txt")),
        format!(
            r#"{{"kind":"file","path":"{}"}}"#,
            p("app/d/never-created.txt")
        ),
    ];
    let list = f.group.cleanup_file();
    fs::create_dir_all(f.group.state_dir())?;
    fs::write(&list, format!("{}\n{{\"kind\":\"fi", lines.join("\n")))?;

    let rev = f.revision("1", &[("x", "x")])?;
    f.install(&spec(&[("x", &f.d("elsewhere"))]), &rev, "d-next")?;
    assert!(
        !exists(&f.d("app/d")),
        "listed directory removed once emptied"
    );
    assert!(
        !exists(&f.d("app/d/.half.txt.rollcage-tmp")),
        "the torn copy's staging file is removed"
    );
    assert!(exists(&f.d("app/untouched.txt")));
    let text = fs::read_to_string(&list)?;
    assert!(
        text.starts_with(r#"{"kind":"header","format":1,"deployment":"d-next"}"#),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_corrupt_list_stops_the_install_naming_the_line() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.group.state_dir())?;
    fs::write(
        f.group.cleanup_file(),
        "{\"kind\":\"header\",\"format\":1,\"deployment\":\"d\"}\ngarbage\n",
    )?;
    let rev = f.revision("1", &[("x", "x")])?;
    let err = f.install(&spec(&[("x", &f.d("app"))]), &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::CorruptCleanupList { line: 2, .. })),
        "{err:?}"
    );
    assert!(!exists(&f.d("app")));
    Ok(())
}
