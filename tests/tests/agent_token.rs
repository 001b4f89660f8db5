//! An agent whose token the coordinator refuses (the instance is gone: here the coordinator's data is reset under the
//! running agent) stops with its own exit code (78, which the systemd unit does not restart), says what happened and
//! what to do, and sets the dead token aside; started again, it stops at once instead of retrying the dead token.

use anyhow::bail;
use rollcage_e2e::{Coordinator, Fleet, Proc, caught, rollcage_bin};
use rollcage_proto::wire::EnrollRequest;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// The exit code of an agent only an operator can help (`rollcage_agent::EXIT_REFUSED`; the e2e crate runs the
/// binary and does not link the agent).
const EXIT_REFUSED: i32 = 78;

fn enroll(url: &str, enroll_token: &str, name: &str) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = rollcage_client::Client::new(url, Some(enroll_token.to_owned()), None)?;
        let r = c
            .enroll(&EnrollRequest {
                name: name.to_owned(),
                tags: Default::default(),
            })
            .await?;
        Ok(r.token)
    })
}

/// `rollcage agent` with its own token only (no enrollment token).
fn spawn_agent(fleet: &Fleet, root: &Path, log: &Path) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(rollcage_bin()?);
    cmd.arg("agent")
        .arg("--coordinator")
        .arg(fleet.coordinator.url())
        .arg("--root")
        .arg(root)
        .arg("--name")
        .arg("i0")
        .env_remove("ROLLCAGE_ENROLL_TOKEN")
        .env("RUST_LOG", "info");
    Proc::spawn(cmd, log)
}

fn wait_exit(p: &mut Proc, within: Duration) -> anyhow::Result<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = p.try_wait()? {
            return Ok(st);
        }
        if start.elapsed() > within {
            bail!("the agent still runs after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_log(log: &Path, needle: &str, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while !std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
        if start.elapsed() > within {
            bail!("`{needle}` not in {} within {within:?}", log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn an_agent_whose_token_is_refused_stops_for_good_and_never_reuses_it() -> anyhow::Result<()> {
    let mut fleet = Fleet::start(0)?;
    let result = caught(|| {
        let root = fleet.dir.path().join("agent-i0");
        let token_file = root.join("agent/token");
        std::fs::create_dir_all(root.join("agent"))?;
        // Enrolled before; its enrollment token since deleted (what `agent install` suggests).
        let token = enroll(
            &fleet.coordinator.url(),
            &fleet.coordinator.enroll_token,
            "i0",
        )?;
        std::fs::write(&token_file, &token)?;
        let log = fleet.dir.path().join("agent-i0.log");
        let mut agent = spawn_agent(&fleet, &root, &log)?;
        wait_log(&log, "agent running", Duration::from_secs(20))?;
        std::thread::sleep(Duration::from_millis(500));
        assert!(agent.try_wait()?.is_none(), "running with its token");

        // The coordinator forgets the agent (a removed instance, a reset): same address, fresh data.
        let addr = fleet.coordinator.addr;
        fleet.coordinator.proc.kill();
        fleet.coordinator = Coordinator::start(&fleet.dir.path().join("coordinator-2"), addr, &[])?;

        let status = wait_exit(&mut agent, Duration::from_secs(30))?;
        let text = std::fs::read_to_string(&log)?;
        assert_eq!(status.code(), Some(EXIT_REFUSED), "{text}");
        assert!(
            text.contains("coordinator refused this agent's token")
                && text.contains("removed or re-enrolled")
                && text.contains("--enroll-token-file"),
            "{text}"
        );
        assert!(!token_file.exists(), "the dead token is not left in place");
        assert_eq!(
            std::fs::read_to_string(root.join("agent/token.refused"))?,
            token
        );

        // Started again (by hand, or by a unit without RestartPreventExitStatus): it stops at once, saying why, and
        // never sends the dead token.
        let log2 = fleet.dir.path().join("agent-i0-again.log");
        let started = Instant::now();
        let mut again = spawn_agent(&fleet, &root, &log2)?;
        let status = wait_exit(&mut again, Duration::from_secs(10))?;
        let text = std::fs::read_to_string(&log2)?;
        assert_eq!(status.code(), Some(EXIT_REFUSED), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5), "{text}");
        assert!(
            text.contains("no agent token") && text.contains("refused the last one"),
            "{text}"
        );
        assert!(
            !text.contains("agent running"),
            "it did not start talking to the coordinator: {text}"
        );
        Ok(())
    });
    if let Err(e) = result {
        let kept = fleet.keep();
        bail!("{e:#}\nlogs kept in {}", kept.display());
    }
    Ok(())
}
