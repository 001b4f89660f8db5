//! People and what they may do: the operator roles, the JSON of the token routes (`/v1/tokens`, `/v1/whoami`), the
//! audit trail (`/v1/audit`) and who acted on a deployment.
//!
//! The coordinator decides who may do what (its `access` module); this module is only the shape of the data.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What an operator token may do.
///
/// - `viewer` reads everything but the audit trail;
/// - `deployer` also pushes revisions, deploys, stops, rolls back and continues, for its applications only;
/// - `admin` does everything, including tokens, applications, groups, instances and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but the audit trail.
    Viewer,
    /// Reads, and deploys its applications.
    Deployer,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, least powerful first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Deployer, Role::Admin];

    /// The role's name on the wire and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role `{}`: expected admin, deployer or viewer",
            crate::clip::clip_head(&self.0, 40)
        )
    }
}

impl std::error::Error for UnknownRole {}

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The name of the admin token the coordinator keeps in `DATA/admin-token` (or `--admin-token-file`): it is not
/// in the token table, so it cannot be listed or revoked through the API (replace the file and restart instead).
pub const BOOTSTRAP_TOKEN: &str = "bootstrap";

/// Who acts when nobody asked: automatic rollbacks.
pub const SYSTEM_ACTOR: &str = "system";

/// `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The token's name (the one name rule, [`crate::wire::NAME_RULE`]); it names the holder in the audit trail.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The applications a `deployer` may deploy (none: it may deploy nothing); must be empty for other roles.
    #[serde(default)]
    pub apps: Vec<String>,
}

/// A named operator token as listed: never its secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The applications a deployer may deploy.
    pub apps: Vec<String>,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it was last used (to within a minute), if ever.
    pub last_used_ms: Option<i64>,
}

/// The answer to `POST /v1/tokens`: the token's details and, this once, its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token as listed.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret (shown once: the coordinator keeps only its sha256).
    pub token: String,
}

/// `GET /v1/whoami`: who the request's token is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The token's name (`bootstrap` for the admin token file).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The applications it may deploy (deployers).
    pub apps: Vec<String>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Order of recording (the list's cursor).
    pub seq: i64,
    /// When.
    pub at_ms: i64,
    /// Who: a token name, `anonymous` (no token) or `unknown token`.
    pub actor: String,
    /// The actor's role, when it has one (agents and unknown tokens have none).
    pub role: Option<String>,
    /// What was asked, e.g. `deployment.create`, `deployment.stop`, `token.create`.
    pub action: String,
    /// What it was asked of: an application, group, deployment id, token or instance name (empty when none).
    pub target: String,
    /// The HTTP status answered.
    pub status: u16,
    /// A short outcome: `ok`, or the refusal's or error's message (clipped).
    pub outcome: String,
    /// The client's address (`ip:port`), or `unknown`.
    pub remote_addr: String,
}

/// `GET /v1/audit`: newest first, optionally since a time and of one actor; paged like the other lists (the
/// cursor is the `seq` of the previous page's last entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries recorded at or after this time (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Only this actor's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// See [`crate::page::PageQuery::limit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// See [`crate::page::PageQuery::cursor`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl AuditQuery {
    /// The paging part.
    pub fn page(&self) -> crate::page::PageQuery {
        crate::page::PageQuery {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

/// Who created, stopped, rolled back and continued a deployment (token names; [`SYSTEM_ACTOR`] for automatic
/// rollbacks). `None` where nobody did, or for deployments made before this was recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentActors {
    /// Who created it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Who stopped it (the last stop).
    #[serde(default)]
    pub stopped_by: Option<String>,
    /// Who rolled it back.
    #[serde(default)]
    pub rolled_back_by: Option<String>,
    /// Who let it switch traffic (`continue`).
    #[serde(default)]
    pub continued_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_and_print_their_wire_names() {
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>(), Ok(r));
            assert_eq!(
                serde_json::to_value(r).ok(),
                Some(serde_json::Value::from(r.name()))
            );
        }
        assert!("root".parse::<Role>().is_err());
    }
}
