//! Compile once: wasm modules and components are compiled on the agent (a bundle's precompiled artifacts are never
//! accepted — loading one means running whatever native code it holds) and the artifacts cached on disk, keyed by
//! the binary's sha256 and the engine's compatibility hash, in a directory only the agent can write. An in-memory
//! map of ready, linked hooks ([`Linked`]) sits in front, so a warm run neither reads the disk nor relinks.
//!
//! Which kind a binary is comes from its header ([`check_header`]): a preview-1 core module or a WASI 0.2
//! component; the same bytes always give the same kind, so one artifact name per content hash serves both.

use super::HookState;
use super::component::{self, ComponentState};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Linker, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

/// Largest module or component accepted: the first bound on compile time. A Rust hook is < 1 MiB; a Python
/// component (componentize-py embeds CPython and a snapshot of its heap) is ~18 MB and a JavaScript one
/// (StarlingMonkey) ~15 MB, most of it data segments rather than code, which Cranelift does not compile. 32 MiB
/// leaves room for a hook's own Python or JS dependencies and still bounds a compile to about a minute of CPU.
pub const MAX_MODULE_BYTES: u64 = 32 << 20;

/// How long a compile may take before the step or hook waiting for it fails: the second bound. Cranelift cannot be
/// interrupted (fuel and epochs bound running code, not the compiler), so at the deadline the caller stops
/// waiting and reports [`CacheError::CompileTimedOut`] while the compile finishes in the background — bounded by
/// [`MAX_MODULE_BYTES`] — and, holding the only compile slot, keeps later compiles from piling up behind it.
/// 180 s: a Python or JavaScript component took 21–34 s to compile on a loaded 2-core VM (measured with
/// `rollcage local`, 2026-12-05); three times that leaves room for a slower or busier agent host.
pub const DEFAULT_COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Most linked modules kept in memory. A deployment has a handful of hooks; when the map is full it is cleared
/// (the disk cache makes refilling cheap).
const MAX_IN_MEMORY: usize = 256;

/// The core-module header: magic `\0asm`, version 1, layer 0.
const CORE_MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// The component header: the same magic, version `0x0d` (the component model's pre-1.0 encoding, the one
/// wasm-component-ld, componentize-py and componentize-js emit), layer 1.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// What a hook binary is, by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A WASI preview-1 core module (`_start`).
    Module,
    /// A WASI 0.2 component; runnable when it is a `wasi:cli/command` (exports `wasi:cli/run`).
    Component,
}

/// The linkers of both kinds, built once per runner.
pub(crate) struct Linkers {
    /// WASI preview 1 plus `rollcage:hook/v1`.
    pub(crate) module: Linker<HookState>,
    /// WASI 0.2 ([`component::linker`]).
    pub(crate) component: wasmtime::component::Linker<ComponentState>,
}

/// A hook compiled and linked, ready to instantiate.
#[derive(Clone)]
pub(crate) enum Linked {
    /// A preview-1 module.
    Module(InstancePre<HookState>),
    /// A `wasi:cli/command` component.
    Component(CommandPre<ComponentState>),
}

/// What was compiled, before linking.
enum Compiled {
    Module(Module),
    Component(Component),
}

/// Getting a runnable module failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory is unusable or unsafe.
    #[error("wasm cache directory `{path}`: {reason}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// Reading the module or writing the artifact failed.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither a WebAssembly core module nor a component (wasmtime precompiled artifacts are refused).
    #[error("`{path}` is not a WebAssembly module or component: {reason}")]
    NotAModule {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The module is larger than [`MAX_MODULE_BYTES`].
    #[error("`{path}`: {size} bytes, more than the {MAX_MODULE_BYTES}-byte limit on a wasm module")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Compiling took longer than the runner's compile timeout (or waited that long for the compile slot).
    #[error("`{path}` did not compile within {} s (the limit on compiling one wasm module)", .timeout.as_secs_f64())]
    CompileTimedOut {
        /// The file.
        path: PathBuf,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// Compiling or linking failed (invalid module, unknown import, …).
    #[error("`{path}`: {reason}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        reason: String,
    },
}

/// Create (0700) or check the cache directory: it must be a real directory owned by the agent's user and not
/// writable by group or others, because whoever can write it can make the agent run native code.
pub fn ensure_private_dir(dir: &Path) -> Result<(), CacheError> {
    let bad = |reason: String| CacheError::CacheDir {
        path: dir.to_owned(),
        reason,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| bad(format!("cannot create it: {e}")))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| bad(format!("cannot stat it: {e}")))?;
    if !meta.file_type().is_dir() {
        return Err(bad(
            "is not a directory (a symlink is refused too)".to_owned()
        ));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(bad(format!(
            "owned by uid {}, expected the agent's uid {euid}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(bad(format!(
            "mode {:o} is group- or world-writable, expected 0700",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// A stable key of the engine's settings: artifacts from another wasmtime version or configuration get another
/// file name instead of failing to load (wasmtime would refuse them safely anyway).
fn engine_key(engine: &Engine) -> String {
    // SipHash with fixed keys: stable for a given std. A change only costs a recompile.
    #[allow(
        deprecated,
        reason = "SipHasher is deprecated only as a public algorithm choice; any stable hash works"
    )]
    let mut h = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The compile cache of one engine.
pub(crate) struct ModuleCache {
    engine: Engine,
    dir: Option<PathBuf>,
    engine_key: String,
    ready: Mutex<HashMap<[u8; 32], Linked>>,
    /// The content hash of module files already read, by file identity, so a warm run does not re-read and
    /// re-hash the module (a Rust hook with std is ~100 KiB–2 MiB; hashing it would dominate a warm run).
    hashes: Mutex<HashMap<FileId, [u8; 32]>>,
    compiles: AtomicU64,
    /// One compile at a time: a compile abandoned at its deadline keeps its slot until Cranelift is done.
    slot: std::sync::Arc<tokio::sync::Semaphore>,
    compile_timeout: std::time::Duration,
}

impl CacheError {
    /// True for the two bounds on compiling ([`CacheError::TooLarge`], [`CacheError::CompileTimedOut`]): such a
    /// module fails DownloadBundle at once rather than each of its hooks later.
    pub fn is_bound(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::CompileTimedOut { .. })
    }
}

impl ModuleCache {
    /// A cache writing artifacts to `dir` (checked with [`ensure_private_dir`]), or memory-only with `None`.
    pub(crate) fn new(
        engine: &Engine,
        dir: Option<PathBuf>,
        compile_timeout: std::time::Duration,
    ) -> Result<Self, CacheError> {
        if let Some(dir) = &dir {
            ensure_private_dir(dir)?;
        }
        Ok(Self {
            engine: engine.clone(),
            engine_key: engine_key(engine),
            dir,
            ready: Mutex::new(HashMap::new()),
            hashes: Mutex::new(HashMap::new()),
            compiles: AtomicU64::new(0),
            slot: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            compile_timeout,
        })
    }

    /// How many modules this cache compiled (not loaded) since it was created.
    pub(crate) fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Read the module or component at `path` and return it linked, compiling only if no artifact exists.
    pub(crate) async fn linked(
        &self,
        path: &Path,
        linkers: &Linkers,
    ) -> Result<Linked, CacheError> {
        let id = FileId::of(path).map_err(|source| CacheError::Io {
            what: "reading wasm module",
            path: path.to_owned(),
            source,
        })?;
        let known = self.hashes.lock().ok().and_then(|m| m.get(&id).copied());
        if let Some(pre) =
            known.and_then(|h| self.ready.lock().ok().and_then(|m| m.get(&h).cloned()))
        {
            return Ok(pre);
        }
        let (bytes, kind) = read_module(path)?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if let Ok(mut m) = self.hashes.lock() {
            if m.len() >= MAX_IN_MEMORY {
                m.clear();
            }
            m.insert(id, hash);
        }
        if let Some(pre) = self.ready.lock().ok().and_then(|m| m.get(&hash).cloned()) {
            return Ok(pre);
        }
        let link_err = |e: wasmtime::Error| CacheError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        let pre = match self.compiled(path, bytes, kind, &hash).await? {
            Compiled::Module(module) => {
                Linked::Module(linkers.module.instantiate_pre(&module).map_err(link_err)?)
            }
            Compiled::Component(c) => {
                Linked::Component(component::link(&linkers.component, &c).map_err(link_err)?)
            }
        };
        if let Ok(mut map) = self.ready.lock() {
            if map.len() >= MAX_IN_MEMORY {
                map.clear();
            }
            map.insert(hash, pre.clone());
        }
        Ok(pre)
    }

    async fn compiled(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        kind: WasmKind,
        hash: &[u8; 32],
    ) -> Result<Compiled, CacheError> {
        let compile_err = |e: wasmtime::Error| CacheError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        let Some(dir) = &self.dir else {
            let compiled = match kind {
                WasmKind::Module => {
                    self.compile_blocking(path, bytes, |e, b| {
                        Module::new(e, b).map(Compiled::Module)
                    })
                    .await?
                }
                WasmKind::Component => {
                    self.compile_blocking(path, bytes, |e, b| {
                        Component::new(e, b).map(Compiled::Component)
                    })
                    .await?
                }
            };
            return compiled.map_err(compile_err);
        };
        let artifact = dir.join(format!("{}-{}.cwasm", hex::encode(hash), self.engine_key));
        if artifact.is_file() {
            match self.load(&artifact, kind) {
                Ok(compiled) => return Ok(compiled),
                Err(e) => tracing::warn!(artifact = %artifact.display(), error = %format!("{e:#}"),
                    "cached wasm artifact unusable; recompiling"),
            }
        }
        let precompile: fn(&Engine, &[u8]) -> wasmtime::Result<Vec<u8>> = match kind {
            WasmKind::Module => |e: &Engine, b: &[u8]| e.precompile_module(b),
            WasmKind::Component => |e: &Engine, b: &[u8]| e.precompile_component(b),
        };
        let artifact_bytes = self
            .compile_blocking(path, bytes, precompile)
            .await?
            .map_err(compile_err)?;
        write_atomically(dir, &artifact, &artifact_bytes)?;
        tracing::info!(hook = %path.display(), artifact = %artifact.display(), ?kind, "compiled wasm hook");
        self.load(&artifact, kind).map_err(compile_err)
    }

    /// Map an artifact of this cache.
    fn load(&self, artifact: &Path, kind: WasmKind) -> wasmtime::Result<Compiled> {
        // SAFETY: `artifact` is in our private cache dir (checked at start: ours, not group/world-writable), and
        // only `compiled` writes there, by compiling a module or component on this host and renaming a complete
        // temp file into place; existing artifacts are never rewritten in place, so a mapped file stays unchanged.
        // Its kind is the kind of the source bytes its name hashes; wasmtime refuses a module artifact loaded as a
        // component (and the reverse) safely anyway.
        unsafe {
            match kind {
                WasmKind::Module => {
                    Module::deserialize_file(&self.engine, artifact).map(Compiled::Module)
                }
                WasmKind::Component => {
                    Component::deserialize_file(&self.engine, artifact).map(Compiled::Component)
                }
            }
        }
    }

    /// Run a compile step off the async workers (it takes tens of milliseconds of CPU) and count it; give up
    /// waiting after the compile timeout (see [`DEFAULT_COMPILE_TIMEOUT`]).
    async fn compile_blocking<T: Send + 'static>(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        step: fn(&Engine, &[u8]) -> wasmtime::Result<T>,
    ) -> Result<wasmtime::Result<T>, CacheError> {
        let engine = self.engine.clone();
        let slot = self.slot.clone();
        let compiles = &self.compiles;
        let compile = async move {
            let permit = slot
                .acquire_owned()
                .await
                .map_err(|e| wasmtime::Error::msg(format!("compile slot: {e}")))?;
            compiles.fetch_add(1, Ordering::Relaxed);
            let task = tokio::task::spawn_blocking(move || {
                let result = step(&engine, &bytes);
                drop(permit);
                result
            });
            match task.await {
                Ok(result) => result,
                Err(e) => Err(wasmtime::Error::msg(format!("compile task failed: {e}"))),
            }
        };
        tokio::time::timeout(self.compile_timeout, compile)
            .await
            .map_err(|_| {
                tracing::warn!(module = %path.display(), timeout_s = self.compile_timeout.as_secs_f64(),
                    "wasm compile exceeded its time limit; abandoned (it finishes in the background)");
                CacheError::CompileTimedOut {
                    path: path.to_owned(),
                    timeout: self.compile_timeout,
                }
            })
    }
}

/// The identity of a file's content as the filesystem tells it: device, inode, size, and modification and
/// change times in nanoseconds. Any write changes the ctime (which no user can set back), so an equal id means
/// the bytes hashed earlier are still the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

/// Read a hook binary, refusing anything that is not a core wasm module or a component, or is too large.
fn read_module(path: &Path) -> Result<(Vec<u8>, WasmKind), CacheError> {
    let io = |what, source| CacheError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| io("reading wasm module", e))?;
    if meta.len() > MAX_MODULE_BYTES {
        return Err(CacheError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    // Read at most one byte past the cap: the file may grow between the stat and the read.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::take(f, MAX_MODULE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| io("reading wasm module", e))?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(CacheError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    let kind = check_header(&bytes).map_err(|reason| CacheError::NotAModule {
        path: path.to_owned(),
        reason,
    })?;
    Ok((bytes, kind))
}

/// Accept a core module (version 1, layer 0) or a component (version `0x0d`, layer 1). Pure.
pub fn check_header(bytes: &[u8]) -> Result<WasmKind, String> {
    if bytes.starts_with(&CORE_MODULE_HEADER) {
        Ok(WasmKind::Module)
    } else if bytes.starts_with(&COMPONENT_HEADER) {
        Ok(WasmKind::Component)
    } else if bytes.starts_with(&CORE_MODULE_HEADER[..4]) {
        let (version, layer) = match bytes.get(4..8) {
            Some(v) => (
                u16::from_le_bytes([v[0], v[1]]),
                u16::from_le_bytes([v[2], v[3]]),
            ),
            None => return Err("truncated after the `\\0asm` magic".to_owned()),
        };
        Err(format!(
            "unsupported WebAssembly version {version:#x} layer {layer}: expected a core module (version 1, \
             layer 0) or a component (version 0xd, layer 1)"
        ))
    } else if Engine::detect_precompiled(bytes).is_some() {
        Err(
            "a precompiled wasmtime artifact; bundles must ship .wasm, the agent compiles it"
                .to_owned(),
        )
    } else {
        Err("missing the `\\0asm` header".to_owned())
    }
}

/// Write `bytes` to a temp file in `dir`, fsync, and rename it to `dest`.
fn write_atomically(dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let io = |what, source| CacheError::Io {
        what,
        path: dest.to_owned(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".staging-")
        .tempfile_in(dir)
        .map_err(|e| io("creating a temp file for", e))?;
    tmp.write_all(bytes).map_err(|e| io("writing", e))?;
    tmp.as_file().sync_all().map_err(|e| io("syncing", e))?;
    tmp.persist(dest)
        .map_err(|e| io("renaming into place", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn header_check_tells_modules_from_components_and_refuses_the_rest() {
        assert_eq!(check_header(&CORE_MODULE_HEADER), Ok(WasmKind::Module));
        assert_eq!(
            check_header(&[0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0, 7]),
            Ok(WasmKind::Component)
        );
        for bad in [
            &[0, 0x61, 0x73, 0x6d, 0x0d, 0, 0, 0][..],
            &[0, 0x61, 0x73, 0x6d, 0x02, 0, 0, 0],
            &[0, 0x61, 0x73, 0x6d, 0x01],
            b"#!/bin/sh\n",
        ] {
            assert!(check_header(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_dir_is_created_private_and_loose_modes_are_refused()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("a/cache");
        ensure_private_dir(&dir)?;
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        assert!(matches!(
            ensure_private_dir(&dir),
            Err(CacheError::CacheDir { .. })
        ));
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link)?;
        assert!(matches!(
            ensure_private_dir(&link),
            Err(CacheError::CacheDir { .. })
        ));
        Ok(())
    }
}
