//! Weighted split and traffic windows of the built-in load balancer through its admin API: the split's rules
//! (live, ended by a switch, refused on the active group or above 100 %), and the window semantics (one cut
//! for every group, re-reading a window, `since` marks of independent readers, a mark from another process).
//! Shares, live changes, 5xx counts and p99 under load are the driver scenarios' (`rollcage-lbdriver` tests),
//! run against both load balancers.

mod common;

use common::{Backend, TOKEN, TestResult, group_with, start_lb};
use rollcage_lb::api::{Latency, Weight};
use rollcage_lb_testkit::{send_n, served_counts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_is_live_and_a_switch_ends_it() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let (b1, g1) = (Backend::start("b1").await?, Backend::start("g1").await?);
    group_with(&admin, "blue", &[&b1]).await?;
    group_with(&admin, "green", &[&g1]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "blue").await?;
    assert_eq!(svc.split, None);
    let addr = svc.listen.parse()?;

    let view = admin.set_split("svc", "green", Weight::new(10)?).await?;
    assert_eq!(view.group, "blue");
    let split = view.split.ok_or("no split in the answer")?;
    assert_eq!(
        (split.group.as_str(), split.weight.percent()),
        ("green", 10)
    );
    let counts = served_counts(&send_n(addr, "/", 4, 200).await);
    // The split is exact per 100 requests: 20 of 200.
    assert_eq!(counts.get("g1"), Some(&20), "{counts:?}");

    admin.set_split("svc", "green", Weight::ZERO).await?;
    let counts = served_counts(&send_n(addr, "/", 4, 100).await);
    assert_eq!(counts.get("g1"), None, "weight 0: {counts:?}");
    assert_eq!(
        admin.service("svc").await?.split.map(|s| s.weight),
        Some(Weight::ZERO),
        "a weight of 0 stays visible"
    );

    admin.set_split("svc", "green", Weight::FULL).await?;
    let counts = served_counts(&send_n(addr, "/", 4, 100).await);
    assert_eq!(counts.get("g1"), Some(&100), "{counts:?}");

    // A switch ends the split: everything on the group switched to, even the old active one.
    let view = admin.switch_service("svc", "blue").await?;
    assert_eq!((view.group.as_str(), view.split), ("blue", None));
    let counts = served_counts(&send_n(addr, "/", 4, 50).await);
    assert_eq!(counts.get("b1"), Some(&50), "{counts:?}");
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_splits_are_refused_with_what_and_where() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let b1 = Backend::start("b1").await?;
    group_with(&admin, "blue", &[&b1]).await?;
    admin.create_group("green", None).await?;
    admin.create_service("svc", "127.0.0.1:0", "blue").await?;

    let e = admin
        .set_split("svc", "blue", Weight::FULL)
        .await
        .err()
        .ok_or("a split onto the active group was accepted")?;
    assert_eq!(e.code(), Some("split_on_active_group"), "{e}");
    assert!(
        e.to_string().contains("`svc`") && e.to_string().contains("`blue`"),
        "{e}"
    );

    let e = admin
        .set_split("svc", "purple", Weight::FULL)
        .await
        .err()
        .ok_or("a split onto a missing group was accepted")?;
    assert_eq!(e.code(), Some("group_not_found"), "{e}");
    let e = admin
        .set_split("nosvc", "green", Weight::FULL)
        .await
        .err()
        .ok_or("a split of a missing service was accepted")?;
    assert_eq!(e.code(), Some("service_not_found"), "{e}");

    // 101 % never leaves a typed client; send it raw.
    let resp = raw_put(
        lb.admin_addr(),
        "/v1/services/svc/split",
        r#"{"group":"green","weight":101}"#,
    )
    .await?;
    assert_eq!(resp.0, 400, "{resp:?}");
    assert!(
        resp.1.contains("weight") && resp.1.contains("101"),
        "{resp:?}"
    );
    lb.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_cover_every_group_alike_and_read_again_identically() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let (b1, g1) = (Backend::start("b1").await?, Backend::start("g1").await?);
    group_with(&admin, "blue", &[&b1]).await?;
    group_with(&admin, "green", &[&g1]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "blue").await?;
    let addr = svc.listen.parse()?;
    admin.set_split("svc", "green", Weight::new(50)?).await?;
    g1.fail_every(4);
    g1.set_delay_ms(40);

    // Reader A's first cut is its starting mark.
    let start = admin.cut_window(None).await?;
    send_n(addr, "/", 4, 200).await;
    let w1 = admin.cut_window(Some((&start.lb, start.id))).await?;
    assert_eq!(w1.id, start.id + 1);
    assert!(!w1.reset);
    let blue = w1.groups.iter().find(|g| g.group == "blue").ok_or("blue")?;
    let green = w1
        .groups
        .iter()
        .find(|g| g.group == "green")
        .ok_or("green")?;
    assert_eq!(blue.figures.requests, 100, "{blue:?}");
    assert_eq!(green.figures.requests, 100, "{green:?}");
    assert_eq!(
        (blue.figures.responses_5xx, green.figures.responses_5xx),
        (0, 25)
    );
    let [server] = green.servers.as_slice() else {
        return Err(format!("expected g1 alone: {:?}", green.servers).into());
    };
    assert_eq!(
        (server.instance.clone(), server.figures.requests),
        (g1.address(), 100)
    );
    let p99 = |l: &Latency| l.p99_or_average_ms().unwrap_or(f64::NAN);
    assert!(p99(&green.figures.latency) >= 40.0, "{green:?}");
    assert!(p99(&blue.figures.latency) < 40.0, "{blue:?}");
    assert!(!green.figures.latency.is_average());

    // Reader B reads the same window: the same figures.
    let again = admin.window(w1.id, None).await?;
    assert_eq!(again.groups, w1.groups);

    // Reader B cuts meanwhile; reader A's next reading with its own mark still covers its whole interval.
    send_n(addr, "/", 2, 40).await;
    let b_cut = admin.cut_window(None).await?;
    send_n(addr, "/", 2, 60).await;
    let w2 = admin.cut_window(Some((&w1.lb, w1.id))).await?;
    assert_eq!((w2.since, w2.id), (w1.id, b_cut.id + 1));
    let total: u64 = w2.groups.iter().map(|g| g.figures.requests).sum();
    assert_eq!(total, 100, "reader A's interval lost requests: {w2:?}");
    let b_total: u64 = b_cut.groups.iter().map(|g| g.figures.requests).sum();
    assert_eq!(b_total, 40);

    // A mark from another LB process: figures since this one started, flagged.
    let foreign = admin.cut_window(Some(("another-lb", w2.id))).await?;
    assert!(foreign.reset);
    // Unknown windows are named.
    let e = admin
        .window(foreign.id + 5, None)
        .await
        .err()
        .ok_or("a window never cut was found")?;
    assert_eq!(e.code(), Some("window_not_found"), "{e}");
    lb.shutdown().await;
    Ok(())
}

/// PUT with a raw body: status and body text.
async fn raw_put(
    admin: std::net::SocketAddr,
    path: &str,
    body: &'static str,
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::put(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
