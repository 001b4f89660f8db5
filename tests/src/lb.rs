//! Pieces of the load-balancer end-to-end tests: the sample-app bundle (`rollcage demo-app` started and stopped
//! by hooks), a load generator that records every request, the checks on what it saw (no failures, no answer
//! from an instance while it was out of traffic), and the built-in LB in its own process.

use crate::{Fleet, Proc, rollcage_bin};
use anyhow::bail;
use rollcage_proto::wire::{Deployment, StepState};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the demo app holds each answer: long enough that requests are in flight during every drain.
pub const APP_DELAY_MS: u64 = 150;

/// A free TCP port on loopback, below the ephemeral range so the load generator's client sockets cannot take it
/// before the app binds it (see `rollcage_lb::port`).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(rollcage_lb::port::free_listen_port(
        std::net::Ipv4Addr::LOCALHOST.into(),
    )?)
}

/// Milliseconds since the epoch (the wire's timestamp unit).
pub use rollcage_proto::wire::now_ms;

/// Kills the demo apps the hooks started in the background (they outlive the agents) when the test ends.
pub struct DemoApps(pub Vec<PathBuf>);

impl DemoApps {
    /// Room for `n` demo apps: a free port each, and the pid files (in a scratch dir kept after the test, for a
    /// look at what ran) through which they are killed when the result is dropped.
    pub fn slots(n: usize) -> anyhow::Result<(Vec<u16>, DemoApps)> {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
        let scratch = tempfile::Builder::new()
            .prefix("rollcage-lb-pids-")
            .tempdir()?
            .keep();
        let pid_files = (0..n)
            .map(|i| scratch.join(format!("demo-{i}.pid")))
            .collect();
        Ok((ports, DemoApps(pid_files)))
    }

    /// The variables of the agent whose hooks run app `i` (of [`DemoApps::slots`]'s `ports`).
    pub fn agent_vars(&self, ports: &[u16], i: usize) -> anyhow::Result<Vec<String>> {
        Ok(vec![
            format!("PORT={}", ports[i]),
            format!("ROLLCAGE_BIN={}", crate::rollcage_bin()?.display()),
            format!("DEMO_PID={}", self.0[i].display()),
        ])
    }
}

impl Drop for DemoApps {
    fn drop(&mut self) {
        for pid_file in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(pid_file)
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

/// A bundle whose hooks run the demo app at version `label` on `$APP_HOST:$PORT` (agent vars; the host defaults
/// to 127.0.0.1); `validate` is the ValidateService body.
pub fn write_app_bundle(dir: &Path, label: &str, validate: &str) -> anyhow::Result<()> {
    write_app_bundle_with_delay(dir, label, validate, APP_DELAY_MS)
}

/// [`write_app_bundle`] with the app holding each answer `delay_ms` (a slower app keeps a drain going longer).
pub fn write_app_bundle_with_delay(
    dir: &Path,
    label: &str,
    validate: &str,
    delay_ms: u64,
) -> anyhow::Result<()> {
    write_app_bundle_with_faults(dir, label, validate, delay_ms, &Faults::default())
}

/// A revision that is bad only under real traffic: its health checks and ValidateService pass.
#[derive(Debug, Clone, Default)]
pub struct Faults<'a> {
    /// Percent of `GET /` answered 500 (`demo-app --fail-percent`).
    pub fail_percent: u64,
    /// Only on this instance (`$ROLLCAGE_INSTANCE`); `None`: on every instance.
    pub only_on: Option<&'a str>,
}

/// [`write_app_bundle_with_delay`] whose app answers `faults.fail_percent` % of `GET /` with a 500.
pub fn write_app_bundle_with_faults(
    dir: &Path,
    label: &str,
    validate: &str,
    delay_ms: u64,
    faults: &Faults<'_>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("scripts"))?;
    let hooks = [
        ("ApplicationStop", "stop.sh"),
        ("ApplicationStart", "start.sh"),
        ("ValidateService", "validate.sh"),
    ];
    let mut spec = String::from("version: 0.0\nos: linux\nhooks:\n");
    for (event, script) in hooks {
        spec.push_str(&format!(
            "  {event}:\n    - location: scripts/{script}\n      timeout: 60\n"
        ));
    }
    std::fs::write(dir.join("appspec.yml"), spec)?;
    let stop = "#!/bin/sh\n\
        [ -f \"$DEMO_PID\" ] || exit 0\n\
        pid=$(cat \"$DEMO_PID\")\n\
        kill \"$pid\" 2>/dev/null || true\n\
        while kill -0 \"$pid\" 2>/dev/null; do sleep 0.05; done\n\
        rm -f \"$DEMO_PID\"\n";
    let fail = match faults.only_on {
        None => format!("fail={}\n", faults.fail_percent),
        Some(i) => format!(
            "fail=0; [ \"$ROLLCAGE_INSTANCE\" = \"{i}\" ] && fail={}\n",
            faults.fail_percent
        ),
    };
    let start = format!(
        "#!/bin/sh\n\
         rm -f \"$DEMO_PID\"\n\
         {fail}\
         nohup \"$ROLLCAGE_BIN\" demo-app --listen ${{APP_HOST:-127.0.0.1}}:$PORT --version {label} --instance \"$ROLLCAGE_INSTANCE\" \
         --delay-ms {delay_ms} --fail-percent \"$fail\" --pid-file \"$DEMO_PID\" >/dev/null 2>&1 &\n\
         n=0; while [ ! -s \"$DEMO_PID\" ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done\n\
         [ -s \"$DEMO_PID\" ]\n"
    );
    let validate = format!("#!/bin/sh\nkill -0 \"$(cat \"$DEMO_PID\")\" || exit 1\n{validate}\n");
    for (name, body) in [
        ("stop.sh", stop.to_owned()),
        ("start.sh", start),
        ("validate.sh", validate),
    ] {
        let p = dir.join("scripts").join(name);
        std::fs::write(&p, body)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// One request's result.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent (ms since the epoch).
    pub start_ms: i64,
    /// When its answer ended.
    pub end_ms: i64,
    /// `Ok(body)` for a 200, `Err(what)` otherwise.
    pub result: Result<String, String>,
}

/// One HTTP/1.0 GET (no keep-alive: every request opens a connection, the harder case for draining).
pub fn get(addr: SocketAddr) -> Result<String, String> {
    get_path(addr, "/")
}

/// [`get`] of `path` (with its query string).
pub fn get_path(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: lb\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("status: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.trim().to_owned())
}

/// A load generator: `workers` threads sending requests back to back until stopped (bounded by `max_time`
/// and `max_count` per worker so a hung test cannot run forever).
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Start `workers` threads sending GETs to `addr` back to back.
    pub fn start(addr: SocketAddr, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..workers)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let begin = Instant::now();
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && begin.elapsed() < Duration::from_secs(240)
                        && out.len() < 20_000
                    {
                        let start_ms = now_ms();
                        let result = get(addr);
                        out.push(Sample {
                            start_ms,
                            end_ms: now_ms(),
                            result,
                        });
                    }
                    out
                })
            })
            .collect();
        Self { stop, handles }
    }

    /// Stop the workers and return every request they made.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    }
}

/// Per instance, the windows when it was out of traffic for sure: from the end of its BlockTraffic (drained)
/// to the start of its AllowTraffic. An instance that never came back in `d` (its ValidateService failed) stays
/// out until the start of its AllowTraffic in `then` (the automatic rollback), or for good.
pub fn out_windows(d: &Deployment, then: Option<&Deployment>) -> Vec<(String, i64, i64)> {
    let allow_start = |d: &Deployment, instance: &str| {
        d.instances
            .iter()
            .find(|i| i.instance == instance)
            .and_then(|i| i.steps.iter().find(|s| s.event.name() == "AllowTraffic"))
            .and_then(|s| s.started_at_ms)
    };
    let mut out = Vec::new();
    for inst in &d.instances {
        if let Some(block) = inst.steps.iter().find(|s| s.event.name() == "BlockTraffic")
            && block.state == StepState::Succeeded
            && let Some(from) = block.ended_at_ms
        {
            let to = allow_start(d, &inst.instance)
                .or_else(|| then.and_then(|t| allow_start(t, &inst.instance)))
                .unwrap_or(i64::MAX);
            out.push((inst.instance.clone(), from, to));
        }
    }
    out
}

/// No response came from an instance during one of its out-of-traffic windows.
pub fn assert_only_registered(
    samples: &[Sample],
    windows: &[(String, i64, i64)],
) -> anyhow::Result<()> {
    for s in samples {
        let Ok(body) = &s.result else { continue };
        let served_by = body.split_whitespace().nth(1).unwrap_or("");
        for (inst, from, to) in windows {
            if inst == served_by && s.start_ms > *from && s.end_ms < *to {
                bail!(
                    "{body:?} answered a request sent at {} while `{inst}` was out of traffic ({from}..{to})",
                    s.start_ms
                );
            }
        }
    }
    Ok(())
}

/// How many answers instance `name` gave.
pub fn served_by(samples: &[Sample], name: &str) -> usize {
    samples
        .iter()
        .filter(|s| {
            s.result
                .as_deref()
                .is_ok_and(|b| b.split_whitespace().nth(1) == Some(name))
        })
        .count()
}

/// Every request succeeded, and there were enough of them to mean something.
pub fn assert_no_failures(samples: &[Sample], what: &str) -> anyhow::Result<()> {
    let failed: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    if !failed.is_empty() {
        bail!(
            "{what}: {} of {} requests failed, first: {:?}",
            failed.len(),
            samples.len(),
            failed[0]
        );
    }
    if samples.len() < 20 {
        bail!("{what}: only {} requests were sent", samples.len());
    }
    Ok(())
}

/// The version (first word of the body) of every successful answer, in sample order.
pub fn versions(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter_map(|s| s.result.as_ref().ok())
        .filter_map(|b| b.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// HAProxy (Debian package) with a config written here: one backend per server group, every instance a
/// server that starts in maintenance (`disabled`) until a register; blue/green through a backend map, a canary
/// through the driver's `rand(100)` rule against the map's `app1.weight` (lbdriver README).
pub struct HaproxyLb {
    _proc: Proc,
    /// The runtime API socket.
    pub socket: PathBuf,
    /// The frontend's backend map.
    pub map_file: PathBuf,
    /// The service's listen address (backend service `app1`).
    pub service: SocketAddr,
}

impl HaproxyLb {
    /// Start `haproxy` with one backend per server group, `app1` pointing at `service_group`.
    pub fn start(
        dir: &Path,
        groups: &[(&str, Vec<String>)],
        service_group: &str,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let service: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let socket = dir.join("haproxy.sock");
        let map_file = dir.join("bluegreen.map");
        std::fs::write(&map_file, format!("app1 {service_group}\n"))?;
        let mut cfg = format!(
            "global\n    stats socket {sock} mode 600 level admin\n    stats timeout 1m\n\
             defaults\n    mode http\n    option redispatch\n    retries 3\n    timeout connect 2s\n\
             timeout client 30s\n    timeout server 30s\n    default-server inter 100ms fall 2 rise 2\n\
             frontend fe\n    bind {service}\n\
             http-request set-var(txn.canary_weight) str(app1.weight),map({map},0)\n\
             use_backend %[str(app1.canary),map({map})] if {{ rand(100),sub(txn.canary_weight) lt 0 }}\n\
             use_backend %[str(app1),map({map},{service_group})]\n",
            sock = socket.display(),
            map = map_file.display(),
        );
        for (g, servers) in groups {
            cfg.push_str(&format!(
                "backend {g}\n    balance roundrobin\n    option httpchk GET /health\n    http-check expect status 200\n"
            ));
            for (k, addr) in servers.iter().enumerate() {
                cfg.push_str(&format!("    server s{k} {addr} check disabled\n"));
            }
        }
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg)?;
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&cfg_path);
        let proc = Proc::spawn(cmd, &dir.join("haproxy.log"))?;
        let begin = Instant::now();
        while !socket.exists() || TcpStream::connect(service).is_err() {
            if begin.elapsed() > Duration::from_secs(20) {
                bail!(
                    "haproxy did not start; see {}",
                    dir.join("haproxy.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            _proc: proc,
            socket,
            map_file,
            service,
        })
    }

    /// The coordinator's driver settings for this HAProxy.
    pub fn driver(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "haproxy",
            "socket": self.socket,
            "map_file": self.map_file,
        })
    }
}

/// The built-in LB in its own process.
pub struct BuiltinLb {
    _proc: Proc,
    /// Admin API address.
    pub admin: SocketAddr,
    /// Admin token file.
    pub token_file: PathBuf,
    /// The service's listen address (the `app1` backend service).
    pub service: SocketAddr,
}

impl BuiltinLb {
    /// Start `rollcage lb` with the server `groups` (health-checked on `/health`) and one backend service
    /// `app1` on a free loopback port pointing at `service_group`.
    pub fn start(dir: &Path, groups: &[&str], service_group: &str) -> anyhow::Result<Self> {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let service: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let token_file = dir.join("lb.token");
        let mut cfg = String::new();
        for g in groups {
            cfg.push_str(&format!(
                "[[groups]]\nname = \"{g}\"\nhealth_check = {{ path = \"/health\", interval_ms = 100, timeout_ms = 500, \
                 healthy_threshold = 2, unhealthy_threshold = 2 }}\n"
            ));
        }
        cfg.push_str(&format!(
            "[[services]]\nname = \"app1\"\nlisten = \"{service}\"\ngroup = \"{service_group}\"\n"
        ));
        let cfg_path = dir.join("lb.toml");
        std::fs::write(&cfg_path, cfg)?;
        let mut cmd = Command::new(rollcage_bin()?);
        cmd.arg("lb")
            .arg("--admin")
            .arg(admin.to_string())
            .arg("--admin-token-file")
            .arg(&token_file)
            .arg("--config")
            .arg(&cfg_path);
        let proc = Proc::spawn(cmd, &dir.join("lb.log"))?;
        let begin = Instant::now();
        while TcpStream::connect(admin).is_err() || !token_file.is_file() {
            if begin.elapsed() > Duration::from_secs(20) {
                bail!(
                    "the built-in LB did not start; see {}",
                    dir.join("lb.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            _proc: proc,
            admin,
            token_file,
            service,
        })
    }

    /// The coordinator's driver settings for this LB.
    pub fn driver(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "builtin",
            "admin_url": format!("http://{}", self.admin),
            "token_file": self.token_file,
        })
    }
}

/// A load-balanced group `web` of application `shop` over every agent of a fleet.
#[derive(Debug)]
pub struct LbGroup<'a> {
    /// `in-place-lb` or `blue-green`.
    pub style: &'a str,
    /// `host:port` of agent `i`'s app, by index.
    pub targets: Vec<String>,
    /// The coordinator's driver settings (e.g. [`BuiltinLb::driver`]).
    pub driver: serde_json::Value,
    /// Server group name → `host:port` list.
    pub server_groups: serde_json::Value,
    /// The blue/green group serving at the start.
    pub active: Option<&'a str>,
    /// Blue/green: wait for `rollcage continue` before switching.
    pub wait_for_continue: bool,
}

/// Create application `shop` and its group `web` (concurrency 1, automatic rollback) as `g` says.
pub fn create_lb_group(fleet: &Fleet, g: &LbGroup<'_>) -> anyhow::Result<()> {
    create_lb_group_with(fleet, g, serde_json::Value::Null)
}

/// [`create_lb_group`] with more top-level settings (`{"canary": {...}}`, `{"analysis": {...}}`).
pub fn create_lb_group_with(
    fleet: &Fleet,
    g: &LbGroup<'_>,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let (style, server_groups, active, wait_for_continue) = (
        g.style,
        g.server_groups.clone(),
        g.active,
        g.wait_for_continue,
    );
    let targets: serde_json::Map<String, serde_json::Value> = g
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("i{i}"), t.as_str().into()))
        .collect();
    let mut settings = serde_json::json!({
        "targets": targets,
        "wait_for_continue": wait_for_continue,
        "lb": {
            "service": "app1",
            "driver": g.driver,
            "server_groups": server_groups,
            "drain_timeout_secs": 20,
            "register_timeout_secs": 20,
        }
    });
    if let Some(a) = active {
        settings["active_group"] = a.into();
    }
    if let serde_json::Value::Object(more) = extra {
        for (k, v) in more {
            settings[k] = v;
        }
    }
    let file = fleet.dir.path().join("group-lb.json");
    std::fs::write(&file, serde_json::to_string_pretty(&settings)?)?;
    fleet.cli(&["app", "create", "shop"])?;
    let names: Vec<String> = (0..g.targets.len()).map(|i| format!("i{i}")).collect();
    let (code, out) = fleet.cli(&[
        "group",
        "create",
        "--app",
        "shop",
        "web",
        "--style",
        style,
        "--concurrency",
        "1",
        "--auto-rollback",
        "--instances",
        &names.join(","),
        "--lb",
        &file.display().to_string(),
    ])?;
    if code != 0 {
        bail!("group create exited {code}: {out}");
    }
    Ok(())
}

/// The events of `instance` that ran (succeeded, failed or skipped), in plan order.
pub fn events(d: &Deployment, instance: &str) -> Vec<String> {
    d.instances
        .iter()
        .find(|i| i.instance == instance)
        .map(|i| {
            i.steps
                .iter()
                .filter(|s| {
                    matches!(
                        s.state,
                        StepState::Succeeded | StepState::Failed | StepState::Skipped
                    )
                })
                .map(|s| s.event.name().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The rolling-with-LB order for one instance, by name, from the one plan (`rollcage_proto::plan`).
pub fn lb_order() -> Vec<&'static str> {
    rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlaceLb, false)
        .per_instance
        .iter()
        .map(|e| e.name())
        .collect()
}
