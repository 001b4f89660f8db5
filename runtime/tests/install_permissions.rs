//! `permissions`: applied only to objects this deployment created, matched by object/pattern/except/type, in the
//! order chmod → ACL → SELinux context → chown; names and tools are resolved before anything changes.

mod install_support;

use install_support::*;
use rollcage_runtime::appspec::{
    AclEntry, AclTag, Mode, ObjectTypes, SelinuxContext, SelinuxRange,
};
use rollcage_runtime::install::InstallError;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A fake tool that appends `NAME ARGS... | MODE UID` (mode and owner of its last argument at call time) to `log`.
fn recording_tool(bin: &Path, name: &str, log: &Path) -> std::io::Result<()> {
    let body = format!(
        "for a; do last=$a; done\necho \"{name} $* | $(stat -c '%a %u' \"$last\" 2>/dev/null)\" >> '{}'",
        log.display()
    );
    script(bin, name, &body).map(|_| ())
}

#[test]
fn mode_is_applied_to_created_files_and_directories_only() -> TestResult {
    let f = Fixture::new()?;
    fs::create_dir_all(f.d("app/sub"))?;
    fs::write(f.d("app/sub/preexisting.txt"), "admin's")?;
    fs::set_permissions(
        f.d("app/sub/preexisting.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let rev = f.revision(
        "1",
        &[("a.txt", "a"), ("sub/b.txt", "b"), ("new/c.txt", "c")],
    )?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app"));
    p.mode = Some(Mode(0o700));
    s.permissions = vec![p];
    f.install(&s, &rev, "d-1")?;
    for created in ["app/a.txt", "app/sub/b.txt", "app/new", "app/new/c.txt"] {
        assert_eq!(mode(&f.d(created))?, 0o700, "{created}");
    }
    assert_eq!(
        mode(&f.d("app/sub/preexisting.txt"))?,
        0o644,
        "a pre-existing file keeps its mode"
    );
    assert_ne!(
        mode(&f.d("app/sub"))?,
        0o700,
        "a pre-existing directory keeps its mode"
    );
    assert_ne!(
        mode(&f.d("app"))?,
        0o700,
        "the object itself is never matched"
    );
    Ok(())
}

#[test]
fn owner_and_group_are_applied_and_setuid_survives_chown() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision("1", &[("bin/tool", "#!"), ("data/x", "x")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app/bin"));
    p.owner = Some("nobody".into());
    p.group = Some("nogroup".into());
    p.mode = Some(Mode(0o4750));
    let mut q = permission(&f.d("app/data"));
    q.owner = Some("nobody".into());
    s.permissions = vec![p, q];
    f.install(&s, &rev, "d-1")?;
    let m = fs::metadata(f.d("app/bin/tool"))?;
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
    assert_eq!(
        m.mode() & 0o7777,
        0o4750,
        "chown must not strip the setuid bit the AppSpec asked for"
    );
    let m = fs::metadata(f.d("app/data/x"))?;
    assert_eq!(
        (m.uid(), m.gid()),
        (65534, 0),
        "group unchanged when not given"
    );
    assert_eq!(
        fs::metadata(f.d("app/bin"))?.uid(),
        0,
        "the object directory itself is not matched"
    );
    Ok(())
}

#[test]
fn a_file_object_gets_its_own_permissions() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision("1", &[("a.txt", "a"), ("b.txt", "b")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app/a.txt"));
    p.mode = Some(Mode(0o600));
    s.permissions = vec![p];
    f.install(&s, &rev, "d-1")?;
    assert_eq!(mode(&f.d("app/a.txt"))?, 0o600);
    assert_eq!(
        mode(&f.d("app/b.txt"))?,
        mode(&rev.join("b.txt"))?,
        "other files keep the revision mode"
    );
    Ok(())
}

#[test]
fn pattern_matches_direct_children_and_except_and_type_filter() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision(
        "1",
        &[
            ("a.sh", ""),
            ("b.txt", ""),
            ("skip.sh", ""),
            ("lib.sh/inner.sh", ""),
            ("sub/deep.sh", ""),
        ],
    )?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app"));
    p.pattern = "*.sh".into();
    p.except = vec!["skip*".into()];
    p.types = ObjectTypes {
        file: true,
        directory: false,
    };
    p.mode = Some(Mode(0o751));
    s.permissions = vec![p];
    f.install(&s, &rev, "d-1")?;
    assert_eq!(
        mode(&f.d("app/a.sh"))?,
        0o751,
        "direct child matching the pattern"
    );
    for untouched in [
        "app/b.txt",
        "app/skip.sh",
        "app/lib.sh",
        "app/lib.sh/inner.sh",
        "app/sub/deep.sh",
    ] {
        assert_ne!(
            mode(&f.d(untouched))?,
            0o751,
            "{untouched}: pattern, except or type should exclude it"
        );
    }
    Ok(())
}

#[test]
fn directory_type_filter_with_double_star_reaches_every_depth() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision("1", &[("a/b/c/f.txt", "")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app"));
    p.types = ObjectTypes {
        file: false,
        directory: true,
    };
    p.mode = Some(Mode(0o711));
    s.permissions = vec![p];
    f.install(&s, &rev, "d-1")?;
    for d in ["app/a", "app/a/b", "app/a/b/c"] {
        assert_eq!(mode(&f.d(d))?, 0o711, "{d}");
    }
    assert_ne!(mode(&f.d("app/a/b/c/f.txt"))?, 0o711);
    Ok(())
}

#[test]
fn two_entries_for_one_path_fail_before_copying() -> TestResult {
    let f = Fixture::new()?;
    let rev = f.revision("1", &[("sub/x", "")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    s.permissions = vec![permission(&f.d("app")), permission(&f.d("app/sub"))];
    let err = f.install(&s, &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::PermissionConflict { ref path, first: 0, second: 1 }) if *path == f.d("app/sub/x")),
        "{err:?}"
    );
    assert!(!exists(&f.d("app")), "nothing copied");
    Ok(())
}

#[test]
fn unknown_user_fails_before_anything_changes() -> TestResult {
    let f = Fixture::new()?;
    let rev1 = f.revision("1", &[("old.txt", "")])?;
    f.install(&spec(&[("/", &f.d("app"))]), &rev1, "d-1")?;
    let rev2 = f.revision("2", &[("new.txt", "")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app"));
    p.owner = Some("no-such-user-rollcage".into());
    s.permissions = vec![p];
    let err = f.install(&s, &rev2, "d-2");
    assert!(
        matches!(err, Err(InstallError::UnknownUser { ref field, ref name }) if field == "permissions[0].owner" && name == "no-such-user-rollcage"),
        "{err:?}"
    );
    assert!(
        exists(&f.d("app/old.txt")),
        "the previous deployment was not even cleaned up"
    );
    assert!(!exists(&f.d("app/new.txt")));
    let mut p = permission(&f.d("app"));
    p.acls = Some(vec![AclEntry {
        default: false,
        tag: AclTag::Group,
        name: "no-such-group-rollcage".into(),
        perms: 4,
    }]);
    s.permissions = vec![p];
    let err = f.install(&s, &rev2, "d-2");
    assert!(
        matches!(err, Err(InstallError::UnknownGroup { ref field, .. }) if field == "permissions[0].acls[0]"),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn acls_without_setfacl_fail_naming_the_tool_before_anything_changes() -> TestResult {
    let mut f = Fixture::new()?;
    let empty = f.tmp.path().join("empty-bin");
    fs::create_dir(&empty)?;
    f.options.tool_search_path = empty.into_os_string();
    let rev = f.revision("1", &[("a.txt", "")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app"));
    p.acls = Some(vec![AclEntry {
        default: false,
        tag: AclTag::User,
        name: "nobody".into(),
        perms: 6,
    }]);
    s.permissions = vec![p];
    let err = f.install(&s, &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::MissingTool { tool: "setfacl", ref field, .. }) if field == "permissions[0].acls"),
        "{err:?}"
    );
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("setfacl"), "{msg}");
    assert!(!exists(&f.d("app")));
    Ok(())
}

#[test]
fn selinux_without_tools_fails_naming_them() -> TestResult {
    let mut f = Fixture::new()?;
    let empty = f.tmp.path().join("empty-bin");
    fs::create_dir(&empty)?;
    f.options.tool_search_path = empty.into_os_string();
    let rev = f.revision("1", &[("a.txt", "")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app"));
    p.context = Some(SelinuxContext {
        user: None,
        type_: "httpd_sys_content_t".into(),
        range: None,
    });
    s.permissions = vec![p];
    let err = f.install(&s, &rev, "d-1");
    assert!(
        matches!(err, Err(InstallError::MissingTool { ref field, .. }) if field == "permissions[0].context"),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn operations_run_in_order_chmod_acl_context_chown_with_argument_vectors() -> TestResult {
    let mut f = Fixture::new()?;
    let bin = f.tmp.path().join("bin");
    let log = f.tmp.path().join("tools.log");
    recording_tool(&bin, "setfacl", &log)?;
    recording_tool(&bin, "chcon", &log)?;
    f.options.tool_search_path = bin.into_os_string();
    let rev = f.revision("1", &[("d/a b.txt", "")])?;
    let mut s = spec(&[("/", &f.d("app"))]);
    let mut p = permission(&f.d("app"));
    p.types = ObjectTypes {
        file: true,
        directory: false,
    };
    p.mode = Some(Mode(0o640));
    p.owner = Some("nobody".into());
    p.acls = Some(vec![
        AclEntry {
            default: false,
            tag: AclTag::User,
            name: "nobody".into(),
            perms: 6,
        },
        AclEntry {
            default: true,
            tag: AclTag::Group,
            name: "nogroup".into(),
            perms: 4,
        },
    ]);
    p.context = Some(SelinuxContext {
        user: Some("system_u".into()),
        type_: "httpd_sys_content_t".into(),
        range: Some(SelinuxRange {
            low: 0,
            high: 0,
            categories: [1, 2, 3].into_iter().collect(),
        }),
    });
    s.permissions = vec![p];
    f.install(&s, &rev, "d-1")?;
    let file = f.d("app/d/a b.txt");
    let lines: Vec<String> = fs::read_to_string(&log)?
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        vec![
            // After chmod (640), before chown (still uid 0); the default entry is dropped on a file.
            format!(
                "setfacl --set=u::rw-,g::r--,o::---,u:65534:rw- -- {} | 640 0",
                file.display()
            ),
            format!(
                "chcon -u system_u -t httpd_sys_content_t -l s0:c1.c3 -- {} | 640 0",
                file.display()
            ),
        ]
    );
    assert_eq!(fs::metadata(&file)?.uid(), 65534, "chown ran last");
    Ok(())
}

#[test]
fn semanage_rules_are_recorded_and_deleted_by_the_next_install() -> TestResult {
    let mut f = Fixture::new()?;
    let bin = f.tmp.path().join("bin");
    let log = f.tmp.path().join("tools.log");
    recording_tool(&bin, "semanage", &log)?;
    recording_tool(&bin, "restorecon", &log)?;
    f.options.tool_search_path = bin.into_os_string();
    let rev = f.revision("1", &[("site.conf", "")])?;
    let mut s = spec(&[("site.conf", &f.d("etc"))]);
    let mut p = permission(&f.d("etc/site.conf"));
    p.context = Some(SelinuxContext {
        user: None,
        type_: "etc_t".into(),
        range: None,
    });
    s.permissions = vec![p];
    f.install(&s, &rev, "d-1")?;
    let file = f.d("etc/site.conf");
    let regex = file.display().to_string().replace('.', "\\.");
    f.install(&spec(&[]), &rev, "d-2")?;
    let lines: Vec<String> = fs::read_to_string(&log)?
        .lines()
        .map(|l| l.split(" | ").next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        lines,
        vec![
            format!("semanage fcontext -a -t etc_t -- {regex}"),
            format!("restorecon -- {}", file.display()),
            format!("semanage fcontext -d -- {regex}"),
        ]
    );
    Ok(())
}
