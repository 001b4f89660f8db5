//! Revisions: archives uploaded to the coordinator (stored by sha256: in `DATA/bundles/`, or in PostgreSQL; see
//! [`crate::bundles`]) or external URLs.
//!
//! One source per revision id: the id comes from the archive's sha256, so the same archive is one revision, and
//! [`register`] decides what a second registration of it does ([`decide`]): the same source again changes
//! nothing; an upload of an archive registered by URL makes the coordinator its source (the agents then get the
//! identical, sha-checked bytes from the coordinator, which an operator pushing the archive is asking for); a URL
//! for an uploaded archive, or a different URL, is refused, naming the revision and the source it keeps.
//!
//! A registration that carries a signature (checked by the API before it gets here) sets the revision's signature,
//! replacing one it had (a revision re-signed, e.g. by another key); one without keeps it. The coordinator holds
//! no trusted keys: agents decide whether the signer is trusted.

use super::{Conn, OptionalExt, args};
use super::{Result, sql};
use rollcage_proto::wire::{Revision, RevisionSource};

/// The revision id of an archive: `r-` and the first 16 hex digits of its sha256 (the same bundle pushed twice
/// is the same revision).
pub fn revision_id(sha256: &str) -> String {
    format!("r-{}", &sha256[..sha256.len().min(16)])
}

/// A revision's signature as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// The armored SSHSIG.
    pub armored: String,
    /// The signer key it names (`ssh-ed25519 SHA256:…`).
    pub signed_by: String,
}

/// Set the signature of revision `id` of `app`.
pub fn set_signature(c: &Conn<'_>, app: &str, id: &str, sig: &StoredSignature) -> Result<()> {
    c.execute(
        "UPDATE revisions SET signature = ?3, signed_by = ?4 WHERE application = ?1 AND id = ?2",
        args![app, id, sig.armored, sig.signed_by],
    )
    .map_err(sql)?;
    Ok(())
}

/// Insert a revision unless it exists; returns the stored one either way.
pub fn upsert(
    c: &Conn<'_>,
    app: &str,
    sha256: &str,
    url: Option<&str>,
    size: u64,
    now: i64,
) -> Result<Revision> {
    let id = revision_id(sha256);
    c.execute(
        "INSERT INTO revisions (application, id, sha256, url, size, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        args![
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
pub fn get(c: &Conn<'_>, app: &str, id: &str) -> Result<Option<Revision>> {
    c.prepare_cached(
        "SELECT id, application, sha256, url, size, downloads, created_at, signed_by, signature FROM revisions \
         WHERE application = ?1 AND id = ?2",
    )
    .map_err(sql)?
    .query_row([app, id], |r| {
        let url: Option<String> = r.get(3)?;
        let size = u64::try_from(r.get::<i64>(4)?).unwrap_or(0);
        Ok(Revision {
            id: r.get(0)?,
            application: r.get(1)?,
            sha256: r.get(2)?,
            source: match url {
                Some(url) => RevisionSource::Url { url },
                None => RevisionSource::Uploaded { size },
            },
            downloads: u64::try_from(r.get::<i64>(5)?).unwrap_or(0),
            created_at_ms: r.get(6)?,
            signed_by: r.get(7)?,
            signature: r.get(8)?,
        })
    })
    .optional()
    .map_err(sql)
}

/// Who depends on revision `app/id`: the deployments that have not ended deploying it, and the groups whose last
/// successful deployment installed it.
pub fn users(c: &Conn<'_>, app: &str, id: &str) -> Result<(Vec<String>, Vec<String>)> {
    let mut st = c
        .prepare_cached(
            "SELECT id FROM deployments WHERE application = ?1 AND revision = ?2 \
             AND status IN ('in_progress', 'stopping', 'ready') ORDER BY seq",
        )
        .map_err(sql)?;
    let active = st
        .query_map([app, id], |r| r.get(0))
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<String>>>()
        .map_err(sql)?;
    let mut st = c
        .prepare_cached(
            "SELECT d.group_name FROM deployments d WHERE d.application = ?1 AND d.revision = ?2 \
             AND d.status = 'succeeded' AND d.seq = (SELECT MAX(d2.seq) FROM deployments d2 \
             WHERE d2.group_id = d.group_id AND d2.status = 'succeeded') ORDER BY d.group_name",
        )
        .map_err(sql)?;
    let last_of = st
        .query_map([app, id], |r| r.get(0))
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<String>>>()
        .map_err(sql)?;
    Ok((active, last_of))
}

/// Forget revision `app/id` (the caller checked nothing depends on it). Its archive's bytes stay in the bundle
/// store until [`crate::bundles::Bundles::reclaim`] finds no revision naming them (another may share them).
pub fn delete(c: &Conn<'_>, app: &str, id: &str) -> Result<bool> {
    let n = c
        .execute(
            "DELETE FROM revisions WHERE application = ?1 AND id = ?2",
            [app, id],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// A page of application `app`'s revisions by id: those after `after`, at most `limit`.
pub fn page(c: &Conn<'_>, app: &str, after: Option<&str>, limit: usize) -> Result<Vec<Revision>> {
    let mut st = c
        .prepare_cached(
            "SELECT id FROM revisions WHERE application = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .map_err(sql)?;
    let ids = st
        .query_map(
            args![
                app,
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| r.get::<String>(0),
        )
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = get(c, app, &id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Count one download of the revision's archive.
pub fn count_download(c: &Conn<'_>, app: &str, id: &str) -> Result<()> {
    c.execute(
        "UPDATE revisions SET downloads = downloads + 1 WHERE application = ?1 AND id = ?2",
        [app, id],
    )
    .map_err(sql)?;
    Ok(())
}

/// What registering an archive does, given the revision already stored under its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No revision has this id: create it.
    Create,
    /// The same archive from the same source: nothing changes.
    Unchanged,
    /// An upload of an archive registered by URL: the upload becomes its source.
    BecomeUploaded,
    /// Refused: the revision keeps its source (the message says which).
    Refuse(String),
}

/// Decide a registration of the archive `sha256` from `url` (`None`: uploaded) against `existing`. Pure.
pub fn decide(existing: Option<&Revision>, sha256: &str, url: Option<&str>) -> Decision {
    let Some(rev) = existing else {
        return Decision::Create;
    };
    if rev.sha256 != sha256 {
        // Two archives whose sha256 share the id's 16 hex digits (2⁻⁶⁴ by chance).
        return Decision::Refuse(format!(
            "revision `{}` already exists for another archive (sha256 {}); this one's sha256 is {sha256}",
            rev.id, rev.sha256
        ));
    }
    match (&rev.source, url) {
        (RevisionSource::Uploaded { .. }, None) => Decision::Unchanged,
        (RevisionSource::Url { .. }, None) => Decision::BecomeUploaded,
        (RevisionSource::Url { url: have }, Some(want)) if have == want => Decision::Unchanged,
        (RevisionSource::Url { url: have }, Some(_)) => Decision::Refuse(format!(
            "revision `{}` (sha256 {sha256}) is already registered with url `{have}`; a revision has one \
             source: use it as it is, or push the archive to make the coordinator its source",
            rev.id
        )),
        (RevisionSource::Uploaded { size }, Some(_)) => Decision::Refuse(format!(
            "revision `{}` (sha256 {sha256}) is already uploaded to the coordinator ({size} bytes), which \
             serves its archive; a revision has one source, so the url is not registered",
            rev.id
        )),
    }
}

/// What [`register`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new revision.
    Created(Revision),
    /// The revision as it was (same archive, same source).
    Unchanged(Revision),
    /// The revision, whose source is now the upload (it was a URL).
    BecameUploaded(Revision),
    /// Refused ([`Decision::Refuse`]'s message); nothing changed.
    Refused(String),
}

/// Register the archive `sha256` of application `app` from `url` (`None`: uploaded, `size` bytes) as [`decide`]
/// says, with `signature` when given (see the module doc).
pub fn register(
    c: &Conn<'_>,
    app: &str,
    sha256: &str,
    url: Option<&str>,
    size: u64,
    now: i64,
    signature: Option<&StoredSignature>,
) -> Result<Registered> {
    let id = revision_id(sha256);
    let existing = get(c, app, &id)?;
    let made: fn(Revision) -> Registered = match decide(existing.as_ref(), sha256, url) {
        Decision::Create => {
            upsert(c, app, sha256, url, size, now)?;
            Registered::Created
        }
        Decision::Unchanged => Registered::Unchanged,
        Decision::BecomeUploaded => {
            c.execute(
                "UPDATE revisions SET url = NULL, size = ?3 WHERE application = ?1 AND id = ?2",
                args![app, id, i64::try_from(size).unwrap_or(i64::MAX)],
            )
            .map_err(sql)?;
            Registered::BecameUploaded
        }
        Decision::Refuse(message) => return Ok(Registered::Refused(message)),
    };
    if let Some(sig) = signature {
        set_signature(c, app, &id, sig)?;
    }
    Ok(made(get(c, app, &id)?.ok_or_else(|| vanished(&id))?))
}

fn vanished(id: &str) -> super::StoreError {
    super::StoreError::Corrupt {
        what: "revisions",
        detail: format!("revision {id} vanished"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    fn rev(source: RevisionSource) -> Revision {
        Revision {
            id: revision_id(SHA),
            application: "app".into(),
            sha256: SHA.into(),
            source,
            downloads: 0,
            created_at_ms: 0,
            signed_by: None,
            signature: None,
        }
    }

    #[test]
    fn one_source_per_revision() {
        let url = |u: &str| RevisionSource::Url { url: u.into() };
        let up = RevisionSource::Uploaded { size: 3 };
        assert_eq!(decide(None, SHA, None), Decision::Create);
        assert_eq!(decide(None, SHA, Some("https://a")), Decision::Create);
        assert_eq!(
            decide(Some(&rev(up.clone())), SHA, None),
            Decision::Unchanged
        );
        assert_eq!(
            decide(Some(&rev(url("https://a"))), SHA, Some("https://a")),
            Decision::Unchanged
        );
        assert_eq!(
            decide(Some(&rev(url("https://a"))), SHA, None),
            Decision::BecomeUploaded
        );
        let refused = |d: Decision| match d {
            Decision::Refuse(m) => m,
            other => format!("not refused: {other:?}"),
        };
        let m = refused(decide(Some(&rev(url("https://a"))), SHA, Some("https://b")));
        assert!(
            m.contains("https://a") && m.contains(&revision_id(SHA)),
            "{m}"
        );
        let m = refused(decide(Some(&rev(up)), SHA, Some("https://b")));
        assert!(
            m.contains("already uploaded") && m.contains(&revision_id(SHA)),
            "{m}"
        );
        let other = format!("{}{}", &SHA[..16], "0".repeat(48));
        let m = refused(decide(Some(&rev(url("https://a"))), &other, None));
        assert!(m.contains("another archive"), "{m}");
    }

    #[test]
    fn a_signature_is_set_replaced_and_kept_but_not_by_a_refused_registration() -> Result<()> {
        crate::store::each_backend(|store| {
            let sig = |n: &str| StoredSignature {
                armored: format!("sig {n}"),
                signed_by: format!("key {n}"),
            };
            store.write(|tx| {
                crate::store::apps::insert_application(tx, "app", 0)?;
                let signed = |r: Registered| match r {
                    Registered::Created(r)
                    | Registered::Unchanged(r)
                    | Registered::BecameUploaded(r) => (r.signature, r.signed_by),
                    Registered::Refused(m) => (Some(m), None),
                };
                let some = |a: &str, b: &str| (Some(a.to_owned()), Some(b.to_owned()));
                let url = Some("https://a/b.tgz");
                let r = register(tx, "app", SHA, url, 0, 1, Some(&sig("1")))?;
                assert_eq!(signed(r), some("sig 1", "key 1"));
                // Registered again without one: kept.
                assert_eq!(
                    signed(register(tx, "app", SHA, url, 0, 2, None)?),
                    some("sig 1", "key 1")
                );
                // Refused (another URL): nothing changes.
                let r = register(tx, "app", SHA, Some("https://other"), 0, 3, Some(&sig("2")))?;
                assert!(matches!(r, Registered::Refused(_)), "{r:?}");
                assert_eq!(
                    get(tx, "app", &revision_id(SHA))?.and_then(|r| r.signed_by),
                    Some("key 1".into())
                );
                // Pushed with another signature: replaced.
                let r = register(tx, "app", SHA, None, 9, 4, Some(&sig("3")))?;
                assert!(matches!(r, Registered::BecameUploaded(_)), "{r:?}");
                assert_eq!(signed(r), some("sig 3", "key 3"));
                Ok(())
            })
        })
    }

    #[test]
    fn an_upload_of_a_url_revision_makes_the_coordinator_its_source() -> Result<()> {
        crate::store::each_backend(|store| {
            store.write(|tx| {
                crate::store::apps::insert_application(tx, "app", 0)?;
                let first = register(tx, "app", SHA, Some("https://a/b.tgz"), 0, 1, None)?;
                assert!(matches!(first, Registered::Created(_)), "{first:?}");
                let pushed = register(tx, "app", SHA, None, 42, 2, None)?;
                let Registered::BecameUploaded(r) = pushed else {
                    panic!("{pushed:?}");
                };
                assert_eq!(r.source, RevisionSource::Uploaded { size: 42 });
                assert_eq!(r.created_at_ms, 1);
                assert_eq!(
                    get(tx, "app", &r.id)?.map(|r| r.source),
                    Some(RevisionSource::Uploaded { size: 42 })
                );
                let again = register(tx, "app", SHA, Some("https://a/b.tgz"), 0, 3, None)?;
                assert!(matches!(again, Registered::Refused(_)), "{again:?}");
                assert!(matches!(
                    register(tx, "app", SHA, None, 42, 4, None)?,
                    Registered::Unchanged(_)
                ));
                Ok(())
            })
        })
    }
}
