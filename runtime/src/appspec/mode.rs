//! Permission `mode`: 1–4 octal digits, CodeDeploy's rules (`spec/mode_info.rb`), read from the scalar's raw text.
//!
//! CodeDeploy stringifies the YAML value, so an unquoted `0644` arrives as the integer 420 (YAML 1.1 octal) and
//! silently becomes mode 420. We read the text as written, so `0644` and `"0644"` both mean 0644.

use super::model::Mode;
use super::problem::ProblemKind;

/// Parse a mode as written (`644`, `0755`, `6763`, `12` = `012`).
pub(crate) fn parse_mode(text: &str) -> Result<Mode, (ProblemKind, String)> {
    if text.is_empty() {
        return Err((
            ProblemKind::ModeLength,
            "mode is empty; expected 1 to 4 octal digits".to_owned(),
        ));
    }
    if text.chars().count() > 4 {
        return Err((
            ProblemKind::ModeLength,
            format!(
                "mode `{text}` must be between one and four characters long (octal digits 0-7)"
            ),
        ));
    }
    if let Some(bad) = text.chars().find(|c| !('0'..='7').contains(c)) {
        return Err((
            ProblemKind::ModeInvalidChar,
            format!(
                "mode `{text}` contains an invalid character `{bad}`; expected octal digits 0-7"
            ),
        ));
    }
    // Left-padding with zeros (CodeDeploy pads to three digits) does not change the octal value.
    u32::from_str_radix(text, 8)
        .map(Mode)
        .map_err(|e| (ProblemKind::ModeInvalidChar, format!("mode `{text}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_decode_as_octal() {
        assert_eq!(parse_mode("7777"), Ok(Mode(0o7777)));
        assert_eq!(parse_mode("0000"), Ok(Mode(0)));
        assert_eq!(parse_mode("777"), Ok(Mode(0o777)));
        assert_eq!(parse_mode("0644"), Ok(Mode(0o644)));
        assert_eq!(parse_mode("12"), Ok(Mode(0o012)));
        assert_eq!(parse_mode("6763"), Ok(Mode(0o6763)));
    }

    #[test]
    fn bad_modes_name_the_rule() {
        assert!(matches!(
            parse_mode("77777"),
            Err((ProblemKind::ModeLength, _))
        ));
        assert!(matches!(
            parse_mode("12a"),
            Err((ProblemKind::ModeInvalidChar, _))
        ));
        assert!(matches!(
            parse_mode("0755 "),
            Err((ProblemKind::ModeLength, _))
        ));
        assert!(matches!(
            parse_mode("789"),
            Err((ProblemKind::ModeInvalidChar, _))
        ));
    }
}
