//! The serde configuration naming a deployment group's load balancer: which driver and where it is, the
//! backend service, the server groups with their instances, and the timeouts. The coordinator stores one per
//! deployment group and calls [`LbConfig::connect`] to get a driver.
//!
//! ```toml
//! service = "app1"
//! drain_timeout_secs = 30
//! [driver]
//! kind = "haproxy"
//! socket = "/run/haproxy/admin.sock"
//! map_file = "/etc/haproxy/bluegreen.map"
//! [server_groups]
//! blue = ["10.0.0.11:8080", "10.0.0.12:8080"]
//! green = ["10.0.0.21:8080", "10.0.0.22:8080"]
//! ```

use crate::LbDriver;
use crate::builtin::BuiltinDriver;
use crate::error::LbDriverError;
use crate::haproxy::HaproxyDriver;
use rollcage_lb::api::HealthCheckSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default drain timeout: 300 s, the same as AWS's `deregistration_delay` and JD Cloud's connection draining.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 300;
/// Default time a registered instance has to become healthy: 300 s, like the AWS `target-in-service`
/// waiter's 10 min halved — long enough for slow health-check settings, short enough to fail a stuck deploy.
pub const DEFAULT_REGISTER_TIMEOUT_SECS: u64 = 300;

/// A deployment group's load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbConfig {
    /// Which load balancer and how to reach it.
    pub driver: DriverConfig,
    /// The backend service that blue/green switches (HAProxy: the key in the backend map).
    pub service: String,
    /// Server groups by name, each with its instances' `host:port`.
    pub server_groups: BTreeMap<String, Vec<String>>,
    /// How long a deregistration waits for in-flight requests before cutting them.
    #[serde(default = "default_drain")]
    pub drain_timeout_secs: u64,
    /// How long a registration waits for the instance to become healthy.
    #[serde(default = "default_register")]
    pub register_timeout_secs: u64,
}

/// The driver and its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DriverConfig {
    /// The built-in LB (`rollcage lb`), over its admin API.
    Builtin {
        /// Admin API base URL, `http://HOST:PORT`.
        admin_url: String,
        /// File holding the admin API's bearer token (must be readable by its owner only).
        token_file: PathBuf,
        /// Health check used when a register creates a group that does not exist yet; the LB's default
        /// when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        health_check: Option<HealthCheckSpec>,
    },
    /// HAProxy over its runtime API (stats socket at `level admin`).
    Haproxy {
        /// The stats socket path.
        socket: PathBuf,
        /// The map file the frontend's `use_backend %[...,map(FILE,...)]` reads; needed for `switch`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map_file: Option<PathBuf>,
        /// HAProxy backend name of each server group; a group not listed uses its own name.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        backends: BTreeMap<String, String>,
    },
}

fn default_drain() -> u64 {
    DEFAULT_DRAIN_TIMEOUT_SECS
}

fn default_register() -> u64 {
    DEFAULT_REGISTER_TIMEOUT_SECS
}

impl LbConfig {
    /// Checks what can be checked without the LB: names, addresses, timeouts.
    pub fn validate(&self) -> Result<(), LbDriverError> {
        let err = |field: String, message: String| LbDriverError::Config { field, message };
        if self.service.trim().is_empty() {
            return Err(err("service".into(), "expected a non-empty name".into()));
        }
        if self.server_groups.is_empty() {
            return Err(err(
                "server_groups".into(),
                "expected at least one group".into(),
            ));
        }
        for (group, instances) in &self.server_groups {
            if group.trim().is_empty() {
                return Err(err("server_groups".into(), "empty group name".into()));
            }
            for (i, inst) in instances.iter().enumerate() {
                if !looks_like_host_port(inst) {
                    return Err(err(
                        format!("server_groups.{group}[{i}]"),
                        format!("`{inst}`: expected `host:port`"),
                    ));
                }
            }
        }
        if self.drain_timeout_secs == 0 {
            return Err(err(
                "drain_timeout_secs".into(),
                "expected at least 1 second".into(),
            ));
        }
        if self.register_timeout_secs == 0 {
            return Err(err(
                "register_timeout_secs".into(),
                "expected at least 1 second".into(),
            ));
        }
        if let DriverConfig::Haproxy { backends, .. } = &self.driver {
            for group in backends.keys() {
                if !self.server_groups.contains_key(group) {
                    return Err(err(
                        format!("driver.backends.{group}"),
                        "names a group that is not in `server_groups`".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Validates the configuration and builds its driver (no network I/O yet, except reading the token).
    pub fn connect(&self) -> Result<Arc<dyn LbDriver>, LbDriverError> {
        self.validate()?;
        Ok(match &self.driver {
            DriverConfig::Builtin {
                admin_url,
                token_file,
                health_check,
            } => Arc::new(BuiltinDriver::from_config(
                admin_url,
                token_file,
                health_check.clone(),
            )?),
            DriverConfig::Haproxy {
                socket,
                map_file,
                backends,
            } => Arc::new(HaproxyDriver::new(
                socket.clone(),
                map_file.clone(),
                backends.clone(),
            )),
        })
    }

    /// The drain timeout.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The register timeout.
    pub fn register_timeout(&self) -> Duration {
        Duration::from_secs(self.register_timeout_secs)
    }

    /// The group an instance belongs to.
    pub fn group_of(&self, instance: &str) -> Option<&str> {
        self.server_groups
            .iter()
            .find(|(_, v)| v.iter().any(|i| i == instance))
            .map(|(g, _)| g.as_str())
    }
}

/// `host:port` with a non-empty host and a port number (IPv6 hosts in brackets).
fn looks_like_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.chars().any(|c| c.is_whitespace() || c == '/')
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAPROXY: &str = r#"
service = "app1"
drain_timeout_secs = 30
[driver]
kind = "haproxy"
socket = "/run/haproxy/admin.sock"
map_file = "/etc/haproxy/bluegreen.map"
backends = { blue = "bk_app1_blue" }
[server_groups]
blue = ["10.0.0.11:8080"]
green = ["10.0.0.21:8080"]
"#;

    #[test]
    fn parses_haproxy_config_with_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let c: LbConfig = toml::from_str(HAPROXY)?;
        c.validate()?;
        assert_eq!(c.drain_timeout(), Duration::from_secs(30));
        assert_eq!(c.register_timeout_secs, DEFAULT_REGISTER_TIMEOUT_SECS);
        assert_eq!(c.group_of("10.0.0.21:8080"), Some("green"));
        let DriverConfig::Haproxy { backends, .. } = &c.driver else {
            return Err("expected the haproxy driver".into());
        };
        assert_eq!(
            backends.get("blue").map(String::as_str),
            Some("bk_app1_blue")
        );
        Ok(())
    }

    #[test]
    fn parses_builtin_config_from_json() -> Result<(), Box<dyn std::error::Error>> {
        let c: LbConfig = serde_json::from_str(
            r#"{"driver":{"kind":"builtin","admin_url":"http://127.0.0.1:9000",
                "token_file":"/etc/rollcage/lb.token"},
                "service":"web","server_groups":{"default":["127.0.0.1:8081"]}}"#,
        )?;
        c.validate()?;
        assert!(matches!(c.driver, DriverConfig::Builtin { .. }));
        assert_eq!(c.drain_timeout_secs, DEFAULT_DRAIN_TIMEOUT_SECS);
        Ok(())
    }

    #[test]
    fn rejects_unknown_driver_and_fields() {
        let bad_kind = r#"{"driver":{"kind":"nginx"},"service":"s","server_groups":{"g":[]}}"#;
        assert!(serde_json::from_str::<LbConfig>(bad_kind).is_err());
        let extra = r#"{"driver":{"kind":"haproxy","socket":"/s","sockett":"/x"},
            "service":"s","server_groups":{"g":[]}}"#;
        assert!(serde_json::from_str::<LbConfig>(extra).is_err());
    }

    #[test]
    fn validate_names_the_bad_field() -> Result<(), Box<dyn std::error::Error>> {
        let mut c: LbConfig = toml::from_str(HAPROXY)?;
        c.server_groups
            .insert("green".into(), vec!["10.0.0.21".into()]);
        let e = c.validate().err().ok_or("expected an error")?;
        assert!(e.to_string().contains("server_groups.green[0]"), "{e}");
        let mut c: LbConfig = toml::from_str(HAPROXY)?;
        c.drain_timeout_secs = 0;
        let e = c.validate().err().ok_or("expected an error")?;
        assert!(e.to_string().contains("drain_timeout_secs"), "{e}");
        let mut c: LbConfig = toml::from_str(HAPROXY)?;
        if let DriverConfig::Haproxy { backends, .. } = &mut c.driver {
            backends.insert("red".into(), "bk_red".into());
        }
        let e = c.validate().err().ok_or("expected an error")?;
        assert!(e.to_string().contains("driver.backends.red"), "{e}");
        Ok(())
    }
}
