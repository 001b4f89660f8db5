//! System tools and name lookups for `permissions`: finding `setfacl`, `semanage`/`restorecon` or `chcon` in a
//! search path (injectable, so tests can point it at an empty directory or at fakes), running them with argument
//! vectors (never a shell string), resolving user and group names, and the pure text builders for their arguments.
//!
//! SELinux contexts: with `semanage` and `restorecon` present, a persistent rule is added
//! (`semanage fcontext -a -t TYPE [-s USER] [-r RANGE] -- REGEX`, then `restorecon -- PATH`) and recorded in the
//! cleanup list so the next install deletes it (CodeDeploy's way). Otherwise `chcon` labels the object directly
//! (not persistent across a relabel, nothing to clean up). With neither, the install fails naming the tools.

use super::error::InstallError;
use crate::appspec::{AclEntry, AclTag, Permission, SelinuxContext, SelinuxRange};
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where tools are looked for by default: the standard system directories, not the agent's own `PATH` (which
/// the agent's environment could point anywhere).
pub const SYSTEM_TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Stderr kept in an error message; tool diagnostics are short, a runaway one must not bloat the error.
const MAX_STDERR: usize = 2048;

/// The first executable regular file called `name` in `search_path`.
pub fn find_tool(name: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Run `tool` with `args` on `path` (named in errors), with an empty environment apart from a fixed `PATH` and
/// `LC_ALL=C`, stdin closed; its stderr is captured for the error.
pub fn run(tool: &Path, args: &[&OsStr], path: &Path) -> Result<(), InstallError> {
    let out = Command::new(tool)
        .args(args)
        .env_clear()
        .env("PATH", SYSTEM_TOOL_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| InstallError::ToolSpawn {
            tool: tool.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.len() > MAX_STDERR {
        let cut = (0..=MAX_STDERR)
            .rev()
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(0);
        stderr.truncate(cut);
        stderr.push('…');
    }
    Err(InstallError::ToolFailed {
        tool: tool.to_owned(),
        path: path.to_owned(),
        status: out.status.to_string(),
        stderr,
    })
}

/// How SELinux contexts are applied on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelinuxTool {
    /// Persistent rule plus relabel.
    Semanage {
        /// `semanage`.
        semanage: PathBuf,
        /// `restorecon`.
        restorecon: PathBuf,
    },
    /// Direct relabel.
    Chcon(PathBuf),
}

/// The tools the AppSpec's `permissions` need, found before anything is changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    /// `setfacl`, when some entry has `acls`.
    pub setfacl: Option<PathBuf>,
    /// The SELinux tool, when some entry has a `context`.
    pub selinux: Option<SelinuxTool>,
}

/// Find every tool some `permissions` entry needs; a missing one is an error naming it and the field.
pub fn find_tools(perms: &[Permission], search_path: &OsStr) -> Result<Tools, InstallError> {
    let mut tools = Tools::default();
    let searched = search_path.to_string_lossy().into_owned();
    if let Some(i) = perms
        .iter()
        .position(|p| p.acls.as_ref().is_some_and(|a| !a.is_empty()))
    {
        tools.setfacl =
            Some(
                find_tool("setfacl", search_path).ok_or_else(|| InstallError::MissingTool {
                    tool: "setfacl",
                    package: "acl",
                    field: format!("permissions[{i}].acls"),
                    searched: searched.clone(),
                })?,
            );
    }
    if let Some(i) = perms.iter().position(|p| p.context.is_some()) {
        let semanage = find_tool("semanage", search_path).zip(find_tool("restorecon", search_path));
        tools.selinux = Some(match (semanage, find_tool("chcon", search_path)) {
            (Some((semanage, restorecon)), _) => SelinuxTool::Semanage {
                semanage,
                restorecon,
            },
            (None, Some(chcon)) => SelinuxTool::Chcon(chcon),
            (None, None) => {
                return Err(InstallError::MissingTool {
                    tool: "semanage and restorecon, or chcon",
                    package: "policycoreutils-python-utils / policycoreutils, or coreutils",
                    field: format!("permissions[{i}].context"),
                    searched,
                });
            }
        });
    }
    Ok(tools)
}

/// Numeric ids of one `permissions` entry's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedIds {
    /// `owner`.
    pub owner: Option<Uid>,
    /// `group`.
    pub group: Option<Gid>,
    /// Per ACL entry: the numeric id of its named user/group (`None` for base entries).
    pub acl_ids: Vec<Option<u32>>,
}

/// Resolve every user and group name of `perms` (owner, group, named ACL entries) before anything is changed.
pub fn resolve_names(perms: &[Permission]) -> Result<Vec<ResolvedIds>, InstallError> {
    perms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let owner = p
                .owner
                .as_deref()
                .map(|n| user_id(&format!("permissions[{i}].owner"), n))
                .transpose()?;
            let group = p
                .group
                .as_deref()
                .map(|n| group_id(&format!("permissions[{i}].group"), n))
                .transpose()?;
            let acl_ids = p
                .acls
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, e)| {
                    let field = format!("permissions[{i}].acls[{j}]");
                    if e.name.is_empty() {
                        return Ok(None);
                    }
                    // A numeric name is an id already (setfacl accepts those too).
                    if let Ok(id) = e.name.parse::<u32>() {
                        return Ok(Some(id));
                    }
                    match e.tag {
                        AclTag::User => user_id(&field, &e.name).map(|u| Some(u.as_raw())),
                        AclTag::Group => group_id(&field, &e.name).map(|g| Some(g.as_raw())),
                        AclTag::Mask | AclTag::Other => Ok(None),
                    }
                })
                .collect::<Result<_, InstallError>>()?;
            Ok(ResolvedIds {
                owner,
                group,
                acl_ids,
            })
        })
        .collect()
}

fn user_id(field: &str, name: &str) -> Result<Uid, InstallError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid),
        Ok(None) => Err(InstallError::UnknownUser {
            field: field.to_owned(),
            name: name.to_owned(),
        }),
        Err(source) => Err(InstallError::NameLookup {
            field: field.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

fn group_id(field: &str, name: &str) -> Result<Gid, InstallError> {
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(InstallError::UnknownGroup {
            field: field.to_owned(),
            name: name.to_owned(),
        }),
        Err(source) => Err(InstallError::NameLookup {
            field: field.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

/// The `setfacl --set` argument: the listed entries plus the base entries `setfacl --set` requires, synthesised
/// from `mode` (the object's mode after chmod) where the AppSpec does not give them. Default entries are kept for
/// directories only (a file cannot carry them); when there are any, default base entries are synthesised too.
/// Named entries use the numeric ids resolved at planning.
pub fn acl_spec(acls: &[AclEntry], ids: &[Option<u32>], mode: u32, is_dir: bool) -> String {
    let keep: Vec<(&AclEntry, Option<u32>)> = acls
        .iter()
        .zip(ids.iter().copied().chain(std::iter::repeat(None)))
        .filter(|(e, _)| is_dir || !e.default)
        .collect();
    let has = |default: bool, tag: AclTag| {
        keep.iter()
            .any(|(e, _)| e.default == default && e.tag == tag && e.name.is_empty())
    };
    let mut parts = Vec::new();
    let wants_default = keep.iter().any(|(e, _)| e.default);
    for default in [false, true] {
        if default && !wants_default {
            continue;
        }
        for (tag, shift) in [(AclTag::User, 6), (AclTag::Group, 3), (AclTag::Other, 0)] {
            if !has(default, tag) {
                let entry = AclEntry {
                    default,
                    tag,
                    name: String::new(),
                    perms: ((mode >> shift) & 7) as u8,
                };
                parts.push(ace_text(&entry, None));
            }
        }
    }
    parts.extend(keep.iter().map(|(e, id)| ace_text(e, *id)));
    parts.join(",")
}

fn ace_text(e: &AclEntry, id: Option<u32>) -> String {
    let tag = match e.tag {
        AclTag::User => "u",
        AclTag::Group => "g",
        AclTag::Mask => "m",
        AclTag::Other => "o",
    };
    let name = id.map_or_else(|| e.name.clone(), |id| id.to_string());
    let perms: String = [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|&(bit, c)| if e.perms & bit != 0 { c } else { '-' })
        .collect();
    format!("{}{tag}:{name}:{perms}", if e.default { "d:" } else { "" })
}

/// An MLS range as SELinux writes it, categories compressed into runs: `s0-s2:c0.c3,c7`.
pub fn range_text(r: &SelinuxRange) -> String {
    let mut text = format!("s{}", r.low);
    if r.high != r.low {
        text.push_str(&format!("-s{}", r.high));
    }
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &c in &r.categories {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == c => *end = c,
            _ => runs.push((c, c)),
        }
    }
    if !runs.is_empty() {
        let cats: Vec<String> = runs
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    format!("c{a}")
                } else {
                    format!("c{a}.c{b}")
                }
            })
            .collect();
        text.push(':');
        text.push_str(&cats.join(","));
    }
    text
}

/// `semanage fcontext` takes a regular expression: the path with its metacharacters escaped, so it matches only
/// itself.
pub fn fcontext_spec(path: &Path) -> String {
    let mut spec = String::new();
    for c in path.to_string_lossy().chars() {
        if "\\.^$*+?()[]{}|".contains(c) {
            spec.push('\\');
        }
        spec.push(c);
    }
    spec
}

/// Arguments of `semanage fcontext -a` (without the tool) for `ctx` on `path`.
pub fn semanage_args(ctx: &SelinuxContext, path: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "fcontext".into(),
        "-a".into(),
        "-t".into(),
        ctx.type_.clone().into(),
    ];
    if let Some(user) = &ctx.user {
        args.extend(["-s".into(), user.into()]);
    }
    if let Some(range) = &ctx.range {
        args.extend(["-r".into(), range_text(range).into()]);
    }
    args.extend(["--".into(), fcontext_spec(path).into()]);
    args
}

/// Arguments of `chcon` (without the tool) for `ctx` on `path`.
pub fn chcon_args(ctx: &SelinuxContext, path: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(user) = &ctx.user {
        args.extend(["-u".into(), user.into()]);
    }
    args.extend(["-t".into(), ctx.type_.clone().into()]);
    if let Some(range) = &ctx.range {
        args.extend(["-l".into(), range_text(range).into()]);
    }
    args.extend(["--".into(), path.as_os_str().to_owned()]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ace(default: bool, tag: AclTag, name: &str, perms: u8) -> AclEntry {
        AclEntry {
            default,
            tag,
            name: name.into(),
            perms,
        }
    }

    #[test]
    fn acl_spec_adds_base_entries_from_the_mode() {
        let acls = [
            ace(false, AclTag::User, "henry", 7),
            ace(true, AclTag::Group, "manager", 6),
        ];
        assert_eq!(
            acl_spec(&acls, &[Some(1001), Some(50)], 0o750, true),
            "u::rwx,g::r-x,o::---,d:u::rwx,d:g::r-x,d:o::---,u:1001:rwx,d:g:50:rw-"
        );
        // On a file the default entry is dropped, and so are the default base entries.
        assert_eq!(
            acl_spec(&acls, &[Some(1001), Some(50)], 0o644, false),
            "u::rw-,g::r--,o::r--,u:1001:rwx"
        );
        // A given base entry is not synthesised again.
        assert_eq!(
            acl_spec(&[ace(false, AclTag::Other, "", 1)], &[None], 0o644, false),
            "u::rw-,g::r--,o::--x"
        );
    }

    #[test]
    fn ranges_compress_category_runs() {
        let r = SelinuxRange {
            low: 3,
            high: 5,
            categories: [0, 1, 2, 3, 4, 5, 6, 7, 13].into_iter().collect(),
        };
        assert_eq!(range_text(&r), "s3-s5:c0.c7,c13");
        let r = SelinuxRange {
            low: 0,
            high: 0,
            categories: Default::default(),
        };
        assert_eq!(range_text(&r), "s0");
    }

    #[test]
    fn fcontext_spec_escapes_regex_metacharacters() {
        assert_eq!(
            fcontext_spec(Path::new("/srv/a+b/x.conf")),
            "/srv/a\\+b/x\\.conf"
        );
    }

    #[test]
    fn tools_are_found_only_in_the_given_path() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(find_tool("setfacl", dir.path().as_os_str()), None);
        let tool = dir.path().join("setfacl");
        std::fs::write(&tool, "#!/bin/sh\n")?;
        assert_eq!(
            find_tool("setfacl", dir.path().as_os_str()),
            None,
            "not executable"
        );
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))?;
        assert_eq!(find_tool("setfacl", dir.path().as_os_str()), Some(tool));
        Ok(())
    }
}
