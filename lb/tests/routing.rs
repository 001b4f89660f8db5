//! Routing through the built-in load balancer over real sockets: round-robin, health checks, registration
//! that waits for health, the connect-failure retry policy and the counters.

mod common;

use common::{Backend, TestResult, get, group_with, http_client, start_lb, wait_until};
use rollcage_lb::api::{HealthCheckSpec, ServerPhase};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn round_robin_spreads_requests_evenly() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let (b1, b2, b3) = (
        Backend::start("b1").await?,
        Backend::start("b2").await?,
        Backend::start("b3").await?,
    );
    group_with(&admin, "web", &[&b1, &b2, &b3]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;
    let client = http_client();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut order = Vec::new();
    for _ in 0..30 {
        let (status, body) = get(&client, addr, "/").await?;
        assert_eq!(status, 200);
        *seen.entry(body.clone()).or_default() += 1;
        order.push(body);
    }
    assert_eq!(seen.len(), 3, "all three servers answered: {seen:?}");
    assert!(seen.values().all(|&n| n == 10), "even spread: {seen:?}");
    // Strict rotation: no server twice in a row.
    assert!(order.windows(2).all(|w| w[0] != w[1]), "{order:?}");
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unhealthy_server_gets_no_traffic() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let good = Backend::start("good").await?;
    let sick = Backend::start("sick").await?;
    sick.set_healthy(false);
    group_with(&admin, "web", &[&good]).await?;
    let view = admin.register("web", &sick.address()).await?;
    assert!(
        !view.healthy && !view.eligible,
        "a new server starts unhealthy"
    );
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;
    // Several check intervals pass; the sick server stays out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = http_client();
    for _ in 0..20 {
        assert_eq!(get(&client, addr, "/").await?, (200, "good".to_owned()));
    }
    assert_eq!(sick.hits(), 0);
    let state = admin
        .server("web", &sick.address())
        .await?
        .ok_or("sick server missing")?;
    assert!(!state.healthy);
    assert!(
        state.last_check_error.is_some_and(|e| e.contains("503")),
        "the failed check says why"
    );

    // A healthy server that starts failing its checks leaves the rotation.
    good.set_healthy(false);
    let admin2 = admin.clone();
    let gaddr = good.address();
    assert!(
        wait_until(Duration::from_secs(3), || {
            let (a, g) = (admin2.clone(), gaddr.clone());
            async move {
                a.server("web", &g)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| !s.healthy)
            }
        })
        .await
    );
    let (status, body) = get(&client, addr, "/").await?;
    assert_eq!(status, 503, "no healthy server left: {body}");
    assert!(body.contains("web"), "the 503 names the group: {body}");
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn register_waits_until_healthy() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let b = Backend::start("late").await?;
    b.set_healthy(false);
    admin.create_group("web", None).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;
    let waiter = {
        let admin = admin.clone();
        let address = b.address();
        tokio::spawn(async move {
            admin
                .register_and_wait("web", &address, Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiter.is_finished(),
        "register_and_wait returned before the server was healthy"
    );
    let client = http_client();
    assert_eq!(get(&client, addr, "/").await?.0, 503);
    assert_eq!(b.hits(), 0);
    b.set_healthy(true);
    let view = waiter.await??;
    assert!(view.healthy && view.eligible && view.phase == ServerPhase::Active);
    assert_eq!(get(&client, addr, "/").await?, (200, "late".to_owned()));

    // Waiting has a limit, and the error says what was last seen.
    let never = Backend::start("never").await?;
    never.set_healthy(false);
    let err = admin
        .register_and_wait("web", &never.address(), Duration::from_millis(300))
        .await
        .err()
        .ok_or("expected a timeout")?;
    let msg = err.to_string();
    assert!(
        msg.contains("not healthy") && msg.contains("web") && msg.contains("503"),
        "{msg}"
    );
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn connect_failure_is_retried_once_for_idempotent_requests_only() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let alive = Backend::start("alive").await?;
    let dying = Backend::start("dying").await?;
    // Checks pass at once and then not again for a minute: the dead server stays "healthy" meanwhile.
    let slow_checks = HealthCheckSpec {
        path: "/health".to_owned(),
        interval_ms: 60_000,
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        timeout_ms: 500,
    };
    admin.create_group("web", Some(slow_checks)).await?;
    for b in [&alive, &dying] {
        admin
            .register_and_wait("web", &b.address(), Duration::from_secs(5))
            .await?;
    }
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr: std::net::SocketAddr = svc.listen.parse()?;
    let dying_addr = dying.address();
    dying.stop().await;

    let client = http_client();
    for _ in 0..6 {
        assert_eq!(get(&client, addr, "/").await?, (200, "alive".to_owned()));
    }
    let counters = admin.counters().await?;
    let web = counters
        .groups
        .iter()
        .find(|g| g.group == "web")
        .ok_or("no web counters")?;
    assert_eq!(web.counters.requests, 6);
    assert_eq!(
        web.counters.retries, 3,
        "every other request met the dead server"
    );
    assert_eq!(web.counters.responses_5xx, 0);
    let dead = web
        .servers
        .iter()
        .find(|s| s.address == dying_addr)
        .ok_or("no dead server counters")?;
    assert_eq!(dead.counters.connect_failures, 3);

    // A POST with a body is not retried: one of two POSTs meets the dead server and gets a 502.
    let post_client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let req = hyper::Request::post(format!("http://{addr}/")).body(
            http_body_util::Full::new(bytes::Bytes::from_static(b"payload")),
        )?;
        statuses.push(post_client.request(req).await?.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 502]);
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn counters_per_group_and_server() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let (b1, b2) = (Backend::start("b1").await?, Backend::start("b2").await?);
    group_with(&admin, "web", &[&b1, &b2]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr = svc.listen.parse()?;
    let client = http_client();
    for _ in 0..4 {
        assert_eq!(get(&client, addr, "/").await?.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&client, addr, "/fail").await?.0, 500);
    }
    // A request in flight shows up in both in-flight counters.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, addr, "/slow").await })
    };
    let a = admin.clone();
    assert!(
        wait_until(Duration::from_secs(2), || {
            let a = a.clone();
            async move {
                a.group("web").await.is_ok_and(|g| {
                    g.counters.in_flight == 1 && g.servers.iter().any(|s| s.in_flight == 1)
                })
            }
        })
        .await,
        "in-flight request not counted"
    );
    assert_eq!(slow.await??.0, 200);

    let g = admin.group("web").await?;
    assert_eq!(g.counters.requests, 7);
    assert_eq!(g.counters.responses_5xx, 2);
    assert_eq!(g.counters.in_flight, 0);
    let per_server: Vec<u64> = g.servers.iter().map(|s| s.counters.requests).collect();
    assert_eq!(per_server.iter().sum::<u64>(), 7);
    assert!(per_server.iter().all(|&n| n >= 3), "{per_server:?}");
    assert_eq!(
        g.servers
            .iter()
            .map(|s| s.counters.responses_5xx)
            .sum::<u64>(),
        2
    );
    assert_eq!(b1.hits() + b2.hits(), 7);

    // 503s for want of servers count as 5xx of the group.
    admin.create_group("empty", None).await?;
    admin.switch_service("svc", "empty").await?;
    assert_eq!(get(&client, addr, "/").await?.0, 503);
    let report = admin.counters().await?;
    let empty = report
        .groups
        .iter()
        .find(|g| g.group == "empty")
        .ok_or("no counters for group empty")?;
    assert_eq!(
        (empty.counters.requests, empty.counters.responses_5xx),
        (1, 1)
    );
    lb.shutdown().await;
    Ok(())
}
