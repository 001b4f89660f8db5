//! Several coordinators on one PostgreSQL database, and agents spread over them.
//!
//! [`Fleet::start_cluster`] starts `coordinators` coordinators with `--database URL` (each with its own data dir,
//! `coordinator-K`, for its TLS material and logs) and agents that are each given the coordinators
//! [`ClusterSpec::agent_coordinators`] names, in order (`--coordinator URL1,URL2`). Coordinator 0 starts first
//! (it runs the migrations) and is the fleet's [`Fleet::coordinator`], the one [`Fleet::cli`] talks to; the others
//! are in [`Peers::coordinators`] (index K-1 for coordinator K). [`Fleet::cli_on`] talks to any of them, and
//! [`Fleet::switch_to`] makes another the fleet's coordinator (after killing the first, say).
//!
//! The tokens agree the documented way: every coordinator is given the first one's admin and enrollment token
//! files (copied into its data dir before it starts, so it reads them as its own).
//!
//! The caller owns the database (e.g. a `rollcage_testpg::Server` it keeps alive for the whole test), so this
//! harness does not depend on how it is made.

use crate::{Coordinator, Fleet};
use std::path::Path;

/// The coordinators of a fleet besides [`Fleet::coordinator`], and which coordinators each agent is given.
#[derive(Debug, Default)]
pub struct Peers {
    /// Coordinators 1… (coordinator 0 is [`Fleet::coordinator`]), all on the same database.
    pub coordinators: Vec<Coordinator>,
    /// `--coordinator` of agent `i` (by index); an agent not listed is given [`Fleet::coordinator_list`].
    pub agent_urls: Vec<String>,
}

impl Peers {
    /// The `--coordinator` value of agent `i`, when the cluster says.
    pub fn agent_url(&self, i: usize) -> Option<String> {
        self.agent_urls.get(i).cloned()
    }
}

/// What [`Fleet::start_cluster`] starts.
pub struct ClusterSpec<'a> {
    /// The shared database (`postgres://USER@HOST:PORT/DB`).
    pub database: &'a str,
    /// How many coordinators (at least 1).
    pub coordinators: usize,
    /// How many agents (`i0`…).
    pub agents: usize,
    /// The coordinators (by index) agent `i` is given, in the order it tries them.
    pub agent_coordinators: &'a dyn Fn(usize) -> Vec<usize>,
    /// Extra `--var NAME=VALUE` of agent `i`.
    pub vars: &'a dyn Fn(usize) -> Vec<String>,
}

/// Every agent is given every coordinator, in index order.
pub fn all_coordinators(n: usize) -> impl Fn(usize) -> Vec<usize> {
    move |_| (0..n).collect()
}

impl Fleet {
    /// Start the coordinators and agents `spec` describes (see the module doc).
    pub fn start_cluster(spec: &ClusterSpec<'_>) -> anyhow::Result<Self> {
        anyhow::ensure!(spec.coordinators >= 1, "a cluster needs a coordinator");
        let dir = tempfile::Builder::new().prefix("rollcage-e2e-").tempdir()?;
        let listen = "127.0.0.1:0".parse()?;
        let db = ["--database", spec.database];
        let first = Coordinator::start(&dir.path().join("coordinator-0"), listen, &db)?;
        let mut others = Vec::new();
        for k in 1..spec.coordinators {
            let data = dir.path().join(format!("coordinator-{k}"));
            share_tokens(&first, &data)?;
            others.push(Coordinator::start(&data, listen, &db)?);
        }
        let urls = |i: usize| -> anyhow::Result<String> {
            let picked = (spec.agent_coordinators)(i)
                .into_iter()
                .map(|k| match k {
                    0 => Ok(first.url()),
                    k => others
                        .get(k - 1)
                        .map(Coordinator::url)
                        .ok_or_else(|| anyhow::anyhow!("agent i{i}: no coordinator {k}")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(picked.join(","))
        };
        let agent_urls = (0..spec.agents).map(urls).collect::<anyhow::Result<_>>()?;
        let markers = dir.path().join("markers.txt");
        std::fs::write(&markers, "")?;
        let mut fleet = Self {
            dir,
            coordinator: first,
            agents: Vec::new(),
            markers,
            agent_vars: (0..spec.agents).map(spec.vars).collect(),
            agent_prefix: Vec::new(),
            agent_flags: Vec::new(),
            urls_before: Vec::new(),
            cluster: Peers {
                coordinators: others,
                agent_urls,
            },
        };
        fleet.spawn_agents(spec.agents)?;
        Ok(fleet)
    }

    /// Coordinator `k` of the cluster (0 is [`Fleet::coordinator`]).
    pub fn coordinator_k(&self, k: usize) -> anyhow::Result<&Coordinator> {
        match k {
            0 => Ok(&self.coordinator),
            k => self
                .cluster
                .coordinators
                .get(k - 1)
                .ok_or_else(|| anyhow::anyhow!("no coordinator {k}")),
        }
    }

    /// Make coordinator `k` (≥ 1) the one [`Fleet::cli`] and the other helpers talk to, in exchange with the
    /// current one (which becomes coordinator `k`).
    pub fn switch_to(&mut self, k: usize) -> anyhow::Result<()> {
        let other = k
            .checked_sub(1)
            .and_then(|j| self.cluster.coordinators.get_mut(j))
            .ok_or_else(|| anyhow::anyhow!("no coordinator {k} to switch to"))?;
        std::mem::swap(&mut self.coordinator, other);
        Ok(())
    }
}

/// Give the coordinator about to start on `data` the admin and enrollment tokens of `first` (its token files,
/// mode 0600, in its data dir).
fn share_tokens(first: &Coordinator, data: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().mode(0o700).create(data)?;
    for (name, token) in [
        ("admin-token", &first.admin_token),
        ("enroll-token", &first.enroll_token),
    ] {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(data.join(name))?;
        writeln!(f, "{token}")?;
    }
    Ok(())
}

/// A CLI command running in the background (e.g. `rollcage watch`), killed when dropped.
#[derive(Debug)]
pub struct BackgroundCli {
    child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Fleet {
    /// Start `rollcage ARGS` against coordinator `c` without waiting; its output goes to `DIR/NAME.out|.err`.
    pub fn cli_background(
        &self,
        c: &Coordinator,
        args: &[&str],
        name: &str,
    ) -> anyhow::Result<BackgroundCli> {
        let stdout = self.dir.path().join(format!("{name}.out"));
        let stderr = stdout.with_extension("err");
        let mut cmd = std::process::Command::new(crate::rollcage_bin()?);
        c.pin(&mut cmd);
        let child = cmd
            .args(args)
            .env("ROLLCAGE_COORDINATOR", c.url())
            .env("ROLLCAGE_TOKEN", &c.admin_token)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()?;
        Ok(BackgroundCli {
            child,
            stdout,
            stderr,
        })
    }
}

impl BackgroundCli {
    /// Wait up to `timeout` for it to exit: (exit code, stdout); an error (with its stderr) if it does not.
    pub fn wait(mut self, timeout: std::time::Duration) -> anyhow::Result<(i32, String)> {
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait()? {
                break st;
            }
            if start.elapsed() > timeout {
                let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                anyhow::bail!("still running after {timeout:?}; its stderr so far:\n{err}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&self.stdout)?;
        if status.code().is_none() {
            let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            anyhow::bail!("killed by a signal ({status}); stderr:\n{err}");
        }
        Ok((status.code().unwrap_or(-1), out))
    }
}

impl Drop for BackgroundCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
