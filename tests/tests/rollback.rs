//! A ValidateService failure on one instance fails the deployment; the automatic rollback restores v1 on every
//! instance with the same concurrency, from each host's cache (the coordinator serves no new download).

use rollcage_e2e::{Fleet, events_of, max_in_flight, push_v1_and_failing_v2};
use rollcage_proto::wire::{DeploymentKind, DeploymentStatus, InstanceStatus};

#[test]
fn validate_failure_rolls_back_to_v1_without_downloading() -> anyhow::Result<()> {
    let fleet = Fleet::start(4)?;
    let result = (|| {
        fleet.setup("shop", "web", "2", true)?;
        let (r1, r2) = push_v1_and_failing_v2(&fleet, "i2", "0.1")?;
        let (code, _) = fleet.deploy_wait("shop", "web", &r1)?;
        assert_eq!(code, 0);
        assert_eq!(fleet.downloads("shop", &r1)?, 4);

        let (code, d2) = fleet.deploy_wait("shop", "web", &r2)?;
        assert_eq!(code, 2, "deploy --wait exits 2 on failure");
        assert_eq!(d2.status, DeploymentStatus::Failed);
        let i2 = d2
            .instances
            .iter()
            .find(|i| i.instance == "i2")
            .ok_or_else(|| anyhow::anyhow!("no i2"))?;
        assert_eq!(i2.status, InstanceStatus::Failed);
        let failed_step = i2
            .steps
            .iter()
            .find(|s| s.event.name() == "ValidateService")
            .ok_or_else(|| anyhow::anyhow!("no step"))?;
        assert!(
            failed_step.log_tail.contains("health check failed"),
            "{failed_step:?}"
        );

        let rb_id = d2
            .rollback_deployment
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no automatic rollback: {}", d2.message))?;
        let rb = fleet.wait_end(&rb_id, std::time::Duration::from_secs(60))?;
        assert_eq!(rb.status, DeploymentStatus::Succeeded, "{}", rb.message);
        assert_eq!(rb.revision, r1);
        assert_eq!(rb.concurrency.to_string(), "2");
        assert_eq!(
            rb.kind,
            DeploymentKind::Rollback {
                of: d2.id.clone(),
                automatic: true
            }
        );
        assert!(
            rb.instances
                .iter()
                .all(|i| i.steps.iter().all(|s| s.event.name() != "DownloadBundle"))
        );

        let markers = fleet.markers()?;
        for a in &fleet.agents {
            let evs = events_of(&markers, &a.name, &rb_id)?;
            let names: Vec<&str> = evs.iter().map(|(e, _)| e.as_str()).collect();
            assert_eq!(
                &names[names.len() - 4..],
                [
                    "BeforeInstall",
                    "AfterInstall",
                    "ApplicationStart",
                    "ValidateService"
                ],
                "{}",
                a.name
            );
            assert!(
                evs[evs.len() - 4..].iter().all(|(_, l)| l == "v1"),
                "{}: {evs:?}",
                a.name
            );
        }
        assert_eq!(
            max_in_flight(&markers, &rb_id),
            2,
            "rollback keeps the concurrency"
        );
        // v2 failed on i2: i3 (in flight with it or after it) may have run, but nothing started after the failure.
        assert_eq!(
            fleet.downloads("shop", &r1)?,
            4,
            "rollback took v1 from the hosts' caches"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}
