//! The `haproxy` driver: HAProxy 2.6+ over its runtime API (stats socket at `level admin`), following the
//! verified sequences in the shared load-balancer notes:
//!
//! - **deregister**: `set server B/S state drain` → poll `show stat` until the server's `scur + qcur` is 0 or
//!   the drain timeout passes → on timeout `shutdown sessions server B/S` → `set server B/S state maint`.
//! - **register**: `set server B/S state drain; set server B/S health down; set server B/S state ready` (one
//!   line: out of maintenance without traffic, marked down, then ready, so HAProxy re-checks before sending
//!   traffic) → poll until `status` is exactly `UP`.
//! - **switch**: rewrite the map file atomically (so a reload keeps the switch), then `set map FILE KEY
//!   BACKEND` (or `add map` when the key is new) on the frontend's backend map; a split's `SVC.weight` goes
//!   to 0 after it.
//! - **set_weight**: map entries `SVC.canary BACKEND` then `SVC.weight PERCENT`, read by the frontend's
//!   `rand(100),sub(txn.canary_weight) lt 0` rule (README: why this rule and not server weights).
//! - **read_window**: `show info` (worker `Pid`, `Uptime_sec`) and `show stat`; the window is the difference
//!   of `req_tot`/`hrsp_5xx` from the mark's, latency HAProxy's `rtime`/`ttime` averages (module `window`).
//!
//! Server groups are HAProxy backends (the group name, or `backends[group]`); instances are existing servers
//! of that backend, found by address (`host:port`) or by server name — this driver does not add servers.
//! Any non-empty reply to a `set` is an error carrying the reply.

pub mod command;
pub mod mapfile;
pub mod socket;
pub mod stat;
pub mod window;

use crate::error::LbDriverError;
use crate::{
    DrainOutcome, GroupCounters, LbDriver, ServerCounters, TrafficSplit, TrafficWindow, Weight,
    WindowMark,
};
use command::AdminState;
use socket::RuntimeSocket;
use stat::{ServerStat, Stats};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often waits poll `show stat`: fine enough that a drain ends within 0.1 s of the last request.
const POLL: Duration = Duration::from_millis(100);

/// Driver of one HAProxy instance.
#[derive(Debug, Clone)]
pub struct HaproxyDriver {
    socket: RuntimeSocket,
    map_file: Option<PathBuf>,
    backends: BTreeMap<String, String>,
}

/// Where a server is.
struct Target {
    backend: String,
    server: String,
}

impl HaproxyDriver {
    /// A driver for the runtime API at `socket`; `map_file` is the frontend's backend map (needed by
    /// `switch`/`active_group`); `backends` maps group names to backend names (default: the same name).
    pub fn new(
        socket: PathBuf,
        map_file: Option<PathBuf>,
        backends: BTreeMap<String, String>,
    ) -> Self {
        Self {
            socket: RuntimeSocket::new(socket),
            map_file,
            backends,
        }
    }

    fn lb(&self) -> String {
        format!("haproxy at {}", self.socket.path().display())
    }

    /// The backend name of a group.
    fn backend_of<'a>(&'a self, group: &'a str) -> &'a str {
        self.backends.get(group).map_or(group, String::as_str)
    }

    /// The group name of a backend (reverse of [`Self::backend_of`]).
    fn group_of_backend<'a>(&'a self, backend: &'a str) -> &'a str {
        self.backends
            .iter()
            .find(|(_, b)| b.as_str() == backend)
            .map_or(backend, |(g, _)| g.as_str())
    }

    fn check_name(&self, what: &'static str, name: &str) -> Result<(), LbDriverError> {
        if command::valid_name(name) {
            Ok(())
        } else {
            Err(LbDriverError::InvalidName {
                lb: self.lb(),
                what,
                name: name.to_owned(),
                expected: command::NAME_RULE,
            })
        }
    }

    fn map_path(&self, service: &str) -> Result<String, LbDriverError> {
        let path = self
            .map_file
            .as_ref()
            .ok_or_else(|| LbDriverError::Config {
                field: "driver.map_file".to_owned(),
                message: format!(
                    "switching backend service `{service}` needs the frontend's backend map file"
                ),
            })?;
        let text = path.to_str().filter(|p| command::valid_map_path(p));
        text.map(str::to_owned)
            .ok_or_else(|| LbDriverError::InvalidName {
                lb: self.lb(),
                what: "map file",
                name: path.display().to_string(),
                expected: command::PATH_RULE,
            })
    }

    /// Sends a command and returns its raw reply.
    async fn send(&self, line: &str) -> Result<String, LbDriverError> {
        self.socket
            .send(line)
            .await
            .map_err(|e| LbDriverError::Unreachable {
                lb: self.lb(),
                what: format!("`{line}`"),
                message: e.to_string(),
            })
    }

    /// Sends a `set`-like command; any non-empty reply is an error naming group and instance.
    async fn set(&self, line: &str, group: &str, instance: &str) -> Result<(), LbDriverError> {
        let reply = self.send(line).await?;
        command::check_set_reply(&reply).map_err(|reply| LbDriverError::Rejected {
            lb: self.lb(),
            group: group.to_owned(),
            instance: instance.to_owned(),
            command: line.to_owned(),
            reply,
        })
    }

    /// Sets a server's admin state (public for operators and tests; errors name the server).
    pub async fn set_server_state(
        &self,
        group: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), LbDriverError> {
        let backend = self.backend_of(group);
        self.check_name("group", backend)?;
        self.check_name("instance", server)?;
        self.set(&command::set_state(backend, server, state), group, server)
            .await
    }

    /// `show stat`, parsed.
    pub async fn stats(&self) -> Result<Stats, LbDriverError> {
        let reply = self.send("show stat").await?;
        stat::parse(&reply).map_err(|message| LbDriverError::Protocol {
            lb: self.lb(),
            what: "`show stat`".to_owned(),
            message,
        })
    }

    /// The server for `instance` in `group`'s backend; `Ok(None)` when the backend has no such server.
    async fn find(
        &self,
        group: &str,
        instance: &str,
    ) -> Result<Option<(Target, ServerStat)>, LbDriverError> {
        let backend = self.backend_of(group);
        self.check_name("group", backend)?;
        self.check_name("instance", instance)?;
        let stats = self.stats().await?;
        if stats.backend(backend).is_none() {
            return Err(self.unknown_group(group));
        }
        Ok(stats.server(backend, instance).map(|s| {
            (
                Target {
                    backend: backend.to_owned(),
                    server: s.name.clone(),
                },
                s.clone(),
            )
        }))
    }

    async fn server_now(
        &self,
        t: &Target,
        group: &str,
        instance: &str,
    ) -> Result<ServerStat, LbDriverError> {
        self.stats()
            .await?
            .servers_of(&t.backend)
            .find(|s| s.name == t.server)
            .cloned()
            .ok_or_else(|| LbDriverError::UnknownInstance {
                lb: self.lb(),
                group: group.to_owned(),
                instance: instance.to_owned(),
                known: "(the server disappeared, was HAProxy reloaded?)".to_owned(),
            })
    }

    /// Sets map entries in order, in the file first (atomically, so a reload keeps them) and then at run time
    /// (`set map`, or `add map` for a key the map does not have yet). If the runtime part fails the file is put
    /// back, so file and memory agree on what did not happen.
    async fn set_map_entries(
        &self,
        map: &str,
        entries: &[(String, String)],
        group: &str,
    ) -> Result<(), LbDriverError> {
        let path = PathBuf::from(map);
        let map_err = |message: String| LbDriverError::MapFile {
            lb: self.lb(),
            path: path.clone(),
            message,
        };
        let before =
            std::fs::read_to_string(&path).map_err(|e| map_err(format!("cannot read: {e}")))?;
        let after = entries.iter().fold(before.clone(), |text, (k, v)| {
            mapfile::with_entry(&text, k, v)
        });
        if after != before {
            mapfile::write_atomic(&path, &after)
                .map_err(|e| map_err(format!("cannot write: {e}")))?;
        }
        let runtime = async {
            for (key, value) in entries {
                let line = command::set_map(map, key, value);
                let reply = self.send(&line).await?;
                if command::is_entry_not_found(&reply) {
                    self.set(&command::add_map(map, key, value), group, key)
                        .await?;
                } else {
                    command::check_set_reply(&reply).map_err(|reply| LbDriverError::Rejected {
                        lb: self.lb(),
                        group: group.to_owned(),
                        instance: key.clone(),
                        command: line.clone(),
                        reply,
                    })?;
                }
            }
            Ok(())
        };
        if let Err(e) = runtime.await {
            if after != before
                && let Err(restore) = mapfile::write_atomic(&path, &before)
            {
                tracing::error!(lb = %self.lb(), path = %path.display(), error = %restore,
                    "could not restore the map file after a failed map change");
            }
            return Err(e);
        }
        Ok(())
    }

    fn unknown_group(&self, group: &str) -> LbDriverError {
        LbDriverError::UnknownGroup {
            lb: self.lb(),
            group: group.to_owned(),
            expected: format!("a backend named `{}`", self.backend_of(group)),
        }
    }
}

#[async_trait::async_trait]
impl LbDriver for HaproxyDriver {
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
        let Some((t, now)) = self.find(group, instance).await? else {
            let stats = self.stats().await?;
            let known: Vec<String> = stats
                .servers_of(self.backend_of(group))
                .map(|s| format!("{} ({})", s.name, s.addr))
                .collect();
            return Err(LbDriverError::UnknownInstance {
                lb: self.lb(),
                group: group.to_owned(),
                instance: instance.to_owned(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        };
        if now.is_maint() || now.is_drain() {
            // Out of rotation on purpose: back in, but only after fresh checks pass.
            let line = command::ready_after_checks(&t.backend, &t.server);
            self.set(&line, group, instance).await?;
        }
        // Otherwise it is already ready: UP (idempotent no-op) or waiting for its checks to rise.
        let mut last = now;
        while !last.is_up() {
            if start.elapsed() >= timeout {
                return Err(LbDriverError::NotHealthy {
                    lb: self.lb(),
                    group: group.to_owned(),
                    instance: instance.to_owned(),
                    waited_ms: millis(start.elapsed()),
                    last: format!(
                        "status `{}`, last check `{}`",
                        last.status, last.check_status
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
            last = self.server_now(&t, group, instance).await?;
        }
        tracing::info!(lb = %self.lb(), group, instance, server = %t.server,
            elapsed_ms = millis(start.elapsed()), "instance registered and UP");
        Ok(())
    }

    async fn deregister(
        &self,
        group: &str,
        instance: &str,
        drain_timeout: Duration,
    ) -> Result<DrainOutcome, LbDriverError> {
        let start = Instant::now();
        let Some((t, now)) = self.find(group, instance).await? else {
            tracing::info!(lb = %self.lb(), group, instance, "not a server of the group: nothing to deregister");
            return Ok(DrainOutcome {
                forced: false,
                already_out: true,
                elapsed: start.elapsed(),
            });
        };
        if now.is_maint() && now.in_flight() == 0 {
            return Ok(DrainOutcome {
                forced: false,
                already_out: true,
                elapsed: start.elapsed(),
            });
        }
        if !now.is_maint() && !now.is_drain() {
            let line = command::set_state(&t.backend, &t.server, AdminState::Drain);
            self.set(&line, group, instance).await?;
        }
        let mut last = now;
        let mut forced = false;
        loop {
            if last.in_flight() == 0 {
                break;
            }
            if start.elapsed() >= drain_timeout {
                tracing::warn!(lb = %self.lb(), group, instance, in_flight = last.in_flight(),
                    "drain timeout: cutting the sessions left");
                let line = command::shutdown_sessions(&t.backend, &t.server);
                self.set(&line, group, instance).await?;
                forced = true;
                break;
            }
            tokio::time::sleep(POLL).await;
            last = self.server_now(&t, group, instance).await?;
        }
        if !last.is_maint() {
            let line = command::set_state(&t.backend, &t.server, AdminState::Maint);
            self.set(&line, group, instance).await?;
        }
        tracing::info!(lb = %self.lb(), group, instance, server = %t.server, forced,
            elapsed_ms = millis(start.elapsed()), "instance deregistered");
        Ok(DrainOutcome {
            forced,
            already_out: false,
            elapsed: start.elapsed(),
        })
    }

    async fn switch(&self, service: &str, group: &str) -> Result<(), LbDriverError> {
        let map = self.map_path(service)?;
        let backend = self.backend_of(group).to_owned();
        self.check_name("service", service)?;
        self.check_name("group", &backend)?;
        // A map value naming a missing backend sends every request to a 503 (notes §1.7): check first.
        if self.stats().await?.backend(&backend).is_none() {
            return Err(self.unknown_group(group));
        }
        let mut entries = vec![(service.to_owned(), backend.clone())];
        // A split ends with the switch: its weight goes to 0 after the service points at `group`, so the new
        // group (at 100 % before a promotion) never loses traffic in between.
        let weight_key = command::weight_key(service);
        let file = std::fs::read_to_string(&map).unwrap_or_default();
        if mapfile::value_of(&file, &weight_key).is_some_and(|w| w != "0") {
            entries.push((weight_key, "0".to_owned()));
        }
        self.set_map_entries(&map, &entries, group).await?;
        tracing::info!(lb = %self.lb(), service, group, backend, "backend service switched");
        Ok(())
    }

    async fn set_weight(
        &self,
        service: &str,
        new_group: &str,
        weight: Weight,
    ) -> Result<(), LbDriverError> {
        let map = self.map_path(service)?;
        let backend = self.backend_of(new_group).to_owned();
        self.check_name("service", service)?;
        self.check_name("group", &backend)?;
        let (canary_key, weight_key) = (command::canary_key(service), command::weight_key(service));
        self.check_name("map key", &canary_key)?;
        if self.stats().await?.backend(&backend).is_none() {
            return Err(self.unknown_group(new_group));
        }
        // The backend first: a weight never points at a stale group.
        let entries = [
            (canary_key, backend.clone()),
            (weight_key, weight.percent().to_string()),
        ];
        self.set_map_entries(&map, &entries, new_group).await?;
        tracing::info!(lb = %self.lb(), service, new_group, backend, weight = weight.percent(),
            "traffic weight set");
        Ok(())
    }

    async fn traffic_split(&self, service: &str) -> Result<TrafficSplit, LbDriverError> {
        let map = self.map_path(service)?;
        self.check_name("service", service)?;
        let reply = self.send(&command::show_map(&map)).await?;
        let active =
            command::map_value(&reply, service).ok_or_else(|| LbDriverError::UnknownService {
                lb: self.lb(),
                service: service.to_owned(),
                detail: format!("no key `{service}` in map {map}"),
            })?;
        let new_group = command::map_value(&reply, &command::canary_key(service))
            .map(|b| self.group_of_backend(b).to_owned());
        let weight_key = command::weight_key(service);
        let weight = match command::map_value(&reply, &weight_key) {
            None => Weight::ZERO,
            Some(w) => w
                .parse::<u64>()
                .ok()
                .and_then(|p| Weight::new(p).ok())
                .ok_or_else(|| LbDriverError::Protocol {
                    lb: self.lb(),
                    what: format!("`{weight_key}` in map {map}"),
                    message: format!("`{w}` is not a percentage from 0 to 100"),
                })?,
        };
        Ok(TrafficSplit {
            active_group: self.group_of_backend(active).to_owned(),
            new_group,
            weight,
        })
    }

    async fn read_window(
        &self,
        groups: &[&str],
        since: Option<&WindowMark>,
    ) -> Result<TrafficWindow, LbDriverError> {
        let mut pairs = Vec::with_capacity(groups.len());
        for g in groups {
            let backend = self.backend_of(g);
            self.check_name("group", backend)?;
            pairs.push((*g, backend));
        }
        let info_reply = self.send(command::SHOW_INFO).await?;
        let info = stat::parse_info(&info_reply).map_err(|message| LbDriverError::Protocol {
            lb: self.lb(),
            what: "`show info`".to_owned(),
            message,
        })?;
        let stats = self.stats().await?;
        if let Some((g, _)) = pairs.iter().find(|(_, b)| stats.backend(b).is_none()) {
            return Err(self.unknown_group(g));
        }
        window::window(&stats, info, &pairs, since, now_unix_ms()).map_err(|message| {
            LbDriverError::Protocol {
                lb: self.lb(),
                what: "`show stat`".to_owned(),
                message,
            }
        })
    }

    async fn active_group(&self, service: &str) -> Result<String, LbDriverError> {
        let map = self.map_path(service)?;
        self.check_name("service", service)?;
        let reply = self.send(&command::show_map(&map)).await?;
        match command::map_value(&reply, service) {
            Some(backend) => Ok(self.group_of_backend(backend).to_owned()),
            None => Err(LbDriverError::UnknownService {
                lb: self.lb(),
                service: service.to_owned(),
                detail: format!(
                    "no key `{service}` in map {map} (reply: `{}`)",
                    reply.trim()
                ),
            }),
        }
    }

    async fn counters(&self, group: &str) -> Result<GroupCounters, LbDriverError> {
        let backend = self.backend_of(group);
        self.check_name("group", backend)?;
        let stats = self.stats().await?;
        let b = stats
            .backend(backend)
            .ok_or_else(|| self.unknown_group(group))?;
        Ok(GroupCounters {
            group: group.to_owned(),
            requests: b.requests,
            errors_5xx: b.hrsp_5xx,
            in_flight: b.in_flight,
            per_server: stats
                .servers_of(backend)
                .map(|s| ServerCounters {
                    instance: s.addr.clone(),
                    name: s.name.clone(),
                    requests: s.requests,
                    errors_5xx: s.hrsp_5xx,
                    in_flight: s.in_flight(),
                    state: s.status.clone(),
                })
                .collect(),
        })
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
