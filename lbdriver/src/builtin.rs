//! The `builtin` driver: drives the embedded load balancer (`rollcage lb`) through its token-protected admin
//! API with [`rollcage_lb::client::AdminClient`], the way a cloud LB's API would be driven.
//!
//! Server groups and backend services map one to one onto the LB's own; instances are its `host:port`
//! servers, so registering adds the server (the LB starts it unhealthy and only sends traffic after its
//! health checks pass) and deregistering drains and removes it. Weights are the LB's split
//! (`PUT /v1/services/{svc}/split`); windows are its traffic windows (`POST /v1/windows?since=…`), whose ids
//! and LB process name make the [`WindowMark`].

use crate::error::LbDriverError;
use crate::{
    DrainOutcome, GroupCounters, LbDriver, ServerCounters, TrafficSplit, TrafficWindow, Weight,
    WindowMark,
};
use rollcage_lb::api::{HealthCheckSpec, ServerPhase};
use rollcage_lb::client::{AdminClient, ClientError};
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a deregistration polls the server's state.
const POLL: Duration = Duration::from_millis(50);
/// Grace past the drain timeout for the LB's own forced removal to show in its API.
const FORCE_GRACE: Duration = Duration::from_secs(5);

/// Driver of the built-in load balancer.
#[derive(Debug, Clone)]
pub struct BuiltinDriver {
    client: AdminClient,
    addr: SocketAddr,
    health_check: Option<HealthCheckSpec>,
}

impl BuiltinDriver {
    /// A driver for the admin API at `addr` with bearer `token`. `health_check` is used when a register
    /// has to create the group.
    pub fn new(addr: SocketAddr, token: &str, health_check: Option<HealthCheckSpec>) -> Self {
        Self {
            client: AdminClient::new(addr, token),
            addr,
            health_check,
        }
    }

    /// A driver from the configuration: `admin_url` is `http://HOST:PORT`, `token_file` holds the token and
    /// must be readable by its owner only.
    pub fn from_config(
        admin_url: &str,
        token_file: &Path,
        health_check: Option<HealthCheckSpec>,
    ) -> Result<Self, LbDriverError> {
        let addr = parse_admin_url(admin_url)?;
        let token = read_token(token_file)?;
        Ok(Self::new(addr, &token, health_check))
    }

    fn lb(&self) -> String {
        format!("builtin LB at {}", self.addr)
    }

    fn api_error(&self, group: &str, instance: &str, e: ClientError) -> LbDriverError {
        match e {
            ClientError::Transport { what, message, .. } => LbDriverError::Unreachable {
                lb: self.lb(),
                what,
                message,
            },
            ClientError::Decode { what, message } => LbDriverError::Protocol {
                lb: self.lb(),
                what,
                message,
            },
            ClientError::Timeout {
                goal: "healthy",
                waited_ms,
                last,
                ..
            } => LbDriverError::NotHealthy {
                lb: self.lb(),
                group: group.to_owned(),
                instance: instance.to_owned(),
                waited_ms,
                last,
            },
            ClientError::Timeout {
                waited_ms, last, ..
            } => LbDriverError::NotDrained {
                lb: self.lb(),
                group: group.to_owned(),
                instance: instance.to_owned(),
                waited_ms,
                last,
            },
            e @ ClientError::Api { .. } => LbDriverError::Api {
                lb: self.lb(),
                group: group.to_owned(),
                instance: instance.to_owned(),
                message: e.to_string(),
            },
        }
    }
}

#[async_trait::async_trait]
impl LbDriver for BuiltinDriver {
    fn describe(&self) -> String {
        self.lb()
    }

    async fn register(
        &self,
        group: &str,
        instance: &str,
        timeout: Duration,
    ) -> Result<(), LbDriverError> {
        let start = Instant::now();
        let first = self
            .client
            .register_and_wait(group, instance, timeout)
            .await;
        match first {
            Ok(_) => {}
            Err(e) if e.code() == Some("group_not_found") => {
                tracing::info!(lb = %self.lb(), group, "creating the server group");
                self.client
                    .create_group(group, self.health_check.clone())
                    .await
                    .map_err(|e| self.api_error(group, instance, e))?;
                let left = timeout.saturating_sub(start.elapsed());
                self.client
                    .register_and_wait(group, instance, left)
                    .await
                    .map_err(|e| self.api_error(group, instance, e))?;
            }
            Err(e) => return Err(self.api_error(group, instance, e)),
        }
        tracing::info!(lb = %self.lb(), group, instance, elapsed_ms = millis(start.elapsed()),
            "instance registered and healthy");
        Ok(())
    }

    async fn deregister(
        &self,
        group: &str,
        instance: &str,
        drain_timeout: Duration,
    ) -> Result<DrainOutcome, LbDriverError> {
        let start = Instant::now();
        let out = || DrainOutcome {
            forced: false,
            already_out: true,
            elapsed: start.elapsed(),
        };
        match self.client.server(group, instance).await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(out()),
            // A group that does not exist has no instance in traffic.
            Err(e) if e.code() == Some("group_not_found") => return Ok(out()),
            Err(e) => return Err(self.api_error(group, instance, e)),
        }
        let view = self
            .client
            .deregister(group, instance, Some(drain_timeout), false)
            .await
            .map_err(|e| self.api_error(group, instance, e))?;
        if view.phase == ServerPhase::Removed {
            // Nothing was in flight: removed at once.
            return Ok(DrainOutcome {
                forced: false,
                already_out: false,
                elapsed: start.elapsed(),
            });
        }
        let mut last_in_flight = view.in_flight;
        loop {
            tokio::time::sleep(POLL).await;
            match self
                .client
                .server(group, instance)
                .await
                .map_err(|e| self.api_error(group, instance, e))?
            {
                None => break,
                Some(v) => {
                    if start.elapsed() >= drain_timeout + FORCE_GRACE {
                        return Err(LbDriverError::NotDrained {
                            lb: self.lb(),
                            group: group.to_owned(),
                            instance: instance.to_owned(),
                            waited_ms: millis(start.elapsed()),
                            last: format!("phase={:?}, in_flight={}", v.phase, v.in_flight),
                        });
                    }
                    if v.phase == ServerPhase::Active {
                        // Someone registered it again meanwhile: that wins; it is in traffic.
                        return Err(LbDriverError::Api {
                            lb: self.lb(),
                            group: group.to_owned(),
                            instance: instance.to_owned(),
                            message: "registered again while draining".to_owned(),
                        });
                    }
                    last_in_flight = v.in_flight;
                }
            }
        }
        // The LB removes a draining server as soon as in-flight reaches 0, or by force at the timeout.
        let forced = last_in_flight > 0 && start.elapsed() >= drain_timeout;
        tracing::info!(lb = %self.lb(), group, instance, forced,
            elapsed_ms = millis(start.elapsed()), "instance deregistered");
        Ok(DrainOutcome {
            forced,
            already_out: false,
            elapsed: start.elapsed(),
        })
    }

    async fn switch(&self, service: &str, group: &str) -> Result<(), LbDriverError> {
        // Switching to a group that does not exist would send every request to a 503.
        self.client.group(group).await.map_err(|e| {
            if e.code() == Some("group_not_found") {
                LbDriverError::UnknownGroup {
                    lb: self.lb(),
                    group: group.to_owned(),
                    expected: "a server group on the built-in LB".to_owned(),
                }
            } else {
                self.api_error(group, "-", e)
            }
        })?;
        self.client
            .switch_service(service, group)
            .await
            .map_err(|e| self.service_error(service, e))?;
        tracing::info!(lb = %self.lb(), service, group, "backend service switched");
        Ok(())
    }

    async fn set_weight(
        &self,
        service: &str,
        new_group: &str,
        weight: Weight,
    ) -> Result<(), LbDriverError> {
        let view = self
            .client
            .set_split(service, new_group, weight)
            .await
            .map_err(|e| match e.code() {
                Some("group_not_found") => LbDriverError::UnknownGroup {
                    lb: self.lb(),
                    group: new_group.to_owned(),
                    expected: "a server group on the built-in LB".to_owned(),
                },
                _ => self.service_error(service, e),
            })?;
        tracing::info!(lb = %self.lb(), service, active = %view.group, new_group,
            weight = weight.percent(), "traffic weight set");
        Ok(())
    }

    async fn traffic_split(&self, service: &str) -> Result<TrafficSplit, LbDriverError> {
        let view = self
            .client
            .service(service)
            .await
            .map_err(|e| self.service_error(service, e))?;
        Ok(match view.split {
            Some(s) => TrafficSplit {
                active_group: view.group,
                new_group: Some(s.group),
                weight: s.weight,
            },
            None => TrafficSplit {
                active_group: view.group,
                new_group: None,
                weight: Weight::ZERO,
            },
        })
    }

    async fn read_window(
        &self,
        groups: &[&str],
        since: Option<&WindowMark>,
    ) -> Result<TrafficWindow, LbDriverError> {
        let (mark, foreign) = match since {
            Some(WindowMark::Builtin { lb, window, .. }) => (Some((lb.as_str(), *window)), false),
            // A mark of another driver kind cannot be used: read what the LB has, flagged as a reset.
            Some(_) => (None, true),
            None => (None, false),
        };
        let report = self
            .client
            .cut_window(mark)
            .await
            .map_err(|e| self.api_error(&groups.join(","), "-", e))?;
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let g = report
                .groups
                .iter()
                .find(|g| g.group == *group)
                .ok_or_else(|| LbDriverError::UnknownGroup {
                    lb: self.lb(),
                    group: (*group).to_owned(),
                    expected: "a server group on the built-in LB".to_owned(),
                })?;
            out.push(g.clone());
        }
        Ok(TrafficWindow {
            mark: WindowMark::Builtin {
                lb: report.lb,
                window: report.id,
                at_unix_ms: report.end_unix_ms,
            },
            start_unix_ms: report.start_unix_ms,
            end_unix_ms: report.end_unix_ms,
            reset: report.reset || foreign,
            groups: out,
        })
    }

    async fn active_group(&self, service: &str) -> Result<String, LbDriverError> {
        self.client
            .service(service)
            .await
            .map(|s| s.group)
            .map_err(|e| self.service_error(service, e))
    }

    async fn counters(&self, group: &str) -> Result<GroupCounters, LbDriverError> {
        let report = self
            .client
            .counters()
            .await
            .map_err(|e| self.api_error(group, "-", e))?;
        let g = report
            .groups
            .into_iter()
            .find(|g| g.group == group)
            .ok_or_else(|| LbDriverError::UnknownGroup {
                lb: self.lb(),
                group: group.to_owned(),
                expected: "a server group on the built-in LB".to_owned(),
            })?;
        let view = self
            .client
            .group(group)
            .await
            .map_err(|e| self.api_error(group, "-", e))?;
        let state_of = |addr: &str| {
            view.servers
                .iter()
                .find(|s| s.address == addr)
                .map(|s| match (s.phase, s.healthy) {
                    (ServerPhase::Active, true) => "active",
                    (ServerPhase::Active, false) => "unhealthy",
                    (ServerPhase::Draining, _) => "draining",
                    (ServerPhase::Removed, _) => "removed",
                })
                .unwrap_or("removed")
                .to_owned()
        };
        Ok(GroupCounters {
            group: g.group,
            requests: g.counters.requests,
            errors_5xx: g.counters.responses_5xx,
            in_flight: g.counters.in_flight,
            per_server: g
                .servers
                .iter()
                .map(|s| ServerCounters {
                    instance: s.address.clone(),
                    name: s.address.clone(),
                    requests: s.counters.requests,
                    errors_5xx: s.counters.responses_5xx,
                    in_flight: s.counters.in_flight,
                    state: state_of(&s.address),
                })
                .collect(),
        })
    }
}

impl BuiltinDriver {
    fn service_error(&self, service: &str, e: ClientError) -> LbDriverError {
        if e.code() == Some("service_not_found") {
            LbDriverError::UnknownService {
                lb: self.lb(),
                service: service.to_owned(),
                detail: "no such service on the built-in LB".to_owned(),
            }
        } else {
            self.api_error(service, "-", e)
        }
    }
}

/// `http://HOST:PORT` (no path) → the socket address; the name is resolved once, now.
fn parse_admin_url(admin_url: &str) -> Result<SocketAddr, LbDriverError> {
    let err = |message: String| LbDriverError::Config {
        field: "driver.admin_url".to_owned(),
        message: format!("`{admin_url}`: {message}"),
    };
    let url = url::Url::parse(admin_url).map_err(|e| err(format!("not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(err("expected an `http://HOST:PORT` URL".to_owned()));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(err("expected no path or query".to_owned()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| err("expected a host".to_owned()))?;
    let port = url
        .port()
        .ok_or_else(|| err("expected an explicit port".to_owned()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| err(format!("cannot resolve the host: {e}")))?
        .next()
        .ok_or_else(|| err("the host resolves to no address".to_owned()))
}

/// Reads the admin token; the file must not be readable or writable by group or others.
fn read_token(path: &Path) -> Result<String, LbDriverError> {
    let err = |message: String| LbDriverError::Config {
        field: "driver.token_file".to_owned(),
        message: format!("{}: {message}", path.display()),
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "readable or writable by group or others (mode {mode:o}); expected 0600"
        )));
    }
    let token = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read: {e}")))?
        .trim()
        .to_owned();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(err("expected one token on one line".to_owned()));
    }
    Ok(token)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_url_needs_http_host_and_port() -> Result<(), LbDriverError> {
        assert_eq!(
            parse_admin_url("http://127.0.0.1:9000")?,
            SocketAddr::from(([127, 0, 0, 1], 9000))
        );
        assert_eq!(parse_admin_url("http://[::1]:9000/")?.port(), 9000);
        for bad in [
            "https://127.0.0.1:9000",
            "http://127.0.0.1",
            "http://127.0.0.1:9000/v1",
            "127.0.0.1:9000",
        ] {
            let e = parse_admin_url(bad).err();
            assert!(
                e.as_ref()
                    .is_some_and(|e| e.to_string().contains("driver.admin_url")),
                "{bad}: {e:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn token_file_must_be_private() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        std::fs::write(&path, "abcdef0123456789\n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let e = read_token(&path).err().ok_or("expected an error")?;
        assert!(e.to_string().contains("expected 0600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(read_token(&path)?, "abcdef0123456789");
        Ok(())
    }
}
