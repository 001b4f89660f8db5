//! Tokens: the operators' admin token, the enrollment token, and each agent's own token (stored hashed).
//!
//! Tokens are 32 random bytes from the kernel, hex-encoded, sent as `Authorization: Bearer <token>`. Only their
//! sha256 is kept in memory and in the database, and comparisons are on the hashes, so a database leak does not
//! leak usable tokens.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Token files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing a token file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing a token file failed.
    #[error(transparent)]
    Write(#[from] rollcage_secretfile::WriteError),
    /// A token file is empty.
    #[error("token file {0} is empty")]
    Empty(PathBuf),
}

/// `n` random bytes from the kernel as lowercase hex.
pub fn random_bytes_hex(n: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Random hex for ids (not secrets): falls back to a time-seeded value if the kernel source fails.
pub fn random_hex(n: usize) -> String {
    random_bytes_hex(n).unwrap_or_else(|_| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut s = format!("{t:032x}");
        s.truncate(n * 2);
        s
    })
}

/// sha256 of a token, lowercase hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Read a token file (trimmed).
pub fn read_token(path: &Path) -> Result<String, AuthError> {
    let s = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
        what: "reading token file",
        path: path.to_owned(),
        source,
    })?;
    let t = s.trim().to_owned();
    if t.is_empty() {
        return Err(AuthError::Empty(path.to_owned()));
    }
    Ok(t)
}

/// Use the token in `given` if named, else `DATA/<default_name>`, creating it on first start.
pub fn load_or_create(
    data: &Path,
    default_name: &str,
    given: Option<&Path>,
) -> Result<String, AuthError> {
    if let Some(p) = given {
        return read_token(p);
    }
    let path = data.join(default_name);
    if path.exists() {
        return read_token(&path);
    }
    let token = random_bytes_hex(32).map_err(|source| AuthError::Io {
        what: "reading random bytes for",
        path: path.clone(),
        source,
    })?;
    rollcage_secretfile::write_secret(&path, format!("{token}\n").as_bytes())?;
    tracing::info!(path = %path.display(), "created token file");
    Ok(token)
}

/// Who a request is.
#[derive(Debug)]
pub struct Tokens {
    admin_hash: String,
    enroll_hash: String,
    agents: RwLock<HashMap<String, String>>,
}

impl Tokens {
    /// From the admin and enrollment tokens and the stored agents (name, token hash).
    pub fn new(
        admin: &str,
        enroll: &str,
        agents: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        Self {
            admin_hash: hash_token(admin),
            enroll_hash: hash_token(enroll),
            agents: RwLock::new(
                agents
                    .into_iter()
                    .map(|(name, hash)| (hash, name))
                    .collect(),
            ),
        }
    }

    /// True for the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        hash_token(token) == self.admin_hash
    }

    /// True for the enrollment token.
    pub fn is_enroll(&self, token: &str) -> bool {
        hash_token(token) == self.enroll_hash
    }

    /// The agent a token belongs to.
    pub fn agent(&self, token: &str) -> Option<String> {
        let h = hash_token(token);
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
            .cloned()
    }

    /// Give `name` a new token hash (the previous token of that name stops working).
    pub fn set_agent(&self, name: &str, hash: String) {
        let mut map = self.agents.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, n| n != name);
        map.insert(hash, name.to_owned());
    }

    /// Forget `name`'s token (it stops working at once).
    pub fn remove_agent(&self, name: &str) {
        let mut map = self.agents.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, n| n != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_created_0600_and_reused() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let a = load_or_create(dir.path(), "admin-token", None)?;
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(dir.path().join("admin-token"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(dir.path(), "admin-token", None)?, a);
        Ok(())
    }

    #[test]
    fn re_enrolling_replaces_the_token() {
        let t = Tokens::new("a", "e", []);
        t.set_agent("i1", hash_token("t1"));
        t.set_agent("i1", hash_token("t2"));
        assert_eq!(t.agent("t1"), None);
        assert_eq!(t.agent("t2").as_deref(), Some("i1"));
        assert!(t.is_admin("a") && !t.is_admin("e") && t.is_enroll("e"));
    }
}
