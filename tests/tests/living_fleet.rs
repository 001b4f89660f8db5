//! A living fleet with real agents and a real coordinator (issue 15): a group that selects its instances by tags,
//! hosts that join later and catch up by themselves (no deploy command), a host whose tags no group matches, an
//! agent restart that does not redeploy, an `in-place-lb` catch-up under live traffic that joins the load
//! balancer only at its AllowTraffic, and on a blue/green group a host of the serving group that catches up behind
//! the LB while a host of the standby group waits for the next deployment.

use anyhow::Context;
use rollcage_e2e::lb::{
    BuiltinLb, DemoApps, Load, assert_no_failures, assert_only_registered, served_by, versions,
    write_app_bundle,
};
use rollcage_e2e::{Fleet, caught, read_markers, wait_for_line, write_bundle};
use rollcage_proto::wire::{Deployment, DeploymentStatus};
use std::time::Duration;

/// Push `bundle` to app `shop` and deploy it to group `web`, which must succeed: the revision and the deployment.
fn pushed_and_deployed(
    fleet: &Fleet,
    bundle: &std::path::Path,
) -> anyhow::Result<(String, Deployment)> {
    let rev = fleet.push("shop", bundle)?;
    let (code, d) = fleet.deploy_wait("shop", "web", &rev)?;
    anyhow::ensure!(
        code == 0 && d.status == DeploymentStatus::Succeeded,
        "deployment {} ended {} ({code}): {}",
        d.id,
        d.status,
        d.message
    );
    Ok((rev, d))
}

fn tags(pairs: &[&str]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|p| ["--tag".to_owned(), (*p).to_owned()])
        .collect()
}

#[test]
fn newcomers_with_matching_tags_catch_up_others_get_nothing_and_a_restart_does_not_redeploy()
-> anyhow::Result<()> {
    let mut fleet = Fleet::start(0)?;
    let result = caught(|| {
        let web = tags(&["env=prod", "role=web"]);
        fleet.add_agent(vec![], web.clone())?;
        fleet.cli(&["app", "create", "shop"])?;
        let (code, out) = fleet.cli(&[
            "group",
            "create",
            "--app",
            "shop",
            "web",
            "--style",
            "in-place",
            "--concurrency",
            "all",
            "--tags",
            "env=prod,role=web",
        ])?;
        assert_eq!(code, 0, "{out}");
        let bundle = fleet.dir.path().join("bundle-v1");
        write_bundle(&bundle, "v1", "0", "")?;
        let (rev, d1) = pushed_and_deployed(&fleet, &bundle)?;
        assert_eq!(d1.instances.len(), 1);

        // A new host with the group's tags: it gets v1 with no deploy command.
        let newcomer = fleet.add_agent(vec![], web.clone())?;
        let c = fleet.catch_up_of("i1")?;
        let c = fleet.wait_end(&c.id, Duration::from_secs(120))?;
        assert_eq!(c.status, DeploymentStatus::Succeeded, "{}", c.message);
        assert_eq!(c.revision, rev);
        let ran: Vec<String> = read_markers(&fleet.markers)?
            .into_iter()
            .filter(|m| m.instance == "i1" && m.phase == "end")
            .map(|m| format!("{} {}", m.event, m.label))
            .collect();
        assert_eq!(
            ran,
            [
                "BeforeInstall v1",
                "AfterInstall v1",
                "ApplicationStart v1",
                "ValidateService v1"
            ],
            "the newcomer ran v1's hooks (no ApplicationStop: nothing was installed before)"
        );

        // A host whose tags no group matches gets nothing.
        let db = fleet.add_agent(vec![], tags(&["env=prod", "role=db"]))?;
        wait_for_line(
            &fleet.agents[db].proc.log,
            "said hello",
            0,
            Duration::from_secs(30),
        )?;
        // The newcomer's agent restarts: it has v1 installed, so nothing is deployed again.
        let log = fleet.agents[newcomer].proc.log.clone();
        let before = std::fs::metadata(&log)?.len();
        fleet.kill_and_restart_agent(newcomer, Duration::from_millis(100))?;
        wait_for_line(
            &log,
            "said hello: nothing to catch up",
            before,
            Duration::from_secs(30),
        )?;
        let all = fleet.deployments()?;
        assert_eq!(
            all.len(),
            2,
            "v1 and one catch-up: {:?}",
            all.iter().map(|d| &d.kind).collect::<Vec<_>>()
        );
        assert!(
            !read_markers(&fleet.markers)?
                .iter()
                .any(|m| m.instance == "i2"),
            "the db host ran no hook"
        );
        let (_, list) = fleet.cli(&["instances"])?;
        assert!(list.contains("env=prod,role=web"), "{list}");
        assert!(list.contains(&format!("shop/web: {rev}")), "{list}");
        Ok(())
    });
    if result.is_err() {
        let _ = fleet.keep();
    }
    result
}

#[test]
fn an_in_place_lb_newcomer_joins_traffic_only_at_its_allow_traffic() -> anyhow::Result<()> {
    let (ports, apps) = DemoApps::slots(3)?;
    let mut fleet = Fleet::start(0)?;
    let lb = BuiltinLb::start(fleet.dir.path(), &["web"], "web")?;
    let result = caught(|| {
        let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
        let vars = |i: usize| apps.agent_vars(&ports, i);
        let web = tags(&["role=web"]);
        for i in 0..2 {
            fleet.add_agent(vars(i)?, web.clone())?;
        }
        // Targets for three hosts; the group selects by tags, so the third is in it once its agent starts.
        let settings = serde_json::json!({
            "targets": {"i0": addr(0), "i1": addr(1), "i2": addr(2)},
            "lb": {
                "service": "app1",
                "driver": lb.driver(),
                "server_groups": {"web": [addr(0), addr(1), addr(2)]},
                "drain_timeout_secs": 20,
                "register_timeout_secs": 20,
            }
        });
        let file = fleet.dir.path().join("group-lb.json");
        std::fs::write(&file, serde_json::to_string_pretty(&settings)?)?;
        fleet.cli(&["app", "create", "shop"])?;
        let (code, out) = fleet.cli(&[
            "group",
            "create",
            "--app",
            "shop",
            "web",
            "--style",
            "in-place-lb",
            "--concurrency",
            "1",
            "--tags",
            "role=web",
            "--lb",
            &file.display().to_string(),
        ])?;
        assert_eq!(code, 0, "{out}");
        let bundle = fleet.dir.path().join("bundle-v1");
        write_app_bundle(&bundle, "v1", "")?;
        pushed_and_deployed(&fleet, &bundle)?;

        // Live traffic while a third host joins and catches up.
        let load = Load::start(lb.service, 8);
        std::thread::sleep(Duration::from_millis(300));
        fleet.add_agent(vars(2)?, web.clone())?;
        let c = fleet.catch_up_of("i2")?;
        let c = fleet.wait_end(&c.id, Duration::from_secs(120))?;
        // Long enough after its AllowTraffic for the newcomer to have served.
        std::thread::sleep(Duration::from_millis(800));
        let samples = load.finish();
        assert_eq!(c.status, DeploymentStatus::Succeeded, "{}", c.message);
        assert_no_failures(&samples, "catch-up under load")?;
        let allow = c.instances[0]
            .steps
            .iter()
            .find(|s| s.event.name() == "AllowTraffic")
            .and_then(|s| s.started_at_ms)
            .context("the catch-up ran AllowTraffic")?;
        // No answer from the newcomer before its AllowTraffic started.
        assert_only_registered(&samples, &[("i2".to_owned(), 0, allow)])?;
        assert!(
            served_by(&samples, "i2") > 0,
            "the newcomer served no request after joining"
        );
        assert!(versions(&samples).iter().all(|v| v == "v1"));
        Ok(())
    });
    if result.is_err() {
        let _ = fleet.keep();
    }
    result
}

#[test]
fn a_blue_green_newcomer_of_the_serving_group_catches_up_behind_the_lb_one_of_the_standby_waits()
-> anyhow::Result<()> {
    let (ports, apps) = DemoApps::slots(4)?;
    let mut fleet = Fleet::start(0)?;
    let lb = BuiltinLb::start(fleet.dir.path(), &["blue", "green"], "blue")?;
    let result = caught(|| {
        let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
        let vars = |i: usize| apps.agent_vars(&ports, i);
        let web = tags(&["role=web"]);
        // The group's LB settings with hosts `0..n`: even ones in blue, odd ones in green.
        let dir = fleet.dir.path().to_owned();
        let settings_file = |n: usize| -> anyhow::Result<String> {
            let targets: serde_json::Map<String, serde_json::Value> =
                (0..n).map(|i| (format!("i{i}"), addr(i).into())).collect();
            let of = |parity: usize| -> Vec<String> {
                (0..n).filter(|i| i % 2 == parity).map(addr).collect()
            };
            let settings = serde_json::json!({
                "targets": targets,
                "active_group": "blue",
                "lb": {
                    "service": "app1",
                    "driver": lb.driver(),
                    "server_groups": {"blue": of(0), "green": of(1)},
                    "drain_timeout_secs": 20,
                    "register_timeout_secs": 20,
                }
            });
            let file = dir.join(format!("group-lb-{n}.json"));
            std::fs::write(&file, serde_json::to_string_pretty(&settings)?)?;
            Ok(file.display().to_string())
        };
        for i in 0..2 {
            fleet.add_agent(vars(i)?, web.clone())?;
        }
        fleet.cli(&["app", "create", "shop"])?;
        let (code, out) = fleet.cli(&[
            "group",
            "create",
            "--app",
            "shop",
            "web",
            "--style",
            "blue-green",
            "--concurrency",
            "all",
            "--tags",
            "role=web",
            "--lb",
            &settings_file(2)?,
        ])?;
        assert_eq!(code, 0, "{out}");
        // v1 goes to the idle green group (i1) and traffic switches to it: green serves.
        let bundle = fleet.dir.path().join("bundle-v1");
        write_app_bundle(&bundle, "v1", "")?;
        let (rev, d1) = pushed_and_deployed(&fleet, &bundle)?;
        assert_eq!(d1.instances.len(), 1, "only the idle group's host");

        let load = Load::start(lb.service, 8);
        std::thread::sleep(Duration::from_millis(300));
        // The fleet grows by two hosts (as autoscaling would): i2 in blue, the standby, and i3 in green.
        let (code, out) = fleet.cli(&[
            "group",
            "update",
            "--app",
            "shop",
            "web",
            "--lb",
            &settings_file(4)?,
        ])?;
        assert_eq!(code, 0, "{out}");
        // i2 gets nothing now: the next deployment goes to the standby group.
        let standby = fleet.add_agent(vars(2)?, web.clone())?;
        wait_for_line(
            &fleet.agents[standby].proc.log,
            "said hello: nothing to catch up",
            0,
            Duration::from_secs(30),
        )?;
        // i3 catches up to v1, and joins the serving group only at its AllowTraffic.
        fleet.add_agent(vars(3)?, web.clone())?;
        let c = fleet.catch_up_of("i3")?;
        let c = fleet.wait_end(&c.id, Duration::from_secs(120))?;
        std::thread::sleep(Duration::from_millis(800));
        let samples = load.finish();
        assert_eq!(c.status, DeploymentStatus::Succeeded, "{}", c.message);
        assert_eq!(c.revision, rev);
        let steps: Vec<&str> = c.instances[0]
            .steps
            .iter()
            .map(|s| s.event.name())
            .collect();
        let plan = rollcage_proto::plan_of(
            rollcage_proto::wire::DeploymentStyle::BlueGreen,
            false,
            true,
        );
        let want: Vec<&str> = plan.per_instance.iter().map(|e| e.name()).collect();
        assert_eq!(
            steps, want,
            "the blue/green catch-up plan: nothing switches"
        );
        assert_no_failures(&samples, "blue/green catch-up under load")?;
        let allow = c.instances[0]
            .steps
            .iter()
            .find(|s| s.event.name() == "AllowTraffic")
            .and_then(|s| s.started_at_ms)
            .context("the catch-up ran AllowTraffic")?;
        assert_only_registered(&samples, &[("i3".to_owned(), 0, allow)])?;
        let by = |name: &str| served_by(&samples, name);
        assert!(by("i3") > 0, "the newcomer served once put back");
        assert_eq!(by("i0") + by("i2"), 0, "the standby group serves nothing");
        assert!(versions(&samples).iter().all(|v| v == "v1"));
        assert_eq!(
            fleet.deployments()?.len(),
            2,
            "v1 and i3's catch-up; none for i2"
        );
        Ok(())
    });
    if result.is_err() {
        let _ = fleet.keep();
    }
    result
}

#[test]
fn a_removed_host_is_refused_while_deploying_then_leaves_and_its_agent_stops() -> anyhow::Result<()>
{
    let mut fleet = Fleet::start(2)?;
    let result = caught(|| {
        fleet.setup("shop", "web", "all", false)?;
        let slow = fleet.dir.path().join("bundle-slow");
        write_bundle(&slow, "v1", "2", "")?;
        let rev = fleet.push("shop", &slow)?;
        let id = fleet.deploy("shop", "web", &rev)?;
        // During a deployment that includes it: refused, naming the deployment and --force.
        match fleet.cli(&["instances", "remove", "i1"]) {
            Ok((code, out)) => anyhow::bail!("removal during a deployment exited {code}: {out}"),
            Err(e) => {
                let e = format!("{e:#}");
                assert!(e.contains(&id) && e.contains("force"), "{e}");
            }
        }
        let d = fleet.wait_end(&id, Duration::from_secs(120))?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        // With no deployment running: removed; its agent is told so and stops instead of enrolling again.
        let (code, out) = fleet.cli(&["instances", "remove", "i1"])?;
        assert_eq!(code, 0, "{out}");
        let begin = std::time::Instant::now();
        while fleet.agents[1].proc.try_wait()?.is_none() {
            anyhow::ensure!(
                begin.elapsed() < Duration::from_secs(60),
                "the removed host's agent still runs"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_for_line(
            &fleet.agents[1].proc.log,
            "was removed by an operator",
            0,
            Duration::from_secs(5),
        )?;
        let log = std::fs::read_to_string(&fleet.agents[1].proc.log)?;
        assert!(
            !log.contains("enrolling again"),
            "a removed agent must not enroll again by itself:\n{log}"
        );
        // The next deployment is i0's alone.
        let (code, d2) = fleet.deploy_wait("shop", "web", &rev)?;
        assert_eq!(
            (code, d2.status),
            (0, DeploymentStatus::Succeeded),
            "{}",
            d2.message
        );
        let names: Vec<&str> = d2.instances.iter().map(|i| i.instance.as_str()).collect();
        assert_eq!(names, ["i0"]);
        Ok(())
    });
    if result.is_err() {
        let _ = fleet.keep();
    }
    result
}

#[test]
fn group_update_paces_the_next_deployment_and_deletes_wait_until_nothing_depends()
-> anyhow::Result<()> {
    let fleet = Fleet::start(3)?;
    let result = caught(|| {
        fleet.setup("shop", "web", "all", false)?;
        let bundle = fleet.dir.path().join("bundle");
        write_bundle(&bundle, "v1", "0.3", "")?;
        let (rev, d1) = pushed_and_deployed(&fleet, &bundle)?;
        assert_eq!(
            rollcage_e2e::max_in_flight(&fleet.markers()?, &d1.id),
            3,
            "all at once first"
        );

        let (code, out) = fleet.cli(&[
            "group",
            "update",
            "--app",
            "shop",
            "web",
            "--concurrency",
            "1",
        ])?;
        assert_eq!(code, 0, "{out}");
        let id = fleet.deploy("shop", "web", &rev)?;
        // While it runs, the group can be neither changed nor deleted.
        for args in [
            &[
                "group",
                "update",
                "--app",
                "shop",
                "web",
                "--concurrency",
                "all",
            ][..],
            &["group", "delete", "--app", "shop", "web"][..],
        ] {
            match fleet.cli(args) {
                Ok((code, out)) => {
                    anyhow::bail!("{args:?} during a deployment exited {code}: {out}")
                }
                Err(e) => assert!(format!("{e:#}").contains(&id), "{e:#}"),
            }
        }
        let d2 = fleet.wait_end(&id, Duration::from_secs(120))?;
        assert_eq!(d2.status, DeploymentStatus::Succeeded, "{}", d2.message);
        assert_eq!(
            rollcage_e2e::max_in_flight(&fleet.markers()?, &id),
            1,
            "the update paced the next deployment"
        );

        // The application has a group: refused; once the group is gone, it still has its revision: refused.
        match fleet.cli(&["app", "delete", "shop"]) {
            Ok((code, out)) => anyhow::bail!("app delete with a group exited {code}: {out}"),
            Err(e) => assert!(format!("{e:#}").contains("`web`"), "{e:#}"),
        }
        let (code, out) = fleet.cli(&["group", "delete", "--app", "shop", "web"])?;
        assert_eq!(code, 0, "{out}");
        let (_, groups) = fleet.cli(&["group", "list", "--app", "shop"])?;
        assert!(groups.trim().is_empty(), "{groups}");
        Ok(())
    });
    if result.is_err() {
        let _ = fleet.keep();
    }
    result
}
