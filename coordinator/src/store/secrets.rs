//! The bootstrap tokens (admin, enrollment, metrics) that every coordinator sharing a database accepts: only
//! their sha256, so a coordinator started with no token file of its own accepts the others' tokens, and one started
//! with a different file is refused at start (see `server::shared_token`).

use super::{Conn, Result, args, sql};

/// The stored hash of secret `name`, if any coordinator recorded one.
pub fn get(c: &Conn<'_>, name: &str) -> Result<Option<String>> {
    Ok(c.query_map(
        "SELECT hash FROM shared_secrets WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .map_err(sql)?
    .into_iter()
    .next())
}

/// Record `hash` for `name` unless one is recorded; the hash that holds afterwards (the first writer's).
pub fn put_first(c: &Conn<'_>, name: &str, hash: &str) -> Result<String> {
    c.execute(
        "INSERT INTO shared_secrets (name, hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        args![name, hash],
    )
    .map_err(sql)?;
    Ok(get(c, name)?.unwrap_or_else(|| hash.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_hash_recorded_holds() -> Result<()> {
        crate::store::each_backend(|s| {
            s.write(|tx| {
                assert_eq!(get(tx, "admin-token")?, None);
                assert_eq!(put_first(tx, "admin-token", "h1")?, "h1");
                assert_eq!(put_first(tx, "admin-token", "h2")?, "h1");
                assert_eq!(get(tx, "admin-token")?.as_deref(), Some("h1"));
                Ok(())
            })
        })
    }
}
