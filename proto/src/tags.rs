//! Instance tags and the tag filters that select a deployment group's instances.
//!
//! An agent carries `KEY=VALUE` tags (`rollcage agent --tag`, `tags` in its config), sent at enrollment and on every
//! start. A group selects its instances by name or by tags: a [`TagFilter`] is a list of alternatives, each a set of
//! pairs, and an instance matches when it has every pair of at least one alternative (CodeDeploy's tag groups: AND
//! within a set, OR between sets).
//!
//! Bounds follow AWS's tag rules, so a fleet's existing tags fit: at most [`MAX_TAGS`] per instance, keys of 1–128
//! and values of 0–256 characters, from letters, digits, spaces and `_ . : / = + - @`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An instance's tags, key → value (sorted, each key once).
pub type Tags = BTreeMap<String, String>;

/// Most tags on one instance (AWS's limit per resource).
pub const MAX_TAGS: usize = 50;
/// Longest tag key, in characters (AWS's).
pub const MAX_KEY_CHARS: usize = 128;
/// Longest tag value, in characters (AWS's).
pub const MAX_VALUE_CHARS: usize = 256;
/// Most alternatives in one group's filter: each is tried on every instance, so they are few in practice.
pub const MAX_ALTERNATIVES: usize = 10;

/// What a tag key or value may hold.
pub const TAG_RULE: &str = "letters, digits, spaces and `_ . : / = + - @`; keys 1-128 characters (not starting with `rollcage:`), values 0-256";

/// A group's selection by tags: it matches an instance that has every pair of any one alternative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TagFilter(pub Vec<Tags>);

impl TagFilter {
    /// No alternatives: the group does not select by tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an instance with `tags` is selected.
    pub fn matches(&self, tags: &Tags) -> bool {
        self.0
            .iter()
            .any(|set| set.iter().all(|(k, v)| tags.get(k) == Some(v)))
    }

    /// Every alternative checked ([`check_tags`]) and non-empty, at most [`MAX_ALTERNATIVES`].
    pub fn check(&self) -> Result<(), TagError> {
        if self.0.len() > MAX_ALTERNATIVES {
            return Err(TagError(format!(
                "{} tag sets, more than the {MAX_ALTERNATIVES} a group may have",
                self.0.len()
            )));
        }
        for (i, set) in self.0.iter().enumerate() {
            if set.is_empty() {
                return Err(TagError(format!(
                    "tag set {}: empty; a set needs at least one KEY=VALUE pair (it would match every instance)",
                    i + 1
                )));
            }
            check_tags(set).map_err(|e| TagError(format!("tag set {}: {}", i + 1, e.0)))?;
        }
        Ok(())
    }
}

/// What is wrong with a tag, a tag set or a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagError(pub String);

impl std::fmt::Display for TagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TagError {}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

/// One instance's tags within [`MAX_TAGS`], each key and value following [`TAG_RULE`].
pub fn check_tags(tags: &Tags) -> Result<(), TagError> {
    if tags.len() > MAX_TAGS {
        return Err(TagError(format!(
            "{} tags, more than the {MAX_TAGS} an instance may have",
            tags.len()
        )));
    }
    for (k, v) in tags {
        let key_len = k.chars().count();
        if key_len == 0
            || key_len > MAX_KEY_CHARS
            || !k.chars().all(allowed)
            || k.starts_with("rollcage:")
        {
            return Err(TagError(format!(
                "invalid tag key `{}`: expected {TAG_RULE}",
                crate::clip::clip_head(k, 160)
            )));
        }
        if v.chars().count() > MAX_VALUE_CHARS || !v.chars().all(allowed) {
            return Err(TagError(format!(
                "invalid value of tag `{k}`: `{}`: expected {TAG_RULE}",
                crate::clip::clip_head(v, 160)
            )));
        }
    }
    Ok(())
}

/// One `KEY=VALUE` (the first `=` splits; the value may be empty).
pub fn parse_pair(text: &str) -> Result<(String, String), TagError> {
    let (k, v) = text.split_once('=').ok_or_else(|| {
        TagError(format!(
            "`{}`: expected KEY=VALUE",
            crate::clip::clip_head(text, 160)
        ))
    })?;
    let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
    let one = Tags::from([(k.clone(), v.clone())]);
    check_tags(&one)?;
    Ok((k, v))
}

/// A set written `KEY=VALUE,KEY=VALUE` (as `rollcage group create --tags` takes it). A key given twice is refused.
pub fn parse_set(text: &str) -> Result<Tags, TagError> {
    let mut set = Tags::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = parse_pair(part)?;
        if set.insert(k.clone(), v).is_some() {
            return Err(TagError(format!("`{text}`: tag `{k}` given twice")));
        }
    }
    if set.is_empty() {
        return Err(TagError(format!(
            "`{text}`: expected KEY=VALUE[,KEY=VALUE…]"
        )));
    }
    Ok(set)
}

/// `k=v,k2=v2` (keys sorted), as the CLI and the dashboard show a set.
pub fn show(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "fixed inputs whose outcome is the assertion"
    )]
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_instance_matches_when_it_has_every_pair_of_one_alternative() {
        let f = TagFilter(vec![
            set(&[("env", "prod"), ("role", "web")]),
            set(&[("env", "canary")]),
        ]);
        assert!(f.matches(&set(&[("env", "prod"), ("role", "web"), ("az", "b")])));
        assert!(f.matches(&set(&[("env", "canary")])));
        assert!(!f.matches(&set(&[("env", "prod")])), "role missing");
        assert!(!f.matches(&set(&[("env", "prod"), ("role", "db")])));
        assert!(!f.matches(&Tags::new()));
        assert!(!TagFilter::default().matches(&set(&[("env", "prod")])));
    }

    #[test]
    fn sets_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(
            parse_set("env=prod,role=web").unwrap(),
            set(&[("env", "prod"), ("role", "web")])
        );
        assert_eq!(parse_set("empty=").unwrap(), set(&[("empty", "")]));
        let e = parse_set("env").unwrap_err().0;
        assert!(e.contains("expected KEY=VALUE"), "{e}");
        let e = parse_set("env=a,env=b").unwrap_err().0;
        assert!(e.contains("given twice"), "{e}");
        let e = parse_set("en;v=a").unwrap_err().0;
        assert!(e.contains("invalid tag key `en;v`"), "{e}");
        let e = parse_set("rollcage:x=a").unwrap_err().0;
        assert!(e.contains("invalid tag key"), "{e}");
        let long = "v".repeat(MAX_VALUE_CHARS + 1);
        assert!(parse_set(&format!("k={long}")).is_err());
        let many: Tags = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(
            check_tags(&many)
                .unwrap_err()
                .0
                .contains("more than the 50")
        );
    }

    #[test]
    fn a_filter_refuses_empty_sets_and_too_many() {
        let e = TagFilter(vec![Tags::new()]).check().unwrap_err().0;
        assert!(e.contains("tag set 1: empty"), "{e}");
        let many = TagFilter(vec![set(&[("a", "b")]); MAX_ALTERNATIVES + 1]);
        assert!(many.check().is_err());
        assert!(TagFilter(vec![set(&[("a", "b")])]).check().is_ok());
    }
}
