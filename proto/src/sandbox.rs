//! The capability grant of a WebAssembly hook: the AppSpec's `sandbox:` map on a hook entry.
//!
//! Deny by default: a wasm hook gets the revision (read-only, at `/revision`), the lifecycle variables, its output
//! streams, clocks and randomness, and nothing else unless this grant names it.

use serde::{Deserialize, Serialize};

/// Default linear-memory cap of a wasm hook, in MiB. Large enough for a real validator (an HTTP client, a JSON
/// parser), small enough that 16 hooks at once stay far below the agent host's memory.
pub const DEFAULT_MEMORY_MB: u64 = 128;

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
    /// URL prefixes the hook may GET through the SDK's `http_get`.
    #[serde(default)]
    pub http: Vec<String>,
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
}

impl DirGrant {
    /// The path the guest sees.
    pub fn guest_path(&self) -> &str {
        self.guest.as_deref().unwrap_or(&self.host)
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
