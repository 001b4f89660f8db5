//! The per-instance step plan of each deployment style, with where each step runs.
//!
//! Every style is executed. The load-balancer styles are described here already so that adding them
//! (issue 5) is a matter of a traffic driver for the coordinator steps, not of a new engine: their plans mark
//! BlockTraffic, AllowTraffic and SwitchTraffic as [`Runner::Coordinator`].

use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::DeploymentStyle;

/// The blue/green style (a shorthand for matches).
pub const BLUE_GREEN: DeploymentStyle = DeploymentStyle::BlueGreen;

/// Who performs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// The agent on the instance (a hook, DownloadBundle or Install).
    Agent,
    /// The coordinator itself (load-balancer calls).
    Coordinator,
}

/// Who performs `event`.
pub fn runner(event: LifecycleEvent) -> Runner {
    match event {
        LifecycleEvent::BlockTraffic
        | LifecycleEvent::AllowTraffic
        | LifecycleEvent::SwitchTraffic => Runner::Coordinator,
        _ => Runner::Agent,
    }
}

/// The style cannot run yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deployment style `{0}` is not supported")]
pub struct Unsupported(pub DeploymentStyle);

/// Check that a style can run.
pub fn check_supported(style: DeploymentStyle) -> Result<(), Unsupported> {
    match style {
        DeploymentStyle::InPlace | DeploymentStyle::InPlaceLb | DeploymentStyle::BlueGreen => {
            Ok(())
        }
    }
}

/// A style's whole plan: the steps each instance goes through, then the deployment-wide coordinator steps
/// that run once every instance is done (blue/green's SwitchTraffic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StylePlan {
    /// Per instance, in order.
    pub per_instance: Vec<LifecycleEvent>,
    /// Once, after every instance.
    pub finally: Vec<LifecycleEvent>,
}

/// The seed's plan of every style (`shared/notes/lifecycle.md`), supported or not. A rollback starts from the
/// host's cached revision (no DownloadBundle); a blue/green rollback only switches traffic back.
pub fn style_plan(style: DeploymentStyle, rollback: bool) -> StylePlan {
    use LifecycleEvent as E;
    let drop_download = |v: Vec<E>| -> Vec<E> {
        if rollback {
            v.into_iter().filter(|e| *e != E::DownloadBundle).collect()
        } else {
            v
        }
    };
    match style {
        DeploymentStyle::InPlace => StylePlan {
            per_instance: drop_download(E::IN_PLACE.to_vec()),
            finally: Vec::new(),
        },
        DeploymentStyle::InPlaceLb => StylePlan {
            per_instance: drop_download(vec![
                E::DownloadBundle,
                E::BeforeBlockTraffic,
                E::BlockTraffic,
                E::AfterBlockTraffic,
                E::ApplicationStop,
                E::BeforeInstall,
                E::Install,
                E::AfterInstall,
                E::ApplicationStart,
                E::ValidateService,
                E::BeforeAllowTraffic,
                E::AllowTraffic,
                E::AfterAllowTraffic,
            ]),
            finally: Vec::new(),
        },
        DeploymentStyle::BlueGreen if rollback => StylePlan {
            per_instance: Vec::new(),
            finally: vec![E::SwitchTraffic],
        },
        DeploymentStyle::BlueGreen => StylePlan {
            per_instance: E::IN_PLACE.to_vec(),
            finally: vec![E::SwitchTraffic],
        },
    }
}

/// The steps every instance goes through, for a style that runs today. A rollback skips DownloadBundle: the
/// previous revision is taken from the host's cache (the agent downloads it only if the cache lost it).
pub fn plan(style: DeploymentStyle, rollback: bool) -> Result<Vec<LifecycleEvent>, Unsupported> {
    check_supported(style)?;
    Ok(style_plan(style, rollback).per_instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_follows_the_seed_and_rollback_skips_the_download() -> Result<(), Unsupported> {
        assert_eq!(
            plan(DeploymentStyle::InPlace, false)?,
            LifecycleEvent::IN_PLACE
        );
        let rb = plan(DeploymentStyle::InPlace, true)?;
        assert_eq!(rb, &LifecycleEvent::IN_PLACE[1..]);
        assert!(rb.iter().all(|e| runner(*e) == Runner::Agent));
        Ok(())
    }

    #[test]
    fn load_balancer_plans_follow_the_seed() {
        let lb = style_plan(DeploymentStyle::InPlaceLb, false);
        assert_eq!(lb.per_instance.len(), 13);
        let coordinator: Vec<_> = lb
            .per_instance
            .iter()
            .filter(|e| runner(**e) == Runner::Coordinator)
            .collect();
        assert_eq!(
            coordinator,
            [&LifecycleEvent::BlockTraffic, &LifecycleEvent::AllowTraffic]
        );
        assert_eq!(
            style_plan(DeploymentStyle::InPlaceLb, true)
                .per_instance
                .len(),
            12
        );
        let bg = style_plan(DeploymentStyle::BlueGreen, false);
        assert_eq!(bg.per_instance, LifecycleEvent::IN_PLACE);
        assert_eq!(bg.finally, [LifecycleEvent::SwitchTraffic]);
        let bg_rb = style_plan(DeploymentStyle::BlueGreen, true);
        assert!(bg_rb.per_instance.is_empty());
        assert_eq!(bg_rb.finally, [LifecycleEvent::SwitchTraffic]);
    }

    #[test]
    fn every_style_runs_and_blue_green_traffic_is_the_coordinator_s() -> Result<(), Unsupported> {
        assert_eq!(
            plan(DeploymentStyle::BlueGreen, false)?,
            LifecycleEvent::IN_PLACE
        );
        assert!(plan(DeploymentStyle::BlueGreen, true)?.is_empty());
        assert_eq!(plan(DeploymentStyle::InPlaceLb, true)?.len(), 12);
        assert_eq!(runner(LifecycleEvent::SwitchTraffic), Runner::Coordinator);
        Ok(())
    }
}
