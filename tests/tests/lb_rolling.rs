//! Rolling-with-LB and blue/green through the built-in load balancer (`rollcage lb`), with real agents running
//! the sample app (`rollcage demo-app`, slow answers so requests are in flight during every drain) and a load
//! generator sending requests through the LB the whole time. Asserts zero failed requests, the seed's event
//! order per instance, the version served, and that no response came from an instance while it was out of
//! traffic (coordinator step timestamps).

use anyhow::{Context, bail};
use rollcage_e2e::lb::{
    BuiltinLb, DemoApps, HaproxyLb, LbGroup, Load, assert_no_failures, assert_only_registered,
    create_lb_group, events, lb_order, now_ms, out_windows, versions, write_app_bundle,
};
use rollcage_e2e::{Fleet, rollcage_bin};
use rollcage_proto::wire::{Deployment, DeploymentStatus, StepState};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Builtin,
    Haproxy,
}

enum TestLb {
    Builtin(BuiltinLb),
    Haproxy(HaproxyLb),
}

impl TestLb {
    fn driver(&self) -> serde_json::Value {
        match self {
            Self::Builtin(b) => b.driver(),
            Self::Haproxy(h) => h.driver(),
        }
    }

    fn service(&self) -> SocketAddr {
        match self {
            Self::Builtin(b) => b.service,
            Self::Haproxy(h) => h.service,
        }
    }
}

struct Setup {
    fleet: Fleet,
    lb: TestLb,
    ports: Vec<u16>,
    _apps: DemoApps,
}

fn setup(kind: Kind, n: usize, split: bool) -> anyhow::Result<Setup> {
    let (ports, apps) = DemoApps::slots(n)?;
    let pid_files = apps.0.clone();
    let bin = rollcage_bin()?;
    let fleet = Fleet::start_with_vars(n, |i| {
        vec![
            format!("PORT={}", ports[i]),
            format!("ROLLCAGE_BIN={}", bin.display()),
            format!("DEMO_PID={}", pid_files[i].display()),
        ]
    })?;
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    // Rolling: one group `web` of every instance. Blue/green (`split`): blue = first half, green = the rest,
    // `blue` serving.
    let groups: Vec<(&str, Vec<String>)> = if split {
        vec![
            ("blue", (0..n / 2).map(addr).collect()),
            ("green", (n / 2..n).map(addr).collect()),
        ]
    } else {
        vec![("web", (0..n).map(addr).collect())]
    };
    let service_group = groups[0].0;
    let dir = fleet.dir.path();
    let lb = match kind {
        Kind::Builtin => {
            let names: Vec<&str> = groups.iter().map(|(g, _)| *g).collect();
            TestLb::Builtin(BuiltinLb::start(dir, &names, service_group)?)
        }
        Kind::Haproxy => TestLb::Haproxy(HaproxyLb::start(dir, &groups, service_group)?),
    };
    Ok(Setup {
        fleet,
        lb,
        ports,
        _apps: apps,
    })
}

fn create_group(
    s: &Setup,
    style: &str,
    server_groups: serde_json::Value,
    active: Option<&str>,
    wait_for_continue: bool,
) -> anyhow::Result<()> {
    create_lb_group(
        &s.fleet,
        &LbGroup {
            style,
            targets: s.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            driver: s.lb.driver(),
            server_groups,
            active,
            wait_for_continue,
        },
    )
}

fn deploy_ok(s: &Setup, dir: &Path) -> anyhow::Result<Deployment> {
    let rev = s.fleet.push("shop", dir)?;
    let (code, d) = s.fleet.deploy_wait("shop", "web", &rev)?;
    if code != 0 || d.status != DeploymentStatus::Succeeded {
        bail!(
            "deployment {} ended {} ({code}): {}",
            d.id,
            d.status,
            d.message
        );
    }
    Ok(d)
}

#[test]
fn rolling_with_builtin_lb_serves_every_request_and_rolls_back_a_bad_revision() -> anyhow::Result<()>
{
    rolling(Kind::Builtin)
}

#[test]
fn rolling_with_haproxy_serves_every_request_and_rolls_back_a_bad_revision() -> anyhow::Result<()> {
    rolling(Kind::Haproxy)
}

#[test]
fn blue_green_with_builtin_lb_switches_then_rolls_back_without_failed_requests()
-> anyhow::Result<()> {
    blue_green(Kind::Builtin)
}

#[test]
fn blue_green_with_haproxy_switches_then_rolls_back_without_failed_requests() -> anyhow::Result<()>
{
    blue_green(Kind::Haproxy)
}

fn rolling(kind: Kind) -> anyhow::Result<()> {
    let s = setup(kind, 4, false)?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        let servers: Vec<String> = s.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        create_group(
            &s,
            "in-place-lb",
            serde_json::json!({ "web": servers }),
            None,
            false,
        )?;
        let root = s.fleet.dir.path();
        for (label, validate) in [("v1", ""), ("v2", ""), ("v3", "exit 1")] {
            write_app_bundle(&root.join(format!("bundle-{label}")), label, validate)?;
        }
        // v1 brings every instance into traffic (nothing to drain yet).
        let d1 = deploy_ok(&s, &root.join("bundle-v1"))?;
        for i in 0..4 {
            assert_eq!(events(&d1, &format!("i{i}")), lb_order(), "v1 i{i}");
        }

        // v2 rolls through the LB under load.
        let load = Load::start(s.lb.service(), 8);
        std::thread::sleep(Duration::from_millis(500));
        let d2 = deploy_ok(&s, &root.join("bundle-v2"))?;
        std::thread::sleep(Duration::from_millis(500));
        let samples = load.finish();
        assert_no_failures(&samples, "v2 rollout")?;
        // The coordinator's /metrics reads the LB's counters through the driver: at least every request the
        // load generator saw answered went through the group.
        let lb_requests = s
            .fleet
            .metric(r#"rollcage_lb_requests_total{group="shop/web/web"}"#)?
            .context("no LB request counter for shop/web/web in /metrics")?;
        #[allow(clippy::cast_precision_loss)] // a few thousand requests
        let answered = samples.len() as f64;
        assert!(
            lb_requests >= answered,
            "/metrics counts {lb_requests} LB requests, the load generator sent {answered}"
        );
        assert_only_registered(&samples, &out_windows(&d2, None))?;
        for i in 0..4 {
            assert_eq!(events(&d2, &format!("i{i}")), lb_order(), "v2 i{i}");
        }
        let v = versions(&samples);
        assert_eq!(v.first().map(String::as_str), Some("v1"));
        assert_eq!(v.last().map(String::as_str), Some("v2"));

        // v3 fails ValidateService on the first instance: it stays out of traffic, then the automatic
        // rollback (no download, same 13-1 steps) brings it back on v2.
        let load = Load::start(s.lb.service(), 8);
        let rev3 = s.fleet.push("shop", &root.join("bundle-v3"))?;
        let (_, d3) = s.fleet.deploy_wait("shop", "web", &rev3)?;
        assert_eq!(d3.status, DeploymentStatus::Failed, "{}", d3.message);
        assert_eq!(
            events(&d3, "i0"),
            lb_order()[..10],
            "stops at ValidateService"
        );
        let rb_id = d3
            .rollback_deployment
            .clone()
            .context("no automatic rollback")?;
        let rb = s.fleet.wait_end(&rb_id, Duration::from_secs(180))?;
        std::thread::sleep(Duration::from_millis(500));
        let samples = load.finish();
        assert_eq!(rb.status, DeploymentStatus::Succeeded, "{}", rb.message);
        assert_eq!(
            events(&rb, "i0"),
            lb_order()[1..],
            "rollback without download"
        );
        assert_no_failures(&samples, "v3 + rollback")?;
        let d3_now = s.fleet.status(&d3.id)?;
        assert_only_registered(&samples, &out_windows(&d3_now, Some(&rb)))?;
        assert_only_registered(&samples, &out_windows(&rb, None))?;
        // No request was ever answered by v3 (it never got traffic back).
        assert!(!versions(&samples).iter().any(|v| v == "v3"));
        assert_eq!(versions(&samples).last().map(String::as_str), Some("v2"));
        Ok(())
    });
    if result.is_err() {
        eprintln!("kept {}", s.fleet.dir.path().display());
        let Setup { fleet, .. } = s;
        let _ = fleet.keep();
    }
    result
}

/// The server group that answered: `i0`,`i1` are blue, `i2`,`i3` green.
fn colour(body: &str) -> &'static str {
    match body.split_whitespace().nth(1) {
        Some("i0" | "i1") => "blue",
        Some("i2" | "i3") => "green",
        _ => "?",
    }
}

fn blue_green(kind: Kind) -> anyhow::Result<()> {
    let s = setup(kind, 4, true)?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        let addr = |i: usize| format!("127.0.0.1:{}", s.ports[i]);
        create_group(
            &s,
            "blue-green",
            serde_json::json!({ "blue": [addr(0), addr(1)], "green": [addr(2), addr(3)] }),
            Some("blue"),
            true,
        )?;
        let root = s.fleet.dir.path();
        for label in ["v1", "v2"] {
            write_app_bundle(&root.join(format!("bundle-{label}")), label, "")?;
        }
        // `blue` is declared active but empty: the first deployment goes to green, waits, then switches.
        let rev1 = s.fleet.push("shop", &root.join("bundle-v1"))?;
        let (code, d1) = s.fleet.deploy_wait("shop", "web", &rev1)?;
        assert_eq!(code, 0, "{} {}: {}", d1.id, d1.status, d1.message);
        assert_eq!(
            d1.status,
            DeploymentStatus::Ready,
            "waits for continue: {}",
            d1.message
        );
        let names: Vec<&str> = d1.instances.iter().map(|i| i.instance.as_str()).collect();
        assert_eq!(names, ["i2", "i3"], "the idle group only");
        for i in ["i2", "i3"] {
            let ev = events(&d1, i);
            assert_eq!(ev.first().map(String::as_str), Some("DownloadBundle"));
            assert_eq!(ev.last().map(String::as_str), Some("ValidateService"));
            assert_eq!(ev.len(), 7, "no traffic hooks: {ev:?}");
        }
        let (code, out) = s
            .fleet
            .cli(&["continue", &d1.id, "--wait", "--output", "json"])?;
        let d1: Deployment = serde_json::from_str(&out).with_context(|| format!("`{out}`"))?;
        assert_eq!(
            (code, d1.status),
            (0, DeploymentStatus::Succeeded),
            "{}",
            d1.message
        );

        // Under load: v2 goes to blue (idle) while green serves v1; continue switches; a rollback switches back.
        let load = Load::start(s.lb.service(), 8);
        std::thread::sleep(Duration::from_millis(500));
        let rev2 = s.fleet.push("shop", &root.join("bundle-v2"))?;
        let (_, d2) = s.fleet.deploy_wait("shop", "web", &rev2)?;
        assert_eq!(d2.status, DeploymentStatus::Ready, "{}", d2.message);
        let names: Vec<&str> = d2.instances.iter().map(|i| i.instance.as_str()).collect();
        assert_eq!(names, ["i0", "i1"]);
        std::thread::sleep(Duration::from_millis(500));
        let before_switch = now_ms();
        let (_, out) = s
            .fleet
            .cli(&["continue", &d2.id, "--wait", "--output", "json"])?;
        let d2: Deployment = serde_json::from_str(&out).with_context(|| format!("`{out}`"))?;
        assert_eq!(d2.status, DeploymentStatus::Succeeded, "{}", d2.message);
        let switched = d2.ended_at_ms.context("no end time")?;
        std::thread::sleep(Duration::from_millis(800));
        let before_rollback = now_ms();
        let (_, out) = s
            .fleet
            .cli(&["rollback", &d2.id, "--wait", "--output", "json"])?;
        let rb: Deployment = serde_json::from_str(&out).with_context(|| format!("`{out}`"))?;
        assert_eq!(rb.status, DeploymentStatus::Succeeded, "{}", rb.message);
        assert!(
            rb.instances
                .iter()
                .all(|i| i.steps.iter().all(|st| st.state != StepState::Succeeded)),
            "a blue/green rollback runs no agent step"
        );
        let rolled_back = rb.ended_at_ms.context("no end time")?;
        std::thread::sleep(Duration::from_millis(800));
        let samples = load.finish();
        assert_no_failures(&samples, "blue/green switch + rollback")?;
        for smp in &samples {
            let Ok(body) = &smp.result else { continue };
            let (want, why) = if smp.end_ms < before_switch {
                ("green", "before the switch")
            } else if smp.start_ms > switched && smp.end_ms < before_rollback {
                ("blue", "after the switch")
            } else if smp.start_ms > rolled_back {
                ("green", "after the rollback")
            } else {
                continue;
            };
            assert_eq!(
                colour(body),
                want,
                "{body:?} {why} (sent at {})",
                smp.start_ms
            );
            let version = if want == "green" { "v1" } else { "v2" };
            assert!(body.starts_with(version), "{body:?} {why}");
        }
        let v = versions(&samples);
        assert!(
            v.iter().any(|x| x == "v2"),
            "v2 was served after the switch"
        );
        assert_eq!(v.last().map(String::as_str), Some("v1"));
        Ok(())
    });
    if result.is_err() {
        eprintln!("kept {}", s.fleet.dir.path().display());
        let Setup { fleet, .. } = s;
        let _ = fleet.keep();
    }
    result
}
