//! Safe enrollment with real processes: a coordinator started with `--enroll-approval`, a per-use enrollment token
//! made with `rollcage enroll-token create` (printed alone on stdout) and handed to agents through a file (their
//! config file's `enroll_token_file`, never a command line or the environment). The agents enroll and stay
//! `pending`: a deployment of a group naming one is refused, naming it and the approve command; a group of "every
//! enrolled instance" deploys to the approved one only, and no hook runs on the pending one. A third agent finds
//! the token used up. Once approved with `rollcage instances approve`, the next deployment includes the instance.

use anyhow::{Context, bail};
use rollcage_e2e::{Coordinator, Fleet, Proc, caught, events_of, rollcage_bin, write_bundle};
use rollcage_proto::enroll::EnrollTokenInfo;
use rollcage_proto::wire::{Deployment, DeploymentStatus, InstanceInfo, InstanceState};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `rollcage agent --config FILE`, the config naming the enrollment token file.
fn spawn_agent(fleet: &Fleet, name: &str, token_file: &Path) -> anyhow::Result<Proc> {
    let root = fleet.dir.path().join(format!("agent-{name}"));
    std::fs::create_dir_all(&root)?;
    let config = root.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "coordinator = {:?}\nname = {name:?}\nroot = {:?}\nenroll_token_file = {:?}\n\n[vars]\nMARKERS = {:?}\n",
            fleet.coordinator.url(),
            root.display().to_string(),
            token_file.display().to_string(),
            fleet.markers.display().to_string()
        ),
    )?;
    let mut cmd = Command::new(rollcage_bin()?);
    cmd.arg("agent")
        .arg("--config")
        .arg(&config)
        .env_remove("ROLLCAGE_ENROLL_TOKEN")
        .env("RUST_LOG", "info");
    Proc::spawn(cmd, &root.with_extension("log"))
}

fn wait_log(log: &Path, needle: &str, within: Duration) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return Ok(text);
        }
        if start.elapsed() > within {
            bail!(
                "`{needle}` not in {} within {within:?}:\n{text}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn instances(fleet: &Fleet) -> anyhow::Result<Vec<(String, InstanceState)>> {
    let (_, out) = fleet.cli(&["instances", "--output", "json"])?;
    let list: Vec<InstanceInfo> =
        serde_json::from_str(&out).with_context(|| format!("parsing `{out}`"))?;
    Ok(list.into_iter().map(|i| (i.name, i.state)).collect())
}

fn deployed(d: &Deployment) -> Vec<&str> {
    d.instances.iter().map(|i| i.instance.as_str()).collect()
}

#[test]
fn a_pending_instance_gets_no_deployment_until_approved() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("rollcage-e2e-").tempdir()?;
    let coordinator = Coordinator::start(
        &dir.path().join("coordinator"),
        "127.0.0.1:0".parse()?,
        &["--enroll-approval"],
    )?;
    let markers = dir.path().join("markers.txt");
    std::fs::write(&markers, "")?;
    let fleet = Fleet {
        dir,
        coordinator,
        agents: Vec::new(),
        markers,
        agent_vars: Vec::new(),
        agent_prefix: Vec::new(),
        agent_flags: Vec::new(),
        urls_before: Vec::new(),
        cluster: Default::default(),
    };
    let result = caught(|| {
        // A token for two hosts, valid ten minutes: printed alone, kept in a 0600 file.
        let (_, out) = fleet.cli(&[
            "enroll-token",
            "create",
            "--uses",
            "2",
            "--ttl",
            "10m",
            "--name",
            "e2e",
        ])?;
        let token = out.trim_end_matches('\n');
        assert!(
            token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "create printed `{out}`, expected the token alone"
        );
        let token_file = fleet.dir.path().join("enroll-token");
        write_secret_file(&token_file, token)?;

        let mut agents = Vec::new();
        for name in ["i0", "i1"] {
            let p = spawn_agent(&fleet, name, &token_file)?;
            wait_log(&p.log, "pending approval", Duration::from_secs(30))?;
            agents.push(p);
        }
        assert_eq!(
            instances(&fleet)?,
            [
                ("i0".to_owned(), InstanceState::Pending),
                ("i1".to_owned(), InstanceState::Pending)
            ]
        );
        // The token is used up: a third host is refused, and told why.
        let mut third = spawn_agent(&fleet, "i2", &token_file)?;
        wait_log(&third.log, "used 2 of 2 times", Duration::from_secs(30))?;
        let start = Instant::now();
        while third.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the agent refused enrollment still runs");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The list shows the uses, never the secret.
        let (_, listed) = fleet.cli(&["enroll-token", "list", "--output", "json"])?;
        assert!(!listed.contains(token), "{listed}");
        let listed: Vec<EnrollTokenInfo> = serde_json::from_str(&listed)?;
        assert_eq!(
            (listed.len(), listed[0].uses, listed[0].label.as_str()),
            (1, 2, "e2e")
        );

        fleet.cli(&["instances", "approve", "i0"])?;
        fleet.cli(&["app", "create", "shop"])?;
        let every = [
            "group",
            "create",
            "--app",
            "shop",
            "every",
            "--style",
            "in-place",
            "--concurrency",
            "all",
        ];
        fleet.cli(&every)?;
        fleet.cli(&[
            "group",
            "create",
            "--app",
            "shop",
            "named",
            "--style",
            "in-place",
            "--concurrency",
            "all",
            "--instances",
            "i0,i1",
        ])?;
        let bundle = fleet.dir.path().join("v1");
        write_bundle(&bundle, "v1", "0", "")?;
        let rev = fleet.push("shop", &bundle)?;

        // Naming the pending instance is refused, naming it and the command that approves it.
        match fleet.deploy("shop", "named", &rev) {
            Ok(id) => bail!("a deployment naming a pending instance was created: {id}"),
            Err(e) => {
                let e = format!("{e:#}");
                assert!(
                    e.contains("pending approval: `i1`")
                        && e.contains("rollcage instances approve i1"),
                    "{e}"
                );
            }
        }
        // "Every enrolled instance" is every approved one: i0 only, and no hook runs on i1.
        let (code, d) = fleet.deploy_wait("shop", "every", &rev)?;
        assert_eq!((code, d.status), (0, DeploymentStatus::Succeeded), "{d:?}");
        assert_eq!(deployed(&d), ["i0"]);
        let m = fleet.markers()?;
        assert!(!events_of(&m, "i0", &d.id)?.is_empty());
        assert!(m.iter().all(|m| m.instance != "i1"), "{m:?}");

        // Approved, it catches up by itself (the group's last deployment succeeded), then gets the next one.
        fleet.cli(&["instances", "approve", "i1"])?;
        let c = fleet.catch_up_of("i1")?;
        let c = fleet.wait_end(&c.id, Duration::from_secs(120))?;
        assert_eq!(
            (c.group.as_str(), c.status),
            ("every", DeploymentStatus::Succeeded),
            "{c:?}"
        );
        assert_eq!(deployed(&c), ["i1"]);
        assert_eq!(
            instances(&fleet)?,
            [
                ("i0".to_owned(), InstanceState::Approved),
                ("i1".to_owned(), InstanceState::Approved)
            ]
        );
        let (code, d2) = fleet.deploy_wait("shop", "every", &rev)?;
        assert_eq!(
            (code, d2.status),
            (0, DeploymentStatus::Succeeded),
            "{d2:?}"
        );
        assert_eq!(deployed(&d2), ["i0", "i1"]);
        assert!(!events_of(&fleet.markers()?, "i1", &d2.id)?.is_empty());
        drop(agents);
        Ok(())
    });
    if let Err(e) = result {
        let kept = fleet.keep();
        bail!("{e:#}\n(logs kept in {})", kept.display());
    }
    Ok(())
}

/// The token file as an operator writes it: owner-only.
fn write_secret_file(path: &Path, token: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{token}")?;
    Ok(())
}
