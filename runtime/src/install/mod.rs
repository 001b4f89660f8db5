//! Install: CodeDeploy's copy semantics. Replay the previous deployment's cleanup list, copy the AppSpec `files`
//! honouring `file_exists_behavior` (writing the new cleanup list ahead of each copy), apply `permissions` to what
//! this deployment created.
//!
//! (Owned by the install work; this file fixes the public API the rest of the runtime codes against.)

use crate::appspec::{AppSpec, FileExistsBehavior};
use crate::layout::GroupLayout;
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

/// Install failed. (Variants are filled in by the install work.)
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not implemented yet.
    #[error("install is not implemented yet")]
    NotImplemented,
}

/// Run Install. Blocking: call it from a blocking thread.
pub fn install(req: &InstallRequest<'_>) -> Result<InstallReport, InstallError> {
    let _ = req;
    Err(InstallError::NotImplemented)
}
