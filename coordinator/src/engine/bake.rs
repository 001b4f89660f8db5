//! Runs a bake (issue 16): the I/O and the timing around the pure decisions of [`super::analysis`]. A blue/green
//! deployment's canary runs inside its SwitchTraffic step, an `in-place-lb` instance's analysis gate inside its
//! AllowTraffic step; both are coordinator steps the traffic runner ([`super::traffic`]) runs as tasks, so no
//! report path ever waits on a bake.
//!
//! One interval: sleep until the persisted window mark plus `interval_secs`, read the LB's window since that mark
//! (`read_window`), judge it, ask [`analysis::next`] what follows, persist the new state and the verdict in one
//! transaction (`store::bakes::record`), then act on the LB (journal before acting). A weight change takes a fresh
//! mark, so every interval is judged at one weight. A restarted coordinator (or the next lease holder) finds the
//! running step again, reads the persisted state and re-asserts it ([`analysis::resume`]): the same step, the
//! same weight, the intervals already judged kept. A bake ends early when its step is no longer running (a forced
//! stop: the new group's weight goes back to 0) or this coordinator lost the traffic lease (left to the next
//! holder, the LB untouched).

use crate::state::State;
use crate::store::{bakes, deployments};
use rollcage_lbdriver::LbDriver;
use rollcage_proto::bake::BakeState;
use rollcage_proto::canary::AnalysisConfig;
use rollcage_proto::traffic::{TrafficWindow, Weight, WindowMark};
use rollcage_proto::wire::{DeploymentStatus, StepState, now_ms};
use std::sync::Arc;
use std::time::Duration;

use super::analysis::{self, Action};

/// How often a sleeping bake checks that its step still runs (a forced stop puts the weight back to 0 within
/// this) and that this coordinator still holds the traffic lease.
pub const LIVENESS_CHECK: Duration = Duration::from_millis(250);

/// What is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A canary: server group `new_group` takes a weighted share of backend `service`, whose own group is
    /// `old_group`.
    Canary {
        /// Backend service.
        service: String,
        /// The group being deployed to.
        new_group: String,
        /// The group serving now.
        old_group: String,
    },
    /// An `in-place-lb` instance's server `addr` against the other servers of `group`.
    Server {
        /// Server group.
        group: String,
        /// `host:port`.
        addr: String,
    },
}

/// How a bake ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BakeEnd {
    /// Every interval baked within the thresholds (canary: at 100 %, ready to switch).
    Passed(String),
    /// Aborted beyond `failure_limit` (canary: weight already back to 0), or the LB failed: the step fails.
    Failed(String),
    /// No longer this task's to run (step ended elsewhere, lease lost): record nothing.
    Abandoned(String),
}

/// Where one bake lives and what it judges.
pub struct Bake<'a> {
    /// The coordinator.
    pub state: &'a State,
    /// Deployment id.
    pub deployment: &'a str,
    /// The coordinator step running it (its state says whether the bake may go on).
    pub step_id: i64,
    /// `bakes::CANARY` or the instance name.
    pub key: &'a str,
    /// The settings (used when the bake starts; a resumed bake keeps those it started with).
    pub cfg: &'a AnalysisConfig,
    /// What is judged.
    pub subject: Subject,
}

impl Bake<'_> {
    fn groups(&self) -> Vec<&str> {
        match &self.subject {
            Subject::Canary {
                new_group,
                old_group,
                ..
            } => vec![new_group.as_str(), old_group.as_str()],
            Subject::Server { group, .. } => vec![group.as_str()],
        }
    }

    fn persist(
        &self,
        cfg: &AnalysisConfig,
        s: &BakeState,
        verdict: Option<&rollcage_proto::bake::Verdict>,
    ) -> Result<(), String> {
        let now = now_ms();
        self.state
            .store
            .write(|tx| bakes::record(tx, self.deployment, self.key, cfg, s, verdict, now))
            .map_err(|e| format!("recording the bake failed: {e}"))
    }

    /// `None` while the bake may go on; else why not (`Err` = a stop: put the weight back first).
    fn gone(&self) -> Option<Result<String, String>> {
        if !self.state.is_leader() {
            return Some(Ok(
                "this coordinator no longer holds the traffic lease".to_owned()
            ));
        }
        let now = self.state.store.read(|c| {
            let step = deployments::step(c, self.step_id)?;
            let d = deployments::get(c, self.deployment)?;
            Ok::<_, crate::store::StoreError>((step.map(|s| s.state), d.map(|d| d.status)))
        });
        match now {
            Ok((Some(StepState::Running), Some(DeploymentStatus::Stopping))) => {
                Some(Err("the deployment was stopped during the bake".to_owned()))
            }
            Ok((Some(StepState::Running), _)) => None,
            Ok(_) => Some(Err("its step is no longer running (stopped)".to_owned())),
            // A database blip: keep baking; the write of the next verdict will tell.
            Err(e) => {
                tracing::warn!(deployment = %self.deployment, error = %e, "bake: reading its step failed");
                None
            }
        }
    }

    fn step_running(&self) -> bool {
        self.state
            .store
            .read(|c| deployments::step(c, self.step_id))
            .ok()
            .flatten()
            .is_some_and(|s| s.state == StepState::Running)
    }

    async fn set_weight(&self, driver: &Arc<dyn LbDriver>, w: Weight) -> Result<(), String> {
        if let Subject::Canary {
            service, new_group, ..
        } = &self.subject
        {
            driver
                .set_weight(service, new_group, w)
                .await
                .map_err(|e| format!("setting the weight of `{new_group}` to {w} failed: {e}"))?;
            tracing::info!(deployment = %self.deployment, service, new_group, weight = w.percent(),
                "canary weight set");
        }
        Ok(())
    }

    async fn read(
        &self,
        driver: &Arc<dyn LbDriver>,
        since: Option<&WindowMark>,
    ) -> Result<TrafficWindow, String> {
        driver
            .read_window(&self.groups(), since)
            .await
            .map_err(|e| format!("reading the LB's window failed: {e}"))
    }

    /// Sleep until `mark` + `interval_secs`, checking liveness. `Some(end)` when the bake must end.
    async fn wait_interval(
        &self,
        driver: &Arc<dyn LbDriver>,
        cfg: &AnalysisConfig,
        mark: &WindowMark,
    ) -> Option<BakeEnd> {
        let interval_ms = cfg.interval_secs.saturating_mul(1000);
        let due = mark.at_unix_ms().saturating_add(interval_ms);
        // Measured on this clock but never longer than one interval (an LB with a skewed clock cannot stall it).
        let wait = due
            .saturating_sub(u64::try_from(now_ms()).unwrap_or(0))
            .min(interval_ms);
        let until = tokio::time::Instant::now() + Duration::from_millis(wait);
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if let Some(why) = self.gone() {
                return Some(match why {
                    Ok(m) => BakeEnd::Abandoned(m),
                    Err(m) => {
                        let put_back = self.set_weight(driver, Weight::ZERO).await;
                        let m = match put_back {
                            Ok(()) => format!("{m}; new group's weight set to 0"),
                            Err(e) => format!("{m}; {e}"),
                        };
                        // A stop waits for the running step: it fails, so the deployment can end. A forced stop
                        // already cancelled it: nothing to record.
                        if self.step_running() {
                            BakeEnd::Failed(m)
                        } else {
                            BakeEnd::Abandoned(m)
                        }
                    }
                });
            }
            if left.is_zero() {
                return None;
            }
            tokio::time::sleep(left.min(LIVENESS_CHECK)).await;
        }
    }

    /// Run the bake to its end (or resume it).
    pub async fn run(&self, driver: Arc<dyn LbDriver>) -> BakeEnd {
        match self.run_inner(&driver).await {
            Ok(end) => end,
            Err(e) => BakeEnd::Failed(e),
        }
    }

    async fn run_inner(&self, driver: &Arc<dyn LbDriver>) -> Result<BakeEnd, String> {
        let stored = self
            .state
            .store
            .read(|c| bakes::get(c, self.deployment, self.key))
            .map_err(|e| format!("reading the bake failed: {e}"))?;
        let (cfg, mut bake, mut action) = match stored {
            Some((cfg, s)) => {
                let a = analysis::resume(&cfg, &s);
                tracing::info!(deployment = %self.deployment, key = self.key, step = s.step,
                    weight = s.weight.percent(), intervals = s.intervals, "bake resumed");
                (cfg, s, a)
            }
            None => {
                let (s, a) = analysis::start(self.cfg, false);
                self.persist(self.cfg, &s, None)?;
                (self.cfg.clone(), s, a)
            }
        };
        loop {
            match action {
                Action::SetWeight(w) => {
                    self.set_weight(driver, w).await?;
                    // A fresh mark: the next interval is judged wholly at this weight.
                    bake.mark = Some(self.read(driver, None).await?.mark);
                    self.persist(&cfg, &bake, None)?;
                    action = Action::Bake;
                }
                Action::Bake => {
                    let mark = match &bake.mark {
                        Some(m) => m.clone(),
                        None => {
                            let m = self.read(driver, None).await?.mark;
                            bake.mark = Some(m.clone());
                            self.persist(&cfg, &bake, None)?;
                            m
                        }
                    };
                    if let Some(end) = self.wait_interval(driver, &cfg, &mark).await {
                        return Ok(end);
                    }
                    let window = self.read(driver, Some(&mark)).await?;
                    // The external judge, read right after the window so both cover the same moment.
                    let prom = if cfg.prometheus.is_empty() {
                        Vec::new()
                    } else {
                        super::prometheus::evaluate(
                            &cfg.prometheus,
                            Duration::from_secs(cfg.interval_secs),
                        )
                        .await
                    };
                    let verdict = match &self.subject {
                        Subject::Canary {
                            new_group,
                            old_group,
                            ..
                        } => analysis::judge_groups(
                            &cfg, &bake, &window, new_group, old_group, &prom,
                        ),
                        Subject::Server { group, addr } => {
                            analysis::judge_server(&cfg, &bake, &window, group, addr, &prom)
                        }
                    };
                    tracing::info!(deployment = %self.deployment, key = self.key, "{verdict}");
                    let (next, a) = analysis::next(&cfg, &bake, verdict.clone(), window.mark)
                        .map_err(|e| e.to_string())?;
                    self.persist(&cfg, &next, Some(&verdict))?;
                    bake = next;
                    action = a;
                }
                Action::AwaitContinue => {
                    // `wait_for_continue` pauses in `ready` before the SwitchTraffic step that runs the canary
                    // starts, so a bake started here never waits.
                    bake = analysis::start(&cfg, false).0;
                    action = analysis::resume(&cfg, &bake);
                }
                Action::Finish => {
                    return Ok(BakeEnd::Passed(match &self.subject {
                        Subject::Canary { new_group, .. } => format!(
                            "canary of `{new_group}` passed {} step(s) ({} intervals judged, {} failing)",
                            cfg.steps.len(),
                            bake.intervals,
                            bake.failures
                        ),
                        Subject::Server { addr, .. } => format!(
                            "analysis of {addr} passed ({} intervals judged, {} failing)",
                            bake.intervals, bake.failures
                        ),
                    }));
                }
                Action::Abort { message } => {
                    tracing::warn!(deployment = %self.deployment, key = self.key, %message, "bake aborted");
                    return Ok(BakeEnd::Failed(
                        match self.set_weight(driver, Weight::ZERO).await {
                            Ok(()) => message,
                            Err(e) => format!("{message}; {e}"),
                        },
                    ));
                }
            }
        }
    }
}
