//! Signed revisions end to end (issue 13): an agent started with `--trusted-signers` (an OpenSSH allowed_signers
//! file listing one key for `namespaces="rollcage"`) gets an unsigned bundle, one signed by another key, one whose
//! signature does not match it and one signed for another namespace: each deployment fails at DownloadBundle naming
//! why, and nothing of the revision is unpacked on the host (no `revision/` in its deployment dir, no hook ran).
//! A bundle signed by `ssh-keygen` with the trusted key, and one pushed with `push --sign-key`, deploy.
//!
//! A compromised coordinator can send any signature it likes: the bad-signature bundle is registered by URL (the
//! coordinator has no bytes to check it against), and the wrong-namespace one has its signature written straight
//! into the coordinator's database (the coordinator itself refuses both at upload, which is checked too).

use anyhow::{Context, bail};
use rollcage_e2e::{AgentProc, Fleet, Proc, caught, rollcage_bin, write_bundle};
use rollcage_proto::wire::{Deployment, DeploymentStatus, StepState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Run a command; its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A new ed25519 key pair `dir/name` (no passphrase).
fn keygen(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let key = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key))?;
    Ok(key)
}

/// `ssh-keygen -l` fingerprint (`SHA256:…`) of `key`.
fn fingerprint(key: &Path) -> anyhow::Result<String> {
    let out = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))?;
    Ok(out
        .split_whitespace()
        .nth(1)
        .context("no fingerprint")?
        .to_owned())
}

/// `ssh-keygen -Y sign -n NAMESPACE -f KEY FILE`; returns the path of the signature.
fn sign(key: &Path, file: &Path, namespace: &str) -> anyhow::Result<PathBuf> {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = std::fs::remove_file(&sig);
    run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(file))?;
    Ok(sig)
}

/// A bundle archive (tar.gz) whose hooks write markers labelled `label`.
fn archive(dir: &Path, label: &str) -> anyhow::Result<PathBuf> {
    let src = dir.join(format!("src-{label}"));
    write_bundle(&src, label, "0", "")?;
    let path = dir.join(format!("{label}.tar.gz"));
    run(Command::new("tar")
        .arg("-czf")
        .arg(&path)
        .arg("-C")
        .arg(&src)
        .arg("."))?;
    Ok(path)
}

/// sha256 (hex) of a file, by `sha256sum`.
fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = run(Command::new("sha256sum").arg(path))?;
    Ok(out
        .split_whitespace()
        .next()
        .context("no sha256sum output")?
        .to_owned())
}

/// Start agent `i0` with `--trusted-signers signers` and wait until it enrolled.
fn start_agent(fleet: &mut Fleet, signers: &Path) -> anyhow::Result<()> {
    let name = "i0".to_owned();
    let root = fleet.dir.path().join("agent-i0");
    std::fs::create_dir_all(&root)?;
    let mut cmd = Command::new(rollcage_bin()?);
    cmd.arg("agent")
        .arg("--coordinator")
        .arg(fleet.coordinator.url())
        .arg("--root")
        .arg(&root)
        .arg("--name")
        .arg(&name)
        .arg("--trusted-signers")
        .arg(signers)
        .arg("--var")
        .arg(format!("MARKERS={}", fleet.markers.display()))
        // A secret: through a 0600 file, never on a command line.
        .arg("--enroll-token-file")
        .arg(fleet.coordinator.enroll_token_file())
        .env("RUST_LOG", "info");
    let proc = Proc::spawn(cmd, &root.with_extension("log"))?;
    let start = Instant::now();
    while !std::fs::read_to_string(&proc.log)?.contains("enrolled") {
        if start.elapsed() > Duration::from_secs(60) {
            bail!(
                "agent did not enroll: {}",
                std::fs::read_to_string(&proc.log)?
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fleet.agents.push(AgentProc { name, root, proc });
    Ok(())
}

/// Deploy `revision` to group `web`; wait for the end.
fn deploy(fleet: &Fleet, revision: &str) -> anyhow::Result<Deployment> {
    let id = fleet.deploy("shop", "web", revision)?;
    fleet.wait_end(&id, Duration::from_secs(120))
}

/// The deployment failed at DownloadBundle with a message containing each of `expected`, and nothing of it is on
/// the host: its deployment dir has no `revision/`, and no hook of it ran.
fn refused(fleet: &Fleet, d: &Deployment, expected: &[&str]) -> anyhow::Result<()> {
    assert_eq!(d.status, DeploymentStatus::Failed, "{}", d.message);
    let step = d
        .instances
        .iter()
        .flat_map(|i| &i.steps)
        .find(|s| s.state == StepState::Failed)
        .context("no failed step")?;
    assert_eq!(step.event.name(), "DownloadBundle", "{}", step.message);
    for e in expected {
        assert!(
            step.message.contains(e),
            "`{e}` not in the step message: {}",
            step.message
        );
    }
    let deploy_dir = fleet.agents[0]
        .root
        .join("app-shop")
        .join("group-web")
        .join(format!("deploy-{}", d.id));
    let revision = deploy_dir.join("revision");
    assert!(
        !revision.exists(),
        "{} exists: the refused revision was unpacked",
        revision.display()
    );
    // Nothing staged either: the deployment dir, if any, holds no unpacked entry.
    if let Ok(entries) = std::fs::read_dir(&deploy_dir) {
        for e in entries {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            assert!(
                !name.starts_with("staging-") && name != "revision",
                "{name} in {}",
                deploy_dir.display()
            );
        }
    }
    let markers = fleet.markers()?;
    assert!(
        markers.iter().all(|m| m.deployment != d.id),
        "a hook of refused deployment {} ran: {markers:?}",
        d.id
    );
    Ok(())
}

/// Set the stored signature of `revision` in the coordinator's database, as a compromised coordinator could.
fn tamper_signature(fleet: &Fleet, revision: &str, signature: &str) -> anyhow::Result<()> {
    let db = rusqlite::Connection::open(fleet.coordinator.data.join("rollcage.db"))?;
    db.busy_timeout(Duration::from_secs(5))?;
    let n = db.execute(
        "UPDATE revisions SET signature = ?1, signed_by = 'forged' WHERE id = ?2",
        [signature, revision],
    )?;
    assert_eq!(n, 1, "revision {revision} not in the database");
    Ok(())
}

#[test]
fn an_agent_with_trusted_signers_deploys_only_revisions_signed_by_a_trusted_key()
-> anyhow::Result<()> {
    let mut fleet = Fleet::start(0)?;
    let dir = fleet.dir.path().to_owned();
    let result = caught(|| {
        let trusted = keygen(&dir, "trusted")?;
        let stranger = keygen(&dir, "stranger")?;
        let signers = dir.join("allowed_signers");
        std::fs::write(
            &signers,
            format!(
                "# who may deploy\nops@example.com namespaces=\"rollcage\" {}\n",
                std::fs::read_to_string(trusted.with_extension("pub"))?.trim()
            ),
        )?;
        start_agent(&mut fleet, &signers)?;
        fleet.setup("shop", "web", "all", false)?;
        let arg = |p: &Path| p.display().to_string();

        // Unsigned.
        let unsigned = archive(&dir, "unsigned")?;
        let rev = fleet.push("shop", &unsigned)?;
        let d = deploy(&fleet, &rev)?;
        refused(&fleet, &d, &["no signature", &arg(&signers)])?;

        // Signed by a key the agent does not trust: named by its fingerprint.
        let strange = archive(&dir, "stranger")?;
        let sig = sign(&stranger, &strange, "rollcage")?;
        let (_, out) = fleet.cli(&[
            "push",
            "--app",
            "shop",
            "--signature",
            &arg(&sig),
            &arg(&strange),
        ])?;
        let d = deploy(&fleet, out.trim())?;
        refused(&fleet, &d, &["unknown key", &fingerprint(&stranger)?])?;

        // A trusted key's signature of another bundle: the coordinator refuses it at upload…
        let other = archive(&dir, "other")?;
        let other_sig = sign(&trusted, &other, "rollcage")?;
        let bad = archive(&dir, "bad")?;
        let err = fleet
            .cli(&[
                "push",
                "--app",
                "shop",
                "--signature",
                &arg(&other_sig),
                &arg(&bad),
            ])
            .err()
            .context("the coordinator accepted a signature of other bytes")?;
        assert!(err.to_string().contains("bad signature"), "{err:#}");
        // …and an agent given it anyway (by URL, where the coordinator cannot check) refuses it.
        let url = format!("file://{}", bad.display());
        let (_, out) = fleet.cli(&[
            "push",
            "--app",
            "shop",
            "--url",
            &url,
            "--sha256",
            &sha256(&bad)?,
            "--signature",
            &arg(&other_sig),
        ])?;
        let d = deploy(&fleet, out.trim())?;
        refused(&fleet, &d, &["bad signature", &fingerprint(&trusted)?])?;

        // Signed by the trusted key for another namespace: refused at upload; forced into the database, refused
        // by the agent.
        let file_ns = archive(&dir, "namespace")?;
        let ns_sig = sign(&trusted, &file_ns, "file")?;
        let err = fleet
            .cli(&[
                "push",
                "--app",
                "shop",
                "--signature",
                &arg(&ns_sig),
                &arg(&file_ns),
            ])
            .err()
            .context("the coordinator accepted a signature for namespace file")?;
        assert!(err.to_string().contains("namespace"), "{err:#}");
        let rev = fleet.push("shop", &file_ns)?;
        tamper_signature(&fleet, &rev, &std::fs::read_to_string(&ns_sig)?)?;
        let d = deploy(&fleet, &rev)?;
        refused(&fleet, &d, &["wrong namespace", "\"file\""])?;

        // Signed by ssh-keygen with the trusted key: deploys, and the agent says who signed it.
        let good = archive(&dir, "good")?;
        let sig = sign(&trusted, &good, "rollcage")?;
        let (_, out) = fleet.cli(&[
            "push",
            "--app",
            "shop",
            "--signature",
            &arg(&sig),
            &arg(&good),
        ])?;
        let d = deploy(&fleet, out.trim())?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        let download = d.instances[0]
            .steps
            .iter()
            .find(|s| s.event.name() == "DownloadBundle")
            .context("no DownloadBundle step")?;
        assert!(
            download.message.contains("signed by")
                && download.message.contains(&fingerprint(&trusted)?)
                && download.message.contains("ops@example.com"),
            "{}",
            download.message
        );
        let revision_json =
            fleet.admin_get(&format!("/v1/applications/shop/revisions/{}", d.revision))?;
        assert!(
            revision_json.contains(&fingerprint(&trusted)?),
            "{revision_json}"
        );

        // A directory pushed with `--sign-key`: rollcage signs what it packs.
        let src = dir.join("src-signed-dir");
        write_bundle(&src, "signed-dir", "0", "")?;
        let (_, out) = fleet.cli(&[
            "push",
            "--app",
            "shop",
            "--sign-key",
            &arg(&trusted),
            &arg(&src),
        ])?;
        let d = deploy(&fleet, out.trim())?;
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", d.message);
        Ok(())
    });
    if let Err(e) = result {
        let kept = fleet.keep();
        bail!("{e:#}\n(logs kept in {})", kept.display());
    }
    Ok(())
}
