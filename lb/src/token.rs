//! The admin API's bearer token: read from a file that only its owner may read, or generated into a new
//! 0600 file when the file does not exist.

use crate::error::LbError;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Shortest token accepted from a file: 16 characters leaves no room for guessing over the network.
const MIN_TOKEN_LEN: usize = 16;

/// Reads the token in `path`, or creates the file with a new random token (32 random bytes, hex).
pub fn load_or_create(path: &Path) -> Result<String, LbError> {
    let err = |problem: String| LbError::TokenFile {
        path: path.to_owned(),
        problem,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "readable or writable by group or others (mode {mode:o}); expected 0600"
                )));
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
            let token = text.trim().to_owned();
            if token.len() < MIN_TOKEN_LEN
                || token.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(err(format!(
                    "expected one token of at least {MIN_TOKEN_LEN} visible characters"
                )));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token =
                random_token().map_err(|e| err(format!("cannot read /dev/urandom: {e}")))?;
            rollcage_secretfile::write_secret(path, format!("{token}\n").as_bytes())
                .map_err(|e| err(format!("cannot create: {e}")))?;
            tracing::info!(path = %path.display(), "generated a new admin token");
            Ok(token)
        }
        Err(e) => Err(err(format!("cannot inspect: {e}"))),
    }
}

fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_0600_token_then_reads_it_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/admin.token");
        let first = load_or_create(&path)?;
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path)?, first);
        Ok(())
    }

    #[test]
    fn refuses_a_world_readable_or_short_token() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t");
        std::fs::write(&path, "0123456789abcdef0123")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        assert!(load_or_create(&path).is_err_and(|e| e.to_string().contains("mode 644")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert!(load_or_create(&path).is_ok());
        std::fs::write(&path, "short")?;
        assert!(load_or_create(&path).is_err_and(|e| e.to_string().contains("at least 16")));
        Ok(())
    }
}
