//! The `sandbox:` map of a wasm hook entry, parsed into [`SandboxSpec`] (issue 3): deny by default, so every key
//! and value is checked and anything unknown is an error rather than silently granting or dropping a capability.

use super::fields::{self, index, join};
use super::paths::{check_host_path, check_revision_path};
use super::problem::{ProblemKind, Problems};
use super::yaml::Node;
use rollcage_proto::sandbox::{DEFAULT_MEMORY_MB, MAX_GRANT_MAX_MB};
use rollcage_proto::{DirAccess, DirGrant, SandboxSpec};

/// Highest `memory_mb` a hook may ask for. A hook validates or renders config; 4 GiB is the whole wasm32 address
/// space, so anything above is a typo (or a unit mix-up) that would otherwise fail only at run time.
pub const MAX_MEMORY_MB: u64 = 4096;

const KEYS: [&str; 6] = ["memory_mb", "dirs", "env", "http", "http_ca", "args"];
const DIR_KEYS: [&str; 4] = ["host", "guest", "access", "max_mb"];

/// Parse the map; `None` when it is not a mapping at all. Individual bad values are reported and left at their
/// defaults so the rest can still be checked.
pub(crate) fn parse_sandbox(
    node: &Node,
    path: &str,
    problems: &mut Problems,
) -> Option<SandboxSpec> {
    let map = fields::map(node, path, "a sandbox mapping", problems)?;
    map.reject_unknown(&KEYS, path, problems);
    let mut spec = SandboxSpec::default();
    if let Some(n) = map.get("memory_mb") {
        spec.memory_mb =
            memory_mb(n, &join(path, "memory_mb"), problems).unwrap_or(DEFAULT_MEMORY_MB);
    }
    if let Some(n) = map.get("dirs") {
        let dirs_path = join(path, "dirs");
        if let Some(items) = fields::list(n, &dirs_path, "directory grants", problems) {
            spec.dirs = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| dir_grant(item, &index(&dirs_path, i), problems))
                .collect();
        }
    }
    if let Some(n) = map.get("env") {
        let env_path = join(path, "env");
        for (i, (name, pos)) in fields::strings(n, &env_path, "variable names", problems)
            .into_iter()
            .enumerate()
        {
            match rollcage_proto::hookvar::check_var_name(&name) {
                Ok(()) => spec.env.push(name),
                Err(rollcage_proto::hookvar::BadVarName::NotAnIdentifier(_)) => problems.push(
                    ProblemKind::InvalidEnvName,
                    &index(&env_path, i),
                    Some(pos),
                    format!(
                        "`{name}` is not a variable name; expected {}",
                        rollcage_proto::hookvar::VAR_NAME_RULE
                    ),
                ),
                Err(e) => problems.push(
                    ProblemKind::InvalidEnvName,
                    &index(&env_path, i),
                    Some(pos),
                    e.to_string(),
                ),
            }
        }
    }
    if let Some(n) = map.get("http") {
        let http_path = join(path, "http");
        for (i, (prefix, pos)) in fields::strings(n, &http_path, "URL prefixes", problems)
            .into_iter()
            .enumerate()
        {
            match http_prefix(&prefix) {
                Ok(()) => spec.http.push(prefix),
                Err(why) => problems.push(
                    ProblemKind::InvalidUrl,
                    &index(&http_path, i),
                    Some(pos),
                    why,
                ),
            }
        }
    }
    if let Some(n) = map.get("http_ca") {
        let ca_path = join(path, "http_ca");
        spec.http_ca = fields::string(n, &ca_path, problems).filter(|ca| {
            if ca.starts_with('/') || ca.is_empty() {
                problems.push(
                    ProblemKind::InvalidValue,
                    &ca_path,
                    Some(n.pos),
                    format!(
                        "`{ca}`: expected the path of a PEM file inside the revision, relative to its root \
                         (e.g. `certs/internal-ca.pem`)"
                    ),
                );
                return false;
            }
            check_revision_path(ca, &ca_path, n.pos, problems)
        });
    }
    if let Some(n) = map.get("args") {
        spec.args = fields::strings(n, &join(path, "args"), "arguments", problems)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
    }
    Some(spec)
}

fn memory_mb(node: &Node, path: &str, problems: &mut Problems) -> Option<u64> {
    let value = node
        .scalar()
        .filter(|s| s.plain)
        .and_then(|s| s.text.parse::<u64>().ok());
    match value {
        Some(v) if (1..=MAX_MEMORY_MB).contains(&v) => Some(v),
        _ => {
            problems.push(
                ProblemKind::InvalidMemory,
                path,
                Some(node.pos),
                format!("invalid memory_mb {}; expected a whole number of MiB from 1 to {MAX_MEMORY_MB}", node.describe()),
            );
            None
        }
    }
}

/// `dirs[].max_mb`: a whole number of MiB from 1 to [`MAX_GRANT_MAX_MB`], and only on a read-write grant (a
/// read-only grant cannot be written, so a quota there is a misunderstanding worth pointing out).
fn max_mb(node: &Node, access: DirAccess, path: &str, problems: &mut Problems) -> Option<u64> {
    let value = node
        .scalar()
        .filter(|s| s.plain)
        .and_then(|s| s.text.parse::<u64>().ok());
    match value {
        Some(v) if (1..=MAX_GRANT_MAX_MB).contains(&v) => {
            if access == DirAccess::ReadOnly {
                problems.push(
                    ProblemKind::InvalidQuota,
                    path,
                    Some(node.pos),
                    "max_mb on a read-only grant; it is the write quota of a read-write grant: add `access: read-write` or remove `max_mb`",
                );
                return None;
            }
            Some(v)
        }
        _ => {
            problems.push(
                ProblemKind::InvalidQuota,
                path,
                Some(node.pos),
                format!(
                    "invalid max_mb {}; expected a whole number of MiB from 1 to {MAX_GRANT_MAX_MB}",
                    node.describe()
                ),
            );
            None
        }
    }
}

fn dir_grant(node: &Node, path: &str, problems: &mut Problems) -> Option<DirGrant> {
    let map = fields::map(
        node,
        path,
        "a mapping with host, guest and access",
        problems,
    )?;
    map.reject_unknown(&DIR_KEYS, path, problems);
    let before = problems.len();
    let host = match map.get("host") {
        Some(n) => fields::string(n, &join(path, "host"), problems)
            .filter(|h| check_host_path(h, &join(path, "host"), n.pos, problems)),
        None => {
            problems.push(
                ProblemKind::MissingField,
                path,
                Some(map.pos),
                "directory grant without `host`",
            );
            None
        }
    };
    let guest = map.get("guest").and_then(|n| {
        fields::string(n, &join(path, "guest"), problems)
            .filter(|g| check_host_path(g, &join(path, "guest"), n.pos, problems))
    });
    let access = match map.get("access") {
        None => DirAccess::ReadOnly,
        Some(n) => match n.scalar().map(|s| s.text.as_str()) {
            Some("read-only") => DirAccess::ReadOnly,
            Some("read-write") => DirAccess::ReadWrite,
            _ => {
                problems.push(
                    ProblemKind::InvalidValue,
                    &join(path, "access"),
                    Some(n.pos),
                    format!(
                        "invalid access {}; expected `read-only` or `read-write`",
                        n.describe()
                    ),
                );
                DirAccess::ReadOnly
            }
        },
    };
    let max_mb = map
        .get("max_mb")
        .and_then(|n| max_mb(n, access, &join(path, "max_mb"), problems));
    let host = host?;
    (problems.len() == before).then_some(DirGrant {
        host,
        guest,
        access,
        max_mb,
    })
}

/// An http(s) URL prefix with a host.
fn http_prefix(prefix: &str) -> Result<(), String> {
    let url = url::Url::parse(prefix).map_err(|e| {
        format!("`{prefix}` is not a URL ({e}); expected http://host/… or https://host/…")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "`{prefix}` must be an http:// or https:// URL with a host"
        ));
    }
    Ok(())
}
