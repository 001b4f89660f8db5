//! A deployment group's load-balancer settings (styles `in-place-lb` and `blue-green`), as typed serde values:
//! the driver and its address ([`LbConfig`]: backend service, server groups, drain/register timeouts), where
//! each instance (agent name) sits in the LB, and the blue/green options.
//!
//! The settings are validated once, when the group is created ([`GroupLb::check`]: every problem with its field
//! path from the group, `lb.targets.web-1`), stored typed with the group, and read as they are by the engine.
//! Connecting to the LB is `rollcage_lbdriver`'s business; this module is serde-only.
//!
//! ```toml
//! active_group = "blue"          # blue/green: the server group serving now
//! wait_for_continue = false      # blue/green: pause in `ready` before switching
//! keep_old_group = true          # blue/green: the old group stays up as standby (default)
//! [targets]                      # agent name -> host:port in the LB
//! web-1 = "127.0.0.1:8081"
//! [lb]                           # LbConfig
//! service = "app1"
//! drain_timeout_secs = 30
//! [lb.driver]
//! kind = "builtin"               # or "haproxy": socket = "/run/haproxy/admin.sock", map_file, backends
//! admin_url = "http://127.0.0.1:9000"
//! token_file = "/etc/rollcage/lb-token"
//! [lb.server_groups]
//! blue = ["127.0.0.1:8081"]
//! [canary]                       # blue/green: weighted steps, judged (crate::canary); `[analysis]` for in-place-lb
//! steps = [10, 50, 100]
//! ```

use crate::canary::{AnalysisConfig, Table};
use crate::problem::FieldProblems;
use crate::wire::DeploymentStyle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default drain timeout: 300 s, the same as AWS's `deregistration_delay` and JD Cloud's connection draining.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 300;
/// Default time a registered instance has to become healthy: 300 s, like the AWS `target-in-service`
/// waiter's 10 min halved — long enough for slow health-check settings, short enough to fail a stuck deploy.
pub const DEFAULT_REGISTER_TIMEOUT_SECS: u64 = 300;

/// How a server group's servers are health-checked: an HTTP GET of `path`; 2xx and 3xx pass. (The built-in
/// LB's admin API takes it when a group is created; a group's settings may give one for the built-in driver.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckSpec {
    /// Path (and query) requested, starting with `/`.
    pub path: String,
    /// Time between the end of one check and the start of the next.
    pub interval_ms: u64,
    /// A check that has no response head after this long fails.
    pub timeout_ms: u64,
    /// Consecutive passes that make a server healthy (a new server starts unhealthy).
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy server unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckSpec {
    /// One check a second, two in a row to change state: a new server joins about 1 s after it answers, and
    /// a dead one leaves within about 2 s (the same as HAProxy's `inter 1s rise 2 fall 2` used in the notes).
    fn default() -> Self {
        Self {
            path: "/".to_owned(),
            interval_ms: 1000,
            timeout_ms: 1000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

/// A deployment group's load balancer: which driver and where it is, the backend service, the server groups with
/// their instances, and the timeouts.
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
    #[serde(default = "default_drain", skip_serializing_if = "is_default_drain")]
    pub drain_timeout_secs: u64,
    /// How long a registration waits for the instance to become healthy.
    #[serde(
        default = "default_register",
        skip_serializing_if = "is_default_register"
    )]
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

// Defaults are left out when serialising, so settings read back (a group as the API answers it) have the shape
// they were given in.
fn is_default_drain(secs: &u64) -> bool {
    *secs == DEFAULT_DRAIN_TIMEOUT_SECS
}

fn is_default_register(secs: &u64) -> bool {
    *secs == DEFAULT_REGISTER_TIMEOUT_SECS
}

impl LbConfig {
    /// Check what can be checked without the LB (names, addresses, timeouts); field paths are relative to the
    /// config (`server_groups.green[0]`).
    pub fn validate(&self) -> Result<(), FieldProblems> {
        let mut p = FieldProblems::default();
        self.check_into("", &mut p);
        p.into_result(())
    }

    fn check_into(&self, prefix: &str, p: &mut FieldProblems) {
        let mut add = |field: String, message: String| p.add(format!("{prefix}{field}"), message);
        if self.service.trim().is_empty() {
            add("service".into(), "expected a non-empty name".into());
        }
        if self.server_groups.is_empty() {
            add("server_groups".into(), "expected at least one group".into());
        }
        for (group, instances) in &self.server_groups {
            if group.trim().is_empty() {
                add("server_groups".into(), "empty group name".into());
            }
            for (i, inst) in instances.iter().enumerate() {
                if !looks_like_host_port(inst) {
                    add(
                        format!("server_groups.{group}[{i}]"),
                        format!("`{inst}`: expected `host:port`"),
                    );
                }
            }
        }
        if self.drain_timeout_secs == 0 {
            add(
                "drain_timeout_secs".into(),
                "expected at least 1 second".into(),
            );
        }
        if self.register_timeout_secs == 0 {
            add(
                "register_timeout_secs".into(),
                "expected at least 1 second".into(),
            );
        }
        if let DriverConfig::Haproxy { backends, .. } = &self.driver {
            for group in backends.keys() {
                if !self.server_groups.contains_key(group) {
                    add(
                        format!("driver.backends.{group}"),
                        "names a group that is not in `server_groups`".into(),
                    );
                }
            }
        }
    }

    /// The drain timeout.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The register timeout.
    pub fn register_timeout(&self) -> Duration {
        Duration::from_secs(self.register_timeout_secs)
    }

    /// The server group an instance address (`host:port`) belongs to.
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

/// A deployment group's load-balancer settings (the group's `lb` field). Not `Eq`: the canary thresholds are
/// fractions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait_for_continue: bool,
    /// Blue/green: keep the old group's instances running as standby (nothing is torn down). Only `true` is
    /// implemented; `false` is refused so nobody believes instances are terminated.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub keep_old_group: bool,
    /// Blue/green: shift traffic to the new group in weighted steps, each judged ([`AnalysisConfig`]); absent,
    /// the switch is instant as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<AnalysisConfig>,
    /// Rolling with LB: judge each instance's server against the group's other servers after its AllowTraffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisConfig>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl GroupLb {
    /// Check a group's settings (or their absence) against its style and instance list; field paths are from the
    /// group (`lb`, `lb.lb.service`, `lb.targets.web-1`, `instances[1]`).
    pub fn check(
        style: DeploymentStyle,
        instances: &[String],
        lb: Option<&GroupLb>,
    ) -> Result<(), FieldProblems> {
        let mut p = FieldProblems::default();
        match (lb, style) {
            (None, DeploymentStyle::InPlace) => {}
            (None, other) => p.add(
                "lb",
                format!(
                    "style `{other}` needs load-balancer settings (driver, service, server groups, targets)"
                ),
            ),
            (Some(_), DeploymentStyle::InPlace) => p.add(
                "lb",
                "style `in-place` does not use a load balancer; use `in-place-lb` or `blue-green`",
            ),
            (Some(s), style) => s.check_into(style, instances, &mut p),
        }
        p.into_result(())
    }

    /// Check the settings against a load-balanced style and the group's instances.
    pub fn validate(
        &self,
        style: DeploymentStyle,
        instances: &[String],
    ) -> Result<(), FieldProblems> {
        let mut p = FieldProblems::default();
        self.check_into(style, instances, &mut p);
        p.into_result(())
    }

    fn check_into(&self, style: DeploymentStyle, instances: &[String], p: &mut FieldProblems) {
        self.lb.check_into("lb.lb.", p);
        if self.targets.is_empty() {
            p.add("lb.targets", "expected at least one instance → host:port");
        }
        for (name, addr) in &self.targets {
            if self.lb.group_of(addr).is_none() {
                p.add(
                    format!("lb.targets.{name}"),
                    format!("`{addr}` is in none of `lb.server_groups`"),
                );
            }
        }
        // Every instance the group names must have an address, or its traffic steps could not run.
        for (i, name) in instances.iter().enumerate() {
            if !self.targets.contains_key(name) {
                p.add(
                    format!("instances[{i}]"),
                    format!("instance `{name}` has no entry in `lb.targets`"),
                );
            }
        }
        if !self.keep_old_group {
            p.add(
                "lb.keep_old_group",
                "only `true` is supported: the old group is kept as standby",
            );
        }
        if style == DeploymentStyle::BlueGreen {
            if self.lb.server_groups.len() != 2 {
                p.add(
                    "lb.lb.server_groups",
                    format!(
                        "blue-green expects exactly two server groups, found {}",
                        self.lb.server_groups.len()
                    ),
                );
            }
            match &self.active_group {
                None => p.add(
                    "lb.active_group",
                    "blue-green expects the server group serving now",
                ),
                Some(g) if !self.lb.server_groups.contains_key(g) => p.add(
                    "lb.active_group",
                    format!("`{g}` is not one of `lb.server_groups`"),
                ),
                Some(_) => {}
            }
        } else if self.wait_for_continue {
            p.add(
                "lb.wait_for_continue",
                "only blue-green deployments wait before switching traffic",
            );
        }
        if let Some(c) = &self.canary {
            if style == DeploymentStyle::BlueGreen {
                c.check_into(Table::Canary, "lb.canary", p);
            } else {
                p.add(
                    "lb.canary",
                    format!("style `{style}` has no second server group to shift traffic to: `[canary]` is for `blue-green`; use `[analysis]` for `in-place-lb`"),
                );
            }
        }
        if let Some(a) = &self.analysis {
            if style == DeploymentStyle::InPlaceLb {
                a.check_into(Table::Analysis, "lb.analysis", p);
            } else {
                p.add(
                    "lb.analysis",
                    format!("style `{style}` does not judge instances one by one: `[analysis]` is for `in-place-lb`; use `[canary]` for `blue-green`"),
                );
            }
        }
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
    use serde_json::{Value, json};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn settings() -> Value {
        json!({
            "active_group": "blue",
            "targets": { "a": "127.0.0.1:8081", "b": "127.0.0.1:8082" },
            "lb": {
                "service": "app1",
                "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9000", "token_file": "/tmp/t" },
                "server_groups": { "blue": ["127.0.0.1:8081"], "green": ["127.0.0.1:8082"] }
            }
        })
    }

    fn haproxy() -> Value {
        json!({
            "service": "app1",
            "drain_timeout_secs": 30,
            "driver": { "kind": "haproxy", "socket": "/run/haproxy/admin.sock", "backends": { "blue": "bk_blue" } },
            "server_groups": { "blue": ["10.0.0.11:8080"], "green": ["10.0.0.21:8080"] }
        })
    }

    /// The field paths of the problems of `v` (as a group's `lb`) for `style` and `instances`; `["ok"]` when none.
    fn paths(style: DeploymentStyle, instances: &[&str], v: Option<Value>) -> Vec<String> {
        let names: Vec<String> = instances.iter().map(|s| s.to_string()).collect();
        let settings = match v.map(serde_json::from_value::<GroupLb>).transpose() {
            Ok(s) => s,
            Err(e) => return vec![format!("does not parse: {e}")],
        };
        match GroupLb::check(style, &names, settings.as_ref()) {
            Ok(()) => vec!["ok".into()],
            Err(p) => p.paths().into_iter().map(str::to_owned).collect(),
        }
    }

    fn config_paths(v: Value) -> Vec<String> {
        match serde_json::from_value::<LbConfig>(v) {
            Ok(c) => match c.validate() {
                Ok(()) => vec!["ok".into()],
                Err(p) => p.paths().into_iter().map(str::to_owned).collect(),
            },
            Err(e) => vec![format!("does not parse: {e}")],
        }
    }

    #[test]
    fn blue_green_settings_parse_with_defaults_and_answer_targets() -> TestResult {
        let s: GroupLb = serde_json::from_value(settings())?;
        s.validate(DeploymentStyle::BlueGreen, &[])?;
        assert!(s.keep_old_group);
        assert!(!s.wait_for_continue);
        assert_eq!(s.lb.drain_timeout_secs, DEFAULT_DRAIN_TIMEOUT_SECS);
        assert_eq!(s.lb.register_timeout(), Duration::from_secs(300));
        assert_eq!(s.target("b"), Some(("green", "127.0.0.1:8082")));
        assert_eq!(s.target("zz"), None);
        assert_eq!(s.other_group("blue"), Some("green"));
        assert_eq!(s.instances_of("green"), ["b"]);
        // The JSON shape is the one the API has always taken, defaults left out: it round-trips to the same text.
        assert_eq!(serde_json::to_value(&s)?, settings());
        let back: GroupLb = serde_json::from_value(serde_json::to_value(&s)?)?;
        assert_eq!(back, s);
        Ok(())
    }

    #[test]
    fn group_rules_name_the_field() {
        use DeploymentStyle::{BlueGreen, InPlace, InPlaceLb};
        assert_eq!(paths(InPlaceLb, &["a", "b"], Some(settings())), ["ok"]);
        assert_eq!(paths(InPlace, &[], None), ["ok"]);
        assert_eq!(paths(InPlaceLb, &[], None), ["lb"]);
        assert_eq!(paths(BlueGreen, &[], None), ["lb"]);
        assert_eq!(paths(InPlace, &[], Some(settings())), ["lb"]);
        assert_eq!(
            paths(InPlaceLb, &["a", "zz"], Some(settings())),
            ["instances[1]"]
        );
        let mut v = settings();
        v["targets"]["c"] = "10.0.0.9:80".into();
        assert_eq!(paths(InPlaceLb, &[], Some(v)), ["lb.targets.c"]);
        let mut v = settings();
        v["targets"] = json!({});
        assert_eq!(paths(InPlaceLb, &[], Some(v)), ["lb.targets"]);
        let mut v = settings();
        v["lb"]["service"] = "".into();
        assert_eq!(paths(InPlaceLb, &[], Some(v)), ["lb.lb.service"]);
        let mut v = settings();
        v["keep_old_group"] = false.into();
        assert_eq!(paths(BlueGreen, &[], Some(v)), ["lb.keep_old_group"]);
        let mut v = settings();
        v["active_group"] = "red".into();
        assert_eq!(paths(BlueGreen, &[], Some(v)), ["lb.active_group"]);
        let mut v = settings();
        v.as_object_mut().map(|m| m.remove("active_group"));
        assert_eq!(paths(BlueGreen, &[], Some(v)), ["lb.active_group"]);
        let mut v = settings();
        v["lb"]["server_groups"]["red"] = json!(["127.0.0.1:8083"]);
        assert_eq!(paths(BlueGreen, &[], Some(v)), ["lb.lb.server_groups"]);
        let mut v = settings();
        v["wait_for_continue"] = true.into();
        assert_eq!(
            paths(InPlaceLb, &[], Some(v.clone())),
            ["lb.wait_for_continue"]
        );
        assert_eq!(paths(BlueGreen, &[], Some(v)), ["ok"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut v = settings();
        v["lb"]["service"] = " ".into();
        v["lb"]["drain_timeout_secs"] = 0.into();
        v["active_group"] = "red".into();
        assert_eq!(
            paths(DeploymentStyle::BlueGreen, &["a", "x"], Some(v)),
            [
                "lb.lb.service",
                "lb.lb.drain_timeout_secs",
                "instances[1]",
                "lb.active_group"
            ]
        );
    }

    #[test]
    fn config_rules_name_the_field() {
        assert_eq!(config_paths(haproxy()), ["ok"]);
        let mut v = haproxy();
        v["server_groups"]["green"] = json!(["10.0.0.21"]);
        assert_eq!(config_paths(v), ["server_groups.green[0]"]);
        for bad in ["host:0", ":80", "a b:80", "h/x:80", "h:99999"] {
            let mut v = haproxy();
            v["server_groups"]["green"] = json!([bad]);
            assert_eq!(config_paths(v), ["server_groups.green[0]"], "{bad}");
        }
        let mut v = haproxy();
        v["server_groups"] = json!({});
        // No groups, so the HAProxy backend of `blue` names none either.
        assert_eq!(config_paths(v), ["server_groups", "driver.backends.blue"]);
        let mut v = haproxy();
        v["server_groups"][" "] = json!([]);
        assert_eq!(config_paths(v), ["server_groups"]);
        let mut v = haproxy();
        v["drain_timeout_secs"] = 0.into();
        assert_eq!(config_paths(v), ["drain_timeout_secs"]);
        let mut v = haproxy();
        v["register_timeout_secs"] = 0.into();
        assert_eq!(config_paths(v), ["register_timeout_secs"]);
        let mut v = haproxy();
        v["driver"]["backends"]["red"] = "bk_red".into();
        assert_eq!(config_paths(v), ["driver.backends.red"]);
        let mut v = haproxy();
        v["service"] = "".into();
        let e = serde_json::from_value::<LbConfig>(v)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|p| p.to_string()))
            .err()
            .unwrap_or_default();
        assert_eq!(e, "service: expected a non-empty name");
    }

    #[test]
    fn unknown_drivers_and_fields_do_not_parse() {
        let bad_kind = json!({"driver":{"kind":"nginx"},"service":"s","server_groups":{"g":[]}});
        assert!(serde_json::from_value::<LbConfig>(bad_kind).is_err());
        let extra = json!({"driver":{"kind":"haproxy","socket":"/s","sockett":"/x"},"service":"s","server_groups":{"g":[]}});
        assert!(serde_json::from_value::<LbConfig>(extra).is_err());
        let mut v = settings();
        v["targetz"] = json!({});
        assert!(serde_json::from_value::<GroupLb>(v).is_err());
    }

    #[test]
    fn a_health_check_takes_the_lb_defaults_for_what_it_leaves_out() -> TestResult {
        let hc = json!({"path": "/health", "interval_ms": 500});
        let spec: HealthCheckSpec = serde_json::from_value(hc)?;
        assert_eq!(
            (spec.path.as_str(), spec.interval_ms, spec.healthy_threshold),
            ("/health", 500, 2)
        );
        Ok(())
    }
}
