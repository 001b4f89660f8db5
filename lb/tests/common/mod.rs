//! Test fixtures of the load balancer's tests: the shared ones (backends, client, load generator) from
//! `rollcage-lb-testkit`, plus a load balancer on 127.0.0.1:0 with fast health checks.
#![allow(dead_code, unused_imports)] // Each test binary uses a different subset.

use rollcage_lb::client::AdminClient;
use rollcage_lb::{LbConfig, LoadBalancer, Settings};
pub use rollcage_lb_testkit::{
    Backend, Sample, TOKEN, TestResult, fast_health, get, http_client, spawn_load, wait_until,
};
use std::net::SocketAddr;
use std::time::Duration;

/// A load balancer with no groups or services, its admin API on 127.0.0.1:0.
pub async fn start_lb() -> Result<(LoadBalancer, AdminClient), rollcage_lb::LbError> {
    let settings = Settings {
        health_check: fast_health(),
        shutdown_grace_ms: 2_000,
        ..Settings::default()
    };
    let lb = rollcage_lb::start(LbConfig {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: TOKEN.to_owned(),
        settings,
        groups: Vec::new(),
        services: Vec::new(),
    })
    .await?;
    let admin = AdminClient::new(lb.admin_addr(), TOKEN);
    Ok((lb, admin))
}

/// A group with these backends registered and healthy, and a service `svc` on 127.0.0.1:0 pointing at it.
pub async fn group_with(
    admin: &AdminClient,
    group: &str,
    backends: &[&Backend],
) -> Result<(), rollcage_lb::client::ClientError> {
    admin.create_group(group, None).await?;
    for b in backends {
        admin
            .register_and_wait(group, &b.address(), Duration::from_secs(5))
            .await?;
    }
    Ok(())
}
