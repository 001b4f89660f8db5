//! Several "hosts" on one machine: one network namespace per host, each with its own IPv4 address on a veth pair
//! whose other end sits on a bridge in the root namespace (which gets the subnet's `.1`). Processes started with
//! [`Hosts::exec_prefix`] live in a host's namespace, so traffic between them and the root namespace (the
//! coordinator, the load balancer) really crosses an interface. Needs root and `ip` (iproute2).
//!
//! Everything is removed when [`Hosts`] drops — processes still in a namespace are killed first — also when the
//! set-up fails half way. Names carry the test process id so parallel runs do not collide.

use anyhow::{Context, bail};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// Network namespaces joined by a bridge.
#[derive(Debug)]
pub struct Hosts {
    /// The bridge in the root namespace.
    pub bridge: String,
    /// The bridge's address: what the hosts reach the root namespace at.
    pub gateway: Ipv4Addr,
    /// Namespace names, one per host.
    pub names: Vec<String>,
    /// Each host's address on the bridge, by index.
    pub addrs: Vec<Ipv4Addr>,
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (package iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A /24 under 10.231.0.0/16 that no interface of this machine uses yet (start chosen by `seed`).
fn free_subnet(seed: u32) -> anyhow::Result<u8> {
    let used = ip(&["-4", "addr"])?;
    for k in 0..200u32 {
        let third = u8::try_from((seed + k) % 200 + 20).unwrap_or(20);
        if !used.contains(&format!("10.231.{third}.")) {
            return Ok(third);
        }
    }
    bail!("no free 10.231.x.0/24 subnet on this machine")
}

impl Hosts {
    /// Create `n` hosts (at most 9: addresses `.11` … `.19`).
    pub fn create(n: usize) -> anyhow::Result<Self> {
        if n == 0 || n > 9 {
            bail!("between 1 and 9 hosts, not {n}");
        }
        let pid = std::process::id();
        let third = free_subnet(pid)?;
        let mut hosts = Self {
            bridge: format!("rcbr{pid}"),
            gateway: Ipv4Addr::new(10, 231, third, 1),
            names: Vec::new(),
            addrs: Vec::new(),
        };
        // From here on a failure drops `hosts`, which removes whatever was made.
        ip(&["link", "add", &hosts.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", hosts.gateway),
            "dev",
            &hosts.bridge,
        ])?;
        ip(&["link", "set", &hosts.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("rc{pid}h{i}");
            let veth = format!("rc{pid}v{i}");
            let addr = Ipv4Addr::new(10, 231, third, 11 + u8::try_from(i)?);
            ip(&["netns", "add", &ns])?;
            hosts.names.push(ns.clone());
            hosts.addrs.push(addr);
            // `ip netns exec` bind-mounts these over /etc/hosts and /etc/resolv.conf: without them a lookup in
            // the namespace waits for the host's resolver, which it cannot reach (see the load-balancer notes).
            let etc = PathBuf::from("/etc/netns").join(&ns);
            std::fs::create_dir_all(&etc)?;
            std::fs::write(
                etc.join("hosts"),
                format!("127.0.0.1 localhost\n{addr} {ns}\n"),
            )?;
            std::fs::write(etc.join("resolv.conf"), "")?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &hosts.bridge, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// The command prefix that runs a program in host `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.names[i].clone(),
        ]
    }

    /// Process ids running in host `i`'s namespace.
    pub fn pids(&self, i: usize) -> anyhow::Result<Vec<i32>> {
        Ok(ip(&["netns", "pids", &self.names[i]])?
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// TCP sockets listening in host `i`'s namespace, as `ss -Hltn` prints them (local address column).
    pub fn listening(&self, i: usize) -> anyhow::Result<Vec<String>> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.names[i], "ss", "-Hltn"])
            .output()
            .context("running ss in a namespace")?;
        if !out.status.success() {
            bail!("ss failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .collect())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.names.len() {
            for pid in self.pids(i).unwrap_or_default() {
                let _ = nix_kill(pid);
            }
        }
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
        // The veth pairs went with their namespaces; the bridge is ours to delete.
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// SIGKILL one process (through `kill`, to keep this crate free of libc bindings).
fn nix_kill(pid: i32) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill").arg("-9").arg(pid.to_string()).status()
}
