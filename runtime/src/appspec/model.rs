//! The validated AppSpec: what the parser produces and what install and the hook runners consume.
//!
//! Every value here has passed validation: paths are checked, modes are in range, ACL entries and SELinux ranges
//! are decoded. Nothing in this module does I/O.

use rollcage_proto::{LifecycleEvent, SandboxSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

// The hook timeouts and `file_exists_behavior` are shared with deployment forms: their one home is proto.
pub use rollcage_proto::form::{
    DEFAULT_HOOK_TIMEOUT_SECS, FileExistsBehavior, MAX_HOOK_TIMEOUT_SECS,
};

/// A parsed, validated `appspec.yml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppSpec {
    /// `files`: what Install copies, in order.
    pub files: Vec<FileMapping>,
    /// `file_exists_behavior`, if the AppSpec sets it (the deployment may supply a default; DISALLOW otherwise).
    pub file_exists_behavior: Option<FileExistsBehavior>,
    /// `permissions`, in order.
    pub permissions: Vec<Permission>,
    /// `hooks`: event → scripts in run order. Events with a null value are absent.
    pub hooks: BTreeMap<LifecycleEvent, Vec<HookSpec>>,
}

impl AppSpec {
    /// The hooks of `event`, in run order (empty when none).
    pub fn hooks_for(&self, event: LifecycleEvent) -> &[HookSpec] {
        self.hooks.get(&event).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// One `files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMapping {
    /// Path relative to the revision root (empty = the whole revision); never contains `..`. A leading `/`
    /// in the AppSpec is removed, since CodeDeploy joins the source onto the revision either way.
    pub source: String,
    /// Absolute destination directory on the host.
    pub destination: PathBuf,
}

/// One `permissions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Absolute path the entry applies to (or below).
    pub object: PathBuf,
    /// `**` (any depth, the default) or a `*`-glob matching direct children only.
    pub pattern: String,
    /// `*`-globs of direct children to leave alone.
    pub except: Vec<String>,
    /// Which object types it applies to (both when the AppSpec does not say).
    pub types: ObjectTypes,
    /// Owner user name.
    pub owner: Option<String>,
    /// Group name.
    pub group: Option<String>,
    /// Mode bits.
    pub mode: Option<Mode>,
    /// ACL entries (`setfacl --set` semantics).
    pub acls: Option<Vec<AclEntry>>,
    /// SELinux file context.
    pub context: Option<SelinuxContext>,
}

/// `type:` of a permission entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectTypes {
    /// Applies to regular files (and symlinks).
    pub file: bool,
    /// Applies to directories.
    pub directory: bool,
}

impl Default for ObjectTypes {
    fn default() -> Self {
        Self {
            file: true,
            directory: true,
        }
    }
}

/// Mode bits from 1–4 octal digits (the leading fourth digit holds setuid/setgid/sticky).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

/// One ACL entry: `[d|default:][u|user|g|group|m|mask|o|other:]name:perms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// A default entry (directories only).
    pub default: bool,
    /// Whose entry this is.
    pub tag: AclTag,
    /// User or group name; empty for base entries.
    pub name: String,
    /// rwx bits (4 = r, 2 = w, 1 = x).
    pub perms: u8,
}

/// The tag of an ACL entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclTag {
    /// `u`/`user` (also the tag when none is given).
    User,
    /// `g`/`group`.
    Group,
    /// `m`/`mask`.
    Mask,
    /// `o`/`other`.
    Other,
}

/// An SELinux file context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelinuxContext {
    /// SELinux user (AppSpec key `name`, as CodeDeploy's code reads it; `user` is accepted too).
    pub user: Option<String>,
    /// SELinux type (required).
    pub type_: String,
    /// MLS range.
    pub range: Option<SelinuxRange>,
}

/// An MLS range `sN[-sM][:cX[.cY](,cZ)*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelinuxRange {
    /// Low sensitivity.
    pub low: u32,
    /// High sensitivity (≥ low).
    pub high: u32,
    /// Categories 0–1023, expanded and sorted.
    pub categories: BTreeSet<u32>,
}

/// One hook entry of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// Path of the script or wasm module relative to the revision root; checked to stay inside it.
    pub location: String,
    /// Wall-clock limit in seconds (positive).
    pub timeout_secs: u64,
    /// User to run a shell hook as.
    pub runas: Option<String>,
    /// CodeDeploy's undocumented `sudo` flag, kept for compatibility (the agent already runs hooks as itself).
    pub sudo: bool,
    /// Capability grant of a wasm hook; `None` for shell hooks (a `sandbox:` on a shell hook is an error).
    pub sandbox: Option<SandboxSpec>,
}
