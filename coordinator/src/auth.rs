//! Tokens: the operators' tokens (the bootstrap admin token file and the named tokens of `rollcage token create`,
//! each with a role), the enrollment token, and each agent's own token (stored hashed).
//!
//! Tokens are 32 random bytes from the kernel, hex-encoded, sent as `Authorization: Bearer <token>`. Only their
//! sha256 is kept in memory and in the database, and comparisons are on the hashes, so a database leak does not
//! leak usable tokens.

use rollcage_proto::access::{BOOTSTRAP_TOKEN, Role};
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

/// The token in `given` if named, else in `DATA/<default_name>` if that exists; `None` when neither.
pub fn load_existing(
    data: &Path,
    default_name: &str,
    given: Option<&Path>,
) -> Result<Option<String>, AuthError> {
    if let Some(p) = given {
        return read_token(p).map(Some);
    }
    let path = data.join(default_name);
    if path.exists() {
        return read_token(&path).map(Some);
    }
    Ok(None)
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

/// An operator: who holds a token, with what role, for which applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's name (`bootstrap` for the admin token file).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The applications a deployer may deploy.
    pub apps: Vec<String>,
}

/// What a bearer token turned out to be, for an operator route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// A live operator token.
    Operator(Operator),
    /// A named token that was revoked.
    Revoked(String),
    /// An agent's own token (not an operator's).
    Agent(String),
    /// No token we know.
    Unknown,
}

/// A named token as kept in memory: the operator, and whether it was revoked.
#[derive(Debug, Clone)]
struct Named {
    operator: Operator,
    revoked: bool,
}

/// A use is written to the database at most this often per token: `token list` shows the last use to within it,
/// and a busy CI token costs one write a minute, not one per request.
pub const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Who a request is.
#[derive(Debug)]
pub struct Tokens {
    admin_hash: String,
    enroll_hash: String,
    agents: RwLock<HashMap<String, String>>,
    /// Named operator tokens by hash (revoked ones too, to name them when refused).
    operators: RwLock<HashMap<String, Named>>,
    /// When each named token's use was last written.
    last_used: std::sync::Mutex<HashMap<String, i64>>,
}

impl Tokens {
    /// From the admin and enrollment tokens and the stored agents (name, token hash).
    pub fn new(
        admin: &str,
        enroll: &str,
        agents: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        Self::from_hashes(hash_token(admin), hash_token(enroll), agents)
    }

    /// From the sha256 of the admin and enrollment tokens (several coordinators share them through the database,
    /// which keeps only hashes) and the stored agents (name, token hash).
    pub fn from_hashes(
        admin_hash: String,
        enroll_hash: String,
        agents: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        Self {
            admin_hash,
            enroll_hash,
            agents: RwLock::new(
                agents
                    .into_iter()
                    .map(|(name, hash)| (hash, name))
                    .collect(),
            ),
            operators: RwLock::default(),
            last_used: std::sync::Mutex::default(),
        }
    }

    /// True for a token with the admin role (the bootstrap token or a named admin token).
    pub fn is_admin(&self, token: &str) -> bool {
        matches!(self.identify(token), Identified::Operator(o) if o.role == Role::Admin)
    }

    /// Who `token` is, for an operator route.
    pub fn identify(&self, token: &str) -> Identified {
        let h = hash_token(token);
        if h == self.admin_hash {
            return Identified::Operator(Operator {
                name: BOOTSTRAP_TOKEN.to_owned(),
                role: Role::Admin,
                apps: Vec::new(),
            });
        }
        let named = self
            .operators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
            .cloned();
        match named {
            Some(n) if n.revoked => Identified::Revoked(n.operator.name),
            Some(n) => Identified::Operator(n.operator),
            None => match self.agent(token) {
                Some(name) => Identified::Agent(name),
                None => Identified::Unknown,
            },
        }
    }

    /// Add a named operator token by its hash (`revoked`: known, but refused).
    pub fn set_operator(&self, hash: String, operator: Operator, revoked: bool) {
        let mut map = self.operators.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, n| n.operator.name != operator.name);
        map.insert(hash, Named { operator, revoked });
    }

    /// Add (or replace) a named operator token as the store keeps it.
    pub fn set_stored(&self, t: crate::store::tokens::StoredToken) {
        self.set_operator(
            t.hash,
            Operator {
                name: t.info.name,
                role: t.info.role,
                apps: t.info.apps,
            },
            t.revoked,
        );
    }

    /// Revoke the named token `name`: it is refused from now on.
    pub fn revoke_operator(&self, name: &str) {
        let mut map = self.operators.write().unwrap_or_else(|e| e.into_inner());
        for n in map.values_mut() {
            if n.operator.name == name {
                n.revoked = true;
            }
        }
    }

    /// Note that named token `name` was used at `now`; true when the use should be written to the database (the
    /// last written one is [`LAST_USED_GRANULARITY_MS`] old or more). The bootstrap token is not stored.
    pub fn note_use(&self, name: &str, now: i64) -> bool {
        if name == BOOTSTRAP_TOKEN {
            return false;
        }
        let mut map = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some(&t) if now - t < LAST_USED_GRANULARITY_MS => false,
            _ => {
                map.insert(name.to_owned(), now);
                true
            }
        }
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

    /// Forget every cached agent token (another coordinator removed an agent; each is looked up again on its
    /// agent's next call).
    pub fn forget_agents(&self) {
        self.agents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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

    #[test]
    fn named_tokens_are_identified_by_hash_and_refused_once_revoked() {
        let t = Tokens::new("a", "e", [("i1".to_owned(), hash_token("agent"))]);
        let ci = Operator {
            name: "ci".into(),
            role: Role::Deployer,
            apps: vec!["app1".into()],
        };
        t.set_operator(hash_token("s1"), ci.clone(), false);
        assert_eq!(t.identify("s1"), Identified::Operator(ci.clone()));
        assert!(!t.is_admin("s1"));
        assert!(matches!(t.identify("a"), Identified::Operator(o) if o.name == BOOTSTRAP_TOKEN));
        assert_eq!(t.identify("agent"), Identified::Agent("i1".into()));
        assert_eq!(t.identify("nope"), Identified::Unknown);
        t.revoke_operator("ci");
        assert_eq!(t.identify("s1"), Identified::Revoked("ci".into()));
        // A new token of the name replaces the revoked one.
        t.set_operator(hash_token("s2"), ci.clone(), false);
        assert_eq!(t.identify("s1"), Identified::Unknown);
        assert_eq!(t.identify("s2"), Identified::Operator(ci));
        assert!(t.note_use("ci", 0) && !t.note_use("ci", 59_999) && t.note_use("ci", 60_000));
        assert!(!t.note_use(BOOTSTRAP_TOKEN, 0));
    }
}
