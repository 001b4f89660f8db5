//! Starting the demo's fleet in its temp dir: a coordinator (SQLite) on a port the OS picks, the built-in LB,
//! 4 agents each with its own root, then the application and its three deployment groups. Tokens stay in files:
//! the coordinator writes its own, the agents read the enrollment token from the coordinator's file (through
//! their config file), the LB creates its admin token file and the groups' driver settings point at it. No
//! token is on any command line.

use super::plan::{self, APP, BLUE, GREEN, INSTANCES, SERVICE};
use super::procs::{AGENT_PREFIX, Supervisor, TAIL_LINES, log_tail};
use crate::agent_service::{AgentFile, Coordinators};
use anyhow::{Context as _, bail};
use rollcage_client::Client;
use rollcage_proto::lb::{DriverConfig, GroupLb, LbConfig};
use rollcage_proto::wire::{Concurrency, CreateApplication, CreateGroup};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long each process gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The running fleet.
pub struct Cluster {
    /// Admin client of the coordinator.
    pub client: Client,
    /// The LB's service address: where traffic goes.
    pub service: SocketAddr,
}

/// A loopback port free now, below the ephemeral range so that the demo's own traffic (client sockets) cannot
/// take it before the app that is told it binds it (see `rollcage_lb::port`).
fn free_port() -> anyhow::Result<u16> {
    rollcage_lb::port::free_listen_port(std::net::Ipv4Addr::LOCALHOST.into())
        .context("looking for a free loopback port")
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Poll `ready` every 50 ms until it holds, failing (with the process's log) if it dies or `timeout` passes.
async fn wait_until(
    sup: &Supervisor,
    what: &str,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let begin = Instant::now();
    while !ready() {
        sup.check_alive()?;
        if begin.elapsed() > START_TIMEOUT {
            bail!(
                "{what} did not start within {START_TIMEOUT:?}; last lines of {}:\n{}",
                log.display(),
                log_tail(log, TAIL_LINES)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Start everything; `exe` is this binary.
pub async fn start(sup: &Supervisor, exe: &Path) -> anyhow::Result<Cluster> {
    let dir = sup.dir();
    let apps: BTreeMap<&'static str, String> = INSTANCES
        .iter()
        .map(|i| Ok((*i, format!("127.0.0.1:{}", free_port()?))))
        .collect::<anyhow::Result<_>>()?;

    // Coordinator on port 0: it prints the address it bound.
    let data = dir.join("coordinator");
    let log = dir.join("coordinator.log");
    sup.spawn(
        "coordinator",
        exe,
        &[
            os("coordinator"),
            os("--data"),
            data.as_os_str(),
            os("--listen"),
            os("127.0.0.1:0"),
        ],
        &log,
    )?;
    let mut addr = None;
    wait_until(sup, "the coordinator", &log, || {
        addr = std::fs::read_to_string(&log).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.split("rollcage coordinator listening on ").nth(1))
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        });
        addr.is_some()
    })
    .await?;
    let url = format!("http://{}", addr.context("no coordinator address")?);
    let admin_token = std::fs::read_to_string(data.join("admin-token"))
        .context("reading the coordinator's admin token")?
        .trim()
        .to_owned();
    let client = Client::new(&url, Some(admin_token), None)?;
    println!("coordinator  {url} (SQLite in {})", data.display());

    // The built-in LB: service `web` -> server group `blue`; both groups know their servers from the start
    // (v1 deploys without the LB, so nothing else would register them) and health-check them.
    let lb_dir = dir.join("lb");
    std::fs::create_dir_all(&lb_dir)?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let service: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let token_file = lb_dir.join("admin.token");
    let config = lb_dir.join("lb.toml");
    std::fs::write(&config, lb_config(&apps, service))
        .with_context(|| format!("writing {}", config.display()))?;
    let log = dir.join("lb.log");
    sup.spawn(
        "lb",
        exe,
        &[
            os("lb"),
            os("--admin"),
            os(&admin.to_string()),
            os("--admin-token-file"),
            token_file.as_os_str(),
            os("--config"),
            config.as_os_str(),
        ],
        &log,
    )?;
    wait_until(sup, "the load balancer", &log, || {
        token_file.is_file() && TcpStream::connect(admin).is_ok()
    })
    .await?;
    println!(
        "lb           service `{SERVICE}` on {service} -> `{}` ({}), standby `{}` ({})",
        BLUE.0,
        BLUE.1.join(", "),
        GREEN.0,
        GREEN.1.join(", ")
    );

    // Agents, configured by file: the enrollment token stays in the coordinator's file.
    let agents_dir = dir.join("agents");
    let apps_dir = dir.join("apps");
    std::fs::create_dir_all(&apps_dir)?;
    for name in INSTANCES {
        let root = agents_dir.join(name);
        std::fs::create_dir_all(&root)?;
        let port = apps[name].rsplit(':').next().unwrap_or_default().to_owned();
        let file = AgentFile {
            coordinator: Coordinators::parse(&url)?,
            name: name.to_owned(),
            root: root.clone(),
            enroll_token_file: Some(data.join("enroll-token")),
            token_file: None,
            service_addr: Some(apps[name].clone()),
            ca_file: None,
            ca_fingerprint: None,
            tags: BTreeMap::new(),
            vars: BTreeMap::from([
                ("PORT".to_owned(), port),
                (
                    "DEMO_PID".to_owned(),
                    apps_dir.join(format!("{name}.pid")).display().to_string(),
                ),
                ("ROLLCAGE_BIN".to_owned(), exe.display().to_string()),
            ]),
            max_log_bytes: None,
            max_cache_bytes: None,
            trusted_signers: None,
        };
        let cfg = agents_dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, toml::to_string(&file)?)
            .with_context(|| format!("writing {}", cfg.display()))?;
        sup.spawn(
            &format!("{AGENT_PREFIX}{name}"),
            exe,
            &[os("agent"), os("--config"), cfg.as_os_str()],
            &agents_dir.join(format!("{name}.log")),
        )?;
    }
    let begin = Instant::now();
    loop {
        sup.check_alive()?;
        let enrolled = client.list_instances().await.unwrap_or_default();
        if INSTANCES
            .iter()
            .all(|n| enrolled.iter().any(|e| e.name == *n))
        {
            break;
        }
        if begin.elapsed() > START_TIMEOUT {
            bail!(
                "agents did not all enroll within {START_TIMEOUT:?} (enrolled: {:?}); see {}",
                enrolled.iter().map(|e| &e.name).collect::<Vec<_>>(),
                agents_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "agents       {} enrolled, each with its own root under {}",
        INSTANCES.join(", "),
        agents_dir.display()
    );

    client
        .create_application(&CreateApplication {
            name: APP.to_owned(),
        })
        .await
        .context("creating the application")?;
    for g in plan::GROUPS {
        let lb = (g.style != rollcage_proto::wire::DeploymentStyle::InPlace).then(|| {
            group_lb(
                &apps,
                admin,
                &token_file,
                g.style == rollcage_proto::wire::DeploymentStyle::BlueGreen,
            )
        });
        let req = CreateGroup {
            name: g.name.to_owned(),
            style: g.style,
            concurrency: Concurrency::Count(g.concurrency),
            failure_tolerance: 0,
            auto_rollback: true,
            instances: INSTANCES.iter().map(|s| (*s).to_owned()).collect(),
            tags: Default::default(),
            form: None,
            lb,
            webhooks: Vec::new(),
            webhook_secret: None,
        };
        let group = client
            .create_group(APP, &req)
            .await
            .with_context(|| format!("creating deployment group `{}`", g.name))?;
        let canary = match group.lb.as_ref().and_then(|lb| lb.canary.as_ref()) {
            Some(c) => format!(
                ", canary steps {:?} % judged every {} s",
                c.steps, c.interval_secs
            ),
            None => String::new(),
        };
        println!(
            "group        {} ({}, {} at a time, automatic rollback{canary})",
            group.name, group.style, group.concurrency
        );
    }
    Ok(Cluster { client, service })
}

/// The LB's configuration file.
fn lb_config(apps: &BTreeMap<&'static str, String>, service: SocketAddr) -> String {
    let mut cfg = String::new();
    for (group, members) in [BLUE, GREEN] {
        let servers: Vec<String> = members
            .iter()
            .filter_map(|m| apps.get(m))
            .map(|a| format!("\"{a}\""))
            .collect();
        // Fast checks: an instance is in or out of traffic within a few hundred ms.
        cfg.push_str(&format!(
            "[[groups]]\nname = \"{group}\"\nservers = [{}]\nhealth_check = {{ path = \"/health\", \
             interval_ms = 100, timeout_ms = 500, healthy_threshold = 2, unhealthy_threshold = 2 }}\n\n",
            servers.join(", ")
        ));
    }
    cfg.push_str(&format!(
        "[[services]]\nname = \"{SERVICE}\"\nlisten = \"{service}\"\ngroup = \"{}\"\n",
        BLUE.0
    ));
    cfg
}

/// A group's load-balancer settings: every instance's address, the two server groups, the driver.
fn group_lb(
    apps: &BTreeMap<&'static str, String>,
    admin: SocketAddr,
    token_file: &Path,
    blue_green: bool,
) -> GroupLb {
    let members =
        |m: [&str; 2]| -> Vec<String> { m.iter().filter_map(|i| apps.get(i)).cloned().collect() };
    GroupLb {
        targets: apps
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        lb: LbConfig {
            service: SERVICE.to_owned(),
            driver: DriverConfig::Builtin {
                admin_url: format!("http://{admin}"),
                token_file: token_file.to_owned(),
                health_check: None,
            },
            server_groups: [
                (BLUE.0.to_owned(), members(BLUE.1)),
                (GREEN.0.to_owned(), members(GREEN.1)),
            ]
            .into(),
            drain_timeout_secs: 20,
            register_timeout_secs: 20,
        },
        active_group: blue_green.then(|| BLUE.0.to_owned()),
        wait_for_continue: false,
        keep_old_group: true,
        canary: blue_green.then(plan::canary),
        analysis: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> BTreeMap<&'static str, String> {
        INSTANCES
            .iter()
            .enumerate()
            .map(|(k, i)| (*i, format!("127.0.0.1:{}", 9001 + k)))
            .collect()
    }

    #[test]
    fn the_lb_config_parses_and_serves_blue() -> anyhow::Result<()> {
        let text = lb_config(&apps(), "127.0.0.1:8080".parse()?);
        let file: rollcage_lb::ConfigFile = toml::from_str(&text)?;
        assert_eq!(file.groups.len(), 2);
        assert_eq!(file.groups[0].servers, ["127.0.0.1:9001", "127.0.0.1:9002"]);
        assert_eq!(file.groups[1].servers, ["127.0.0.1:9003", "127.0.0.1:9004"]);
        assert_eq!(file.services[0].group, "blue");
        Ok(())
    }

    #[test]
    fn group_settings_are_accepted_by_the_coordinator_rules() -> anyhow::Result<()> {
        use rollcage_proto::wire::DeploymentStyle;
        let names: Vec<String> = INSTANCES.iter().map(|s| (*s).to_owned()).collect();
        let token = Path::new("/tmp/t");
        let admin: SocketAddr = "127.0.0.1:9000".parse()?;
        for (style, bg) in [
            (DeploymentStyle::InPlaceLb, false),
            (DeploymentStyle::BlueGreen, true),
        ] {
            let s = group_lb(&apps(), admin, token, bg);
            GroupLb::check(style, &names, Some(&s))?;
            assert_eq!(s.instances_of("green"), ["i3", "i4"]);
        }
        Ok(())
    }
}
