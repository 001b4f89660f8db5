//! Test fixtures shared by the driver tests (backends, client and load generator come from
//! `rollcage-lb-testkit`): the two load balancers under test, set up the same way:
//! groups `blue` (servers b1 in traffic, b2 out) and `green` (g1 in traffic), backend service `app` → `blue`.
#![allow(dead_code, unused_imports)] // Each test binary uses a different subset.

pub mod scenarios;

use rollcage_lb::{LbConfig as BuiltinConfig, LoadBalancer, Settings};
pub use rollcage_lb_testkit::{
    Backend, BoxError, Sample, TOKEN, TestResult, failures, fast_health, get, http_client, send_n,
    served_counts, spawn_load, wait_until,
};
use rollcage_lbdriver::LbDriver;
use rollcage_lbdriver::builtin::BuiltinDriver;
use rollcage_lbdriver::haproxy::HaproxyDriver;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SERVICE: &str = "app";

/// What every scenario runs against.
pub struct Fixture {
    pub driver: Arc<dyn LbDriver>,
    /// Where clients send requests (HAProxy frontend or built-in service listener).
    pub frontend: SocketAddr,
    /// The map file (HAProxy only).
    pub map_file: Option<PathBuf>,
    /// In `blue`, in traffic.
    pub b1: Backend,
    /// In `blue`'s configuration but out of traffic.
    pub b2: Backend,
    /// In `green`, in traffic.
    pub g1: Backend,
    pub haproxy: Option<HaproxyProcess>,
    pub builtin: Option<LoadBalancer>,
}

// ---------------------------------------------------------------------------------------------------------
// Built-in LB.

/// The built-in LB in-process with the standard groups and service.
pub async fn builtin_fixture() -> Result<Fixture, BoxError> {
    let (b1, b2, g1) = (
        Backend::start("b1").await?,
        Backend::start("b2").await?,
        Backend::start("g1").await?,
    );
    let lb = rollcage_lb::start(BuiltinConfig {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: TOKEN.to_owned(),
        settings: Settings {
            health_check: fast_health(),
            shutdown_grace_ms: 1_000,
            ..Settings::default()
        },
        groups: Vec::new(),
        services: Vec::new(),
    })
    .await?;
    let driver = Arc::new(BuiltinDriver::new(
        lb.admin_addr(),
        TOKEN,
        Some(fast_health()),
    ));
    // Groups are created by the driver's first register.
    driver
        .register("blue", &b1.address(), Duration::from_secs(5))
        .await?;
    driver
        .register("green", &g1.address(), Duration::from_secs(5))
        .await?;
    let admin = rollcage_lb::client::AdminClient::new(lb.admin_addr(), TOKEN);
    admin.create_service(SERVICE, "127.0.0.1:0", "blue").await?;
    let frontend = lb.service_addr(SERVICE).ok_or("service address missing")?;
    Ok(Fixture {
        driver,
        frontend,
        map_file: None,
        b1,
        b2,
        g1,
        haproxy: None,
        builtin: Some(lb),
    })
}

// ---------------------------------------------------------------------------------------------------------
// HAProxy.

/// A `haproxy -db` child process in a temp dir; killed on drop.
pub struct HaproxyProcess {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub map_file: PathBuf,
    pub frontend: SocketAddr,
}

impl Drop for HaproxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `haproxy` binary: on PATH, or Debian's `/usr/sbin` (not on non-root PATHs). Missing is a failure.
pub fn haproxy_binary() -> Result<PathBuf, BoxError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "haproxy is not installed (not on PATH nor in /usr/sbin): these tests need a real HAProxy \
             2.6+; install it with scripts/setup.sh (apt-get install -y haproxy)"
                .into()
        })
}

/// A port for HAProxy's frontend, below the ephemeral range so no client socket takes it first.
fn free_port() -> std::io::Result<u16> {
    rollcage_lb::port::free_listen_port(std::net::Ipv4Addr::LOCALHOST.into())
}

/// The config: frontend picks its backend from the map (`app` key, `blue` by default); both backends use
/// HTTP checks of `/health` every 100 ms, rise 2, fall 2. `b2` starts `disabled` (MAINT).
fn haproxy_config(dir: &Path, port: u16, b1: &Backend, b2: &Backend, g1: &Backend) -> String {
    let d = dir.display();
    format!(
        "global
    stats socket {d}/admin.sock mode 600 level admin
    stats timeout 1m
defaults
    mode http
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    default-server inter 100ms fall 2 rise 2
frontend fe
    bind 127.0.0.1:{port}
    # The weighted split (lbdriver README): `app.weight` % of requests to the backend named by `app.canary`.
    http-request set-var(txn.canary_weight) str({SERVICE}.weight),map({d}/bluegreen.map,0)
    use_backend %[str({SERVICE}.canary),map({d}/bluegreen.map)] if {{ rand(100),sub(txn.canary_weight) lt 0 }}
    use_backend %[str({SERVICE}),map({d}/bluegreen.map,blue)]
backend blue
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    server b1 {b1} check
    server b2 {b2} check disabled
backend green
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    server g1 {g1} check
",
        b1 = b1.addr,
        b2 = b2.addr,
        g1 = g1.addr,
    )
}

/// Starts HAProxy for the three backends with `map` as the map file's content, and waits until its
/// socket answers and b1, g1 are `UP`.
pub async fn start_haproxy(
    b1: &Backend,
    b2: &Backend,
    g1: &Backend,
    map: &str,
) -> Result<HaproxyProcess, BoxError> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(dir.path(), port, b1, b2, g1))?;
    let map_file = dir.path().join("bluegreen.map");
    std::fs::write(&map_file, map)?;
    let child = spawn_haproxy(dir.path())?;
    let mut proc = HaproxyProcess {
        child,
        socket: dir.path().join("admin.sock"),
        map_file,
        frontend: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    };
    proc.wait_ready().await?;
    Ok(proc)
}

fn spawn_haproxy(dir: &Path) -> Result<std::process::Child, BoxError> {
    let bin = haproxy_binary()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("haproxy.log"))?;
    Ok(std::process::Command::new(&bin)
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?)
}

impl HaproxyProcess {
    /// Stops HAProxy and starts it again from its files: everything set at run time is forgotten.
    pub async fn restart(&mut self) -> Result<(), BoxError> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = spawn_haproxy(self.dir.path())?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), BoxError> {
        let driver = HaproxyDriver::new(self.socket.clone(), None, BTreeMap::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.path().join("haproxy.log"))
                    .unwrap_or_default();
                return Err(format!("haproxy exited at start ({status}):\n{log}").into());
            }
            if let Ok(stats) = driver.stats().await {
                let up = |b: &str, s: &str| stats.server(b, s).is_some_and(|x| x.is_up());
                if up("blue", "b1") && up("green", "g1") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("haproxy did not get b1 and g1 UP within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// HAProxy with the standard groups and its driver.
pub async fn haproxy_fixture() -> Result<Fixture, BoxError> {
    haproxy_fixture_with_map(&format!("# blue/green\n{SERVICE} blue\n")).await
}

/// HAProxy with the standard groups, `map` as the map file's content, and its driver.
pub async fn haproxy_fixture_with_map(map: &str) -> Result<Fixture, BoxError> {
    let (b1, b2, g1) = (
        Backend::start("b1").await?,
        Backend::start("b2").await?,
        Backend::start("g1").await?,
    );
    let proc = start_haproxy(&b1, &b2, &g1, map).await?;
    let driver = Arc::new(HaproxyDriver::new(
        proc.socket.clone(),
        Some(proc.map_file.clone()),
        BTreeMap::new(),
    ));
    Ok(Fixture {
        driver,
        frontend: proc.frontend,
        map_file: Some(proc.map_file.clone()),
        b1,
        b2,
        g1,
        haproxy: Some(proc),
        builtin: None,
    })
}
