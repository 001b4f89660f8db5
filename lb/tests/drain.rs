//! Draining over real sockets: a deregistered server finishes its in-flight requests and gets no new ones;
//! the drain timeout and `force` remove it early.

mod common;

use common::{Backend, TestResult, get, group_with, http_client, start_lb, wait_until};
use rollcage_lb::api::ServerPhase;
use rollcage_lb::client::AdminClient;
use std::time::{Duration, Instant};

/// Waits until one server of `group` has a request in flight; returns its address.
async fn busy_server(admin: &AdminClient, group: &str) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok(g) = admin.group(group).await
            && let Some(s) = g.servers.iter().find(|s| s.in_flight > 0)
        {
            return Some(s.address.clone());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test]
async fn draining_server_finishes_slow_request_and_gets_no_new_ones() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let (b1, b2) = (Backend::start("b1").await?, Backend::start("b2").await?);
    group_with(&admin, "web", &[&b1, &b2]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;
    let client = http_client();

    // The backend answers /slow after 500 ms.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            (get(&client, addr, "/slow").await, t.elapsed())
        })
    };
    let busy = busy_server(&admin, "web")
        .await
        .ok_or("slow request never in flight")?;
    let (busy_name, other_name) = if busy == b1.address() {
        ("b1", "b2")
    } else {
        ("b2", "b1")
    };
    let busy_hits_before = if busy_name == "b1" {
        b1.hits()
    } else {
        b2.hits()
    };

    let drain = admin
        .deregister("web", &busy, Some(Duration::from_secs(10)), false)
        .await?;
    assert_eq!(drain.phase, ServerPhase::Draining);
    assert_eq!(drain.in_flight, 1);
    let state = admin
        .server("web", &busy)
        .await?
        .ok_or("draining server vanished early")?;
    assert_eq!(state.phase, ServerPhase::Draining);
    assert!(!state.eligible);
    assert_eq!(state.in_flight, 1);
    assert!(state.drain_remaining_ms.is_some_and(|ms| ms > 5_000));

    // New requests all go to the other server while the slow one is still running.
    for _ in 0..10 {
        assert_eq!(get(&client, addr, "/").await?, (200, other_name.to_owned()));
    }
    assert!(
        !slow.is_finished(),
        "the slow request should still be in flight"
    );

    let (result, took) = slow.await?;
    assert_eq!(
        result?,
        (200, busy_name.to_owned()),
        "the in-flight request completed"
    );
    assert!(took >= Duration::from_millis(450), "{took:?}");
    let busy_hits_after = if busy_name == "b1" {
        b1.hits()
    } else {
        b2.hits()
    };
    assert_eq!(
        busy_hits_after, busy_hits_before,
        "no new request reached the draining server"
    );

    // With nothing in flight the server leaves the group promptly, long before the 10 s drain timeout.
    let a = admin.clone();
    let b = busy.clone();
    assert!(
        wait_until(Duration::from_secs(1), || {
            let (a, b) = (a.clone(), b.clone());
            async move { matches!(a.server("web", &b).await, Ok(None)) }
        })
        .await,
        "drained server not removed"
    );
    // Deregistering again is a no-op that reports it removed.
    let again = admin.deregister("web", &busy, None, false).await?;
    assert_eq!((again.phase, again.in_flight), (ServerPhase::Removed, 0));
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn drain_timeout_forces_removal_and_cuts_the_request() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let b = Backend::start("b").await?;
    group_with(&admin, "web", &[&b]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;
    let client = http_client();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            (get(&client, addr, "/sleep?ms=5000").await, t.elapsed())
        })
    };
    busy_server(&admin, "web")
        .await
        .ok_or("request never in flight")?;
    let t = Instant::now();
    admin
        .deregister_and_wait("web", &b.address(), Duration::from_millis(300))
        .await?;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "forced at the drain timeout, waited {waited:?}"
    );
    let (result, took) = slow.await?;
    assert_eq!(result?.0, 502, "the cut request is answered 502");
    assert!(took < Duration::from_secs(3), "{took:?}");
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn force_removes_at_once_and_register_cancels_a_drain() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let (b1, b2) = (Backend::start("b1").await?, Backend::start("b2").await?);
    group_with(&admin, "web", &[&b1, &b2]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;
    let client = http_client();

    // Re-registering a draining server puts it back into rotation (same server, counters kept).
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, addr, "/slow").await })
    };
    let busy = busy_server(&admin, "web")
        .await
        .ok_or("request never in flight")?;
    assert_eq!(
        admin.deregister("web", &busy, None, false).await?.phase,
        ServerPhase::Draining
    );
    let back = admin.register("web", &busy).await?;
    assert_eq!(back.phase, ServerPhase::Active);
    assert!(back.eligible && back.counters.requests == 1);
    assert_eq!(slow.await??.0, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        admin.server("web", &busy).await?.is_some(),
        "the old drain must not remove it"
    );
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(get(&client, addr, "/").await?.1);
    }
    names.sort();
    assert_eq!(names, vec!["b1", "b1", "b2", "b2"]);

    // force=true removes at once, in-flight or not.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, addr, "/sleep?ms=5000").await })
    };
    let busy = busy_server(&admin, "web")
        .await
        .ok_or("request never in flight")?;
    let gone = admin.deregister("web", &busy, None, true).await?;
    assert_eq!((gone.phase, gone.in_flight), (ServerPhase::Removed, 1));
    assert!(admin.server("web", &busy).await?.is_none());
    assert_eq!(slow.await??.0, 502);
    lb.shutdown().await;
    Ok(())
}
