//! Full hook logs end to end: two real agents run a deployment whose hooks print known lines (stdout and stderr);
//! `rollcage logs ID` prints them with `[instance Event]` prefixes, `--instance` and `--event` filter, `--follow`
//! started while the deployment runs prints the lines that arrive later and exits once it ended, and an unknown
//! id is an error (exit 1).

use anyhow::{Context, bail};
use rollcage_e2e::{Fleet, rollcage_bin, write_bundle};
use rollcage_proto::wire::DeploymentStatus;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: [&str; 4] = [
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
];

/// Every line is `[iN Event] …` with a known instance and event.
fn check_prefixes(out: &str) -> anyhow::Result<()> {
    for line in out.lines() {
        let ok = ["i0", "i1"].iter().any(|i| {
            line.starts_with(&format!("[{i} "))
                && line
                    .split_once(']')
                    .is_some_and(|(p, _)| p.split(' ').count() == 2)
        });
        if !ok {
            bail!("line without an `[instance Event]` prefix: `{line}`");
        }
    }
    Ok(())
}

/// The hook's two known lines of `instance` in `event`, with their prefix.
fn has_lines(out: &str, instance: &str, event: &str) -> bool {
    let prefix = format!("[{instance} {event}] ");
    let said = format!("hello from {instance} in {event}");
    let stderr = format!("[stderr] {event} scripts/hook.sh: complaint of {instance} in {event}");
    out.lines()
        .any(|l| l.starts_with(&prefix) && l.ends_with(&said))
        && out
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains(&stderr))
}

#[test]
fn logs_prints_prefixed_hook_output_filters_and_follows() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let result = (|| {
        fleet.setup("shop", "web", "1", false)?;
        let bundle = fleet.dir.path().join("v1");
        // Slow enough (0.3 s per hook, one instance at a time) that `--follow` starts well before the end.
        write_bundle(
            &bundle,
            "v1",
            "0.3",
            r#"echo "hello from $ROLLCAGE_INSTANCE in $LIFECYCLE_EVENT"; echo "complaint of $ROLLCAGE_INSTANCE in $LIFECYCLE_EVENT" >&2"#,
        )?;
        let rev = fleet.push("shop", &bundle)?;
        let id = fleet.deploy("shop", "web", &rev)?;

        // Follow from the start, in the background.
        let follow_out = fleet.dir.path().join("follow.out");
        let mut follower = Command::new(rollcage_bin()?)
            .args(["logs", &id, "--follow"])
            .env("ROLLCAGE_COORDINATOR", fleet.coordinator.url())
            .env("ROLLCAGE_TOKEN", &fleet.coordinator.admin_token)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&follow_out)?)
            .stderr(std::fs::File::create(follow_out.with_extension("err"))?)
            .spawn()
            .context("starting rollcage logs --follow")?;
        let early = fleet.status(&id)?;
        assert!(
            !early.status.is_terminal(),
            "the deployment ended before --follow could start: {:?}",
            early.status
        );

        let start = Instant::now();
        let code = loop {
            if let Some(st) = follower.try_wait()? {
                break st.code();
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = follower.kill();
                let _ = follower.wait();
                bail!("logs --follow did not exit within 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let followed = std::fs::read_to_string(&follow_out)?;
        let err = std::fs::read_to_string(follow_out.with_extension("err"))?;
        assert_eq!(code, Some(0), "{followed}{err}");
        // It exits only once the deployment has ended, and has printed everything by then.
        let end = fleet.status(&id)?;
        assert_eq!(end.status, DeploymentStatus::Succeeded, "{}", end.message);
        check_prefixes(&followed)?;
        for i in ["i0", "i1"] {
            for e in EVENTS {
                assert!(
                    has_lines(&followed, i, e),
                    "{i} {e} missing in:\n{followed}"
                );
            }
        }

        // Plain `logs`: the same lines, with prefixes.
        let (code, all) = fleet.cli(&["logs", &id])?;
        assert_eq!(code, 0);
        check_prefixes(&all)?;
        for i in ["i0", "i1"] {
            for e in EVENTS {
                assert!(has_lines(&all, i, e), "{i} {e} missing in:\n{all}");
            }
        }
        assert_eq!(
            all.lines().count(),
            followed.lines().count(),
            "{all}\n---\n{followed}"
        );

        // --instance: only i1's lines, all of them.
        let (_, only_i1) = fleet.cli(&["logs", &id, "--instance", "i1"])?;
        assert!(only_i1.lines().all(|l| l.starts_with("[i1 ")), "{only_i1}");
        assert!(
            EVENTS.iter().all(|e| has_lines(&only_i1, "i1", e)),
            "{only_i1}"
        );
        assert!(!has_lines(&only_i1, "i0", "AfterInstall"));

        // --event: only AfterInstall lines, of both instances.
        let (_, after) = fleet.cli(&["logs", &id, "--event", "AfterInstall"])?;
        assert!(
            after
                .lines()
                .all(|l| l.starts_with("[i0 AfterInstall] ") || l.starts_with("[i1 AfterInstall] ")),
            "{after}"
        );
        assert!(has_lines(&after, "i0", "AfterInstall") && has_lines(&after, "i1", "AfterInstall"));
        assert!(!has_lines(&after, "i0", "BeforeInstall"));

        // An unknown deployment: a clear error, exit 1.
        let err = fleet
            .cli(&["logs", "d-does-not-exist"])
            .err()
            .context("logs of an unknown deployment succeeded")?;
        let msg = format!("{err:#}");
        assert!(msg.contains("exited 1"), "{msg}");
        assert!(msg.contains("not found"), "{msg}");
        Ok(())
    })();
    if result.is_err() {
        eprintln!("fleet kept in {}", fleet.keep().display());
    }
    result
}
