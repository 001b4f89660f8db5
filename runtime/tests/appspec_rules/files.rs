//! `files`: CodeDeploy's rules (both fields present) and ours (absolute destination, confined source).

use super::support::{HEAD, expect, expect_in, revision, valid, valid_in};
use rollcage_runtime::appspec::{FileMapping, ProblemKind};
use std::path::PathBuf;

fn mapping(source: &str, destination: &str) -> FileMapping {
    FileMapping {
        source: source.to_owned(),
        destination: PathBuf::from(destination),
    }
}

#[test]
fn single_mapping() {
    let spec = valid(&format!(
        "{HEAD}files:\n  - source: app\n    destination: /srv/app\n"
    ));
    assert_eq!(spec.files, [mapping("app", "/srv/app")]);
}

#[test]
fn multiple_mappings_keep_their_order() {
    let spec = valid(&format!(
        "{HEAD}files:\n  - source: b\n    destination: /srv/b\n  - source: a\n    destination: /srv/a\n"
    ));
    assert_eq!(spec.files, [mapping("b", "/srv/b"), mapping("a", "/srv/a")]);
}

#[test]
fn whole_revision_source_is_normalised_to_empty() {
    let spec = valid(&format!(
        "{HEAD}files:\n  - source: /\n    destination: /srv/app\n  - source: /config/app.conf\n    destination: /etc/app\n"
    ));
    assert_eq!(
        spec.files,
        [
            mapping("", "/srv/app"),
            mapping("config/app.conf", "/etc/app")
        ]
    );
}

#[test]
fn missing_destination_names_the_source() {
    let p = expect(
        &format!("{HEAD}files:\n  - source: app\n"),
        ProblemKind::MissingField,
        "files[0].destination",
    );
    assert!(p.message.contains("`app`"), "{}", p.message);
}

#[test]
fn missing_source_names_the_destination() {
    let p = expect(
        &format!("{HEAD}files:\n  - destination: /srv/app\n"),
        ProblemKind::MissingField,
        "files[0].source",
    );
    assert!(p.message.contains("`/srv/app`"), "{}", p.message);
}

#[test]
fn destination_must_be_absolute() {
    let p = expect(
        &format!("{HEAD}files:\n  - source: app\n    destination: srv/app\n"),
        ProblemKind::NotAbsolute,
        "files[0].destination",
    );
    assert_eq!((p.line, p.column), (Some(5), Some(18)));
}

#[test]
fn destination_must_not_contain_dotdot() {
    expect(
        &format!("{HEAD}files:\n  - source: app\n    destination: /srv/../etc\n"),
        ProblemKind::PathTraversal,
        "files[0].destination",
    );
}

#[test]
fn source_must_not_contain_dotdot() {
    expect(
        &format!("{HEAD}files:\n  - source: ../etc\n    destination: /srv\n"),
        ProblemKind::PathTraversal,
        "files[0].source",
    );
}

#[test]
fn files_must_be_a_list_of_mappings() {
    expect(
        &format!("{HEAD}files: app\n"),
        ProblemKind::WrongType,
        "files",
    );
    expect(
        &format!("{HEAD}files:\n  - app\n"),
        ProblemKind::WrongType,
        "files[0]",
    );
}

#[test]
fn with_a_revision_the_source_must_exist() -> std::io::Result<()> {
    let rev = revision(&[("app/index.html", b"hi")])?;
    valid_in(
        &format!("{HEAD}files:\n  - source: app\n    destination: /srv\n"),
        Some(rev.path()),
    );
    expect_in(
        &format!("{HEAD}files:\n  - source: nope\n    destination: /srv\n"),
        Some(rev.path()),
        ProblemKind::LocationNotFound,
        "files[0].source",
    );
    Ok(())
}
