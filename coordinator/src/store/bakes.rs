//! Progressive delivery's persisted state (issue 16): one row per bake — the canary of a blue/green deployment
//! (`instance` = `''`) or one `in-place-lb` instance's analysis gate — holding the settings it runs under and its
//! [`BakeState`] (step, weight, counts, the LB window mark), and one row per judged interval holding its
//! [`Verdict`]. The state and the verdict that produced it are written in one transaction ([`record`]), so a
//! restarted coordinator (or another one on the same PostgreSQL) resumes the bake where it was.

use super::{Conn, Result, StoreError, Tx, args, sql};
use rollcage_proto::bake::{BakeProgress, BakeState, MAX_SHOWN_VERDICTS, Verdict};
use rollcage_proto::canary::AnalysisConfig;

/// The `instance` of a deployment's canary row.
pub const CANARY: &str = "";

fn corrupt(what: &'static str, e: serde_json::Error, text: &str) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: format!("{e}: {text}"),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt {
        what: "bakes (encoding)",
        detail: e.to_string(),
    })
}

/// The bake of `instance` (or [`CANARY`]) in deployment `deployment`: its settings and state.
pub fn get(
    c: &Conn<'_>,
    deployment: &str,
    instance: &str,
) -> Result<Option<(AnalysisConfig, BakeState)>> {
    let row = c
        .query_map(
            "SELECT settings, state FROM bakes WHERE deployment_id = ?1 AND instance = ?2",
            args![deployment, instance],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
        )
        .map_err(sql)?
        .into_iter()
        .next();
    row.map(|(cfg, state)| {
        Ok((
            serde_json::from_str(&cfg).map_err(|e| corrupt("bakes.settings", e, &cfg))?,
            serde_json::from_str(&state).map_err(|e| corrupt("bakes.state", e, &state))?,
        ))
    })
    .transpose()
}

/// Write the bake's state (creating its row with `cfg` the first time), and `verdict` if this state came from one.
pub fn record(
    c: &Tx<'_>,
    deployment: &str,
    instance: &str,
    cfg: &AnalysisConfig,
    state: &BakeState,
    verdict: Option<&Verdict>,
    now: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO bakes (deployment_id, instance, settings, state, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (deployment_id, instance) DO UPDATE SET state = excluded.state, \
         updated_at = excluded.updated_at",
        args![deployment, instance, json(cfg)?, json(state)?, now],
    )
    .map_err(sql)?;
    if let Some(v) = verdict {
        // A verdict is numbered in its bake: recorded once (a re-run after a restart judges the next interval).
        c.execute(
            "INSERT INTO bake_verdicts (deployment_id, instance, seq, result, verdict) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (deployment_id, instance, seq) DO NOTHING",
            args![deployment, instance, v.interval, v.outcome.label(), json(v)?],
        )
        .map_err(sql)?;
    }
    c.touch_deployment(deployment);
    Ok(())
}

/// Every bake of a deployment as the API shows it: the canary first, then instances by name; each with its
/// latest [`MAX_SHOWN_VERDICTS`] verdicts.
pub fn progress(c: &Conn<'_>, deployment: &str) -> Result<Vec<BakeProgress>> {
    let rows = c
        .query_map(
            "SELECT instance, settings, state FROM bakes WHERE deployment_id = ?1 ORDER BY instance",
            [deployment],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<String>(2)?)),
        )
        .map_err(sql)?;
    let mut out = Vec::with_capacity(rows.len());
    for (instance, cfg, state) in rows {
        let cfg: AnalysisConfig =
            serde_json::from_str(&cfg).map_err(|e| corrupt("bakes.settings", e, &cfg))?;
        let state: BakeState =
            serde_json::from_str(&state).map_err(|e| corrupt("bakes.state", e, &state))?;
        let texts = c
            .query_map(
                "SELECT verdict FROM bake_verdicts WHERE deployment_id = ?1 AND instance = ?2 \
                 ORDER BY seq DESC LIMIT ?3",
                args![deployment, instance, MAX_SHOWN_VERDICTS],
                |r| r.get::<String>(0),
            )
            .map_err(sql)?;
        let mut verdicts = texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(|e| corrupt("bake_verdicts.verdict", e, t)))
            .collect::<Result<Vec<Verdict>>>()?;
        verdicts.reverse();
        out.push(BakeProgress {
            instance: (instance != CANARY).then_some(instance),
            steps: cfg.steps.clone(),
            intervals_per_step: cfg.intervals_per_bake(),
            interval_secs: cfg.interval_secs,
            state,
            verdicts,
        });
    }
    Ok(out)
}

/// Verdicts recorded so far, by result (`pass`, `fail`, `no_verdict`): `rollcage_analysis_verdicts_total`.
pub fn verdict_counts(c: &Conn<'_>) -> Result<Vec<(String, i64)>> {
    c.query_map(
        "SELECT result, COUNT(*) FROM bake_verdicts GROUP BY result ORDER BY result",
        (),
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
    )
    .map_err(sql)
}

/// The canaries of running deployments: (deployment, application, group, state) for
/// `rollcage_canary_weight_percent`.
pub fn running_canaries(c: &Conn<'_>) -> Result<Vec<(String, String, String, BakeState)>> {
    let rows = c
        .query_map(
            "SELECT b.deployment_id, d.application, d.group_name, b.state FROM bakes b \
             JOIN deployments d ON d.id = b.deployment_id \
             WHERE b.instance = '' AND d.ended_at IS NULL ORDER BY b.deployment_id",
            (),
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                ))
            },
        )
        .map_err(sql)?;
    rows.into_iter()
        .map(|(d, a, g, s)| {
            let state = serde_json::from_str(&s).map_err(|e| corrupt("bakes.state", e, &s))?;
            Ok((d, a, g, state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::bake::{BakePhase, Outcome, SideFigures};
    use rollcage_proto::traffic::{Weight, WindowMark};

    fn state(step: usize, weight: u64, intervals: u32) -> BakeState {
        BakeState {
            phase: BakePhase::Baking,
            step,
            weight: Weight::new(weight).unwrap_or(Weight::ZERO),
            intervals_in_step: intervals,
            intervals,
            failures: 0,
            mark: Some(WindowMark::Builtin {
                lb: "lb".into(),
                window: 3,
                at_unix_ms: 1_000,
            }),
            last: None,
            abort_message: None,
        }
    }

    fn verdict(interval: u32, outcome: Outcome) -> Verdict {
        let side = SideFigures {
            requests: 10,
            responses_5xx: 0,
            error_rate: Some(0.0),
            latency_ms: Some(2.0),
        };
        Verdict {
            interval,
            step: 0,
            weight: Weight::new(10).unwrap_or(Weight::ZERO),
            start_unix_ms: 0,
            end_unix_ms: 1_000,
            reset: false,
            new: side,
            old: side,
            latency_is_average: false,
            outcome,
        }
    }

    #[test]
    fn a_bake_and_its_verdicts_survive_in_one_row_per_interval() -> Result<()> {
        crate::store::each_backend(|s| {
            let cfg = AnalysisConfig::with_steps(&[10, 100]);
            s.write(|tx| {
                assert!(get(tx, "d-1", CANARY)?.is_none());
                record(tx, "d-1", CANARY, &cfg, &state(0, 10, 0), None, 1)?;
                record(
                    tx,
                    "d-1",
                    CANARY,
                    &cfg,
                    &state(0, 10, 1),
                    Some(&verdict(1, Outcome::Pass)),
                    2,
                )?;
                let fail = Outcome::Fail { breaches: vec![] };
                record(
                    tx,
                    "d-1",
                    CANARY,
                    &cfg,
                    &state(1, 100, 2),
                    Some(&verdict(2, fail.clone())),
                    3,
                )?;
                // The same interval again (a re-run) keeps the first verdict.
                record(
                    tx,
                    "d-1",
                    CANARY,
                    &cfg,
                    &state(1, 100, 2),
                    Some(&verdict(2, Outcome::Pass)),
                    4,
                )?;
                record(tx, "d-1", "i1", &cfg, &state(0, 0, 0), None, 5)?;
                Ok::<_, StoreError>(())
            })?;
            s.read(|c| {
                let (got_cfg, got) = get(c, "d-1", CANARY)?.ok_or_else(|| StoreError::Corrupt {
                    what: "test",
                    detail: "no bake".into(),
                })?;
                assert_eq!(got_cfg, cfg);
                assert_eq!(got, state(1, 100, 2));
                let p = progress(c, "d-1")?;
                assert_eq!(p.len(), 2);
                assert_eq!(p[0].instance, None);
                assert_eq!(p[0].steps, [10, 100]);
                assert_eq!(
                    p[0].verdicts.iter().map(|v| v.interval).collect::<Vec<_>>(),
                    [1, 2]
                );
                assert_eq!(p[0].verdicts[1].outcome.label(), "fail");
                assert_eq!(p[1].instance.as_deref(), Some("i1"));
                assert_eq!(
                    verdict_counts(c)?,
                    [("fail".to_owned(), 1), ("pass".to_owned(), 1)]
                );
                Ok::<_, StoreError>(())
            })
        })
    }
}
