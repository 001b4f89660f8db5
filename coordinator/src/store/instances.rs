//! Enrolled instances (agents), their hashed tokens and their approval state.
//!
//! A name is owned: enrolling under a name that is enrolled changes nothing (the agent holding it keeps its token
//! and its work); an operator removes the instance first to let another enrollment take the name. A `pending`
//! instance (enrolled under `--enroll-approval`) is given no work until [`approve`]d.

use super::{Conn, OptionalExt, Tx, args};
use super::{Result, decode, sql};
use rollcage_proto::tags::{TagFilter, Tags};
use rollcage_proto::wire::{DeploymentStatus, InstalledRevision, InstanceState};

/// What to record about a new instance.
#[derive(Debug, Clone, Copy)]
pub struct Enrollment<'a> {
    /// Its name.
    pub name: &'a str,
    /// The sha256 of its own token.
    pub token_hash: &'a str,
    /// Pending (approval mode) or approved.
    pub state: InstanceState,
    /// The enrollment token used: a per-use token's id, or `standing`.
    pub enrolled_with: &'a str,
}

/// Record a new instance; `false` (and nothing changed) when the name is already enrolled.
pub fn enroll(c: &Conn<'_>, e: &Enrollment<'_>, now: i64) -> Result<bool> {
    let n = c
        .execute(
            "INSERT INTO instances (name, token_hash, enrolled_at, state, enrolled_with) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            args![e.name, e.token_hash, now, e.state.name(), e.enrolled_with],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// Approve instance `name`: its state after (approving an approved one changes nothing), `None` when it is not
/// enrolled.
pub fn approve(c: &Conn<'_>, name: &str) -> Result<Option<Row>> {
    c.execute(
        "UPDATE instances SET state = ?2 WHERE name = ?1",
        args![name, InstanceState::Approved.name()],
    )
    .map_err(sql)?;
    get(c, name)
}

/// Whether instance `name` is enrolled and pending approval.
pub fn is_pending(c: &Conn<'_>, name: &str) -> Result<bool> {
    c.prepare_cached("SELECT 1 FROM instances WHERE name = ?1 AND state = ?2")
        .map_err(sql)?
        .exists(args![name, InstanceState::Pending.name()])
        .map_err(sql)
}

/// Instance `name`'s state; `None` when it is not enrolled (never, or removed).
pub fn state_of(c: &Conn<'_>, name: &str) -> Result<Option<InstanceState>> {
    let state: Option<String> = c
        .prepare_cached("SELECT state FROM instances WHERE name = ?1")
        .map_err(sql)?
        .query_row([name], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    state.map(|s| decode("instances.state", &s)).transpose()
}

/// Which of `names` are pending approval, in `names`' order.
pub fn pending_among(c: &Conn<'_>, names: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names {
        if is_pending(c, n)? {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// The approved instances, by name: what a group that names none ("every enrolled instance") deploys to.
pub fn approved(c: &Conn<'_>) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached("SELECT name FROM instances WHERE state = ?1 ORDER BY name")
        .map_err(sql)?;
    let rows = st
        .query_map([InstanceState::Approved.name()], |r| r.get(0))
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// An instance as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its name.
    pub name: String,
    /// When it enrolled.
    pub enrolled_at: i64,
    /// Pending or approved.
    pub state: InstanceState,
    /// The enrollment token used (`None` for an instance enrolled before this was recorded).
    pub enrolled_with: Option<String>,
    /// Its tags, as its agent last sent them.
    pub tags: Tags,
}

const ROW_COLUMNS: &str = "name, enrolled_at, state, enrolled_with, tags";

fn read_row(r: &crate::store::Row<'_>) -> crate::store::Result<(Row, String, String)> {
    let state: String = r.get(2)?;
    let tags: String = r.get(4)?;
    Ok((
        Row {
            name: r.get(0)?,
            enrolled_at: r.get(1)?,
            state: InstanceState::Approved,
            enrolled_with: r.get(3)?,
            tags: Tags::new(),
        },
        state,
        tags,
    ))
}

fn decoded((mut row, state, tags): (Row, String, String)) -> Result<Row> {
    row.state = decode("instances.state", &state)?;
    row.tags = decode_tags(&tags)?;
    Ok(row)
}

fn decode_tags(text: &str) -> Result<Tags> {
    serde_json::from_str(text).map_err(|e| super::StoreError::Corrupt {
        what: "instances.tags",
        detail: format!("{e}: {text}"),
    })
}

/// Record instance `name`'s tags (replacing what was recorded); `false` when it is not enrolled.
pub fn set_tags(c: &Conn<'_>, name: &str, tags: &Tags) -> Result<bool> {
    let text = serde_json::to_string(tags).unwrap_or_else(|_| "{}".to_owned());
    let n = c
        .execute(
            "UPDATE instances SET tags = ?2 WHERE name = ?1",
            args![name, text],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// The approved instances whose tags `filter` selects, by name.
pub fn approved_matching(c: &Conn<'_>, filter: &TagFilter) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached("SELECT name, tags FROM instances WHERE state = ?1 ORDER BY name")
        .map_err(sql)?;
    let rows: Vec<(String, String)> = st
        .query_map([InstanceState::Approved.name()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sql)?
        .collect::<crate::store::Result<_>>()
        .map_err(sql)?;
    let mut out = Vec::new();
    for (name, tags) in rows {
        if filter.matches(&decode_tags(&tags)?) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Per application and group, the revision instance `name` last installed successfully: its newest deployment of
/// the group that succeeded on it.
pub fn installed(c: &Conn<'_>, name: &str) -> Result<Vec<InstalledRevision>> {
    let mut st = c
        .prepare_cached(
            "SELECT d.application, d.group_name, d.revision, d.id FROM deployment_instances di \
             JOIN deployments d ON d.id = di.deployment_id \
             WHERE di.instance = ?1 AND di.status = 'succeeded' AND d.seq = ( \
                 SELECT MAX(d2.seq) FROM deployment_instances di2 JOIN deployments d2 ON d2.id = di2.deployment_id \
                 WHERE di2.instance = ?1 AND di2.status = 'succeeded' AND d2.group_id = d.group_id) \
             ORDER BY d.application, d.group_name",
        )
        .map_err(sql)?;
    let rows = st
        .query_map([name], |r| {
            Ok(InstalledRevision {
                application: r.get(0)?,
                group: r.get(1)?,
                revision: r.get(2)?,
                deployment: r.get(3)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Instance `name`.
pub fn get(c: &Conn<'_>, name: &str) -> Result<Option<Row>> {
    c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM instances WHERE name = ?1"
    ))
    .map_err(sql)?
    .query_row([name], read_row)
    .optional()
    .map_err(sql)?
    .map(decoded)
    .transpose()
}

/// Forget an instance (its token stops working; its name may be enrolled again); `false` when it was not enrolled.
pub fn remove(c: &Tx<'_>, name: &str, now: i64) -> Result<bool> {
    c.touch_tokens();
    // Wakes its agent's waiting poll, which then learns it was removed.
    c.touch_instance(name);
    // Its token is remembered as removed, so its agent learns why it is refused.
    c.execute(
        "INSERT INTO removed_instances (token_hash, name, removed_at) \
         SELECT token_hash, name, ?2 FROM instances WHERE name = ?1 ON CONFLICT DO NOTHING",
        args![name, now],
    )
    .map_err(sql)?;
    let n = c
        .execute("DELETE FROM instances WHERE name = ?1", [name])
        .map_err(sql)?;
    Ok(n == 1)
}

/// The name of the removed instance whose token had `hash`, if one had it.
pub fn removed_by_token_hash(c: &Conn<'_>, hash: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT name FROM removed_instances WHERE token_hash = ?1",
        [hash],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

/// The deployments not yet ended (in progress, stopping or ready) that include the instance, oldest first.
pub fn active_deployments(c: &Conn<'_>, name: &str) -> Result<Vec<String>> {
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
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Which of `names` are enrolled.
pub fn enrolled_among(
    c: &Conn<'_>,
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
pub fn all(c: &Conn<'_>) -> Result<Vec<(String, String, i64)>> {
    let mut st = c
        .prepare("SELECT name, token_hash, enrolled_at FROM instances ORDER BY name")
        .map_err(sql)?;
    let rows = st
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// The instance whose agent token hashes to `hash` (another coordinator may have enrolled it since this one loaded
/// its cache).
pub fn by_token_hash(c: &Conn<'_>, hash: &str) -> Result<Option<String>> {
    Ok(c.query_map(
        "SELECT name FROM instances WHERE token_hash = ?1",
        [hash],
        |r| r.get(0),
    )
    .map_err(sql)?
    .into_iter()
    .next())
}

/// Record when agents were last heard from (ms), as this coordinator saw them; a later time only.
pub fn record_seen(c: &Conn<'_>, seen: &[(String, i64)]) -> Result<()> {
    for (name, at) in seen {
        c.execute(
            "UPDATE instances SET last_seen_at = ?2 WHERE name = ?1 AND (last_seen_at < ?2 OR last_seen_at IS NULL)",
            args![name, at],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// When each agent was last heard from by any coordinator (ms), for those recorded.
pub fn last_seen_all(c: &Conn<'_>) -> Result<Vec<(String, i64)>> {
    c.query_map(
        "SELECT name, last_seen_at FROM instances WHERE last_seen_at IS NOT NULL",
        (),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(sql)
}

/// Up to `limit` instances, by name, those after `after` (the paging cursor: a name) when given.
pub fn page(c: &Conn<'_>, after: Option<&str>, limit: usize) -> Result<Vec<Row>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM instances WHERE name > ?1 ORDER BY name LIMIT ?2"
        ))
        .map_err(sql)?;
    let rows = st
        .query_map(
            args![
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            read_row,
        )
        .map_err(sql)?;
    rows.map(|r| r.map_err(sql).and_then(decoded)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_enrolled_once_until_it_is_removed() -> Result<()> {
        crate::store::each_backend(|store| {
            let e = |name, token_hash| Enrollment {
                name,
                token_hash,
                state: InstanceState::Approved,
                enrolled_with: "standing",
            };
            store.write(|tx| {
                assert!(enroll(tx, &e("i1", "h1"), 1)?);
                assert!(!enroll(tx, &e("i1", "h2"), 2)?);
                assert_eq!(all(tx)?, [("i1".to_owned(), "h1".to_owned(), 1)]);
                assert!(remove(tx, "i1", 5)?);
                assert!(!remove(tx, "i1", 6)?);
                assert!(enroll(tx, &e("i1", "h3"), 3)?);
                assert_eq!(all(tx)?, [("i1".to_owned(), "h3".to_owned(), 3)]);
                let among = enrolled_among(tx, &["i1".to_owned(), "i2".to_owned()])?;
                assert_eq!(among.into_iter().collect::<Vec<_>>(), ["i1"]);
                assert_eq!(active_deployments(tx, "i1")?, Vec::<String>::new());
                Ok(())
            })
        })
    }

    #[test]
    fn a_pending_instance_is_left_out_until_approved() -> Result<()> {
        crate::store::each_backend(|store| {
            store.write(|tx| {
                for (name, state) in [
                    ("a", InstanceState::Approved),
                    ("p", InstanceState::Pending),
                ] {
                    let e = Enrollment {
                        name,
                        token_hash: name,
                        state,
                        enrolled_with: "et-1",
                    };
                    assert!(enroll(tx, &e, 5)?);
                }
                assert_eq!(approved(tx)?, ["a"]);
                let names = ["a".to_owned(), "p".to_owned(), "x".to_owned()];
                assert_eq!(pending_among(tx, &names)?, ["p"]);
                assert!(is_pending(tx, "p")? && !is_pending(tx, "a")? && !is_pending(tx, "x")?);
                let listed: Vec<_> = page(tx, None, 10)?
                    .into_iter()
                    .map(|r| (r.name, r.state))
                    .collect();
                assert_eq!(
                    listed,
                    [
                        ("a".to_owned(), InstanceState::Approved),
                        ("p".to_owned(), InstanceState::Pending)
                    ]
                );
                let p = approve(tx, "p")?.map(|r| (r.state, r.enrolled_with));
                assert_eq!(p, Some((InstanceState::Approved, Some("et-1".to_owned()))));
                assert_eq!(approved(tx)?, ["a", "p"]);
                assert_eq!(approve(tx, "x")?, None);
                Ok(())
            })
        })
    }
}
