//! `sandbox:` on hook entries (issue 3): only on wasm hooks, every key and value checked.

use super::support::{HEAD, WASM_HEADER, expect, expect_in, revision, valid, valid_in};
use rollcage_proto::{DirAccess, DirGrant, LifecycleEvent, SandboxSpec};
use rollcage_runtime::appspec::ProblemKind;

fn wasm_hook(sandbox: &str) -> String {
    format!(
        "{HEAD}hooks:\n  ValidateService:\n    - location: hooks/validate.wasm\n      sandbox:\n{sandbox}"
    )
}

const SB: &str = "hooks.ValidateService[0].sandbox";

#[test]
fn full_sandbox_parses() {
    let spec = valid(&wasm_hook(
        "        memory_mb: 64\n        dirs:\n          - host: /var/lib/myapp\n            guest: /data\n            access: read-write\n          - host: /etc/myapp\n        env: [APP_PORT]\n        http: [\"http://127.0.0.1:8080/\"]\n        http_ca: certs/ca.pem\n        args: [\"--strict\", 3]\n",
    ));
    let want = SandboxSpec {
        memory_mb: 64,
        dirs: vec![
            DirGrant {
                host: "/var/lib/myapp".to_owned(),
                guest: Some("/data".to_owned()),
                access: DirAccess::ReadWrite,
                max_mb: None,
            },
            DirGrant {
                host: "/etc/myapp".to_owned(),
                guest: None,
                access: DirAccess::ReadOnly,
                max_mb: None,
            },
        ],
        env: vec!["APP_PORT".to_owned()],
        http: vec!["http://127.0.0.1:8080/".to_owned()],
        http_ca: Some("certs/ca.pem".to_owned()),
        args: vec!["--strict".to_owned(), "3".to_owned()],
    };
    assert_eq!(
        spec.hooks_for(LifecycleEvent::ValidateService)[0].sandbox,
        Some(want)
    );
}

#[test]
fn http_ca_must_be_a_path_inside_the_revision() {
    let p = expect(
        &wasm_hook("        http_ca: /etc/ssl/ca.pem\n"),
        ProblemKind::InvalidValue,
        &format!("{SB}.http_ca"),
    );
    assert!(p.message.contains("inside the revision"), "{}", p.message);
    let p = expect(
        &wasm_hook("        http_ca: certs/../../ca.pem\n"),
        ProblemKind::PathTraversal,
        &format!("{SB}.http_ca"),
    );
    assert!(p.message.contains("no `..`"), "{}", p.message);
}

#[test]
fn empty_sandbox_map_gives_the_defaults() {
    let spec = valid(&format!(
        "{HEAD}hooks:\n  ValidateService:\n    - location: v.wasm\n      sandbox: {{}}\n"
    ));
    assert_eq!(
        spec.hooks_for(LifecycleEvent::ValidateService)[0].sandbox,
        Some(SandboxSpec::default())
    );
}

#[test]
fn sandbox_on_a_shell_hook_is_an_error_by_name() {
    let text = format!(
        "{HEAD}hooks:\n  ValidateService:\n    - location: hooks/validate.sh\n      sandbox:\n        memory_mb: 64\n"
    );
    let p = expect(&text, ProblemKind::SandboxOnShellHook, SB);
    assert_eq!(p.line, Some(6));
}

#[test]
fn wasm_is_detected_by_magic_when_the_revision_is_known() -> std::io::Result<()> {
    // A module without the .wasm suffix is still wasm; a `.wasm` name holding a script is not.
    let rev = revision(&[
        ("hooks/validate", WASM_HEADER),
        ("hooks/fake.wasm", b"#!/bin/sh\nexit 0\n"),
    ])?;
    let ok = format!(
        "{HEAD}hooks:\n  ValidateService:\n    - location: hooks/validate\n      sandbox:\n        memory_mb: 16\n"
    );
    valid_in(&ok, Some(rev.path()));
    let bad = format!(
        "{HEAD}hooks:\n  ValidateService:\n    - location: hooks/fake.wasm\n      sandbox:\n        memory_mb: 16\n"
    );
    expect_in(&bad, Some(rev.path()), ProblemKind::SandboxOnShellHook, SB);
    Ok(())
}

#[test]
fn unknown_sandbox_key_suggests_the_closest() {
    let p = expect(
        &wasm_hook("        memory: 64\n"),
        ProblemKind::UnknownKey,
        &format!("{SB}.memory"),
    );
    assert!(
        p.message.contains("did you mean `memory_mb`?"),
        "{}",
        p.message
    );
    expect(
        &wasm_hook("        dirs:\n          - host: /a\n            mode: rw\n"),
        ProblemKind::UnknownKey,
        &format!("{SB}.dirs[0].mode"),
    );
}

#[test]
fn memory_must_be_a_positive_integer_up_to_the_cap() {
    for bad in ["0", "-1", "5000", "64.5", "\"64\"", "lots"] {
        expect(
            &wasm_hook(&format!("        memory_mb: {bad}\n")),
            ProblemKind::InvalidMemory,
            &format!("{SB}.memory_mb"),
        );
    }
    valid(&wasm_hook("        memory_mb: 4096\n"));
}

#[test]
fn dir_host_must_be_absolute_and_present() {
    expect(
        &wasm_hook("        dirs:\n          - host: var/lib\n"),
        ProblemKind::NotAbsolute,
        &format!("{SB}.dirs[0].host"),
    );
    expect(
        &wasm_hook("        dirs:\n          - guest: /data\n"),
        ProblemKind::MissingField,
        &format!("{SB}.dirs[0]"),
    );
}

#[test]
fn dir_guest_must_be_absolute_without_dotdot() {
    expect(
        &wasm_hook("        dirs:\n          - host: /a\n            guest: data\n"),
        ProblemKind::NotAbsolute,
        &format!("{SB}.dirs[0].guest"),
    );
    expect(
        &wasm_hook("        dirs:\n          - host: /a\n            guest: /data/../etc\n"),
        ProblemKind::PathTraversal,
        &format!("{SB}.dirs[0].guest"),
    );
    expect(
        &wasm_hook("        dirs:\n          - host: /a/../etc\n"),
        ProblemKind::PathTraversal,
        &format!("{SB}.dirs[0].host"),
    );
}

#[test]
fn dir_access_is_read_only_or_read_write() {
    let p = expect(
        &wasm_hook("        dirs:\n          - host: /a\n            access: rw\n"),
        ProblemKind::InvalidValue,
        &format!("{SB}.dirs[0].access"),
    );
    assert!(
        p.message.contains("read-only") && p.message.contains("read-write"),
        "{}",
        p.message
    );
}

#[test]
fn env_names_must_be_identifiers() {
    expect(
        &wasm_hook("        env: [APP_PORT, \"1BAD\", \"A=B\"]\n"),
        ProblemKind::InvalidEnvName,
        &format!("{SB}.env[1]"),
    );
    expect(
        &wasm_hook("        env: [APP_PORT, \"A=B\"]\n"),
        ProblemKind::InvalidEnvName,
        &format!("{SB}.env[1]"),
    );
}

#[test]
fn loader_variables_cannot_be_granted() {
    for name in ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH"] {
        expect(
            &wasm_hook(&format!("        env: [APP_PORT, {name}]\n")),
            ProblemKind::InvalidEnvName,
            &format!("{SB}.env[1]"),
        );
    }
}

#[test]
fn http_grants_must_be_http_urls() {
    expect(
        &wasm_hook("        http: [\"ftp://example.com/\"]\n"),
        ProblemKind::InvalidUrl,
        &format!("{SB}.http[0]"),
    );
    expect(
        &wasm_hook("        http: [\"not a url\"]\n"),
        ProblemKind::InvalidUrl,
        &format!("{SB}.http[0]"),
    );
    valid(&wasm_hook(
        "        http: [\"https://example.com/api/\", \"http://[::1]:8080/\"]\n",
    ));
}

#[test]
fn args_must_be_strings() {
    expect(
        &wasm_hook("        args: [[1, 2]]\n"),
        ProblemKind::WrongType,
        &format!("{SB}.args[0]"),
    );
}

#[test]
fn sandbox_must_be_a_mapping() {
    expect(
        &format!(
            "{HEAD}hooks:\n  ValidateService:\n    - location: v.wasm\n      sandbox: [memory_mb]\n"
        ),
        ProblemKind::WrongType,
        SB,
    );
}

#[test]
fn max_mb_is_a_positive_whole_number_of_mib_on_a_read_write_grant() {
    let spec = valid(&wasm_hook(
        "        dirs:\n          - host: /var/lib/myapp\n            access: read-write\n            max_mb: 256\n",
    ));
    let grant = &spec.hooks_for(LifecycleEvent::ValidateService)[0]
        .sandbox
        .as_ref()
        .map(|s| s.dirs.clone())
        .unwrap_or_default()[0];
    assert_eq!(grant.max_mb, Some(256));
    assert_eq!(grant.quota_bytes(), Some(256 << 20));
    for bad in ["0", "-1", "1.5", "\"64\"", "lots", "1048577", "[1]"] {
        let p = expect(
            &wasm_hook(&format!(
                "        dirs:\n          - host: /a\n            access: read-write\n            max_mb: {bad}\n"
            )),
            ProblemKind::InvalidQuota,
            &format!("{SB}.dirs[0].max_mb"),
        );
        assert_eq!((p.line, p.column), (Some(10), Some(21)), "{bad}: {p:?}");
        assert!(
            p.message
                .contains("expected a whole number of MiB from 1 to 1048576"),
            "{}",
            p.message
        );
    }
}

#[test]
fn max_mb_on_a_read_only_grant_is_an_error() {
    for access in ["", "            access: read-only\n"] {
        let p = expect(
            &wasm_hook(&format!(
                "        dirs:\n          - host: /a\n{access}            max_mb: 8\n"
            )),
            ProblemKind::InvalidQuota,
            &format!("{SB}.dirs[0].max_mb"),
        );
        assert!(p.message.contains("read-only grant"), "{}", p.message);
        assert!(p.line.is_some() && p.column.is_some(), "{p:?}");
    }
}

#[test]
fn a_read_write_grant_without_max_mb_gets_the_default_quota() {
    let spec = valid(&wasm_hook(
        "        dirs:\n          - host: /a\n            access: read-write\n",
    ));
    let dirs = spec.hooks_for(LifecycleEvent::ValidateService)[0]
        .sandbox
        .as_ref()
        .map(|s| s.dirs.clone())
        .unwrap_or_default();
    assert_eq!(dirs[0].max_mb, None);
    assert_eq!(
        dirs[0].quota_bytes(),
        Some(rollcage_proto::sandbox::DEFAULT_GRANT_MAX_MB << 20)
    );
}
