//! `permissions`: CodeDeploy's permission, mode, ACL and SELinux rules as the document reports them.

use super::support::{HEAD, expect, expect_in, revision, valid, valid_in};
use rollcage_runtime::appspec::{
    AclEntry, AclTag, Mode, ObjectTypes, Permission, ProblemKind, SelinuxContext, SelinuxRange,
};
use std::path::{Path, PathBuf};

fn perm(object: &str, body: &str) -> String {
    format!("{HEAD}permissions:\n  - object: {object}\n{body}")
}

/// A revision with `app.conf` installed by `files` as `/etc/app/app.conf`, and `permissions` text appended.
fn file_object(body: &str) -> std::io::Result<(tempfile::TempDir, String)> {
    let rev = revision(&[("app.conf", b"x"), ("web/index.html", b"x")])?;
    let text = format!(
        "{HEAD}files:\n  - source: app.conf\n    destination: /etc/app\n  - source: web\n    destination: /srv/web\npermissions:\n{body}"
    );
    Ok((rev, text))
}

fn only(text: &str) -> Permission {
    valid(text)
        .permissions
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no permission in {text}"))
}

#[test]
fn entry_without_object_is_an_error() {
    expect(
        &format!("{HEAD}permissions:\n  - owner: root\n"),
        ProblemKind::MissingField,
        "permissions[0].object",
    );
    expect(
        &format!("{HEAD}permissions:\n  - object: ''\n"),
        ProblemKind::MissingField,
        "permissions[0].object",
    );
}

#[test]
fn object_must_be_absolute() {
    expect(
        &perm("srv/app", ""),
        ProblemKind::NotAbsolute,
        "permissions[0].object",
    );
}

#[test]
fn pattern_defaults_to_any_depth_and_is_kept() {
    assert_eq!(only(&perm("/srv/app", "")).pattern, "**");
    assert_eq!(
        only(&perm("/srv/app", "    pattern: \"**\"\n")).pattern,
        "**"
    );
}

#[test]
fn multiple_objects_keep_their_order() {
    let spec = valid(&format!(
        "{HEAD}permissions:\n  - object: /b\n  - object: /a\n"
    ));
    let objects: Vec<&Path> = spec
        .permissions
        .iter()
        .map(|p| p.object.as_path())
        .collect();
    assert_eq!(objects, [Path::new("/b"), Path::new("/a")]);
}

#[test]
fn glob_pattern_on_a_copied_file_is_invalid() -> std::io::Result<()> {
    let (rev, text) = file_object("  - object: /etc/app/app.conf\n    pattern: \"*.conf\"\n")?;
    expect_in(
        &text,
        Some(rev.path()),
        ProblemKind::InvalidPattern,
        "permissions[0].pattern",
    );
    // The same pattern on a directory is fine.
    let (rev, text) = file_object("  - object: /srv/web\n    pattern: \"*.html\"\n")?;
    valid_in(&text, Some(rev.path()));
    Ok(())
}

#[test]
fn except_on_a_copied_file_is_invalid() -> std::io::Result<()> {
    let (rev, text) = file_object("  - object: /etc/app/app.conf\n    except: [\"*.tmp\"]\n")?;
    expect_in(
        &text,
        Some(rev.path()),
        ProblemKind::InvalidExcept,
        "permissions[0].except",
    );
    Ok(())
}

#[test]
fn plain_object_on_a_copied_file_passes() -> std::io::Result<()> {
    let (rev, text) = file_object("  - object: /etc/app/app.conf\n    mode: 640\n")?;
    valid_in(&text, Some(rev.path()));
    Ok(())
}

#[test]
fn glob_pattern_with_type_directory_passes_the_file_check() -> std::io::Result<()> {
    let (rev, text) = file_object(
        "  - object: /etc/app/app.conf\n    pattern: \"*.conf\"\n    type: [directory]\n",
    )?;
    valid_in(&text, Some(rev.path()));
    Ok(())
}

#[test]
fn acl_without_default_on_a_copied_file_passes() -> std::io::Result<()> {
    let (rev, text) = file_object("  - object: /etc/app/app.conf\n    acls: [\"u:bob:rw\"]\n")?;
    valid_in(&text, Some(rev.path()));
    Ok(())
}

#[test]
fn default_acl_on_a_copied_file_is_an_error() -> std::io::Result<()> {
    let (rev, text) = file_object("  - object: /etc/app/app.conf\n    acls: [\"d:u:bob:rw\"]\n")?;
    let p = expect_in(
        &text,
        Some(rev.path()),
        ProblemKind::AclDefaultOnFile,
        "permissions[0].acls",
    );
    assert!(p.message.contains("directories only"), "{}", p.message);
    Ok(())
}

#[test]
fn file_object_checks_are_exposed_for_install() {
    let p = only(&perm(
        "/etc/app/app.conf",
        "    pattern: \"*.conf\"\n    except: [\"a\"]\n    acls: [\"d:u:bob:7\"]\n",
    ));
    let kinds: Vec<ProblemKind> = rollcage_runtime::appspec::file_object_problems(&p)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kinds,
        [
            ProblemKind::InvalidPattern,
            ProblemKind::InvalidExcept,
            ProblemKind::AclDefaultOnFile
        ]
    );
}

#[test]
fn full_valid_permission_decodes_every_field() {
    let text = perm(
        "/tmp",
        "    pattern: \"prefix*\"\n    except: [\"*ReadMe\", \"*.tmp\"]\n    type: [file]\n    owner: bob\n    group: dev\n    mode: 6763\n    acls:\n      - u:henry:7\n      - d:g:manager:rw\n    context:\n      name: user_u\n      type: unconfined_t\n      range: s3-s5:c0.c7,c13\n",
    );
    let want = Permission {
        object: PathBuf::from("/tmp"),
        pattern: "prefix*".to_owned(),
        except: vec!["*ReadMe".to_owned(), "*.tmp".to_owned()],
        types: ObjectTypes {
            file: true,
            directory: false,
        },
        owner: Some("bob".to_owned()),
        group: Some("dev".to_owned()),
        mode: Some(Mode(0o6763)),
        acls: Some(vec![
            AclEntry {
                default: false,
                tag: AclTag::User,
                name: "henry".to_owned(),
                perms: 7,
            },
            AclEntry {
                default: true,
                tag: AclTag::Group,
                name: "manager".to_owned(),
                perms: 6,
            },
        ]),
        context: Some(SelinuxContext {
            user: Some("user_u".to_owned()),
            type_: "unconfined_t".to_owned(),
            range: Some(SelinuxRange {
                low: 3,
                high: 5,
                categories: [0, 1, 2, 3, 4, 5, 6, 7, 13].into(),
            }),
        }),
    };
    assert_eq!(only(&text), want);
}

#[test]
fn pattern_and_except_globs_cannot_span_directories() {
    expect(
        &perm("/srv", "    pattern: \"a/*\"\n"),
        ProblemKind::InvalidPattern,
        "permissions[0].pattern",
    );
    expect(
        &perm("/srv", "    except: [\"a/b\"]\n"),
        ProblemKind::InvalidExcept,
        "permissions[0].except[0]",
    );
}

#[test]
fn bad_type_is_an_error() {
    expect(
        &perm("/srv", "    type: [file, socket]\n"),
        ProblemKind::InvalidObjectType,
        "permissions[0].type[1]",
    );
    expect(
        &perm("/srv", "    type: []\n"),
        ProblemKind::InvalidObjectType,
        "permissions[0].type",
    );
}

#[test]
fn mode_five_digits_is_a_length_error() {
    let p = expect(
        &perm("/srv", "    mode: 77777\n"),
        ProblemKind::ModeLength,
        "permissions[0].mode",
    );
    assert_eq!((p.line, p.column), (Some(5), Some(11)));
}

#[test]
fn mode_two_digits_is_padded() {
    assert_eq!(
        only(&perm("/srv", "    mode: 12\n")).mode,
        Some(Mode(0o012))
    );
}

#[test]
fn mode_with_a_non_octal_char_is_invalid() {
    expect(
        &perm("/srv", "    mode: 12a\n"),
        ProblemKind::ModeInvalidChar,
        "permissions[0].mode",
    );
    // YAML 1.1 would read unquoted 0755 as 493 and CodeDeploy then rejects the 9; we read the digits.
    assert_eq!(
        only(&perm("/srv", "    mode: 0755\n")).mode,
        Some(Mode(0o755))
    );
}

#[test]
fn unquoted_leading_zero_mode_is_octal_not_yaml_integer() {
    assert_eq!(
        only(&perm("/srv", "    mode: 0644\n")).mode,
        Some(Mode(0o644))
    );
    assert_eq!(
        only(&perm("/srv", "    mode: \"0644\"\n")).mode,
        Some(Mode(0o644))
    );
    assert_eq!(
        only(&perm("/srv", "    mode: 644\n")).mode,
        Some(Mode(0o644))
    );
}

#[test]
fn mode_valid_values_decode() {
    for (text, want) in [("7777", 0o7777), ("0000", 0), ("777", 0o777)] {
        assert_eq!(
            only(&perm("/srv", &format!("    mode: {text}\n"))).mode,
            Some(Mode(want))
        );
    }
}

#[test]
fn acl_errors_are_reported_per_entry() {
    let cases = [
        ("7", ProblemKind::AclParts),
        ("d:u:bob:7:rwx", ProblemKind::AclParts),
        ("x:u:bob:7", ProblemKind::AclInvalidTag),
        ("d:x:bob:7", ProblemKind::AclInvalidTag),
        ("d:d:bob:7", ProblemKind::AclInvalidTag),
        ("mask:name:7", ProblemKind::AclNamedMaskOrOther),
        ("d:other:name:7", ProblemKind::AclNamedMaskOrOther),
        ("u:bob:rwxd", ProblemKind::AclInvalidPermission),
        ("u::rwx", ProblemKind::AclBaseEntry),
    ];
    for (ace, kind) in cases {
        let p = expect(
            &perm(
                "/srv",
                &format!("    acls:\n      - u:ok:r\n      - \"{ace}\"\n"),
            ),
            kind,
            "permissions[0].acls[1]",
        );
        assert_eq!(p.line, Some(7), "{ace}");
        assert!(p.message.contains(ace), "{}", p.message);
    }
}

#[test]
fn valid_short_aces_decode() {
    let p = only(&perm("/srv", "    acls: [\"bob:0\", \"m:7\", \"mask:\"]\n"));
    let want = vec![
        AclEntry {
            default: false,
            tag: AclTag::User,
            name: "bob".to_owned(),
            perms: 0,
        },
        AclEntry {
            default: false,
            tag: AclTag::Mask,
            name: String::new(),
            perms: 7,
        },
        AclEntry {
            default: false,
            tag: AclTag::Mask,
            name: String::new(),
            perms: 0,
        },
    ];
    assert_eq!(p.acls, Some(want));
}

#[test]
fn selinux_range_errors_are_reported_on_the_range() {
    let cases = [
        ("s3-s2:c0", ProblemKind::SelinuxRangeOrder),
        ("s3-:c0", ProblemKind::SelinuxRangePart),
        ("\":c0\"", ProblemKind::SelinuxRangePart),
        ("s", ProblemKind::SelinuxSensitivity),
        ("s0-s-1", ProblemKind::SelinuxSensitivity),
        ("sd3", ProblemKind::SelinuxSensitivity),
        ("d3", ProblemKind::SelinuxSensitivity),
        ("s0:c2.c1", ProblemKind::SelinuxCategoryRange),
        ("s0:c2.", ProblemKind::SelinuxRangePart),
        ("\"s0:\"", ProblemKind::SelinuxRangePart),
        ("s0:c", ProblemKind::SelinuxCategory),
        ("s0:c-1", ProblemKind::SelinuxCategory),
        ("s0:c1024", ProblemKind::SelinuxCategory),
        ("s0:cd3", ProblemKind::SelinuxCategory),
        ("s0:d3", ProblemKind::SelinuxCategory),
        ("s0:c0.c2,c1", ProblemKind::SelinuxDuplicateCategory),
    ];
    for (range, kind) in cases {
        let body = format!("    context:\n      type: t\n      range: {range}\n");
        let p = expect(&perm("/srv", &body), kind, "permissions[0].context.range");
        assert_eq!(p.line, Some(7), "{range}");
    }
}

#[test]
fn high_below_low_message_is_explicit() {
    let body = "    context:\n      type: t\n      range: s3-s2:c0\n";
    let p = expect(
        &perm("/srv", body),
        ProblemKind::SelinuxRangeOrder,
        "permissions[0].context.range",
    );
    assert!(
        p.message.contains("s3-s2:c0") && p.message.contains("below"),
        "{}",
        p.message
    );
}

#[test]
fn context_without_type_is_an_error() {
    let p = expect(
        &perm("/srv", "    context:\n      name: user_u\n"),
        ProblemKind::MissingField,
        "permissions[0].context.type",
    );
    assert!(p.message.contains("invalid context type"), "{}", p.message);
}

#[test]
fn single_sensitivity_and_category_lists_decode() {
    let p = only(&perm(
        "/srv",
        "    context:\n      type: t\n      range: s5\n",
    ));
    assert_eq!(
        p.context.and_then(|c| c.range),
        Some(SelinuxRange {
            low: 5,
            high: 5,
            categories: Default::default()
        })
    );
    let p = only(&perm(
        "/srv",
        "    context:\n      type: t\n      range: s0:c0.c1,c15,c7.c9\n",
    ));
    assert_eq!(
        p.context
            .and_then(|c| c.range)
            .map(|r| r.categories.into_iter().collect::<Vec<_>>()),
        Some(vec![0, 1, 7, 8, 9, 15])
    );
}

#[test]
fn context_user_is_an_alias_of_name() {
    let p = only(&perm(
        "/srv",
        "    context:\n      user: user_u\n      type: t\n",
    ));
    assert_eq!(p.context.and_then(|c| c.user), Some("user_u".to_owned()));
    expect(
        &perm(
            "/srv",
            "    context:\n      user: a\n      name: b\n      type: t\n",
        ),
        ProblemKind::DuplicateKey,
        "permissions[0].context.user",
    );
    expect(
        &perm("/srv", "    context:\n      type: t\n      role: r\n"),
        ProblemKind::UnknownKey,
        "permissions[0].context.role",
    );
}
