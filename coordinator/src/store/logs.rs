//! Step logs: the full hook output agents attach to their step reports, one row per step (keyed by the step's
//! command id, so a re-sent report is not stored twice), read back as a cursor-paged stream per deployment.

use super::deployments::StepRow;
use super::{Conn, args};
use super::{Result, Tx, decode, sql};
use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::{StepLog, StepLogEntry};

/// The most the coordinator keeps of one step's output, whatever the agent sends: a misbehaving or hostile agent
/// must not fill the disk (reports are also capped at 2 MB per body). Four times the agents' default bound.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// Most entries one page returns.
pub const PAGE_ENTRIES: usize = 200;

/// A page stops growing once its text reaches this many bytes (it always holds at least one entry), so a
/// follower of a deployment with many large logs gets bounded answers.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Which entries of a deployment to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter<'a> {
    /// Only this instance's.
    pub instance: Option<&'a str>,
    /// Only this event's.
    pub event: Option<LifecycleEvent>,
}

/// Store `log` as the output of `step` (cut to [`MAX_ENTRY_BYTES`], newest bytes kept). Returns `false` when the
/// step already has a log (a re-sent report). A stored log touches its deployment (`logs` long polls re-read).
pub fn insert(c: &Tx<'_>, step: &StepRow, log: &StepLog, now: i64) -> Result<bool> {
    let kept = log.clone().keep_newest(MAX_ENTRY_BYTES);
    let n = c
        .prepare_cached(
            "INSERT INTO step_logs \
             (step_id, deployment_id, instance, event, text, truncated_bytes, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )
        .map_err(sql)?
        .execute(args![
            step.id,
            step.deployment_id,
            step.instance,
            step.event.name(),
            kept.text,
            i64::try_from(kept.truncated_bytes).unwrap_or(i64::MAX),
            now,
        ])
        .map_err(sql)?;
    if n > 0 {
        c.touch_deployment(&step.deployment_id);
    }
    Ok(n > 0)
}

/// Delete the logs of every deployment that ended before `ended_before` (ms since the epoch); deployments still
/// running, or ended since, keep theirs. Returns the entries deleted.
pub fn prune(c: &Conn<'_>, ended_before: i64) -> Result<usize> {
    c.prepare_cached(
        "DELETE FROM step_logs WHERE deployment_id IN \
         (SELECT id FROM deployments WHERE ended_at IS NOT NULL AND ended_at < ?1)",
    )
    .map_err(sql)?
    .execute(args![ended_before])
    .map_err(sql)
}

/// The deployment's entries with `seq > after` that pass `filter`, oldest first, at most [`PAGE_ENTRIES`] and
/// about [`PAGE_BYTES`].
pub fn page(
    c: &Conn<'_>,
    deployment_id: &str,
    filter: Filter<'_>,
    after: i64,
) -> Result<Vec<StepLogEntry>> {
    let mut st = c
        .prepare_cached(
            "SELECT seq, instance, event, text, truncated_bytes, recorded_at FROM step_logs \
             WHERE deployment_id = ?1 AND seq > ?2 AND (instance = ?3 OR ?3 IS NULL) \
             AND (event = ?4 OR ?4 IS NULL) ORDER BY seq LIMIT ?5",
        )
        .map_err(sql)?;
    let rows = st
        .query_map(
            args![
                deployment_id,
                after,
                filter.instance,
                filter.event.map(LifecycleEvent::name),
                PAGE_ENTRIES as i64,
            ],
            |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<i64>(4)?,
                    r.get::<i64>(5)?,
                ))
            },
        )
        .map_err(sql)?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        if bytes >= PAGE_BYTES {
            break;
        }
        let (seq, instance, event, text, truncated, recorded_at) = row.map_err(sql)?;
        bytes += text.len();
        out.push(StepLogEntry {
            seq,
            instance,
            event: decode("step_logs.event", &event)?,
            text,
            truncated_bytes: u64::try_from(truncated).unwrap_or(0),
            recorded_at_ms: recorded_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use rollcage_proto::wire::StepState;

    fn step(id: i64, dep: &str, instance: &str, event: LifecycleEvent) -> StepRow {
        StepRow {
            id,
            deployment_id: dep.into(),
            instance: instance.into(),
            idx: 0,
            event,
            state: StepState::Running,
        }
    }

    fn log(text: &str) -> StepLog {
        StepLog {
            text: text.into(),
            truncated_bytes: 0,
        }
    }

    /// A deployment row with only what the schema requires.
    fn deployment(c: &Conn<'_>, id: &str, ended_at: Option<i64>) -> Result<()> {
        c.execute(
            "INSERT INTO deployments (id, application, group_name, group_id, revision, style, concurrency, \
             failure_tolerance, auto_rollback, status, created_at, ended_at) \
             VALUES (?1, 'a', 'g', 'g', 'r', 'in-place', 'all', 0, 0, ?2, 0, ?3)",
            args![id, if ended_at.is_some() { "succeeded" } else { "in_progress" }, ended_at],
        )
        .map_err(sql)?;
        Ok(())
    }

    #[test]
    fn pruning_deletes_only_the_logs_of_deployments_that_ended_before_the_cut() -> Result<()> {
        crate::store::each_backend(|s| {
            s.write(|tx| {
                deployment(tx, "d-old", Some(1_000))?;
                deployment(tx, "d-recent", Some(5_000))?;
                deployment(tx, "d-running", None)?;
                for (id, dep) in [
                    (1, "d-old"),
                    (2, "d-old"),
                    (3, "d-recent"),
                    (4, "d-running"),
                ] {
                    insert(
                        tx,
                        &step(id, dep, "i-1", LifecycleEvent::Install),
                        &log("x\n"),
                        0,
                    )?;
                }
                Ok::<_, StoreError>(())
            })?;
            assert_eq!(s.write(|tx| prune(tx, 2_000))?, 2);
            let left = |dep: &str| s.read(|c| page(c, dep, Filter::default(), 0).map(|p| p.len()));
            assert_eq!(left("d-old")?, 0);
            assert_eq!(left("d-recent")?, 1);
            assert_eq!(left("d-running")?, 1);
            assert_eq!(s.write(|tx| prune(tx, 2_000))?, 0, "nothing left to prune");
            Ok(())
        })
    }

    #[test]
    fn a_repeated_report_is_stored_once() -> Result<()> {
        crate::store::each_backend(|s| {
            let st = step(7, "d-1", "i-1", LifecycleEvent::Install);
            assert!(s.write(|tx| insert(tx, &st, &log("first\n"), 1))?);
            assert!(!s.write(|tx| insert(tx, &st, &log("again\n"), 2))?);
            let all = s.read(|c| page(c, "d-1", Filter::default(), 0))?;
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].text, "first\n");
            assert_eq!(all[0].event, LifecycleEvent::Install);
            assert_eq!(all[0].recorded_at_ms, 1);
            Ok(())
        })
    }

    #[test]
    fn pages_filter_by_instance_and_event_and_follow_the_cursor() -> Result<()> {
        crate::store::each_backend(|s| {
            let rows = [
                step(1, "d-1", "i-1", LifecycleEvent::BeforeInstall),
                step(2, "d-1", "i-2", LifecycleEvent::BeforeInstall),
                step(3, "d-2", "i-1", LifecycleEvent::BeforeInstall),
                step(4, "d-1", "i-1", LifecycleEvent::AfterInstall),
                step(5, "d-1", "i-2", LifecycleEvent::AfterInstall),
            ];
            for r in &rows {
                s.write(|tx| insert(tx, r, &log(&format!("step {}\n", r.id)), 0))?;
            }
            let texts = |f: Filter<'_>, after: i64| -> Result<Vec<String>> {
                Ok(s.read(|c| page(c, "d-1", f, after))?
                    .into_iter()
                    .map(|e| e.text)
                    .collect())
            };
            assert_eq!(
                texts(Filter::default(), 0)?,
                ["step 1\n", "step 2\n", "step 4\n", "step 5\n"]
            );
            let i1 = Filter {
                instance: Some("i-1"),
                event: None,
            };
            assert_eq!(texts(i1, 0)?, ["step 1\n", "step 4\n"]);
            let after = Filter {
                instance: None,
                event: Some(LifecycleEvent::AfterInstall),
            };
            assert_eq!(texts(after, 0)?, ["step 4\n", "step 5\n"]);
            // The cursor: only entries after the last one seen.
            let first = s.read(|c| page(c, "d-1", Filter::default(), 0))?;
            let cursor = first[1].seq;
            assert_eq!(texts(Filter::default(), cursor)?, ["step 4\n", "step 5\n"]);
            let last = first.last().map(|e| e.seq).unwrap_or(0);
            assert!(texts(Filter::default(), last)?.is_empty());
            Ok(())
        })
    }

    #[test]
    fn the_server_cap_holds_even_if_the_agent_lies() -> Result<()> {
        crate::store::each_backend(|s| {
            let big = "a line of output\n".repeat(MAX_ENTRY_BYTES / 8);
            // Claims nothing was cut, and sends twice the cap.
            let lying = StepLog {
                text: big.clone(),
                truncated_bytes: 0,
            };
            s.write(|tx| {
                insert(
                    tx,
                    &step(1, "d-1", "i-1", LifecycleEvent::Install),
                    &lying,
                    0,
                )
            })?;
            let e = s.read(|c| page(c, "d-1", Filter::default(), 0))?;
            assert!(e[0].text.len() <= MAX_ENTRY_BYTES, "{}", e[0].text.len());
            assert!(e[0].text.starts_with("a line"));
            assert_eq!(
                e[0].text.len() as u64 + e[0].truncated_bytes,
                big.len() as u64
            );
            let stored: i64 = s.read(|c| {
                c.query_row("SELECT SUM(OCTET_LENGTH(text)) FROM step_logs", (), |r| {
                    r.get(0)
                })
                .map_err(|e| StoreError::Corrupt {
                    what: "test",
                    detail: e.to_string(),
                })
            })?;
            assert!(stored as usize <= MAX_ENTRY_BYTES);
            Ok(())
        })
    }
}
