//! Settings of the load balancer and the optional TOML configuration file with the groups, servers and
//! services to set up at start.
//!
//! ```toml
//! [settings]
//! drain_timeout_ms = 30000
//! [settings.health_check]
//! path = "/health"
//! interval_ms = 1000
//!
//! [[groups]]
//! name = "blue"
//! servers = ["10.0.0.11:8080", "10.0.0.12:8080"]
//!
//! [[services]]
//! name = "app1"
//! listen = "0.0.0.0:8080"
//! group = "blue"
//! ```

use crate::api::HealthCheckSpec;
use crate::error::LbError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Tunables of the whole load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Health check of groups created without one.
    pub health_check: HealthCheckSpec,
    /// How long a deregistered server may keep requests in flight before it is removed by force, when the
    /// deregistration does not say. 300 s is the default of AWS target groups and JD Cloud backends.
    pub drain_timeout_ms: u64,
    /// Connecting to a server fails after this long (and may be retried on another server).
    pub connect_timeout_ms: u64,
    /// A server that sends no response head within this long gets the client a 504.
    pub response_timeout_ms: u64,
    /// A client connection that sends no complete request head within this long is closed (slow clients and
    /// idle keep-alive connections).
    pub header_read_timeout_ms: u64,
    /// On shutdown, open connections get this long to finish their current request.
    pub shutdown_grace_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            health_check: HealthCheckSpec::default(),
            drain_timeout_ms: 300_000,
            connect_timeout_ms: 2_000,
            response_timeout_ms: 60_000,
            header_read_timeout_ms: 30_000,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// A server group to create at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSeed {
    /// Group name.
    pub name: String,
    /// Its health check (default: `settings.health_check`).
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// Servers registered at start (they get traffic once healthy).
    #[serde(default)]
    pub servers: Vec<String>,
}

/// A backend service to create at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSeed {
    /// Service name.
    pub name: String,
    /// Listen address, e.g. `0.0.0.0:8080`.
    pub listen: String,
    /// The group it sends traffic to.
    pub group: String,
}

/// Contents of `--config FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Tunables.
    #[serde(default)]
    pub settings: Settings,
    /// Groups to create.
    #[serde(default)]
    pub groups: Vec<GroupSeed>,
    /// Services to create.
    #[serde(default)]
    pub services: Vec<ServiceSeed>,
}

impl ConfigFile {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, LbError> {
        let text = std::fs::read_to_string(path).map_err(|e| LbError::Config {
            path: path.to_owned(),
            problem: format!("cannot read: {e}"),
        })?;
        Self::parse(&text).map_err(|problem| LbError::Config {
            path: path.to_owned(),
            problem,
        })
    }

    /// Parses configuration text; the error names the offending entry.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_example_and_fills_defaults() -> Result<(), String> {
        let c = ConfigFile::parse(
            r#"
            [settings]
            drain_timeout_ms = 30000
            [settings.health_check]
            path = "/health"
            [[groups]]
            name = "blue"
            servers = ["10.0.0.11:8080"]
            [[services]]
            name = "app1"
            listen = "0.0.0.0:8080"
            group = "blue"
            "#,
        )?;
        assert_eq!(c.settings.drain_timeout_ms, 30_000);
        assert_eq!(c.settings.health_check.path, "/health");
        assert_eq!(c.settings.health_check.interval_ms, 1000);
        assert_eq!(c.settings.connect_timeout_ms, 2000);
        assert_eq!(c.groups[0].servers, vec!["10.0.0.11:8080".to_owned()]);
        assert_eq!(c.services[0].group, "blue");
        Ok(())
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = ConfigFile::parse("[settings]\ndrain_timeout = 5\n").err();
        assert!(err.is_some_and(|e| e.contains("drain_timeout")));
    }
}
