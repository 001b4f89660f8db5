//! The capability audit of wasm hooks end to end (issue 17, item 4): a real agent runs a deployment whose
//! ValidateService hooks are a WASI 0.2 component fetching a granted URL, a preview-1 module reading a revision
//! file, and a component trying a raw TCP connect to a local listener (denied; the listener sees nothing; the hook
//! fails). `rollcage logs` shows each hook's `[capability]` lines, allowed and denied, and the coordinator's
//! `/metrics` counts them.

use anyhow::Context as _;
use rollcage_e2e::Fleet;
use rollcage_hooks_artifacts as artifacts;
use rollcage_proto::wire::DeploymentStatus;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A health endpoint answering `200 ok` to every request; counts connections.
fn health_server() -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    Ok((port, hits))
}

/// A listener that only counts the connections it accepts.
fn silent_listener() -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for _ in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    Ok((port, hits))
}

#[test]
fn logs_and_metrics_show_each_wasm_hooks_capability_audit() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let result = rollcage_e2e::caught(|| {
        let (health, health_hits) = health_server()?;
        let (closed, closed_hits) = silent_listener()?;
        fleet.setup("shop", "web", "1", false)?;
        let bundle = fleet.dir.path().join("v1");
        std::fs::create_dir_all(bundle.join("hooks"))?;
        for (from, to) in [
            (artifacts::P2_TEST_HTTP, "http.wasm"),
            (artifacts::TEST_FS, "fs.wasm"),
            (artifacts::P2_TEST_NET, "net.wasm"),
        ] {
            std::fs::copy(from, bundle.join("hooks").join(to)).with_context(|| from.to_owned())?;
        }
        let url = format!("http://127.0.0.1:{health}/health");
        std::fs::write(
            bundle.join("appspec.yml"),
            format!(
                "version: 0.0\nos: linux\nhooks:\n  ValidateService:\n\
                 \x20   - location: hooks/http.wasm\n      timeout: 30\n      sandbox:\n\
                 \x20       http: [\"http://127.0.0.1:{health}/\"]\n        args: [\"{url}\"]\n\
                 \x20   - location: hooks/fs.wasm\n      timeout: 30\n      sandbox:\n\
                 \x20       args: [read, /revision/appspec.yml]\n\
                 \x20   - location: hooks/net.wasm\n      timeout: 30\n      sandbox:\n\
                 \x20       args: [connect, \"127.0.0.1:{closed}\"]\n"
            ),
        )?;
        let rev = fleet.push("shop", &bundle)?;
        let id = fleet.deploy("shop", "web", &rev)?;
        let end = fleet.wait_end(&id, Duration::from_secs(120))?;
        assert_eq!(end.status, DeploymentStatus::Failed, "{}", end.message);

        let (code, logs) = fleet.cli(&["logs", &id, "--event", "ValidateService"])?;
        assert_eq!(code, 0, "{logs}");
        let line = |hook: &str, what: &str| {
            let prefix = format!("[capability] ValidateService hooks/{hook}: {what}");
            logs.lines().any(|l| l.contains(&prefix))
        };
        for (hook, what) in [
            (
                "http.wasm",
                format!("http GET {url} -> 200, 2 bytes allowed"),
            ),
            ("http.wasm", "summary: http allowed=1".to_owned()),
            (
                "fs.wasm",
                "file read /revision/appspec.yml allowed".to_owned(),
            ),
            ("net.wasm", "net tcp socket (ipv4) denied".to_owned()),
        ] {
            assert!(line(hook, &what), "`{hook}: {what}` missing in:\n{logs}");
        }
        assert!(
            logs.lines()
                .all(|l| l.starts_with(&format!("[{} ValidateService] ", fleet.agents[0].name))),
            "{logs}"
        );
        assert_eq!(health_hits.load(Ordering::SeqCst), 1, "one granted GET");
        assert_eq!(
            closed_hits.load(Ordering::SeqCst),
            0,
            "the denied connect never reached the listener"
        );

        for (labels, at_least) in [
            (r#"{kind="http",result="allowed"}"#, 1.0),
            (r#"{kind="file",result="allowed"}"#, 1.0),
            (r#"{kind="net",result="denied"}"#, 1.0),
        ] {
            let sample = format!("rollcage_hook_capability_calls_total{labels}");
            let n = fleet.metric(&sample)?.unwrap_or(0.0);
            assert!(n >= at_least, "{sample} = {n}");
        }
        Ok(())
    });
    if result.is_err() {
        eprintln!("fleet kept in {}", fleet.keep().display());
    }
    result
}
