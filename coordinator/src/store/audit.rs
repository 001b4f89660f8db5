//! The audit trail: every state-changing request and every refusal, with who, role, action, target, result, time
//! and remote address (never a secret: the recorder in `api::guard` only ever passes token names).
//!
//! Growth is bounded by retention: entries older than the coordinator's retention are pruned hourly with the step
//! logs ([`prune`], `server::prune_logs`); reads are paged, newest first.

use super::{Conn, args};
use super::{Result, sql};
use rollcage_proto::access::AuditEntry;

/// Longest outcome text kept: a refusal's message, not a body.
pub const MAX_OUTCOME: usize = 300;

/// Append one entry (its `seq` is assigned here; the one given is ignored).
pub fn record(c: &Conn<'_>, e: &AuditEntry) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO audit (at, actor, role, action, target, status, outcome, remote_addr) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(sql)?
    .execute(args![
        e.at_ms,
        e.actor,
        e.role,
        e.action,
        e.target,
        e.status,
        rollcage_proto::clip::clip_head(&e.outcome, MAX_OUTCOME),
        e.remote_addr
    ])
    .map_err(sql)?;
    Ok(())
}

/// Which entries to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Recorded at or after (ms).
    pub since_ms: Option<i64>,
    /// Of this actor.
    pub actor: Option<&'a str>,
}

/// Entries newest first, with `seq` below `before` (the cursor), at most `limit`.
pub fn page(
    c: &Conn<'_>,
    f: Filter<'_>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    let mut st = c
        .prepare_cached(
            "SELECT seq, at, actor, role, action, target, status, outcome, remote_addr FROM audit \
             WHERE seq < ?1 AND at >= ?2 AND (actor = ?3 OR ?3 IS NULL) ORDER BY seq DESC LIMIT ?4",
        )
        .map_err(sql)?;
    let rows = st
        .query_map(
            args![
                before.unwrap_or(i64::MAX),
                f.since_ms.unwrap_or(i64::MIN),
                f.actor,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    role: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    status: r.get(6)?,
                    outcome: r.get(7)?,
                    remote_addr: r.get(8)?,
                })
            },
        )
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Delete the entries recorded before `cut` (ms); returns how many.
pub fn prune(c: &Conn<'_>, cut: i64) -> Result<usize> {
    c.execute("DELETE FROM audit WHERE at < ?1", [cut])
        .map_err(sql)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test on an in-memory database")]
    use super::*;
    use crate::store::StoreError;

    fn entry(at: i64, actor: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_ms: at,
            actor: actor.into(),
            role: Some("viewer".into()),
            action: "deployment.stop".into(),
            target: "d-1".into(),
            status: 403,
            outcome: "x".repeat(1000),
            remote_addr: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn pages_newest_first_filtered_and_pruned_by_age() {
        crate::store::each_backend(|s| {
            s.write(|tx| {
                for (at, who) in [(10, "a"), (20, "b"), (30, "a"), (40, "a")] {
                    record(tx, &entry(at, who))?;
                }
                let all = page(tx, Filter::default(), None, 10)?;
                assert_eq!(
                    all.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
                    [40, 30, 20, 10]
                );
                assert!(
                    all[0].outcome.len() <= MAX_OUTCOME
                        && all[0].outcome.contains("1000 bytes in all")
                );
                let a = page(
                    tx,
                    Filter {
                        since_ms: Some(20),
                        actor: Some("a"),
                    },
                    None,
                    1,
                )?;
                assert_eq!(a.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [40]);
                let next = page(
                    tx,
                    Filter {
                        since_ms: Some(20),
                        actor: Some("a"),
                    },
                    Some(a[0].seq),
                    10,
                )?;
                assert_eq!(next.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [30]);
                assert_eq!(prune(tx, 30)?, 2);
                assert_eq!(page(tx, Filter::default(), None, 10)?.len(), 2);
                Ok::<_, StoreError>(())
            })
            .unwrap();
            Ok(())
        })
        .unwrap();
    }
}
