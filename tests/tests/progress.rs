//! Live progress: `rollcage deploy --wait` and `rollcage watch ID` follow the coordinator's event stream (one plain
//! timestamped line per step change when stdout is not a terminal, then the final table) instead of polling.
//! The CLI talks to the coordinator through a recording TCP relay, so the test sees which requests it sent.

use anyhow::Context;
use rollcage_e2e::{Fleet, push_v1_and_failing_v2, write_bundle};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A rolling deployment's events, by name, from the one plan.
fn events() -> impl Iterator<Item = &'static str> {
    rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
        .per_instance
        .iter()
        .map(|e| e.name())
}

/// A TCP relay to `target` that keeps every byte the clients sent.
struct Relay {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { break };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(mut from_client), Ok(mut to_server)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        log.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(Self { addr, sent })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests start with `request_line_prefix` (e.g. `GET /v1/deployments/d-1 `).
    fn count(&self, request_line_prefix: &str) -> usize {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&sent)
            .matches(request_line_prefix)
            .count()
    }
}

/// `2026-11-26T16:20:01Z rest` → `rest`, checking the timestamp's shape.
fn untimed(line: &str) -> Option<&str> {
    let (ts, rest) = line.split_once(' ')?;
    let b = ts.as_bytes();
    let shape = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && ts.chars().filter(char::is_ascii_digit).count() == 14;
    shape.then_some(rest)
}

/// The plain progress lines (timestamp removed) of `out`, up to the final table.
fn progress_lines(out: &str) -> Vec<&str> {
    out.lines().map_while(untimed).collect()
}

/// `i0 Install succeeded (0.1s)` → true for instance `i0`, event `Install`, state `succeeded`.
fn is_step_line(line: &str, instance: &str, event: &str, state: &str) -> bool {
    line.strip_prefix(&format!("{instance} {event} {state}"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(" ("))
}

#[test]
fn deploy_wait_prints_a_line_per_step_change_and_the_final_table_from_one_stream()
-> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let result = (|| {
        fleet.setup("shop", "web", "1", false)?;
        let b1 = fleet.dir.path().join("v1");
        write_bundle(&b1, "v1", "0.1", "")?;
        let r1 = fleet.push("shop", &b1)?;
        let relay = Relay::start(fleet.coordinator.addr)?;
        let url = relay.url();
        let (code, out) = fleet.cli(&[
            "deploy",
            "--app",
            "shop",
            "--group",
            "web",
            "--revision",
            &r1,
            "--wait",
            "--coordinator",
            &url,
        ])?;
        assert_eq!(code, 0, "{out}");
        let lines = progress_lines(&out);
        let first = lines.first().context("no progress line")?;
        let id = first
            .strip_prefix("deployment ")
            .and_then(|s| s.split_whitespace().next())
            .with_context(|| format!("first line `{first}` does not name the deployment"))?
            .to_owned();
        assert!(
            first.contains(&format!("of shop/web revision {r1} (2 instance(s))")),
            "{out}"
        );
        for instance in ["i0", "i1"] {
            let mut ended = Vec::new();
            for event in events() {
                // ApplicationStop has nothing to stop on a first deployment: skipped.
                let done: Vec<&&str> = lines
                    .iter()
                    .filter(|l| {
                        is_step_line(l, instance, event, "succeeded")
                            || is_step_line(l, instance, event, "skipped")
                    })
                    .collect();
                assert_eq!(
                    done.len(),
                    1,
                    "one `{instance} {event} succeeded|skipped` line:\n{out}"
                );
                let running = lines
                    .iter()
                    .filter(|l| is_step_line(l, instance, event, "running"))
                    .count();
                assert!(
                    running <= 1,
                    "at most one `{instance} {event} running` line:\n{out}"
                );
                ended.push(lines.iter().position(|l| l == done[0]));
            }
            assert!(
                ended.is_sorted(),
                "{instance}'s steps end in plan order:\n{out}"
            );
        }
        // Every line is a change: none repeats.
        let mut unique = lines.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), lines.len(), "repeated lines:\n{out}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("deployment {id} succeeded"))),
            "{out}"
        );
        // The final table.
        let table = &out[out
            .find(&format!("\ndeployment {id}:"))
            .context("no final table")?..];
        assert!(
            table.contains("succeeded (deployment completed successfully)"),
            "{table}"
        );
        for instance in ["i0", "i1"] {
            assert!(
                table.lines().any(|l| l.trim_start().starts_with(instance)
                    && l.contains("succeeded")
                    && l.contains("7/7 steps")),
                "{instance} in the table:\n{table}"
            );
        }
        // Followed over the event stream, once; never polled.
        assert_eq!(
            relay.count(&format!("GET /v1/deployments/{id}/events ")),
            1,
            "one stream"
        );
        assert_eq!(
            relay.count(&format!("GET /v1/deployments/{id} ")),
            0,
            "no polling"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("kept for inspection: {}", fleet.keep().display());
    }
    result
}

#[test]
fn watch_of_a_failing_validate_service_exits_2_names_the_failure_and_follows_the_rollback()
-> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let result = (|| {
        fleet.setup("shop", "web", "1", true)?;
        let (r1, r2) = push_v1_and_failing_v2(&fleet, "i1", "0.05")?;
        let (code, _) = fleet.deploy_wait("shop", "web", &r1)?;
        assert_eq!(code, 0);
        let id = fleet.deploy("shop", "web", &r2)?;
        let relay = Relay::start(fleet.coordinator.addr)?;
        let url = relay.url();
        let (code, out) = fleet.cli(&["watch", &id, "--coordinator", &url])?;
        assert_eq!(code, 2, "watch exits 2 for a failed deployment:\n{out}");
        let lines = progress_lines(&out);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("i1 ValidateService failed (") && l.contains("exit code 3")),
            "the failed instance and event are named:\n{out}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("deployment {id} failed"))),
            "{out}"
        );
        let rb = fleet
            .status(&id)?
            .rollback_deployment
            .context("no automatic rollback")?;
        assert!(
            lines
                .iter()
                .any(|l| *l == format!("deployment {id} failed; following its rollback {rb}")),
            "{out}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("deployment {rb} succeeded"))),
            "the rollback is followed to its end:\n{out}"
        );
        // The final tables: the failed deployment with its failed step and log tail, then its rollback.
        assert!(
            out.contains(&format!("deployment {id}: shop/web revision {r2} — failed")),
            "{out}"
        );
        assert!(
            out.contains("ValidateService Failed:") && out.contains("health check failed"),
            "{out}"
        );
        assert!(
            out.contains(&format!("deployment {rb} (rollback of {id}, automatic)")),
            "{out}"
        );
        assert_eq!(relay.count(&format!("GET /v1/deployments/{id}/events ")), 1);
        assert_eq!(relay.count(&format!("GET /v1/deployments/{rb}/events ")), 1);
        assert_eq!(
            relay.count("GET /v1/deployments/"),
            2,
            "only the two streams"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("kept for inspection: {}", fleet.keep().display());
    }
    result
}

#[test]
fn watch_carries_on_across_a_coordinator_restart() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(2)?;
    let result = (|| {
        fleet.setup("shop", "web", "1", false)?;
        let b1 = fleet.dir.path().join("v1");
        write_bundle(&b1, "v1", "0.3", "")?;
        let r1 = fleet.push("shop", &b1)?;
        let id = fleet.deploy("shop", "web", &r1)?;
        let out_path = fleet.dir.path().join("watch.out");
        let mut child = std::process::Command::new(rollcage_e2e::rollcage_bin()?)
            .args(["watch", &id])
            .env("ROLLCAGE_COORDINATOR", fleet.coordinator.url())
            .env("ROLLCAGE_TOKEN", &fleet.coordinator.admin_token)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(out_path.with_extension("err"))?)
            .spawn()?;
        let started = Instant::now();
        let code = (|| {
            // Restart the coordinator once the watch has shown i0's first hook running.
            while !std::fs::read_to_string(&out_path)?.contains("i0 BeforeInstall running") {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "watch showed nothing"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            fleet
                .coordinator
                .kill_and_restart(Duration::from_millis(500))?;
            loop {
                if let Some(status) = child.try_wait()? {
                    return Ok(status.code());
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(120),
                    "watch did not end"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })();
        if code.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let code = code?;
        let out = std::fs::read_to_string(&out_path)?;
        assert_eq!(code, Some(0), "{out}");
        let lines = progress_lines(&out);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("lost the progress stream of {id}"))),
            "{out}"
        );
        assert!(
            lines.contains(&format!("reconnected; following deployment {id}").as_str()),
            "{out}"
        );
        for instance in ["i0", "i1"] {
            for event in events() {
                let ended = lines
                    .iter()
                    .filter(|l| {
                        is_step_line(l, instance, event, "succeeded")
                            || is_step_line(l, instance, event, "skipped")
                    })
                    .count();
                assert_eq!(
                    ended, 1,
                    "`{instance} {event}` ended once, across the restart:\n{out}"
                );
            }
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("deployment {id} succeeded"))),
            "{out}"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("kept for inspection: {}", fleet.keep().display());
    }
    result
}
