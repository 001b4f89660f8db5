//! Enrolled instances (agents) and their hashed tokens.

use super::{Result, sql};
use rusqlite::{Connection, params};

/// Record an instance's token hash (re-enrolling replaces the token: the old one stops working).
pub fn enroll(c: &Connection, name: &str, token_hash: &str, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO instances (name, token_hash, enrolled_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(name) DO UPDATE SET token_hash = excluded.token_hash",
        params![name, token_hash, now],
    )
    .map_err(sql)?;
    Ok(())
}

/// Every instance: (name, token hash, enrolled at), by name.
pub fn all(c: &Connection) -> Result<Vec<(String, String, i64)>> {
    let mut st = c
        .prepare("SELECT name, token_hash, enrolled_at FROM instances ORDER BY name")
        .map_err(sql)?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql)
}
