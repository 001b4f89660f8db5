//! Real hosts: each agent and its app run in their own network namespace with their own IP address (veth pairs on
//! a bridge), the coordinator and the built-in LB in the root namespace. A rolling-with-LB deployment under load
//! must serve every request, only from registered instances, and every app must really listen on its host's
//! address only. Needs root and iproute2 (`scripts/setup.sh` installs it); the namespaces and the bridge are
//! removed when the test ends, pass or fail.

use anyhow::{Context, bail};
use rollcage_e2e::lb::{
    BuiltinLb, DemoApps, LbGroup, Load, assert_no_failures, assert_only_registered,
    create_lb_group, events, lb_order, out_windows, versions, write_app_bundle,
};
use rollcage_e2e::netns::Hosts;
use rollcage_e2e::{Fleet, rollcage_bin};
use rollcage_proto::wire::DeploymentStatus;
use std::path::PathBuf;
use std::time::Duration;

/// The port every app listens on: the same on each host, which only works because they are separate hosts.
const APP_PORT: u16 = 18080;

#[test]
fn rolling_with_lb_across_network_namespaces_serves_every_request() -> anyhow::Result<()> {
    let n = 4;
    let hosts = Hosts::create(n)?;
    let bin = rollcage_bin()?;
    let scratch = tempfile::Builder::new()
        .prefix("rollcage-netns-pids-")
        .tempdir()?;
    let pid_files: Vec<PathBuf> = (0..n)
        .map(|i| scratch.path().join(format!("demo-{i}.pid")))
        .collect();
    let _apps = DemoApps(pid_files.clone());
    // The coordinator listens on the bridge: the agents reach it across their veth pairs.
    let fleet = Fleet::start_in(
        n,
        format!("{}:0", hosts.gateway).parse()?,
        |i| {
            vec![
                format!("PORT={APP_PORT}"),
                format!("APP_HOST={}", hosts.addrs[i]),
                format!("ROLLCAGE_BIN={}", bin.display()),
                format!("DEMO_PID={}", pid_files[i].display()),
            ]
        },
        |i| hosts.exec_prefix(i),
    )?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        let targets: Vec<String> = hosts
            .addrs
            .iter()
            .map(|a| format!("{a}:{APP_PORT}"))
            .collect();
        let lb = BuiltinLb::start(fleet.dir.path(), &["web"], "web")?;
        create_lb_group(
            &fleet,
            &LbGroup {
                style: "in-place-lb",
                targets: targets.clone(),
                driver: lb.driver(),
                server_groups: serde_json::json!({ "web": targets }),
                active: None,
                wait_for_continue: false,
            },
        )?;
        let root = fleet.dir.path();
        for label in ["v1", "v2"] {
            write_app_bundle(&root.join(format!("bundle-{label}")), label, "")?;
        }
        let deploy = |label: &str| -> anyhow::Result<_> {
            let rev = fleet.push("shop", &root.join(format!("bundle-{label}")))?;
            let (code, d) = fleet.deploy_wait("shop", "web", &rev)?;
            if code != 0 || d.status != DeploymentStatus::Succeeded {
                bail!(
                    "{label}: deployment {} ended {}: {}",
                    d.id,
                    d.status,
                    d.message
                );
            }
            Ok(d)
        };
        deploy("v1")?;

        // Each app listens on its own host's address, in its own namespace, and nowhere else.
        for (i, pid_file) in pid_files.iter().enumerate() {
            let listening = hosts.listening(i)?;
            let want = format!("{}:{APP_PORT}", hosts.addrs[i]);
            if !listening.contains(&want) {
                bail!("host {i} does not listen on {want}: {listening:?}");
            }
            if !hosts
                .pids(i)?
                .iter()
                .any(|p| std::fs::read_to_string(pid_file).is_ok_and(|f| f.trim() == p.to_string()))
            {
                bail!("the app of host {i} does not run in its namespace");
            }
        }
        if std::net::TcpStream::connect(("127.0.0.1", APP_PORT)).is_ok() {
            bail!(
                "something listens on the root namespace's 127.0.0.1:{APP_PORT}: the apps are not isolated"
            );
        }

        let load = Load::start(lb.service, 8);
        std::thread::sleep(Duration::from_millis(500));
        let d2 = deploy("v2")?;
        std::thread::sleep(Duration::from_millis(500));
        let samples = load.finish();
        assert_no_failures(&samples, "v2 across namespaces")?;
        assert_only_registered(&samples, &out_windows(&d2, None))?;
        for i in 0..n {
            assert_eq!(events(&d2, &format!("i{i}")), lb_order(), "v2 i{i}");
        }
        let v = versions(&samples);
        assert_eq!(v.first().map(String::as_str), Some("v1"));
        assert_eq!(v.last().map(String::as_str), Some("v2"));
        // Every host answered (the LB spread the load over all four).
        for i in 0..n {
            let name = format!("i{i}");
            let served = samples
                .iter()
                .filter_map(|s| s.result.as_ref().ok())
                .any(|b| b.split_whitespace().nth(1) == Some(name.as_str()));
            if !served {
                bail!("no request was answered by {name}");
            }
        }
        Ok(())
    });
    if result.is_err() {
        let kept = fleet.keep();
        eprintln!("kept {}", kept.display());
        return result.context("(namespaces removed; logs kept)");
    }
    drop(fleet);
    result
}
