//! A client given several coordinator URLs, against real HTTP servers on loopback: a port nothing listens on, a
//! coordinator that answers 503 to everything, one that drops every connection once it has read the request,
//! and a good one. Each server counts the requests it gets, so the tests see where each call went: past a refused
//! port, past a 503 for a GET (and the agent's idempotent POSTs), sticky on the good one afterwards, an error
//! naming every URL when all fail, and a POST that is not safe to repeat never sent twice.

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rollcage_client::{Client, ClientError, Trust};
use rollcage_proto::access::{Role, WhoAmI};
use rollcage_proto::wire::{Application, CreateApplication, PollRequest, PollResponse};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Requests a test server received.
#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

impl Hits {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A URL nothing listens on (a port bound, then freed).
fn closed_url() -> TestResult<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    drop(l);
    Ok(format!("http://{addr}"))
}

async fn serve(app: Router) -> TestResult<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// A coordinator that answers every request 503 (its database is away), in the API's error shape.
async fn sick() -> TestResult<(String, Hits)> {
    let hits = Hits::default();
    let h = hits.clone();
    let app = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.0.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":{"code":"unavailable","message":"database unavailable"}}"#,
            )
        }
    });
    Ok((serve(app).await?, hits))
}

/// A coordinator that answers `whoami`, polls and application creation.
async fn good() -> TestResult<(String, Hits)> {
    use axum::routing::{get, post};
    let hits = Hits::default();
    let count = |h: &Hits| {
        h.0.fetch_add(1, Ordering::SeqCst);
    };
    let (h1, h2, h3) = (hits.clone(), hits.clone(), hits.clone());
    let app = Router::new()
        .route(
            "/v1/whoami",
            get(move || async move {
                count(&h1);
                axum::Json(WhoAmI {
                    name: "bootstrap".into(),
                    role: Role::Admin,
                    apps: vec![],
                })
            }),
        )
        .route(
            "/v1/agent/poll",
            post(move || async move {
                count(&h2);
                axum::Json(PollResponse { command: None })
            }),
        )
        .route(
            "/v1/applications",
            post(move || async move {
                count(&h3);
                axum::Json(Application {
                    name: "web".into(),
                    created_at_ms: 1,
                })
                .into_response()
            }),
        );
    Ok((serve(app).await?, hits))
}

/// A coordinator that reads each request whole, then closes the connection without an answer (it died while
/// handling it).
async fn dropping() -> TestResult<(String, Hits)> {
    let hits = Hits::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Up to the end of the head and a body as long as it says (the tests send small ones).
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                h.0.fetch_add(1, Ordering::SeqCst);
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok((format!("http://{addr}"), hits))
}

fn client(urls: &[&str]) -> TestResult<Client> {
    Ok(Client::with_bases(
        urls,
        Some("t".into()),
        &Trust::default(),
    )?)
}

#[tokio::test]
async fn a_get_moves_past_a_refused_port_and_a_503_then_stays_on_the_good_one() -> TestResult {
    let closed = closed_url()?;
    let (sick, sick_hits) = sick().await?;
    let (good, good_hits) = good().await?;
    let c = client(&[&closed, &sick, &good])?;
    assert_eq!(c.base(), closed);

    let me = c.whoami().await?;
    assert_eq!(me.name, "bootstrap");
    assert_eq!((sick_hits.get(), good_hits.get()), (1, 1));
    assert_eq!(
        c.base(),
        good,
        "the client stays on the coordinator that answered"
    );

    // Sticky, for this client and its clones with another token: nothing more goes to the others.
    let other = c.with_token(Some("u".into()));
    for _ in 0..5 {
        c.whoami().await?;
        other.whoami().await?;
    }
    assert_eq!((sick_hits.get(), good_hits.get()), (1, 11));
    Ok(())
}

#[tokio::test]
async fn the_agents_poll_is_repeated_elsewhere_after_a_503_and_a_dropped_connection() -> TestResult
{
    let (sick, sick_hits) = sick().await?;
    let (dropping, drop_hits) = dropping().await?;
    let (good, good_hits) = good().await?;
    let c = client(&[&dropping, &sick, &good])?;
    let poll = PollRequest { wait_ms: Some(0) };
    let answer = c.poll(&poll).await?;
    assert!(answer.command.is_none());
    assert_eq!(
        (drop_hits.get(), sick_hits.get(), good_hits.get()),
        (1, 1, 1)
    );
    assert_eq!(c.base(), good);
    Ok(())
}

#[tokio::test]
async fn a_post_that_is_not_safe_to_repeat_is_not_sent_again_after_a_5xx_or_a_broken_exchange()
-> TestResult {
    let (sick, sick_hits) = sick().await?;
    let (good, good_hits) = good().await?;
    let req = CreateApplication { name: "web".into() };

    let c = client(&[&sick, &good])?;
    let err = c
        .create_application(&req)
        .await
        .err()
        .ok_or("the 503 was not returned")?;
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "{err}");
    assert!(
        matches!(err, ClientError::Status { .. }),
        "the coordinator's own answer, not a list: {err}"
    );
    assert_eq!((sick_hits.get(), good_hits.get()), (1, 0));
    // The caller decides whether to send it again; if it does, it goes to the next coordinator.
    assert_eq!(c.base(), good);
    c.create_application(&req).await?;
    assert_eq!((sick_hits.get(), good_hits.get()), (1, 1));

    let (dropping, drop_hits) = dropping().await?;
    let c = client(&[&dropping, &good])?;
    let err = c
        .create_application(&req)
        .await
        .err()
        .ok_or("the dropped connection was not returned")?;
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");
    assert_eq!((drop_hits.get(), good_hits.get()), (1, 1));

    // A POST that reached no coordinator at all (a refused port) is safe to send to the next one.
    let c = client(&[&closed_url()?, &good])?;
    let app = c.create_application(&req).await?;
    assert_eq!(app.name, "web");
    assert_eq!(good_hits.get(), 2);
    Ok(())
}

#[tokio::test]
async fn when_every_coordinator_fails_the_error_names_each_url_tried() -> TestResult {
    let closed = closed_url()?;
    let (sick, sick_hits) = sick().await?;
    let c = client(&[&closed, &sick])?;
    let err = c
        .whoami()
        .await
        .err()
        .ok_or("a call succeeded with no good coordinator")?;
    let ClientError::Failover { tried } = &err else {
        return Err(format!("expected the list of attempts, got {err}").into());
    };
    assert_eq!(tried.len(), 2);
    assert!(matches!(tried[0], ClientError::Transport { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{closed}/v1/whoami")),
        "names {closed}: {text}"
    );
    assert!(
        text.contains(&format!("{sick}/v1/whoami")),
        "names {sick}: {text}"
    );
    // The last attempt decides: a 503 may be retried later.
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(err.is_retryable());
    assert_eq!(sick_hits.get(), 1, "one round over the list, no more");

    // Each request starts at the sticky one and goes round once: a second call costs each server one hit.
    let _ = c.whoami().await;
    assert_eq!(sick_hits.get(), 2);
    Ok(())
}

#[tokio::test]
async fn one_url_keeps_working_as_before_and_a_list_is_one_string_or_several() -> TestResult {
    let (good, good_hits) = good().await?;
    let single = Client::new(&good, Some("t".into()), None)?;
    assert_eq!(single.bases(), std::slice::from_ref(&good));
    single.whoami().await?;
    let closed = closed_url()?;
    let joined = Client::new(&format!("{closed}, {good}/"), Some("t".into()), None)?;
    assert_eq!(joined.bases(), [closed.clone(), good.clone()]);
    joined.whoami().await?;
    assert_eq!(good_hits.get(), 2);
    // One refused URL alone: its own error, not a list.
    let err = Client::new(&closed, None, None)?
        .whoami()
        .await
        .err()
        .ok_or("a closed port answered")?;
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");
    assert!(Client::new(&format!("{good},"), None, None).is_err());
    Ok(())
}
