//! Enrolled instances (agents) and their hashed tokens.
//!
//! A name is owned: enrolling under a name that is enrolled changes nothing (the agent holding it keeps its token
//! and its work); an operator removes the instance first to let another enrollment take the name.

use super::{Result, sql};
use rollcage_proto::wire::DeploymentStatus;
use rusqlite::{Connection, params};

/// Record a new instance with its token hash; `false` (and nothing changed) when the name is already enrolled.
pub fn enroll(c: &Connection, name: &str, token_hash: &str, now: i64) -> Result<bool> {
    let n = c
        .execute(
            "INSERT OR IGNORE INTO instances (name, token_hash, enrolled_at) VALUES (?1, ?2, ?3)",
            params![name, token_hash, now],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// Forget an instance (its token stops working; its name may be enrolled again); `false` when it was not enrolled.
pub fn remove(c: &Connection, name: &str) -> Result<bool> {
    let n = c
        .execute("DELETE FROM instances WHERE name = ?1", [name])
        .map_err(sql)?;
    Ok(n == 1)
}

/// The deployments not yet ended (in progress, stopping or ready) that include the instance, oldest first.
pub fn active_deployments(c: &Connection, name: &str) -> Result<Vec<String>> {
    let active: Vec<String> = DeploymentStatus::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("'{}'", s.name()))
        .collect();
    let mut st = c
        .prepare(&format!(
            "SELECT d.id FROM deployment_instances di JOIN deployments d ON d.id = di.deployment_id \
             WHERE di.instance = ?1 AND d.status IN ({}) ORDER BY d.seq",
            active.join(", ")
        ))
        .map_err(sql)?;
    let rows = st.query_map([name], |r| r.get(0)).map_err(sql)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql)
}

/// Which of `names` are enrolled.
pub fn enrolled_among(
    c: &Connection,
    names: &[String],
) -> Result<std::collections::BTreeSet<String>> {
    let mut st = c
        .prepare_cached("SELECT 1 FROM instances WHERE name = ?1")
        .map_err(sql)?;
    let mut out = std::collections::BTreeSet::new();
    for n in names {
        if st.exists([n]).map_err(sql)? {
            out.insert(n.clone());
        }
    }
    Ok(out)
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

/// Up to `limit` instances as (name, enrolled at), by name, those after `after` (the paging cursor: a name) when
/// given.
pub fn page(c: &Connection, after: Option<&str>, limit: usize) -> Result<Vec<(String, i64)>> {
    let mut st = c
        .prepare_cached(
            "SELECT name, enrolled_at FROM instances WHERE name > ?1 ORDER BY name LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = st
        .query_map(
            params![
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_name_is_enrolled_once_until_it_is_removed() -> Result<()> {
        let store = Store::open_in_memory()?;
        store.write(|tx| {
            assert!(enroll(tx, "i1", "h1", 1)?);
            assert!(!enroll(tx, "i1", "h2", 2)?);
            assert_eq!(all(tx)?, [("i1".to_owned(), "h1".to_owned(), 1)]);
            assert!(remove(tx, "i1")?);
            assert!(!remove(tx, "i1")?);
            assert!(enroll(tx, "i1", "h3", 3)?);
            assert_eq!(all(tx)?, [("i1".to_owned(), "h3".to_owned(), 3)]);
            let among = enrolled_among(tx, &["i1".to_owned(), "i2".to_owned()])?;
            assert_eq!(among.into_iter().collect::<Vec<_>>(), ["i1"]);
            assert_eq!(active_deployments(tx, "i1")?, Vec::<String>::new());
            Ok(())
        })
    }
}
