//! Harness of the end-to-end tests: real `rollcage` processes (a coordinator and N agents, each with its own root
//! dir) on loopback, bundles generated per test whose hooks append timestamped markers to one shared file, and
//! helpers that read those markers back (per-instance event order, instances in flight at once).
//!
//! The tests run the `rollcage` binary found next to the test executable (`target/<profile>/rollcage`); build it
//! first with `cargo build --bin rollcage`.

use anyhow::{Context, bail};
use rollcage_proto::wire::Deployment;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod lb;
pub mod netns;

/// Run a test body, turning a panic (a failed `assert!`) into an error, so the caller can keep the temp dir with
/// the processes' logs before reporting it.
pub fn caught(body: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        Err(anyhow::anyhow!("panicked: {what}"))
    })
}

/// The `rollcage` binary next to this test executable.
pub fn rollcage_bin() -> anyhow::Result<PathBuf> {
    // A bench (release profile) may run the debug binary the tests built: what it measures is bound by the
    // canary's interval, not by the binary's speed.
    if let Some(bin) = std::env::var_os("ROLLCAGE_E2E_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("ROLLCAGE_E2E_BIN={}: no such file", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> -> target/<profile>/rollcage
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target/<profile> dir")?;
    let bin = profile_dir.join("rollcage");
    if !bin.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --bin rollcage` (same profile as the tests)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A child process killed (SIGKILL) when dropped; its stderr goes to a log file.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with stdout and stderr appended to `log`; SIGKILLed when dropped.
    pub fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = file.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        let child = cmd.spawn().context("spawning rollcage")?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited (then reaped), `None` while it runs.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running coordinator.
#[derive(Debug)]
pub struct Coordinator {
    /// The process.
    pub proc: Proc,
    /// Bound address.
    pub addr: SocketAddr,
    /// Data dir.
    pub data: PathBuf,
    /// Admin token.
    pub admin_token: String,
    /// Enrollment token.
    pub enroll_token: String,
    /// The fingerprint of the coordinator's own CA when it serves TLS with it (off loopback by default): then its
    /// URL is `https://` and agents and the CLI pin it (`ROLLCAGE_CA_FINGERPRINT`).
    pub ca_fingerprint: Option<String>,
}

/// What the coordinator prints (stdout) before its listening line when it serves with its own CA.
pub const FINGERPRINT_LINE: &str = "rollcage coordinator CA fingerprint ";

/// Wait until `log` has a line containing `needle` past its first `skip_bytes` bytes: that line.
pub fn wait_for_line(
    log: &Path,
    needle: &str,
    skip_bytes: u64,
    timeout: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(log) {
            use std::io::Seek;
            let _ = f.seek(std::io::SeekFrom::Start(skip_bytes));
            let _ = f.read_to_string(&mut s);
        }
        if let Some(line) = s.lines().find(|l| l.contains(needle)) {
            return Ok(line.to_owned());
        }
        if start.elapsed() > timeout {
            bail!(
                "`{needle}` not seen in {} within {timeout:?}:\n{s}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Coordinator {
    /// Start a coordinator on `listen` (port 0 for any) with data in `data`.
    pub fn start(data: &Path, listen: SocketAddr, extra: &[&str]) -> anyhow::Result<Self> {
        let log = data.with_extension("log");
        let skip = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(rollcage_bin()?);
        cmd.arg("coordinator")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(listen.to_string())
            .args(extra)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn(cmd, &log)?;
        let line = wait_for_line(
            &log,
            "rollcage coordinator listening on ",
            skip,
            Duration::from_secs(20),
        )?;
        let ca_fingerprint = std::fs::read_to_string(&log).ok().and_then(|text| {
            let text = text.get(usize::try_from(skip).unwrap_or(0)..)?.to_owned();
            text.lines()
                .find_map(|l| l.strip_prefix(FINGERPRINT_LINE))
                .map(|f| f.trim().to_owned())
        });
        let addr: SocketAddr = line
            .rsplit(' ')
            .next()
            .context("no address")?
            .trim()
            .parse()
            .context("parsing the bound address")?;
        let read = |f: &str| -> anyhow::Result<String> {
            Ok(std::fs::read_to_string(data.join(f))
                .with_context(|| format!("reading {f}"))?
                .trim()
                .to_owned())
        };
        Ok(Self {
            proc,
            addr,
            data: data.to_owned(),
            admin_token: read("admin-token")?,
            enroll_token: read("enroll-token")?,
            ca_fingerprint,
        })
    }

    /// The coordinator's enrollment token file (`DATA/enroll-token`, mode 0600), which agents on this host are
    /// given with `--enroll-token-file`.
    pub fn enroll_token_file(&self) -> PathBuf {
        self.data.join("enroll-token")
    }

    /// Base URL: `https://` when the coordinator serves with its own CA.
    pub fn url(&self) -> String {
        let scheme = if self.ca_fingerprint.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Set `ROLLCAGE_CA_FINGERPRINT` on `cmd` when the coordinator serves with its own CA.
    pub fn pin(&self, cmd: &mut Command) {
        if let Some(fp) = &self.ca_fingerprint {
            cmd.env("ROLLCAGE_CA_FINGERPRINT", fp);
        }
    }

    /// SIGKILL, then start again on the same address with the same data.
    pub fn kill_and_restart(&mut self, down_for: Duration) -> anyhow::Result<()> {
        self.proc.kill();
        std::thread::sleep(down_for);
        let fresh = Self::start(&self.data, self.addr, &[])?;
        *self = fresh;
        Ok(())
    }
}

/// One agent process.
#[derive(Debug)]
pub struct AgentProc {
    /// Instance name.
    pub name: String,
    /// Its root dir.
    pub root: PathBuf,
    /// The process.
    pub proc: Proc,
}

/// A coordinator, N agents and a markers file, in one temp dir.
#[derive(Debug)]
pub struct Fleet {
    /// Temp dir holding everything (kept on failure for inspection: see `keep`).
    pub dir: tempfile::TempDir,
    /// The coordinator.
    pub coordinator: Coordinator,
    /// The agents, `i0`, `i1`, ….
    pub agents: Vec<AgentProc>,
    /// The shared markers file.
    pub markers: PathBuf,
    /// Extra `--var NAME=VALUE` per agent (by index).
    pub agent_vars: Vec<Vec<String>>,
    /// A command each agent runs under (by index), e.g. `ip netns exec NS`; empty = run directly.
    pub agent_prefix: Vec<Vec<String>>,
    /// More `rollcage agent` flags per agent (by index), e.g. `--tag env=prod`.
    pub agent_flags: Vec<Vec<String>>,
    /// Coordinator URLs the agents and the CLI are given before the coordinator's own (`--coordinator A,B,URL`),
    /// tried first in that order; empty = the coordinator's URL alone.
    pub urls_before: Vec<String>,
    /// Several coordinators on one database ([`cluster`]): the others, and which ones each agent is given.
    pub cluster: cluster::Peers,
}

impl Fleet {
    /// Start a coordinator and `n` agents named `i0`…
    pub fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with_vars(n, |_| Vec::new())
    }

    /// Start a coordinator and `n` agents named `i0`…, agent `i` getting `vars(i)` as extra `--var NAME=VALUE`.
    pub fn start_with_vars(n: usize, vars: impl Fn(usize) -> Vec<String>) -> anyhow::Result<Self> {
        Self::start_in(n, "127.0.0.1:0".parse()?, vars, |_| Vec::new())
    }

    /// Start a coordinator listening on `listen` and `n` agents named `i0`…, agent `i` getting `vars(i)` as
    /// extra `--var NAME=VALUE` and running under the command `prefix(i)` (e.g. `ip netns exec NS`).
    pub fn start_in(
        n: usize,
        listen: SocketAddr,
        vars: impl Fn(usize) -> Vec<String>,
        prefix: impl Fn(usize) -> Vec<String>,
    ) -> anyhow::Result<Self> {
        Self::start_all(n, listen, vars, prefix, Vec::new(), &[])
    }

    /// Start a coordinator given `flags` (e.g. `--webhook-retry-base-ms 100`) and `n` agents named `i0`…
    pub fn start_with_coordinator_flags(n: usize, flags: &[&str]) -> anyhow::Result<Self> {
        Self::start_all(
            n,
            "127.0.0.1:0".parse()?,
            |_| Vec::new(),
            |_| Vec::new(),
            Vec::new(),
            flags,
        )
    }

    /// Start a coordinator and `n` agents named `i0`…; the agents and the CLI are given `urls_before`, then the
    /// coordinator's URL, as their list of coordinators (`--coordinator A,B,URL`).
    pub fn start_with_urls_before(n: usize, urls_before: Vec<String>) -> anyhow::Result<Self> {
        Self::start_all(
            n,
            "127.0.0.1:0".parse()?,
            |_| Vec::new(),
            |_| Vec::new(),
            urls_before,
            &[],
        )
    }

    fn start_all(
        n: usize,
        listen: SocketAddr,
        vars: impl Fn(usize) -> Vec<String>,
        prefix: impl Fn(usize) -> Vec<String>,
        urls_before: Vec<String>,
        coordinator_flags: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rollcage-e2e-").tempdir()?;
        let coordinator =
            Coordinator::start(&dir.path().join("coordinator"), listen, coordinator_flags)?;
        let markers = dir.path().join("markers.txt");
        std::fs::write(&markers, "")?;
        let mut fleet = Self {
            dir,
            coordinator,
            agents: Vec::new(),
            markers,
            agent_vars: (0..n).map(vars).collect(),
            agent_prefix: (0..n).map(prefix).collect(),
            agent_flags: Vec::new(),
            urls_before,
            cluster: cluster::Peers::default(),
        };
        fleet.spawn_agents(n)?;
        Ok(fleet)
    }

    /// Start agents `i0`…`i{n-1}` and wait until each has enrolled.
    fn spawn_agents(&mut self, n: usize) -> anyhow::Result<()> {
        let fleet = self;
        for i in 0..n {
            let name = format!("i{i}");
            let root = fleet.dir.path().join(format!("agent-{name}"));
            std::fs::create_dir_all(&root)?;
            let proc = fleet.spawn_agent(i, &name, &root)?;
            fleet.agents.push(AgentProc { name, root, proc });
        }
        // A deployment of a group naming an instance that has not enrolled yet is refused, so the fleet is ready
        // once every agent has enrolled.
        for a in &fleet.agents {
            wait_for_line(&a.proc.log, "enrolled", 0, Duration::from_secs(60))
                .with_context(|| format!("agent {} did not enroll", a.name))?;
        }
        Ok(())
    }

    fn spawn_agent(&self, i: usize, name: &str, root: &Path) -> anyhow::Result<Proc> {
        let bin = rollcage_bin()?;
        let mut cmd = match self.agent_prefix.get(i).map(Vec::as_slice) {
            Some([program, args @ ..]) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            _ => Command::new(bin),
        };
        cmd.arg("agent")
            .arg("--coordinator")
            .arg(
                self.cluster
                    .agent_url(i)
                    .unwrap_or_else(|| self.coordinator_list()),
            )
            .arg("--root")
            .arg(root)
            .arg("--name")
            .arg(name)
            // A secret: in a file (mode 0600), never on a command line (the documented way).
            .arg("--enroll-token-file")
            .arg(self.coordinator.enroll_token_file())
            .arg("--var")
            .arg(format!("MARKERS={}", self.markers.display()))
            .env("RUST_LOG", "info");
        for v in self.agent_vars.get(i).into_iter().flatten() {
            cmd.arg("--var").arg(v);
        }
        cmd.args(self.agent_flags.get(i).into_iter().flatten());
        self.coordinator.pin(&mut cmd);
        Proc::spawn(cmd, &root.with_extension("log"))
    }

    /// What agents and the CLI get as `--coordinator`: [`Self::urls_before`], then the coordinator's URL.
    pub fn coordinator_list(&self) -> String {
        let mut urls = self.urls_before.clone();
        urls.push(self.coordinator.url());
        urls.join(",")
    }

    /// Start one more agent (named `i{index}`, the next index) with `vars` (`--var`) and `flags` (e.g. `--tag
    /// env=prod`), and wait until it enrolled: a host that joins the fleet later. Returns its index.
    pub fn add_agent(&mut self, vars: Vec<String>, flags: Vec<String>) -> anyhow::Result<usize> {
        let i = self.agents.len();
        self.agent_vars.resize(i, Vec::new());
        self.agent_vars.push(vars);
        self.agent_flags.resize(i, Vec::new());
        self.agent_flags.push(flags);
        let name = format!("i{i}");
        let root = self.dir.path().join(format!("agent-{name}"));
        std::fs::create_dir_all(&root)?;
        let proc = self.spawn_agent(i, &name, &root)?;
        wait_for_line(&proc.log, "enrolled", 0, Duration::from_secs(60))
            .with_context(|| format!("agent {name} did not enroll"))?;
        self.agents.push(AgentProc { name, root, proc });
        Ok(i)
    }

    /// Every deployment (the newest 100), oldest first, in full.
    pub fn deployments(&self) -> anyhow::Result<Vec<Deployment>> {
        let list: serde_json::Value =
            serde_json::from_str(&self.admin_get("/v1/deployments?limit=100")?)?;
        let mut out = Vec::new();
        for d in list["items"].as_array().context("no items")? {
            out.push(self.status(d["id"].as_str().context("no id")?)?);
        }
        out.sort_by_key(|d| d.created_at_ms);
        Ok(out)
    }

    /// The catch-up deployment of `instance` (the newest), once it exists (within 60 s).
    pub fn catch_up_of(&self, instance: &str) -> anyhow::Result<Deployment> {
        let begin = Instant::now();
        loop {
            let kind = rollcage_proto::wire::DeploymentKind::CatchUp {
                instance: instance.to_owned(),
            };
            if let Some(d) = self
                .deployments()?
                .into_iter()
                .rev()
                .find(|d| d.kind == kind)
            {
                return Ok(d);
            }
            if begin.elapsed() > Duration::from_secs(60) {
                bail!("no catch-up deployment of {instance} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL agent `i` and start it again (same root, so same token and journal).
    pub fn kill_and_restart_agent(&mut self, i: usize, down_for: Duration) -> anyhow::Result<()> {
        self.agents[i].proc.kill();
        std::thread::sleep(down_for);
        let (name, root) = (self.agents[i].name.clone(), self.agents[i].root.clone());
        self.agents[i].proc = self.spawn_agent(i, &name, &root)?;
        Ok(())
    }

    /// Run the CLI against the coordinator; returns (exit code, stdout). Killed after 3 minutes so a hung
    /// `--wait` fails the test instead of the CI run.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        self.cli_with(&self.coordinator_list(), &self.coordinator, args)
    }

    /// [`Fleet::cli`] against coordinator `c` alone (one of a [`cluster`]'s).
    pub fn cli_on(&self, c: &Coordinator, args: &[&str]) -> anyhow::Result<(i32, String)> {
        self.cli_with(&c.url(), c, args)
    }

    /// The CLI given `urls` as its coordinators and `c`'s admin token (and CA pin).
    fn cli_with(
        &self,
        urls: &str,
        c: &Coordinator,
        args: &[&str],
    ) -> anyhow::Result<(i32, String)> {
        let out_path = self
            .dir
            .path()
            .join(format!("cli-{}.out", std::process::id()));
        let err_path = out_path.with_extension("err");
        let mut cmd = Command::new(rollcage_bin()?);
        c.pin(&mut cmd);
        let mut child = cmd
            .args(args)
            .env("ROLLCAGE_COORDINATOR", urls)
            .env("ROLLCAGE_TOKEN", &c.admin_token)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(&err_path)?)
            .spawn()
            .context("running the CLI")?;
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if start.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("rollcage {args:?} did not finish within 3 minutes");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = std::fs::read_to_string(&out_path)?;
        let stderr = std::fs::read_to_string(&err_path)?;
        let code = status.code().unwrap_or(-1);
        if code != 0 && code != 2 && code != 3 {
            bail!("rollcage {args:?} exited {code}: {stdout}{stderr}");
        }
        Ok((code, stdout))
    }

    /// Create an application and a group of all agents.
    pub fn setup(
        &self,
        app: &str,
        group: &str,
        concurrency: &str,
        auto_rollback: bool,
    ) -> anyhow::Result<()> {
        self.cli(&["app", "create", app])?;
        let names: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
        let names = names.join(",");
        let mut args = vec![
            "group",
            "create",
            "--app",
            app,
            group,
            "--style",
            "in-place",
            "--concurrency",
            concurrency,
            "--instances",
            &names,
        ];
        if auto_rollback {
            args.push("--auto-rollback");
        }
        self.cli(&args)?;
        Ok(())
    }

    /// Push a bundle directory; returns the revision id.
    pub fn push(&self, app: &str, dir: &Path) -> anyhow::Result<String> {
        let (_, out) = self.cli(&["push", "--app", app, &dir.display().to_string()])?;
        let id = out.trim().to_owned();
        if !id.starts_with("r-") || id.contains(char::is_whitespace) {
            bail!("push printed `{out}`, expected a revision id alone");
        }
        Ok(id)
    }

    /// Start a deployment without waiting; returns its id.
    pub fn deploy(&self, app: &str, group: &str, revision: &str) -> anyhow::Result<String> {
        let (_, out) = self.cli(&[
            "deploy",
            "--app",
            app,
            "--group",
            group,
            "--revision",
            revision,
        ])?;
        Ok(out.trim().to_owned())
    }

    /// Deploy and wait; returns (exit code, final deployment).
    pub fn deploy_wait(
        &self,
        app: &str,
        group: &str,
        revision: &str,
    ) -> anyhow::Result<(i32, Deployment)> {
        let (code, out) = self.cli(&[
            "deploy",
            "--app",
            app,
            "--group",
            group,
            "--revision",
            revision,
            "--wait",
            "--output",
            "json",
        ])?;
        Ok((
            code,
            serde_json::from_str(&out).with_context(|| format!("parsing `{out}`"))?,
        ))
    }

    /// A deployment's current state.
    pub fn status(&self, id: &str) -> anyhow::Result<Deployment> {
        let (_, out) = self.cli(&["status", id, "--output", "json"])?;
        serde_json::from_str(&out).with_context(|| format!("parsing `{out}`"))
    }

    /// Poll a deployment until it ends.
    pub fn wait_end(&self, id: &str, timeout: Duration) -> anyhow::Result<Deployment> {
        let start = Instant::now();
        loop {
            // The coordinator may be restarting: tolerate failed reads until the timeout.
            if let Ok(d) = self.status(id)
                && d.status.is_terminal()
            {
                return Ok(d);
            }
            if start.elapsed() > timeout {
                bail!("deployment {id} did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An admin GET over plain HTTP/1.0; returns the body of a 200.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect(self.coordinator.addr)?;
        write!(
            conn,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.coordinator.addr, self.coordinator.admin_token
        )?;
        let mut resp = String::new();
        conn.read_to_string(&mut resp)?;
        let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP body")?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
        }
        Ok(body.to_owned())
    }

    /// Downloads of a revision from the coordinator.
    pub fn downloads(&self, app: &str, revision: &str) -> anyhow::Result<u64> {
        let base = self.coordinator.url();
        let trust = rollcage_client::Trust {
            ca_fingerprint: match &self.coordinator.ca_fingerprint {
                Some(fp) => Some(fp.parse()?),
                None => None,
            },
            ..Default::default()
        };
        let token = self.coordinator.admin_token.clone();
        // The tests are synchronous: one small runtime for this one call.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let rev = rt.block_on(async {
            rollcage_client::Client::with_trust(&base, Some(token), &trust)?
                .get_revision(app, revision)
                .await
        })?;
        Ok(rev.downloads)
    }

    /// The value of one sample (`name{labels}` exactly as exposed) in the coordinator's `/metrics`.
    pub fn metric(&self, sample: &str) -> anyhow::Result<Option<f64>> {
        let text = self.admin_get("/metrics")?;
        Ok(text.lines().find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        }))
    }

    /// Every marker written so far.
    pub fn markers(&self) -> anyhow::Result<Vec<Marker>> {
        read_markers(&self.markers)
    }

    /// Wait until `pred` holds on the markers.
    pub fn wait_markers(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Marker]) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if pred(&self.markers()?) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("markers condition not met within {timeout:?}")
    }

    /// Keep the temp dir (call on failure to inspect logs).
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

/// Two revisions of `shop` pushed to the fleet: `v1`, and `v2` whose ValidateService fails (exit 3, "health check
/// failed" on stderr) on `failing` only; every hook sleeps `sleep` seconds. Returns their revision ids.
pub fn push_v1_and_failing_v2(
    fleet: &Fleet,
    failing: &str,
    sleep: &str,
) -> anyhow::Result<(String, String)> {
    let b1 = fleet.dir.path().join("v1");
    let b2 = fleet.dir.path().join("v2");
    write_bundle(&b1, "v1", sleep, "")?;
    write_bundle(
        &b2,
        "v2",
        sleep,
        &format!(
            r#"if [ "$LIFECYCLE_EVENT" = ValidateService ] && [ "$ROLLCAGE_INSTANCE" = {failing} ]; then echo "health check failed" >&2; exit 3; fi"#
        ),
    )?;
    Ok((fleet.push("shop", &b1)?, fleet.push("shop", &b2)?))
}

/// Write a bundle dir whose every scriptable hook appends `INSTANCE EVENT start|end NS DEPLOYMENT LABEL` to
/// `$MARKERS`, sleeping `sleep` between; `extra` is shell code run between the two markers (may `exit 1`).
pub fn write_bundle(dir: &Path, label: &str, sleep: &str, extra: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("scripts"))?;
    let events = [
        "ApplicationStop",
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ];
    let mut spec = String::from("version: 0.0\nos: linux\nhooks:\n");
    for e in events {
        spec.push_str(&format!(
            "  {e}:\n    - location: scripts/hook.sh\n      timeout: 120\n"
        ));
    }
    std::fs::write(dir.join("appspec.yml"), spec)?;
    let script = format!(
        "#!/bin/sh\n\
         m() {{ echo \"$ROLLCAGE_INSTANCE $LIFECYCLE_EVENT $1 $(date +%s%N) $DEPLOYMENT_ID {label}\" >> \"$MARKERS\"; }}\n\
         m start\n\
         sleep {sleep}\n\
         {extra}\n\
         m end\n"
    );
    let path = dir.join("scripts/hook.sh");
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// One marker line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Instance.
    pub instance: String,
    /// Event.
    pub event: String,
    /// `start` or `end`.
    pub phase: String,
    /// Nanosecond timestamp.
    pub ns: u128,
    /// Deployment id.
    pub deployment: String,
    /// The bundle's label (which revision's script ran).
    pub label: String,
}

/// Parse the markers file.
pub fn read_markers(path: &Path) -> anyhow::Result<Vec<Marker>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 6 {
            bail!("malformed marker line `{line}`");
        }
        out.push(Marker {
            instance: f[0].to_owned(),
            event: f[1].to_owned(),
            phase: f[2].to_owned(),
            ns: f[3]
                .parse()
                .with_context(|| format!("timestamp in `{line}`"))?,
            deployment: f[4].to_owned(),
            label: f[5].to_owned(),
        });
    }
    out.sort_by_key(|m| m.ns);
    Ok(out)
}

/// The (event, label) of every hook start of `instance` in `deployment`, in time order; fails if a hook started
/// before the previous one ended.
pub fn events_of(
    markers: &[Marker],
    instance: &str,
    deployment: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut open: Option<&Marker> = None;
    for m in markers
        .iter()
        .filter(|m| m.instance == instance && m.deployment == deployment)
    {
        match m.phase.as_str() {
            "start" => {
                if let Some(o) = open {
                    bail!(
                        "{instance}: {} started while {} was still running",
                        m.event,
                        o.event
                    );
                }
                out.push((m.event.clone(), m.label.clone()));
                open = Some(m);
            }
            _ => {
                if open.map(|o| &o.event) != Some(&m.event) {
                    bail!("{instance}: {} ended without starting", m.event);
                }
                open = None;
            }
        }
    }
    Ok(out)
}

/// Every step of every instance of `d` ended well and its end is recorded (its report reached a coordinator).
pub fn assert_every_step_ended(d: &Deployment) {
    use rollcage_proto::wire::{InstanceStatus, StepState};
    for i in &d.instances {
        assert_eq!(i.status, InstanceStatus::Succeeded, "{}", i.instance);
        for s in &i.steps {
            assert!(
                matches!(s.state, StepState::Succeeded | StepState::Skipped),
                "{} {:?}",
                i.instance,
                s
            );
            assert!(
                s.ended_at_ms.is_some(),
                "the end of {} {} is recorded",
                i.instance,
                s.event
            );
        }
    }
}

/// The hooks an in-place deployment of `deployed` runs on a host where `installed` is installed, with the label
/// of the revision whose scripts run each, in the seed's order: from the one plan (`rollcage_proto::plan`).
pub fn seed_order(installed: Option<&str>, deployed: &str) -> Vec<(String, String)> {
    rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
        .hooks(installed, deployed)
        .map(|(e, l)| (e.name().to_owned(), l.to_owned()))
        .collect()
}

/// The most instances between their first and last marker of `deployment` at the same time.
pub fn max_in_flight(markers: &[Marker], deployment: &str) -> usize {
    let mut span: BTreeMap<&str, (u128, u128)> = BTreeMap::new();
    for m in markers.iter().filter(|m| m.deployment == deployment) {
        let e = span.entry(&m.instance).or_insert((m.ns, m.ns));
        e.0 = e.0.min(m.ns);
        e.1 = e.1.max(m.ns);
    }
    let mut points: Vec<(u128, i32)> = span
        .values()
        .flat_map(|&(a, b)| [(a, 1), (b, -1)])
        .collect();
    // At equal times, ends before starts: touching intervals do not overlap.
    points.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    usize::try_from(max).unwrap_or(0)
}

/// Start markers of one (instance, deployment, event).
pub fn starts(markers: &[Marker], instance: &str, deployment: &str, event: &str) -> usize {
    markers
        .iter()
        .filter(|m| {
            m.instance == instance
                && m.deployment == deployment
                && m.event == event
                && m.phase == "start"
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(instance: &str, event: &str, phase: &str, ns: u128) -> Marker {
        Marker {
            instance: instance.into(),
            event: event.into(),
            phase: phase.into(),
            ns,
            deployment: "d".into(),
            label: "v1".into(),
        }
    }

    #[test]
    fn overlap_and_order_are_measured() -> anyhow::Result<()> {
        let ms = vec![
            m("a", "X", "start", 1),
            m("a", "X", "end", 5),
            m("b", "X", "start", 4),
            m("b", "X", "end", 8),
            m("c", "X", "start", 8),
            m("c", "X", "end", 9),
        ];
        assert_eq!(max_in_flight(&ms, "d"), 2);
        assert_eq!(
            events_of(&ms, "a", "d")?,
            [("X".to_owned(), "v1".to_owned())]
        );
        let bad = vec![m("a", "X", "start", 1), m("a", "Y", "start", 2)];
        assert!(events_of(&bad, "a", "d").is_err());
        Ok(())
    }
}
