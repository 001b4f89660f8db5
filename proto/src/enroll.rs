//! Per-use enrollment tokens: their bounds, the API's request and answers, and the one rule that says whether a
//! token still enrolls ([`EnrollTokenInfo::status_at`]).
//!
//! An operator creates one with a use count and a lifetime (`rollcage enroll-token create --uses N --ttl 1h`); the
//! coordinator keeps only its hash. Each enrollment with it uses it once; an expired, used-up or revoked token is
//! refused, saying which. The coordinator's standing token (`DATA/enroll-token`) is the unlimited one and is not
//! described here. Whether an enrolled instance may be given work is [`crate::wire::InstanceState`].

use crate::wire::{UnknownName, wire_names};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Uses of a new token when none is given: one host, one token, so a token copied off a host enrolls nothing.
pub const DEFAULT_USES: u32 = 1;
/// Most uses one token may have. Enough for a batch of hosts provisioned together; a token meant for more is
/// as good as the standing token, which says so openly.
pub const MAX_USES: u32 = 10_000;
/// Lifetime of a new token when none is given: long enough to boot a host and start its agent, short enough that
/// a token left in a provisioning log is dead by the time anyone reads it.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// Longest lifetime: 30 days, for hosts provisioned over a long change window; longer-lived enrollment is the
/// standing token's job.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

/// `POST /v1/enroll-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollToken {
    /// How many enrollments it allows (default [`DEFAULT_USES`], 1..=[`MAX_USES`]).
    #[serde(default)]
    pub uses: Option<u32>,
    /// How long it is valid, in seconds (default [`DEFAULT_TTL_SECS`], 1..=[`MAX_TTL_SECS`]).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// A label for people (`rollcage enroll-token create --name`): at most [`MAX_LABEL_CHARS`] characters, no
    /// control characters.
    #[serde(default)]
    pub label: Option<String>,
}

/// A [`CreateEnrollToken`] with its defaults filled in and its bounds checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollTokenSpec {
    /// Enrollments allowed.
    pub uses: u32,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
    /// Label (empty when none).
    pub label: String,
}

impl CreateEnrollToken {
    /// The defaults filled in; every out-of-bounds field named, with its value and what was expected.
    pub fn checked(&self) -> Result<EnrollTokenSpec, String> {
        let mut problems = Vec::new();
        let uses = self.uses.unwrap_or(DEFAULT_USES);
        if !(1..=MAX_USES).contains(&uses) {
            problems.push(format!(
                "field `uses`: {uses} is out of bounds: expected 1 to {MAX_USES}"
            ));
        }
        let ttl_secs = self.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            problems.push(format!(
                "field `ttl_secs`: {ttl_secs} is out of bounds: expected 1 to {MAX_TTL_SECS} (30 days)"
            ));
        }
        let label = self.label.clone().unwrap_or_default();
        if label.chars().count() > MAX_LABEL_CHARS {
            problems.push(format!(
                "field `label`: longer than {MAX_LABEL_CHARS} characters"
            ));
        } else if label.chars().any(char::is_control) {
            problems.push(format!(
                "field `label`: {label:?} has control characters: expected printable text"
            ));
        }
        if problems.is_empty() {
            Ok(EnrollTokenSpec {
                uses,
                ttl_secs,
                label,
            })
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Whether a per-use token still enrolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollTokenStatus {
    /// It enrolls.
    Usable,
    /// Its lifetime ended.
    Expired,
    /// Every use was taken.
    UsedUp,
    /// An operator revoked it.
    Revoked,
}

wire_names!(EnrollTokenStatus, "enrollment token status", {
    Usable => "usable",
    Expired => "expired",
    UsedUp => "used_up",
    Revoked => "revoked",
});

/// A per-use enrollment token as `GET /v1/enroll-tokens` lists it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollTokenInfo {
    /// Its id (`et-…`; not a secret: what `revoke` takes).
    pub id: String,
    /// Its label (empty when none).
    #[serde(default)]
    pub label: String,
    /// Enrollments it allows.
    pub uses_allowed: u32,
    /// Enrollments made with it.
    pub uses: u32,
    /// When it stops enrolling.
    pub expires_at_ms: i64,
    /// When it was created.
    pub created_at_ms: i64,
    /// Its last enrollment.
    #[serde(default)]
    pub last_used_at_ms: Option<i64>,
    /// When it was revoked.
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
    /// Whether it enrolls, as of the answer ([`EnrollTokenInfo::status_at`]).
    pub status: EnrollTokenStatus,
}

impl EnrollTokenInfo {
    /// Whether the token enrolls at `now_ms`. A revoked token says so first (the operator's act is the news), then
    /// a used-up one, then an expired one; a token expires at `expires_at_ms` exactly.
    pub fn status_at(&self, now_ms: i64) -> EnrollTokenStatus {
        if self.revoked_at_ms.is_some() {
            EnrollTokenStatus::Revoked
        } else if self.uses >= self.uses_allowed {
            EnrollTokenStatus::UsedUp
        } else if now_ms >= self.expires_at_ms {
            EnrollTokenStatus::Expired
        } else {
            EnrollTokenStatus::Usable
        }
    }

    /// Uses left (0 once used up; a revoked or expired token may still show some).
    pub fn uses_left(&self) -> u32 {
        self.uses_allowed.saturating_sub(self.uses)
    }
}

/// `POST /v1/enroll-tokens` answer: the secret, shown this once, and the token's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedEnrollToken {
    /// The secret an agent enrolls with (only its hash is kept).
    pub token: String,
    /// The token's record.
    pub info: EnrollTokenInfo,
}

/// A lifetime given as a count and a unit (`90s`, `30m`, `1h`, `7d`) does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTtl(pub String);

impl fmt::Display for InvalidTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid lifetime `{}`: expected a whole number and a unit, s, m, h or d (e.g. 30m, 1h, 7d)",
            self.0
        )
    }
}

impl std::error::Error for InvalidTtl {}

/// A lifetime (`90s`, `30m`, `1h`, `7d`) in seconds. Bounds are the coordinator's to check ([`MAX_TTL_SECS`]).
pub fn parse_ttl(s: &str) -> Result<u64, InvalidTtl> {
    let err = || InvalidTtl(s.chars().take(40).collect());
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n = u64::from_str(digits).map_err(|_| err())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        _ => return Err(err()),
    };
    n.checked_mul(scale).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(uses: u32, allowed: u32, expires: i64, revoked: Option<i64>) -> EnrollTokenInfo {
        EnrollTokenInfo {
            id: "et-1".into(),
            label: String::new(),
            uses_allowed: allowed,
            uses,
            expires_at_ms: expires,
            created_at_ms: 0,
            last_used_at_ms: None,
            revoked_at_ms: revoked,
            status: EnrollTokenStatus::Usable,
        }
    }

    #[test]
    fn a_token_enrolls_until_revoked_used_up_or_expired() {
        use EnrollTokenStatus::*;
        assert_eq!(info(0, 1, 100, None).status_at(99), Usable);
        assert_eq!(info(0, 1, 100, None).status_at(100), Expired);
        assert_eq!(info(1, 1, 100, None).status_at(50), UsedUp);
        assert_eq!(info(2, 3, 100, None).status_at(50), Usable);
        // Revoked wins over the others, used up over expired.
        assert_eq!(info(1, 1, 100, Some(10)).status_at(500), Revoked);
        assert_eq!(info(1, 1, 100, None).status_at(500), UsedUp);
        assert_eq!(info(5, 3, 100, None).uses_left(), 0);
    }

    #[test]
    fn defaults_fill_in_and_bounds_are_named() {
        let spec = CreateEnrollToken::default().checked();
        assert_eq!(
            spec,
            Ok(EnrollTokenSpec {
                uses: DEFAULT_USES,
                ttl_secs: DEFAULT_TTL_SECS,
                label: String::new()
            })
        );
        let bad = CreateEnrollToken {
            uses: Some(0),
            ttl_secs: Some(MAX_TTL_SECS + 1),
            label: Some("a\nb".into()),
        }
        .checked()
        .err()
        .unwrap_or_default();
        for field in ["`uses`", "`ttl_secs`", "`label`"] {
            assert!(bad.contains(field), "{bad}");
        }
        assert!(
            CreateEnrollToken {
                uses: Some(MAX_USES + 1),
                ..Default::default()
            }
            .checked()
            .is_err()
        );
    }

    #[test]
    fn lifetimes_are_a_count_and_a_unit() {
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("7d"), Ok(7 * 86_400));
        for bad in [
            "",
            "h",
            "1",
            "1w",
            "-1h",
            "1.5h",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_names_are_the_serde_names() -> Result<(), serde_json::Error> {
        for s in EnrollTokenStatus::ALL {
            assert_eq!(serde_json::to_value(s)?, s.name());
        }
        Ok(())
    }
}
