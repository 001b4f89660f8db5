//! `files`: `{source, destination}` mappings. CodeDeploy checks only that both are present; we also require an
//! absolute destination and a source that stays inside the revision.

use super::fields::{self, index, join};
use super::model::FileMapping;
use super::paths::{check_host_path, check_revision_path};
use super::permissions::installed_file;
use super::problem::{ProblemKind, Problems};
use super::revision::{RevisionEntry, RevisionView};
use super::yaml::Node;
use std::collections::BTreeSet;
use std::path::PathBuf;

const KEYS: [&str; 2] = ["source", "destination"];

/// The parsed mappings, and the host paths known to be files they install (for the permission file checks).
pub(crate) struct Files {
    pub mappings: Vec<FileMapping>,
    pub installed_files: BTreeSet<PathBuf>,
}

/// Parse the `files` list.
pub(crate) fn parse_files(
    node: &Node,
    revision: Option<&dyn RevisionView>,
    problems: &mut Problems,
) -> Files {
    let mut out = Files {
        mappings: Vec::new(),
        installed_files: BTreeSet::new(),
    };
    let Some(items) = fields::list(node, "files", "source/destination mappings", problems) else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = index("files", i);
        let Some(map) = fields::map(
            item,
            &path,
            "a mapping with source and destination",
            problems,
        ) else {
            continue;
        };
        map.warn_unknown(&KEYS, &path, "a files entry", problems);
        let source = map
            .get("source")
            .and_then(|n| fields::string(n, &join(&path, "source"), problems));
        let destination = map
            .get("destination")
            .and_then(|n| fields::string(n, &join(&path, "destination"), problems));
        let (source, destination) = match (source, destination) {
            (Some(s), Some(d)) => (s, d),
            (None, Some(d)) => {
                let msg = format!(
                    "entry specifies destination `{d}` but no source; expected a revision path"
                );
                problems.push(
                    ProblemKind::MissingField,
                    &join(&path, "source"),
                    Some(map.pos),
                    msg,
                );
                continue;
            }
            (Some(s), None) => {
                let msg =
                    format!("source `{s}` has no destination; expected an absolute directory");
                problems.push(
                    ProblemKind::MissingField,
                    &join(&path, "destination"),
                    Some(map.pos),
                    msg,
                );
                continue;
            }
            (None, None) => {
                let msg = "entry has neither source nor destination";
                problems.push(
                    ProblemKind::MissingField,
                    &join(&path, "source"),
                    Some(map.pos),
                    msg,
                );
                continue;
            }
        };
        let source_pos = map.raw("source").map_or(map.pos, |n| n.pos);
        let dest_pos = map.raw("destination").map_or(map.pos, |n| n.pos);
        let dest_ok = check_host_path(
            &destination,
            &join(&path, "destination"),
            dest_pos,
            problems,
        );
        // CodeDeploy joins the source onto the revision root, so `/` and `/config` are revision paths too.
        let source = source.trim_start_matches('/').to_owned();
        if !check_revision_path(&source, &join(&path, "source"), source_pos, problems) || !dest_ok {
            continue;
        }
        let destination = PathBuf::from(destination);
        if let Some(revision) = revision.filter(|_| !source.is_empty()) {
            match revision.lookup(&source) {
                RevisionEntry::File { .. } => {
                    out.installed_files
                        .extend(installed_file(&destination, &source));
                }
                RevisionEntry::Directory => {}
                RevisionEntry::Missing => {
                    let msg = format!("source `{source}` does not exist in the revision");
                    problems.push(
                        ProblemKind::LocationNotFound,
                        &join(&path, "source"),
                        Some(source_pos),
                        msg,
                    );
                }
                RevisionEntry::Escapes { target } => {
                    let msg =
                        format!("source `{source}` resolves to `{target}`, outside the revision");
                    problems.push(
                        ProblemKind::LocationEscapes,
                        &join(&path, "source"),
                        Some(source_pos),
                        msg,
                    );
                }
                RevisionEntry::Other => {
                    let msg = format!("source `{source}` is neither a file nor a directory");
                    problems.push(
                        ProblemKind::LocationNotFile,
                        &join(&path, "source"),
                        Some(source_pos),
                        msg,
                    );
                }
            }
        }
        out.mappings.push(FileMapping {
            source,
            destination,
        });
    }
    out
}
