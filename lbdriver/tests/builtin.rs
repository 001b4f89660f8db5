//! The `builtin` driver against the real built-in LB started in-process (`rollcage_lb::start`), groups
//! `blue` and `green` and service `app` on 127.0.0.1:0, health checks every 50 ms.

mod common;

use common::{TOKEN, TestResult, builtin_fixture, scenarios};
use rollcage_lbdriver::{Connect as _, LbConfig, LbDriverError};
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_waits_until_healthy() -> TestResult {
    scenarios::register_waits_until_healthy(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_waits_for_slow_in_flight_requests() -> TestResult {
    scenarios::deregister_waits_for_in_flight(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_forces() -> TestResult {
    scenarios::drain_timeout_forces(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_moves_traffic_under_load() -> TestResult {
    scenarios::switch_under_load(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_idempotent() -> TestResult {
    scenarios::operations_are_idempotent(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_to_unknown_group_names_it() -> TestResult {
    scenarios::switch_to_unknown_group_names_it(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_by_share() -> TestResult {
    scenarios::weights_split_traffic(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_change_is_live_and_in_flight_stays() -> TestResult {
    scenarios::weight_change_is_live_and_in_flight_stays(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_counts_5xx_and_latency() -> TestResult {
    scenarios::window_counts_5xx_and_latency(&builtin_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_requests() -> TestResult {
    scenarios::counters_count_requests(&builtin_fixture().await?).await
}

/// The configuration path: admin URL plus a private token file; a wrong token is an error naming the LB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_builds_a_working_driver_and_bad_token_is_named() -> TestResult {
    let f = builtin_fixture().await?;
    let lb = f.builtin.as_ref().ok_or("no lb")?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("lb.token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    let mut config: LbConfig = serde_json::from_value(serde_json::json!({
        "driver": {
            "kind": "builtin",
            "admin_url": format!("http://{}", lb.admin_addr()),
            "token_file": token_file,
        },
        "service": "app",
        "server_groups": { "blue": [f.b1.address()], "green": [f.g1.address()] },
    }))?;
    let driver = config.connect()?;
    assert_eq!(driver.active_group("app").await?, "blue");
    let err = driver
        .active_group("nosuchservice")
        .await
        .err()
        .ok_or("unknown service found")?;
    assert!(matches!(err, LbDriverError::UnknownService { .. }), "{err}");
    assert!(err.to_string().contains("nosuchservice"), "{err}");

    std::fs::write(&token_file, "wrong-token-0123456789\n")?;
    config.register_timeout_secs = 1;
    let driver = config.connect()?;
    let err = driver
        .register("blue", &f.b2.address(), Duration::from_secs(1))
        .await
        .err()
        .ok_or("a wrong token was accepted")?;
    let msg = err.to_string();
    assert!(
        msg.contains(&lb.admin_addr().to_string()) && msg.contains(&f.b2.address()),
        "{msg}"
    );
    Ok(())
}
