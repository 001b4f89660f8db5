//! The driver scenarios, written once against `dyn LbDriver` and run against both load balancers.

use super::{
    Fixture, SERVICE, TestResult, failures, get, http_client, send_n, served_counts, spawn_load,
    wait_until,
};
use rollcage_lbdriver::haproxy::mapfile;
use rollcage_lbdriver::{LbDriverError, Weight};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The state word the drivers report for a server fully in traffic.
fn in_traffic(state: &str) -> bool {
    state == "UP" || state == "active"
}

async fn state_of(
    f: &Fixture,
    group: &str,
    instance: &str,
) -> Result<Option<String>, LbDriverError> {
    Ok(f.driver
        .counters(group)
        .await?
        .per_server
        .into_iter()
        .find(|s| s.instance == instance)
        .map(|s| s.state))
}

/// Register does not return before the LB's own checks pass, and the LB sends the instance no traffic
/// before that: an unhealthy instance times out with an error naming it, and got zero requests.
pub async fn register_waits_until_healthy(f: &Fixture) -> TestResult {
    let b2 = f.b2.address();
    f.b2.set_healthy(false);
    let stop = CancellationToken::new();
    let load = spawn_load(f.frontend, "/", 2, stop.clone());
    let err = f
        .driver
        .register("blue", &b2, Duration::from_millis(1500))
        .await
        .err()
        .ok_or("register of an unhealthy instance succeeded")?;
    let msg = err.to_string();
    assert!(matches!(err, LbDriverError::NotHealthy { .. }), "{msg}");
    assert!(
        msg.contains(&b2) && msg.contains("blue") && msg.contains(&f.driver.describe()),
        "{msg}"
    );
    assert_eq!(
        f.b2.hits(),
        0,
        "an instance that never passed a check got traffic"
    );

    f.b2.set_healthy(true);
    f.driver
        .register("blue", &b2, Duration::from_secs(10))
        .await?;
    let state = state_of(f, "blue", &b2).await?.ok_or("b2 not in blue")?;
    assert!(
        in_traffic(&state),
        "register returned while b2 is `{state}`"
    );
    let served = wait_until(Duration::from_secs(3), || async { f.b2.hits() > 0 }).await;
    stop.cancel();
    let samples = load.await?;
    assert!(served, "b2 got no traffic after registering");
    assert_eq!(failures(&samples), Vec::<String>::new());
    Ok(())
}

/// Deregistering an instance with slow requests in flight waits for them; none fails, and the instance
/// gets no new requests afterwards.
pub async fn deregister_waits_for_in_flight(f: &Fixture) -> TestResult {
    let b1 = f.b1.address();
    f.driver
        .register("blue", &f.b2.address(), Duration::from_secs(10))
        .await?;
    let stop = CancellationToken::new();
    let slow = spawn_load(f.frontend, "/sleep?ms=500", 4, stop.clone());
    let fast = spawn_load(f.frontend, "/", 2, stop.clone());
    // Round robin decides which backend the slow requests land on; start the drain once one is on b1.
    let slow_on_b1 = wait_until(Duration::from_secs(5), || async { f.b1.waiting() > 0 }).await;
    assert!(slow_on_b1, "no slow request reached b1 within 5 s");
    let started = Instant::now();
    let outcome = f
        .driver
        .deregister("blue", &b1, Duration::from_secs(10))
        .await?;
    // Checked at once, on the server side: the drain returned only when b1 had nothing left in flight.
    let in_flight_at_done = f.b1.in_flight();
    assert!(!outcome.forced && !outcome.already_out, "{outcome:?}");
    assert_eq!(
        in_flight_at_done, 0,
        "deregister returned with requests still in flight on b1"
    );
    let hits_after = f.b1.hits();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        f.b1.hits(),
        hits_after,
        "b1 got requests after deregistration returned"
    );
    if let Some(state) = state_of(f, "blue", &b1).await? {
        assert!(!in_traffic(&state), "b1 still `{state}`");
    }
    stop.cancel();
    let slow = slow.await?;
    let fast = fast.await?;
    // A slow request on b1 was in flight when the drain began (and, with the check above, b1 had finished it
    // when the drain returned; the client's own finish time can trail that on a loaded machine).
    let drained = slow
        .iter()
        .filter(|s| s.served_by() == Some("b1") && s.started < started && s.finished > started);
    assert!(
        drained.count() > 0,
        "no slow request on b1 was in flight during the drain"
    );
    assert_eq!(failures(&slow), Vec::<String>::new());
    assert_eq!(failures(&fast), Vec::<String>::new());
    Ok(())
}

/// At the drain timeout the requests left are cut and the instance is out.
pub async fn drain_timeout_forces(f: &Fixture) -> TestResult {
    let b1 = f.b1.address();
    let client = super::http_client();
    let frontend = f.frontend;
    let long = tokio::spawn(async move { super::get(&client, frontend, "/sleep?ms=6000").await });
    assert!(
        wait_until(Duration::from_secs(3), || async { f.b1.hits() > 0 }).await,
        "the long request did not reach b1"
    );
    let outcome = f
        .driver
        .deregister("blue", &b1, Duration::from_millis(500))
        .await?;
    assert!(outcome.forced, "{outcome:?}");
    assert!(outcome.elapsed < Duration::from_secs(4), "{outcome:?}");
    let result = long.await?;
    assert!(
        !matches!(result, Ok((200, _))),
        "the request in flight past the drain timeout was not cut: {result:?}"
    );
    if let Some(state) = state_of(f, "blue", &b1).await? {
        assert!(!in_traffic(&state), "b1 still `{state}`");
    }
    Ok(())
}

/// Blue/green: the switch moves every new request to the other group under continuous load with zero
/// failed requests, the switch is recorded (map file), and switching back works the same.
pub async fn switch_under_load(f: &Fixture) -> TestResult {
    assert_eq!(f.driver.active_group(SERVICE).await?, "blue");
    let stop = CancellationToken::new();
    let slow = spawn_load(f.frontend, "/sleep?ms=300", 3, stop.clone());
    let fast = spawn_load(f.frontend, "/", 2, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.driver.switch(SERVICE, "green").await?;
    let to_green = Instant::now();
    assert_eq!(f.driver.active_group(SERVICE).await?, "green");
    if let Some(map) = &f.map_file {
        let text = std::fs::read_to_string(map)?;
        assert_eq!(mapfile::value_of(&text, SERVICE), Some("green"), "{text}");
        assert!(text.starts_with("# blue/green\n"), "comments kept: {text}");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Requests may see blue from the moment the switch-back call starts.
    let leaving_green = Instant::now();
    f.driver.switch(SERVICE, "blue").await?;
    let to_blue = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.cancel();
    let mut all = slow.await?;
    all.extend(fast.await?);
    assert_eq!(failures(&all), Vec::<String>::new());
    let between = |a: Instant, b: Instant| {
        all.iter()
            .filter(move |s| s.started > a && s.started < b)
            .collect::<Vec<_>>()
    };
    let green_phase = between(to_green, to_blue);
    assert!(!green_phase.is_empty());
    for s in &green_phase {
        // Requests that started while green was active, and ended before the switch back, came from green.
        if s.finished < leaving_green {
            assert_eq!(s.served_by(), Some("g1"), "{s:?}");
        }
    }
    let after = between(to_blue, Instant::now());
    assert!(!after.is_empty());
    assert!(after.iter().all(|s| s.served_by() == Some("b1")));
    assert!(
        all.iter()
            .any(|s| s.started < to_green && s.served_by() == Some("b1"))
    );
    assert_eq!(f.driver.active_group(SERVICE).await?, "blue");
    if let Some(map) = &f.map_file {
        let text = std::fs::read_to_string(map)?;
        assert_eq!(mapfile::value_of(&text, SERVICE), Some("blue"), "{text}");
    }
    Ok(())
}

/// Repeating an operation changes nothing and succeeds; absent instances deregister fine.
pub async fn operations_are_idempotent(f: &Fixture) -> TestResult {
    let (b1, b2) = (f.b1.address(), f.b2.address());
    // b1 is in traffic already: registering again is a no-op that keeps it in traffic.
    f.driver
        .register("blue", &b1, Duration::from_secs(5))
        .await?;
    let state = state_of(f, "blue", &b1).await?.ok_or("b1 missing")?;
    assert!(in_traffic(&state), "{state}");
    // b2 was never put into traffic.
    assert!(
        f.driver
            .deregister("blue", &b2, Duration::from_secs(5))
            .await?
            .already_out
    );
    assert!(
        f.driver
            .deregister("blue", "127.0.0.1:1", Duration::from_secs(5))
            .await?
            .already_out
    );
    f.driver
        .register("blue", &b2, Duration::from_secs(10))
        .await?;
    f.driver
        .register("blue", &b2, Duration::from_secs(10))
        .await?;
    let first = f
        .driver
        .deregister("blue", &b2, Duration::from_secs(5))
        .await?;
    assert!(!first.already_out);
    let second = f
        .driver
        .deregister("blue", &b2, Duration::from_secs(5))
        .await?;
    assert!(second.already_out && !second.forced);
    f.driver.switch(SERVICE, "green").await?;
    f.driver.switch(SERVICE, "green").await?;
    assert_eq!(f.driver.active_group(SERVICE).await?, "green");
    if let Some(map) = &f.map_file {
        let text = std::fs::read_to_string(map)?;
        let lines = text
            .lines()
            .filter(|l| l.starts_with(&format!("{SERVICE} ")))
            .count();
        assert_eq!(lines, 1, "{text}");
    }
    Ok(())
}

/// Switching to a group that does not exist is refused (it would send traffic to a 503) with an error
/// naming the LB and the group, and changes nothing.
pub async fn switch_to_unknown_group_names_it(f: &Fixture) -> TestResult {
    let err = f
        .driver
        .switch(SERVICE, "purple")
        .await
        .err()
        .ok_or("switch to a missing group succeeded")?;
    let msg = err.to_string();
    assert!(matches!(err, LbDriverError::UnknownGroup { .. }), "{msg}");
    assert!(
        msg.contains("purple") && msg.contains(&f.driver.describe()),
        "{msg}"
    );
    assert_eq!(f.driver.active_group(SERVICE).await?, "blue");
    if let Some(map) = &f.map_file {
        let text = std::fs::read_to_string(map)?;
        assert_eq!(mapfile::value_of(&text, SERVICE), Some("blue"), "{text}");
    }
    Ok(())
}

/// Counters see the traffic of a group and of its servers.
pub async fn counters_count_requests(f: &Fixture) -> TestResult {
    let before = f.driver.counters("blue").await?;
    let client = super::http_client();
    for _ in 0..10 {
        let (status, body) = super::get(&client, f.frontend, "/").await?;
        assert_eq!((status, body.as_str()), (200, "b1"));
    }
    // HAProxy adds a request to the backend's total when the session ends, which can be a moment after the client
    // has its response: let the counters settle (bounded) before asserting.
    let settle_by = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut after = f.driver.counters("blue").await?;
    while after.requests - before.requests < 10 && std::time::Instant::now() < settle_by {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = f.driver.counters("blue").await?;
    }
    assert_eq!(after.requests - before.requests, 10, "{after:?}");
    assert_eq!(after.errors_5xx, before.errors_5xx);
    let b1 = |c: &rollcage_lbdriver::GroupCounters| {
        c.per_server
            .iter()
            .find(|s| s.instance == f.b1.address())
            .map(|s| s.requests)
            .unwrap_or(0)
    };
    assert_eq!(b1(&after) - b1(&before), 10);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Weights and traffic windows.

const GROUPS: [&str; 2] = ["blue", "green"];

/// A weight of 10, 50 and 100 % on `green` gives that share of 2,000 requests within ±5 points, the window
/// counts exactly the requests the clients saw per group, and weight 0 sends nothing to `green`.
pub async fn weights_split_traffic(f: &Fixture) -> TestResult {
    const TOTAL: usize = 2_000;
    let mut mark = f.driver.read_window(&GROUPS, None).await?.mark;
    for percent in [10u8, 50, 100, 0] {
        let weight = Weight::new(u64::from(percent))?;
        f.driver.set_weight(SERVICE, "green", weight).await?;
        let split = f.driver.traffic_split(SERVICE).await?;
        assert_eq!(
            (
                split.active_group.as_str(),
                split.new_group.as_deref(),
                split.weight
            ),
            ("blue", Some("green"), weight)
        );
        let samples = send_n(f.frontend, "/", 8, TOTAL).await;
        assert_eq!(failures(&samples), Vec::<String>::new());
        let counts = served_counts(&samples);
        let green = counts.get("g1").copied().unwrap_or(0);
        let share = green as f64 * 100.0 / TOTAL as f64;
        assert!(
            (share - f64::from(percent)).abs() <= 5.0,
            "weight {percent} %: observed {share:.1} % on green ({counts:?})"
        );
        if percent == 0 {
            assert_eq!(green, 0, "weight 0 sent requests to green");
        }
        // The LB's counters may trail the clients' last answers by a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let w = f.driver.read_window(&GROUPS, Some(&mark)).await?;
        assert!(!w.reset, "{w:?}");
        let requests = |g: &str| w.group(g).map_or(0, |g| g.figures.requests);
        assert_eq!(
            (requests("blue"), requests("green")),
            ((TOTAL - green) as u64, green as u64),
            "window at {percent} %: {w:?}"
        );
        mark = w.mark;
    }
    // The switch ends the split: everything on the group switched to.
    f.driver
        .set_weight(SERVICE, "green", Weight::new(50)?)
        .await?;
    f.driver.switch(SERVICE, "blue").await?;
    let split = f.driver.traffic_split(SERVICE).await?;
    assert_eq!(
        (split.active_group.as_str(), split.weight),
        ("blue", Weight::ZERO)
    );
    let counts = served_counts(&send_n(f.frontend, "/", 4, 200).await);
    assert_eq!(counts.get("b1"), Some(&200), "{counts:?}");
    Ok(())
}

/// Changing the weight applies to the next requests at once, while a slow request in flight finishes on
/// the server it started on.
pub async fn weight_change_is_live_and_in_flight_stays(f: &Fixture) -> TestResult {
    f.driver.set_weight(SERVICE, "green", Weight::ZERO).await?;
    let client = http_client();
    let addr = f.frontend;
    let slow = tokio::spawn(async move { get(&client, addr, "/sleep?ms=1500").await });
    let b1 = &f.b1;
    assert!(
        wait_until(Duration::from_secs(3), || async { b1.waiting() == 1 }).await,
        "the slow request did not reach b1"
    );
    f.driver.set_weight(SERVICE, "green", Weight::FULL).await?;
    let changed = Instant::now();
    let after = send_n(f.frontend, "/", 2, 20).await;
    assert!(
        changed.elapsed() < Duration::from_millis(1400),
        "the requests after the change waited for the slow one"
    );
    let counts = served_counts(&after);
    assert_eq!(counts.get("g1"), Some(&20), "after weight 100: {counts:?}");
    assert_eq!(f.b1.waiting(), 1, "the slow request is still on b1");
    let (status, body) = slow.await??;
    assert_eq!(
        (status, body.as_str()),
        (200, "b1"),
        "the in-flight request moved"
    );
    Ok(())
}

/// The window's figures: requests and 5xx per group and server match what the clients saw (green's server
/// answers 500 to every fifth request), and green's latency shows the 60 ms it adds to every request.
pub async fn window_counts_5xx_and_latency(f: &Fixture) -> TestResult {
    const TOTAL: usize = 1_000;
    f.g1.fail_every(5);
    f.g1.set_delay_ms(60);
    f.driver
        .set_weight(SERVICE, "green", Weight::new(50)?)
        .await?;
    let mark = f.driver.read_window(&GROUPS, None).await?.mark;
    let samples = send_n(f.frontend, "/", 16, TOTAL).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let w = f.driver.read_window(&GROUPS, Some(&mark)).await?;
    let seen = |name: &str, status: u16| {
        samples
            .iter()
            .filter(|s| matches!(&s.outcome, Ok((st, b)) if *st == status && b == name))
            .count() as u64
    };
    let (g_ok, g_500, b_ok) = (seen("g1", 200), seen("g1", 500), seen("b1", 200));
    assert_eq!(
        g_ok + g_500 + b_ok,
        TOTAL as u64,
        "other answers: {:?}",
        failures(&samples)
    );
    assert!(
        g_500 > 0 && g_500.abs_diff((g_ok + g_500) / 5) <= 1,
        "{g_ok} ok, {g_500} 500"
    );
    let green = w.group("green").ok_or("green missing")?;
    let blue = w.group("blue").ok_or("blue missing")?;
    assert_eq!(
        (green.figures.requests, green.figures.responses_5xx),
        (g_ok + g_500, g_500),
        "{green:?}"
    );
    assert_eq!(
        (blue.figures.requests, blue.figures.responses_5xx),
        (b_ok, 0),
        "{blue:?}"
    );
    let g1 = green
        .servers
        .iter()
        .find(|s| s.instance == f.g1.address())
        .ok_or("g1 missing from the window")?;
    assert_eq!(g1.figures.requests, g_ok + g_500);
    let rate = green.figures.error_rate().ok_or("no rate")?;
    assert!((0.19..=0.21).contains(&rate), "{rate}");
    // HAProxy: averages over its last 1024 requests; built-in: this window's percentiles.
    assert_eq!(green.figures.latency.is_average(), f.haproxy.is_some());
    let g_lat = green
        .figures
        .latency
        .p99_or_average_ms()
        .ok_or("no green latency")?;
    let b_lat = blue
        .figures
        .latency
        .p99_or_average_ms()
        .ok_or("no blue latency")?;
    assert!(g_lat >= 60.0, "green {g_lat} ms: {green:?}");
    assert!(b_lat < 30.0, "blue {b_lat} ms: {blue:?}");
    Ok(())
}
