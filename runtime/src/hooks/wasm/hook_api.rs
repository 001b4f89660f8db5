//! The host side of the `rollcage:hook` WIT package (`sdk/wit/hook.wit`, world in `sdk/wit/world.wit`) for component hooks: `context.get` (the
//! lifecycle context of the run) and `log.write` (one structured logfmt line into the hook's output, through the
//! same capped sink as its stdout/stderr).
//!
//! Linked for every component; a component that does not import them (a Rust component built with the SDK reads
//! its context from the environment) is unaffected.

use super::component::ComponentState;
use super::output::CappedSink;
use rollcage_proto::hostcall::env;
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

/// The `rollcage:hook` package version the agent provides.
const PACKAGE: &str = "rollcage:hook";
const VERSION: &str = "0.1.0";

/// `rollcage:hook/context.lifecycle`.
#[derive(ComponentType, Lower, Debug, Clone, Default, PartialEq, Eq)]
#[component(record)]
pub(crate) struct Lifecycle {
    event: String,
    #[component(name = "deployment-id")]
    deployment_id: String,
    #[component(name = "application-name")]
    application_name: String,
    #[component(name = "deployment-group-name")]
    deployment_group_name: String,
    #[component(name = "deployment-group-id")]
    deployment_group_id: String,
}

impl Lifecycle {
    /// From the lifecycle variables the run sets (one source for the environment and this record). Pure.
    pub(crate) fn from_vars(vars: &[(String, String)]) -> Self {
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Self {
            event: get(env::LIFECYCLE_EVENT),
            deployment_id: get(env::DEPLOYMENT_ID),
            application_name: get(env::APPLICATION_NAME),
            deployment_group_name: get(env::DEPLOYMENT_GROUP_NAME),
            deployment_group_id: get(env::DEPLOYMENT_GROUP_ID),
        }
    }
}

/// `rollcage:hook/log.level`.
#[derive(ComponentType, Lift, Debug, Clone, Copy, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
#[allow(
    dead_code,
    reason = "the variants are made by lifting the guest's value, which the lint does not see"
)]
enum Level {
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// What `log.write` needs from the store: where the line goes (stderr for errors, like the Rust SDK).
pub(crate) struct LogSinks {
    pub(crate) stdout: CappedSink,
    pub(crate) stderr: CappedSink,
}

/// Add `rollcage:hook/context` and `rollcage:hook/log` to the component linker.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    let mut context = linker.instance(&format!("{PACKAGE}/context@{VERSION}"))?;
    context.func_wrap(
        "get",
        |store: StoreContextMut<'_, ComponentState>, (): ()| Ok((store.data().lifecycle.clone(),)),
    )?;
    let mut log = linker.instance(&format!("{PACKAGE}/log@{VERSION}"))?;
    log.func_wrap(
        "write",
        |store: StoreContextMut<'_, ComponentState>,
         (level, message, fields): (Level, String, Vec<(String, String)>)| {
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let line = rollcage_proto::logfmt::line(level.label(), &message, &pairs);
            let sinks = &store.data().log;
            let sink = if level == Level::Error {
                &sinks.stderr
            } else {
                &sinks.stdout
            };
            sink.write_text(&line);
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_comes_from_the_lifecycle_variables() {
        let vars: Vec<(String, String)> = [
            (env::LIFECYCLE_EVENT, "ValidateService"),
            (env::DEPLOYMENT_ID, "d-1"),
            (env::APPLICATION_NAME, "app"),
            ("OTHER", "x"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let l = Lifecycle::from_vars(&vars);
        assert_eq!(l.event, "ValidateService");
        assert_eq!(l.deployment_id, "d-1");
        assert_eq!(l.application_name, "app");
        assert_eq!(l.deployment_group_name, "");
    }
}
