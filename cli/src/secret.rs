//! Reading the secrets the `rollcage` commands are given: always from a file (or, for the operator CLI, the
//! `ROLLCAGE_TOKEN` environment variable), never from a command-line argument, which every local user can read in
//! `/proc/PID/cmdline`.
//!
//! A token file must be private (no permission for group or others, as `rollcage agent install`, the coordinator and
//! the LB write theirs): a secret others can read is already leaked, and saying so beats using it quietly.

use anyhow::{Context, bail};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Read a token file (`what` names it in errors): one token, trimmed, from a file no one but its owner can read.
pub fn read_token_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    check_private(path, what)?;
    let token = text.trim();
    if token.is_empty() {
        bail!("{what} {} is empty", path.display());
    }
    Ok(token.to_owned())
}

/// The enrollment token from `path`, or `None` when the file is gone: an agent that already enrolled keeps its own
/// token, and operators may delete the enrollment token after.
pub fn read_enroll_token(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no enrollment token file; using the agent's own token");
            Ok(None)
        }
        _ => read_token_file(path, "enrollment token file").map(Some),
    }
}

fn check_private(path: &Path, what: &str) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("looking at {what} {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} is readable or writable by others (mode {:04o}): the secret in it is not private; \
             `chmod 600 {}` (and use a fresh token if others may have read it)",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_private_file_is_read_trimmed_a_shared_or_empty_one_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("t");
        rollcage_secretfile::write_secret(&p, b" tok\n")?;
        assert_eq!(read_token_file(&p, "token file")?, "tok");
        assert_eq!(read_enroll_token(&p)?.as_deref(), Some("tok"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
        let e = read_token_file(&p, "token file")
            .err()
            .ok_or("a 0644 token file accepted")?;
        assert!(e.to_string().contains("mode 0644"), "{e}");
        rollcage_secretfile::write_secret(&p, b"\n")?;
        assert!(read_token_file(&p, "token file").is_err());
        assert_eq!(read_enroll_token(&dir.path().join("gone"))?, None);
        Ok(())
    }
}
