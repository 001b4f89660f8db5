//! Rolling deployments of v1 then v2 across 4 real agents with concurrency 1, 2, 50 % and all: every instance
//! runs the seed's hooks in order (ApplicationStop from the previously installed revision), and the number of
//! instances in flight never exceeds the group's concurrency and reaches it.

use rollcage_e2e::{Fleet, events_of, max_in_flight, write_bundle};
use rollcage_proto::wire::{DeploymentStatus, InstanceStatus};

/// The hooks a rolling deployment of `deployed` runs on a host where `installed` is installed, with the label of
/// the revision whose scripts run each: from the one plan.
fn ev(installed: Option<&str>, deployed: &str) -> Vec<(String, String)> {
    rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
        .hooks(installed, deployed)
        .map(|(e, l)| (e.name().to_owned(), l.to_owned()))
        .collect()
}

fn roll(concurrency: &str, expected_in_flight: usize) -> anyhow::Result<()> {
    let fleet = Fleet::start(4)?;
    let result = (|| {
        fleet.setup("shop", "web", concurrency, false)?;
        let b1 = fleet.dir.path().join("v1");
        let b2 = fleet.dir.path().join("v2");
        write_bundle(&b1, "v1", "0.15", "")?;
        write_bundle(&b2, "v2", "0.15", "")?;
        let r1 = fleet.push("shop", &b1)?;
        let r2 = fleet.push("shop", &b2)?;
        assert_ne!(r1, r2);

        let (code, d1) = fleet.deploy_wait("shop", "web", &r1)?;
        assert_eq!(code, 0, "{}", d1.message);
        assert_eq!(d1.status, DeploymentStatus::Succeeded);
        let (code, d2) = fleet.deploy_wait("shop", "web", &r2)?;
        assert_eq!(code, 0, "{}", d2.message);
        assert!(
            d2.instances
                .iter()
                .all(|i| i.status == InstanceStatus::Succeeded)
        );

        let markers = fleet.markers()?;
        for a in &fleet.agents {
            // First deployment: nothing installed yet, so no ApplicationStop.
            assert_eq!(
                events_of(&markers, &a.name, &d1.id)?,
                ev(None, "v1"),
                "{} in v1",
                a.name
            );
            // Second: ApplicationStop runs v1's script (the installed one), the rest v2's.
            assert!(ev(Some("v1"), "v2").contains(&("ApplicationStop".into(), "v1".into())));
            assert_eq!(
                events_of(&markers, &a.name, &d2.id)?,
                ev(Some("v1"), "v2"),
                "{} in v2",
                a.name
            );
        }
        for d in [&d1.id, &d2.id] {
            assert_eq!(
                max_in_flight(&markers, d),
                expected_in_flight,
                "deployment {d} with {concurrency}"
            );
        }
        // Every agent is enrolled and alive.
        let (_, out) = fleet.cli(&["instances", "--output", "json"])?;
        let list: Vec<rollcage_proto::wire::InstanceInfo> = serde_json::from_str(&out)?;
        assert_eq!(list.len(), 4);
        assert!(list.iter().all(|i| !i.lost), "{list:?}");
        // Each host downloaded each revision once.
        assert_eq!(fleet.downloads("shop", &r1)?, 4);
        assert_eq!(fleet.downloads("shop", &r2)?, 4);
        Ok(())
    })();
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}

#[test]
fn one_at_a_time() -> anyhow::Result<()> {
    roll("1", 1)
}

#[test]
fn two_at_a_time() -> anyhow::Result<()> {
    roll("2", 2)
}

#[test]
fn half_at_a_time() -> anyhow::Result<()> {
    roll("50%", 2)
}

#[test]
fn all_at_once() -> anyhow::Result<()> {
    roll("all", 4)
}
