//! The harness of the wasm hook tests (`wasm_hooks.rs` runs the preview-1 modules, `wasm_components.rs` the same
//! programs as WASI 0.2 components): a revision dir holding the test programs, a `scripts.log`, a runner with its
//! own cache dir; and the sandbox checks both kinds must pass, written once: [`checks`], and [`grant`] for the
//! read-write grant cases.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "each test binary uses a different subset of the helpers; test setup"
)]

pub mod checks;
pub mod grant;

use rollcage_proto::{HookOutcome, LifecycleEvent, SandboxSpec};
use rollcage_runtime::appspec::HookSpec;
use rollcage_runtime::hooks::{HookEnv, HookRun, ScriptLog, WasmConfig, WasmHooks, run_hook};
use std::path::{Path, PathBuf};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A revision dir holding the test programs, a scripts.log and a runner with its own cache dir.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub revision: PathBuf,
    pub log: ScriptLog,
    pub hooks: WasmHooks,
    pub env: HookEnv,
}

impl Harness {
    pub fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let revision = dir.path().join("revision");
        std::fs::create_dir_all(revision.join("hooks"))?;
        std::fs::write(revision.join("data.txt"), "revision data\n")?;
        std::fs::create_dir_all(revision.join("sub"))?;
        std::fs::write(revision.join("sub/data.txt"), "revision data\n")?;
        let log = ScriptLog::open(&dir.path().join("logs/scripts.log"))?;
        let hooks = WasmHooks::new(WasmConfig::new(dir.path().join("cache")))?;
        let env = HookEnv {
            deployment_id: "d-123".to_owned(),
            application_name: "web".to_owned(),
            deployment_group_name: "prod".to_owned(),
            deployment_group_id: "g-1".to_owned(),
            extra: Vec::new(),
        };
        Ok(Self {
            dir,
            revision,
            log,
            hooks,
            env,
        })
    }

    /// Copy a built program into the revision as `hooks/<name>.wasm`; returns its location.
    pub fn install(&self, wasm: &str) -> Result<String, std::io::Error> {
        let name = Path::new(wasm)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::copy(wasm, self.revision.join("hooks").join(&name))?;
        Ok(format!("hooks/{name}"))
    }

    pub async fn run(
        &self,
        wasm: &str,
        timeout_secs: u64,
        sandbox: SandboxSpec,
    ) -> Result<HookOutcome, std::io::Error> {
        let location = self.install(wasm)?;
        Ok(self.run_location(&location, timeout_secs, sandbox).await)
    }

    pub async fn run_location(
        &self,
        location: &str,
        timeout_secs: u64,
        sandbox: SandboxSpec,
    ) -> HookOutcome {
        let hook = HookSpec {
            location: location.to_owned(),
            timeout_secs,
            runas: None,
            sudo: false,
            sandbox: Some(sandbox),
        };
        let run = HookRun {
            event: LifecycleEvent::ValidateService,
            hook: &hook,
            revision_dir: &self.revision,
            script_root: None,
            deploy_dir: None,
            env: &self.env,
            log: &self.log,
            wasm: Some(&self.hooks),
        };
        run_hook(run).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/scripts.log")).unwrap_or_default()
    }
}

pub fn args(a: &[&str]) -> SandboxSpec {
    SandboxSpec {
        args: a.iter().map(|s| (*s).to_owned()).collect(),
        ..SandboxSpec::default()
    }
}

/// `(VmRSS, VmHWM)` of this process in bytes.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reset the peak-RSS counter (Linux: writing 5 to clear_refs), so VmHWM measures from now on.
pub fn reset_peak_rss() -> std::io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

pub const MIB: u64 = 1 << 20;

/// A loopback server answering `200 healthy`, or a body of N bytes for `/bytes/N`; returns its base URL and
/// a request counter.
pub async fn serve() -> std::io::Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = tokio::io::AsyncReadExt::read(&mut sock, &mut buf)
                    .await
                    .unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let body = match path
                    .strip_prefix("/bytes/")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(len) => vec![b'b'; len],
                    None => b"healthy".to_vec(),
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, head.as_bytes()).await;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, &body).await;
            });
        }
    });
    Ok((base, hits))
}
