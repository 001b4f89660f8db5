//! The coordinator's own steps: BlockTraffic (`deregister`, with draining), AllowTraffic (`register`, waiting
//! until healthy) and SwitchTraffic (`switch`), run as async tasks through the group's load-balancer driver.
//!
//! Persistence: the executor marks such a step `running` in the same transaction that decides it (state before),
//! and [`finish_step`] records its outcome in another (state after). [`run`] reads the running coordinator steps
//! and starts a task for each one not already in flight, at start (so a restarted coordinator re-issues whatever
//! was in flight when it died; the drivers are idempotent, so re-issuing is safe) and then whenever a commit
//! dispatched a coordinator step (the store records it, the state wakes the runner), with a slow re-scan as a
//! safety net ([`RESCAN_INTERVAL`]).

use super::bake::{Bake, BakeEnd, Subject};
use super::executor::{self, EngineError};
use crate::state::State;
use crate::store::Conn;
use crate::store::{Tx, apps, bakes, deployments, deployments::StepRow};
use rollcage_lbdriver::Connect as _;
use rollcage_proto::LifecycleEvent;
use rollcage_proto::canary::AnalysisConfig;
use rollcage_proto::lb::GroupLb;
use rollcage_proto::wire::{StepOutcome, now_ms};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the runner re-reads the running coordinator steps without being woken. Only a safety net: every
/// dispatch of a coordinator step wakes the runner after its commit, so this bounds the delay of a step whose
/// wake was somehow lost (a rolling-with-LB instance waits on two such steps) without costing a busy loop.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(10);

/// What one coordinator step must do, resolved from the database (pure data; no I/O yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficCall {
    /// Take `addr` out of server group `group` (drain).
    Deregister {
        /// Server group.
        group: String,
        /// `host:port`.
        addr: String,
    },
    /// Put `addr` into server group `group` and wait until healthy.
    Register {
        /// Server group.
        group: String,
        /// `host:port`.
        addr: String,
    },
    /// Point backend `service` at server group `group`.
    Switch {
        /// Backend service.
        service: String,
        /// Server group.
        group: String,
    },
}

/// Resolve what `step` must do from its group's settings (`switch_to` = the blue/green server group to switch
/// to).
pub fn call_for(
    settings: &GroupLb,
    step: &StepRow,
    switch_to: Option<&str>,
) -> Result<TrafficCall, String> {
    match step.event {
        LifecycleEvent::BlockTraffic | LifecycleEvent::AllowTraffic => {
            let (group, addr) = settings.target(&step.instance).ok_or_else(|| {
                format!(
                    "instance `{}` has no address in the group's `lb.targets`",
                    step.instance
                )
            })?;
            let (group, addr) = (group.to_owned(), addr.to_owned());
            Ok(if step.event == LifecycleEvent::BlockTraffic {
                TrafficCall::Deregister { group, addr }
            } else {
                TrafficCall::Register { group, addr }
            })
        }
        LifecycleEvent::SwitchTraffic => Ok(TrafficCall::Switch {
            service: settings.lb.service.clone(),
            group: switch_to
                .filter(|g| !g.is_empty())
                .ok_or("no server group to switch to")?
                .to_owned(),
        }),
        other => Err(format!("`{other}` is not a coordinator step")),
    }
}

/// A running coordinator step, resolved: its group's settings, the LB call, and the bake it runs around that call
/// (a canary before a blue/green switch, an analysis gate after an `in-place-lb` register; never in a rollback).
struct Resolved {
    settings: GroupLb,
    call: TrafficCall,
    bake: Option<(AnalysisConfig, Subject)>,
}

/// The settings, the call and the bake for a running coordinator step.
fn resolve(c: &Conn<'_>, step: &StepRow) -> Result<Resolved, String> {
    let d = deployments::get(c, &step.deployment_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("deployment `{}` not found", step.deployment_id))?;
    let group = apps::group(c, &d.application, &d.group)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("deployment group `{}/{}` not found", d.application, d.group))?;
    let settings = group.lb.ok_or_else(|| {
        format!(
            "deployment group `{}` has no load-balancer settings",
            d.group
        )
    })?;
    let call = call_for(&settings, step, d.switch_to.as_deref())?;
    let bake = match (&call, d.rollback_of.is_none()) {
        (TrafficCall::Switch { service, group }, true) => match &settings.canary {
            Some(cfg) => Some((
                cfg.clone(),
                Subject::Canary {
                    service: service.clone(),
                    new_group: group.clone(),
                    old_group: settings
                        .other_group(group)
                        .ok_or_else(|| {
                            format!("no server group besides `{group}` to compare with")
                        })?
                        .to_owned(),
                },
            )),
            None => None,
        },
        (TrafficCall::Register { group, addr }, true) => settings.analysis.clone().map(|cfg| {
            (
                cfg,
                Subject::Server {
                    group: group.clone(),
                    addr: addr.clone(),
                },
            )
        }),
        _ => None,
    };
    Ok(Resolved {
        settings,
        call,
        bake,
    })
}

/// Run `call` with its bake: a canary bakes before the switch (the new group's servers registered first), an
/// analysis gate after the register. `None` when the bake was abandoned (nothing to record).
async fn perform_baked(
    state: &State,
    step: &StepRow,
    settings: &GroupLb,
    call: &TrafficCall,
    cfg: &AnalysisConfig,
    subject: Subject,
) -> Option<Result<String, String>> {
    let driver = match settings.lb.connect() {
        Ok(d) => d,
        Err(e) => return Some(Err(e.to_string())),
    };
    let key = if matches!(subject, Subject::Canary { .. }) {
        bakes::CANARY
    } else {
        step.instance.as_str()
    };
    let before = match (&subject, call) {
        (Subject::Canary { new_group, .. }, _) => register_group(&driver, settings, new_group)
            .await
            .map(|n| format!("{n} server(s) of `{new_group}` healthy")),
        (Subject::Server { .. }, TrafficCall::Register { .. }) => perform(settings, call).await,
        _ => Ok(String::new()),
    };
    let before = match before {
        Ok(m) => m,
        Err(e) => return Some(Err(e)),
    };
    let bake = Bake {
        state,
        deployment: &step.deployment_id,
        step_id: step.id,
        key,
        cfg,
        subject,
    };
    match bake.run(driver).await {
        BakeEnd::Passed(m) => Some(match call {
            TrafficCall::Switch { .. } => perform(settings, call)
                .await
                .map(|switched| format!("{m}; {switched}")),
            _ => Ok(format!("{before}; {m}")),
        }),
        BakeEnd::Failed(e) => Some(Err(e)),
        BakeEnd::Abandoned(why) => {
            tracing::info!(deployment = %step.deployment_id, instance = %step.instance, %why, "bake left");
            None
        }
    }
}

/// Register every server of `group` and wait until healthy (idempotent); the count.
async fn register_group(
    driver: &Arc<dyn rollcage_lbdriver::LbDriver>,
    settings: &GroupLb,
    group: &str,
) -> Result<usize, String> {
    let servers = settings
        .lb
        .server_groups
        .get(group)
        .cloned()
        .unwrap_or_default();
    for addr in &servers {
        driver
            .register(group, addr, settings.lb.register_timeout())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(servers.len())
}

/// Perform one call through the driver. Errors name the LB (the driver's errors do), the deployment group and
/// the instance.
pub async fn perform(settings: &GroupLb, call: &TrafficCall) -> Result<String, String> {
    let driver = settings.lb.connect().map_err(|e| e.to_string())?;
    match call {
        TrafficCall::Deregister { group, addr } => {
            let out = driver
                .deregister(group, addr, settings.lb.drain_timeout())
                .await
                .map_err(|e| e.to_string())?;
            Ok(if out.already_out {
                format!(
                    "{addr} was already out of `{group}` on {}",
                    driver.describe()
                )
            } else {
                format!(
                    "{addr} drained from `{group}` on {} in {} ms{}",
                    driver.describe(),
                    out.elapsed.as_millis(),
                    if out.forced {
                        " (drain timeout: in-flight requests cut)"
                    } else {
                        ""
                    }
                )
            })
        }
        TrafficCall::Register { group, addr } => {
            driver
                .register(group, addr, settings.lb.register_timeout())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{addr} registered in `{group}` on {} and healthy",
                driver.describe()
            ))
        }
        TrafficCall::Switch { service, group } => {
            // The target group's servers must be in traffic and healthy before the service points at them
            // (blue/green skips the per-instance traffic hooks, so nothing registered them yet). Idempotent.
            let servers = register_group(&driver, settings, group).await?;
            driver
                .switch(service, group)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "service `{service}` switched to `{group}` ({servers} server(s) healthy) on {}",
                driver.describe()
            ))
        }
    }
}

/// Record the outcome of coordinator step `step_id` and advance its deployment. `false` when the step is no
/// longer running (cancelled by a forced stop meanwhile, or recorded already).
pub fn finish_step(
    tx: &Tx<'_>,
    step_id: i64,
    outcome: StepOutcome,
    message: &str,
    now: i64,
) -> Result<bool, EngineError> {
    executor::end_coordinator_step(tx, step_id, outcome, message, now)
}

/// Run one coordinator step to its end (resolve, call the LB, record).
async fn run_step(state: State, step: StepRow) {
    let resolved = state
        .store
        .read(|c| Ok::<_, EngineError>(resolve(c, &step)));
    let result = match resolved {
        Ok(Ok(Resolved {
            settings,
            call,
            bake,
        })) => {
            tracing::info!(deployment = %step.deployment_id, instance = %step.instance, event = %step.event,
                ?call, baked = bake.is_some(), "load-balancer step started");
            match bake {
                None => perform(&settings, &call).await,
                Some((cfg, subject)) => {
                    match perform_baked(&state, &step, &settings, &call, &cfg, subject).await {
                        Some(r) => r,
                        None => return,
                    }
                }
            }
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    };
    let (outcome, message) = match result {
        Ok(m) => (StepOutcome::Succeeded, m),
        Err(e) => {
            let m = if step.instance == deployments::DEPLOYMENT_WIDE {
                format!("{} failed: {e}", step.event)
            } else {
                format!("{} of instance `{}` failed: {e}", step.event, step.instance)
            };
            tracing::warn!(deployment = %step.deployment_id, "{m}");
            (StepOutcome::Failed, m)
        }
    };
    let now = now_ms();
    if let Err(e) = state
        .store
        .write(|tx| finish_step(tx, step.id, outcome, &message, now))
    {
        tracing::error!(step = step.id, error = %e, "recording a load-balancer step failed")
    }
}

/// Run every coordinator step as it becomes due, forever (spawned by the server).
pub async fn run(state: State) {
    let in_flight: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut first = true;
    loop {
        if !first {
            // A dispatch committed while the last scan ran left a permit: no wake is lost.
            tokio::select! {
                _ = state.traffic().notified() => {}
                _ = tokio::time::sleep(RESCAN_INTERVAL) => {}
            }
        }
        first = false;
        // One coordinator of a shared database runs the load-balancer steps: the lease holder (which re-scans when
        // it takes the lease over, so a step the last holder was running is re-issued).
        if !state.is_leader() {
            continue;
        }
        let steps = match state.store.read(deployments::running_coordinator_steps) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading coordinator steps failed");
                continue;
            }
        };
        for step in steps {
            {
                let mut set = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if !set.insert(step.id) {
                    continue;
                }
            }
            let (state, in_flight) = (state.clone(), in_flight.clone());
            tokio::spawn(async move {
                let id = step.id;
                run_step(state, step).await;
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::wire::{DeploymentStyle, StepState};

    fn step(instance: &str, event: LifecycleEvent) -> StepRow {
        StepRow {
            id: 1,
            deployment_id: "d".into(),
            instance: instance.into(),
            idx: 0,
            event,
            state: StepState::Running,
        }
    }

    #[test]
    fn each_coordinator_step_maps_to_its_driver_call() -> Result<(), String> {
        let v = serde_json::json!({
            "active_group": "blue",
            "targets": { "a": "127.0.0.1:8081", "b": "127.0.0.1:8082" },
            "lb": {
                "service": "app1",
                "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9", "token_file": "/t" },
                "server_groups": { "blue": ["127.0.0.1:8081"], "green": ["127.0.0.1:8082"] }
            }
        });
        let s: GroupLb = serde_json::from_value(v).map_err(|e| e.to_string())?;
        s.validate(DeploymentStyle::BlueGreen, &[])
            .map_err(|e| e.to_string())?;
        assert_eq!(
            call_for(&s, &step("a", LifecycleEvent::BlockTraffic), None)?,
            TrafficCall::Deregister {
                group: "blue".into(),
                addr: "127.0.0.1:8081".into()
            }
        );
        assert_eq!(
            call_for(&s, &step("b", LifecycleEvent::AllowTraffic), None)?,
            TrafficCall::Register {
                group: "green".into(),
                addr: "127.0.0.1:8082".into()
            }
        );
        assert_eq!(
            call_for(&s, &step("", LifecycleEvent::SwitchTraffic), Some("green"))?,
            TrafficCall::Switch {
                service: "app1".into(),
                group: "green".into()
            }
        );
        let e = call_for(&s, &step("zz", LifecycleEvent::BlockTraffic), None);
        assert!(e.is_err_and(|e| e.contains("`zz`")));
        assert!(call_for(&s, &step("", LifecycleEvent::SwitchTraffic), None).is_err());
        assert!(call_for(&s, &step("a", LifecycleEvent::Install), None).is_err());
        Ok(())
    }
}
