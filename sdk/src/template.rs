//! `${NAME}` templates, for hooks that render config files from lifecycle values.

use std::fmt;

/// A template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `${` without its `}`.
    Unclosed {
        /// Byte offset of the `$`.
        at: usize,
    },
    /// `${}` or a name with characters other than letters, digits and `_`.
    BadName {
        /// The name as written.
        name: String,
    },
    /// The lookup knows no value for the name.
    Unknown {
        /// The name.
        name: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unclosed { at } => write!(f, "unclosed `${{` at byte {at}"),
            Self::BadName { name } => {
                write!(
                    f,
                    "bad variable name `{name}`: expected letters, digits or `_`"
                )
            }
            Self::Unknown { name } => write!(f, "unknown variable `{name}` in template"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Replace every `${NAME}` with `lookup(NAME)`; `$$` is a literal `$`, and a `$` before anything else is kept.
/// An unknown name is an error rather than an empty string, so a typo cannot render a broken config.
///
/// ```
/// let ctx = |n: &str| (n == "DEPLOYMENT_ID").then(|| "d-1".to_owned());
/// assert_eq!(rollcage_sdk::template::render("id=${DEPLOYMENT_ID}", ctx).as_deref(), Ok("id=d-1"));
/// ```
pub fn render(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let at = text.len() - rest.len() + pos;
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(TemplateError::Unclosed { at })?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(TemplateError::BadName {
                    name: name.to_owned(),
                });
            }
            let value = lookup(name).ok_or_else(|| TemplateError::Unknown {
                name: name.to_owned(),
            })?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_escapes_and_rejects_unknown_names() {
        let lookup = |n: &str| (n == "DEPLOYMENT_ID").then(|| "d-1".to_owned());
        assert_eq!(
            render("id=${DEPLOYMENT_ID} cost=$$5 $x", lookup),
            Ok("id=d-1 cost=$5 $x".to_owned())
        );
        assert_eq!(
            render("a ${NOPE}", lookup),
            Err(TemplateError::Unknown {
                name: "NOPE".to_owned()
            })
        );
        assert_eq!(
            render("ab ${DEPLOYMENT_ID", lookup),
            Err(TemplateError::Unclosed { at: 3 })
        );
        assert!(matches!(
            render("${a-b}", lookup),
            Err(TemplateError::BadName { .. })
        ));
    }
}
