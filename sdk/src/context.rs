//! The lifecycle context of a hook run, read from the environment the agent sets.

use crate::HookError;
use rollcage_proto::hostcall::env;

/// What the hook runs for. The agent always sets these; other variables exist only if the hook's
/// `sandbox.env` grant names them (read them with [`Context::var`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The lifecycle event, e.g. `ValidateService`.
    pub event: String,
    /// The deployment id.
    pub deployment_id: String,
    /// The application name.
    pub application_name: String,
    /// The deployment group name.
    pub deployment_group_name: String,
    /// The deployment group id.
    pub deployment_group_id: String,
}

impl Context {
    /// Read the context from the environment. Fails (exit code 2) when `LIFECYCLE_EVENT` is not set, i.e. the
    /// module was not started by a rollcage agent.
    pub fn from_env() -> Result<Self, HookError> {
        let event = std::env::var(env::LIFECYCLE_EVENT).map_err(|_| {
            HookError::with_code(
                2,
                format!(
                    "`{}` is not set: not started by a rollcage agent",
                    env::LIFECYCLE_EVENT
                ),
            )
        })?;
        let get = |name: &str| std::env::var(name).unwrap_or_default();
        Ok(Self {
            event,
            deployment_id: get(env::DEPLOYMENT_ID),
            application_name: get(env::APPLICATION_NAME),
            deployment_group_name: get(env::DEPLOYMENT_GROUP_NAME),
            deployment_group_id: get(env::DEPLOYMENT_GROUP_ID),
        })
    }

    /// Another environment variable: an agent extra (`--var KEY=VALUE`) or one granted by `sandbox.env`.
    pub fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// The value of a lifecycle key by its variable name (`DEPLOYMENT_ID`, …), then any other variable; used by
    /// template renderers that substitute `${NAME}`.
    pub fn lookup(&self, name: &str) -> Option<String> {
        match name {
            env::LIFECYCLE_EVENT => Some(self.event.clone()),
            env::DEPLOYMENT_ID => Some(self.deployment_id.clone()),
            env::APPLICATION_NAME => Some(self.application_name.clone()),
            env::DEPLOYMENT_GROUP_NAME => Some(self.deployment_group_name.clone()),
            env::DEPLOYMENT_GROUP_ID => Some(self.deployment_group_id.clone()),
            other => self.var(other),
        }
    }
}
