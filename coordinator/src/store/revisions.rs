//! Revisions: archives uploaded to the coordinator (stored by sha256 under `DATA/bundles/`) or external URLs.

use super::{Result, sql};
use rollcage_proto::wire::{Revision, RevisionSource};
use rusqlite::{Connection, OptionalExtension, params};

/// The revision id of an archive: `r-` and the first 16 hex digits of its sha256 (the same bundle pushed twice
/// is the same revision).
pub fn revision_id(sha256: &str) -> String {
    format!("r-{}", &sha256[..sha256.len().min(16)])
}

/// Insert a revision unless it exists; returns the stored one either way.
pub fn upsert(
    c: &Connection,
    app: &str,
    sha256: &str,
    url: Option<&str>,
    size: u64,
    now: i64,
) -> Result<Revision> {
    let id = revision_id(sha256);
    c.execute(
        "INSERT OR IGNORE INTO revisions (application, id, sha256, url, size, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            app,
            id,
            sha256,
            url,
            i64::try_from(size).unwrap_or(i64::MAX),
            now
        ],
    )
    .map_err(sql)?;
    get(c, app, &id)?.ok_or_else(|| super::StoreError::Corrupt {
        what: "revisions",
        detail: format!("revision {id} vanished after insert"),
    })
}

/// One revision.
pub fn get(c: &Connection, app: &str, id: &str) -> Result<Option<Revision>> {
    c.prepare_cached(
        "SELECT id, application, sha256, url, size, downloads, created_at FROM revisions \
         WHERE application = ?1 AND id = ?2",
    )
    .map_err(sql)?
    .query_row([app, id], |r| {
        let url: Option<String> = r.get(3)?;
        let size = u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0);
        Ok(Revision {
            id: r.get(0)?,
            application: r.get(1)?,
            sha256: r.get(2)?,
            source: match url {
                Some(url) => RevisionSource::Url { url },
                None => RevisionSource::Uploaded { size },
            },
            downloads: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            created_at_ms: r.get(6)?,
        })
    })
    .optional()
    .map_err(sql)
}

/// Count one download of the revision's archive.
pub fn count_download(c: &Connection, app: &str, id: &str) -> Result<()> {
    c.execute(
        "UPDATE revisions SET downloads = downloads + 1 WHERE application = ?1 AND id = ?2",
        [app, id],
    )
    .map_err(sql)?;
    Ok(())
}
