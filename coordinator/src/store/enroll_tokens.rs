//! Per-use enrollment tokens: created with a use count and an expiry, looked up by the sha256 of the secret (never
//! stored), used once per enrollment, revoked by an operator.
//!
//! A use is taken by [`consume`] inside the transaction that records the instance, with a conditional `UPDATE`
//! that only succeeds while the token still enrolls: two agents racing on a token's last use cannot both enroll.
//! Whether a token enrolls is the one rule of [`EnrollTokenInfo::status_at`].

use super::{Conn, OptionalExt, Row, args};
use super::{Result, sql};
use rollcage_proto::enroll::{EnrollTokenInfo, EnrollTokenSpec, EnrollTokenStatus};

const COLUMNS: &str =
    "seq, id, label, uses_allowed, uses, expires_at, created_at, last_used_at, revoked_at";

/// A row as (seq, info with its status at `now`).
fn row(r: &Row<'_>, now: i64) -> crate::store::Result<(i64, EnrollTokenInfo)> {
    let mut info = EnrollTokenInfo {
        id: r.get(1)?,
        label: r.get(2)?,
        uses_allowed: r.get(3)?,
        uses: r.get(4)?,
        expires_at_ms: r.get(5)?,
        created_at_ms: r.get(6)?,
        last_used_at_ms: r.get(7)?,
        revoked_at_ms: r.get(8)?,
        status: EnrollTokenStatus::Usable,
    };
    info.status = info.status_at(now);
    Ok((r.get(0)?, info))
}

/// Record a new token (`id` and the secret's hash are the caller's); answers its record.
pub fn insert(
    c: &Conn<'_>,
    id: &str,
    token_hash: &str,
    spec: &EnrollTokenSpec,
    now: i64,
) -> Result<EnrollTokenInfo> {
    let ttl_ms = i64::try_from(spec.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let expires = now.saturating_add(ttl_ms);
    c.execute(
        "INSERT INTO enroll_tokens (id, label, token_hash, uses_allowed, expires_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![id, spec.label, token_hash, spec.uses, expires, now],
    )
    .map_err(sql)?;
    let mut info = EnrollTokenInfo {
        id: id.to_owned(),
        label: spec.label.clone(),
        uses_allowed: spec.uses,
        uses: 0,
        expires_at_ms: expires,
        created_at_ms: now,
        last_used_at_ms: None,
        revoked_at_ms: None,
        status: EnrollTokenStatus::Usable,
    };
    info.status = info.status_at(now);
    Ok(info)
}

/// The token whose secret hashes to `token_hash`, with its status at `now`.
pub fn by_hash(c: &Conn<'_>, token_hash: &str, now: i64) -> Result<Option<EnrollTokenInfo>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM enroll_tokens WHERE token_hash = ?1"
    ))
    .map_err(sql)?
    .query_row([token_hash], |r| row(r, now))
    .optional()
    .map(|o| o.map(|(_, info)| info))
    .map_err(sql)
}

/// Token `id`, with its status at `now`.
pub fn get(c: &Conn<'_>, id: &str, now: i64) -> Result<Option<EnrollTokenInfo>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM enroll_tokens WHERE id = ?1"
    ))
    .map_err(sql)?
    .query_row([id], |r| row(r, now))
    .optional()
    .map(|o| o.map(|(_, info)| info))
    .map_err(sql)
}

/// Take one use of token `id` at `now`: `Ok(Ok(info))` with the token as it is now, or `Ok(Err(status))` (and
/// nothing changed) when it no longer enrolls: revoked, used up or expired, by this transaction's view. The
/// condition is in the `UPDATE` itself, so of two writers racing on a last use exactly one takes it.
pub fn consume(
    c: &Conn<'_>,
    id: &str,
    now: i64,
) -> Result<std::result::Result<EnrollTokenInfo, EnrollTokenStatus>> {
    let n = c
        .execute(
            "UPDATE enroll_tokens SET uses = uses + 1, last_used_at = ?2 \
             WHERE id = ?1 AND revoked_at IS NULL AND uses < uses_allowed AND expires_at > ?2",
            args![id, now],
        )
        .map_err(sql)?;
    let info = get(c, id, now)?.ok_or_else(|| super::StoreError::Corrupt {
        what: "enroll_tokens.id",
        detail: format!("token `{id}` vanished while it was used"),
    })?;
    if n == 1 {
        Ok(Ok(info))
    } else {
        // Refused: the status can only be a refusal here, but a row edited by hand must not pass as usable.
        Ok(Err(match info.status {
            EnrollTokenStatus::Usable => EnrollTokenStatus::Revoked,
            s => s,
        }))
    }
}

/// Revoke token `id` at `now` (it stops enrolling at once; instances it enrolled keep their own tokens). Revoking
/// a revoked token changes nothing. `None` when there is no such token.
pub fn revoke(c: &Conn<'_>, id: &str, now: i64) -> Result<Option<EnrollTokenInfo>> {
    c.execute(
        "UPDATE enroll_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        args![id, now],
    )
    .map_err(sql)?;
    get(c, id, now)
}

/// Up to `limit` tokens as (seq, info), oldest first, those after `after` (the paging cursor: a `seq`) when given.
pub fn page(
    c: &Conn<'_>,
    after: Option<i64>,
    limit: usize,
    now: i64,
) -> Result<Vec<(i64, EnrollTokenInfo)>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM enroll_tokens WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .map_err(sql)?;
    let rows = st
        .query_map(
            args![after.unwrap_or(0), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| row(r, now),
        )
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(uses: u32, ttl_secs: u64) -> EnrollTokenSpec {
        EnrollTokenSpec {
            uses,
            ttl_secs,
            label: "batch".into(),
        }
    }

    #[test]
    fn uses_are_counted_and_refused_past_the_count_expiry_or_revocation() -> Result<()> {
        crate::store::each_backend(|store| {
            store.write(|tx| {
                let t = insert(tx, "et-1", "h1", &spec(2, 10), 1_000)?;
                assert_eq!(
                    (t.expires_at_ms, t.status),
                    (11_000, EnrollTokenStatus::Usable)
                );
                assert_eq!(
                    by_hash(tx, "h1", 1_000)?.map(|i| i.id).as_deref(),
                    Some("et-1")
                );
                assert_eq!(by_hash(tx, "nope", 1_000)?, None);
                let used = consume(tx, "et-1", 2_000)?.map_err(|s| s.to_string());
                assert_eq!(
                    used.as_ref().map(|i| (i.uses, i.last_used_at_ms)),
                    Ok((1, Some(2_000)))
                );
                assert!(consume(tx, "et-1", 3_000)?.is_ok());
                assert_eq!(consume(tx, "et-1", 4_000)?, Err(EnrollTokenStatus::UsedUp));
                assert_eq!(get(tx, "et-1", 4_000)?.map(|i| i.uses), Some(2));

                insert(tx, "et-2", "h2", &spec(5, 10), 1_000)?;
                assert_eq!(
                    consume(tx, "et-2", 11_000)?,
                    Err(EnrollTokenStatus::Expired)
                );
                insert(tx, "et-3", "h3", &spec(5, 10), 1_000)?;
                let revoked = revoke(tx, "et-3", 1_500)?.map(|i| (i.status, i.revoked_at_ms));
                assert_eq!(revoked, Some((EnrollTokenStatus::Revoked, Some(1_500))));
                // Revoking again keeps the first time.
                assert_eq!(
                    revoke(tx, "et-3", 9_000)?.and_then(|i| i.revoked_at_ms),
                    Some(1_500)
                );
                assert_eq!(consume(tx, "et-3", 1_600)?, Err(EnrollTokenStatus::Revoked));
                assert_eq!(revoke(tx, "et-9", 1_600)?, None);

                let all = page(tx, None, 10, 1_600)?;
                let ids: Vec<&str> = all.iter().map(|(_, i)| i.id.as_str()).collect();
                assert_eq!(ids, ["et-1", "et-2", "et-3"]);
                let rest = page(tx, Some(all[0].0), 1, 1_600)?;
                assert_eq!(rest.len(), 1);
                assert_eq!(rest[0].1.id, "et-2");
                Ok(())
            })
        })
    }
}
