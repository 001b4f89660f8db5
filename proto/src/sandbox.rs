//! The capability grant of a WebAssembly hook: the AppSpec's `sandbox:` map on a hook entry.
//!
//! Deny by default: a wasm hook gets the revision (read-only, at `/revision`), the lifecycle variables, its output
//! streams, clocks and randomness, and nothing else unless this grant names it.

use serde::{Deserialize, Serialize};

/// Default linear-memory cap of a wasm hook, in MiB. Large enough for a real validator (an HTTP client, a JSON
/// parser), small enough that 16 hooks at once stay far below the agent host's memory.
pub const DEFAULT_MEMORY_MB: u64 = 128;

/// Default write quota of a read-write directory grant, in MiB: how much one hook run may add to the files under
/// it (`sandbox.dirs[].max_mb`). A hook renders configuration, writes a marker or a small state file; 64 MiB is
/// far above that, yet a runaway or hostile hook stops there instead of filling the host's disk through its grant.
/// Raise it per grant when a hook really writes more (e.g. unpacks a dataset).
pub const DEFAULT_GRANT_MAX_MB: u64 = 64;

/// Highest `max_mb` a grant may ask for (1 TiB): above it the value is a typo or a unit mix-up, not a bound.
pub const MAX_GRANT_MAX_MB: u64 = 1 << 20;

/// What a wasm hook may use beyond the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Linear-memory cap in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Extra preopened directories.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Host environment variables passed through, by name.
    #[serde(default)]
    pub env: Vec<String>,
    /// URL prefixes (`http://` or `https://`) the hook may request: through the SDK's `http_get` (preview-1
    /// modules) or `wasi:http` (components).
    #[serde(default)]
    pub http: Vec<String>,
    /// A PEM file of CA certificates, a path inside the revision, trusted for the hook's `https://` requests on top
    /// of the platform's roots (an internal CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_ca: Option<String>,
    /// Command-line arguments given to the module (after argv\[0\]).
    #[serde(default)]
    pub args: Vec<String>,
}

fn default_memory_mb() -> u64 {
    DEFAULT_MEMORY_MB
}

impl Default for SandboxSpec {
    fn default() -> Self {
        Self {
            memory_mb: DEFAULT_MEMORY_MB,
            dirs: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
            http_ca: None,
            args: Vec::new(),
        }
    }
}

/// One extra preopened directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Absolute path on the host.
    pub host: String,
    /// Path the guest sees; defaults to `host`.
    #[serde(default)]
    pub guest: Option<String>,
    /// Read-only unless said otherwise.
    #[serde(default)]
    pub access: DirAccess,
    /// Write quota in MiB for a read-write grant: how much one run may grow the files under the directory
    /// (content already there does not count). `None` = [`DEFAULT_GRANT_MAX_MB`]. Meaningless on a read-only
    /// grant (the AppSpec refuses it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mb: Option<u64>,
}

impl DirGrant {
    /// The path the guest sees.
    pub fn guest_path(&self) -> &str {
        self.guest.as_deref().unwrap_or(&self.host)
    }

    /// The write quota in bytes: `None` for a read-only grant (nothing can be written), else `max_mb` or the
    /// default, in bytes.
    pub fn quota_bytes(&self) -> Option<u64> {
        match self.access {
            DirAccess::ReadOnly => None,
            DirAccess::ReadWrite => Some(
                self.max_mb
                    .unwrap_or(DEFAULT_GRANT_MAX_MB)
                    .saturating_mul(1 << 20),
            ),
        }
    }
}

/// Access to a granted directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirAccess {
    /// Read files and list directories.
    #[default]
    ReadOnly,
    /// Also create, write, rename and remove.
    ReadWrite,
}
