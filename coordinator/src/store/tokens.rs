//! Named operator tokens (`rollcage token create|list|revoke`): name, role, applications, the sha256 of the secret
//! (never the secret), when created, last used and revoked.
//!
//! The coordinator keeps the live tokens in memory too ([`crate::auth::Tokens`]), loaded from here at start and
//! updated by the token routes in the same request as the write.

use super::{Conn, OptionalExt, Tx, args};
use super::{Result, StoreError, sql};
use rollcage_proto::access::{Role, TokenInfo};

/// A stored token: its details and its hash; `revoked` once revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// Name, role, apps, times.
    pub info: TokenInfo,
    /// sha256 of the secret, hex.
    pub hash: String,
    /// Revoked (refused with 401, listed no more).
    pub revoked: bool,
}

/// A row as read: name, role, apps (JSON), hash, created, last used, revoked.
type Row = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

fn row(r: &crate::store::Row<'_>) -> crate::store::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn decode((name, role, apps, hash, created, used, revoked): Row) -> Result<StoredToken> {
    let role: Role =
        role.parse().map_err(
            |e: rollcage_proto::access::UnknownRole| StoreError::Corrupt {
                what: "operator_tokens.role",
                detail: e.to_string(),
            },
        )?;
    let apps: Vec<String> = serde_json::from_str(&apps).map_err(|e| StoreError::Corrupt {
        what: "operator_tokens.apps",
        detail: e.to_string(),
    })?;
    Ok(StoredToken {
        info: TokenInfo {
            name,
            role,
            apps,
            created_at_ms: created,
            last_used_ms: used,
        },
        hash,
        revoked: revoked.is_some(),
    })
}

const COLS: &str = "name, role, apps, token_hash, created_at, last_used_at, revoked_at";

/// Record a new token; `false` (nothing changed) when a token that is not revoked has the name. A revoked token's
/// row gives its name up.
pub fn insert(c: &Tx<'_>, info: &TokenInfo, hash: &str) -> Result<bool> {
    c.touch_tokens();
    c.execute(
        "DELETE FROM operator_tokens WHERE name = ?1 AND revoked_at IS NOT NULL",
        [&info.name],
    )
    .map_err(sql)?;
    let apps = serde_json::to_string(&info.apps).map_err(|e| StoreError::Corrupt {
        what: "operator_tokens.apps",
        detail: e.to_string(),
    })?;
    let n = c
        .execute(
            "INSERT INTO operator_tokens (name, role, apps, token_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            args![info.name, info.role.name(), apps, hash, info.created_at_ms],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// Revoke a live token; `false` when no live token has the name.
pub fn revoke(c: &Tx<'_>, name: &str, now: i64) -> Result<bool> {
    c.touch_tokens();
    let n = c
        .execute(
            "UPDATE operator_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            args![name, now],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// Record a use.
pub fn touch(c: &Conn<'_>, name: &str, now: i64) -> Result<()> {
    c.execute(
        "UPDATE operator_tokens SET last_used_at = ?2 WHERE name = ?1",
        args![name, now],
    )
    .map_err(sql)?;
    Ok(())
}

/// Every stored token, revoked ones included (the in-memory table at start).
pub fn all(c: &Conn<'_>) -> Result<Vec<StoredToken>> {
    let mut st = c
        .prepare(&format!("SELECT {COLS} FROM operator_tokens ORDER BY name"))
        .map_err(sql)?;
    let rows = st
        .query_map((), row)
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    rows.into_iter().map(decode).collect()
}

/// One page of the live tokens by name, after `cursor` (a name), at most `limit`.
pub fn page(c: &Conn<'_>, cursor: Option<&str>, limit: usize) -> Result<Vec<TokenInfo>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM operator_tokens WHERE revoked_at IS NULL AND name > ?1 ORDER BY name LIMIT ?2"
        ))
        .map_err(sql)?;
    let rows = st
        .query_map(
            args![
                cursor.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            row,
        )
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|r| decode(r).map(|t| t.info))
        .collect()
}

/// One token by name (revoked or not).
pub fn get(c: &Conn<'_>, name: &str) -> Result<Option<StoredToken>> {
    let r = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM operator_tokens WHERE name = ?1"
        ))
        .map_err(sql)?
        .query_row([name], row)
        .optional()
        .map_err(sql)?;
    r.map(decode).transpose()
}

/// The token whose secret hashes to `hash`, revoked ones included (another coordinator may have made it since
/// this one loaded its cache).
pub fn by_hash(c: &Conn<'_>, hash: &str) -> Result<Option<StoredToken>> {
    let r = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM operator_tokens WHERE token_hash = ?1"
        ))
        .map_err(sql)?
        .query_row([hash], row)
        .optional()
        .map_err(sql)?;
    r.map(decode).transpose()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test on an in-memory database")]
    use super::*;

    fn info(name: &str) -> TokenInfo {
        TokenInfo {
            name: name.into(),
            role: Role::Deployer,
            apps: vec!["app1".into()],
            created_at_ms: 5,
            last_used_ms: None,
        }
    }

    #[test]
    fn a_revoked_name_is_listed_no_more_and_may_be_given_again() {
        crate::store::each_backend(|s| {
            s.write(|tx| {
                assert!(insert(tx, &info("ci"), "h1")?);
                assert!(!insert(tx, &info("ci"), "h2")?, "a live name is taken");
                assert_eq!(page(tx, None, 10)?, vec![info("ci")]);
                assert!(revoke(tx, "ci", 9)?);
                assert!(!revoke(tx, "ci", 9)?);
                assert!(page(tx, None, 10)?.is_empty());
                assert!(get(tx, "ci")?.unwrap().revoked);
                assert!(insert(tx, &info("ci"), "h3")?);
                assert_eq!(get(tx, "ci")?.unwrap().hash, "h3");
                Ok::<_, StoreError>(())
            })
            .unwrap();
            Ok(())
        })
        .unwrap();
    }
}
