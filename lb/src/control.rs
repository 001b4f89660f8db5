//! The control plane: the registry of server groups and backend services, and the operations the admin API
//! offers on them — create a group, register a server, deregister it with draining, switch a service to
//! another group or split its traffic by weight with a second one, read state and counters, cut and read traffic
//! windows. Every operation is idempotent (except cutting a window, which makes a new one).

use crate::api::{
    CountersReport, DeregisterView, GroupCounters, GroupView, HealthCheckSpec, PutService,
    PutSplit, ServerCounters, ServerPhase, ServerView, ServiceView, WindowReport,
};
use crate::config::Settings;
use crate::error::ControlError;
use crate::group::{Drain, Group, Server, lock};
use crate::health::{self, HealthClient};
use crate::policy;
use crate::proxy::{self, ProxyCtx, Service};
use crate::window::Windows;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a drain looks at the in-flight count: short enough that a drained server leaves promptly.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Groups, services and what runs for them.
#[derive(Debug)]
pub(crate) struct Control {
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    services: Mutex<BTreeMap<String, Arc<Service>>>,
    settings: Settings,
    health_client: HealthClient,
    proxy: Arc<ProxyCtx>,
    windows: Windows,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

impl Control {
    pub(crate) fn new(
        settings: Settings,
        proxy: Arc<ProxyCtx>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            groups: RwLock::new(BTreeMap::new()),
            services: Mutex::new(BTreeMap::new()),
            settings,
            health_client: health::client(),
            proxy,
            windows: Windows::new(),
            tasks,
            shutdown,
        }
    }

    fn find_group(&self, name: &str) -> Result<Arc<Group>, ControlError> {
        self.groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| ControlError::GroupNotFound {
                group: name.to_owned(),
            })
    }

    /// Creates a group; an existing group with the same (or no) health check given is returned as is.
    pub(crate) fn create_group(
        &self,
        name: &str,
        health_check: Option<HealthCheckSpec>,
    ) -> Result<GroupView, ControlError> {
        check_name("group", name)?;
        if let Some(spec) = &health_check {
            check_health_spec(name, spec)?;
        }
        let mut groups = self.groups.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = groups.get(name) {
            if health_check.as_ref().is_some_and(|h| *h != g.health) {
                return Err(ControlError::GroupConflict {
                    group: name.to_owned(),
                });
            }
            return Ok(g.view());
        }
        let spec = health_check.unwrap_or_else(|| self.settings.health_check.clone());
        let group = Arc::new(Group::new(name.to_owned(), spec));
        groups.insert(name.to_owned(), group.clone());
        tracing::info!(group = name, "server group created");
        Ok(group.view())
    }

    /// All groups, by name.
    pub(crate) fn groups(&self) -> Vec<GroupView> {
        self.all_groups().iter().map(|g| g.view()).collect()
    }

    fn all_groups(&self) -> Vec<Arc<Group>> {
        self.groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// One group.
    pub(crate) fn group(&self, name: &str) -> Result<GroupView, ControlError> {
        Ok(self.find_group(name)?.view())
    }

    /// Registers a server into a group. A new server starts unhealthy and gets traffic once its health checks
    /// pass; registering a draining server puts it back into rotation; registering an active one does nothing.
    pub(crate) fn register(&self, group: &str, address: &str) -> Result<ServerView, ControlError> {
        let g = self.find_group(group)?;
        let authority = policy::parse_server_address(address).map_err(|reason| {
            ControlError::InvalidAddress {
                group: group.to_owned(),
                address: address.to_owned(),
                reason,
            }
        })?;
        let address = authority.to_string();
        loop {
            let (server, new) = g.insert(Server::new(address.clone(), authority.clone()));
            if new {
                tracing::info!(group, server = %address, "server registered");
                health::spawn(
                    &self.tasks,
                    self.health_client.clone(),
                    g.clone(),
                    server.clone(),
                    self.shutdown.clone(),
                );
                return Ok(server.view(group));
            }
            {
                let mut st = lock(&server.state);
                if st.removing {
                    // Its drain is just ending: take it out now and add a fresh server.
                    drop(st);
                    g.remove(&server);
                    continue;
                }
                if st.drain.take().is_some() {
                    st.drain_epoch += 1;
                    server.set_accepting(true);
                    tracing::info!(group, server = %address, "drain cancelled by registration");
                }
            }
            g.refresh();
            return Ok(server.view(group));
        }
    }

    /// The state of one server.
    pub(crate) fn server(&self, group: &str, address: &str) -> Result<ServerView, ControlError> {
        let g = self.find_group(group)?;
        let address = normalize(address);
        g.server(&address)
            .map(|s| s.view(group))
            .ok_or_else(|| ControlError::ServerNotFound {
                group: group.to_owned(),
                address,
            })
    }

    /// Deregisters a server: no new requests go to it at once; it is removed when its in-flight requests
    /// reach zero, or by force when `timeout` (default: the drain timeout setting) passes or `force` is set.
    /// A server that is not in the group is reported `removed`.
    pub(crate) fn deregister(
        &self,
        group: &str,
        address: &str,
        timeout: Option<Duration>,
        force: bool,
    ) -> Result<DeregisterView, ControlError> {
        let g = self.find_group(group)?;
        let address = normalize(address);
        let view = |phase, in_flight| DeregisterView {
            group: group.to_owned(),
            address: address.clone(),
            phase,
            in_flight,
        };
        let Some(server) = g.server(&address) else {
            return Ok(view(ServerPhase::Removed, 0));
        };
        let timeout =
            timeout.unwrap_or_else(|| Duration::from_millis(self.settings.drain_timeout_ms));
        let epoch = {
            let mut st = lock(&server.state);
            if force || st.removing {
                st.removing = true;
                drop(st);
                let in_flight = server.in_flight();
                g.remove(&server);
                tracing::info!(group, server = %address, in_flight, "server removed by force");
                return Ok(view(ServerPhase::Removed, in_flight));
            }
            let deadline = Instant::now() + timeout;
            match &mut st.drain {
                Some(d) => {
                    // Already draining: a shorter timeout wins, the drain task keeps running.
                    d.deadline = d.deadline.min(deadline);
                    return Ok(view(ServerPhase::Draining, server.in_flight()));
                }
                None => {
                    st.drain_epoch += 1;
                    st.drain = Some(Drain {
                        deadline,
                        epoch: st.drain_epoch,
                    });
                    server.set_accepting(false);
                    st.drain_epoch
                }
            }
        };
        g.refresh();
        tracing::info!(group, server = %address, timeout_ms = timeout.as_millis() as u64,
            "server draining");
        if finish_drain(&g, &server, epoch) {
            return Ok(view(ServerPhase::Removed, 0));
        }
        let in_flight = server.in_flight();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(DRAIN_POLL) => {}
                    () = shutdown.cancelled() => return,
                }
                if finish_drain(&g, &server, epoch) || lock(&server.state).drain_epoch != epoch {
                    return;
                }
            }
        });
        Ok(view(ServerPhase::Draining, in_flight))
    }

    /// Creates a service (binding its listener) or switches an existing one to `put.group`.
    pub(crate) fn put_service(
        &self,
        name: &str,
        put: &PutService,
    ) -> Result<ServiceView, ControlError> {
        check_name("service", name)?;
        if self.shutdown.is_cancelled() {
            return Err(ControlError::ShuttingDown);
        }
        let group = self.find_group(&put.group)?;
        let mut services = lock(&self.services);
        if let Some(svc) = services.get(name) {
            if let Some(listen) = &put.listen {
                let same = listen
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| a == svc.listen || (a.port() == 0 && a.ip() == svc.listen.ip()));
                if !same {
                    return Err(ControlError::ServiceConflict {
                        service: name.to_owned(),
                        reason: format!(
                            "listens on {}, not {listen}; a service's address cannot change",
                            svc.listen
                        ),
                    });
                }
            }
            let old = svc.route();
            if !Arc::ptr_eq(&old.active, &group) || old.split.is_some() {
                svc.switch(group);
                tracing::info!(service = name, from = %old.active.name, to = %put.group,
                    split_ended = old.split.is_some(), "backend service switched");
            }
            return Ok(service_view(svc));
        }
        let listen = put
            .listen
            .as_deref()
            .ok_or_else(|| ControlError::ServiceConflict {
                service: name.to_owned(),
                reason: "does not exist; creating it needs `listen`".to_owned(),
            })?;
        let listen_err = |reason: String| ControlError::Listen {
            service: name.to_owned(),
            listen: listen.to_owned(),
            reason,
        };
        let addr: SocketAddr = listen
            .parse()
            .map_err(|e| listen_err(format!("not an IP:port address: {e}")))?;
        let listener = bind(addr).map_err(|e| listen_err(e.to_string()))?;
        let bound = listener
            .local_addr()
            .map_err(|e| listen_err(e.to_string()))?;
        let svc = Arc::new(Service::new(name.to_owned(), bound, group));
        proxy::spawn_listener(
            &self.tasks,
            listener,
            svc.clone(),
            self.proxy.clone(),
            self.shutdown.clone(),
        );
        services.insert(name.to_owned(), svc.clone());
        tracing::info!(service = name, listen = %bound, group = %put.group, "backend service created");
        Ok(service_view(&svc))
    }

    /// Splits a service's traffic: `put.weight` % of its new requests go to `put.group`, the rest to the group it
    /// points at. Applies from the next request; requests in flight finish where they are.
    pub(crate) fn set_split(
        &self,
        name: &str,
        put: &PutSplit,
    ) -> Result<ServiceView, ControlError> {
        let group = self.find_group(&put.group)?;
        let services = lock(&self.services);
        let svc = services
            .get(name)
            .ok_or_else(|| ControlError::ServiceNotFound {
                service: name.to_owned(),
            })?;
        if Arc::ptr_eq(&svc.group(), &group) {
            return Err(ControlError::SplitOnActiveGroup {
                service: name.to_owned(),
                group: put.group.clone(),
            });
        }
        svc.set_split(group, put.weight);
        tracing::info!(service = name, group = %put.group, weight = put.weight.percent(),
            "backend service split");
        Ok(service_view(svc))
    }

    /// Closes the current traffic window of every group and server and reports windows `since+1..=N`.
    pub(crate) fn cut_window(
        &self,
        since: Option<u64>,
        lb: Option<&str>,
    ) -> Result<WindowReport, ControlError> {
        let id = self.windows.cut(&self.all_groups());
        self.windows.report(id, since, lb)
    }

    /// Reports closed windows `since+1..=id` again.
    pub(crate) fn window(
        &self,
        id: u64,
        since: Option<u64>,
        lb: Option<&str>,
    ) -> Result<WindowReport, ControlError> {
        self.windows.report(id, since, lb)
    }

    /// All services, by name.
    pub(crate) fn services(&self) -> Vec<ServiceView> {
        lock(&self.services)
            .values()
            .map(|s| service_view(s))
            .collect()
    }

    /// One service.
    pub(crate) fn service(&self, name: &str) -> Result<ServiceView, ControlError> {
        lock(&self.services)
            .get(name)
            .map(|s| service_view(s))
            .ok_or_else(|| ControlError::ServiceNotFound {
                service: name.to_owned(),
            })
    }

    /// Counters of every group and its servers.
    pub(crate) fn counters(&self) -> CountersReport {
        CountersReport {
            groups: self
                .all_groups()
                .iter()
                .map(|g| GroupCounters {
                    group: g.name.clone(),
                    counters: g.counters.view(),
                    servers: g
                        .servers()
                        .iter()
                        .map(|s| ServerCounters {
                            address: s.address.clone(),
                            counters: s.counters.view(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Removes a draining server if its in-flight count is zero or its deadline passed; true when removed (or when
/// this drain is no longer current).
fn finish_drain(g: &Group, server: &Arc<Server>, epoch: u64) -> bool {
    let in_flight = server.in_flight();
    {
        let mut st = lock(&server.state);
        let Some(d) = st.drain.filter(|d| d.epoch == epoch) else {
            return st.removing;
        };
        let expired = Instant::now() >= d.deadline;
        if in_flight > 0 && !expired {
            return false;
        }
        st.removing = true;
        if expired && in_flight > 0 {
            tracing::warn!(group = %g.name, server = %server.address, in_flight,
                "drain timeout passed; removing the server by force");
        }
    }
    // `g.remove` takes the members lock, which must not be taken while holding a server's state lock.
    g.remove(server);
    tracing::info!(group = %g.name, server = %server.address, "server drained and removed");
    true
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(std_listener)
}

fn service_view(s: &Service) -> ServiceView {
    let route = s.route();
    ServiceView {
        name: s.name.clone(),
        listen: s.listen.to_string(),
        group: route.active.name.clone(),
        split: route.split.map(|(g, weight)| PutSplit {
            group: g.name.clone(),
            weight,
        }),
    }
}

fn check_name(kind: &'static str, name: &str) -> Result<(), ControlError> {
    policy::check_name(name).map_err(|reason| ControlError::InvalidName {
        kind,
        name: name.to_owned(),
        reason,
    })
}

fn check_health_spec(group: &str, h: &HealthCheckSpec) -> Result<(), ControlError> {
    let bad = |what: &str| {
        Err(ControlError::BadRequest(format!(
            "group `{group}`: health_check.{what}"
        )))
    };
    if !h.path.starts_with('/') || h.path.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return bad("path must start with `/` and contain no spaces or control characters");
    }
    if h.interval_ms == 0 || h.timeout_ms == 0 {
        return bad("interval_ms and timeout_ms must be at least 1");
    }
    if h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
        return bad("healthy_threshold and unhealthy_threshold must be at least 1");
    }
    Ok(())
}

/// The address as stored (the authority's canonical text); unparsable addresses are kept as given so the
/// error names them.
fn normalize(address: &str) -> String {
    policy::parse_server_address(address)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| address.to_owned())
}
