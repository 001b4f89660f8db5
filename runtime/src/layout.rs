//! Where a deployment's files live under the agent's root directory.
//!
//! ```text
//! ${root}/agent/bundles/${sha256} the host's bundle store: each archive the agent fetched, once, named by its sha256
//! ${root}/app-${app}/group-${group}/
//!     deploy-${deploy}/           one per deployment (the seed's cache dir)
//!         bundle.sha256           the sha256 of its archive in the bundle store (absent without a store)
//!         revision/               the unpacked revision
//!         form/                   a form-defined deployment: form.json and its scripts (absent otherwise)
//!         logs/scripts.log        every hook's output, timestamped and tagged
//!     state/                      per-group state the agent owns
//!         cleanup.json            what the last Install created (replayed in reverse by the next Install)
//!         last-installed          id of the deployment whose Install last succeeded here
//!     staging-*/                  temporary dirs, renamed into place or removed
//! ```
//!
//! One copy of each archive per host: a deployment dir refers to its archive in the store rather than holding a copy,
//! and a rollback or redeploy of the same revision reuses the stored file (see [`crate::package::BundleStore`]; the
//! store keeps the newest `max_revisions` archives and never the current or an installed one). `rollcage local` has
//! no store and keeps no copy at all: the archive it was given is the copy (it is staged during the fetch only, since
//! zip needs random access, and removed with the staging dir), so its deployment dirs have no `bundle.sha256`, and a rerun reads `--bundle` again. A
//! directory revision has no archive, so no `bundle.sha256` either.
//!
//! Who may enter what: the agent's own dir (`agent/`: token, journal, bundle store), each deployment dir, its `logs/`
//! and the group's `state/` are [`PRIVATE_DIR_MODE`] (0700), created so and tightened when found looser (dirs of
//! older agents). A `runas` hook's user is let into its own deployment dir for the hook's run only
//! ([`crate::hooks::shell::access`]), so it reads its revision and scripts but not other deployments' revisions and
//! logs, nor the agent's token, journal or bundles. The app and group dirs keep the default mode: they hold only
//! those private dirs.
//!
//! App, group and deployment ids come from outside (CLI, coordinator), so they are checked to be single, plain path
//! components before they are ever joined onto the root.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Mode of the dirs only the agent may enter (see the module doc).
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Make `dir` a private dir ([`PRIVATE_DIR_MODE`]): create it so (its missing parents with the default mode), or
/// take group and other permissions off an existing one. Returns whether it was created.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<bool> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
    {
        Ok(()) => {
            // The umask may have taken bits off (never added any): set the mode exactly.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::metadata(dir)?;
            if !meta.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", dir.display()),
                ));
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700))?;
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// A name used as a path component is not a plain, short name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what} `{value}`: expected {rule}", rule = rollcage_proto::wire::NAME_RULE)]
pub struct InvalidName {
    /// Which name (application, deployment group, deployment id).
    pub what: &'static str,
    /// The offending value.
    pub value: String,
}

/// Check that `value` can be used as one path component.
pub fn check_name(what: &'static str, value: &str) -> Result<(), InvalidName> {
    if rollcage_proto::wire::is_valid_name(value) {
        Ok(())
    } else {
        Err(InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

/// The host's bundle store: `${root}/agent/bundles` (under the agent's own dir, next to its token and journal).
pub fn bundle_store_dir(root: &Path) -> PathBuf {
    root.join("agent").join("bundles")
}

/// The directory of one application's deployment group on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    dir: PathBuf,
    app: String,
    group: String,
}

impl GroupLayout {
    /// `${root}/app-${app}/group-${group}`, after checking both names.
    pub fn new(root: &Path, app: &str, group: &str) -> Result<Self, InvalidName> {
        check_name("application name", app)?;
        check_name("deployment group", group)?;
        Ok(Self {
            dir: root
                .join(format!("app-{app}"))
                .join(format!("group-{group}")),
            app: app.to_owned(),
            group: group.to_owned(),
        })
    }

    /// The application's name.
    pub fn application(&self) -> &str {
        &self.app
    }

    /// The deployment group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Every group with a directory under `root` (entries whose names are not valid are skipped).
    pub fn all(root: &Path) -> std::io::Result<Vec<Self>> {
        let mut groups = Vec::new();
        for app in read_dir_or_empty(root)? {
            let app = app?;
            let name = app.file_name();
            let Some(app_name) = name.to_str().and_then(|n| n.strip_prefix("app-")) else {
                continue;
            };
            for group in read_dir_or_empty(&app.path())? {
                let name = group?.file_name();
                if let Some(group_name) = name.to_str().and_then(|n| n.strip_prefix("group-"))
                    && let Ok(layout) = Self::new(root, app_name, group_name)
                    && layout.dir.is_dir()
                {
                    groups.push(layout);
                }
            }
        }
        Ok(groups)
    }

    /// The group directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Per-group state owned by the agent.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The cleanup list of the last Install.
    pub fn cleanup_file(&self) -> PathBuf {
        self.state_dir().join("cleanup.json")
    }

    /// File holding the id of the deployment whose Install last succeeded.
    pub fn last_installed_file(&self) -> PathBuf {
        self.state_dir().join("last-installed")
    }

    /// The layout of one deployment of this group.
    pub fn deployment(&self, deploy: &str) -> Result<DeployLayout, InvalidName> {
        check_name("deployment id", deploy)?;
        Ok(DeployLayout {
            dir: self.dir.join(format!("deploy-{deploy}")),
        })
    }

    /// The id of the deployment whose Install last succeeded here, if any.
    pub fn last_installed(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(self.last_installed_file()) {
            Ok(s) => {
                let id = s.trim().to_owned();
                Ok((!id.is_empty() && check_name("deployment id", &id).is_ok()).then_some(id))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Record `deploy` as the deployment whose Install last succeeded (written to a temp file, then renamed).
    pub fn set_last_installed(&self, deploy: &str) -> std::io::Result<()> {
        let state = self.state_dir();
        ensure_private_dir(&state)?;
        let tmp = tempfile::NamedTempFile::new_in(&state)?;
        std::fs::write(tmp.path(), format!("{deploy}\n"))?;
        tmp.persist(self.last_installed_file())
            .map_err(|e| e.error)?;
        Ok(())
    }
}

fn read_dir_or_empty(dir: &Path) -> std::io::Result<Vec<std::io::Result<std::fs::DirEntry>>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The cache directory of one deployment: `${group}/deploy-${deploy}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployLayout {
    dir: PathBuf,
}

impl DeployLayout {
    /// The deployment directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sha256 of the deployment's archive in the host's bundle store.
    pub fn bundle_ref_file(&self) -> PathBuf {
        self.dir.join("bundle.sha256")
    }

    /// The sha256 of the deployment's archive in the host's bundle store, if it recorded one.
    pub fn stored_bundle(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(self.bundle_ref_file()) {
            Ok(s) => {
                let sha = s.trim();
                Ok(crate::package::is_sha256(sha).then(|| sha.to_ascii_lowercase()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A form-defined deployment's form and scripts (absent for AppSpec deployments).
    pub fn form_dir(&self) -> PathBuf {
        self.dir.join("form")
    }

    /// The unpacked revision.
    pub fn revision_dir(&self) -> PathBuf {
        self.dir.join("revision")
    }

    /// The logs directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Every hook's output.
    pub fn scripts_log(&self) -> PathBuf {
        self.logs_dir().join("scripts.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_layout() -> Result<(), InvalidName> {
        let g = GroupLayout::new(Path::new("/r"), "web", "prod")?;
        let d = g.deployment("d-1")?;
        assert_eq!(d.dir(), Path::new("/r/app-web/group-prod/deploy-d-1"));
        assert_eq!(
            d.scripts_log(),
            Path::new("/r/app-web/group-prod/deploy-d-1/logs/scripts.log")
        );
        Ok(())
    }

    #[test]
    fn private_dirs_are_created_0700_and_looser_ones_tightened()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::MetadataExt as _;
        let tmp = tempfile::tempdir()?;
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.mode() & 0o7777);
        let new = tmp.path().join("app-a/group-g/deploy-1");
        assert!(ensure_private_dir(&new)?);
        assert_eq!(mode(&new)?, 0o700);
        // A dir an older agent left world-readable loses group and other bits, keeps the owner's.
        let old = tmp.path().join("old");
        std::fs::create_dir(&old)?;
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755))?;
        assert!(!ensure_private_dir(&old)?);
        assert_eq!(mode(&old)?, 0o700);
        // The state dir of a group is private too.
        let g = GroupLayout::new(tmp.path(), "a", "g")?;
        g.set_last_installed("d-1")?;
        assert_eq!(mode(&g.state_dir())?, 0o700);
        // A file in the way is an error, not a silent success.
        std::fs::write(tmp.path().join("file"), b"")?;
        assert!(ensure_private_dir(&tmp.path().join("file")).is_err());
        Ok(())
    }

    #[test]
    fn names_cannot_escape_the_root() {
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "x y", &"n".repeat(129)] {
            assert!(
                GroupLayout::new(Path::new("/r"), bad, "g").is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(
            GroupLayout::new(Path::new("/r"), "a", "g")
                .and_then(|g| g.deployment("../x"))
                .is_err()
        );
    }
}
