//! A full valid AppSpec using every feature parses into exactly the expected model, against a real revision
//! directory and from the fixture file.

use super::support::{WASM_HEADER, revision, valid_in};
use rollcage_proto::{DirAccess, DirGrant, LifecycleEvent, SandboxSpec};
use rollcage_runtime::appspec::{
    AclEntry, AclTag, AppSpec, FileExistsBehavior, FileMapping, HookSpec, Mode, ObjectTypes,
    Permission, SelinuxContext, SelinuxRange, load_from_revision,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

const FIXTURE: &str = include_str!("../fixtures/appspec/full.yml");

fn revision_for_fixture() -> std::io::Result<tempfile::TempDir> {
    let dir = revision(&[
        ("app/index.html", b"<h1>hi</h1>"),
        ("config/app.conf", b"port=8080"),
        ("scripts/stop.sh", b"#!/bin/sh\n"),
        ("scripts/install_deps.sh", b"#!/bin/sh\n"),
        ("scripts/migrate.sh", b"#!/bin/sh\n"),
        ("scripts/start.sh", b"#!/bin/sh\n"),
        ("hooks/validate.wasm", WASM_HEADER),
    ])?;
    std::fs::write(dir.path().join("appspec.yml"), FIXTURE)?;
    Ok(dir)
}

fn shell(location: &str, timeout_secs: u64, runas: Option<&str>, sudo: bool) -> HookSpec {
    HookSpec {
        location: location.to_owned(),
        timeout_secs,
        runas: runas.map(str::to_owned),
        sudo,
        sandbox: None,
    }
}

fn expected() -> AppSpec {
    let mut hooks = BTreeMap::new();
    hooks.insert(
        LifecycleEvent::ApplicationStop,
        vec![shell("scripts/stop.sh", 60, None, false)],
    );
    hooks.insert(
        LifecycleEvent::BeforeInstall,
        vec![
            shell("scripts/install_deps.sh", 300, None, true),
            shell("scripts/migrate.sh", 3600, Some("deploy"), false),
        ],
    );
    hooks.insert(
        LifecycleEvent::ApplicationStart,
        vec![shell("scripts/start.sh", 3600, Some("www-data"), false)],
    );
    hooks.insert(
        LifecycleEvent::ValidateService,
        vec![HookSpec {
            location: "hooks/validate.wasm".to_owned(),
            timeout_secs: 30,
            runas: None,
            sudo: false,
            sandbox: Some(SandboxSpec {
                memory_mb: 64,
                dirs: vec![DirGrant {
                    host: "/var/lib/myapp".to_owned(),
                    guest: Some("/data".to_owned()),
                    access: DirAccess::ReadWrite,
                    max_mb: None,
                }],
                env: vec!["APP_PORT".to_owned()],
                http: vec!["http://127.0.0.1:8080/".to_owned()],
                http_ca: Some("certs/internal-ca.pem".to_owned()),
                args: vec!["--strict".to_owned()],
            }),
        }],
    );
    AppSpec {
        files: vec![
            FileMapping {
                source: "app".to_owned(),
                destination: PathBuf::from("/srv/www"),
            },
            FileMapping {
                source: "config/app.conf".to_owned(),
                destination: PathBuf::from("/etc/myapp"),
            },
        ],
        file_exists_behavior: Some(FileExistsBehavior::Overwrite),
        permissions: vec![
            Permission {
                object: PathBuf::from("/srv/www"),
                pattern: "*.html".to_owned(),
                except: vec!["private*".to_owned()],
                types: ObjectTypes {
                    file: true,
                    directory: false,
                },
                owner: Some("www-data".to_owned()),
                group: Some("www-data".to_owned()),
                mode: Some(Mode(0o644)),
                acls: Some(vec![
                    AclEntry {
                        default: false,
                        tag: AclTag::User,
                        name: "deploy".to_owned(),
                        perms: 6,
                    },
                    AclEntry {
                        default: true,
                        tag: AclTag::Group,
                        name: "ops".to_owned(),
                        perms: 5,
                    },
                ]),
                context: Some(SelinuxContext {
                    user: Some("system_u".to_owned()),
                    type_: "httpd_sys_content_t".to_owned(),
                    range: Some(SelinuxRange {
                        low: 0,
                        high: 0,
                        categories: [0, 1, 2, 5].into(),
                    }),
                }),
            },
            Permission {
                object: PathBuf::from("/etc/myapp/app.conf"),
                pattern: "**".to_owned(),
                except: vec![],
                types: ObjectTypes::default(),
                owner: Some("root".to_owned()),
                group: None,
                mode: Some(Mode(0o640)),
                acls: None,
                context: None,
            },
        ],
        hooks,
    }
}

#[test]
fn full_appspec_round_trips_against_its_revision() -> std::io::Result<()> {
    let rev = revision_for_fixture()?;
    assert_eq!(valid_in(FIXTURE, Some(rev.path())), expected());
    match load_from_revision(rev.path()) {
        Ok(spec) => assert_eq!(spec, expected()),
        Err(e) => panic!("{e}"),
    }
    Ok(())
}

#[test]
fn appspec_yaml_is_the_fallback_name() -> std::io::Result<()> {
    let rev = revision_for_fixture()?;
    std::fs::rename(
        rev.path().join("appspec.yml"),
        rev.path().join("appspec.yaml"),
    )?;
    assert!(load_from_revision(rev.path()).is_ok_and(|s| s == expected()));
    std::fs::remove_file(rev.path().join("appspec.yaml"))?;
    assert!(matches!(
        load_from_revision(rev.path()),
        Err(rollcage_runtime::appspec::AppSpecError::NotFound(_))
    ));
    Ok(())
}

#[test]
fn invalid_revision_reports_every_problem_with_the_file() -> std::io::Result<()> {
    let rev = revision_for_fixture()?;
    std::fs::remove_file(rev.path().join("scripts/start.sh"))?;
    match load_from_revision(rev.path()) {
        Err(rollcage_runtime::appspec::AppSpecError::Invalid { file, problems }) => {
            assert_eq!(file, rev.path().join("appspec.yml"));
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "hooks.ApplicationStart[0].location");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    Ok(())
}
