//! A deployment group's load-balancer settings (`in-place-lb` and `blue-green`): the driver's
//! [`LbConfig`], where each instance (agent name) sits in the LB, and the blue/green options. Parsed and
//! validated at group creation (errors carry the field path, `lb.targets.web-1`), stored as JSON with the group.
//!
//! ```toml
//! active_group = "blue"          # blue/green: the server group serving now
//! wait_for_continue = false      # blue/green: pause in `ready` before switching
//! keep_old_group = true          # blue/green: the old group stays up as standby (default)
//! [targets]                      # agent name -> host:port in the LB
//! web-1 = "127.0.0.1:8081"
//! [lb]                           # lbdriver::LbConfig
//! service = "app1"
//! drain_timeout_secs = 30
//! [lb.driver]
//! kind = "builtin"
//! admin_url = "http://127.0.0.1:9000"
//! token_file = "/etc/rollcage/lb-token"
//! [lb.server_groups]
//! blue = ["127.0.0.1:8081"]
//! ```

use rollcage_lbdriver::LbConfig;
use rollcage_proto::wire::DeploymentStyle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A group's load-balancer settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLb {
    /// The driver configuration.
    pub lb: LbConfig,
    /// Each instance's address in the LB (`host:port`), by agent name.
    pub targets: BTreeMap<String, String>,
    /// Blue/green: the server group that serves traffic before the first deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_group: Option<String>,
    /// Blue/green: pause in `ready` once the idle group is validated, until `continue`.
    #[serde(default)]
    pub wait_for_continue: bool,
    /// Blue/green: keep the old group's instances running as standby (nothing is torn down). Only `true` is
    /// implemented; `false` is refused so nobody believes instances are terminated.
    #[serde(default = "yes")]
    pub keep_old_group: bool,
}

fn yes() -> bool {
    true
}

/// Why a group's LB settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deployment group field `{field}`: {message}")]
pub struct LbSettingsError {
    /// Field path, from the group (`lb.lb.service`, `lb.targets.web-1`).
    pub field: String,
    /// What was expected.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> LbSettingsError {
    LbSettingsError {
        field: field.into(),
        message: message.into(),
    }
}

impl GroupLb {
    /// Parse and validate the settings a group was created with, for its style and instance list.
    pub fn from_group(
        style: DeploymentStyle,
        instances: &[String],
        lb: Option<&serde_json::Value>,
    ) -> Result<Option<Self>, LbSettingsError> {
        let Some(value) = lb else {
            return match style {
                DeploymentStyle::InPlace => Ok(None),
                other => Err(err(
                    "lb",
                    format!(
                        "style `{other}` needs load-balancer settings (driver, service, server groups, targets)"
                    ),
                )),
            };
        };
        if style == DeploymentStyle::InPlace {
            return Err(err(
                "lb",
                "style `in-place` does not use a load balancer; use `in-place-lb` or `blue-green`",
            ));
        }
        let settings: Self = serde_json::from_value(value.clone())
            .map_err(|e| err("lb", format!("invalid load-balancer settings: {e}")))?;
        settings.validate(style, instances)?;
        Ok(Some(settings))
    }

    /// Check the settings against the style and the group's instances.
    pub fn validate(
        &self,
        style: DeploymentStyle,
        instances: &[String],
    ) -> Result<(), LbSettingsError> {
        self.lb.validate().map_err(|e| match e {
            rollcage_lbdriver::LbDriverError::Config { field, message } => {
                err(format!("lb.lb.{field}"), message)
            }
            other => err("lb.lb", other.to_string()),
        })?;
        if self.targets.is_empty() {
            return Err(err(
                "lb.targets",
                "expected at least one instance → host:port",
            ));
        }
        for (name, addr) in &self.targets {
            if self.lb.group_of(addr).is_none() {
                return Err(err(
                    format!("lb.targets.{name}"),
                    format!("`{addr}` is in none of `lb.server_groups`"),
                ));
            }
        }
        // Every instance the group names must have an address, or its traffic steps could not run.
        for (i, name) in instances.iter().enumerate() {
            if !self.targets.contains_key(name) {
                return Err(err(
                    format!("instances[{i}]"),
                    format!("instance `{name}` has no entry in `lb.targets`"),
                ));
            }
        }
        if !self.keep_old_group {
            return Err(err(
                "lb.keep_old_group",
                "only `true` is supported: the old group is kept as standby",
            ));
        }
        if style == DeploymentStyle::BlueGreen {
            if self.lb.server_groups.len() != 2 {
                return Err(err(
                    "lb.lb.server_groups",
                    format!(
                        "blue-green expects exactly two server groups, found {}",
                        self.lb.server_groups.len()
                    ),
                ));
            }
            match &self.active_group {
                None => {
                    return Err(err(
                        "lb.active_group",
                        "blue-green expects the server group serving now",
                    ));
                }
                Some(g) if !self.lb.server_groups.contains_key(g) => {
                    return Err(err(
                        "lb.active_group",
                        format!("`{g}` is not one of `lb.server_groups`"),
                    ));
                }
                Some(_) => {}
            }
        } else if self.wait_for_continue {
            return Err(err(
                "lb.wait_for_continue",
                "only blue-green deployments wait before switching traffic",
            ));
        }
        Ok(())
    }

    /// The LB address and server group of an instance (agent name).
    pub fn target(&self, instance: &str) -> Option<(&str, &str)> {
        let addr = self.targets.get(instance)?;
        let group = self.lb.group_of(addr)?;
        Some((group, addr.as_str()))
    }

    /// Blue/green: the server group that is not `active`.
    pub fn other_group(&self, active: &str) -> Option<&str> {
        self.lb
            .server_groups
            .keys()
            .map(String::as_str)
            .find(|g| *g != active)
    }

    /// The agent names whose address is in server group `group`, in `targets` order.
    pub fn instances_of(&self, group: &str) -> Vec<String> {
        self.targets
            .iter()
            .filter(|(_, addr)| self.lb.group_of(addr) == Some(group))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> serde_json::Value {
        serde_json::json!({
            "active_group": "blue",
            "targets": { "a": "127.0.0.1:8081", "b": "127.0.0.1:8082" },
            "lb": {
                "service": "app1",
                "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9000", "token_file": "/tmp/t" },
                "server_groups": { "blue": ["127.0.0.1:8081"], "green": ["127.0.0.1:8082"] }
            }
        })
    }

    #[test]
    fn blue_green_settings_parse_and_answer_targets() -> Result<(), LbSettingsError> {
        let s = GroupLb::from_group(DeploymentStyle::BlueGreen, &[], Some(&settings()))?;
        let Some(s) = s else {
            return Err(err("test", "expected settings"));
        };
        assert!(s.keep_old_group);
        assert_eq!(s.target("b"), Some(("green", "127.0.0.1:8082")));
        assert_eq!(s.other_group("blue"), Some("green"));
        assert_eq!(s.instances_of("green"), ["b"]);
        Ok(())
    }

    #[test]
    fn refusals_name_the_field() {
        let field = |style, instances: &[&str], v: Option<serde_json::Value>| {
            let names: Vec<String> = instances.iter().map(|s| s.to_string()).collect();
            GroupLb::from_group(style, &names, v.as_ref())
                .err()
                .map(|e| e.field)
        };
        assert_eq!(
            field(DeploymentStyle::InPlaceLb, &[], None).as_deref(),
            Some("lb")
        );
        assert_eq!(
            field(DeploymentStyle::InPlace, &[], Some(settings())).as_deref(),
            Some("lb")
        );
        assert_eq!(
            field(DeploymentStyle::InPlaceLb, &["a", "zz"], Some(settings())).as_deref(),
            Some("instances[1]")
        );
        let mut v = settings();
        v["targets"]["c"] = "10.0.0.9:80".into();
        assert_eq!(
            field(DeploymentStyle::InPlaceLb, &[], Some(v)).as_deref(),
            Some("lb.targets.c")
        );
        let mut v = settings();
        v["lb"]["service"] = "".into();
        assert_eq!(
            field(DeploymentStyle::InPlaceLb, &[], Some(v)).as_deref(),
            Some("lb.lb.service")
        );
        let mut v = settings();
        v["active_group"] = "red".into();
        assert_eq!(
            field(DeploymentStyle::BlueGreen, &[], Some(v)).as_deref(),
            Some("lb.active_group")
        );
        let mut v = settings();
        v["wait_for_continue"] = true.into();
        assert_eq!(
            field(DeploymentStyle::InPlaceLb, &[], Some(v)).as_deref(),
            Some("lb.wait_for_continue")
        );
        assert_eq!(
            field(DeploymentStyle::InPlaceLb, &["a", "b"], Some(settings())),
            None
        );
    }
}
