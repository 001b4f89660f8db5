//! "Did you mean …?" hints for misspelt keys and event names.

/// Below this Jaro-Winkler similarity two names are unrelated. 0.8 catches dropped, doubled and swapped letters
/// and case slips (`ValidateServices`, `afterinstall`, `locaton`) without pairing unrelated short words.
const MIN_SIMILARITY: f64 = 0.8;

/// The candidate closest to `word`, if one is close enough.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= MIN_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `X`?` for the closest candidate, ready to append to a message.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("; did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_not() {
        let events = ["ApplicationStop", "ValidateService", "AfterInstall"];
        assert_eq!(closest("ValidateServices", events), Some("ValidateService"));
        assert_eq!(closest("afterinstall", events), Some("AfterInstall"));
        assert_eq!(closest("Frobnicate", events), None);
        assert_eq!(
            closest("locaton", ["location", "timeout", "runas"]),
            Some("location")
        );
    }
}
