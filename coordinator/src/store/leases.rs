//! Leases: work that must run on one coordinator at a time when several share a database (the lost-agent sweep,
//! log retention, the coordinator's own load-balancer steps). A lease is a row naming its holder and when it
//! expires; the holder renews it well before then, and once it lapses (its holder died or lost the database) any
//! coordinator may take it. On SQLite there is one coordinator, which always holds every lease.

use super::{Conn, Result, args, sql};

/// Take lease `name` for `holder` until `now + ttl_ms`, or renew it: `true` when `holder` holds it now. Taken only
/// if it is free, lapsed (`expires_at < now`) or already `holder`'s — one statement, so two coordinators asking at
/// once cannot both get it.
pub fn claim(c: &Conn<'_>, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
    let got = c
        .query_map(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < ?4 \
             RETURNING holder",
            args![name, holder, now.saturating_add(ttl_ms), now],
            |r| r.get::<String>(0),
        )
        .map_err(sql)?;
    Ok(got.first().is_some_and(|h| h == holder))
}

/// Give lease `name` up if `holder` holds it (a coordinator shutting down), so another takes over at once.
pub fn release(c: &Conn<'_>, name: &str, holder: &str) -> Result<()> {
    c.execute(
        "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
        args![name, holder],
    )
    .map_err(sql)?;
    Ok(())
}

/// Who holds lease `name` and until when, if anyone.
pub fn holder(c: &Conn<'_>, name: &str) -> Result<Option<(String, i64)>> {
    Ok(c.query_map(
        "SELECT holder, expires_at FROM leases WHERE name = ?1",
        [name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?
    .into_iter()
    .next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_until_it_lapses_or_is_released() -> Result<()> {
        crate::store::each_backend(|s| {
            s.write(|tx| {
                assert!(claim(tx, "sweep", "a", 1_000, 5_000)?);
                assert!(!claim(tx, "sweep", "b", 2_000, 5_000)?, "held by a");
                assert!(claim(tx, "sweep", "a", 3_000, 5_000)?, "a renews");
                assert_eq!(holder(tx, "sweep")?, Some(("a".into(), 8_000)));
                assert!(
                    !claim(tx, "sweep", "b", 8_000, 5_000)?,
                    "not lapsed at its expiry"
                );
                assert!(claim(tx, "sweep", "b", 8_001, 5_000)?, "lapsed: b takes it");
                assert!(!claim(tx, "sweep", "a", 8_002, 5_000)?);
                release(tx, "sweep", "a")?;
                assert_eq!(
                    holder(tx, "sweep")?.map(|h| h.0),
                    Some("b".into()),
                    "only the holder releases"
                );
                release(tx, "sweep", "b")?;
                assert!(claim(tx, "sweep", "a", 8_003, 5_000)?, "released: free");
                Ok(())
            })
        })
    }
}
