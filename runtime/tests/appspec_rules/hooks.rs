//! `hooks`: CodeDeploy's hook rules and rollcage's stricter ones.

use super::support::{HEAD, expect, expect_in, revision, valid, valid_in};
use rollcage_proto::LifecycleEvent;
use rollcage_runtime::appspec::{HookSpec, ProblemKind};

fn hook(location: &str, timeout_secs: u64, runas: Option<&str>) -> HookSpec {
    HookSpec {
        location: location.to_owned(),
        timeout_secs,
        runas: runas.map(str::to_owned),
        sudo: false,
        sandbox: None,
    }
}

#[test]
fn single_complete_hook_keeps_location_runas_timeout() {
    let spec = valid(&format!(
        "{HEAD}hooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n      runas: deploy\n      timeout: 30\n"
    ));
    assert_eq!(
        spec.hooks_for(LifecycleEvent::ApplicationStart),
        [hook("scripts/start.sh", 30, Some("deploy"))]
    );
}

#[test]
fn sudo_true_is_preserved() {
    let spec = valid(&format!(
        "{HEAD}hooks:\n  AfterInstall:\n    - location: a.sh\n      sudo: true\n"
    ));
    assert!(spec.hooks_for(LifecycleEvent::AfterInstall)[0].sudo);
    expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: a.sh\n      sudo: maybe\n"),
        ProblemKind::InvalidValue,
        "hooks.AfterInstall[0].sudo",
    );
}

#[test]
fn two_scripts_are_kept_in_order() {
    let spec = valid(&format!(
        "{HEAD}hooks:\n  BeforeInstall:\n    - location: one.sh\n    - location: two.sh\n"
    ));
    let locations: Vec<_> = spec
        .hooks_for(LifecycleEvent::BeforeInstall)
        .iter()
        .map(|h| h.location.as_str())
        .collect();
    assert_eq!(locations, ["one.sh", "two.sh"]);
}

#[test]
fn partial_runas_leaves_the_other_script_without_runas() {
    let spec = valid(&format!(
        "{HEAD}hooks:\n  BeforeInstall:\n    - location: one.sh\n      runas: bob\n    - location: two.sh\n"
    ));
    assert_eq!(
        spec.hooks_for(LifecycleEvent::BeforeInstall),
        [
            hook("one.sh", 3600, Some("bob")),
            hook("two.sh", 3600, None)
        ]
    );
}

#[test]
fn partial_timeout_gives_the_other_script_the_default_3600() {
    let spec = valid(&format!(
        "{HEAD}hooks:\n  BeforeInstall:\n    - location: one.sh\n      timeout: 10\n    - location: two.sh\n"
    ));
    assert_eq!(
        spec.hooks_for(LifecycleEvent::BeforeInstall),
        [hook("one.sh", 10, None), hook("two.sh", 3600, None)]
    );
}

#[test]
fn null_valued_event_is_ignored() {
    let spec = valid(&format!(
        "{HEAD}hooks:\n  ApplicationStop:\n  ValidateService:\n    - location: v.sh\n"
    ));
    assert!(!spec.hooks.contains_key(&LifecycleEvent::ApplicationStop));
    assert_eq!(spec.hooks.len(), 1);
}

#[test]
fn script_without_location_is_an_error() {
    let p = expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - timeout: 10\n"),
        ProblemKind::MissingField,
        "hooks.AfterInstall[0].location",
    );
    assert_eq!(p.line, Some(5));
    expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: ''\n"),
        ProblemKind::MissingField,
        "hooks.AfterInstall[0].location",
    );
}

#[test]
fn non_numeric_timeout_is_an_error() {
    let p = expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: foo\n"),
        ProblemKind::InvalidTimeout,
        "hooks.AfterInstall[0].timeout",
    );
    assert_eq!((p.line, p.column), (Some(6), Some(16)));
    assert!(
        p.message.contains("`foo`") && p.message.contains("positive"),
        "{}",
        p.message
    );
}

#[test]
fn ruby_to_i_leniency_is_not_copied() {
    for bad in [
        "\"30s\"",
        "30s",
        "30.7",
        "0",
        "-1",
        "''",
        "[1]",
        "604801",
        "99999999999999999999999",
    ] {
        expect(
            &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: {bad}\n"),
            ProblemKind::InvalidTimeout,
            "hooks.AfterInstall[0].timeout",
        );
    }
    // Quoted digits are still a plain number of seconds.
    let spec = valid(&format!(
        "{HEAD}hooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: \"45\"\n"
    ));
    assert_eq!(
        spec.hooks_for(LifecycleEvent::AfterInstall)[0].timeout_secs,
        45
    );
}

#[test]
fn unknown_event_suggests_the_closest() {
    let p = expect(
        &format!("{HEAD}hooks:\n  ValidateServices:\n    - location: v.sh\n"),
        ProblemKind::UnknownEvent,
        "hooks.ValidateServices",
    );
    assert!(
        p.message.contains("did you mean `ValidateService`?"),
        "{}",
        p.message
    );
    assert_eq!((p.line, p.column), (Some(4), Some(3)));
    let p = expect(
        &format!("{HEAD}hooks:\n  afterinstall:\n    - location: v.sh\n"),
        ProblemKind::UnknownEvent,
        "hooks.afterinstall",
    );
    assert!(p.message.contains("`AfterInstall`"), "{}", p.message);
}

#[test]
fn reserved_events_cannot_have_hooks() {
    for event in [
        "DownloadBundle",
        "Install",
        "BlockTraffic",
        "AllowTraffic",
        "SwitchTraffic",
    ] {
        expect(
            &format!("{HEAD}hooks:\n  {event}:\n    - location: x.sh\n"),
            ProblemKind::ReservedEvent,
            &format!("hooks.{event}"),
        );
    }
}

#[test]
fn every_scriptable_event_is_accepted() {
    let mut text = format!("{HEAD}hooks:\n");
    for e in LifecycleEvent::SCRIPTABLE {
        text.push_str(&format!(
            "  {}:\n    - location: {}.sh\n",
            e.name(),
            e.name()
        ));
    }
    assert_eq!(valid(&text).hooks.len(), LifecycleEvent::SCRIPTABLE.len());
}

#[test]
fn unknown_key_in_a_hook_entry_suggests_the_closest() {
    let p = expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: a.sh\n      timout: 10\n"),
        ProblemKind::UnknownKey,
        "hooks.AfterInstall[0].timout",
    );
    assert!(
        p.message.contains("did you mean `timeout`?"),
        "{}",
        p.message
    );
}

#[test]
fn hook_list_must_be_a_list_of_mappings() {
    expect(
        &format!("{HEAD}hooks:\n  AfterInstall: a.sh\n"),
        ProblemKind::WrongType,
        "hooks.AfterInstall",
    );
    expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - a.sh\n"),
        ProblemKind::WrongType,
        "hooks.AfterInstall[0]",
    );
}

#[test]
fn absolute_location_is_taken_relative_to_the_revision_with_a_warning() -> std::io::Result<()> {
    // CodeDeploy joins the location onto the revision, so `/scripts/start.sh` is `scripts/start.sh` there.
    let rev = revision(&[("scripts/start.sh", b"#!/bin/sh\n")])?;
    let text = format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: /scripts/start.sh\n");
    let checked = rollcage_runtime::appspec::check_in(
        &text,
        Some(&rollcage_runtime::appspec::DirRevision::new(rev.path())),
    );
    let spec = match checked.result {
        Ok(spec) => spec,
        Err(problems) => panic!("rejected: {problems:?}"),
    };
    assert_eq!(
        spec.hooks_for(LifecycleEvent::ApplicationStart),
        [hook("scripts/start.sh", 3600, None)]
    );
    let got: Vec<_> = checked
        .warnings
        .iter()
        .map(|w| (w.kind, w.path.as_str(), w.line, w.column))
        .collect();
    assert_eq!(
        got,
        [(
            ProblemKind::NotRelative,
            "hooks.ApplicationStart[0].location",
            Some(5),
            Some(17)
        )]
    );
    // Still confined: the file must be in the revision, `..` is refused, a symlink out is refused.
    expect_in(
        &format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: /usr/bin/env\n"),
        Some(rev.path()),
        ProblemKind::LocationNotFound,
        "hooks.ApplicationStart[0].location",
    );
    expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: /scripts/../../etc/x.sh\n"),
        ProblemKind::PathTraversal,
        "hooks.AfterInstall[0].location",
    );
    std::os::unix::fs::symlink("/bin/sh", rev.path().join("scripts/evil.sh"))?;
    expect_in(
        &format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: /scripts/evil.sh\n"),
        Some(rev.path()),
        ProblemKind::LocationEscapes,
        "hooks.ApplicationStart[0].location",
    );
    // `/` alone is the revision root, not a script.
    expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: /\n"),
        ProblemKind::LocationNotFile,
        "hooks.AfterInstall[0].location",
    );
    Ok(())
}

#[test]
fn dotdot_location_is_refused() {
    expect(
        &format!("{HEAD}hooks:\n  AfterInstall:\n    - location: scripts/../../etc/x.sh\n"),
        ProblemKind::PathTraversal,
        "hooks.AfterInstall[0].location",
    );
}

#[test]
fn location_must_exist_in_the_revision() -> std::io::Result<()> {
    let rev = revision(&[("scripts/start.sh", b"#!/bin/sh\n")])?;
    let ok = format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n");
    valid_in(&ok, Some(rev.path()));
    let missing = format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: scripts/nope.sh\n");
    expect_in(
        &missing,
        Some(rev.path()),
        ProblemKind::LocationNotFound,
        "hooks.ApplicationStart[0].location",
    );
    Ok(())
}

#[test]
fn location_must_be_a_regular_file() -> std::io::Result<()> {
    let rev = revision(&[("scripts/start.sh", b"#!/bin/sh\n")])?;
    let text = format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: scripts\n");
    expect_in(
        &text,
        Some(rev.path()),
        ProblemKind::LocationNotFile,
        "hooks.ApplicationStart[0].location",
    );
    Ok(())
}

#[test]
fn location_may_not_symlink_out_of_the_revision() -> std::io::Result<()> {
    let rev = revision(&[("scripts/start.sh", b"#!/bin/sh\n")])?;
    std::os::unix::fs::symlink("/bin/sh", rev.path().join("scripts/evil.sh"))?;
    std::os::unix::fs::symlink("../..", rev.path().join("scripts/up"))?;
    std::os::unix::fs::symlink("start.sh", rev.path().join("scripts/inside.sh"))?;
    let text = format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: scripts/evil.sh\n");
    expect_in(
        &text,
        Some(rev.path()),
        ProblemKind::LocationEscapes,
        "hooks.ApplicationStart[0].location",
    );
    let text =
        format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: scripts/up/etc/passwd\n");
    expect_in(
        &text,
        Some(rev.path()),
        ProblemKind::LocationEscapes,
        "hooks.ApplicationStart[0].location",
    );
    // A symlink that stays inside is fine.
    valid_in(
        &format!("{HEAD}hooks:\n  ApplicationStart:\n    - location: scripts/inside.sh\n"),
        Some(rev.path()),
    );
    Ok(())
}
