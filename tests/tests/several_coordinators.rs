//! Clients with several coordinator URLs: agents given `http://127.0.0.1:<closed port>,<the coordinator>` (and a
//! CLI given the same list in `ROLLCAGE_COORDINATOR`) enroll, run a rolling deployment to its end and report
//! every step, each moving past the dead URL (its log names the switch) and staying on the live one.

use rollcage_e2e::{Fleet, caught, events_of, write_bundle};
use rollcage_proto::wire::{DeploymentStatus, InstanceStatus};

/// A loopback URL nothing listens on (a port bound, then freed).
fn closed_url() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    drop(l);
    Ok(format!("http://{addr}"))
}

#[test]
fn agents_given_a_dead_url_first_enroll_and_deploy_through_the_live_one() -> anyhow::Result<()> {
    let dead = closed_url()?;
    let fleet = Fleet::start_with_urls_before(2, vec![dead.clone()])?;
    let result = caught(|| {
        assert!(fleet.coordinator_list().starts_with(&format!("{dead},")));
        fleet.setup("shop", "web", "1", false)?;
        let b1 = fleet.dir.path().join("v1");
        write_bundle(&b1, "v1", "0.1", "")?;
        let r1 = fleet.push("shop", &b1)?;
        let (code, d) = fleet.deploy_wait("shop", "web", &r1)?;
        assert_eq!(code, 0, "{}", d.message);
        assert_eq!(d.status, DeploymentStatus::Succeeded);
        assert!(
            d.instances
                .iter()
                .all(|i| i.status == InstanceStatus::Succeeded),
            "{:?}",
            d.instances
        );
        let markers = fleet.markers()?;
        let expected: Vec<(String, String)> =
            rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
                .hooks(None, "v1")
                .map(|(e, l)| (e.name().to_owned(), l.to_owned()))
                .collect();
        for a in &fleet.agents {
            assert_eq!(events_of(&markers, &a.name, &d.id)?, expected, "{}", a.name);
            // The agent did try the dead URL, said so, and moved on to the live one.
            let log = std::fs::read_to_string(&a.proc.log)?;
            let switch = log
                .lines()
                .find(|l| l.contains("moving on to the next"))
                .ok_or_else(|| anyhow::anyhow!("{}: no switch logged:\n{log}", a.name))?;
            assert!(
                switch.contains(&dead) && switch.contains(&fleet.coordinator.url()),
                "{}: {switch}",
                a.name
            );
            assert!(
                !log.contains(&fleet.coordinator.enroll_token),
                "{}: the enrollment token is in the log",
                a.name
            );
        }
        Ok(())
    });
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}
