//! Zero failed requests under continuous load while a service switches from group blue to green, and while
//! servers are drained, stopped, restarted and registered again one by one (a rolling deployment).

mod common;

use common::{Backend, Sample, TestResult, group_with, spawn_load, start_lb};
use rollcage_lb_testkit::failures;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switch_under_load_has_no_failed_requests() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let blue = [
        Backend::start("blue-1").await?,
        Backend::start("blue-2").await?,
    ];
    let green = [
        Backend::start("green-1").await?,
        Backend::start("green-2").await?,
    ];
    // Slow enough answers that requests are in flight at the moment of the switch.
    for b in blue.iter().chain(&green) {
        b.delay_ms.store(30, std::sync::atomic::Ordering::SeqCst);
    }
    group_with(&admin, "blue", &[&blue[0], &blue[1]]).await?;
    group_with(&admin, "green", &[&green[0], &green[1]]).await?;
    let svc = admin.create_service("app", "127.0.0.1:0", "blue").await?;
    let addr = svc.listen.parse()?;

    let stop = CancellationToken::new();
    let load = spawn_load(addr, "/", 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let blue_in_flight = admin.group("blue").await?.counters.in_flight;
    let switched = admin.switch_service("app", "green").await?;
    let switched_at = Instant::now();
    assert_eq!(switched.group, "green");
    // The old group drains and its servers stop, as a deployment would do after the switch.
    for b in &blue {
        admin
            .deregister_and_wait("blue", &b.address(), Duration::from_secs(5))
            .await?;
    }
    let [b1, b2] = blue;
    b1.stop().await;
    b2.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let samples = load.await?;

    assert!(
        blue_in_flight > 0,
        "no request was in flight at the switch; the test proves nothing"
    );
    assert!(samples.len() > 100, "too little load: {}", samples.len());
    let failed = failures(&samples);
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let body = |s: &Sample| {
        s.outcome
            .as_ref()
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    };
    let after: Vec<String> = samples
        .iter()
        .filter(|s| s.started > switched_at)
        .map(body)
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|b| b.starts_with("green-")),
        "a request started after the switch was answered by blue"
    );
    assert!(samples.iter().any(|s| body(s).starts_with("blue-")));
    let green_counters = admin.group("green").await?.counters;
    assert_eq!(green_counters.responses_5xx, 0);
    assert!(green_counters.requests as usize >= after.len());
    lb.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_has_no_failed_requests() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let mut backends = vec![
        Backend::start("v1-a").await?,
        Backend::start("v1-b").await?,
        Backend::start("v1-c").await?,
    ];
    for b in &backends {
        b.delay_ms.store(30, std::sync::atomic::Ordering::SeqCst);
    }
    let refs: Vec<&Backend> = backends.iter().collect();
    group_with(&admin, "web", &refs).await?;
    let svc = admin.create_service("app", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;

    let stop = CancellationToken::new();
    let load = spawn_load(addr, "/", 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut saw_in_flight_at_drain = 0;
    for i in 0..backends.len() {
        let old = backends.remove(i);
        let address = old.addr;
        let in_flight = admin
            .server("web", &old.address())
            .await?
            .map(|s| s.in_flight)
            .unwrap_or(0);
        if in_flight > 0 {
            saw_in_flight_at_drain += 1;
        }
        admin
            .deregister_and_wait("web", &old.address(), Duration::from_secs(5))
            .await?;
        let name = old.name.replace("v1", "v2");
        old.stop().await;
        // "Install" the new version on the same port, then put it back.
        let new = Backend::start_on(&name, address).await?;
        new.delay_ms.store(30, std::sync::atomic::Ordering::SeqCst);
        admin
            .register_and_wait("web", &new.address(), Duration::from_secs(5))
            .await?;
        backends.insert(i, new);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_new_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let samples = load.await?;
    let failed = failures(&samples);
    assert!(samples.len() > 100, "too little load: {}", samples.len());
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        saw_in_flight_at_drain > 0,
        "no drain met an in-flight request; the test proves nothing"
    );
    let last: Vec<&Sample> = samples.iter().filter(|s| s.started > all_new_at).collect();
    assert!(!last.is_empty());
    assert!(
        last.iter()
            .all(|s| s.outcome.as_ref().is_ok_and(|(_, b)| b.starts_with("v2-"))),
        "only the new version serves at the end"
    );
    assert_eq!(admin.group("web").await?.counters.responses_5xx, 0);
    lb.shutdown().await;
    Ok(())
}
