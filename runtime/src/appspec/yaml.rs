//! A YAML tree with positions and raw scalar text, built from saphyr's event parser.
//!
//! Why not `serde_yaml::Value`: it carries no positions, and it resolves scalars itself, so an unquoted
//! `mode: 0644` would already be a number by the time we see it (420 under YAML 1.1 rules, 644 under 1.2).
//! Why not `saphyr::MarkedYaml`: its mappings are hash maps that reject or silently merge duplicate keys. Here a
//! mapping is the ordered list of its entries, every node knows its line and column, and every scalar keeps the
//! exact text and quoting it was written with; the validators decide what each field's text means.

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, SpannedEventReceiver};
use std::collections::HashMap;

/// Aliases are expanded by copying the anchored node. A few nested anchors can expand exponentially
/// ("billion laughs"); no real AppSpec comes near this many copied nodes, so stop there.
const ALIAS_NODE_BUDGET: usize = 10_000;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_span(span: Span) -> Self {
        Self {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// One node of the document.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in document order; duplicates are kept (the validators report them).
    Map(Vec<(Node, Node)>),
}

/// A scalar as written.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    /// The text after YAML unescaping/folding, before any type resolution.
    pub text: String,
    /// Written plain (no quotes, not a block scalar, no `!!str` tag): only then can it mean null, a bool or a
    /// number.
    pub plain: bool,
}

impl Node {
    /// The scalar, if this node is one.
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// True for an explicit or implicit null (`~`, `null`, nothing).
    pub fn is_null(&self) -> bool {
        self.scalar().is_some_and(|s| {
            s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
        })
    }

    /// What kind of YAML value this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a mapping".to_owned(),
            Kind::Scalar(_) if self.is_null() => "nothing (null)".to_owned(),
            Kind::Scalar(s) => format!("`{}`", s.text),
        }
    }
}

/// The document could not be read as YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl From<ScanError> for SyntaxError {
    fn from(e: ScanError) -> Self {
        Self {
            pos: Pos {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: e.info().to_owned(),
        }
    }
}

/// Load the first document of `text` (later documents are ignored, as Ruby's `YAML.load` does).
/// `Ok(None)` when the stream holds no document.
pub(crate) fn load(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true)?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.docs.into_iter().next())
}

/// A collection being built.
enum Open {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    alias_budget_used: usize,
    error: Option<SyntaxError>,
}

impl Builder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
            None => self.docs.push(node),
        }
    }

    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { pos, message });
        }
    }
}

/// Apply YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`), which CodeDeploy's Ruby parser honours: the merged
/// mappings' entries are added unless the mapping sets the key itself (or an earlier merged mapping did). A `<<`
/// whose value is not a mapping (or list of them) is left in place for the validators to report.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |k: &Node| k.scalar().is_some_and(|s| s.plain && s.text == "<<");
    let mergeable = |v: &Node| match &v.kind {
        Kind::Map(_) => true,
        Kind::Seq(items) => items.iter().all(|i| matches!(i.kind, Kind::Map(_))),
        Kind::Scalar(_) => false,
    };
    if !entries.iter().any(|(k, v)| is_merge(k) && mergeable(v)) {
        return entries;
    }
    let key_text = |k: &Node| k.scalar().map(|s| s.text.clone());
    let (merges, mut own): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, v)| is_merge(k) && mergeable(v));
    for (_, value) in merges {
        let sources = match value.kind {
            Kind::Map(m) => vec![m],
            Kind::Seq(items) => items
                .into_iter()
                .filter_map(|i| match i.kind {
                    Kind::Map(m) => Some(m),
                    _ => None,
                })
                .collect(),
            Kind::Scalar(_) => Vec::new(),
        };
        for (k, v) in sources.into_iter().flatten() {
            let name = key_text(&k);
            if name.is_none() || !own.iter().any(|(ok, _)| key_text(ok) == name) {
                own.push((k, v));
            }
        }
    }
    own
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Scalar(_) => 0,
        Kind::Seq(items) => items.iter().map(count_nodes).sum(),
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| count_nodes(k) + count_nodes(v))
            .sum(),
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        if self.error.is_some() {
            return;
        }
        let pos = Pos::from_span(span);
        match ev {
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
            Event::Scalar(text, style, anchor, tag) => {
                let str_tag = tag
                    .as_ref()
                    .is_some_and(|t| t.suffix == "str" || t.suffix.ends_with(":str"));
                let plain = style == ScalarStyle::Plain && !str_tag;
                self.finish(
                    Node {
                        pos,
                        kind: Kind::Scalar(Scalar {
                            text: text.into_owned(),
                            plain,
                        }),
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq {
                pos,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map {
                pos,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq { pos, anchor, items }) => self.finish(
                    Node {
                        pos,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                ),
                Some(Open::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => self.finish(
                    Node {
                        pos,
                        kind: Kind::Map(merge_keys(entries)),
                    },
                    anchor,
                ),
                None => self.fail(pos, "unbalanced collection end".to_owned()),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    self.alias_budget_used += count_nodes(&node);
                    if self.alias_budget_used > ALIAS_NODE_BUDGET {
                        self.fail(
                            pos,
                            format!("aliases expand to more than {ALIAS_NODE_BUDGET} nodes"),
                        );
                        return;
                    }
                    node.pos = pos;
                    self.finish(node, 0);
                }
                None => self.fail(pos, "alias to an unknown anchor".to_owned()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_keep_raw_text_and_quoting() -> Result<(), SyntaxError> {
        let doc = load("a: 0644\nb: '0644'\nc:\n")?;
        let Some(Node {
            kind: Kind::Map(entries),
            ..
        }) = doc
        else {
            panic!("not a map: {doc:?}")
        };
        let a = entries[0].1.scalar().map(|s| (s.text.as_str(), s.plain));
        let b = entries[1].1.scalar().map(|s| (s.text.as_str(), s.plain));
        assert_eq!(a, Some(("0644", true)));
        assert_eq!(b, Some(("0644", false)));
        assert!(entries[2].1.is_null());
        assert_eq!(entries[1].1.pos, Pos { line: 2, column: 4 });
        Ok(())
    }

    #[test]
    fn merge_keys_fill_in_without_overriding() -> Result<(), SyntaxError> {
        let doc = load("d: &d {a: 1, b: 2}\nm:\n  <<: *d\n  b: 3\n")?;
        let Some(Node {
            kind: Kind::Map(top),
            ..
        }) = doc
        else {
            panic!("not a map")
        };
        let Kind::Map(m) = &top[1].1.kind else {
            panic!("m is not a map")
        };
        let pairs: Vec<(&str, &str)> = m
            .iter()
            .filter_map(|(k, v)| Some((k.scalar()?.text.as_str(), v.scalar()?.text.as_str())))
            .collect();
        assert_eq!(pairs, [("b", "3"), ("a", "1")]);
        Ok(())
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(load(&text).is_err());
    }

    #[test]
    fn syntax_error_has_position() {
        let err = load("a: [1, 2\nb: c\n").err();
        assert!(err.is_some_and(|e| e.pos.line >= 1 && e.pos.column >= 1));
    }
}
