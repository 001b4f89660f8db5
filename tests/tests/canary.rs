//! Canary deployments and the analysis gate (issue 16) through the built-in load balancer, with real agents
//! running the sample app and a load generator sending requests through the LB the whole time.
//!
//! - blue/green with `[canary]`: a good revision walks 10 → 50 → 100 with no failed request and the share of
//!   answers from the new group within ±5 points of each step's weight; a revision answering 20 % of requests
//!   with 500 is aborted in the first step, traffic back on the old group within `interval_secs` + 1 s, clients
//!   saw < 2 % errors; a revision 300 ms slower is aborted on latency; a coordinator SIGKILLed during a bake
//!   resumes it at the same step and weight, and so does the other coordinator on PostgreSQL when the one driving
//!   the bake dies for good;
//! - the good, the bad and the slow revision and the SIGKILL during a bake against HAProxy too (weights through the
//!   driver's `rand(100)` map rule; latency from HAProxy's averages);
//! - `[[canary.prometheus]]` against a real Prometheus scraping a test app: within `max` it passes, above it aborts;
//! - `in-place-lb` with `[analysis]`, through the built-in LB and through HAProxy: the second instance serving
//!   20 % 500s fails the deployment after it, and the automatic rollback runs.
//!
//! Bakes are short (`interval_secs` 1, `bake_secs` 2): each test takes 15–40 s.

use anyhow::{Context, bail};
use rollcage_e2e::cluster::{ClusterSpec, all_coordinators};
use rollcage_e2e::lb::{
    BuiltinLb, DemoApps, Faults, HaproxyLb, LbGroup, Load, Sample, create_lb_group_with, now_ms,
    write_app_bundle_with_faults,
};
use rollcage_e2e::{Fleet, rollcage_bin};
use rollcage_proto::bake::{BakePhase, BakeProgress, Outcome};
use rollcage_proto::wire::{Deployment, DeploymentStatus, InstanceStatus, StepState};
use std::time::{Duration, Instant};

/// The app's own delay: short, so the load generator makes a few hundred requests a second.
const DELAY_MS: u64 = 20;
/// Load generator threads.
const WORKERS: usize = 16;
const INTERVAL_SECS: u64 = 1;

fn thresholds() -> serde_json::Value {
    serde_json::json!({
        "bake_secs": 2,
        "interval_secs": INTERVAL_SECS,
        "min_requests": 10,
        "max_error_rate": 0.05,
        // Generous: p99 of a 10 % share (a few dozen requests) on a loaded 2-core machine is noisy; the slow
        // revision is 10× slower.
        "max_p99_ratio": 3.0,
        "failure_limit": 0,
    })
}

struct Setup {
    fleet: Fleet,
    lb: TestLb,
    ports: Vec<u16>,
    _apps: DemoApps,
}

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

    fn service(&self) -> std::net::SocketAddr {
        match self {
            Self::Builtin(b) => b.service,
            Self::Haproxy(h) => h.service,
        }
    }
}

fn setup(n: usize, groups: &[(&str, Vec<usize>)]) -> anyhow::Result<Setup> {
    setup_with(Kind::Builtin, n, groups)
}

fn setup_with(kind: Kind, n: usize, groups: &[(&str, Vec<usize>)]) -> anyhow::Result<Setup> {
    setup_in(kind, n, groups, None)
}

/// The set-up with one coordinator on SQLite, or (`database`) two coordinators on that PostgreSQL database, each
/// agent given both.
fn setup_in(
    kind: Kind,
    n: usize,
    groups: &[(&str, Vec<usize>)],
    database: Option<&str>,
) -> anyhow::Result<Setup> {
    let (ports, apps) = DemoApps::slots(n)?;
    let pid_files = apps.0.clone();
    let bin = rollcage_bin()?;
    let vars = |i: usize| {
        vec![
            format!("PORT={}", ports[i]),
            format!("ROLLCAGE_BIN={}", bin.display()),
            format!("DEMO_PID={}", pid_files[i].display()),
        ]
    };
    let fleet = match database {
        None => Fleet::start_with_vars(n, vars)?,
        Some(database) => Fleet::start_cluster(&ClusterSpec {
            database,
            coordinators: 2,
            agents: n,
            agent_coordinators: &all_coordinators(2),
            vars: &vars,
        })?,
    };
    let names: Vec<&str> = groups.iter().map(|(g, _)| *g).collect();
    let lb = match kind {
        Kind::Builtin => TestLb::Builtin(BuiltinLb::start(fleet.dir.path(), &names, names[0])?),
        Kind::Haproxy => {
            let members: Vec<(&str, Vec<String>)> = groups
                .iter()
                .map(|(g, idx)| {
                    (
                        *g,
                        idx.iter()
                            .map(|i| format!("127.0.0.1:{}", ports[*i]))
                            .collect(),
                    )
                })
                .collect();
            TestLb::Haproxy(HaproxyLb::start(fleet.dir.path(), &members, names[0])?)
        }
    };
    Ok(Setup {
        fleet,
        lb,
        ports,
        _apps: apps,
    })
}

impl Setup {
    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    fn create_group(
        &self,
        style: &str,
        server_groups: serde_json::Value,
        active: Option<&str>,
        extra: serde_json::Value,
    ) -> anyhow::Result<()> {
        create_lb_group_with(
            &self.fleet,
            &LbGroup {
                style,
                targets: (0..self.ports.len()).map(|i| self.addr(i)).collect(),
                driver: self.lb.driver(),
                server_groups,
                active,
                wait_for_continue: false,
            },
            extra,
        )
    }

    /// A `blue-green` group — blue (agents 0 and 1) serving, green (2 and 3) — with `[canary]` steps 10/50/100 at
    /// [`thresholds`].
    fn create_canary_group(&self) -> anyhow::Result<()> {
        let members =
            |idx: &[usize]| -> Vec<String> { idx.iter().map(|i| self.addr(*i)).collect() };
        let mut cfg = thresholds();
        cfg["steps"] = serde_json::json!([10, 50, 100]);
        self.create_group(
            "blue-green",
            serde_json::json!({ "blue": members(&[0, 1]), "green": members(&[2, 3]) }),
            Some("blue"),
            serde_json::json!({ "canary": cfg }),
        )
    }

    fn push(&self, label: &str, delay_ms: u64, faults: &Faults<'_>) -> anyhow::Result<String> {
        let dir = self.fleet.dir.path().join(format!("bundle-{label}"));
        write_app_bundle_with_faults(&dir, label, "", delay_ms, faults)?;
        self.fleet.push("shop", &dir)
    }

    fn deploy(&self, rev: &str) -> anyhow::Result<Deployment> {
        Ok(self.fleet.deploy_wait("shop", "web", rev)?.1)
    }
}

fn keep_on_failure(s: Setup, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if result.is_err() {
        eprintln!("kept {}", s.fleet.dir.path().display());
        let Setup { fleet, .. } = s;
        let _ = fleet.keep();
    }
    result
}

/// The deployment's canary.
fn canary(d: &Deployment) -> anyhow::Result<&BakeProgress> {
    d.bakes
        .iter()
        .find(|b| b.instance.is_none())
        .with_context(|| format!("deployment {} has no canary: {}", d.id, d.message))
}

/// Which instance answered (`<version> <instance>`).
fn served_by(body: &str) -> &str {
    body.split_whitespace().nth(1).unwrap_or("")
}

fn errors(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.result.is_err()).count()
}

/// A good canary's steps 10/50/100: every verdict of a step passed at that step's weight, and the share of the
/// answers during the step from the new group (recognised by `is_new`) is within ±5 points of the weight.
fn each_step_passes_at_its_weight(
    c: &BakeProgress,
    samples: &[Sample],
    is_new: &dyn Fn(&str) -> bool,
) {
    for (step, weight) in [(0, 10.0), (1, 50.0), (2, 100.0)] {
        let vs: Vec<_> = c.verdicts.iter().filter(|v| v.step == step).collect();
        assert!(
            vs.iter()
                .all(|v| matches!(v.outcome, Outcome::Pass)
                    && f64::from(v.weight.percent()) == weight),
            "step {step}: {vs:?}"
        );
        let from = vs.iter().map(|v| v.start_unix_ms).min().unwrap_or(0);
        let to = vs.iter().map(|v| v.end_unix_ms).max().unwrap_or(0);
        let during: Vec<&str> = samples
            .iter()
            .filter(|x| x.start_ms as u64 >= from && x.end_ms as u64 <= to)
            .filter_map(|x| x.result.as_deref().ok())
            .collect();
        let seen = share(during.iter().filter(|b| is_new(b)).count(), during.len());
        assert!(
            during.len() >= 50 && (seen - weight).abs() <= 5.0,
            "step {step}: {seen:.1} % of {} answers from the new group, weight {weight} %",
            during.len()
        );
    }
}

#[allow(clippy::cast_precision_loss)] // a few thousand requests
fn share(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// Deploy revision `label`, whose app answers 20 % of requests with a 500, under load: the canary aborts it in its
/// first step (weight 0, the message naming step and threshold), nothing answers from the new group (whose answers
/// `is_new_group` recognises) and no request fails later than `interval_secs` + 1 s after the failing interval's
/// end, clients saw under 2 % errors, and the automatic rollback succeeds. The deployment.
fn bad_canary_is_aborted_in_its_first_step(
    s: &Setup,
    label: &str,
    is_new_group: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Deployment> {
    let load = Load::start(s.lb.service(), WORKERS);
    std::thread::sleep(Duration::from_millis(300));
    let bad = Faults {
        fail_percent: 20,
        only_on: None,
    };
    let d = s.deploy(&s.push(label, DELAY_MS, &bad)?)?;
    let rb = s.fleet.wait_end(
        d.rollback_deployment
            .as_deref()
            .context("no automatic rollback")?,
        Duration::from_secs(60),
    )?;
    std::thread::sleep(Duration::from_millis(2500));
    let samples = load.finish();
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    assert!(
        d.message.contains("canary aborted at step 1 of 3") && d.message.contains("max_error_rate"),
        "the message names the step, interval, figures and threshold: {}",
        d.message
    );
    assert_eq!(rb.status, DeploymentStatus::Succeeded, "{}", rb.message);
    let c = canary(&d)?;
    assert_eq!(c.state.phase, BakePhase::Aborted);
    assert_eq!(c.state.weight.percent(), 0);
    let failing = c.verdicts.last().context("no verdict")?;
    assert_eq!((failing.step, failing.outcome.label()), (0, "fail"));
    let back_by = failing.end_unix_ms + (INTERVAL_SECS + 1) * 1000;
    let late: Vec<_> = samples
        .iter()
        .filter(|x| x.start_ms as u64 > back_by)
        .filter(|x| x.result.as_deref().map_or(true, is_new_group))
        .collect();
    assert!(
        late.is_empty(),
        "answers from the aborted group (or errors) after {back_by}: {} e.g. {:?}",
        late.len(),
        late.first()
    );
    let rate = share(errors(&samples), samples.len());
    assert!(
        rate < 2.0 && samples.len() > 200,
        "{rate:.2} % of {} requests failed",
        samples.len()
    );
    Ok(d)
}

/// What happens to the coordinator driving the bake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// SIGKILLed and started again on its own database.
    Restart,
    /// SIGKILLed for good; the other coordinator on the same PostgreSQL database takes the deployment over.
    Failover,
}

/// Deploy good revision `label` (steps 10/50/100, two intervals each) under load, SIGKILL the coordinator in the
/// 50 % step (`kill`: restart it, or leave it dead for the other one): the bake resumes at the same step and
/// weight, no interval is judged twice, no step baked again, and no request fails.
fn resumes_after_a_kill(s: &mut Setup, label: &str, kill: Kill) -> anyhow::Result<()> {
    let load = Load::start(s.lb.service(), WORKERS);
    let rev5 = s.push(label, DELAY_MS, &Faults::default())?;
    let id = s.fleet.deploy("shop", "web", &rev5)?;
    let begin = Instant::now();
    let before = loop {
        let d = s.fleet.status(&id)?;
        if let Ok(c) = canary(&d)
            && c.state.step == 1
            && c.state.intervals_in_step == 1
        {
            break c.clone();
        }
        if d.status.is_terminal() || begin.elapsed() > Duration::from_secs(60) {
            bail!(
                "the canary never reached its second step: {} {}",
                d.status,
                d.message
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let weight = s.fleet.metric(&format!(
        r#"rollcage_canary_weight_percent{{application="shop",group="web",deployment="{id}"}}"#
    ))?;
    assert_eq!(
        weight,
        Some(50.0),
        "/metrics shows the running canary's weight"
    );
    match kill {
        Kill::Restart => s
            .fleet
            .coordinator
            .kill_and_restart(Duration::from_millis(300))?,
        Kill::Failover => {
            s.fleet.coordinator.proc.kill();
            s.fleet.switch_to(1)?;
        }
    }
    let after = canary(&s.fleet.status(&id)?)?.clone();
    assert_eq!(
        (after.state.step, after.state.weight),
        (1, before.state.weight),
        "resumed at the same step and weight"
    );
    assert!(after.state.intervals >= before.state.intervals);
    let d5 = s.fleet.wait_end(&id, Duration::from_secs(60))?;
    let samples = load.finish();
    assert_eq!(d5.status, DeploymentStatus::Succeeded, "{}", d5.message);
    let c5 = canary(&d5)?;
    let numbers: Vec<u32> = c5.verdicts.iter().map(|v| v.interval).collect();
    assert_eq!(
        numbers,
        (1..=6).collect::<Vec<u32>>(),
        "no interval judged twice"
    );
    let steps: Vec<usize> = c5.verdicts.iter().map(|v| v.step).collect();
    assert_eq!(steps, [0, 0, 1, 1, 2, 2], "no step baked again");
    assert_eq!(c5.verdicts[3].weight, before.state.weight);
    assert_eq!(errors(&samples), 0, "the restart fails no request");
    Ok(())
}

/// Deploy revision `label`, 300 ms slower on every request, under load: the canary aborts it on latency alone,
/// the automatic rollback succeeds and no request fails. The deployment.
fn slow_canary_is_aborted_on_latency(s: &Setup, label: &str) -> anyhow::Result<Deployment> {
    let load = Load::start(s.lb.service(), WORKERS);
    let d = s.deploy(&s.push(label, DELAY_MS + 300, &Faults::default())?)?;
    let rb = s.fleet.wait_end(
        d.rollback_deployment
            .as_deref()
            .context("no automatic rollback")?,
        Duration::from_secs(60),
    )?;
    let samples = load.finish();
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    assert_eq!(rb.status, DeploymentStatus::Succeeded, "{}", rb.message);
    assert!(
        d.message.contains("max_p99_ratio") && !d.message.contains("max_error_rate"),
        "aborted on latency: {}",
        d.message
    );
    assert_eq!(errors(&samples), 0, "a slow canary fails no request");
    Ok(d)
}

#[test]
fn blue_green_canary_walks_good_revisions_and_aborts_bad_and_slow_ones_and_resumes_after_a_kill()
-> anyhow::Result<()> {
    let mut s = setup(4, &[("blue", vec![0, 1]), ("green", vec![2, 3])])?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        s.create_canary_group()?;
        let is_green = |body: &str| matches!(served_by(body), "i2" | "i3");
        let ok = Faults::default();

        // v1 goes to green (blue is declared active but empty) with no traffic: every interval has no verdict.
        let d1 = s.deploy(&s.push("v1", DELAY_MS, &ok)?)?;
        assert_eq!(d1.status, DeploymentStatus::Succeeded, "{}", d1.message);
        let c1 = canary(&d1)?;
        assert_eq!(c1.state.phase, BakePhase::Done);
        assert!(
            c1.verdicts
                .iter()
                .all(|v| matches!(v.outcome, Outcome::NoVerdict { .. })),
            "no traffic, no verdict: {:?}",
            c1.verdicts
        );

        // v2 (good) to blue under load: 10 → 50 → 100, no failed request, the observed share at each weight.
        let load = Load::start(s.lb.service(), WORKERS);
        std::thread::sleep(Duration::from_millis(300));
        let d2 = s.deploy(&s.push("v2", DELAY_MS, &ok)?)?;
        std::thread::sleep(Duration::from_millis(300));
        let samples = load.finish();
        assert_eq!(d2.status, DeploymentStatus::Succeeded, "{}", d2.message);
        assert_eq!(errors(&samples), 0, "a good canary fails no request");
        let c2 = canary(&d2)?;
        assert_eq!(c2.steps, [10, 50, 100]);
        assert_eq!(
            c2.verdicts.len(),
            6,
            "2 intervals × 3 steps: {:?}",
            c2.verdicts
        );
        // The new group is blue this time.
        each_step_passes_at_its_weight(c2, &samples, &|b| !is_green(b));

        let passes = s
            .fleet
            .metric(r#"rollcage_analysis_verdicts_total{result="pass"}"#)?
            .context("no verdict counter in /metrics")?;
        assert!(passes >= 6.0, "{passes} passing verdicts counted");

        // v3 answers 20 % of requests with a 500: aborted in the first step, back on blue within
        // interval_secs + 1 s of the failing interval's end, < 2 % errors seen by clients.
        let d3 = bad_canary_is_aborted_in_its_first_step(&s, "v3", &is_green)?;

        // v4 is 300 ms slower on every request: aborted on latency.
        slow_canary_is_aborted_on_latency(&s, "v4")?;
        // What an operator reads after the fact: every verdict with its step, weight and both groups' figures (the
        // live "step N/M: W % of traffic" lines are the progress unit tests').
        let (_, watched) = s.fleet.cli(&["watch", &d3.id])?;
        for want in [
            "canary step 1/3 at 10 % interval 1: FAIL (error rate",
            "; old: ",
            "p99 ",
        ] {
            assert!(watched.contains(want), "`{want}` not in:\n{watched}");
        }

        // v5 (good): SIGKILL the coordinator during the 50 % step; the restarted one resumes there.
        resumes_after_a_kill(&mut s, "v5", Kill::Restart)?;
        Ok(())
    });
    keep_on_failure(s, result)
}

#[test]
fn in_place_lb_analysis_stops_after_the_instance_serving_errors_and_rolls_back()
-> anyhow::Result<()> {
    analysis_stops_after_the_bad_instance(Kind::Builtin)
}

/// The same gate against HAProxy: each server's figures from its own `show stat` line (latency: averages).
#[test]
fn haproxy_in_place_lb_analysis_stops_after_the_instance_serving_errors_and_rolls_back()
-> anyhow::Result<()> {
    analysis_stops_after_the_bad_instance(Kind::Haproxy)
}

/// An `in-place-lb` group with `[analysis]` through `kind`: a good revision passes every instance's gate; a revision
/// whose second instance answers 20 % 500s fails the deployment after that instance (the later ones never start)
/// and the automatic rollback succeeds.
fn analysis_stops_after_the_bad_instance(kind: Kind) -> anyhow::Result<()> {
    let s = setup_with(kind, 4, &[("web", vec![0, 1, 2, 3])])?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        let servers: Vec<String> = (0..4).map(|i| s.addr(i)).collect();
        s.create_group(
            "in-place-lb",
            serde_json::json!({ "web": servers }),
            None,
            serde_json::json!({ "analysis": thresholds() }),
        )?;
        let d1 = s.deploy(&s.push("v1", DELAY_MS, &Faults::default())?)?;
        assert_eq!(d1.status, DeploymentStatus::Succeeded, "{}", d1.message);
        assert_eq!(d1.bakes.len(), 4, "one analysis per instance");

        let load = Load::start(s.lb.service(), WORKERS);
        let bad = Faults {
            fail_percent: 20,
            only_on: Some("i1"),
        };
        let started = now_ms();
        let d2 = s.deploy(&s.push("v2", DELAY_MS, &bad)?)?;
        let rb = s.fleet.wait_end(
            d2.rollback_deployment
                .as_deref()
                .context("no automatic rollback")?,
            Duration::from_secs(90),
        )?;
        let _ = load.finish();
        assert_eq!(d2.status, DeploymentStatus::Failed, "{}", d2.message);
        let status = |i: &str| {
            d2.instances
                .iter()
                .find(|x| x.instance == i)
                .map(|x| x.status)
        };
        assert_eq!(status("i0"), Some(InstanceStatus::Succeeded));
        assert_eq!(status("i1"), Some(InstanceStatus::Failed));
        for i in ["i2", "i3"] {
            let inst = d2.instances.iter().find(|x| x.instance == i).context(i)?;
            assert!(
                inst.steps.iter().all(|st| st.state != StepState::Succeeded),
                "{i} never started after the failing instance"
            );
        }
        let i1 = d2
            .bakes
            .iter()
            .find(|b| b.instance.as_deref() == Some("i1"))
            .context("no analysis of i1")?;
        assert_eq!(i1.state.phase, BakePhase::Aborted);
        assert!(
            i1.verdicts
                .iter()
                .any(|v| v.start_unix_ms >= started as u64 && v.outcome.label() == "fail"),
            "{:?}",
            i1.verdicts
        );
        assert_eq!(rb.status, DeploymentStatus::Succeeded, "{}", rb.message);
        Ok(())
    });
    keep_on_failure(s, result)
}

/// The good and the bad revision against HAProxy: weights through the driver's `rand(100)` map rule, figures from
/// `show stat` counter differences (latency: HAProxy's averages).
#[test]
fn haproxy_canary_walks_a_good_revision_aborts_a_bad_and_a_slow_one_and_resumes_after_a_kill()
-> anyhow::Result<()> {
    let mut s = setup_with(
        Kind::Haproxy,
        4,
        &[("blue", vec![0, 1]), ("green", vec![2, 3])],
    )?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        s.create_canary_group()?;
        let is_green = |body: &str| matches!(served_by(body), "i2" | "i3");
        let ok = Faults::default();
        let d1 = s.deploy(&s.push("v1", DELAY_MS, &ok)?)?;
        assert_eq!(d1.status, DeploymentStatus::Succeeded, "{}", d1.message);

        let load = Load::start(s.lb.service(), WORKERS);
        std::thread::sleep(Duration::from_millis(300));
        let d2 = s.deploy(&s.push("v2", DELAY_MS, &ok)?)?;
        std::thread::sleep(Duration::from_millis(300));
        let samples = load.finish();
        assert_eq!(d2.status, DeploymentStatus::Succeeded, "{}", d2.message);
        assert_eq!(errors(&samples), 0, "a good canary fails no request");
        let c2 = canary(&d2)?;
        assert!(
            c2.verdicts
                .iter()
                .all(|v| v.latency_is_average || v.new.latency_ms.is_none())
        );
        each_step_passes_at_its_weight(c2, &samples, &|b| !is_green(b));

        bad_canary_is_aborted_in_its_first_step(&s, "v3", &is_green)?;

        // v4 (good): SIGKILL the coordinator during the 50 % step; the restarted one resumes there, the weight
        // still in HAProxy's map.
        resumes_after_a_kill(&mut s, "v4", Kill::Restart)?;

        // v5 is 300 ms slower on every request: aborted on latency (HAProxy's figure is the average response
        // time, judged against the same `max_p99_ratio`). Last: HAProxy averages a server's last 1,024 requests,
        // so a slow revision's figures linger on its servers for a while after it was aborted.
        let d5 = slow_canary_is_aborted_on_latency(&s, "v5")?;
        assert!(
            canary(&d5)?.verdicts.iter().all(|v| v.latency_is_average),
            "HAProxy's latency is an average, and the verdicts say so"
        );
        Ok(())
    });
    keep_on_failure(s, result)
}

/// A test app's `/metrics` (one gauge the test sets), served until the test ends.
fn metrics_app(value: std::sync::Arc<std::sync::atomic::AtomicU64>) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = format!(
                "# TYPE test_app_errors gauge\ntest_app_errors {}\n",
                value.load(std::sync::atomic::Ordering::Relaxed)
            );
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

/// Two coordinators on PostgreSQL: the one driving a canary is SIGKILLed in the 50 % step and stays dead; the other
/// takes the deployment over (its engine lease lapses in at most 6 s) and finishes the same bake from that step
/// and weight, with no interval judged twice and no failed request.
#[test]
fn on_postgresql_a_canary_outlives_the_coordinator_driving_it() -> anyhow::Result<()> {
    let pg = rollcage_testpg::Server::start()?;
    let mut s = setup_in(
        Kind::Builtin,
        4,
        &[("blue", vec![0, 1]), ("green", vec![2, 3])],
        Some(&pg.url()),
    )?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        s.create_canary_group()?;
        let d1 = s.deploy(&s.push("v1", DELAY_MS, &Faults::default())?)?;
        assert_eq!(d1.status, DeploymentStatus::Succeeded, "{}", d1.message);
        resumes_after_a_kill(&mut s, "v2", Kill::Failover)
    });
    keep_on_failure(s, result)
}

/// `[[canary.prometheus]]` against a real Prometheus (Debian's `prometheus`, installed by `scripts/setup.sh`)
/// scraping a test app every second: a check within its `max` lets the canary through; the same check above it
/// aborts the next canary at its first interval, naming the query, its value and the threshold.
#[test]
fn a_prometheus_check_lets_a_canary_through_then_aborts_one() -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let s = setup(4, &[("blue", vec![0, 1]), ("green", vec![2, 3])])?;
    let result = rollcage_e2e::caught(|| -> anyhow::Result<()> {
        let errors_now = Arc::new(AtomicU64::new(0));
        let app = metrics_app(errors_now.clone())?;
        let dir = s.fleet.dir.path();
        let prom_port = rollcage_e2e::lb::free_port()?;
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{app}']\n"
            ),
        )?;
        let mut cmd = std::process::Command::new("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
        let _prom = rollcage_e2e::Proc::spawn(cmd, &dir.join("prometheus.log"))?;
        let prom = format!("127.0.0.1:{prom_port}").parse()?;
        // Ready once it has scraped the app: the query has a sample.
        let begin = Instant::now();
        loop {
            let asked = rollcage_e2e::lb::get_path(prom, "/api/v1/query?query=test_app_errors");
            if asked.is_ok_and(|b| b.contains("\"value\"")) {
                break;
            }
            if begin.elapsed() > Duration::from_secs(30) {
                bail!(
                    "prometheus never scraped the test app; see {}",
                    dir.join("prometheus.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut cfg = thresholds();
        cfg["steps"] = serde_json::json!([50, 100]);
        cfg["prometheus"] = serde_json::json!([{
            "url": format!("http://127.0.0.1:{prom_port}"),
            "query": "max(test_app_errors)",
            "max": 0.5,
        }]);
        s.create_group(
            "blue-green",
            serde_json::json!({ "blue": [s.addr(0), s.addr(1)], "green": [s.addr(2), s.addr(3)] }),
            Some("blue"),
            serde_json::json!({ "canary": cfg }),
        )?;
        let ok = Faults::default();
        let d1 = s.deploy(&s.push("v1", DELAY_MS, &ok)?)?;
        assert_eq!(d1.status, DeploymentStatus::Succeeded, "{}", d1.message);
        errors_now.store(3, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2500));
        let d2 = s.deploy(&s.push("v2", DELAY_MS, &ok)?)?;
        assert_eq!(d2.status, DeploymentStatus::Failed, "{}", d2.message);
        assert!(
            d2.message
                .contains("prometheus[0] `max(test_app_errors)` = 3 > max 0.5"),
            "{}",
            d2.message
        );
        assert_eq!(
            canary(&d2)?.verdicts.len(),
            1,
            "aborted at its first interval"
        );
        Ok(())
    });
    keep_on_failure(s, result)
}
