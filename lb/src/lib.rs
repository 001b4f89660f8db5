//! `rollcage-lb`: the built-in HTTP load balancer that deployments take instances out of and put back into.
//!
//! - **Backend services** (`proxy`): one listener each, sending its traffic to one *server group* at a time;
//!   blue/green switches a service to another group.
//! - **Server groups** (`group`): named sets of `host:port` servers; requests go round-robin to the servers
//!   that are registered, healthy and not draining.
//! - **Health checks** (`health`): HTTP GET of a path every interval, with healthy/unhealthy thresholds; a new
//!   server starts unhealthy.
//! - **Draining** (`control`): a deregistered server gets no new requests at once and is removed when its
//!   in-flight requests reach zero, or by force after the drain timeout.
//! - **Retry**: a request that could not connect to a server (nothing sent) is tried once on another server if
//!   its method is idempotent and it has no body (see `proxy`).
//! - **Weights** (`proxy`, `policy`): a service may split its traffic between its group and a second one, a
//!   percentage of new requests going to the second, changed live.
//! - **Traffic windows** (`window`): per group and server, requests, 5xx and a latency histogram, cut into
//!   numbered windows that every reader sees alike.
//! - **Admin API** (`admin`, bodies in `api`, typed client in `client`): token-protected JSON.
//!
//! [`start`] runs it all on the current tokio runtime and returns a [`LoadBalancer`] handle.

pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod policy;
pub mod port;
pub mod token;
pub mod window;

mod admin;
mod control;
mod group;
mod health;
mod proxy;

pub use config::{ConfigFile, GroupSeed, ServiceSeed, Settings};
pub use error::{ControlError, LbError};

use control::Control;
use proxy::{ProxyCtx, Timeouts};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything needed to start a load balancer.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// Address of the admin API.
    pub admin: SocketAddr,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// Tunables.
    pub settings: Settings,
    /// Groups (and their servers) created at start.
    pub groups: Vec<GroupSeed>,
    /// Services created at start (after the groups).
    pub services: Vec<ServiceSeed>,
}

/// A running load balancer. Dropping it stops it without waiting; [`LoadBalancer::shutdown`] waits.
#[derive(Debug)]
pub struct LoadBalancer {
    admin_addr: SocketAddr,
    control: Arc<Control>,
}

/// Starts the admin API, the configured groups and services, and their health checks.
pub async fn start(config: LbConfig) -> Result<LoadBalancer, LbError> {
    let s = &config.settings;
    let timeouts = Timeouts {
        connect: Duration::from_millis(s.connect_timeout_ms.max(1)),
        response: Duration::from_millis(s.response_timeout_ms.max(1)),
        header_read: Duration::from_millis(s.header_read_timeout_ms.max(1)),
        shutdown_grace: Duration::from_millis(s.shutdown_grace_ms),
    };
    let ctx = Arc::new(ProxyCtx {
        client: proxy::upstream_client(&timeouts),
        timeouts,
    });
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let control = Arc::new(Control::new(
        config.settings.clone(),
        ctx,
        tasks.clone(),
        shutdown.clone(),
    ));
    let setup = || -> Result<(), ControlError> {
        for g in &config.groups {
            control.create_group(&g.name, g.health_check.clone())?;
            for server in &g.servers {
                control.register(&g.name, server)?;
            }
        }
        for svc in &config.services {
            control.put_service(
                &svc.name,
                &api::PutService {
                    group: svc.group.clone(),
                    listen: Some(svc.listen.clone()),
                },
            )?;
        }
        Ok(())
    };
    let started = setup().map_err(LbError::from).and_then(|()| {
        let listener = std::net::TcpListener::bind(config.admin)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| LbError::Bind {
                what: "admin API".to_owned(),
                addr: config.admin,
                source,
            })?;
        let admin_addr = listener.local_addr().map_err(|source| LbError::Bind {
            what: "admin API".to_owned(),
            addr: config.admin,
            source,
        })?;
        admin::spawn(
            &tasks,
            listener,
            control.clone(),
            Arc::from(config.admin_token.as_str()),
            shutdown.clone(),
        );
        Ok(admin_addr)
    });
    match started {
        Ok(admin_addr) => {
            tracing::info!(admin = %admin_addr, "load balancer started");
            Ok(LoadBalancer {
                admin_addr,
                control,
            })
        }
        Err(e) => {
            shutdown.cancel();
            tasks.close();
            tasks.wait().await;
            Err(e)
        }
    }
}

impl LoadBalancer {
    /// The bound address of the admin API.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The bound address of a backend service.
    pub fn service_addr(&self, name: &str) -> Option<SocketAddr> {
        self.control
            .service(name)
            .ok()
            .and_then(|s| s.listen.parse().ok())
    }

    /// Stops accepting connections and health checks, lets open requests finish (up to the shutdown grace
    /// time) and returns when everything has stopped.
    pub async fn shutdown(self) {
        self.control.shutdown.cancel();
        self.control.tasks.close();
        self.control.tasks.wait().await;
        tracing::info!("load balancer stopped");
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.control.shutdown.cancel();
    }
}
