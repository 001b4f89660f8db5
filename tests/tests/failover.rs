//! Failover: two coordinators on one PostgreSQL server, four agents given both (`--coordinator A,B`: they talk to
//! A, the first that works). A rolling deployment at concurrency 1 with hooks of about a second; A is SIGKILLed in
//! the middle. The deployment finishes through B: every instance ran every event exactly once, in the seed's order
//! (hook markers); every step of every instance ended, as B's API shows (no report lost); and `rollcage watch`
//! against B, started before the kill, follows the deployment to its end.
//!
//! The same with an `in-place-lb` group behind the built-in LB under a load generator, where the coordinator
//! killed is the one running an instance's BlockTraffic (draining slow requests): the survivor finishes that
//! step (it ends after the kill) and the load generator sees no failed request.

use anyhow::{Context, bail};
use rollcage_e2e::cluster::{ClusterSpec, all_coordinators};
use rollcage_e2e::lb::{
    BuiltinLb, DemoApps, LbGroup, Load, assert_no_failures, create_lb_group, events, lb_order,
    now_ms, write_app_bundle_with_delay,
};
use rollcage_e2e::{Fleet, events_of, rollcage_bin, seed_order, starts, write_bundle};
use rollcage_proto::wire::{Deployment, DeploymentStatus};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn killing_the_agents_coordinator_mid_rollout_the_survivor_finishes_it() -> anyhow::Result<()> {
    let pg = rollcage_testpg::Server::start()?;
    let mut fleet = Fleet::start_cluster(&ClusterSpec {
        database: &pg.url(),
        coordinators: 2,
        agents: 4,
        agent_coordinators: &all_coordinators(2),
        vars: &|_| Vec::new(),
    })?;
    let result = rollcage_e2e::caught(|| {
        fleet.setup("shop", "web", "1", false)?;
        let b1 = fleet.dir.path().join("v1");
        write_bundle(&b1, "v1", "1", "")?;
        let r1 = fleet.push("shop", &b1)?;
        let id = fleet.deploy("shop", "web", &r1)?;
        let survivor = fleet.coordinator_k(1)?;
        let watch = fleet.cli_background(
            survivor,
            &["watch", &id, "--output", "json"],
            "watch-survivor",
        )?;
        // In the middle: i1 (the second of four, one at a time) has started its hooks.
        fleet.wait_markers(Duration::from_secs(120), |ms| {
            ms.iter()
                .any(|m| m.instance == "i1" && m.event == "AfterInstall" && m.phase == "start")
        })?;
        fleet.coordinator.proc.kill();
        let killed_at = now_ms();
        fleet.switch_to(1)?;

        let d = fleet.wait_end(&id, Duration::from_secs(120))?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        rollcage_e2e::assert_every_step_ended(&d);
        // Work went on after the kill: i3 ran its steps then.
        let i3_started = d
            .instances
            .iter()
            .find(|i| i.instance == "i3")
            .and_then(|i| i.steps.first())
            .and_then(|s| s.started_at_ms)
            .context("i3 never started")?;
        assert!(i3_started > killed_at, "i3 started before the kill");

        let markers = fleet.markers()?;
        for a in &fleet.agents {
            assert_eq!(
                events_of(&markers, &a.name, &id)?,
                seed_order(None, "v1"),
                "{} ran each event once, in the seed's order",
                a.name
            );
            for (event, _) in seed_order(None, "v1") {
                assert_eq!(
                    starts(&markers, &a.name, &id, &event),
                    1,
                    "{} {event}",
                    a.name
                );
            }
        }

        let (code, out) = watch.wait(Duration::from_secs(30))?;
        assert_eq!(code, 0, "watch against the survivor: {out}");
        let watched: Deployment =
            serde_json::from_str(&out).with_context(|| format!("watch printed `{out}`"))?;
        assert_eq!(
            (watched.id.as_str(), watched.status),
            (id.as_str(), DeploymentStatus::Succeeded)
        );
        Ok(())
    });
    if let Err(e) = &result {
        eprintln!("{e:#}\nfleet kept at {}", fleet.keep().display());
    }
    result
}

/// How long the demo app holds each answer here: a drain of in-flight requests lasts about this long, so the
/// kill lands while the BlockTraffic is running.
const SLOW_APP_MS: u64 = 2_000;

#[test]
fn killing_the_coordinator_running_a_block_traffic_the_survivor_finishes_it_without_failed_requests()
-> anyhow::Result<()> {
    let pg = rollcage_testpg::Server::start()?;
    let n = 4;
    let (ports, _apps) = DemoApps::slots(n)?;
    let pid_files = _apps.0.clone();
    let bin = rollcage_bin()?;
    let mut fleet = Fleet::start_cluster(&ClusterSpec {
        database: &pg.url(),
        coordinators: 2,
        agents: n,
        agent_coordinators: &all_coordinators(2),
        vars: &|i| {
            vec![
                format!("PORT={}", ports[i]),
                format!("ROLLCAGE_BIN={}", bin.display()),
                format!("DEMO_PID={}", pid_files[i].display()),
            ]
        },
    })?;
    let lb = BuiltinLb::start(fleet.dir.path(), &["web"], "web")?;
    let result = rollcage_e2e::caught(|| {
        let servers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        create_lb_group(
            &fleet,
            &LbGroup {
                style: "in-place-lb",
                targets: servers.clone(),
                driver: lb.driver(),
                server_groups: serde_json::json!({ "web": servers }),
                active: None,
                wait_for_continue: false,
            },
        )?;
        let root = fleet.dir.path().to_owned();
        for label in ["v1", "v2"] {
            write_app_bundle_with_delay(&root.join(label), label, "", SLOW_APP_MS)?;
        }
        // v1 brings every instance into traffic.
        let r1 = fleet.push("shop", &root.join("v1"))?;
        let (code, d1) = fleet.deploy_wait("shop", "web", &r1)?;
        assert_eq!(
            (code, d1.status),
            (0, DeploymentStatus::Succeeded),
            "{}",
            d1.message
        );

        // v2 under load; kill whichever coordinator runs i1's BlockTraffic while it drains.
        let load = Load::start(lb.service, 8);
        std::thread::sleep(Duration::from_millis(500));
        let r2 = fleet.push("shop", &root.join("v2"))?;
        let id = fleet.deploy("shop", "web", &r2)?;
        let runner = block_traffic_runner(&fleet, &id, "i1", Duration::from_secs(120))?;
        let killed_at = now_ms();
        if runner == 0 {
            fleet.coordinator.proc.kill();
            fleet.switch_to(1)?;
        } else {
            fleet.cluster.coordinators[runner - 1].proc.kill();
        }
        // It was still draining when it died.
        let at_kill = fleet.status(&id)?;
        let block = |d: &Deployment| {
            d.instances
                .iter()
                .find(|i| i.instance == "i1")
                .and_then(|i| i.steps.iter().find(|s| s.event.name() == "BlockTraffic"))
                .cloned()
        };
        let step = block(&at_kill).context("no BlockTraffic step for i1")?;
        if step.ended_at_ms.is_some_and(|t| t <= killed_at) {
            bail!("i1's BlockTraffic ended before the kill (drain too short to test): {step:?}");
        }

        let d = fleet.wait_end(&id, Duration::from_secs(180))?;
        std::thread::sleep(Duration::from_millis(500));
        let samples = load.finish();
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        rollcage_e2e::assert_every_step_ended(&d);
        let step = block(&d).context("no BlockTraffic step for i1")?;
        assert!(
            step.ended_at_ms.is_some_and(|t| t > killed_at),
            "the survivor finished i1's BlockTraffic: {step:?}"
        );
        for i in 0..n {
            assert_eq!(events(&d, &format!("i{i}")), lb_order(), "v2 i{i}");
        }
        assert_no_failures(&samples, "v2 rollout across the failover")?;
        Ok(())
    });
    if let Err(e) = &result {
        eprintln!("{e:#}\nfleet kept at {}", fleet.keep().display());
    }
    result
}

/// The coordinator (by index) whose log says it started `instance`'s BlockTraffic of deployment `id`
/// (`load-balancer step started`), waiting up to `timeout`.
fn block_traffic_runner(
    fleet: &Fleet,
    id: &str,
    instance: &str,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let logs: Vec<&Path> = (0..=fleet.cluster.coordinators.len())
        .map(|k| fleet.coordinator_k(k).map(|c| c.proc.log.as_path()))
        .collect::<anyhow::Result<_>>()?;
    let start = Instant::now();
    loop {
        for (k, log) in logs.iter().enumerate() {
            let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
            if text.lines().any(|l| {
                l.contains("load-balancer step started")
                    && l.contains(id)
                    && l.contains(&format!("instance={instance}"))
                    && l.contains("event=BlockTraffic")
            }) {
                return Ok(k);
            }
        }
        if start.elapsed() > timeout {
            bail!("no coordinator started {instance}'s BlockTraffic within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `text` without ANSI escape sequences (the coordinator's log colours its field names).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
