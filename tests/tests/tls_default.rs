//! TLS by default off loopback: a coordinator listening on a non-loopback address (a second address on `lo`, from
//! TEST-NET-1, added by the test and removed when it ends) with no TLS configuration makes its own CA, serves TLS
//! and prints the CA's fingerprint; an agent and the CLI that pin that fingerprint work, ones with another
//! fingerprint are refused naming both; plain HTTP takes `--insecure-http`; the CA survives a restart. Needs root and
//! `ip` (iproute2), like CI.

use anyhow::{Context, bail};
use rollcage_e2e::{Coordinator, Fleet, Proc, rollcage_bin, write_bundle};
use rollcage_proto::wire::DeploymentStatus;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fingerprint no coordinator has (the SHA-256 of nothing).
const WRONG: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

/// A TEST-NET-1 address on `lo`, removed on drop if this test added it. One per test process (parallel runs of
/// the tests do not take each other's away).
struct TestAddr {
    ip: Ipv4Addr,
    added: bool,
}

impl TestAddr {
    fn add() -> anyhow::Result<Self> {
        let last = u8::try_from(std::process::id() % 200 + 20)?;
        let ip = Ipv4Addr::new(192, 0, 2, last);
        let out = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .output()
            .context("running `ip` (package iproute2)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Already there (a previous run that was killed): use it, and leave it for whoever added it.
        let added = out.status.success();
        if !added && !stderr.contains("File exists") {
            bail!(
                "`ip addr add {ip}/32 dev lo` failed (needs root): {}",
                stderr.trim()
            );
        }
        Ok(Self { ip, added })
    }

    fn listen(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), 0)
    }
}

impl Drop for TestAddr {
    fn drop(&mut self) {
        if self.added {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{}/32", self.ip), "dev", "lo"])
                .output();
        }
    }
}

/// Run the CLI with `args` and `env` (nothing inherited from the test's own ROLLCAGE_*); returns (exit code,
/// stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = Command::new(rollcage_bin()?);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running the CLI")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `rollcage instances` against `url` with the admin token and these extra flags.
fn instances(c: &Coordinator, url: &str, extra: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let mut args = vec!["instances", "--coordinator", url, "--output", "json"];
    args.extend_from_slice(extra);
    cli(&args, &[("ROLLCAGE_TOKEN", &c.admin_token)])
}

/// A plain HTTP/1.0 GET of `/v1/instances`; returns the status line, or why there was none.
fn plain_get(addr: SocketAddr, token: &str) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut conn = std::net::TcpStream::connect(addr)?;
        conn.set_read_timeout(Some(Duration::from_secs(15)))?;
        write!(
            conn,
            "GET /v1/instances HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )?;
        let mut resp = Vec::new();
        conn.read_to_end(&mut resp)?;
        Ok(String::from_utf8_lossy(&resp)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned())
    };
    attempt().unwrap_or_else(|e| format!("error: {e}"))
}

fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return Ok(l.to_owned());
        }
        if start.elapsed() > timeout {
            bail!(
                "`{needle}` not in {} within {timeout:?}:\n{text}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn off_loopback_the_coordinator_serves_tls_with_its_own_ca_and_pinned_agents_deploy()
-> anyhow::Result<()> {
    let addr = TestAddr::add()?;
    let mut fleet = Fleet::start_in(1, addr.listen(), |_| Vec::new(), |_| Vec::new())?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        let c = &fleet.coordinator;
        let fp = c
            .ca_fingerprint
            .clone()
            .context("no CA fingerprint printed by a coordinator off loopback")?;
        assert!(fp.starts_with("SHA256:"), "{fp}");
        let tls = c.data.join("tls");
        assert_eq!(
            std::fs::read_to_string(tls.join("ca.fingerprint"))?.trim(),
            fp
        );
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "server.pem"] {
            let mode = std::fs::metadata(tls.join(key))?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        assert!(c.url().starts_with("https://"), "{}", c.url());

        // The pinned agent enrolled (the harness waited for it) and runs a deployment the pinned CLI starts.
        fleet.setup("shop", "web", "all", false)?;
        let bundle = fleet.dir.path().join("v1");
        write_bundle(&bundle, "v1", "0", "")?;
        let rev = fleet.push("shop", &bundle)?;
        let (code, d) = fleet.deploy_wait("shop", "web", &rev)?;
        assert_eq!(
            (code, d.status),
            (0, DeploymentStatus::Succeeded),
            "{}",
            d.message
        );

        // Plain HTTP gets no answer from the TLS port.
        let status = plain_get(c.addr, &c.admin_token);
        assert!(
            !status.starts_with("HTTP/"),
            "plain HTTP answered: {status}"
        );

        // The CLI with a wrong pin is refused, naming both fingerprints; without a pin the webpki roots refuse too.
        let (code, _, err) = instances(c, &c.url(), &["--ca-fingerprint", WRONG])?;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("does not match --ca-fingerprint"), "{err}");
        assert!(err.contains(&format!("expected {WRONG}")), "{err}");
        assert!(
            err.contains(&fp),
            "the presented fingerprint is named: {err}"
        );
        let (code, _, err) = instances(c, &c.url(), &[])?;
        assert_eq!(code, 1, "trusted without a pin: {err}");
        let (code, out, err) = instances(c, &c.url(), &["--ca-fingerprint", &fp])?;
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("\"i0\""), "{out}");

        // An agent with a wrong pin never enrolls: it says why, and the coordinator never hears its name.
        let root = fleet.dir.path().join("agent-rogue");
        let mut cmd = Command::new(rollcage_bin()?);
        cmd.args([
            "agent",
            "--coordinator",
            &c.url(),
            "--name",
            "rogue",
            "--root",
        ])
        .arg(&root)
        .arg("--enroll-token-file")
        .arg(c.enroll_token_file())
        .env("ROLLCAGE_CA_FINGERPRINT", WRONG)
        .env("RUST_LOG", "info");
        let rogue = Proc::spawn(cmd, &root.with_extension("log"))?;
        let line = wait_for_log(
            &rogue.log,
            "does not match --ca-fingerprint",
            Duration::from_secs(30),
        )?;
        assert!(line.contains(&fp), "{line}");
        drop(rogue);
        let (_, out) = fleet.cli(&["instances", "--output", "json"])?;
        assert!(!out.contains("rogue"), "{out}");
        Ok(())
    });
    let result = result.and_then(|()| {
        // A restart reuses the CA: same fingerprint, pinned clients carry on.
        let before = fleet.coordinator.ca_fingerprint.clone();
        fleet
            .coordinator
            .kill_and_restart(Duration::from_millis(100))?;
        if fleet.coordinator.ca_fingerprint != before {
            bail!(
                "the CA changed across a restart: {before:?} -> {:?}",
                fleet.coordinator.ca_fingerprint
            );
        }
        fleet.cli(&["instances"])?;
        Ok(())
    });
    if let Err(e) = result {
        let kept = fleet.keep();
        bail!("{e:#}\n(logs kept in {})", kept.display());
    }
    Ok(())
}

#[test]
fn insecure_http_serves_plain_http_off_loopback_and_bad_tls_names_are_refused_at_start()
-> anyhow::Result<()> {
    let addr = TestAddr::add()?;
    let dir = tempfile::Builder::new()
        .prefix("rollcage-e2e-tls-")
        .tempdir()?;
    let c = Coordinator::start(
        &dir.path().join("plain"),
        addr.listen(),
        &["--insecure-http"],
    )?;
    assert_eq!(c.ca_fingerprint, None);
    assert!(!c.data.join("tls").exists(), "no CA made for plain HTTP");
    let status = plain_get(c.addr, &c.admin_token);
    assert!(
        status.starts_with("HTTP/1.") && status.contains(" 200"),
        "{status}"
    );
    let (code, _, err) = instances(&c, &c.url(), &[])?;
    assert_eq!(code, 0, "{err}");
    drop(c);

    // A --tls-san that is no name stops the start, naming it; nothing is served.
    let data = dir.path().join("bad-san");
    let (code, _, err) = cli(
        &[
            "coordinator",
            "--data",
            &data.display().to_string(),
            "--listen",
            &addr.listen().to_string(),
            "--tls-san",
            "not a name",
        ],
        &[],
    )?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--tls-san `not a name`"), "{err}");
    Ok(())
}

#[test]
fn on_an_unspecified_address_the_certificate_covers_this_host_s_addresses_and_localhost()
-> anyhow::Result<()> {
    let addr = TestAddr::add()?;
    let dir = tempfile::Builder::new()
        .prefix("rollcage-e2e-tls-")
        .tempdir()?;
    let c = Coordinator::start(
        &dir.path().join("any"),
        "0.0.0.0:0".parse()?,
        &["--tls-san", "coord.example"],
    )?;
    let fp = c
        .ca_fingerprint
        .clone()
        .context("no CA fingerprint on 0.0.0.0")?;
    let port = c.addr.port();
    for host in [addr.ip.to_string(), "127.0.0.1".into(), "localhost".into()] {
        let url = format!("https://{host}:{port}");
        let (code, _, err) = instances(&c, &url, &["--ca-fingerprint", &fp])?;
        assert_eq!(code, 0, "{url}: {err}");
    }
    // Loopback with no TLS configuration stays plain HTTP (the demo and the other tests rely on it).
    let lo = Coordinator::start(&dir.path().join("lo"), "127.0.0.1:0".parse()?, &[])?;
    assert_eq!(lo.ca_fingerprint, None);
    let status = plain_get(lo.addr, &lo.admin_token);
    assert!(status.contains(" 200"), "{status}");
    Ok(())
}
