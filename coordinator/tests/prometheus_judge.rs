//! `[[canary.prometheus]]` checks read from a real Prometheus (Debian's `prometheus`, installed by
//! `scripts/setup.sh`) that scrapes a test app every second: the reader gets the app's current value, follows it
//! when it changes, and says why when there is no one number (a refused query, no series, several series, nothing
//! listening) — each of which the judge fails the interval on.

#![allow(
    clippy::unwrap_used,
    reason = "a reading that must be an error: the test fails showing its value"
)]

use rollcage_coordinator::engine::prometheus::PromReader;
use rollcage_proto::canary::PrometheusCheck;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test app whose `/metrics` says `app_errors <value>`.
fn app(value: Arc<AtomicU64>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = format!(
                "# TYPE app_errors gauge\napp_errors {}\n",
                value.load(Ordering::SeqCst)
            );
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    Ok(port)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn check(url: &str, query: &str) -> PrometheusCheck {
    PrometheusCheck {
        url: url.to_owned(),
        query: query.to_owned(),
        max: 0.5,
    }
}

/// Poll `query` until it reads `want`, or fail with the last reading.
async fn wait_for(reader: &PromReader, url: &str, query: &str, want: f64) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = reader.read(&check(url, query)).await;
        if got == Ok(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{query}: wanted {want}, last reading {got:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn checks_read_a_real_prometheus_scraping_an_app() -> TestResult {
    let value = Arc::new(AtomicU64::new(3));
    let app_port = app(value.clone())?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{app_port}']\n"
        ),
    )?;
    let prom_port = free_port()?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("starting `prometheus` (scripts/setup.sh installs Debian's package): {e}")
        })?;
    let _server = Server(child);
    let url = format!("http://127.0.0.1:{prom_port}");
    let reader = PromReader::new();

    wait_for(&reader, &url, "max(app_errors)", 3.0).await?;
    value.store(9, Ordering::SeqCst);
    wait_for(&reader, &url, "max(app_errors)", 9.0).await?;
    // A scalar answer too.
    assert_eq!(
        reader
            .read(&check(&url, "scalar(max(app_errors)) * 2"))
            .await,
        Ok(18.0)
    );
    // Several checks at once, in the config's order.
    let both = reader
        .read_all(
            &[check(&url, "max(app_errors)"), check(&url, "vector(0.25)")],
            std::time::Duration::from_secs(5),
        )
        .await;
    assert_eq!(both, vec![Ok(9.0), Ok(0.25)]);

    let refused = reader
        .read(&check(&url, "max(app_errors"))
        .await
        .unwrap_err();
    assert!(
        refused.contains("HTTP 400") && refused.contains("bad_data"),
        "{refused}"
    );
    let none = reader
        .read(&check(&url, "max(no_such_metric)"))
        .await
        .unwrap_err();
    assert!(
        none.contains("no series") && none.contains("or vector(0)"),
        "{none}"
    );
    let many = reader
        .read(&check(&url, "up or vector(1)"))
        .await
        .unwrap_err();
    assert!(many.contains("returned 2 series"), "{many}");
    let nan = reader
        .read(&check(&url, "vector(0) / vector(0)"))
        .await
        .unwrap_err();
    assert!(nan.contains("NaN"), "{nan}");

    let down = format!("http://127.0.0.1:{}", free_port()?);
    let unreachable = reader.read(&check(&down, "up")).await.unwrap_err();
    assert!(unreachable.starts_with(&down), "{unreachable}");
    Ok(())
}
