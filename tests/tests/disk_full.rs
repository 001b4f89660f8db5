//! A full disk on an agent's host: the agent's root is a 4 MiB tmpfs made by the test. Full before a step, filled by
//! a hook during a deployment (then the journal and the step log cannot be written), and its installed files not
//! fitting: each time the step fails with the error ("No space left on device"), the deployment ends, the agent
//! keeps running, and once space is free the next deployment succeeds. A revision that does not fit (its archive,
//! or its declared unpacked size) fails DownloadBundle early instead, naming what it needs and what is free, and
//! leaves nothing behind; once space is freed the same revision deploys.
//!
//! Needs root (to mount the tmpfs), as CI runs; without it the test fails saying so.

use anyhow::{Context, bail};
use rollcage_e2e::{AgentProc, Fleet, Proc, rollcage_bin, write_bundle};
use rollcage_proto::wire::{Deployment, DeploymentStatus, StepState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rollcage-enospc-")
            .tempdir()?;
        let path = dir.path().join("root");
        std::fs::create_dir(&path)?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "cannot mount a {size} tmpfs at {} ({}): this test needs root and mount(8), as in CI",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there does not keep the mount alive.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Write zeros to `path` until the filesystem is full; the error must be ENOSPC.
fn fill(path: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            if e.raw_os_error() == Some(ENOSPC) {
                return Ok(());
            }
            bail!("filling {}: {e} (expected ENOSPC)", path.display());
        }
    }
}

/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

/// Alive: not exited (an exited child stays a zombie until reaped, which `try_wait` does).
fn alive(agent: &mut Proc) -> anyhow::Result<bool> {
    Ok(agent.try_wait()?.is_none())
}

/// Bytes free on the filesystem of `path`.
fn avail(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .context("running df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("df printed `{text}`"))
}

/// Push a revision carrying `size` random (incompressible) bytes in `noise.bin`; with `install_to`, its AppSpec
/// installs that file there. Returns the revision id.
fn push_noise(
    fleet: &Fleet,
    label: &str,
    size: u64,
    install_to: Option<&Path>,
) -> anyhow::Result<String> {
    let dir = fleet.dir.path().join(label);
    write_bundle(&dir, label, "0", "")?;
    let mut noise = vec![0u8; usize::try_from(size)?];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut r| std::io::Read::read_exact(&mut r, &mut noise))
        .context("reading /dev/urandom")?;
    std::fs::write(dir.join("noise.bin"), &noise)?;
    if let Some(dest) = install_to {
        let spec = std::fs::read_to_string(dir.join("appspec.yml"))?;
        let files = format!(
            "files:\n  - source: noise.bin\n    destination: {}\n",
            dest.display()
        );
        std::fs::write(
            dir.join("appspec.yml"),
            spec.replacen("hooks:\n", &format!("{files}hooks:\n"), 1),
        )?;
    }
    fleet.push("shop", &dir)
}

/// The DownloadBundle failure of a revision that cannot fit, found before anything was written: both figures
/// (`needs N (… bytes), M (… bytes) free`), with needed > free. Returns the message.
fn early_no_space(d: &Deployment) -> anyhow::Result<String> {
    let step = d
        .instances
        .iter()
        .flat_map(|i| &i.steps)
        .find(|s| s.state == StepState::Failed)
        .with_context(|| format!("no failed step: {d:?}"))?;
    anyhow::ensure!(
        step.event == rollcage_proto::LifecycleEvent::DownloadBundle,
        "{}: {}",
        step.event,
        step.message
    );
    let m = &step.message;
    let figures: Vec<u64> = m
        .split(" bytes)")
        .filter_map(|part| part.rsplit('(').next()?.parse().ok())
        .collect();
    anyhow::ensure!(
        m.contains("not enough free space on") && m.contains(" needs ") && m.contains(" free;"),
        "{m}"
    );
    anyhow::ensure!(
        figures.len() == 2 && figures[0] > figures[1],
        "needed and free, needed larger: {figures:?} in {m}"
    );
    Ok(m.clone())
}

/// Nothing of deployment `id` is left on the agent: no deployment dir, no partial or stored archive of it, no
/// staging dir.
fn nothing_left(root: &Path, id: &str, before: &[PathBuf]) -> anyhow::Result<()> {
    let deploy = root.join("app-shop/group-web").join(format!("deploy-{id}"));
    anyhow::ensure!(!deploy.exists(), "{} was left behind", deploy.display());
    let bundles: Vec<PathBuf> = std::fs::read_dir(root.join("agent/bundles"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| !before.contains(p))
        .collect();
    anyhow::ensure!(bundles.is_empty(), "the failed download left {bundles:?}");
    Ok(())
}

fn stored_bundles(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(root.join("agent/bundles"))?
        .flatten()
        .map(|e| e.path())
        .collect())
}

fn enospc_step(d: &Deployment) -> Option<String> {
    d.instances
        .iter()
        .flat_map(|i| &i.steps)
        .find(|s| s.state == StepState::Failed && s.message.contains("No space left on device"))
        .map(|s| format!("{}: {}", s.event, s.message))
}

#[test]
fn a_full_disk_fails_the_step_not_the_agent_and_the_next_deployment_succeeds() -> anyhow::Result<()>
{
    let tmpfs = Tmpfs::mount("4m")?;
    let dest = Tmpfs::mount("512k")?;
    let mut fleet = Fleet::start(0)?;
    let filler = tmpfs.path.join("filler");
    let result = rollcage_e2e::caught(|| {
        let root = tmpfs.path.clone();
        let mut cmd = Command::new(rollcage_bin()?);
        cmd.arg("agent")
            .arg("--coordinator")
            .arg(fleet.coordinator.url())
            .arg("--root")
            .arg(&root)
            .arg("--name")
            .arg("i0")
            // A secret: in a file (mode 0600), never on a command line.
            .arg("--enroll-token-file")
            .arg(fleet.coordinator.enroll_token_file())
            .arg("--var")
            .arg(format!("MARKERS={}", fleet.markers.display()))
            .arg("--var")
            .arg(format!("FILL={}", filler.display()))
            .env("RUST_LOG", "info");
        let proc = Proc::spawn(cmd, &fleet.dir.path().join("agent-i0.log"))?;
        fleet.agents.push(AgentProc {
            name: "i0".into(),
            root: root.clone(),
            proc,
        });
        fleet.setup("shop", "web", "all", false)?;
        let push = |fleet: &Fleet, label: &str, extra: &str| -> anyhow::Result<String> {
            let dir = fleet.dir.path().join(label);
            write_bundle(&dir, label, "0", extra)?;
            fleet.push("shop", &dir)
        };
        let wait = |fleet: &Fleet, rev: &str| -> anyhow::Result<Deployment> {
            let id = fleet.deploy("shop", "web", rev)?;
            fleet.wait_end(&id, Duration::from_secs(90))
        };

        // 1. Full before the deployment starts.
        let v1 = push(&fleet, "v1", "")?;
        fill(&filler)?;
        let d = wait(&fleet, &v1)?;
        assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
        let why = enospc_step(&d);
        assert!(why.is_some(), "a step failed with ENOSPC: {d:?}");
        eprintln!("full before: {}", why.unwrap_or_default());
        assert!(alive(&mut fleet.agents[0].proc)?, "the agent survived");
        let staged: Vec<_> = std::fs::read_dir(root.join("agent/journal"))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "tmp"))
            .map(|e| e.path())
            .collect();
        assert!(staged.is_empty(), "failed journal writes left {staged:?}");

        // Space freed: the same revision deploys.
        std::fs::remove_file(&filler)?;
        let d = wait(&fleet, &v1)?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);

        // 2. A hook fills the disk during the deployment (and succeeds): a later step fails with the error.
        let v2 = push(
            &fleet,
            "v2",
            r#"if [ "$LIFECYCLE_EVENT" = AfterInstall ]; then cat /dev/zero > "$FILL" 2>/dev/null; fi"#,
        )?;
        let d = wait(&fleet, &v2)?;
        assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
        let why = enospc_step(&d);
        assert!(why.is_some(), "a step failed with ENOSPC: {d:?}");
        eprintln!("filled by a hook: {}", why.unwrap_or_default());
        assert!(alive(&mut fleet.agents[0].proc)?, "the agent survived");
        std::fs::remove_file(&filler)?;

        // 3. A revision bigger than the disk: DownloadBundle fails before downloading, naming the archive's size
        // and the free space, and leaves nothing behind.
        let v3 = push_noise(&fleet, "v3", 6 << 20, None)?;
        let before = stored_bundles(&root)?;
        let d = wait(&fleet, &v3)?;
        assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
        let why = early_no_space(&d)?;
        assert!(why.contains("(its archive)"), "{why}");
        eprintln!("revision too big: {why}");
        assert!(alive(&mut fleet.agents[0].proc)?, "the agent survived");
        nothing_left(&root, &d.id, &before)?;

        // 4. A revision that is stored and unpacked but whose files do not fit where Install puts them (outside
        // the agent's root, on a second, smaller tmpfs).
        let v6 = push_noise(&fleet, "v6", 768 << 10, Some(&dest.path))?;
        let d = wait(&fleet, &v6)?;
        assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
        let why = enospc_step(&d);
        assert!(
            why.as_deref().is_some_and(|w| w.starts_with("Install")),
            "Install failed with ENOSPC: {d:?}"
        );
        eprintln!("installed files too big: {}", why.unwrap_or_default());
        assert!(alive(&mut fleet.agents[0].proc)?, "the agent survived");

        // 5. A revision whose archive fits but not once unpacked: DownloadBundle fails before unpacking the entry
        // that would not fit (the archive's declared sizes), naming both figures, and leaves nothing behind (the
        // archive it downloaded is removed too).
        let v5 = push_noise(&fleet, "v5", avail(&root)? * 6 / 10, None)?;
        let before = stored_bundles(&root)?;
        let d = wait(&fleet, &v5)?;
        assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
        let why = early_no_space(&d)?;
        assert!(why.contains("declared sizes, up to `noise.bin`"), "{why}");
        eprintln!("unpacked revision too big: {why}");
        assert!(alive(&mut fleet.agents[0].proc)?, "the agent survived");
        nothing_left(&root, &d.id, &before)?;
        // A filler made the disk too small for v1 (a few KiB of archive, more unpacked): removing it is what
        // "freeing space" means below.
        let v7 = push_noise(&fleet, "v7", 512 << 10, None)?;
        let pad = tmpfs.path.join("pad");
        std::fs::write(
            &pad,
            vec![0u8; usize::try_from(avail(&root)?.saturating_sub(256 << 10))?],
        )?;
        let before = stored_bundles(&root)?;
        let d = wait(&fleet, &v7)?;
        assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
        eprintln!("with the disk nearly full: {}", early_no_space(&d)?);
        nothing_left(&root, &d.id, &before)?;
        std::fs::remove_file(&pad)?;
        let d = wait(&fleet, &v7)?;
        assert_eq!(
            d.status,
            DeploymentStatus::Succeeded,
            "after freeing space: {}",
            d.message
        );

        // Space free again: the next deployment succeeds.
        let v4 = push(&fleet, "v4", "")?;
        let d = wait(&fleet, &v4)?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        assert!(alive(&mut fleet.agents[0].proc)?, "the agent survived");
        Ok(())
    });
    if let Err(e) = result {
        // Keep the logs (the agent's root goes with the tmpfs).
        let kept = fleet.keep();
        bail!("{e:#}\nlogs kept in {}", kept.display());
    }
    drop(fleet);
    drop((tmpfs, dest));
    Ok(())
}
