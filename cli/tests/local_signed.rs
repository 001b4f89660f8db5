//! `rollcage local --trusted-signers FILE --signature FILE`, as a real process: a bundle signed by `ssh-keygen`
//! with a listed key deploys; without a signature, or signed by another key, it fails at DownloadBundle naming why,
//! with nothing unpacked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn ok(cmd: &mut Command) -> Result<String, Box<dyn std::error::Error>> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A tar.gz holding only `payload.txt`, deployed with a form that copies it to `dest`.
fn bundle(dir: &Path) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let path = dir.join("b.tar.gz");
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&path)?, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "payload.txt", &b"v1\n"[..])?;
    tar.into_inner()?.finish()?;
    let form = dir.join("form.toml");
    std::fs::write(
        &form,
        format!(
            "destination = \"{}\"\nstop = \"true\"\nstart = \"true\"\ncheck = \"true\"\n",
            dir.join("srv").display()
        ),
    )?;
    Ok((path, form))
}

fn keygen(dir: &Path, name: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let key = dir.join(name);
    ok(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key))?;
    Ok(key)
}

fn local(
    dir: &Path,
    id: &str,
    bundle: &Path,
    form: &Path,
    extra: &[&Path],
    flags: &[&str],
) -> std::io::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollcage"));
    cmd.arg("local")
        .arg("--bundle")
        .arg(bundle)
        .arg("--form")
        .arg(form)
        .arg("--root")
        .arg(dir.join("root"))
        .args(["--deployment-id", id]);
    for (flag, path) in flags.iter().zip(extra) {
        cmd.arg(flag).arg(path);
    }
    cmd.output()
}

#[test]
fn local_deploys_only_a_bundle_signed_by_a_trusted_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let (archive, form) = bundle(dir)?;
    let trusted = keygen(dir, "trusted")?;
    let stranger = keygen(dir, "stranger")?;
    let signers = dir.join("allowed_signers");
    std::fs::write(
        &signers,
        format!(
            "ops namespaces=\"rollcage\" {}",
            std::fs::read_to_string(trusted.with_extension("pub"))?
        ),
    )?;
    let revision = |id: &str| dir.join(format!("root/app-local/group-local/deploy-{id}/revision"));

    let out = local(
        dir,
        "d1",
        &archive,
        &form,
        &[&signers],
        &["--trusted-signers"],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("DownloadBundle") && stderr.contains("no signature"),
        "{stderr}"
    );
    assert!(!revision("d1").exists());

    ok(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "rollcage", "-f"])
        .arg(&stranger)
        .arg(&archive))?;
    let sig = dir.join("b.tar.gz.sig");
    let out = local(
        dir,
        "d2",
        &archive,
        &form,
        &[&signers, &sig],
        &["--trusted-signers", "--signature"],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown key"), "{stderr}");
    assert!(!revision("d2").exists());

    std::fs::remove_file(&sig)?;
    ok(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "rollcage", "-f"])
        .arg(&trusted)
        .arg(&archive))?;
    let out = local(
        dir,
        "d3",
        &archive,
        &form,
        &[&signers, &sig],
        &["--trusted-signers", "--signature"],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("signed by ssh-ed25519 SHA256:"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(dir.join("srv/payload.txt"))?,
        "v1\n"
    );
    Ok(())
}
