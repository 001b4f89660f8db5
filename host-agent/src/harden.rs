//! What the agent checks and sets up before it runs anything: its process protections
//! ([`rollcage_runtime::hardening`]), a root directory nobody else can write to, and private dirs for its secrets.
//!
//! Whoever can write to the root (or replace one of its ancestors) can swap the revisions the agent runs as root, its
//! journal or its token file: the agent refuses to start on a root that is group- or world-writable, below an
//! ancestor that is (the sticky bit, as on `/tmp`, makes an ancestor safe: others can create entries there but
//! not replace ours), or owned by a user other than root and the agent's own. [`check_chain`] is that decision,
//! pure; [`prepare`] gathers the facts and acts on it.
//!
//! Then `ROOT/agent` (token, journal, bundle store) is made private (0700), and so are deployment and state dirs an
//! older agent left open ([`rollcage_runtime::layout`] says who may enter what).

use rollcage_runtime::layout::{GroupLayout, ensure_private_dir};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Write permission for the group or others.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit: in a directory, only an entry's owner may rename or remove it.
const STICKY: u32 = 0o1000;

/// The facts about one directory on the way to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFacts {
    /// The directory.
    pub path: PathBuf,
    /// Its mode bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
}

/// Why the root is unsafe; the agent does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeRoot {
    /// The root, or an ancestor without the sticky bit, is writable by the group or others.
    #[error(
        "refusing to start: {} (mode {mode:04o}) is writable by {}{}; whoever can write there can replace the \
         revisions the agent runs as root, its journal and its token. Remove that write permission (chmod go-w) or \
         choose another --root",
        path.display(),
        if mode & 0o002 != 0 { "everyone" } else { "its group" },
        if *is_root { "" } else { ", without the sticky bit, on the way to the agent's root" }
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// It is the root itself (not an ancestor).
        is_root: bool,
    },
    /// The root or an ancestor belongs to another non-root user.
    #[error(
        "refusing to start: {} (mode {mode:04o}) belongs to uid {uid}, neither root nor the agent's uid {own}; its \
         owner can replace what is below it. Choose a --root owned by root",
        path.display()
    )]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// The agent's effective uid.
        own: u32,
    },
}

/// Decide whether a root is safe. `chain` starts with the root itself when `root_exists` (else with its nearest
/// existing ancestor) and goes up to `/`; `own_uid` is the agent's effective uid. Pure.
pub fn check_chain(chain: &[DirFacts], root_exists: bool, own_uid: u32) -> Result<(), UnsafeRoot> {
    for (i, d) in chain.iter().enumerate() {
        let is_root = i == 0 && root_exists;
        if d.uid != 0 && d.uid != own_uid {
            return Err(UnsafeRoot::ForeignOwner {
                path: d.path.clone(),
                mode: d.mode,
                uid: d.uid,
                own: own_uid,
            });
        }
        // The sticky bit protects entries of an ancestor (ours stays ours), not the root's own content: others
        // could still create the app dirs the agent expects to make.
        let writable = d.mode & WRITABLE_BY_OTHERS != 0;
        if writable && (is_root || d.mode & STICKY == 0) {
            return Err(UnsafeRoot::Writable {
                path: d.path.clone(),
                mode: d.mode,
                is_root,
            });
        }
    }
    Ok(())
}

/// The agent could not be prepared to run.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The root is unsafe.
    #[error(transparent)]
    Unsafe(#[from] UnsafeRoot),
    /// A process protection could not be applied.
    #[error(transparent)]
    Process(#[from] rollcage_runtime::hardening::HardenError),
    /// Looking at or creating a directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The facts of `root` (or of its nearest existing ancestor) and every ancestor up to `/`, symlinks resolved; and
/// whether the root exists.
fn gather(root: &Path) -> Result<(Vec<DirFacts>, bool), PrepareError> {
    let io = |what, path: &Path, source| PrepareError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let abs = std::path::absolute(root).map_err(|e| io("resolving", root, e))?;
    let mut existing = abs.as_path();
    while !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let root_exists = existing == abs;
    let canonical = std::fs::canonicalize(existing).map_err(|e| io("resolving", existing, e))?;
    let mut chain = Vec::new();
    for dir in canonical.ancestors() {
        let meta = std::fs::metadata(dir).map_err(|e| io("looking at", dir, e))?;
        chain.push(DirFacts {
            path: dir.to_owned(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
        });
    }
    Ok((chain, root_exists))
}

/// Before the agent runs: harden the process, check the root ([`check_chain`]), create it if missing, make
/// `ROOT/agent` private, and tighten deployment and state dirs an older agent left open.
pub fn prepare(root: &Path) -> Result<(), PrepareError> {
    rollcage_runtime::hardening::harden_process()?;
    let (chain, exists) = gather(root)?;
    check_chain(&chain, exists, nix::unistd::geteuid().as_raw())?;
    let agent_dir = root.join("agent");
    ensure_private_dir(&agent_dir).map_err(|source| PrepareError::Io {
        what: "creating the agent's private dir",
        path: agent_dir.clone(),
        source,
    })?;
    tighten_deployments(root);
    Ok(())
}

/// Make every deployment dir (and its `logs/`) and group state dir under `root` private; best effort, with a
/// warning per dir that could not be changed.
fn tighten_deployments(root: &Path) {
    let groups = match GroupLayout::all(root) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "cannot list deployment groups to check their modes");
            return;
        }
    };
    for group in groups {
        let mut dirs = vec![group.state_dir()];
        if let Ok(entries) = std::fs::read_dir(group.dir()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("deploy-") {
                    dirs.push(e.path().join("logs"));
                    dirs.push(e.path());
                }
            }
        }
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            if let Err(e) = ensure_private_dir(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot make a deployment dir private");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn d(path: &str, mode: u32, uid: u32) -> DirFacts {
        DirFacts {
            path: path.into(),
            mode,
            uid,
        }
    }

    #[test]
    fn a_root_writable_by_others_is_refused_naming_path_and_mode() {
        let up = [
            d("/var/lib", 0o755, 0),
            d("/var", 0o755, 0),
            d("/", 0o755, 0),
        ];
        let chain = |root: DirFacts| [vec![root], up.to_vec()].concat();
        assert_eq!(
            check_chain(&chain(d("/var/lib/rc", 0o755, 0)), true, 0),
            Ok(())
        );
        for mode in [0o777, 0o775, 0o757, 0o1777] {
            let e = check_chain(&chain(d("/var/lib/rc", mode, 0)), true, 0)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("/var/lib/rc") && e.contains(&format!("{mode:04o}")),
                "{mode:o}: {e}"
            );
        }
    }

    #[test]
    fn ancestors_may_be_sticky_but_not_plainly_writable_nor_foreign() {
        let root = d("/tmp/x/rc", 0o700, 0);
        let ok = [
            root.clone(),
            d("/tmp/x", 0o755, 0),
            d("/tmp", 0o1777, 0),
            d("/", 0o755, 0),
        ];
        assert_eq!(check_chain(&ok, true, 0), Ok(()));
        let open = [root.clone(), d("/tmp/x", 0o777, 0), d("/", 0o755, 0)];
        assert!(matches!(
            check_chain(&open, true, 0),
            Err(UnsafeRoot::Writable { is_root: false, .. })
        ));
        let foreign = [root.clone(), d("/home/bob", 0o755, 1000), d("/", 0o755, 0)];
        assert!(matches!(
            check_chain(&foreign, true, 0),
            Err(UnsafeRoot::ForeignOwner { uid: 1000, .. })
        ));
        // The agent's own uid is fine (an agent not run as root).
        assert_eq!(check_chain(&foreign, true, 1000), Ok(()));
        // A root that does not exist yet: the first entry is an ancestor, sticky is enough.
        let missing = [d("/tmp", 0o1777, 0), d("/", 0o755, 0)];
        assert_eq!(check_chain(&missing, false, 0), Ok(()));
    }

    #[test]
    fn prepare_refuses_a_world_writable_root_and_makes_the_agent_dir_private()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("root");
        std::fs::create_dir(&root)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777))?;
        let e = prepare(&root)
            .err()
            .ok_or("a world-writable root accepted")?;
        assert!(
            matches!(
                e,
                PrepareError::Unsafe(UnsafeRoot::Writable { is_root: true, .. })
            ),
            "{e}"
        );
        assert!(!root.join("agent").exists(), "nothing created on refusal");

        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        // A deployment dir and agent dir left open by an older agent.
        let deploy = root.join("app-a/group-g/deploy-d1");
        std::fs::create_dir_all(deploy.join("logs"))?;
        std::fs::create_dir_all(root.join("agent/journal"))?;
        for p in [&deploy, &deploy.join("logs"), &root.join("agent")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
        }
        prepare(&root)?;
        for p in [&deploy, &deploy.join("logs"), &root.join("agent")] {
            assert_eq!(
                std::fs::metadata(p)?.mode() & 0o777,
                0o700,
                "{}",
                p.display()
            );
        }
        // A root that does not exist yet is fine below a safe parent (it is created later).
        prepare(&tmp.path().join("new/root"))?;
        Ok(())
    }
}
