//! Notifications (issue 15): a group's webhooks, with a real coordinator and real agents.
//!
//! Two receivers in the test, both on the group: `up` answers 200 from the start; `down` refuses connections until
//! every deployment has ended (so the engine visibly never waited on it), then answers 503 to its first posts and
//! 200 after. A failing deployment with an automatic rollback must reach both: every post signed with the group's
//! secret (checked here with HMAC-SHA256 independently of the coordinator's code), the events in the order they
//! happened, and the down receiver accepts each event exactly once, in the same order, identified by its delivery
//! id; the API lists every delivery as delivered, the down receiver's with their retries counted.

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use rollcage_e2e::{Fleet, push_v1_and_failing_v2};
use rollcage_proto::webhook::{WebhookBody, WebhookDelivery};
use rollcage_proto::wire::DeploymentStatus;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec-e2e-0123456789abcdef";

/// One post a receiver got.
#[derive(Debug, Clone)]
struct Post {
    delivery: String,
    event: String,
    signature: String,
    body: String,
    answered: u16,
}

/// A webhook receiver: records every post and answers 503 to the first `fail_first` of them, 200 after.
struct Receiver {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    fn start(listener: TcpListener, fail_first: usize) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let left = Arc::new(AtomicUsize::new(fail_first));
        let sink = posts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Err(e) = serve(conn, &sink, &left) {
                    eprintln!("receiver {addr}: {e:#}");
                }
            }
        });
        Ok(Self { addr, posts })
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/rollcage", self.addr)
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// One request per connection (answered with `Connection: close`).
fn serve(conn: TcpStream, sink: &Mutex<Vec<Post>>, left: &AtomicUsize) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("POST /hooks/rollcage ") {
        bail!("unexpected request line {line:?}");
    }
    let mut headers = std::collections::HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .context("no content-length")?
        .parse()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let answered = if left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        503
    } else {
        200
    };
    let header = |k: &str| headers.get(k).cloned().unwrap_or_default();
    sink.lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(Post {
            delivery: header("rollcage-delivery"),
            event: header("rollcage-event"),
            signature: header("rollcage-signature"),
            body: String::from_utf8(body)?,
            answered,
        });
    let reason = if answered == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {answered} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    Ok(())
}

/// Check `Rollcage-Signature: t=…,v1=…` over `body` with the secret, as a receiver would (RustCrypto's HMAC here,
/// not the coordinator's code).
fn signed(signature: &str, body: &str) -> bool {
    let mut t = "";
    let mut v1 = "";
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v,
            Some(("v1", v)) => v1 = v,
            _ => {}
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // A receiver refuses replays: the signed time must be recent.
    if t.parse::<i64>().ok().is_none_or(|t| (now - t).abs() > 300) {
        return false;
    }
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}.{body}").as_bytes());
    hex::decode(v1).is_ok_and(|v| mac.verify_slice(&v).is_ok())
}

/// `(event, deployment, instance)` of each accepted post, in the order accepted.
fn accepted(posts: &[Post]) -> anyhow::Result<Vec<(String, String, String)>> {
    posts
        .iter()
        .filter(|p| p.answered == 200)
        .map(|p| {
            let b: WebhookBody = serde_json::from_str(&p.body)?;
            Ok((
                b.event.name().to_owned(),
                b.deployment_id,
                b.instance.unwrap_or_default(),
            ))
        })
        .collect()
}

fn deliveries(fleet: &Fleet) -> anyhow::Result<Vec<WebhookDelivery>> {
    let (_, out) = fleet.cli(&[
        "group",
        "deliveries",
        "--app",
        "shop",
        "web",
        "--output",
        "json",
    ])?;
    Ok(serde_json::from_str(&out)?)
}

#[test]
fn a_failing_deployment_and_its_rollback_are_announced_signed_in_order_and_once_to_a_receiver_that_was_down()
-> anyhow::Result<()> {
    // Fast retries so the test stays short (the defaults are 10 s doubling to 1 h).
    let fleet = Fleet::start_with_coordinator_flags(
        2,
        &[
            "--webhook-retry-base-ms",
            "100",
            "--webhook-retry-cap-ms",
            "400",
            "--webhook-max-attempts",
            "1000",
        ],
    )?;
    let result = (|| {
        let up = Receiver::start(TcpListener::bind("127.0.0.1:0")?, 0)?;
        // The down receiver's port, closed for now: connections to it are refused.
        let reserved = TcpListener::bind("127.0.0.1:0")?;
        let down_addr = reserved.local_addr()?;
        drop(reserved);
        let down_url = format!("http://{down_addr}/hooks/rollcage");

        let secret_file = fleet.dir.path().join("webhook-secret");
        std::fs::write(&secret_file, format!("{SECRET}\n"))?;
        std::fs::set_permissions(
            &secret_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        fleet.cli(&["app", "create", "shop"])?;
        let secret_path = secret_file.display().to_string();
        let (_, out) = fleet.cli(&[
            "group",
            "create",
            "--app",
            "shop",
            "web",
            "--style",
            "in-place",
            "--concurrency",
            "1",
            "--instances",
            "i0,i1",
            "--auto-rollback",
            "--webhook",
            &up.url(),
            "--webhook",
            &down_url,
            "--webhook-secret-file",
            &secret_path,
            "--output",
            "json",
        ])?;
        assert!(!out.contains(SECRET), "the secret is never returned: {out}");
        let g: serde_json::Value = serde_json::from_str(&out)?;
        assert_eq!(g["webhooks"]["has_secret"], true, "{out}");
        assert_eq!(g["webhooks"]["urls"][1], down_url.as_str(), "{out}");

        let (r1, r2) = push_v1_and_failing_v2(&fleet, "i1", "0")?;
        let (code, d1) = fleet.deploy_wait("shop", "web", &r1)?;
        assert_eq!((code, d1.status), (0, DeploymentStatus::Succeeded));
        let (code, d2) = fleet.deploy_wait("shop", "web", &r2)?;
        assert_eq!((code, d2.status), (2, DeploymentStatus::Failed));
        let rb = d2.rollback_deployment.clone().context("no rollback")?;
        let rbd = fleet.wait_end(&rb, Duration::from_secs(60))?;
        assert_eq!(rbd.status, DeploymentStatus::Succeeded, "{}", rbd.message);

        // Every deployment ended while one receiver refused every connection: nothing waited on it.
        let (d1, d2) = (d1.id, d2.id);
        let s = |x: &str| x.to_owned();
        let expected: Vec<(String, String, String)> = [
            ("deployment.created", &d1, ""),
            ("instance.started", &d1, "i0"),
            ("instance.succeeded", &d1, "i0"),
            ("instance.started", &d1, "i1"),
            ("instance.succeeded", &d1, "i1"),
            ("deployment.succeeded", &d1, ""),
            ("deployment.created", &d2, ""),
            ("instance.started", &d2, "i0"),
            ("instance.succeeded", &d2, "i0"),
            ("instance.started", &d2, "i1"),
            ("instance.failed", &d2, "i1"),
            ("deployment.failed", &d2, ""),
            ("deployment.created", &rb, ""),
            ("instance.started", &rb, "i0"),
            ("deployment.rolled_back", &d2, ""),
            ("instance.succeeded", &rb, "i0"),
            ("instance.started", &rb, "i1"),
            ("instance.succeeded", &rb, "i1"),
            ("deployment.succeeded", &rb, ""),
        ]
        .iter()
        .map(|(e, d, i)| (s(e), s(d), s(i)))
        .collect();

        let wait_for = |r: &Receiver, n: usize| -> anyhow::Result<()> {
            let start = Instant::now();
            while accepted(&r.posts())?.len() < n {
                if start.elapsed() > Duration::from_secs(30) {
                    bail!(
                        "{} of {n} events accepted by {}",
                        accepted(&r.posts())?.len(),
                        r.url()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        };
        wait_for(&up, expected.len())?;
        let up_posts = up.posts();
        assert_eq!(accepted(&up_posts)?, expected);
        for p in &up_posts {
            assert!(signed(&p.signature, &p.body), "bad signature: {p:?}");
            let b: WebhookBody = serde_json::from_str(&p.body)?;
            assert_eq!(
                (b.delivery_id.as_str(), b.event.name()),
                (p.delivery.as_str(), p.event.as_str())
            );
            assert_eq!((b.application.as_str(), b.group.as_str()), ("shop", "web"));
        }
        // What a person needs to act on the failure: the instance, the event, the hook's words; who started what.
        let failed: WebhookBody = up_posts
            .iter()
            .map(|p| serde_json::from_str::<WebhookBody>(&p.body))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|b| b.event.name() == "deployment.failed")
            .context("no deployment.failed")?;
        let failure = failed
            .failure
            .clone()
            .context("no failure in deployment.failed")?;
        assert_eq!(
            (failure.instance.as_str(), failure.event.as_str()),
            ("i1", "ValidateService")
        );
        assert!(
            failure.log_tail.contains("health check failed"),
            "{failure:?}"
        );
        assert_eq!(failed.revision, r2);
        assert_eq!(failed.rollback_deployment.as_deref(), Some(rb.as_str()));
        assert!(failed.created_by.is_some(), "{failed:?}");
        let rb_created: WebhookBody = serde_json::from_str(
            &up_posts
                .iter()
                .find(|p| {
                    p.event == "deployment.created"
                        && p.body.contains(&format!("\"deployment_id\":\"{rb}\""))
                })
                .context("no rollback created")?
                .body,
        )?;
        assert_eq!(
            (rb_created.kind.as_str(), rb_created.created_by.as_deref()),
            ("rollback", Some("system"))
        );
        assert_eq!(rb_created.rollback_of.as_deref(), Some(d2.as_str()));

        // The down receiver comes up, first answering 503 twice: it then gets every event, once, in order.
        let listener = TcpListener::bind(down_addr)?;
        assert!(accepted(&up.posts())?.len() == expected.len());
        let down = Receiver::start(listener, 2)?;
        wait_for(&down, expected.len())?;
        // Give a duplicate time to show up, if one were coming.
        std::thread::sleep(Duration::from_millis(800));
        let down_posts = down.posts();
        assert_eq!(accepted(&down_posts)?, expected);
        let ids: Vec<&str> = down_posts
            .iter()
            .filter(|p| p.answered == 200)
            .map(|p| p.delivery.as_str())
            .collect();
        let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "a delivery accepted twice: {ids:?}"
        );
        assert_eq!(down_posts.iter().filter(|p| p.answered == 503).count(), 2);
        // A retry is the same delivery: same id, same bytes.
        assert_eq!(down_posts[0].delivery, down_posts[2].delivery);
        assert_eq!(down_posts[0].body, down_posts[2].body);
        assert!(down_posts.iter().all(|p| signed(&p.signature, &p.body)));

        // The API says so: all delivered; the down receiver's first event took several attempts.
        let list = deliveries(&fleet)?;
        assert_eq!(list.len(), 2 * expected.len());
        assert!(
            list.iter().all(|d| d.state.name() == "delivered"),
            "{list:?}"
        );
        let first_down = list
            .iter()
            .find(|d| d.url == down_url)
            .context("no delivery to the down receiver")?;
        assert!(first_down.attempts >= 3, "{first_down:?}");
        assert_eq!(first_down.last_status, Some(200));
        let of_d2: Vec<WebhookDelivery> =
            serde_json::from_str(&fleet.admin_get(&format!("/v1/deployments/{d2}/deliveries"))?)?;
        assert_eq!(of_d2.len(), 2 * 7);
        Ok(())
    })();
    if result.is_err() {
        eprintln!("kept for inspection: {}", fleet.keep().display());
    }
    result
}
