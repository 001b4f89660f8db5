//! Test fixtures shared by the load-balancer crates' tests (`rollcage-lb`, `rollcage-lbdriver`): tiny hyper
//! backends that answer with their own name ([`Backend`]), a plain pooled HTTP client and a load generator that
//! records every request's outcome ([`load`]), and [`wait_until`] for polling a condition.

pub mod backend;
pub mod load;

pub use backend::Backend;
pub use load::{Sample, failures, get, http_client, send_n, served_counts, spawn_load};

use rollcage_lb::api::HealthCheckSpec;
use std::time::{Duration, Instant};

/// The result type of the tests.
pub type TestResult = Result<(), BoxError>;
/// Any error, for tests.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The admin token the tests' load balancers use.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// Health checks every 50 ms, two in a row to change state: fast enough that tests do not wait on them.
pub fn fast_health() -> HealthCheckSpec {
    HealthCheckSpec {
        path: "/health".to_owned(),
        interval_ms: 50,
        timeout_ms: 500,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    }
}

/// Polls `f` every 10 ms until it returns true (→ true) or `timeout` passes (→ false).
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
