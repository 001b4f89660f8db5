//! From a deployment group's load-balancer configuration to a driver. The configuration itself
//! ([`LbConfig`]: which driver and where it is, the backend service, the server groups, the timeouts) is a
//! serde contract owned by [`rollcage_proto::lb`], re-exported here; the coordinator stores one per deployment
//! group and calls [`Connect::connect`] to get a driver.
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
use std::sync::Arc;

pub use rollcage_proto::lb::{
    DEFAULT_DRAIN_TIMEOUT_SECS, DEFAULT_REGISTER_TIMEOUT_SECS, DriverConfig, LbConfig,
};

/// Build the driver an [`LbConfig`] names.
pub trait Connect {
    /// Validates the configuration and builds its driver (no network I/O yet, except reading the token).
    fn connect(&self) -> Result<Arc<dyn LbDriver>, LbDriverError>;
}

impl Connect for LbConfig {
    fn connect(&self) -> Result<Arc<dyn LbDriver>, LbDriverError> {
        self.validate().map_err(|problems| {
            // Settings are validated when a group is created; here the first problem is enough to refuse.
            let first = problems.0.into_iter().next();
            LbDriverError::Config {
                field: first.as_ref().map(|p| p.path.clone()).unwrap_or_default(),
                message: first.map(|p| p.message).unwrap_or_default(),
            }
        })?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    #[test]
    fn connect_refuses_an_invalid_config_naming_the_field() -> Result<(), Box<dyn std::error::Error>>
    {
        let mut c: LbConfig = toml::from_str(HAPROXY)?;
        c.register_timeout_secs = 0;
        match c.connect() {
            Err(LbDriverError::Config { field, .. }) => assert_eq!(field, "register_timeout_secs"),
            Err(other) => return Err(format!("expected a config error, got {other}").into()),
            Ok(_) => return Err("expected a config error".into()),
        }
        Ok(())
    }
}
