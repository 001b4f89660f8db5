//! What can go wrong during Install: each variant names the path (and AppSpec field where there is one) and what
//! was expected.

use std::path::PathBuf;

/// Install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The deployment id cannot be used as a path component.
    #[error(transparent)]
    InvalidName(#[from] crate::layout::InvalidName),

    /// The previous deployment's cleanup list could not be read.
    #[error("cannot read the cleanup list {path}: {source}")]
    ReadCleanupList {
        /// The cleanup list.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A complete line of the cleanup list is not a cleanup entry.
    #[error(
        "cleanup list {path} line {line} is corrupt ({reason}); expected one JSON cleanup entry per line \
         (inspect it, undo its entries by hand and delete it to continue)"
    )]
    CorruptCleanupList {
        /// The cleanup list.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the parser said.
        reason: String,
    },
    /// Writing the new cleanup list (or deleting the old one) failed.
    #[error("cannot write the cleanup list {path}: {source}")]
    WriteCleanupList {
        /// The cleanup list.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Removing an object listed by the previous deployment failed.
    #[error("cannot remove {path} (created by the previous deployment): {source}")]
    Cleanup {
        /// The object.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A `files[].source` is not a plain relative path inside the revision.
    #[error("files[{index}].source `{value}`: {reason}")]
    InvalidSource {
        /// Index in `files`.
        index: usize,
        /// The AppSpec value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A `files[].destination` is not an absolute, normalised path.
    #[error(
        "files[{index}].destination {path}: expected an absolute path without `.` or `..` components"
    )]
    InvalidDestination {
        /// Index in `files`.
        index: usize,
        /// The AppSpec value.
        path: PathBuf,
    },
    /// A `files[].source` does not exist in the revision.
    #[error("files[{index}].source `{value}` does not exist in the revision (looked for {path})")]
    SourceMissing {
        /// Index in `files`.
        index: usize,
        /// The AppSpec value.
        value: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Reaching a source would follow a symlink inside the revision.
    #[error(
        "files[{index}].source `{value}`: {path} is a symlink; a source path is never followed through a symlink"
    )]
    SourceThroughSymlink {
        /// Index in `files`.
        index: usize,
        /// The AppSpec value.
        value: String,
        /// The symlink.
        path: PathBuf,
    },
    /// The revision holds something that is not a file, directory or symlink.
    #[error("{path} in the revision is a {kind}; expected a regular file, directory or symlink")]
    UnsupportedSourceType {
        /// The object.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Reading the revision failed.
    #[error("cannot read {path} in the revision: {source}")]
    ReadSource {
        /// The object.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A destination path is not valid UTF-8 (the cleanup list stores paths as JSON strings).
    #[error("destination {path} is not valid UTF-8; expected UTF-8 file names")]
    NonUtf8Path {
        /// The path (lossy).
        path: PathBuf,
    },
    /// A copy would land inside the agent's own root directory.
    #[error("{path} is inside the agent root {root}; expected a destination outside it")]
    DestinationInAgentRoot {
        /// The destination path.
        path: PathBuf,
        /// The agent root.
        root: PathBuf,
    },
    /// Inspecting the destination failed.
    #[error("cannot inspect destination {path}: {source}")]
    InspectDestination {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// DISALLOW and a file the previous deployment did not create is in the way.
    #[error(
        "a specified file already exists at this location: {path} (file_exists_behavior is DISALLOW; \
         use OVERWRITE or RETAIN, or remove the file)"
    )]
    FileExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Two sources map onto one destination.
    #[error("two sources are copied to {path}: {first} and {second}")]
    DuplicateDestination {
        /// The destination.
        path: PathBuf,
        /// The first source (revision path).
        first: PathBuf,
        /// The second source.
        second: PathBuf,
    },
    /// A file would land where a directory is (or is planned), or a directory where a file is.
    #[error("{path}: expected {expected} there, found {found}")]
    FileDirClash {
        /// The destination.
        path: PathBuf,
        /// What the copy needs at this path.
        expected: &'static str,
        /// What is there (or planned there).
        found: String,
    },
    /// Creating a directory, file or symlink at the destination failed.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A user named in `permissions` does not exist on this host.
    #[error("{field}: unknown user `{name}`; expected a user name that exists on this host")]
    UnknownUser {
        /// AppSpec field path, e.g. `permissions[0].owner`.
        field: String,
        /// The name.
        name: String,
    },
    /// A group named in `permissions` does not exist on this host.
    #[error("{field}: unknown group `{name}`; expected a group name that exists on this host")]
    UnknownGroup {
        /// AppSpec field path, e.g. `permissions[0].group`.
        field: String,
        /// The name.
        name: String,
    },
    /// Looking up a user or group failed (not "not found": the name service itself failed).
    #[error("{field}: cannot look up `{name}`: {source}")]
    NameLookup {
        /// AppSpec field path.
        field: String,
        /// The name.
        name: String,
        /// The errno.
        source: nix::Error,
    },
    /// A system tool needed to apply `permissions` is not installed.
    #[error(
        "{field} needs `{tool}`, which was not found in {searched}; install it (package {package})"
    )]
    MissingTool {
        /// The tool (or the alternatives) needed.
        tool: &'static str,
        /// The package that usually provides it.
        package: &'static str,
        /// AppSpec field path that needs it.
        field: String,
        /// The search path used.
        searched: String,
    },
    /// A permission entry whose object is a copied file uses directory-only settings.
    #[error("permissions[{index}] (object {object}): {reason}")]
    InvalidPermission {
        /// Index in `permissions`.
        index: usize,
        /// The object.
        object: PathBuf,
        /// What is wrong and what was expected.
        reason: &'static str,
    },
    /// Two permission entries match one path.
    #[error(
        "permissions setting for {path} is specified more than once: permissions[{first}] and permissions[{second}]"
    )]
    PermissionConflict {
        /// The path.
        path: PathBuf,
        /// The first entry.
        first: usize,
        /// The second entry.
        second: usize,
    },
    /// chmod/chown on a created object failed.
    #[error("cannot {what} {path}: {source}")]
    SetPermission {
        /// The object.
        path: PathBuf,
        /// `chmod` or `chown`.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A created object changed kind (became a symlink) before its permissions were applied.
    #[error(
        "{path} is no longer the {expected} this deployment created; refusing to change its permissions"
    )]
    ObjectReplaced {
        /// The object.
        path: PathBuf,
        /// `file` or `directory`.
        expected: &'static str,
    },
    /// A system tool could not be started.
    #[error("cannot run {tool}: {source}")]
    ToolSpawn {
        /// The tool path.
        tool: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A system tool failed.
    #[error("{tool} failed on {path} ({status}): {stderr}")]
    ToolFailed {
        /// The tool path.
        tool: PathBuf,
        /// The object.
        path: PathBuf,
        /// Exit status.
        status: String,
        /// Its standard error (trimmed, bounded).
        stderr: String,
    },
    /// Recording the deployment as installed failed.
    #[error("cannot record the installed deployment in {path}: {source}")]
    RecordInstalled {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
