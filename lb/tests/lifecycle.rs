//! Start-up from a configuration and graceful shutdown of the load balancer.

mod common;

use common::{
    Backend, TOKEN, TestResult, fast_health, get, group_with, http_client, start_lb, wait_until,
};
use rollcage_lb::client::AdminClient;
use rollcage_lb::{GroupSeed, LbConfig, ServiceSeed, Settings};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_stops_listening() -> TestResult {
    let (lb, admin) = start_lb().await?;
    let b = Backend::start("b").await?;
    group_with(&admin, "web", &[&b]).await?;
    let svc = admin.create_service("svc", "127.0.0.1:0", "web").await?;
    let addr: SocketAddr = svc.listen.parse()?;
    let admin_addr = lb.admin_addr();
    let client = http_client();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, addr, "/slow").await })
    };
    let a = admin.clone();
    assert!(
        wait_until(Duration::from_secs(2), || {
            let a = a.clone();
            async move {
                a.group("web")
                    .await
                    .is_ok_and(|g| g.counters.in_flight == 1)
            }
        })
        .await
    );
    lb.shutdown().await;
    assert_eq!(
        slow.await??,
        (200, "b".to_owned()),
        "the in-flight request finished"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "service still listening"
    );
    assert!(
        tokio::net::TcpStream::connect(admin_addr).await.is_err(),
        "admin still listening"
    );
    Ok(())
}

#[tokio::test]
async fn configured_groups_and_services_start_with_the_balancer() -> TestResult {
    let (b1, b2) = (Backend::start("b1").await?, Backend::start("b2").await?);
    let lb = rollcage_lb::start(LbConfig {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: TOKEN.to_owned(),
        settings: Settings {
            health_check: fast_health(),
            ..Settings::default()
        },
        groups: vec![GroupSeed {
            name: "blue".to_owned(),
            health_check: None,
            servers: vec![b1.address(), b2.address()],
        }],
        services: vec![ServiceSeed {
            name: "app".to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            group: "blue".to_owned(),
        }],
    })
    .await?;
    let admin = AdminClient::new(lb.admin_addr(), TOKEN);
    for b in [&b1, &b2] {
        admin
            .register_and_wait("blue", &b.address(), Duration::from_secs(5))
            .await?;
    }
    let addr = lb.service_addr("app").ok_or("service app not bound")?;
    let client = http_client();
    let mut bodies = vec![
        get(&client, addr, "/").await?.1,
        get(&client, addr, "/").await?.1,
    ];
    bodies.sort();
    assert_eq!(bodies, vec!["b1", "b2"]);
    lb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_service_address_in_use_fails_the_start_and_names_it() -> TestResult {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken_addr = taken.local_addr()?.to_string();
    let err = rollcage_lb::start(LbConfig {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: TOKEN.to_owned(),
        settings: Settings::default(),
        groups: vec![GroupSeed {
            name: "blue".to_owned(),
            health_check: None,
            servers: Vec::new(),
        }],
        services: vec![ServiceSeed {
            name: "app".to_owned(),
            listen: taken_addr.clone(),
            group: "blue".to_owned(),
        }],
    })
    .await
    .err()
    .ok_or("start should fail")?;
    let msg = err.to_string();
    assert!(msg.contains("`app`") && msg.contains(&taken_addr), "{msg}");
    Ok(())
}
