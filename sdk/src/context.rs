//! The lifecycle context of a hook run: in a WASI 0.2 component from `rollcage:hook/context` (the `rollcage:hook`
//! WIT world Python and JavaScript hooks use too), in a preview-1 module from the environment the agent sets.

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
    /// The context of this run, the way the hook was built to get it: `rollcage:hook/context.get` in a component
    /// (`wasm32-wasip2`), [`Context::from_env`] otherwise.
    pub fn current() -> Result<Self, HookError> {
        #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
        {
            let c = crate::wit::rollcage::hook::context::get();
            Ok(Self {
                event: c.event,
                deployment_id: c.deployment_id,
                application_name: c.application_name,
                deployment_group_name: c.deployment_group_name,
                deployment_group_id: c.deployment_group_id,
            })
        }
        #[cfg(not(all(target_arch = "wasm32", target_env = "p2")))]
        Self::from_env()
    }

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
