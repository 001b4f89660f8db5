//! Both ways against the real `ssh-keygen` (openssh-client, installed by scripts/setup.sh; these tests fail, never
//! skip, without it): its signatures verify with rollcage's code, rollcage's verify with `ssh-keygen -Y verify`,
//! and each wrong signature is refused with its own reason.

use rollcage_signing::sign::{LoadedKey, load_key, sign_file};
use rollcage_signing::verify::verify_file;
use rollcage_signing::{AllowedSigners, SignatureError, VerifyError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Run a command; fail with its stderr unless it exits 0.
fn run(cmd: &mut Command) -> Result<String, Box<dyn std::error::Error>> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A new key pair `dir/name` (no passphrase) of `ssh-keygen -t ty [-b bits]`.
fn keygen(
    dir: &Path,
    name: &str,
    ty: &str,
    bits: Option<&str>,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let key = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", ty, "-N", "", "-C", name, "-f"])
        .arg(&key);
    if let Some(bits) = bits {
        cmd.args(["-b", bits]);
    }
    run(&mut cmd)?;
    Ok(key)
}

/// The public key line of `key`.
fn public(key: &Path) -> Result<String, Box<dyn std::error::Error>> {
    Ok(std::fs::read_to_string(key.with_extension("pub"))?
        .trim()
        .to_owned())
}

/// `ssh-keygen -l` fingerprint (`SHA256:…`) of `key`.
fn fingerprint(key: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let out = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))?;
    Ok(out
        .split_whitespace()
        .nth(1)
        .ok_or("no fingerprint")?
        .to_owned())
}

/// A 3 MiB bundle-like file (several hash chunks).
fn bundle(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join("bundle.tar.gz");
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// `ssh-keygen -Y sign -n NS -f KEY FILE`; returns the armored signature.
fn keygen_sign(
    key: &Path,
    file: &Path,
    namespace: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = std::fs::remove_file(&sig);
    run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(file))?;
    let text = std::fs::read_to_string(&sig)?;
    std::fs::remove_file(&sig)?;
    Ok(text)
}

/// An allowed_signers file trusting `keys` (principal `p<i>`) for rollcage.
fn signers(dir: &Path, keys: &[&Path]) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut text = String::from("# test signers\n");
    for (i, key) in keys.iter().enumerate() {
        text.push_str(&format!(
            "p{i}@example.com namespaces=\"git,rollcage\" {}\n",
            public(key)?
        ));
    }
    let path = dir.join("allowed_signers");
    std::fs::write(&path, text)?;
    Ok(path)
}

const KEY_TYPES: &[(&str, Option<&str>)] = &[
    ("ed25519", None),
    ("rsa", Some("3072")),
    ("ecdsa", Some("256")),
    ("ecdsa", Some("384")),
    ("ecdsa", Some("521")),
];

#[test]
fn signatures_made_by_ssh_keygen_verify() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = bundle(dir.path())?;
    for (i, (ty, bits)) in KEY_TYPES.iter().enumerate() {
        let key = keygen(dir.path(), &format!("k{i}"), ty, *bits)?;
        let allowed = signers(dir.path(), &[&key])?;
        let sig = keygen_sign(&key, &file, "rollcage")?;
        let ok =
            verify_file(Some(&sig), &allowed, &file).map_err(|e| format!("{ty} {bits:?}: {e}"))?;
        assert_eq!(ok.principals, "p0@example.com", "{ty}");
        assert!(
            ok.signer.contains(&fingerprint(&key)?),
            "{ty}: {}",
            ok.signer
        );
        assert!(
            ok.listed_at.ends_with("allowed_signers:2"),
            "{}",
            ok.listed_at
        );
    }
    Ok(())
}

#[test]
fn signatures_made_by_rollcage_verify_with_ssh_keygen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = bundle(dir.path())?;
    for (i, (ty, bits)) in KEY_TYPES.iter().enumerate() {
        let key = keygen(dir.path(), &format!("k{i}"), ty, *bits)?;
        let allowed = signers(dir.path(), &[&key])?;
        let sig = sign_file(&key, &file)?;
        let sig_path = dir.path().join("ours.sig");
        std::fs::write(&sig_path, &sig)?;
        let out = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "p0@example.com", "-n", "rollcage", "-s"])
            .arg(&sig_path)
            .stdin(Stdio::from(std::fs::File::open(&file)?))
            .output()?;
        assert!(
            out.status.success(),
            "{ty} {bits:?}: ssh-keygen -Y verify refused rollcage's signature: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And over other bytes it does not verify: the check above can fail.
        let other = dir.path().join("other");
        std::fs::write(&other, b"other bytes")?;
        let refused = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "p0@example.com", "-n", "rollcage", "-s"])
            .arg(&sig_path)
            .stdin(Stdio::from(std::fs::File::open(&other)?))
            .output()?;
        assert!(!refused.status.success(), "{ty}: verified over other bytes");
        // Ours verifies with ours too.
        verify_file(Some(&sig), &allowed, &file)?;
    }
    Ok(())
}

#[test]
fn each_wrong_signature_is_refused_with_its_reason() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = bundle(dir.path())?;
    let trusted = keygen(dir.path(), "trusted", "ed25519", None)?;
    let stranger = keygen(dir.path(), "stranger", "ed25519", None)?;
    let allowed = signers(dir.path(), &[&trusted])?;

    // No signature.
    let e = verify_file(None, &allowed, &file)
        .err()
        .ok_or("unsigned accepted")?;
    assert!(matches!(e, VerifyError::NoSignature { .. }), "{e}");
    assert!(e.to_string().starts_with("no signature"), "{e}");

    // Wrong namespace (a `file` signature by the trusted key).
    let sig = keygen_sign(&trusted, &file, "file")?;
    let e = verify_file(Some(&sig), &allowed, &file)
        .err()
        .ok_or("namespace file accepted")?;
    assert!(
        matches!(&e, VerifyError::WrongNamespace { found } if found == "file"),
        "{e}"
    );

    // Wrong key: named by its fingerprint.
    let sig = keygen_sign(&stranger, &file, "rollcage")?;
    let e = verify_file(Some(&sig), &allowed, &file)
        .err()
        .ok_or("stranger accepted")?;
    assert!(matches!(e, VerifyError::UnknownKey { .. }), "{e}");
    assert!(e.to_string().contains(&fingerprint(&stranger)?), "{e}");

    // Tampered bundle: one byte changed after signing.
    let sig = keygen_sign(&trusted, &file, "rollcage")?;
    let mut bytes = std::fs::read(&file)?;
    bytes[1_500_000] ^= 1;
    let tampered = dir.path().join("tampered.tar.gz");
    std::fs::write(&tampered, &bytes)?;
    let e = verify_file(Some(&sig), &allowed, &tampered)
        .err()
        .ok_or("tampered accepted")?;
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e}");
    verify_file(Some(&sig), &allowed, &file)?;

    // Truncated and garbage signatures.
    let cut = &sig[..sig.len() / 2];
    let e = verify_file(Some(cut), &allowed, &file)
        .err()
        .ok_or("truncated accepted")?;
    assert!(
        matches!(e, VerifyError::Malformed(SignatureError::Malformed(_))),
        "{e}"
    );
    let e = verify_file(Some("garbage"), &allowed, &file)
        .err()
        .ok_or("garbage accepted")?;
    assert!(
        matches!(e, VerifyError::Malformed(SignatureError::NotArmored)),
        "{e}"
    );

    // The key listed, but not for rollcage.
    std::fs::write(
        &allowed,
        format!("p0 namespaces=\"git\" {}\n", public(&trusted)?),
    )?;
    let e = verify_file(Some(&sig), &allowed, &file)
        .err()
        .ok_or("git-only key accepted")?;
    assert!(matches!(e, VerifyError::NotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("allowed_signers:1"), "{e}");
    std::fs::write(&allowed, format!("p0 {}\n", public(&trusted)?))?;
    let e = verify_file(Some(&sig), &allowed, &file)
        .err()
        .ok_or("key without namespaces accepted")?;
    assert!(matches!(e, VerifyError::NotAllowed { .. }), "{e}");
    Ok(())
}

#[test]
fn an_encrypted_key_is_recognised_and_a_real_signers_file_parses() -> TestResult {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("locked");
    // A throwaway passphrase for a throwaway test key.
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "test-only", "-f"])
        .arg(&key))?;
    assert!(matches!(load_key(&key)?, LoadedKey::Encrypted));
    let plain = keygen(dir.path(), "plain", "rsa", Some("2048"))?;
    assert!(matches!(load_key(&plain)?, LoadedKey::Plain(_)));
    let allowed = signers(dir.path(), &[&key, &plain])?;
    let parsed = AllowedSigners::load(&allowed)?;
    assert_eq!(parsed.entries().len(), 2);
    Ok(())
}
