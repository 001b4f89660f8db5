//! The per-instance step plan of each deployment style, with where each step runs.
//!
//! Only `in-place` is executed today. The load-balancer styles are described here already so that adding them
//! (issue 5) is a matter of a traffic driver for the coordinator steps, not of a new engine: their plans mark
//! BlockTraffic, AllowTraffic and SwitchTraffic as [`Runner::Coordinator`].

use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::DeploymentStyle;

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
#[error("deployment style `{0}` is not supported yet; only `in-place` runs")]
pub struct Unsupported(pub DeploymentStyle);

/// Check that a style can run.
pub fn check_supported(style: DeploymentStyle) -> Result<(), Unsupported> {
    match style {
        DeploymentStyle::InPlace => Ok(()),
        other => Err(Unsupported(other)),
    }
}

/// The steps every instance goes through. A rollback skips DownloadBundle: the previous revision is taken from the
/// host's cache (the agent downloads it only if the cache lost it).
pub fn plan(style: DeploymentStyle, rollback: bool) -> Result<Vec<LifecycleEvent>, Unsupported> {
    check_supported(style)?;
    let full = LifecycleEvent::IN_PLACE.to_vec();
    Ok(if rollback {
        full.into_iter()
            .filter(|e| *e != LifecycleEvent::DownloadBundle)
            .collect()
    } else {
        full
    })
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
    fn load_balancer_styles_are_refused_clearly() {
        assert_eq!(
            plan(DeploymentStyle::BlueGreen, false),
            Err(Unsupported(DeploymentStyle::BlueGreen))
        );
        assert!(
            Unsupported(DeploymentStyle::InPlaceLb)
                .to_string()
                .contains("not supported yet")
        );
        assert_eq!(runner(LifecycleEvent::SwitchTraffic), Runner::Coordinator);
    }
}
