//! Install: CodeDeploy's copy semantics. Replay the previous deployment's cleanup list, copy the AppSpec `files`
//! honouring `file_exists_behavior` (writing the new cleanup list ahead of each copy), apply `permissions` to what
//! this deployment created.
//!
//! The steps, in order (nothing on the destination changes before step 3):
//! 1. list every `files` source in the revision ([`source`]), refuse copies into the agent's root, resolve every
//!    user/group name of `permissions` and find the system tools they need ([`tools`]): an unknown name or a
//!    missing tool fails here;
//! 2. replay the previous cleanup list in reverse and delete it ([`cleanup`]);
//! 3. plan the copies against what exists now ([`plan`], pure) and match `permissions` to the objects the plan
//!    creates ([`perms`], pure): conflicts fail here;
//! 4. execute: record each object in the new cleanup list (fsynced) before creating it, then chmod → ACL →
//!    SELinux context → chown ([`apply`]);
//! 5. record the deployment as the group's last successful install.
//!
//! A failure (or crash) part-way leaves the new cleanup list naming everything created so far, so the next
//! Install of the group removes it.

mod apply;
pub mod cleanup;
mod error;
pub mod perms;
pub mod plan;
pub mod source;
pub mod tools;

pub use error::InstallError;

use crate::appspec::{AppSpec, FileExistsBehavior};
use crate::layout::{GroupLayout, check_name};
use plan::Existing;
use std::ffi::OsString;
use std::path::Path;

/// One Install.
#[derive(Debug, Clone, Copy)]
pub struct InstallRequest<'a> {
    /// The validated AppSpec of the revision.
    pub spec: &'a AppSpec,
    /// The unpacked revision.
    pub revision_dir: &'a Path,
    /// The group whose cleanup list is replayed and rewritten.
    pub group: &'a GroupLayout,
    /// The deployment being installed.
    pub deployment_id: &'a str,
    /// Used when the AppSpec does not set `file_exists_behavior`.
    pub default_behavior: FileExistsBehavior,
}

/// What an Install did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// Files and symlinks copied.
    pub copied: u64,
    /// Directories created.
    pub dirs_created: u64,
    /// Existing files kept because of RETAIN.
    pub retained: u64,
    /// Paths removed by replaying the previous cleanup list.
    pub cleaned: u64,
}

/// Settings of an Install that are not part of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// Where `setfacl`, `semanage`, `restorecon` and `chcon` are looked for (a `PATH`-style list).
    pub tool_search_path: OsString,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            tool_search_path: tools::SYSTEM_TOOL_PATH.into(),
        }
    }
}

/// Run Install with the default options. Blocking: call it from a blocking thread.
pub fn install(req: &InstallRequest<'_>) -> Result<InstallReport, InstallError> {
    install_with(req, &InstallOptions::default())
}

/// Run Install. Blocking: call it from a blocking thread.
pub fn install_with(
    req: &InstallRequest<'_>,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    check_name("deployment id", req.deployment_id)?;
    let spec = req.spec;
    let behavior = spec.file_exists_behavior.unwrap_or(req.default_behavior);
    let span = tracing::info_span!("install", deployment = req.deployment_id, ?behavior);
    let _guard = span.enter();

    // 1. Everything that does not depend on the destination, before anything changes.
    let listings = spec
        .files
        .iter()
        .enumerate()
        .map(|(i, mapping)| source::list_mapping(i, mapping, req.revision_dir))
        .collect::<Result<Vec<_>, _>>()?;
    // `${root}/app-X/group-Y` → `${root}`.
    let agent_root = req
        .group
        .dir()
        .parent()
        .and_then(Path::parent)
        .unwrap_or(req.group.dir());
    plan::check_protected(&listings, agent_root)?;
    let ids = tools::resolve_names(&spec.permissions)?;
    let tools = tools::find_tools(&spec.permissions, &options.tool_search_path)?;

    // 2. Remove what the previous deployment created.
    let list_path = req.group.cleanup_file();
    let mut report = InstallReport {
        cleaned: cleanup::replay(&list_path, &options.tool_search_path)?,
        ..Default::default()
    };

    // 3. Plan against the destination as it is now.
    let plan = plan::plan_copies(&listings, behavior, lookup_destination)?;
    let created = apply::created_objects(&plan);
    let assignments = perms::match_permissions(&spec.permissions, &created, &plan.dirs)?;

    // 4. Act, listing each object before creating it.
    let mut list = cleanup::CleanupWriter::create(&list_path, req.deployment_id)?;
    apply::copy(&plan, &mut list, &mut report)?;
    apply::permissions(&assignments, &spec.permissions, &ids, &tools, &mut list)?;
    list.sync()?;

    // 5. This deployment is now the group's last successful install.
    req.group
        .set_last_installed(req.deployment_id)
        .map_err(|source| InstallError::RecordInstalled {
            path: req.group.last_installed_file(),
            source,
        })?;
    tracing::info!(
        copied = report.copied,
        dirs_created = report.dirs_created,
        retained = report.retained,
        cleaned = report.cleaned,
        "install done"
    );
    Ok(report)
}

/// What exists at `path` on the live file system (a final symlink is not followed, but reported with whether it
/// resolves to a directory).
fn lookup_destination(path: &Path) -> Result<Existing, InstallError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Existing::Missing);
        }
        Err(source) => {
            return Err(InstallError::InspectDestination {
                path: path.to_owned(),
                source,
            });
        }
    };
    let ft = meta.file_type();
    Ok(if ft.is_dir() {
        Existing::Dir
    } else if ft.is_file() {
        Existing::File
    } else if ft.is_symlink() {
        Existing::Symlink {
            to_dir: std::fs::metadata(path).is_ok_and(|m| m.is_dir()),
        }
    } else {
        Existing::Other
    })
}
