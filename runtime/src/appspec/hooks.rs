//! `hooks`: event → ordered list of `{location, timeout, runas, sudo, sandbox}`.
//!
//! Stricter than CodeDeploy where it protects users: unknown events are errors with a suggestion, reserved events
//! take no hooks, timeouts must be positive whole numbers (no Ruby `to_i` leniency: `"30s"` is not 30), and a
//! location must stay inside the revision (a leading `/` still names a revision path, as in CodeDeploy: warned).

use super::fields::{self, index, join};
use super::model::{DEFAULT_HOOK_TIMEOUT_SECS, HookSpec, MAX_HOOK_TIMEOUT_SECS};
use super::paths::check_revision_path;
use super::problem::{ProblemKind, Problems};
use super::revision::{RevisionEntry, RevisionView};
use super::sandbox::parse_sandbox;
use super::suggest;
use super::yaml::Node;
use rollcage_proto::LifecycleEvent;
use std::collections::BTreeMap;

const KEYS: [&str; 5] = ["location", "timeout", "runas", "sudo", "sandbox"];

/// Parse the `hooks` mapping.
pub(crate) fn parse_hooks(
    node: &Node,
    revision: Option<&dyn RevisionView>,
    problems: &mut Problems,
) -> BTreeMap<LifecycleEvent, Vec<HookSpec>> {
    let mut hooks = BTreeMap::new();
    let Some(map) = fields::map(
        node,
        "hooks",
        "a mapping of lifecycle events to hook lists",
        problems,
    ) else {
        return hooks;
    };
    for (name, key, value) in &map.entries {
        let path = join("hooks", name);
        let event = match name.parse::<LifecycleEvent>() {
            Ok(e) if e.is_reserved() => {
                problems.push(
                    ProblemKind::ReservedEvent,
                    &path,
                    Some(key.pos),
                    format!("`{name}` is performed by the agent itself and cannot have hooks"),
                );
                None
            }
            Ok(e) => Some(e),
            Err(_) => {
                let names = LifecycleEvent::SCRIPTABLE.iter().map(|e| e.name());
                let hint = suggest::did_you_mean(name, names).unwrap_or_else(|| {
                    let all: Vec<_> = LifecycleEvent::SCRIPTABLE
                        .iter()
                        .map(|e| e.name())
                        .collect();
                    format!("; expected one of {}", all.join(", "))
                });
                problems.push(
                    ProblemKind::UnknownEvent,
                    &path,
                    Some(key.pos),
                    format!("unknown lifecycle event `{name}`{hint}"),
                );
                None
            }
        };
        // A null event is ignored, as CodeDeploy does; entries of a bad event are still checked.
        if value.is_null() {
            continue;
        }
        let Some(items) = fields::list(value, &path, "hook entries", problems) else {
            continue;
        };
        let specs: Vec<HookSpec> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| parse_hook(item, &index(&path, i), revision, problems))
            .collect();
        if let Some(event) = event {
            hooks.insert(event, specs);
        }
    }
    hooks
}

fn parse_hook(
    node: &Node,
    path: &str,
    revision: Option<&dyn RevisionView>,
    problems: &mut Problems,
) -> Option<HookSpec> {
    let map = fields::map(node, path, "a hook mapping with `location`", problems)?;
    map.reject_unknown(&KEYS, path, problems);
    let before = problems.len();

    let location_node = map.get("location");
    let location = location_node
        .and_then(|n| fields::string(n, &join(path, "location"), problems))
        .filter(|s| !s.is_empty());
    // CodeDeploy's agent joins the location onto the revision (`File.join(archive, location)`), so a leading `/`
    // names a revision path, not a host one (an AWS sample relies on it): accepted with a warning, stored without
    // it, and confined like any other revision path.
    let location = match (location, location_node) {
        (Some(loc), Some(n)) if loc.starts_with('/') => {
            let relative = loc.trim_start_matches('/').to_owned();
            problems.warn(
                ProblemKind::NotRelative,
                &join(path, "location"),
                Some(n.pos),
                format!(
                    "`{loc}` is taken relative to the revision root, as CodeDeploy does (`{relative}`); \
                     write it without the leading `/`"
                ),
            );
            Some(relative)
        }
        (location, _) => location,
    };
    let is_wasm = match (&location, location_node) {
        (Some(loc), Some(n)) if loc.is_empty() => {
            problems.push(
                ProblemKind::LocationNotFile,
                &join(path, "location"),
                Some(n.pos),
                "`/` is the revision root, not a file; expected the path of a script or wasm module in the revision",
            );
            None
        }
        (Some(loc), Some(n)) => check_location(loc, &join(path, "location"), n, revision, problems),
        // Not a string: already reported as a wrong type.
        (None, Some(n)) if n.scalar().is_none() => None,
        _ => {
            problems.push(
                ProblemKind::MissingField,
                &join(path, "location"),
                Some(map.pos),
                "hook has no location; expected the path of a script or wasm module in the revision",
            );
            None
        }
    };

    let timeout_secs = match map.get("timeout") {
        None => DEFAULT_HOOK_TIMEOUT_SECS,
        Some(n) => {
            timeout(n, &join(path, "timeout"), problems).unwrap_or(DEFAULT_HOOK_TIMEOUT_SECS)
        }
    };
    let runas = map
        .get("runas")
        .and_then(|n| fields::string(n, &join(path, "runas"), problems))
        .filter(|s| !s.is_empty());
    let sudo = map
        .get("sudo")
        .and_then(|n| fields::boolean(n, &join(path, "sudo"), problems))
        .unwrap_or(false);
    let sandbox = map.get("sandbox").and_then(|n| {
        let sandbox_path = join(path, "sandbox");
        let spec = parse_sandbox(n, &sandbox_path, problems)?;
        if is_wasm == Some(false) {
            problems.push(
                ProblemKind::SandboxOnShellHook,
                &sandbox_path,
                map.key_pos("sandbox"),
                "`sandbox` applies only to WebAssembly hooks; this location is a shell script (no `\\0asm` header / `.wasm` name)",
            );
        }
        Some(spec)
    });
    let location = location?;
    (problems.len() == before).then_some(HookSpec {
        location,
        timeout_secs,
        runas,
        sudo,
        sandbox,
    })
}

/// Check a location; returns whether it is a wasm module (`None` when that cannot be told).
fn check_location(
    location: &str,
    path: &str,
    node: &Node,
    revision: Option<&dyn RevisionView>,
    problems: &mut Problems,
) -> Option<bool> {
    if !check_revision_path(location, path, node.pos, problems) {
        return None;
    }
    let Some(revision) = revision else {
        return Some(location.ends_with(".wasm"));
    };
    match revision.lookup(location) {
        RevisionEntry::File { wasm } => Some(wasm),
        RevisionEntry::Missing => {
            problems.push(
                ProblemKind::LocationNotFound,
                path,
                Some(node.pos),
                format!("`{location}` does not exist in the revision"),
            );
            None
        }
        RevisionEntry::Escapes { target } => {
            problems.push(
                ProblemKind::LocationEscapes,
                path,
                Some(node.pos),
                format!("`{location}` resolves to `{target}`, outside the revision; a hook must stay inside it"),
            );
            None
        }
        RevisionEntry::Directory | RevisionEntry::Other => {
            problems.push(
                ProblemKind::LocationNotFile,
                path,
                Some(node.pos),
                format!("`{location}` is not a regular file; expected a script or wasm module"),
            );
            None
        }
    }
}

/// A positive whole number of seconds, quoted or not. Ruby's `to_i` would read `"30s"` as 30 and `foo` as 0;
/// we refuse anything that is not plainly a number.
fn timeout(node: &Node, path: &str, problems: &mut Problems) -> Option<u64> {
    let text = node.scalar().map(|s| s.text.trim());
    match text.and_then(|t| {
        t.parse::<u64>()
            .ok()
            .filter(|_| t.bytes().all(|b| b.is_ascii_digit()))
    }) {
        Some(secs) if (1..=MAX_HOOK_TIMEOUT_SECS).contains(&secs) => Some(secs),
        _ => {
            problems.push(
                ProblemKind::InvalidTimeout,
                path,
                Some(node.pos),
                format!(
                    "invalid timeout {}; expected a positive whole number of seconds (at most {MAX_HOOK_TIMEOUT_SECS})",
                    node.describe()
                ),
            );
            None
        }
    }
}
