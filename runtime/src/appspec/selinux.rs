//! SELinux MLS ranges `sN[-sM][:cX[.cY](,cZ)*]`, CodeDeploy's grammar and rules (`spec/range_info.rb`).

use super::model::SelinuxRange;
use super::problem::ProblemKind;
use std::collections::BTreeSet;

/// The highest category number SELinux policies define (c0–c1023).
const MAX_CATEGORY: u32 = 1023;

type RangeResult<T> = Result<T, (ProblemKind, String)>;

/// Split `input` once on `sep`; both halves (when present) must be non-empty.
fn split_parts<'a>(
    input: &'a str,
    sep: char,
    whole: &str,
) -> RangeResult<(&'a str, Option<&'a str>)> {
    let (first, second) = match input.split_once(sep) {
        Some((a, b)) => (a, Some(b)),
        None => (input, None),
    };
    if first.is_empty() || second.is_some_and(str::is_empty) {
        return Err((
            ProblemKind::SelinuxRangePart,
            format!(
                "invalid SELinux range `{whole}`: empty part in `{input}`; expected sN[-sM][:cX[.cY](,cZ)*]"
            ),
        ));
    }
    Ok((first, second))
}

/// `prefix` followed by one or more decimal digits.
fn number(text: &str, prefix: char) -> Option<u32> {
    let digits = text.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sensitivity(text: &str, whole: &str) -> RangeResult<u32> {
    number(text, 's').ok_or_else(|| {
        (
            ProblemKind::SelinuxSensitivity,
            format!(
                "invalid SELinux range `{whole}`: invalid sensitivity `{text}`; expected s<number>"
            ),
        )
    })
}

fn category(text: &str, whole: &str) -> RangeResult<u32> {
    number(text, 'c').filter(|c| *c <= MAX_CATEGORY).ok_or_else(|| {
        (
            ProblemKind::SelinuxCategory,
            format!("invalid SELinux range `{whole}`: invalid category `{text}`; expected c0 to c{MAX_CATEGORY}"),
        )
    })
}

/// Parse a range; categories are expanded and must not repeat.
pub(crate) fn parse_range(text: &str) -> RangeResult<SelinuxRange> {
    let (levels, cats) = split_parts(text, ':', text)?;
    let (low, high) = split_parts(levels, '-', text)?;
    let low = sensitivity(low, text)?;
    let high = match high {
        Some(h) => sensitivity(h, text)?,
        None => low,
    };
    if high < low {
        return Err((
            ProblemKind::SelinuxRangeOrder,
            format!(
                "invalid SELinux range `{text}`: high sensitivity s{high} is below low sensitivity s{low}"
            ),
        ));
    }
    let mut categories = BTreeSet::new();
    if let Some(cats) = cats {
        for part in cats.split(',') {
            let (from, to) = split_parts(part, '.', text)?;
            let from = category(from, text)?;
            let to = match to {
                Some(t) => category(t, text)?,
                None => from,
            };
            if to < from {
                return Err((
                    ProblemKind::SelinuxCategoryRange,
                    format!(
                        "invalid SELinux range `{text}`: category range `{part}` runs backwards"
                    ),
                ));
            }
            for c in from..=to {
                if !categories.insert(c) {
                    return Err((
                        ProblemKind::SelinuxDuplicateCategory,
                        format!(
                            "invalid SELinux range `{text}`: category c{c} is listed more than once"
                        ),
                    ));
                }
            }
        }
    }
    Ok(SelinuxRange {
        low,
        high,
        categories,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<ProblemKind> {
        parse_range(text).err().map(|(k, _)| k)
    }

    #[test]
    fn codedeploy_range_errors() {
        assert_eq!(kind("s3-s2:c0"), Some(ProblemKind::SelinuxRangeOrder));
        assert_eq!(kind("s3-:c0"), Some(ProblemKind::SelinuxRangePart));
        assert_eq!(kind(":c0"), Some(ProblemKind::SelinuxRangePart));
        assert_eq!(kind("s"), Some(ProblemKind::SelinuxSensitivity));
        assert_eq!(kind("s0-s-1"), Some(ProblemKind::SelinuxSensitivity));
        assert_eq!(kind("sd3"), Some(ProblemKind::SelinuxSensitivity));
        assert_eq!(kind("d3"), Some(ProblemKind::SelinuxSensitivity));
        assert_eq!(kind("s0:c2.c1"), Some(ProblemKind::SelinuxCategoryRange));
        assert_eq!(kind("s0:c2."), Some(ProblemKind::SelinuxRangePart));
        assert_eq!(kind("s0:"), Some(ProblemKind::SelinuxRangePart));
        assert_eq!(kind("s0:c"), Some(ProblemKind::SelinuxCategory));
        assert_eq!(kind("s0:c-1"), Some(ProblemKind::SelinuxCategory));
        assert_eq!(kind("s0:c1024"), Some(ProblemKind::SelinuxCategory));
        assert_eq!(kind("s0:cd3"), Some(ProblemKind::SelinuxCategory));
        assert_eq!(kind("s0:d3"), Some(ProblemKind::SelinuxCategory));
        assert_eq!(
            kind("s0:c0.c2,c1"),
            Some(ProblemKind::SelinuxDuplicateCategory)
        );
    }

    #[test]
    fn high_below_low_message_names_both() {
        let msg = parse_range("s3-s2:c0")
            .err()
            .map(|(_, m)| m)
            .unwrap_or_default();
        assert!(msg.contains("s2") && msg.contains("s3"), "{msg}");
    }

    #[test]
    fn valid_ranges_expand_categories() {
        let single = parse_range("s5");
        assert_eq!(
            single,
            Ok(SelinuxRange {
                low: 5,
                high: 5,
                categories: BTreeSet::new()
            })
        );
        let expanded = parse_range("s0:c0.c1,c15,c7.c9");
        let want: BTreeSet<u32> = [0, 1, 7, 8, 9, 15].into();
        assert_eq!(
            expanded,
            Ok(SelinuxRange {
                low: 0,
                high: 0,
                categories: want
            })
        );
        let full = parse_range("s3-s5:c0.c7,c13");
        let want: BTreeSet<u32> = [0, 1, 2, 3, 4, 5, 6, 7, 13].into();
        assert_eq!(
            full,
            Ok(SelinuxRange {
                low: 3,
                high: 5,
                categories: want
            })
        );
    }
}
