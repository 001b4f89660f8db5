//! The HAProxy driver against a real `haproxy` (2.6, Debian package) started by each test with a config it
//! writes: frontend choosing its backend from a map, backends `blue` (b1, b2 disabled) and `green` (g1),
//! HTTP health checks every 100 ms on tiny hyper backends.

mod common;

use common::{TestResult, haproxy_fixture, scenarios};
use rollcage_lbdriver::haproxy::HaproxyDriver;
use rollcage_lbdriver::haproxy::command::AdminState;
use rollcage_lbdriver::{Connect as _, LbConfig, LbDriver, LbDriverError};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_waits_until_healthy() -> TestResult {
    scenarios::register_waits_until_healthy(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_waits_for_slow_in_flight_requests() -> TestResult {
    scenarios::deregister_waits_for_in_flight(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_forces() -> TestResult {
    scenarios::drain_timeout_forces(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_moves_traffic_under_load_and_rewrites_the_map() -> TestResult {
    scenarios::switch_under_load(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_idempotent() -> TestResult {
    scenarios::operations_are_idempotent(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_to_unknown_group_names_it() -> TestResult {
    scenarios::switch_to_unknown_group_names_it(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_by_share() -> TestResult {
    scenarios::weights_split_traffic(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_change_is_live_and_in_flight_stays() -> TestResult {
    scenarios::weight_change_is_live_and_in_flight_stays(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_counts_5xx_and_latency() -> TestResult {
    scenarios::window_counts_5xx_and_latency(&haproxy_fixture().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_requests() -> TestResult {
    scenarios::counters_count_requests(&haproxy_fixture().await?).await
}

/// `set` with a bad server name: HAProxy's reply (`No such server.`) becomes an error naming the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_with_bad_server_name_names_the_server() -> TestResult {
    let f = haproxy_fixture().await?;
    let proc = f.haproxy.as_ref().ok_or("no haproxy")?;
    let driver = HaproxyDriver::new(proc.socket.clone(), None, BTreeMap::new());
    let err = driver
        .set_server_state("blue", "nosuchserver", AdminState::Drain)
        .await
        .err()
        .ok_or("set on a missing server succeeded")?;
    let msg = err.to_string();
    assert!(matches!(err, LbDriverError::Rejected { .. }), "{msg}");
    assert!(
        msg.contains("nosuchserver") && msg.contains("No such server."),
        "{msg}"
    );
    assert!(msg.contains(&proc.socket.display().to_string()), "{msg}");

    // A name that would smuggle a second command never reaches the socket.
    let err = driver
        .set_server_state(
            "blue",
            "b1;shutdown sessions server blue/b1",
            AdminState::Drain,
        )
        .await
        .err()
        .ok_or("an injected command was accepted")?;
    assert!(matches!(err, LbDriverError::InvalidName { .. }), "{err}");

    // Registering an address the backend has no server for names the instance and lists the servers.
    let err = driver
        .register("blue", "127.0.0.1:9", Duration::from_secs(1))
        .await
        .err()
        .ok_or("register of an unknown instance succeeded")?;
    let msg = err.to_string();
    assert!(
        matches!(err, LbDriverError::UnknownInstance { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("127.0.0.1:9") && msg.contains("b1 (") && msg.contains("b2 ("),
        "{msg}"
    );

    // A group whose backend does not exist.
    let err = driver
        .register("purple", &f.b1.address(), Duration::from_secs(1))
        .await
        .err()
        .ok_or("register into a missing backend succeeded")?;
    assert!(matches!(err, LbDriverError::UnknownGroup { .. }), "{err}");
    assert!(err.to_string().contains("purple"), "{err}");
    Ok(())
}

/// The configuration path: `LbConfig` with group → backend names builds a working driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_groups_to_backends() -> TestResult {
    let f = haproxy_fixture().await?;
    let proc = f.haproxy.as_ref().ok_or("no haproxy")?;
    let config: LbConfig = serde_json::from_value(serde_json::json!({
        "driver": {
            "kind": "haproxy",
            "socket": proc.socket,
            "map_file": proc.map_file,
            "backends": { "old": "blue", "new": "green" }
        },
        "service": "app",
        "server_groups": { "old": [f.b1.address()], "new": [f.g1.address()] },
        "drain_timeout_secs": 5
    }))?;
    let driver = config.connect()?;
    assert_eq!(driver.active_group("app").await?, "old");
    driver.switch("app", "new").await?;
    assert_eq!(driver.active_group("app").await?, "new");
    let client = common::http_client();
    let (_, body) = common::get(&client, f.frontend, "/").await?;
    assert_eq!(body, "g1");
    let c = driver.counters("new").await?;
    assert_eq!(c.group, "new");
    assert!(
        c.per_server
            .iter()
            .any(|s| s.instance == f.g1.address() && s.name == "g1")
    );
    Ok(())
}

/// The switch is written into the map file, so HAProxy started again from its files keeps it (runtime
/// `set map` alone would be lost, notes §1.8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_survives_a_restart() -> TestResult {
    let mut f = haproxy_fixture().await?;
    f.driver.switch("app", "green").await?;
    let proc = f.haproxy.as_mut().ok_or("no haproxy")?;
    proc.restart().await?;
    assert_eq!(f.driver.active_group("app").await?, "green");
    let client = common::http_client();
    for _ in 0..3 {
        let (status, body) = common::get(&client, f.frontend, "/").await?;
        assert_eq!((status, body.as_str()), (200, "g1"));
    }
    Ok(())
}

/// A map without the service's key (the frontend uses its fallback): `set map` answers `entry not found.`,
/// so the driver adds the entry, in memory and in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_adds_a_missing_map_key() -> TestResult {
    let f = common::haproxy_fixture_with_map("# empty: the frontend falls back to blue\n").await?;
    let err = f
        .driver
        .active_group("app")
        .await
        .err()
        .ok_or("a missing key was found")?;
    assert!(matches!(err, LbDriverError::UnknownService { .. }), "{err}");
    f.driver.switch("app", "green").await?;
    assert_eq!(f.driver.active_group("app").await?, "green");
    let client = common::http_client();
    let (_, body) = common::get(&client, f.frontend, "/").await?;
    assert_eq!(body, "g1");
    let map = f.map_file.as_ref().ok_or("no map")?;
    assert_eq!(
        std::fs::read_to_string(map)?,
        "# empty: the frontend falls back to blue\napp green\n"
    );
    Ok(())
}
