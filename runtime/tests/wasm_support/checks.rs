//! The sandbox checks both kinds of wasm hook must pass, written once. Each check takes the [`Guests`] of one
//! build — the test programs as preview-1 modules ([`MODULES`], run by `wasm_hooks.rs`) or, built from the same
//! source for `wasm32-wasip2`, as WASI 0.2 components ([`COMPONENTS`], run by `wasm_components.rs`) — and asserts
//! the same outcome and message for both. What only one kind has (preview-1 exit codes 126+, `wasi:sockets`,
//! `exit-with-code`) stays in that kind's file.

use super::{Harness, MIB, TestResult, args, reset_peak_rss, rss, serve};
use rollcage_hooks_artifacts as artifacts;
use rollcage_proto::{HookOutcome, HookStatus, SandboxSpec};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The test programs of one build (see `hooks-examples/guests/test-programs`).
pub struct Guests {
    pub spin: &'static str,
    pub sleep: &'static str,
    pub alloc: &'static str,
    pub fs: &'static str,
    pub env: &'static str,
    pub http: &'static str,
    pub net: &'static str,
    pub trap: &'static str,
}

/// `wasm32-wasip1`: core modules.
pub const MODULES: Guests = Guests {
    spin: artifacts::TEST_SPIN,
    sleep: artifacts::TEST_SLEEP,
    alloc: artifacts::TEST_ALLOC,
    fs: artifacts::TEST_FS,
    env: artifacts::TEST_ENV,
    http: artifacts::TEST_HTTP,
    net: artifacts::TEST_NET,
    trap: artifacts::TEST_TRAP,
};

/// `wasm32-wasip2`: command components.
pub const COMPONENTS: Guests = Guests {
    spin: artifacts::P2_TEST_SPIN,
    sleep: artifacts::P2_TEST_SLEEP,
    alloc: artifacts::P2_TEST_ALLOC,
    fs: artifacts::P2_TEST_FS,
    env: artifacts::P2_TEST_ENV,
    http: artifacts::P2_TEST_HTTP,
    net: artifacts::P2_TEST_NET,
    trap: artifacts::P2_TEST_TRAP,
};

/// A 1 s timeout ends the run between 1 s and this (compile time excluded: the program is precompiled first).
const TIMEOUT_SLACK: Duration = Duration::from_secs(2);

/// Run a precompiled `wasm` with a 1 s timeout; the outcome must be that timeout, reached in time.
async fn times_out(
    h: &Harness,
    wasm: &str,
    sandbox: SandboxSpec,
) -> Result<HookOutcome, Box<dyn std::error::Error>> {
    h.hooks
        .precompile_file(&h.revision.join(h.install(wasm)?))
        .await?;
    let t = Instant::now();
    let out = h.run(wasm, 1, sandbox).await?;
    let took = t.elapsed();
    assert_eq!(
        out.status,
        HookStatus::TimedOut { timeout_secs: 1 },
        "{}",
        out.log_tail
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(1) + TIMEOUT_SLACK,
        "took {took:?}"
    );
    Ok(out)
}

pub async fn an_infinite_loop_ends_at_the_timeout(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    times_out(&h, g.spin, SandboxSpec::default()).await?;
    assert!(
        h.log_text().contains("wasm hook timed out after 1 s"),
        "{}",
        h.log_text()
    );
    Ok(())
}

/// The guest sleeps in a host call (`poll_oneoff` / `wasi:clocks` `subscribe-duration` + `pollable.block`).
pub async fn a_guest_blocked_in_a_host_call_ends_at_the_timeout(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    let out = times_out(&h, g.sleep, SandboxSpec::default()).await?;
    assert!(
        out.log_tail.contains("sleeping") && !out.log_tail.contains("woke up"),
        "{}",
        out.log_tail
    );
    Ok(())
}

pub async fn allocation_past_memory_mb_is_the_memory_limit_outcome_and_rss_stays_bounded(
    g: &Guests,
) -> TestResult {
    let h = Harness::new()?;
    h.hooks
        .precompile_file(&h.revision.join(h.install(g.alloc)?))
        .await?;
    let (before, _) = rss();
    reset_peak_rss()?;
    let sandbox = SandboxSpec {
        memory_mb: 32,
        ..SandboxSpec::default()
    };
    let out = h.run(g.alloc, 30, sandbox).await?;
    let (_, peak) = rss();
    assert_eq!(
        out.status,
        HookStatus::MemoryLimitExceeded { limit_mib: 32 },
        "{}",
        out.log_tail
    );
    assert_eq!(out.status.to_string(), "memory limit of 32 MiB exceeded");
    assert!(
        out.log_tail.contains("allocated 16 MiB") && !out.log_tail.contains("allocated 48 MiB"),
        "{}",
        out.log_tail
    );
    // The guest may touch at most its 32 MiB; allow 24 MiB for the store, wasi tables and log buffers.
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 32 * MIB + 24 * MIB,
        "RSS grew by {} MiB",
        grown / MIB
    );
    Ok(())
}

/// The fs program's answer to an attempt the sandbox refuses: exit 1 after printing `denied: …`.
pub fn assert_denied(out: &HookOutcome, what: &str) {
    assert_eq!(
        out.status,
        HookStatus::Failed { exit_code: 1 },
        "{what}: {}",
        out.log_tail
    );
    assert!(out.log_tail.contains("denied:"), "{what}: {}", out.log_tail);
}

pub async fn a_host_file_outside_the_preopens_cannot_be_read(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    let secret = h.dir.path().join("secret.txt");
    std::fs::write(&secret, "top secret")?;
    for path in ["/etc/hostname", secret.to_str().unwrap_or_default()] {
        let out = h.run(g.fs, 10, args(&["read", path])).await?;
        assert_denied(&out, path);
        assert!(!out.log_tail.contains("top secret"), "{}", out.log_tail);
    }
    Ok(())
}

pub async fn dot_dot_out_of_the_revision_is_denied(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    std::fs::write(h.dir.path().join("beside.txt"), "beside the revision")?;
    for path in ["/revision/../beside.txt", "../beside.txt"] {
        let out = h.run(g.fs, 10, args(&["read", path])).await?;
        assert_denied(&out, path);
        assert!(
            !out.log_tail.contains("beside the revision"),
            "{}",
            out.log_tail
        );
    }
    Ok(())
}

pub async fn writing_into_the_revision_is_denied(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    for path in ["/revision/new.txt", "/revision/data.txt", "data.txt"] {
        let out = h
            .run(g.fs, 10, args(&["write", path, "overwritten"]))
            .await?;
        assert_denied(&out, path);
    }
    assert!(!h.revision.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(h.revision.join("data.txt"))?,
        "revision data\n"
    );
    Ok(())
}

/// The revision is the working directory and `/revision`; what the hook prints reaches the report and scripts.log.
pub async fn the_revision_is_readable_by_absolute_and_relative_path(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    for path in [
        "/revision/data.txt",
        "data.txt",
        "./data.txt",
        "sub/data.txt",
        "/revision/sub/data.txt",
    ] {
        let out = h.run(g.fs, 10, args(&["read", path])).await?;
        assert_eq!(
            out.status,
            HookStatus::Succeeded,
            "{path}: {}",
            out.log_tail
        );
        assert!(
            out.log_tail.contains("ok read 14 bytes: revision data"),
            "{}",
            out.log_tail
        );
    }
    assert!(
        h.log_text().contains("ok read 14 bytes: revision data"),
        "{}",
        h.log_text()
    );
    Ok(())
}

pub async fn only_lifecycle_and_granted_variables_are_visible(g: &Guests) -> TestResult {
    // SAFETY: set before any thread of this test reads the environment; nextest runs each test in its own
    // process.
    unsafe {
        std::env::set_var("ROLLCAGE_TEST_GRANTED", "yes");
        std::env::set_var("ROLLCAGE_TEST_SECRET", "agent-only");
    }
    let h = Harness::new()?;
    let sandbox = SandboxSpec {
        env: vec!["ROLLCAGE_TEST_GRANTED".to_owned()],
        ..args(&[
            "ROLLCAGE_TEST_GRANTED",
            "ROLLCAGE_TEST_SECRET",
            "PATH",
            "HOME",
            "DEPLOYMENT_ID",
            "LIFECYCLE_EVENT",
        ])
    };
    let out = h.run(g.env, 10, sandbox).await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    for expected in [
        "ROLLCAGE_TEST_GRANTED=yes",
        "ROLLCAGE_TEST_SECRET unset",
        "PATH unset",
        "HOME unset",
        "DEPLOYMENT_ID=d-123",
        "LIFECYCLE_EVENT=ValidateService",
        // 5 lifecycle variables, PWD, the granted one.
        "visible variables: 7",
    ] {
        assert!(
            out.log_tail.lines().any(|l| l == expected),
            "missing `{expected}` in:\n{}",
            out.log_tail
        );
    }
    Ok(())
}

pub async fn a_granted_url_is_fetched_and_audited(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    let (base, hits) = serve().await?;
    let sandbox = SandboxSpec {
        http: vec![format!("{base}/")],
        ..args(&[&format!("{base}/health")])
    };
    let out = h.run(g.http, 10, sandbox).await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert!(
        out.log_tail.contains("status 200 body healthy"),
        "{}",
        out.log_tail
    );
    assert!(
        out.log_tail
            .contains(&format!("http GET {base}/health -> 200, 7 bytes allowed")),
        "{}",
        out.log_tail
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    Ok(())
}

/// Refused before anything is sent: another host or port, another path, `..` out of the prefix, another scheme;
/// and with no grant at all.
pub async fn any_other_url_is_refused_naming_the_url_and_the_grant_and_nothing_is_sent(
    g: &Guests,
) -> TestResult {
    let h = Harness::new()?;
    let (base, hits) = serve().await?;
    let (other, other_hits) = serve().await?;
    let grant = format!("{base}/api/");
    for url in [
        format!("{other}/api/x"),
        format!("{base}/admin"),
        format!("{base}/api/../admin"),
        // Same host and port, other scheme: a different grant.
        format!("{}/api/x", base.replace("http://", "https://")),
    ] {
        let sandbox = SandboxSpec {
            http: vec![grant.clone()],
            ..args(&[&url])
        };
        let out = h.run(g.http, 10, sandbox).await?;
        assert_eq!(
            out.status,
            HookStatus::Failed { exit_code: 1 },
            "{url}: {}",
            out.log_tail
        );
        assert!(
            out.log_tail.contains("(not granted) denied"),
            "{url}: {}",
            out.log_tail
        );
    }
    let log = h.log_text();
    assert!(
        log.contains(&format!(
            "GET {other}/api/x is not under the hook's grant; sandbox.http grants [\"{grant}\"]"
        )),
        "{log}"
    );
    assert_eq!(
        (
            hits.load(Ordering::SeqCst),
            other_hits.load(Ordering::SeqCst)
        ),
        (0, 0)
    );
    // No grant at all: refused, and the message says so.
    let out = h
        .run(g.http, 10, args(&[&format!("{base}/health")]))
        .await?;
    assert_eq!(out.status, HookStatus::Failed { exit_code: 1 });
    assert!(
        h.log_text().contains("sandbox.http is empty"),
        "{}",
        h.log_text()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    Ok(())
}

/// A body bigger than the first buffer arrives whole; one over the limit fails the request.
pub async fn large_bodies_arrive_whole_and_oversized_ones_are_refused(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    let (base, _) = serve().await?;
    let fetch = |url: String| SandboxSpec {
        http: vec![format!("{base}/")],
        ..args(&[&url])
    };
    let out = h
        .run(g.http, 10, fetch(format!("{base}/bytes/100000")))
        .await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert!(
        out.log_tail.contains("status 200 bytes 100000"),
        "{}",
        out.log_tail
    );
    let too_big = rollcage_proto::hostcall::HTTP_MAX_BODY_BYTES + 1;
    let out = h
        .run(g.http, 10, fetch(format!("{base}/bytes/{too_big}")))
        .await?;
    assert_eq!(
        out.status,
        HookStatus::Failed { exit_code: 1 },
        "{}",
        out.log_tail
    );
    assert!(
        out.log_tail.contains("body larger than"),
        "{}",
        out.log_tail
    );
    Ok(())
}

/// A server that accepts and never answers: the hook's timeout ends the wait in the host call.
pub async fn a_guest_waiting_on_a_silent_server_ends_at_the_timeout(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let held = tokio::spawn(async move {
        let mut socks = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            socks.push(sock);
        }
    });
    let sandbox = SandboxSpec {
        http: vec![format!("{base}/")],
        ..args(&[&format!("{base}/health")])
    };
    let result = times_out(&h, g.http, sandbox).await;
    held.abort();
    result.map(drop)
}

/// No network but `http` grants: a raw TCP connect to a working local listener and name lookups fail in the guest
/// (`denied: …`, exit 1), and the listener sees nothing. (A preview-1 module has no socket calls at all; a
/// component's `wasi:sockets` calls are answered `access-denied` by the agent.)
pub async fn a_raw_tcp_connect_and_name_lookups_fail_and_the_listener_sees_nothing(
    g: &Guests,
) -> TestResult {
    let h = Harness::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let accepting = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // The listener works: a host connection is counted.
    drop(tokio::net::TcpStream::connect(&addr).await?);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    for a in [
        ["connect", addr.as_str()],
        ["lookup", "localhost"],
        ["lookup", "example.com"],
    ] {
        let out = h.run(g.net, 10, args(&a)).await?;
        assert_denied(&out, &a.join(" "));
        assert!(!out.log_tail.contains("resolves to"), "{}", out.log_tail);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    accepting.abort();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the guest reached the listener"
    );
    Ok(())
}

/// The trap's kind, and the guest's own functions innermost first.
pub async fn a_trap_reports_its_kind_and_the_guest_functions(g: &Guests) -> TestResult {
    let h = Harness::new()?;
    let out = h.run(g.trap, 10, SandboxSpec::default()).await?;
    let HookStatus::Trapped { trap, backtrace } = &out.status else {
        panic!("{:?}", out.status)
    };
    assert_eq!(trap, "UnreachableCodeReached");
    let pos = |name: &str| backtrace.iter().position(|f| f.contains(name));
    let (inner, outer) = (pos("inner_explode"), pos("outer_caller"));
    assert!(
        inner.is_some() && outer.is_some() && inner < outer,
        "{backtrace:?}"
    );
    assert!(out.log_tail.contains("about to trap"), "{}", out.log_tail);
    Ok(())
}
