//! Running one step: the [`StepExecutor`] trait the agent loop calls, and [`RuntimeExecutor`], the real one,
//! which runs the step with `rollcage_runtime::lifecycle::HostDeployment`.
//!
//! Every revision's archive is kept once on the host, in the runtime's bundle store (`ROOT/agent/bundles/<sha256>`,
//! see `rollcage_runtime::layout`); the deployment dir only refers to it. A rollback, which has no DownloadBundle
//! step, takes its revision from the store: the archive is downloaded again only if the store lost it. An archive
//! is hashed once, while it is downloaded; one taken from the store for a new deployment is hashed again while it
//! is unpacked (see `Source::Stored`).

use rollcage_client::Client;
use rollcage_proto::LifecycleEvent;
use rollcage_proto::clip::{MAX_MESSAGE_BYTES, clip_head};
use rollcage_proto::wire::{RevisionLocation, StepCommand, StepOutcome, StepReport};
use rollcage_runtime::appspec::FileExistsBehavior;
use rollcage_runtime::layout::{DeployLayout, GroupLayout, InvalidName};
use rollcage_runtime::lifecycle::{DeploymentSpec, HostConfig, HostDeployment};
use rollcage_runtime::package::{BundleStore, Source, UnpackLimits};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Instant;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs one step and reports how it went. Implementations never panic on input from outside; every problem is a
/// failed report.
pub trait StepExecutor: Send + Sync {
    /// Perform `cmd` on this host.
    fn run<'a>(&'a self, cmd: &'a StepCommand) -> BoxFuture<'a, StepReport>;

    /// The file `cmd`'s hooks append their output to (read by the loop for the report's log), if any.
    fn log_file(&self, _cmd: &StepCommand) -> Option<PathBuf> {
        None
    }
}

/// Gets a command's revision into the host's bundle store (retention is the runtime's, after each fetch).
#[derive(Debug, Clone)]
pub struct BundleCache {
    store: BundleStore,
}

impl BundleCache {
    /// Downloads into `store`.
    pub fn new(store: BundleStore) -> Self {
        Self { store }
    }

    /// Where the archive with this sha256 lives (`None` unless the sha from the coordinator is a hex digest).
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.store.path(sha256)
    }

    /// Make sure the command's revision can be fetched. Returns the source to unpack from and whether it had to be
    /// downloaded (a URL revision not in the store is downloaded by the runtime as it unpacks it, into the store).
    pub async fn ensure(
        &self,
        client: &Client,
        cmd: &StepCommand,
    ) -> Result<(Source, bool), String> {
        match &cmd.revision.location {
            RevisionLocation::Url { .. } if self.store.contains(&cmd.revision.sha256) => {
                Ok((stored(cmd, false), false))
            }
            RevisionLocation::Url { url } => {
                let url = url::Url::parse(url).map_err(|e| {
                    format!(
                        "invalid revision URL `{}`: {e}",
                        clip_head(url, SHOWN_BYTES)
                    )
                })?;
                Ok((Source::Url(url), true))
            }
            RevisionLocation::Coordinator => {
                // The command carries no path: the client builds the bundle route from the application and the
                // revision id, each percent-encoded, under the configured base URL. So a command can no longer
                // point the agent's token at another host (what the old absolute-path check guarded against).
                let dest = self.path(&cmd.revision.sha256).ok_or_else(|| {
                    format!(
                        "invalid sha256 `{}` in command",
                        clip_head(&cmd.revision.sha256, SHOWN_BYTES)
                    )
                })?;
                if dest.is_file() {
                    return Ok((stored(cmd, false), false));
                }
                let dir = self.store.dir();
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("creating bundle cache {}: {e}", dir.display()))?;
                // Room for the archive first (its unpacked size is checked entry by entry as it is unpacked): a
                // revision that cannot fit fails now, naming both figures, with nothing written.
                if let Some(size) = cmd.revision.size {
                    rollcage_runtime::package::space::check(
                        dir,
                        size,
                        &format!("downloading revision {} (its archive)", cmd.revision.id),
                    )
                    .map_err(|e| e.to_string())?;
                }
                let mut last = String::new();
                // A few quick retries for a flaky link; the coordinator re-sends the step anyway if we fail.
                for attempt in 0..3u32 {
                    let download = client.download_bundle(
                        &cmd.application,
                        &cmd.revision.id,
                        &dest,
                        &cmd.revision.sha256,
                    );
                    match download.await {
                        Ok(bytes) => {
                            tracing::info!(revision = %cmd.revision.id, bytes, "revision downloaded");
                            // Hashed while it was written: the runtime does not hash it again.
                            return Ok((stored(cmd, true), true));
                        }
                        Err(e) if e.is_retryable() => {
                            last = e.to_string();
                            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt))
                                .await;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Err(last)
            }
        }
    }
}

/// How much of a value from the command an error message quotes.
const SHOWN_BYTES: usize = 512;

/// The command's revision in the store; `verified` when it was hashed while being written for this step.
fn stored(cmd: &StepCommand, verified: bool) -> Source {
    Source::Stored {
        sha256: cmd.revision.sha256.clone(),
        verified,
    }
}

/// The real executor.
#[derive(Debug, Clone)]
pub struct RuntimeExecutor {
    host: HostConfig,
    client: Client,
    cache: BundleCache,
}

impl RuntimeExecutor {
    /// An executor for this host, downloading revisions with `client` into the host's bundle store (the agent's,
    /// under `host.root`, unless `host` names another).
    pub fn new(mut host: HostConfig, client: Client) -> Self {
        let store = host
            .bundles
            .get_or_insert_with(|| BundleStore::at_root(&host.root))
            .clone();
        Self {
            host,
            client,
            cache: BundleCache::new(store),
        }
    }

    fn layout(&self, cmd: &StepCommand) -> Result<DeployLayout, InvalidName> {
        GroupLayout::new(&self.host.root, &cmd.application, &cmd.group)?
            .deployment(&cmd.deployment_id)
    }

    async fn run_inner(
        &self,
        cmd: &StepCommand,
    ) -> Result<(StepOutcome, String, Vec<rollcage_proto::HookOutcome>), String> {
        // The form arrives typed and validated: decoding the command ran its rules, once.
        let form = cmd.form.clone();
        // A step that runs the revision needs it unpacked in its deployment dir: a rollback has no DownloadBundle
        // step, so its first such step fetches it.
        let layout = self.layout(cmd).map_err(|e| e.to_string())?;
        let needs_revision =
            cmd.event != LifecycleEvent::DownloadBundle && !cmd.event.uses_previous_revision();
        let fetch = cmd.event == LifecycleEvent::DownloadBundle
            || (needs_revision && !layout.revision_dir().is_dir());
        let mut fresh_download = None;
        let (source, origin) = if fetch {
            let (source, downloaded) = self.cache.ensure(&self.client, cmd).await?;
            let origin = if downloaded {
                fresh_download = self.cache.path(&cmd.revision.sha256);
                "downloaded"
            } else {
                "taken from the host cache"
            };
            (source, Some(origin))
        } else {
            // Not read: the revision is already unpacked (or the step runs the previous one's scripts).
            (stored(cmd, false), None)
        };
        let spec = DeploymentSpec {
            application: cmd.application.clone(),
            group: cmd.group.clone(),
            group_id: cmd.group_id.clone(),
            deployment_id: cmd.deployment_id.clone(),
            source,
            expected_sha256: Some(cmd.revision.sha256.clone()),
            file_exists_behavior: FileExistsBehavior::default(),
            limits: UnpackLimits::default(),
            form,
            signature: cmd.revision.signature.clone(),
            overrides: cmd.overrides,
        };
        let dep = HostDeployment::new(&self.host, spec).map_err(|e| e.to_string())?;
        let mut prefix = String::new();
        if let Some(origin) = origin {
            let mut r = dep.run_step(LifecycleEvent::DownloadBundle).await;
            r.message = clip_head(&r.message, MAX_MESSAGE_BYTES);
            if r.status == StepOutcome::Failed {
                // An archive downloaded for this step that could not be unpacked (no room, corrupt, unsigned)
                // does not stay behind to take space.
                if let Some(path) = fresh_download.filter(|p| p.is_file())
                    && let Err(e) = std::fs::remove_file(&path)
                {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a bundle that failed to unpack");
                }
                let message = format!("revision {origin}: {}", r.message);
                return Ok((r.status, message, r.hooks));
            }
            if cmd.event == LifecycleEvent::DownloadBundle {
                let message = format!("revision {origin}; {}", r.message);
                return Ok((r.status, message, r.hooks));
            }
            prefix = format!("revision {origin} and unpacked; ");
        }
        let r = dep.run_step(cmd.event).await;
        let message = clip_head(&r.message, MAX_MESSAGE_BYTES);
        Ok((r.status, format!("{prefix}{message}"), r.hooks))
    }
}

impl StepExecutor for RuntimeExecutor {
    fn run<'a>(&'a self, cmd: &'a StepCommand) -> BoxFuture<'a, StepReport> {
        Box::pin(async move {
            let started = Instant::now();
            let (outcome, message, hooks) = match self.run_inner(cmd).await {
                Ok(x) => x,
                Err(message) => (StepOutcome::Failed, message, Vec::new()),
            };
            // Messages quote what the revision and the command hold: bounded before anyone logs or journals them.
            let message = clip_head(&message, MAX_MESSAGE_BYTES);
            StepReport {
                command_id: cmd.command_id,
                outcome,
                message,
                hooks,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                // Filled in by the loop, which knows where the output started.
                log: None,
            }
        })
    }

    fn log_file(&self, cmd: &StepCommand) -> Option<PathBuf> {
        // Names from the coordinator are checked by the layout; a bad one fails the step anyway.
        Some(self.layout(cmd).ok()?.scripts_log())
    }
}
