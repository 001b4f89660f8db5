//! Lifecycle events: the steps of a deployment on one instance, named as AWS CodeDeploy names them.
//!
//! Some events are *scriptable* (an AppSpec may attach hooks to them); others are *reserved*: the agent or the
//! coordinator performs them itself (DownloadBundle, Install, BlockTraffic, AllowTraffic, SwitchTraffic). Which
//! events a deployment runs, in which order, is the [`crate::plan`]'s business.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LifecycleEvent {
    /// Fetch, verify and unpack the revision (agent, reserved).
    DownloadBundle,
    /// Before the instance is taken out of the load balancer.
    BeforeBlockTraffic,
    /// Deregister from the load balancer's server group (coordinator, reserved).
    BlockTraffic,
    /// After the instance left the load balancer.
    AfterBlockTraffic,
    /// Stop the running application (scripts of the revision installed now).
    ApplicationStop,
    /// Before the revision's files are copied.
    BeforeInstall,
    /// Copy the AppSpec `files` and apply `permissions` (agent, reserved).
    Install,
    /// After the files are in place.
    AfterInstall,
    /// Start the application.
    ApplicationStart,
    /// Check that the application works; a failure fails the instance.
    ValidateService,
    /// Before the instance is put back into the load balancer.
    BeforeAllowTraffic,
    /// Register into the load balancer's server group (coordinator, reserved).
    AllowTraffic,
    /// After the instance is back in the load balancer.
    AfterAllowTraffic,
    /// Blue/green: point the backend service at the other server group (coordinator, reserved).
    SwitchTraffic,
}

impl LifecycleEvent {
    /// Every event, in the order of a rolling deployment with a load balancer (SwitchTraffic last).
    pub const ALL: [LifecycleEvent; 14] = [
        Self::DownloadBundle,
        Self::BeforeBlockTraffic,
        Self::BlockTraffic,
        Self::AfterBlockTraffic,
        Self::ApplicationStop,
        Self::BeforeInstall,
        Self::Install,
        Self::AfterInstall,
        Self::ApplicationStart,
        Self::ValidateService,
        Self::BeforeAllowTraffic,
        Self::AllowTraffic,
        Self::AfterAllowTraffic,
        Self::SwitchTraffic,
    ];

    /// The events an AppSpec may attach hooks to.
    pub const SCRIPTABLE: [LifecycleEvent; 9] = [
        Self::ApplicationStop,
        Self::BeforeInstall,
        Self::AfterInstall,
        Self::ApplicationStart,
        Self::ValidateService,
        Self::BeforeBlockTraffic,
        Self::AfterBlockTraffic,
        Self::BeforeAllowTraffic,
        Self::AfterAllowTraffic,
    ];

    /// CodeDeploy's name of the event, as written in an AppSpec.
    pub fn name(self) -> &'static str {
        match self {
            Self::DownloadBundle => "DownloadBundle",
            Self::BeforeBlockTraffic => "BeforeBlockTraffic",
            Self::BlockTraffic => "BlockTraffic",
            Self::AfterBlockTraffic => "AfterBlockTraffic",
            Self::ApplicationStop => "ApplicationStop",
            Self::BeforeInstall => "BeforeInstall",
            Self::Install => "Install",
            Self::AfterInstall => "AfterInstall",
            Self::ApplicationStart => "ApplicationStart",
            Self::ValidateService => "ValidateService",
            Self::BeforeAllowTraffic => "BeforeAllowTraffic",
            Self::AllowTraffic => "AllowTraffic",
            Self::AfterAllowTraffic => "AfterAllowTraffic",
            Self::SwitchTraffic => "SwitchTraffic",
        }
    }

    /// True when an AppSpec may attach hooks to this event.
    pub fn is_scriptable(self) -> bool {
        Self::SCRIPTABLE.contains(&self)
    }

    /// True when the agent or the coordinator performs this event itself; hooks on it are an error.
    pub fn is_reserved(self) -> bool {
        !self.is_scriptable()
    }

    /// Who performs the event: the coordinator for the load-balancer calls, the agent for everything else
    /// (hooks, DownloadBundle, Install).
    pub fn performer(self) -> Performer {
        match self {
            Self::BlockTraffic | Self::AllowTraffic | Self::SwitchTraffic => Performer::Coordinator,
            _ => Performer::Agent,
        }
    }

    /// True when the event's hooks come from the revision whose Install last succeeded on the host (they stop or
    /// drain the application that is running), not from the revision being deployed.
    pub fn uses_previous_revision(self) -> bool {
        matches!(
            self,
            Self::ApplicationStop | Self::BeforeBlockTraffic | Self::AfterBlockTraffic
        )
    }
}

/// Who performs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Performer {
    /// The agent on the instance (a hook, DownloadBundle or Install).
    Agent,
    /// The coordinator itself (load-balancer calls).
    Coordinator,
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of CodeDeploy's lifecycle events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEvent(pub String);

impl fmt::Display for UnknownEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown lifecycle event `{}`", self.0)
    }
}

impl std::error::Error for UnknownEvent {}

impl FromStr for LifecycleEvent {
    type Err = UnknownEvent;

    /// Exact, case-sensitive match, as CodeDeploy does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| UnknownEvent(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in LifecycleEvent::ALL {
            assert_eq!(e.name().parse::<LifecycleEvent>(), Ok(e));
        }
        assert!("applicationstop".parse::<LifecycleEvent>().is_err());
    }

    #[test]
    fn reserved_events_are_the_built_in_steps() {
        let reserved: Vec<_> = LifecycleEvent::ALL
            .into_iter()
            .filter(|e| e.is_reserved())
            .collect();
        assert_eq!(
            reserved,
            [
                LifecycleEvent::DownloadBundle,
                LifecycleEvent::BlockTraffic,
                LifecycleEvent::Install,
                LifecycleEvent::AllowTraffic,
                LifecycleEvent::SwitchTraffic
            ]
        );
    }
}
