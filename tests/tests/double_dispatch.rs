//! No double dispatch across coordinators: two coordinators on one PostgreSQL server, 20 agents alternating between
//! them (agent `i` talks to coordinator `i % 2` only, so reports about one deployment arrive at both at once),
//! concurrency 3, hooks that sleep a pseudo-random 0–199 ms (from a seed, per round, instance and event), several
//! deployments in a row, created through either coordinator. In every round: never more than 3 instances in flight
//! (from the steps' start and end times in the API, and from the hook markers), and 3 reached; every instance ran
//! every event exactly once, in the seed's order (no step dispatched twice, none lost).

use rollcage_e2e::cluster::ClusterSpec;
use rollcage_e2e::{Fleet, events_of, max_in_flight, seed_order, starts, write_bundle};
use rollcage_proto::wire::{Deployment, DeploymentStatus, InstanceStatus};

const AGENTS: usize = 20;
const CONCURRENCY: usize = 3;
const ROUNDS: usize = 5;

/// The seed of the hooks' sleeps: `ROLLCAGE_E2E_SEED` to replay a run, else from the clock (printed).
fn seed() -> u64 {
    std::env::var("ROLLCAGE_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// A hook's sleep in seconds, as shell: 0–199 ms from a checksum of the seed, the round and the step.
fn random_sleep(seed: u64, label: &str) -> String {
    format!(
        "\"$(printf 0.%03d $(( $(printf %s \"{seed}-{label}-$ROLLCAGE_INSTANCE-$LIFECYCLE_EVENT\" | cksum | cut -d ' ' -f 1) % 200 )))\""
    )
}

/// The most instances in flight at once by the API: each instance from its first step's start to its last
/// step's end (an instance that ends at the very millisecond another starts does not overlap it).
fn max_in_flight_by_api(d: &Deployment) -> usize {
    let mut points: Vec<(i64, i32)> = Vec::new();
    for i in &d.instances {
        let start = i.steps.iter().filter_map(|s| s.started_at_ms).min();
        let end = i.steps.iter().filter_map(|s| s.ended_at_ms).max();
        if let (Some(a), Some(b)) = (start, end) {
            points.extend([(a, 1), (b, -1)]);
        }
    }
    points.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, delta) in points {
        cur += delta;
        max = max.max(cur);
    }
    usize::try_from(max).unwrap_or(0)
}

#[test]
fn reports_at_two_coordinators_never_exceed_the_concurrency_nor_dispatch_a_step_twice()
-> anyhow::Result<()> {
    let seed = seed();
    eprintln!("seed {seed} (ROLLCAGE_E2E_SEED={seed} replays the hooks' sleeps)");
    let pg = rollcage_testpg::Server::start()?;
    let fleet = Fleet::start_cluster(&ClusterSpec {
        database: &pg.url(),
        coordinators: 2,
        agents: AGENTS,
        agent_coordinators: &|i| vec![i % 2],
        vars: &|_| Vec::new(),
    })?;
    let result = rollcage_e2e::caught(|| {
        fleet.setup("shop", "web", &CONCURRENCY.to_string(), false)?;
        let mut installed: Option<String> = None;
        for round in 0..ROUNDS {
            let label = format!("r{round}");
            let bundle = fleet.dir.path().join(&label);
            write_bundle(&bundle, &label, &random_sleep(seed, &label), "")?;
            let rev = fleet.push("shop", &bundle)?;
            // Deployments are created through either coordinator.
            let via = fleet.coordinator_k(round % 2)?;
            let (code, out) = fleet.cli_on(
                via,
                &[
                    "deploy",
                    "--app",
                    "shop",
                    "--group",
                    "web",
                    "--revision",
                    &rev,
                    "--wait",
                    "--output",
                    "json",
                ],
            )?;
            let d: Deployment = serde_json::from_str(&out)?;
            assert_eq!(
                (code, d.status),
                (0, DeploymentStatus::Succeeded),
                "round {round}: {}",
                d.message
            );
            assert!(
                d.instances
                    .iter()
                    .all(|i| i.status == InstanceStatus::Succeeded)
            );
            let by_api = max_in_flight_by_api(&d);
            assert!(
                by_api <= CONCURRENCY,
                "round {round}: {by_api} instances in flight at once (steps' times), concurrency {CONCURRENCY}"
            );
            assert_eq!(
                by_api, CONCURRENCY,
                "round {round}: the concurrency is used"
            );

            let markers = fleet.markers()?;
            let by_markers = max_in_flight(&markers, &d.id);
            assert!(
                by_markers <= CONCURRENCY,
                "round {round}: {by_markers} instances running hooks at once, concurrency {CONCURRENCY}"
            );
            let expected = seed_order(installed.as_deref(), &label);
            for a in &fleet.agents {
                assert_eq!(
                    events_of(&markers, &a.name, &d.id)?,
                    expected,
                    "round {round}: {} ran each event once, in the seed's order",
                    a.name
                );
                for (event, _) in &expected {
                    assert_eq!(
                        starts(&markers, &a.name, &d.id, event),
                        1,
                        "round {round}: {} {event} dispatched once",
                        a.name
                    );
                }
            }
            eprintln!(
                "round {round}: {} succeeded, at most {by_api} in flight (API), {by_markers} (hooks)",
                d.id
            );
            installed = Some(label);
        }
        Ok(())
    });
    if let Err(e) = &result {
        eprintln!("{e:#}\nfleet kept at {}", fleet.keep().display());
    }
    result
}
