//! Operability of the real binary: `--log-format json` lines on stderr, and `agent install` whose config file a
//! real `rollcage agent --config` reads to enroll with a real coordinator.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Kills and reaps the child when dropped, so a failing test leaves no process behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rollcage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rollcage"));
    c.env_remove("ROLLCAGE_LOG")
        .env_remove("ROLLCAGE_LOG_FORMAT")
        .env_remove("ROLLCAGE_COORDINATOR")
        .env_remove("ROLLCAGE_TOKEN")
        .env_remove("ROLLCAGE_TOKEN_FILE")
        .env_remove("ROLLCAGE_ENROLL_TOKEN");
    c
}

/// A coordinator on a free port; its stderr lines arrive on the returned channel.
fn coordinator(
    data: &Path,
    extra: &[&str],
) -> Result<(Proc, String, mpsc::Receiver<String>), Box<dyn std::error::Error>> {
    let mut child = rollcage()
        .args(extra)
        .arg("coordinator")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let line = rx.recv_timeout(Duration::from_secs(30))?;
        if let Some(addr) = line.strip_prefix("rollcage coordinator listening on ") {
            let addr = format!("http://{}", addr.trim());
            // Hand back what came before too, for the log-format test.
            let (tx2, rx2) = mpsc::channel();
            for l in seen {
                tx2.send(l)?;
            }
            std::thread::spawn(move || {
                while let Ok(l) = rx.recv() {
                    if tx2.send(l).is_err() {
                        break;
                    }
                }
            });
            return Ok((proc, addr, rx2));
        }
        seen.push(line);
    }
    Err("coordinator did not report its address".into())
}

#[test]
fn log_format_json_writes_one_json_object_per_stderr_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (proc, _addr, rx) = coordinator(&dir.path().join("data"), &["--log-format", "json"])?;
    // The readiness line is printed after the "coordinator listening" event; give the log a moment, then stop.
    std::thread::sleep(Duration::from_millis(300));
    drop(proc);
    let lines: Vec<String> = rx.try_iter().collect();
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("stderr line is not JSON ({e}): {line}"))?;
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        messages.iter().any(|m| m == "coordinator listening"),
        "{lines:?}"
    );
    Ok(())
}

#[test]
fn log_format_text_is_not_json() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (proc, _addr, rx) = coordinator(&dir.path().join("data"), &[])?;
    std::thread::sleep(Duration::from_millis(300));
    drop(proc);
    let lines: Vec<String> = rx.try_iter().collect();
    let line = lines
        .iter()
        .find(|l| l.contains("coordinator listening"))
        .ok_or_else(|| format!("{lines:?}"))?;
    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_err(),
        "{line}"
    );
    Ok(())
}

#[test]
fn installed_config_is_what_the_agent_runs_with() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let (_coord, url, _rx) = coordinator(&data, &[])?;
    let etc = dir.path().join("etc");
    let units = dir.path().join("units");
    let root = dir.path().join("root");
    let out = rollcage()
        .args(["agent", "install", "--coordinator", &url, "--name", "svc-1"])
        .arg("--enroll-token-file")
        .arg(data.join("enroll-token"))
        .arg("--root")
        .arg(&root)
        .arg("--unit-dir")
        .arg(&units)
        .arg("--config-dir")
        .arg(&etc)
        .args(["--binary", "/usr/local/bin/rollcage", "--var", "TIER=web"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = std::fs::read_to_string(units.join("rollcage-agent.service"))?;
    assert!(unit.contains(&format!(
        "ExecStart=/usr/local/bin/rollcage agent --config {}",
        etc.join("agent.toml").display()
    )));

    // Run the agent the way the unit does (only the binary differs).
    let _agent = Proc(
        rollcage()
            .arg("agent")
            .arg("--config")
            .arg(etc.join("agent.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = rollcage()
            .args(["instances", "--output", "json", "--coordinator", &url])
            .arg("--token-file")
            .arg(data.join("admin-token"))
            .output()?;
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let names: Vec<&str> = listed
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect())
            .unwrap_or_default();
        // It used the root from the config: its own token is kept there (written just after enrolling).
        if names.contains(&"svc-1") && root.join("agent").join("token").exists() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("agent never enrolled; instances: {listed}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// A fleet command that cannot be carried out exits 1, never 2 or 3 (those say how a waited-for deployment ended).
#[test]
fn a_fleet_command_that_cannot_be_carried_out_exits_1() -> TestResult {
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    // Nothing listens there once the listener is dropped.
    let out = rollcage()
        .args(["status", "d-0000", "--coordinator"])
        .arg(format!("http://{unreachable}"))
        .env("ROLLCAGE_TOKEN", "t")
        .output()?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = rollcage()
        .args([
            "deploy",
            "--app",
            "a",
            "--group",
            "g",
            "--revision",
            "r-1",
            "--wait",
        ])
        .args(["--coordinator", &format!("http://{unreachable}")])
        .env("ROLLCAGE_TOKEN", "t")
        .output()?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("rollcage: "), "{stderr}");
    Ok(())
}

/// No secret on a command line: the flags that once took one are refused with the way that replaced them, without
/// echoing the secret; the agent also refuses the enrollment token in its environment.
#[test]
fn secrets_on_the_command_line_are_refused() -> TestResult {
    let cases: [&[&str]; 3] = [
        &[
            "instances",
            "--coordinator",
            "http://127.0.0.1:9",
            "--token",
            "s3cr3t-value",
        ],
        &[
            "agent",
            "--coordinator",
            "http://127.0.0.1:9",
            "--root",
            "/nonexistent",
            "--name",
            "a",
            "--enroll-token",
            "s3cr3t-value",
        ],
        &[
            "agent",
            "install",
            "--coordinator",
            "http://127.0.0.1:9",
            "--name",
            "a",
            "--enroll-token",
            "s3cr3t-value",
        ],
    ];
    for args in cases {
        let out = rollcage().args(args).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains("is refused") && stderr.contains("-file"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("s3cr3t-value"),
            "{args:?} echoed the secret: {stderr}"
        );
    }
    let out = rollcage()
        .args([
            "agent",
            "--coordinator",
            "http://127.0.0.1:9",
            "--root",
            "/nonexistent",
            "--name",
            "a",
        ])
        .env("ROLLCAGE_ENROLL_TOKEN", "s3cr3t-value")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ROLLCAGE_ENROLL_TOKEN accepted: {stderr}"
    );
    assert!(stderr.contains("--enroll-token-file"), "{stderr}");
    Ok(())
}
