//! The delivery task against a receiver in the test: a delivery that keeps failing is retried on the configured
//! schedule, given up after its last attempt, and the endpoint's next event then goes out; every post is signed.

#![allow(clippy::unwrap_used, reason = "test setup")]

use super::{Retry, deliver, sign};
use crate::state::Settings;
use crate::store::{apps, webhooks as outbox};
use crate::testkit::{TestResult, add_group, deploy, group, seed};
use rollcage_proto::webhook::{DeliveryState, WebhookBody};
use rollcage_proto::wire::{Concurrency, DeploymentStyle};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec-unit-0123456789abcdef";

/// (delivery header, signature header, body, status answered) of each post.
type Posts = Arc<Mutex<Vec<(String, String, String, u16)>>>;

/// A receiver answering 500 to its first `fail_first` posts, 200 after.
async fn receiver(fail_first: usize) -> TestResult<(String, Posts)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let posts: Posts = Arc::default();
    let sink = posts.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then the body by its length.
            let (head, body) = loop {
                let Ok(n) = conn.read(&mut chunk).await else {
                    break (String::new(), String::new());
                };
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_owned(), body.to_owned());
                    }
                }
            };
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let status = {
                let mut posts = sink.lock().unwrap();
                let status = if posts.len() < fail_first { 500 } else { 200 };
                posts.push((
                    header("rollcage-delivery"),
                    header("rollcage-signature"),
                    body,
                    status,
                ));
                status
            };
            let reason = if status == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let _ = conn
                .write_all(format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
        }
    });
    Ok((url, posts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_keeps_failing_is_given_up_and_the_endpoint_s_next_event_goes_out()
-> TestResult {
    let (url, posts) = receiver(3).await?;
    let store = crate::testkit::store()?;
    seed(&store);
    add_group(
        &store,
        &group(
            ("g-1", "web", DeploymentStyle::InPlace),
            Concurrency::Count(1),
            false,
            &["a"],
            None,
        ),
    );
    store.write(|tx| {
        outbox::set_config(tx, "g-1", Some(std::slice::from_ref(&url)), Some(SECRET))
    })?;
    let settings = Settings {
        webhook_retry: Retry {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
            max_attempts: 3,
        },
        ..crate::testkit::settings()
    };
    let st = crate::testkit::state_over(store, settings)?;
    let task = tokio::spawn(deliver::run(st.clone()));
    // Created and the first instance started: two events for the one endpoint.
    let id = deploy(&st.store, "web", &format!("r-{}", "a".repeat(16)))?;
    let ended = |list: &[rollcage_proto::webhook::WebhookDelivery]| {
        list.len() == 2 && list.iter().all(|d| d.state != DeliveryState::Pending)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let list = loop {
        let list = st.store.read(|c| outbox::of_deployment(c, &id))?;
        if ended(&list) {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries did not end: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    let (first, second) = (&list[0], &list[1]);
    assert_eq!(first.event.name(), "deployment.created");
    assert_eq!((first.state, first.attempts), (DeliveryState::Failed, 3));
    assert_eq!(first.last_status, Some(500));
    assert_eq!(
        first.last_error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    assert_eq!(second.event.name(), "instance.started");
    assert_eq!(
        (second.state, second.attempts, second.last_status),
        (DeliveryState::Delivered, 1, Some(200))
    );
    let posts = posts.lock().unwrap().clone();
    let got: Vec<(&str, u16)> = posts.iter().map(|(d, _, _, s)| (d.as_str(), *s)).collect();
    assert_eq!(
        got,
        [
            (first.id.as_str(), 500),
            (first.id.as_str(), 500),
            (first.id.as_str(), 500),
            (second.id.as_str(), 200)
        ],
        "retried, given up, then the next event"
    );
    for (delivery, signature, body, _) in &posts {
        assert!(
            sign::verify(SECRET.as_bytes(), signature, body.as_bytes()),
            "{signature} {body}"
        );
        let b: WebhookBody = serde_json::from_str(body)?;
        assert_eq!(&b.delivery_id, delivery);
        assert_eq!(b.deployment_id, id);
    }
    assert_eq!(posts[0].2, posts[2].2, "a retry sends the same body");
    // The group's deletion gives up what it had not delivered (nothing here) and drops the secret.
    st.store.write(|tx| apps::delete_group(tx, "g-1"))?;
    assert!(st.store.read(|c| outbox::config(c, "g-1"))?.is_empty());
    Ok(())
}
