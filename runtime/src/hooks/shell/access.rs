//! A `runas` hook's way into its own deployment dir, and into nothing else the agent keeps.
//!
//! Deployment dirs are mode 0700, owned by the agent (see [`crate::layout`]): another user can reach neither their
//! revisions and form scripts nor their `scripts.log`. A hook that runs as another user must still read and execute
//! its own scripts, so for the duration of that hook its user gets search permission (`x`, no listing) on its
//! deployment dir through a POSIX ACL entry (`setfacl -m u:UID:x DIR`), removed again when the hook ends
//! (`setfacl -x u:UID DIR`). Search permission opens exactly what below it is open to others: `revision/` and
//! `form/` (readable like any unpacked revision), not `logs/` (0700). Other deployments, the agent's dir (token,
//! journal, bundle store) and the group's state stay closed.
//!
//! A daemon the hook started keeps running after the entry is removed; it keeps its working directory, but can no
//! longer open paths under the deployment dir by name. Applications run from where `files` installed them, as with
//! CodeDeploy, not from the agent's cache.
//!
//! `setfacl` (package `acl`) is looked up in the system directories only, and run with an argument vector and an
//! empty environment ([`crate::install::tools::run`]).

use crate::install::tools::{SYSTEM_TOOL_PATH, find_tool, run};
use nix::unistd::Uid;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The hook's user may search `dir` until this is dropped.
#[derive(Debug)]
pub struct Grant {
    setfacl: PathBuf,
    dir: PathBuf,
    uid: Uid,
}

/// The ACL entry text for `uid`, with `perms` (`x`) or without (to remove it).
fn entry(uid: Uid, perms: Option<&str>) -> String {
    match perms {
        Some(p) => format!("u:{uid}:{p}"),
        None => format!("u:{uid}"),
    }
}

/// Let `uid` search `dir` (see the module doc). The error is the reason the hook cannot run.
pub fn grant(dir: &Path, uid: Uid) -> Result<Grant, String> {
    let setfacl = find_tool("setfacl", OsStr::new(SYSTEM_TOOL_PATH)).ok_or_else(|| {
        format!(
            "a `runas` hook needs `setfacl` (package `acl`) to open its deployment dir {} to uid {uid}; not found \
             in {SYSTEM_TOOL_PATH}",
            dir.display()
        )
    })?;
    let add = entry(uid, Some("x"));
    run(
        &setfacl,
        &[OsStr::new("-m"), add.as_ref(), dir.as_os_str()],
        dir,
    )
    .map_err(|e| {
        format!(
            "cannot open deployment dir {} to uid {uid}: {e}",
            dir.display()
        )
    })?;
    Ok(Grant {
        setfacl,
        dir: dir.to_owned(),
        uid,
    })
}

impl Drop for Grant {
    fn drop(&mut self) {
        let remove = entry(self.uid, None);
        if let Err(e) = run(
            &self.setfacl,
            &[OsStr::new("-x"), remove.as_ref(), self.dir.as_os_str()],
            &self.dir,
        ) {
            // The hook has ended either way; the entry opens only this deployment's revision, and the next grant
            // or the deployment's removal replaces it.
            tracing::warn!(dir = %self.dir.display(), uid = %self.uid, error = %e,
                "could not remove the runas user's access to its deployment dir");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;

    fn getfacl(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
        let out = Command::new("getfacl")
            .args(["-n", "-p"])
            .arg(dir)
            .output()?;
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Needs `setfacl`/`getfacl` (scripts/setup.sh installs `acl`) and a file system with ACLs (tmpfs, ext4).
    #[test]
    fn the_user_gets_search_only_for_the_grant_and_loses_it_after()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("deploy-d1");
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let uid = Uid::from_raw(65534);
        let g = grant(&dir, uid)?;
        let acl = getfacl(&dir)?;
        assert!(acl.contains("user:65534:--x"), "{acl}");
        drop(g);
        let acl = getfacl(&dir)?;
        assert!(!acl.contains("user:65534"), "{acl}");
        // Nothing opened to the group or others.
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o077, 0);
        Ok(())
    }
}
