//! Reading typed fields out of the YAML tree, reporting a problem (with path and position) for each mismatch.

use super::problem::{ProblemKind, Problems};
use super::suggest;
use super::yaml::{Kind, Node, Pos};

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A mapping's entries with string keys, duplicates and non-scalar keys already reported.
pub(crate) struct MapView<'a> {
    pub pos: Pos,
    pub entries: Vec<(&'a str, &'a Node, &'a Node)>,
}

impl<'a> MapView<'a> {
    /// The value of `key` (the first one if duplicated), null values included.
    pub fn raw(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    /// The value of `key` unless it is absent or null (CodeDeploy treats both alike).
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.raw(key).filter(|v| !v.is_null())
    }

    /// The position of `key` itself.
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| k.pos)
    }

    /// Report every key not in `allowed` as [`ProblemKind::UnknownKey`], suggesting the closest allowed one.
    pub fn reject_unknown(&self, allowed: &[&str], path: &str, problems: &mut Problems) {
        for (key, key_node, _) in &self.entries {
            if !allowed.contains(key) {
                let hint = suggest::did_you_mean(key, allowed.iter().copied())
                    .unwrap_or_else(|| format!("; allowed keys: {}", allowed.join(", ")));
                problems.push(
                    ProblemKind::UnknownKey,
                    &join(path, key),
                    Some(key_node.pos),
                    format!("unknown key `{key}`{hint}"),
                );
            }
        }
    }

    /// Warn about every key not in `known` (CodeDeploy ignores them, so they cannot be errors), suggesting the
    /// closest known one.
    pub fn warn_unknown(&self, known: &[&str], path: &str, what: &str, problems: &mut Problems) {
        for (key, pos) in self.unknown(known) {
            let hint = suggest::did_you_mean(key, known.iter().copied()).unwrap_or_default();
            problems.warn(
                ProblemKind::UnknownKey,
                &join(path, key),
                Some(pos),
                format!("unknown key `{key}` in {what} is ignored{hint}"),
            );
        }
    }

    /// Keys not in `known`.
    pub fn unknown<'s>(&'s self, known: &'s [&str]) -> impl Iterator<Item = (&'a str, Pos)> + 's {
        self.entries
            .iter()
            .filter(|(k, _, _)| !known.contains(k))
            .map(|(k, n, _)| (*k, n.pos))
    }
}

/// `node` as a mapping; reports a wrong type, duplicate keys and non-scalar keys.
pub(crate) fn map<'a>(
    node: &'a Node,
    path: &str,
    what: &str,
    problems: &mut Problems,
) -> Option<MapView<'a>> {
    let Kind::Map(entries) = &node.kind else {
        problems.push(
            ProblemKind::WrongType,
            path,
            Some(node.pos),
            format!("expected {what}, found {}", node.describe()),
        );
        return None;
    };
    let mut view = MapView {
        pos: node.pos,
        entries: Vec::with_capacity(entries.len()),
    };
    for (key, value) in entries {
        let Some(scalar) = key.scalar() else {
            problems.push(
                ProblemKind::WrongType,
                path,
                Some(key.pos),
                "keys must be plain strings",
            );
            continue;
        };
        let name = scalar.text.as_str();
        if view.entries.iter().any(|(k, _, _)| *k == name) {
            problems.push(
                ProblemKind::DuplicateKey,
                &join(path, name),
                Some(key.pos),
                format!("key `{name}` appears more than once in this mapping"),
            );
            continue;
        }
        view.entries.push((name, key, value));
    }
    Some(view)
}

/// `node` as a list.
pub(crate) fn list<'a>(
    node: &'a Node,
    path: &str,
    what: &str,
    problems: &mut Problems,
) -> Option<&'a [Node]> {
    match &node.kind {
        Kind::Seq(items) => Some(items),
        _ => {
            problems.push(
                ProblemKind::WrongType,
                path,
                Some(node.pos),
                format!("expected a list of {what}, found {}", node.describe()),
            );
            None
        }
    }
}

/// `node` as a string: any non-null scalar, trimmed (numbers keep their written text, as Ruby's `to_s` would
/// give for integers).
pub(crate) fn string(node: &Node, path: &str, problems: &mut Problems) -> Option<String> {
    match node.scalar() {
        Some(s) if !node.is_null() => Some(s.text.trim().to_owned()),
        _ => {
            problems.push(
                ProblemKind::WrongType,
                path,
                Some(node.pos),
                format!("expected a string, found {}", node.describe()),
            );
            None
        }
    }
}

/// `node` as a YAML boolean (YAML 1.1 spellings too, as CodeDeploy's Ruby parser reads them).
pub(crate) fn boolean(node: &Node, path: &str, problems: &mut Problems) -> Option<bool> {
    let value = node
        .scalar()
        .filter(|s| s.plain)
        .and_then(|s| match s.text.as_str() {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        });
    if value.is_none() {
        problems.push(
            ProblemKind::InvalidValue,
            path,
            Some(node.pos),
            format!("expected true or false, found {}", node.describe()),
        );
    }
    value
}

/// A list of strings; a single string is accepted as a one-element list.
pub(crate) fn strings(
    node: &Node,
    path: &str,
    what: &str,
    problems: &mut Problems,
) -> Vec<(String, Pos)> {
    if node.scalar().is_some() {
        return string(node, path, problems)
            .map(|s| vec![(s, node.pos)])
            .unwrap_or_default();
    }
    let Some(items) = list(node, path, what, problems) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| string(item, &index(path, i), problems).map(|s| (s, item.pos)))
        .collect()
}
