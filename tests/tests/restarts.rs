//! Crash safety with real processes: an agent SIGKILLed during a hook and restarted reports the step failed
//! ("interrupted by agent restart") and runs nothing twice; a coordinator SIGKILLed mid-deployment and restarted
//! carries the deployment to its end with no report lost and no step run twice.

use rollcage_e2e::{Fleet, starts, write_bundle};
use rollcage_proto::wire::{DeploymentStatus, InstanceStatus, StepState};
use std::time::Duration;

#[test]
fn agent_killed_during_a_hook_reports_it_interrupted_and_reruns_nothing() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(4)?;
    let result = (|| {
        fleet.setup("shop", "web", "all", false)?;
        let b1 = fleet.dir.path().join("v1");
        write_bundle(
            &b1,
            "v1",
            "0.1",
            r#"if [ "$LIFECYCLE_EVENT" = AfterInstall ] && [ "$ROLLCAGE_INSTANCE" = i1 ]; then sleep 3; fi"#,
        )?;
        let r1 = fleet.push("shop", &b1)?;
        let id = fleet.deploy("shop", "web", &r1)?;
        fleet.wait_markers(Duration::from_secs(30), |ms| {
            ms.iter()
                .any(|m| m.instance == "i1" && m.event == "AfterInstall" && m.phase == "start")
        })?;
        fleet.kill_and_restart_agent(1, Duration::from_millis(200))?;
        let d = fleet.wait_end(&id, Duration::from_secs(60))?;
        assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
        let i1 = d
            .instances
            .iter()
            .find(|i| i.instance == "i1")
            .ok_or_else(|| anyhow::anyhow!("no i1"))?;
        assert_eq!(i1.status, InstanceStatus::Failed);
        let step = i1
            .steps
            .iter()
            .find(|s| s.event.name() == "AfterInstall")
            .ok_or_else(|| anyhow::anyhow!("no step"))?;
        assert_eq!(step.state, StepState::Failed);
        assert!(
            step.message.contains("interrupted by agent restart"),
            "{}",
            step.message
        );
        // The other instances finished everything.
        for i in d.instances.iter().filter(|i| i.instance != "i1") {
            assert_eq!(i.status, InstanceStatus::Succeeded, "{}", i.instance);
        }
        std::thread::sleep(Duration::from_secs(4)); // let the orphaned hook finish, if it runs on
        let markers = fleet.markers()?;
        assert_eq!(
            starts(&markers, "i1", &id, "AfterInstall"),
            1,
            "AfterInstall not re-run"
        );
        assert_eq!(
            starts(&markers, "i1", &id, "ApplicationStart"),
            0,
            "nothing after the interrupted step"
        );
        for e in [
            "BeforeInstall",
            "AfterInstall",
            "ApplicationStart",
            "ValidateService",
        ] {
            for a in ["i0", "i2", "i3"] {
                assert_eq!(starts(&markers, a, &id, e), 1, "{a} {e}");
            }
        }
        Ok(())
    })();
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}

#[test]
fn coordinator_killed_mid_deployment_resumes_with_no_lost_report_and_no_rerun() -> anyhow::Result<()>
{
    let mut fleet = Fleet::start(4)?;
    let result = (|| {
        fleet.setup("shop", "web", "1", false)?;
        let b1 = fleet.dir.path().join("v1");
        write_bundle(&b1, "v1", "0.3", "")?;
        let r1 = fleet.push("shop", &b1)?;
        let id = fleet.deploy("shop", "web", &r1)?;
        // Kill while i1 is in the middle of its hooks (steps will end, and be reported, while the coordinator is down).
        fleet.wait_markers(Duration::from_secs(60), |ms| {
            ms.iter()
                .any(|m| m.instance == "i1" && m.event == "AfterInstall" && m.phase == "start")
        })?;
        fleet
            .coordinator
            .kill_and_restart(Duration::from_millis(800))?;
        let d = fleet.wait_end(&id, Duration::from_secs(90))?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        rollcage_e2e::assert_every_step_ended(&d);
        let markers = fleet.markers()?;
        for a in &fleet.agents {
            for e in [
                "BeforeInstall",
                "AfterInstall",
                "ApplicationStart",
                "ValidateService",
            ] {
                assert_eq!(
                    starts(&markers, &a.name, &id, e),
                    1,
                    "{} {e} ran exactly once",
                    a.name
                );
            }
        }
        Ok(())
    })();
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}
