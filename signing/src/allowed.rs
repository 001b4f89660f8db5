//! The OpenSSH `allowed_signers` file (ssh-keygen(1), "ALLOWED SIGNERS"): which keys a host trusts to sign
//! revisions.
//!
//! One key a line: `principals [options] keytype base64 [comment]`; blank lines and `#` comments are skipped.
//! Principals are a comma-separated pattern list (quoted if it holds spaces); rollcage names them in messages and
//! matches nothing against them. Options, comma-separated:
//!
//! - `namespaces="rollcage,…"`: a pattern list (`*`, `?`, `!negation`, as OpenSSH's `match_pattern_list`). Unlike
//!   OpenSSH, where a key listed without it is valid for every namespace, rollcage trusts a key only where the list
//!   names `rollcage` (by pattern): a key kept here for `git` commits does not become a deployment key by accident.
//! - `valid-after="…"` / `valid-before="…"`: honoured against the time of the check. Only UTC times are read
//!   (`YYYYMMDD[HHMM[SS]]Z`); one without the `Z` (OpenSSH reads it in local time) is refused with its line.
//! - `cert-authority`: refused (certificates are not supported): list the signer's own key.
//!
//! Any other option, a bad key or a malformed line is an error naming the file and line, and the whole file is
//! refused: a host must not run on half a trust list.

use ssh_key::PublicKey;
use ssh_key::public::KeyData;
use std::path::{Path, PathBuf};

/// The largest allowed_signers file read: thousands of keys fit; a bigger one is a wrong path, not a trust list.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// An allowed_signers file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AllowedSignersError {
    /// Reading it failed.
    #[error("could not read allowed signers file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("allowed signers file {path} is {bytes} bytes: at most {max} are read", max = MAX_FILE_BYTES)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// One line is not a valid entry.
    #[error("{origin}:{line}: {message}")]
    Line {
        /// The file.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// One key of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The principals field as written (quotes removed).
    pub principals: String,
    /// The key.
    pub key: KeyData,
    /// `namespaces="…"`, split at commas; `None` when absent.
    pub namespaces: Option<Vec<String>>,
    /// `valid-after`, seconds since the epoch (UTC).
    pub valid_after: Option<i64>,
    /// `valid-before`, seconds since the epoch (UTC).
    pub valid_before: Option<i64>,
}

impl Entry {
    /// True when its `namespaces=` list admits `namespace` (whatever the time).
    pub fn lists_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .as_deref()
            .is_some_and(|list| match_pattern_list(namespace, list) == Some(true))
    }

    /// Whether this entry lets its key sign for `namespace` at `now` (seconds since the epoch); the reason not
    /// otherwise.
    pub fn allows(&self, namespace: &str, now: i64) -> Result<(), String> {
        match &self.namespaces {
            None => {
                return Err(format!(
                    "it is listed without namespaces=\"{namespace}\", so it may sign other things but not revisions"
                ));
            }
            Some(list) => {
                if match_pattern_list(namespace, list) != Some(true) {
                    return Err(format!(
                        "it is listed for namespaces=\"{}\", which does not include \"{namespace}\"",
                        list.join(",")
                    ));
                }
            }
        }
        if let Some(after) = self.valid_after
            && now < after
        {
            return Err(format!("it is not valid before {}", show_time(after)));
        }
        if let Some(before) = self.valid_before
            && now > before
        {
            return Err(format!("it expired at {}", show_time(before)));
        }
        Ok(())
    }
}

/// The keys of one allowed_signers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigners {
    origin: String,
    entries: Vec<Entry>,
}

impl AllowedSigners {
    /// Read and parse the file at `path`.
    pub fn load(path: &Path) -> Result<Self, AllowedSignersError> {
        let read = |source| AllowedSignersError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(read)?.len();
        if bytes > MAX_FILE_BYTES {
            return Err(AllowedSignersError::TooLarge {
                path: path.to_owned(),
                bytes,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse file content; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AllowedSignersError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let entry =
                parse_line(trimmed, line_no).map_err(|message| AllowedSignersError::Line {
                    origin: origin.to_owned(),
                    line: line_no,
                    message,
                })?;
            entries.push(entry);
        }
        Ok(Self {
            origin: origin.to_owned(),
            entries,
        })
    }

    /// The file it was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries listing `key`.
    pub fn entries_for<'a>(&'a self, key: &'a KeyData) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.key == *key)
    }
}

/// One non-comment line.
fn parse_line(line: &str, line_no: usize) -> Result<Entry, String> {
    let (principals, rest) = take_principals(line)?;
    if principals.is_empty() {
        return Err(
            "empty principals: expected `principals [options] keytype base64 [comment]`".into(),
        );
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Err(format!(
            "no key after the principals `{principals}`: expected `principals [options] keytype base64 [comment]`"
        ));
    }
    // As OpenSSH: a key right after the principals, or else an options field first.
    let (options, key) = match PublicKey::from_openssh(rest) {
        Ok(key) => (Options::default(), key),
        Err(first) => {
            let (field, after) = take_options(rest)?;
            let key_text = after.trim_start();
            // Options are `name="value"` or the `cert-authority` flag; anything else here is a key that did not
            // parse, and is named as one.
            let options_like = field.contains('=')
                || field.contains(',')
                || field.eq_ignore_ascii_case("cert-authority");
            if key_text.is_empty() || !options_like {
                return Err(format!(
                    "invalid key `{}`: {first}; expected `keytype base64`",
                    clip(rest)
                ));
            }
            let options = parse_options(field)?;
            let key = PublicKey::from_openssh(key_text).map_err(|e| {
                format!(
                    "invalid key `{}`: {e}; expected `keytype base64` (e.g. the content of KEY.pub)",
                    clip(key_text)
                )
            })?;
            (options, key)
        }
    };
    Ok(Entry {
        line: line_no,
        principals,
        key: key.key_data().clone(),
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
    })
}

/// At most this much of a field is quoted in an error.
fn clip(s: &str) -> String {
    const SHOWN: usize = 60;
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The principals field (quoted or up to whitespace) and what follows it.
fn take_principals(line: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = line.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or("unterminated quoted principals: expected a closing `\"`")?;
        Ok((quoted[..end].to_owned(), &quoted[end + 1..]))
    } else {
        let end = line.find(char::is_whitespace).unwrap_or(line.len());
        Ok((line[..end].to_owned(), &line[end..]))
    }
}

/// The options field (up to unquoted whitespace, as OpenSSH's `sshkey_advance_past_options`) and what follows.
fn take_options(s: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quote in the options: expected a closing `\"`".into());
    }
    Ok((s, ""))
}

#[derive(Debug, Default)]
struct Options {
    namespaces: Option<Vec<String>>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// `name` or `name="value"` options, comma-separated (commas inside quotes belong to the value).
fn parse_options(field: &str) -> Result<Options, String> {
    let mut out = Options::default();
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in field.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&field[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&field[start..]);
    for item in items {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v)?)),
            None => (item, None),
        };
        let name_lc = name.to_ascii_lowercase();
        let need = |v: Option<String>| {
            v.ok_or_else(|| format!("option `{name}` needs a value: `{name}=\"…\"`"))
        };
        match name_lc.as_str() {
            "cert-authority" => {
                return Err(
                    "`cert-authority` is not supported: rollcage does not verify certificates; list the signer's \
                     own public key instead"
                        .into(),
                );
            }
            "namespaces" => {
                let v = need(value)?;
                let list: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
                if list.iter().any(String::is_empty) {
                    return Err(format!(
                        "namespaces=\"{v}\" has an empty entry: expected comma-separated names"
                    ));
                }
                set_once(&mut out.namespaces, list, name)?;
            }
            "valid-after" => {
                let t = parse_time(&need(value)?)?;
                set_once(&mut out.valid_after, t, name)?;
            }
            "valid-before" => {
                let t = parse_time(&need(value)?)?;
                set_once(&mut out.valid_before, t, name)?;
            }
            "" => return Err(format!("empty option in `{}`", clip(field))),
            _ => {
                return Err(format!(
                    "unknown option `{name}`: expected namespaces=\"…\", valid-after=\"…\" or valid-before=\"…\""
                ));
            }
        }
    }
    Ok(out)
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("option `{name}` given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// An option value: `"…"` with `\"` escapes, or a bare word.
fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| format!("unterminated value `{}`: expected a closing `\"`", clip(v)))?;
    Ok(inner.replace("\\\"", "\""))
}

/// `YYYYMMDD[HHMM[SS]]Z` → seconds since the epoch.
fn parse_time(v: &str) -> Result<i64, String> {
    let expected = "expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS followed by Z (UTC)";
    let Some(digits) = v.strip_suffix(['Z', 'z']) else {
        return Err(format!(
            "time `{v}` has no trailing Z: rollcage reads these times in UTC only ({expected})"
        ));
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid time `{v}`: {expected}"));
    }
    let num = |a: usize, b: usize| {
        digits
            .get(a..b)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let year = i32::try_from(num(0, 4)).map_err(|_| format!("invalid time `{v}`: {expected}"))?;
    let month = u8::try_from(num(4, 6))
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(|| format!("invalid month in time `{v}`: {expected}"))?;
    let bad = |e: time::error::ComponentRange| format!("invalid time `{v}`: {e}");
    let date = time::Date::from_calendar_date(year, month, num(6, 8) as u8).map_err(bad)?;
    let clock = time::Time::from_hms(num(8, 10) as u8, num(10, 12) as u8, num(12, 14) as u8)
        .map_err(bad)?;
    Ok(time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp())
}

/// A time for people: `YYYY-MM-DD HH:MM:SS UTC`.
fn show_time(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("{t} (seconds since 1970)"),
    }
}

/// OpenSSH's `match_pattern_list`: `Some(true)` if a positive pattern matches, `Some(false)` if a negated one
/// (`!pat`) does (a negated match wins), `None` if none does.
pub fn match_pattern_list(s: &str, list: &[String]) -> Option<bool> {
    let mut matched = None;
    for pat in list {
        match pat.strip_prefix('!') {
            Some(neg) if match_pattern(s, neg) => return Some(false),
            Some(_) => {}
            None if match_pattern(s, pat) => matched = Some(true),
            None => {}
        }
    }
    matched
}

/// Glob match with `*` (any run) and `?` (one character), as OpenSSH's `match_pattern`.
fn match_pattern(s: &str, pat: &str) -> bool {
    let (s, p): (Vec<char>, Vec<char>) = (s.chars().collect(), pat.chars().collect());
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwlyjLcP7pU7DcL+7OkYE8CwTsgrtKrmsJv5eXnQka/";

    fn one(line: &str) -> Result<Entry, AllowedSignersError> {
        let s = AllowedSigners::parse(&format!("# comment\n\n{line}\n"), "signers")?;
        s.entries()
            .first()
            .cloned()
            .ok_or(AllowedSignersError::Line {
                origin: "test".into(),
                line: 0,
                message: "no entry".into(),
            })
    }

    fn line_error(line: &str) -> String {
        match AllowedSigners::parse(&format!("# c\n{line}\n"), "signers") {
            Err(AllowedSignersError::Line {
                origin,
                line,
                message,
            }) => {
                assert_eq!((origin.as_str(), line), ("signers", 2), "{message}");
                message
            }
            other => format!("not a line error: {other:?}"),
        }
    }

    #[test]
    fn entries_with_and_without_options() -> Result<(), Box<dyn std::error::Error>> {
        let e = one(&format!("alice@example.com {ED} alice's laptop"))?;
        assert_eq!(
            (e.line, e.principals.as_str(), e.namespaces),
            (3, "alice@example.com", None)
        );
        let e = one(&format!(
            "\"ci bot,alice\" namespaces=\"git,rollcage\",valid-after=\"20240102Z\",valid-before=\"20990101000000Z\" {ED}"
        ))?;
        assert_eq!(e.principals, "ci bot,alice");
        assert_eq!(
            e.namespaces,
            Some(vec!["git".to_owned(), "rollcage".to_owned()])
        );
        assert_eq!(e.valid_after, Some(1_704_153_600));
        assert!(e.allows("rollcage", 1_800_000_000).is_ok());
        assert!(
            e.allows("rollcage", 1_700_000_000)
                .is_err_and(|m| m.contains("not valid before 2024-01-02"))
        );
        assert!(
            e.allows("rollcage", 4_200_000_000)
                .is_err_and(|m| m.contains("expired"))
        );
        Ok(())
    }

    #[test]
    fn a_key_counts_for_rollcage_only_where_its_namespaces_name_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let none = one(&format!("a {ED}"))?;
        assert!(
            none.allows("rollcage", 0)
                .is_err_and(|m| m.contains("without namespaces"))
        );
        let git = one(&format!("a namespaces=\"git\" {ED}"))?;
        assert!(
            git.allows("rollcage", 0)
                .is_err_and(|m| m.contains("\"git\""))
        );
        let star = one(&format!("a namespaces=\"roll*\" {ED}"))?;
        assert!(star.allows("rollcage", 0).is_ok());
        let negated = one(&format!("a namespaces=\"*,!rollcage\" {ED}"))?;
        assert!(negated.allows("rollcage", 0).is_err());
        Ok(())
    }

    #[test]
    fn bad_lines_are_refused_with_file_and_line() {
        assert!(line_error(&format!("a cert-authority {ED}")).contains("cert-authority"));
        assert!(
            line_error(&format!("a cert-authority,namespaces=\"rollcage\" {ED}"))
                .contains("not supported")
        );
        assert!(line_error(&format!("a nosuch=\"x\" {ED}")).contains("unknown option `nosuch`"));
        assert!(line_error(&format!("a valid-after=\"20240101\" {ED}")).contains("no trailing Z"));
        assert!(line_error(&format!("a valid-after=\"2024013Z\" {ED}")).contains("invalid time"));
        assert!(line_error(&format!("a valid-after=\"20241301Z\" {ED}")).contains("month"));
        assert!(line_error("a ssh-ed25519 AAAAnotakey").contains("invalid key"));
        assert!(line_error("alice").contains("no key"));
        assert!(line_error(&format!("a namespaces=\"rollcage {ED}")).contains("unterminated"));
        assert!(
            line_error(&format!(
                "a namespaces=\"rollcage\",namespaces=\"git\" {ED}"
            ))
            .contains("twice")
        );
    }

    #[test]
    fn patterns_as_openssh() {
        let l = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            match_pattern_list("rollcage", &l(&["git", "rollcage"])),
            Some(true)
        );
        assert_eq!(match_pattern_list("rollcage", &l(&["r?llc*"])), Some(true));
        assert_eq!(
            match_pattern_list("rollcage", &l(&["*", "!roll*"])),
            Some(false)
        );
        assert_eq!(match_pattern_list("rollcage", &l(&["git"])), None);
        assert!(match_pattern("", "*") && !match_pattern("a", "") && match_pattern("abc", "a*c*"));
    }
}
