//! Top level: version, os, file_exists_behavior, empty and malformed documents.

use super::support::{HEAD, expect, problems, valid};
use rollcage_runtime::appspec::{FileExistsBehavior, ProblemKind};

#[test]
fn empty_file_is_the_file_was_empty_error() {
    let p = expect("", ProblemKind::Empty, "");
    assert!(p.message.contains("empty"), "{}", p.message);
    assert!(
        p.message.contains("version") && p.message.contains("os"),
        "{}",
        p.message
    );
}

#[test]
fn whitespace_only_file_is_empty() {
    expect("  \n\t\n   \n", ProblemKind::Empty, "");
}

#[test]
fn comment_only_file_is_empty() {
    expect("# nothing here\n", ProblemKind::Empty, "");
}

#[test]
fn missing_version_is_an_invalid_version() {
    let p = expect("os: linux\n", ProblemKind::UnsupportedVersion, "version");
    assert!(p.message.contains("nothing"), "{}", p.message);
}

#[test]
fn other_version_is_an_error_showing_the_value() {
    let p = expect(
        "version: invalid\nos: linux\n",
        ProblemKind::UnsupportedVersion,
        "version",
    );
    assert!(
        p.message.contains("`invalid`") && p.message.contains("0.0"),
        "{}",
        p.message
    );
    assert_eq!((p.line, p.column), (Some(1), Some(10)));
    expect(
        "version: 1.0\nos: linux\n",
        ProblemKind::UnsupportedVersion,
        "version",
    );
    expect(
        "version: '0.1'\nos: linux\n",
        ProblemKind::UnsupportedVersion,
        "version",
    );
}

#[test]
fn quoted_and_unquoted_zero_versions_are_accepted() {
    valid("version: 0.0\nos: linux\n");
    valid("version: \"0.0\"\nos: linux\n");
    valid("version: '0.0'\nos: linux\n");
}

#[test]
fn missing_os_is_unsupported() {
    expect("version: 0.0\n", ProblemKind::UnsupportedOs, "os");
}

#[test]
fn other_os_is_unsupported_on_linux() {
    let p = expect(
        "version: 0.0\nos: windows\n",
        ProblemKind::UnsupportedOs,
        "os",
    );
    assert!(
        p.message.contains("`windows`") && p.message.contains("linux"),
        "{}",
        p.message
    );
    expect(
        "version: 0.0\nos: unsupported\n",
        ProblemKind::UnsupportedOs,
        "os",
    );
    // Case-sensitive, as CodeDeploy.
    expect(
        "version: 0.0\nos: Linux\n",
        ProblemKind::UnsupportedOs,
        "os",
    );
}

#[test]
fn invalid_file_exists_behavior_lists_the_three() {
    let text = format!("{HEAD}file_exists_behavior: invalid\n");
    let p = expect(
        &text,
        ProblemKind::InvalidFileExistsBehavior,
        "file_exists_behavior",
    );
    for v in ["DISALLOW", "OVERWRITE", "RETAIN"] {
        assert!(p.message.contains(v), "{}", p.message);
    }
    // Case-sensitive in the AppSpec.
    expect(
        &format!("{HEAD}file_exists_behavior: overwrite\n"),
        ProblemKind::InvalidFileExistsBehavior,
        "file_exists_behavior",
    );
}

#[test]
fn file_exists_behavior_values() {
    let cases = [
        ("DISALLOW", FileExistsBehavior::Disallow),
        ("OVERWRITE", FileExistsBehavior::Overwrite),
        ("RETAIN", FileExistsBehavior::Retain),
    ];
    for (text, want) in cases {
        let spec = valid(&format!("{HEAD}file_exists_behavior: {text}\n"));
        assert_eq!(spec.file_exists_behavior, Some(want));
    }
    assert_eq!(valid(HEAD).file_exists_behavior, None);
}

#[test]
fn no_hooks_or_files_gives_empty_sections() {
    let spec = valid(HEAD);
    assert!(spec.files.is_empty());
    assert!(spec.hooks.is_empty());
    assert!(spec.permissions.is_empty());
    let spec = valid(&format!("{HEAD}files:\nhooks:\npermissions:\n"));
    assert!(spec.files.is_empty() && spec.hooks.is_empty() && spec.permissions.is_empty());
}

#[test]
fn non_mapping_document_is_a_wrong_type() {
    expect("- version\n- os\n", ProblemKind::WrongType, "");
    expect("just a string\n", ProblemKind::WrongType, "");
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let p = expect(
        "version: 0.0\nos: linux\nhooks: [a, b\nfiles: x\n",
        ProblemKind::Syntax,
        "",
    );
    assert!(p.line.is_some() && p.column.is_some(), "{p:?}");
    let p = expect("version: 0.0\nos: \"linux\n", ProblemKind::Syntax, "");
    assert!(p.line.is_some() && p.column.is_some(), "{p:?}");
}

#[test]
fn unknown_top_level_keys_are_ignored() {
    let spec = valid(&format!("{HEAD}comment: deployed by ci\nextra:\n  - 1\n"));
    assert!(spec.files.is_empty());
}

#[test]
fn duplicate_keys_are_reported_at_the_second_one() {
    let p = expect(
        "version: 0.0\nos: linux\nos: linux\n",
        ProblemKind::DuplicateKey,
        "os",
    );
    assert_eq!((p.line, p.column), (Some(3), Some(1)));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "version: 1\nos: windows\nfile_exists_behavior: nope\nhooks:\n  Bogus:\n    - location: x.sh\n      timeout: 0\n";
    let kinds: Vec<ProblemKind> = problems(text).into_iter().map(|p| p.kind).collect();
    for want in [
        ProblemKind::UnsupportedVersion,
        ProblemKind::UnsupportedOs,
        ProblemKind::InvalidFileExistsBehavior,
        ProblemKind::UnknownEvent,
        ProblemKind::InvalidTimeout,
    ] {
        assert!(kinds.contains(&want), "{want:?} missing from {kinds:?}");
    }
}

#[test]
fn unknown_keys_are_warnings_with_a_suggestion() {
    let text = format!(
        "{HEAD}hook:\n  AfterInstall: []\nfiles:\n  - source: a\n    destination: /a\n    overwrite: true\npermissions:\n  - object: /a\n    onwer: bob\n"
    );
    let checked = rollcage_runtime::appspec::check_in(&text, None);
    assert!(checked.result.is_ok(), "{:?}", checked.result);
    let got: Vec<(ProblemKind, &str, Option<usize>)> = checked
        .warnings
        .iter()
        .map(|w| (w.kind, w.path.as_str(), w.line))
        .collect();
    assert_eq!(
        got,
        [
            (ProblemKind::UnknownKey, "hook", Some(3)),
            (ProblemKind::UnknownKey, "files[0].overwrite", Some(8)),
            (ProblemKind::UnknownKey, "permissions[0].onwer", Some(11)),
        ]
    );
    assert!(
        checked.warnings[0]
            .message
            .contains("did you mean `hooks`?"),
        "{}",
        checked.warnings[0].message
    );
    assert!(
        checked.warnings[2]
            .message
            .contains("did you mean `owner`?"),
        "{}",
        checked.warnings[2].message
    );
}

#[test]
fn anchors_aliases_and_merge_keys_work_as_in_codedeploy() {
    let text = format!(
        "{HEAD}x-defaults: &defaults\n  timeout: 120\n  runas: deploy\nhooks:\n  AfterInstall: &after\n    - location: a.sh\n      <<: *defaults\n  ApplicationStart: *after\n"
    );
    let spec = valid(&text);
    use rollcage_proto::LifecycleEvent::{AfterInstall, ApplicationStart};
    for event in [AfterInstall, ApplicationStart] {
        let hooks = spec.hooks_for(event);
        assert_eq!(hooks.len(), 1);
        assert_eq!(
            (hooks[0].timeout_secs, hooks[0].runas.as_deref()),
            (120, Some("deploy"))
        );
    }
}

#[test]
fn windows_line_endings_and_bom_are_accepted() {
    let spec = valid(
        "\u{feff}version: 0.0\r\nos: linux\r\nhooks:\r\n  AfterInstall:\r\n    - location: a.sh\r\n",
    );
    assert_eq!(
        spec.hooks_for(rollcage_proto::LifecycleEvent::AfterInstall)[0].location,
        "a.sh"
    );
}

#[test]
fn an_ecs_or_lambda_appspec_is_one_error_saying_so() {
    let ecs = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: arn\nHooks:\n  - BeforeInstall: LambdaFn\n";
    let lambda = "version: 0.0\nResources:\n  - myLambdaFunction:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: f\n";
    for text in [ecs, lambda] {
        let checked = rollcage_runtime::appspec::check_in(text, None);
        let Err(all) = checked.result else {
            panic!("accepted {text}")
        };
        assert_eq!(all.len(), 1, "{all:#?}");
        let p = &all[0];
        assert_eq!(
            (p.kind, p.path.as_str(), p.line, p.column),
            (ProblemKind::NotHostAppSpec, "Resources", Some(2), Some(1))
        );
        assert!(p.message.contains("ECS/Lambda AppSpec"), "{}", p.message);
        assert!(p.message.contains("EC2/on-premises"), "{}", p.message);
        assert!(checked.warnings.is_empty(), "{:#?}", checked.warnings);
    }
}
