//! WebAssembly hooks: WASI preview-1 command modules and WASI 0.2 command components (`wasi:cli/command`), run by
//! wasmtime inside the agent, in a deny-by-default capability sandbox described by the hook's `sandbox:` entry
//! ([`SandboxSpec`]). Which kind a hook is comes from its binary's header ([`cache::check_header`]).
//!
//! One [`WasmHooks`] per agent holds the engine, the linkers (WASI p1 plus the `rollcage:hook/v1` host functions
//! for modules; WASI 0.2 for components, [`component`]), the compile cache and the epoch ticker. A run:
//! 1. resolves the binary inside the revision (symlinks out of it are refused) and gets it linked from the cache
//!    ([`cache`]: compiled once, artifacts keyed by sha256 + engine compatibility in a private directory);
//! 2. builds the WASI context ([`sandbox`], the same grant for both kinds) and a store with the memory limiter
//!    (`limiter`) and the filesystem guard of its read-write grants (`guard`: symlinks that leave their
//!    directory, per-grant write quota; the same rules for modules and components);
//! 3. runs `_start` or `wasi:cli/run` asynchronously under `tokio::time::timeout` ([`drive`]), while writing the
//!    guest's output as lines to `scripts.log` (`output`); the epoch ticker makes pure loops yield every tick, so
//!    the timeout also stops a guest that never calls the host, and dropping the call cancels a guest blocked in
//!    a host call (a sleep, a read);
//! 4. maps the ending onto [`HookOutcome`] (`outcome`); anything the guard refused fails the hook.
//!
//! Modules: [`cache`] compile cache, [`sandbox`] WASI context, [`component`] the component linker and call,
//! `limiter` memory cap, `guard` links and quotas, `output` capped sink and line writer, `http` the `http_get`
//! host function and the grant check, `wasi_http` components' `wasi:http` under the same check, `outcome` ending → status.

mod audit;
pub mod cache;
pub(crate) mod component;
mod guard;
mod hook_api;
mod http;
mod limiter;
mod outcome;
mod output;
pub mod sandbox;
mod wasi_http;

use super::HookRun;
use super::log::{DEFAULT_TAIL_BYTES, OutputTail};
use crate::appspec::AppSpec;
use cache::{CacheError, Linked, Linkers, ModuleCache};
use component::ComponentState;
use limiter::MemoryLimiter;
use outcome::{Limits, Phase, RunEnd};
use output::{Chunk, LineWriter, OutputChannel};
use rollcage_proto::hostcall;
use rollcage_proto::{HookOutcome, HookStatus, SandboxSpec};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use wasmtime::{Config, Engine, Linker, Store};
use wasmtime_wasi::p1::WasiP1Ctx;

pub use cache::{
    CacheError as WasmCacheError, DEFAULT_COMPILE_TIMEOUT, MAX_MODULE_BYTES, WasmKind,
};
pub use sandbox::{HttpCaError, SandboxError};

/// Default cap on a hook's captured output (stdout and stderr together). Generous for any real hook's logging;
/// beyond it the guest keeps running and its output is dropped, so a runaway hook cannot fill the disk or memory.
pub const DEFAULT_OUTPUT_CAP_BYTES: usize = 16 << 20;

/// How often the epoch ticks. A pure-compute guest yields to the scheduler once per tick, so this bounds how late
/// the timeout can stop it; 10 ms costs well under 1 % of CPU (measured in the sandbox notes).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How the agent's wasm hooks are set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmConfig {
    /// Where compiled artifacts are kept (created 0700; refused if not the agent's own). `None` keeps them in
    /// memory only (every agent start recompiles). The agent uses `${root}/cache/wasm`.
    pub cache_dir: Option<PathBuf>,
    /// Cap on a hook's captured output in bytes.
    pub output_cap_bytes: usize,
    /// How long compiling one module may take ([`DEFAULT_COMPILE_TIMEOUT`]).
    pub compile_timeout: Duration,
}

impl WasmConfig {
    /// Artifacts cached in `cache_dir`, default output cap.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: Some(cache_dir.into()),
            output_cap_bytes: DEFAULT_OUTPUT_CAP_BYTES,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
        }
    }

    /// Memory-only cache, default output cap.
    pub fn in_memory() -> Self {
        Self {
            cache_dir: None,
            output_cap_bytes: DEFAULT_OUTPUT_CAP_BYTES,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
        }
    }
}

/// Setting up the wasm engine failed.
#[derive(Debug, thiserror::Error)]
pub enum WasmSetupError {
    /// The engine or linker could not be created.
    #[error("wasm engine setup: {0}")]
    Engine(String),
    /// The cache directory is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The state of one preview-1 module's store (a component's is [`ComponentState`]).
pub(crate) struct HookState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    guard: guard::FsGuard,
    http: http::HttpGrant,
    client: http::HttpClient,
    notes: UnboundedSender<Chunk>,
    /// What the hook used and was denied ([`audit`]).
    audit: audit::Audit,
    /// Guest paths of open descriptors, for the audit.
    paths: audit::FdPaths,
    /// The granted host variables the hook was given (recorded when it reads its environment).
    env_granted: Vec<String>,
    env_read: bool,
}

/// The agent's wasm hook runner: engine, linker, compile cache, epoch ticker. Create one per agent and share it.
pub struct WasmHooks {
    engine: Engine,
    linkers: Linkers,
    cache: ModuleCache,
    client: http::HttpClient,
    output_cap: usize,
    /// Held for its `Drop`, which stops the thread.
    _ticker: Ticker,
}

impl std::fmt::Debug for WasmHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHooks")
            .field("compiles", &self.cache.compiles())
            .finish_non_exhaustive()
    }
}

/// The thread that advances the engine's epoch; stopped when the runner is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn engine_err(e: impl std::fmt::Display) -> WasmSetupError {
    WasmSetupError::Engine(e.to_string())
}

/// What a precompile did for one module.
#[derive(Debug)]
pub struct Precompiled {
    /// The hook's location.
    pub location: String,
    /// `Ok` when the module is compiled and cached (whether or not it was already).
    pub result: Result<(), CacheError>,
}

impl WasmHooks {
    /// Create the engine, linker and cache, and start the epoch ticker.
    pub fn new(config: WasmConfig) -> Result<Self, WasmSetupError> {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        // Trap backtraces keep wasmtime's default of the 20 innermost frames: enough to name the failing function.
        let engine = Engine::new(&cfg).map_err(engine_err)?;
        let mut linker: Linker<HookState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut HookState| &mut s.wasi)
            .map_err(engine_err)?;
        guard::link::shadow(&mut linker).map_err(engine_err)?;
        linker
            .func_wrap_async(
                hostcall::IMPORT_MODULE,
                hostcall::HTTP_GET,
                |caller, args: (i32, i32, i32, i32, i32)| {
                    Box::new(async move { Ok(http::http_get(caller, args).await) })
                },
            )
            .map_err(engine_err)?;
        let linkers = Linkers {
            module: linker,
            component: component::linker(&engine).map_err(engine_err)?,
        };
        let cache = ModuleCache::new(&engine, config.cache_dir, config.compile_timeout)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wasm-epoch".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(engine_err)?
        };
        Ok(Self {
            engine,
            linkers,
            cache,
            client: http::client(&[]),
            output_cap: config.output_cap_bytes,
            _ticker: Ticker {
                stop,
                thread: Some(thread),
            },
        })
    }

    /// How many modules and components were compiled (not loaded from the cache) since this runner was created.
    pub fn compile_count(&self) -> u64 {
        self.cache.compiles()
    }

    /// Compile (or find in the cache) and link the module or component at `path`, so that its first run is warm;
    /// returns its kind.
    pub async fn precompile_file(&self, path: &Path) -> Result<WasmKind, CacheError> {
        Ok(match self.cache.linked(path, &self.linkers).await? {
            Linked::Module(_) => WasmKind::Module,
            Linked::Component(_) => WasmKind::Component,
        })
    }

    /// Compile every wasm hook (module or component) of `spec` found in `revision_dir`; call it right after the
    /// revision is unpacked. Shell hooks are skipped; each binary is compiled once even if several events use it.
    pub async fn precompile_revision(
        &self,
        spec: &AppSpec,
        revision_dir: &Path,
    ) -> Vec<Precompiled> {
        let mut seen = std::collections::BTreeSet::new();
        let mut done = Vec::new();
        for hook in spec.hooks.values().flatten() {
            if !seen.insert(hook.location.clone()) {
                continue;
            }
            let Some(path) = detect(revision_dir, &hook.location) else {
                continue;
            };
            let result = match confine(revision_dir, &path) {
                Ok(path) => self.precompile_file(&path).await.map(|_| ()),
                Err(reason) => Err(CacheError::NotAModule { path, reason }),
            };
            done.push(Precompiled {
                location: hook.location.clone(),
                result,
            });
        }
        done
    }

    /// Run one wasm hook whose module is `module` (found by [`detect`]).
    pub(crate) async fn run(&self, run: HookRun<'_>, module: &Path) -> HookOutcome {
        let started = Instant::now();
        let spec = run.hook.sandbox.clone().unwrap_or_default();
        let location = run.hook.location.as_str();
        let mut lines = LineWriter::new(
            run.log,
            run.event,
            location,
            OutputTail::new(DEFAULT_TAIL_BYTES),
        );
        let mut warnings = Vec::new();
        let mut capabilities = Vec::new();
        let (status, truncated) = self
            .run_guest(run, module, &spec, &mut lines, &mut capabilities)
            .await;
        if let Some(cap) = truncated {
            let msg = format!(
                "output truncated after {cap} bytes (the hook kept running; the rest was dropped)"
            );
            lines.note(&msg);
            warnings.push(msg);
        }
        if !status.is_success() {
            lines.note(&format!("wasm hook {status}"));
        }
        let (tail, log_error) = lines.finish();
        if let Some(e) = log_error {
            warnings.push(format!("could not write scripts.log: {e}"));
        }
        HookOutcome {
            location: location.to_owned(),
            status,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            log_tail: tail.render(),
            warnings,
            capabilities,
        }
    }

    /// Returns the status and, when output was cut, the cap; sets the audit's counts when the guest ran.
    async fn run_guest(
        &self,
        run: HookRun<'_>,
        module: &Path,
        spec: &SandboxSpec,
        lines: &mut LineWriter<'_>,
        capabilities: &mut Vec<rollcage_proto::CapabilityCount>,
    ) -> (HookStatus, Option<usize>) {
        let module = match confine(run.script_root(), module) {
            Ok(m) => m,
            Err(reason) => return (HookStatus::NotExecutable { reason }, None),
        };
        // The hook's wall-clock limit covers everything from here: a cold compile (when nothing precompiled the
        // module after unpack) counts against it like the run itself.
        let timeout = Duration::from_secs(run.hook.timeout_secs);
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = HookStatus::TimedOut {
            timeout_secs: run.hook.timeout_secs,
        };
        let linked = self.cache.linked(&module, &self.linkers);
        let linked = match tokio::time::timeout_at(deadline, linked).await {
            Err(_) => return (timed_out, None),
            Ok(Ok(linked)) => linked,
            Ok(Err(
                e @ (CacheError::CacheDir { .. }
                | CacheError::Io { .. }
                | CacheError::CompileTimedOut { .. }),
            )) => {
                return (
                    HookStatus::Unknown {
                        reason: e.to_string(),
                    },
                    None,
                );
            }
            Ok(Err(e)) => {
                return (
                    HookStatus::InvalidModule {
                        reason: e.to_string(),
                    },
                    None,
                );
            }
        };
        let OutputChannel {
            stdout,
            stderr,
            notes,
            mut rx,
            budget,
        } = OutputChannel::new(self.output_cap);
        let lifecycle_vars = run.env.vars(run.event);
        let lifecycle = hook_api::Lifecycle::from_vars(&lifecycle_vars);
        let log_sinks = hook_api::LogSinks {
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        let input = sandbox::SandboxInput {
            spec,
            revision_dir: run.revision_dir,
            program: &run.hook.location,
            lifecycle_vars,
            event: run.event,
        };
        let (mut wasi, env_granted) = match sandbox::builder(input, stdout, stderr) {
            Ok(w) => w,
            Err(e) => {
                return (
                    HookStatus::Unknown {
                        reason: e.to_string(),
                    },
                    None,
                );
            }
        };
        // A hook with its own CA gets a client of its own; the others share the agent's.
        let client = match &spec.http_ca {
            None => self.client.clone(),
            Some(ca) => match http::read_ca(run.revision_dir, ca) {
                Ok(certs) => http::client(&certs),
                Err(e) => {
                    return (
                        HookStatus::Unknown {
                            reason: e.to_string(),
                        },
                        None,
                    );
                }
            },
        };
        let limiter = MemoryLimiter::new(spec.memory_mb);
        let (end, memory_refused, violation) = match linked {
            Linked::Module(pre) => {
                let state = HookState {
                    wasi: wasi.build_p1(),
                    limiter,
                    guard: guard::FsGuard::new(spec),
                    http: http::HttpGrant::new(&spec.http),
                    client: client.clone(),
                    notes,
                    audit: audit::Audit::default(),
                    paths: audit::FdPaths::preopens(spec),
                    env_granted,
                    env_read: false,
                };
                let mut store = self.store(state, |s| &mut s.limiter);
                let guest = async {
                    let instance = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| RunEnd::Error(Phase::Instantiate, e))?;
                    let start = instance
                        .get_typed_func::<(), ()>(&mut store, "_start")
                        .map_err(|e| RunEnd::Error(Phase::Instantiate, e))?;
                    start
                        .call_async(&mut store, ())
                        .await
                        .map_err(|e| RunEnd::Error(Phase::Run, e))
                };
                let guest = async { guest.await.map_or_else(|end| end, |()| RunEnd::Returned) };
                let end = drive(guest, deadline, &mut rx, lines).await;
                let data = store.data_mut();
                let violation = data.guard.finish(&mut data.audit);
                *capabilities = write_audit(&data.audit, lines);
                (end, data.limiter.refused(), violation)
            }
            Linked::Component(pre) => {
                let http_log = wasi_http::HttpLog::default();
                let state = ComponentState {
                    wasi: wasi.build(),
                    table: wasmtime::component::ResourceTable::new(),
                    limiter,
                    http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
                    http: wasi_http::GrantedHttp {
                        grant: http::HttpGrant::new(&spec.http),
                        client,
                        notes,
                        log: http_log.clone(),
                    },
                    lifecycle,
                    log: log_sinks,
                    audit: audit::Audit::default(),
                    guard: guard::component::ComponentGuard::new(spec),
                    paths: std::collections::HashMap::new(),
                    env_granted,
                    env_read: false,
                };
                let mut store = self.store(state, |s| &mut s.limiter);
                let end = drive(component::call(&pre, &mut store), deadline, &mut rx, lines).await;
                if matches!(end, RunEnd::RunFailed) {
                    lines.note("the component's wasi:cli/run returned an error");
                }
                let data = store.data_mut();
                http_log.drain_into(&mut data.audit);
                let violation = data.guard.fs.finish(&mut data.audit);
                *capabilities = write_audit(&data.audit, lines);
                (end, data.limiter.refused(), violation)
            }
        };
        let limits = Limits {
            timeout_secs: run.hook.timeout_secs,
            memory_mib: spec.memory_mb,
            memory_refused,
        };
        let status = outcome::with_violation(outcome::classify(&end, limits), violation);
        (status, budget.truncated().then(|| budget.cap()))
    }

    /// A store for one run: the memory cap installed, and the epoch deadline set to yield (not trap) at every tick,
    /// so a pure loop returns to the scheduler and the wall-clock timeout can drop it.
    fn store<S: Send + 'static>(
        &self,
        state: S,
        limiter: fn(&mut S) -> &mut MemoryLimiter,
    ) -> Store<S> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(move |s| limiter(s));
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}

/// Write the audit as `[capability]` lines (scripts.log and the report tail); returns its counts for the outcome.
fn write_audit(
    audit: &audit::Audit,
    lines: &mut LineWriter<'_>,
) -> Vec<rollcage_proto::CapabilityCount> {
    for line in audit.lines() {
        lines.capability(&line);
    }
    audit.wire_counts()
}

/// Run a guest call to its end or to the deadline, writing its output as lines meanwhile; then the output it
/// queued last. At the deadline the call is dropped: wherever the guest was — computing (it yields at every epoch
/// tick) or blocked in an async host call (a sleep, a read, a socket) — it is cancelled there.
async fn drive(
    guest: impl std::future::Future<Output = RunEnd>,
    deadline: tokio::time::Instant,
    rx: &mut UnboundedReceiver<Chunk>,
    lines: &mut LineWriter<'_>,
) -> RunEnd {
    let guest = tokio::time::timeout_at(deadline, guest);
    tokio::pin!(guest);
    let end = loop {
        tokio::select! {
            r = &mut guest => break r.unwrap_or(RunEnd::TimedOut),
            Some(chunk) = rx.recv() => lines.feed(chunk),
        }
    };
    // The guest is gone; what it wrote last is still queued.
    while let Ok(chunk) = rx.try_recv() {
        lines.feed(chunk);
    }
    end
}

/// The module file of a hook when it is a WebAssembly binary (starts with `\0asm`), `None` otherwise (a script,
/// or a file that cannot be read — the shell runner reports those).
pub fn detect(revision_dir: &Path, location: &str) -> Option<PathBuf> {
    let path = revision_dir.join(location);
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(&path).ok()?;
    f.read_exact(&mut magic).ok()?;
    (magic == *b"\0asm").then_some(path)
}

/// Resolve `path` and check it stays inside the revision (a symlink may not lead a hook out of its bundle).
fn confine(revision_dir: &Path, path: &Path) -> Result<PathBuf, String> {
    let root = revision_dir
        .canonicalize()
        .map_err(|e| format!("revision `{}`: {e}", revision_dir.display()))?;
    let real = path
        .canonicalize()
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    if real.starts_with(&root) && real.is_file() {
        Ok(real)
    } else {
        Err(format!(
            "`{}` resolves to `{}`, outside the revision or not a file",
            path.display(),
            real.display()
        ))
    }
}

/// The runner used when the caller passed none in [`HookRun::wasm`]: memory-only cache, created on first use.
pub(crate) fn fallback() -> Result<&'static WasmHooks, &'static str> {
    static FALLBACK: std::sync::OnceLock<Result<WasmHooks, String>> = std::sync::OnceLock::new();
    FALLBACK
        .get_or_init(|| WasmHooks::new(WasmConfig::in_memory()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(String::as_str)
}
