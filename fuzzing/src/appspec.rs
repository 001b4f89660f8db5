//! Target `appspec`: the AppSpec loader (`rollcage_runtime::appspec::check_in`) on arbitrary text, without a
//! revision and against a made-up one.
//!
//! Asserts: no panic; the same text gives the same answer twice; a refusal lists at least one problem, each with a
//! message; an accepted AppSpec keeps every path confined (no `..` component, host paths absolute) and every
//! timeout positive.

use crate::Verdict;
use rollcage_runtime::appspec::{AppSpec, Checked, RevisionEntry, RevisionView, check_in};
use std::path::{Component, Path};

/// A revision whose content is decided by each path's name, so that every answer the validator can get (missing,
/// escaping, directory, shell script, wasm module, other) is reachable from the text alone.
struct MadeUpRevision;

impl RevisionView for MadeUpRevision {
    fn lookup(&self, relative: &str) -> RevisionEntry {
        if relative.contains("missing") {
            RevisionEntry::Missing
        } else if relative.contains("escape") {
            RevisionEntry::Escapes {
                target: "/etc".to_owned(),
            }
        } else if relative.ends_with('/') || relative.contains("dir") {
            RevisionEntry::Directory
        } else if relative.contains("fifo") {
            RevisionEntry::Other
        } else {
            RevisionEntry::File {
                wasm: relative.ends_with(".wasm"),
            }
        }
    }
}

/// Run `data` (as the UTF-8 text an `appspec.yml` must be) through the loader.
pub fn check(data: &[u8]) -> Verdict {
    // The agent reads the file with `read_to_string`: anything else is refused before the loader sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return Verdict::Refused;
    };
    let bare = check_in(text, None);
    let in_revision = check_in(text, Some(&MadeUpRevision));
    assert_eq!(bare, check_in(text, None), "the same text checked twice");
    for checked in [&bare, &in_revision] {
        holds(checked);
    }
    Verdict::any([bare.result.is_ok(), in_revision.result.is_ok()])
}

fn holds(checked: &Checked) {
    for w in &checked.warnings {
        assert!(!w.message.is_empty(), "a warning without a message: {w:?}");
    }
    match &checked.result {
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            for p in problems {
                assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
            }
        }
        Ok(spec) => accepted(spec),
    }
}

fn accepted(spec: &AppSpec) {
    for f in &spec.files {
        assert!(!has_dotdot(Path::new(&f.source)), "files source {f:?}");
        assert!(
            f.destination.is_absolute() && !has_dotdot(&f.destination),
            "files destination {f:?}"
        );
    }
    for p in &spec.permissions {
        assert!(
            p.object.is_absolute() && !has_dotdot(&p.object),
            "permissions object {p:?}"
        );
    }
    for (event, hooks) in &spec.hooks {
        for h in hooks {
            assert!(
                !has_dotdot(Path::new(&h.location)),
                "{event:?} hook location {:?}",
                h.location
            );
            assert!(h.timeout_secs > 0, "{event:?} hook timeout {h:?}");
        }
    }
}

fn has_dotdot(path: &Path) -> bool {
    path.components().any(|c| c == Component::ParentDir)
}
