//! Running one step: the [`StepExecutor`] trait the agent loop calls, and [`RuntimeExecutor`], the real one,
//! which runs the step with `rollcage_runtime::lifecycle::HostDeployment`.
//!
//! Revisions uploaded to the coordinator are kept in the host's bundle cache (`ROOT/agent/bundles/<sha256>`), so a
//! rollback, which has no DownloadBundle step, takes its revision from the cache: the archive is downloaded again
//! only if the cache lost it.

use rollcage_client::Client;
use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::{RevisionLocation, StepCommand, StepOutcome, StepReport};
use rollcage_runtime::appspec::FileExistsBehavior;
use rollcage_runtime::layout::GroupLayout;
use rollcage_runtime::lifecycle::{DeploymentSpec, HostConfig, HostDeployment, StepStatus};
use rollcage_runtime::package::{Source, UnpackLimits};
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

/// Archives cached on this host by sha256.
#[derive(Debug, Clone)]
pub struct BundleCache {
    dir: PathBuf,
    keep: usize,
}

impl BundleCache {
    /// The cache in `dir`, keeping the newest `keep` archives.
    pub fn new(dir: PathBuf, keep: usize) -> Self {
        Self { dir, keep }
    }

    /// Where the archive with this sha256 lives.
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        // The sha comes from the coordinator: accept only a hex digest as a file name.
        (sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| self.dir.join(sha256.to_ascii_lowercase()))
    }

    /// Make sure the command's revision is available locally. Returns the source to unpack from and whether it
    /// had to be downloaded.
    pub async fn ensure(
        &self,
        client: &Client,
        cmd: &StepCommand,
    ) -> Result<(Source, bool), String> {
        match &cmd.revision.location {
            RevisionLocation::Url { url } => {
                let url = url::Url::parse(url)
                    .map_err(|e| format!("invalid revision URL `{url}`: {e}"))?;
                Ok((Source::Url(url), true))
            }
            RevisionLocation::Coordinator => {
                // The command carries no path: the client builds the bundle route from the application and the
                // revision id, each percent-encoded, under the configured base URL. So a command can no longer
                // point the agent's token at another host (what the old absolute-path check guarded against).
                let dest = self.path(&cmd.revision.sha256).ok_or_else(|| {
                    format!("invalid sha256 `{}` in command", cmd.revision.sha256)
                })?;
                if dest.is_file() {
                    return Ok((Source::Archive(dest), false));
                }
                tokio::fs::create_dir_all(&self.dir)
                    .await
                    .map_err(|e| format!("creating bundle cache {}: {e}", self.dir.display()))?;
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
                            self.prune(&dest);
                            return Ok((Source::Archive(dest), true));
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

    fn prune(&self, keep_path: &std::path::Path) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let m = e.metadata().ok()?.modified().ok()?;
                (p.extension().is_none() && p != keep_path).then_some((m, p))
            })
            .collect();
        files.sort();
        let excess = (files.len() + 1).saturating_sub(self.keep);
        for (_, p) in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
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
    /// An executor for this host, downloading revisions with `client`.
    pub fn new(host: HostConfig, client: Client) -> Self {
        let cache = BundleCache::new(
            host.root.join("agent").join("bundles"),
            host.max_revisions.max(2),
        );
        Self {
            host,
            client,
            cache,
        }
    }

    fn spec(&self, cmd: &StepCommand, source: Source) -> Result<DeploymentSpec, String> {
        // The form arrives typed and validated (decoding the command ran its rules); only DownloadBundle uses it
        // (it saves it into the deployment dir).
        let form = cmd.form.clone();
        Ok(DeploymentSpec {
            application: cmd.application.clone(),
            group: cmd.group.clone(),
            group_id: cmd.group_id.clone(),
            deployment_id: cmd.deployment_id.clone(),
            source,
            expected_sha256: Some(cmd.revision.sha256.clone()),
            file_exists_behavior: FileExistsBehavior::default(),
            limits: UnpackLimits::default(),
            form,
        })
    }

    async fn run_inner(
        &self,
        cmd: &StepCommand,
    ) -> Result<(StepOutcome, String, Vec<rollcage_proto::HookOutcome>), String> {
        // The source is only read by DownloadBundle; other steps run from the unpacked revision.
        let placeholder = self
            .cache
            .path(&cmd.revision.sha256)
            .map(Source::Archive)
            .unwrap_or_else(|| Source::Archive(PathBuf::new()));
        let dep = HostDeployment::new(&self.host, self.spec(cmd, placeholder)?)
            .map_err(|e| e.to_string())?;
        let mut prefix = String::new();
        let needs_revision =
            cmd.event != LifecycleEvent::DownloadBundle && !cmd.event.uses_previous_revision();
        if cmd.event == LifecycleEvent::DownloadBundle
            || (needs_revision && !dep.layout().revision_dir().is_dir())
        {
            let (source, downloaded) = self.cache.ensure(&self.client, cmd).await?;
            let dep = HostDeployment::new(&self.host, self.spec(cmd, source)?)
                .map_err(|e| e.to_string())?;
            let r = dep.run_step(LifecycleEvent::DownloadBundle).await;
            let origin = if downloaded {
                "downloaded"
            } else {
                "taken from the host cache"
            };
            if r.status == StepStatus::Failed {
                return Ok((
                    StepOutcome::Failed,
                    format!("revision {origin}: {}", r.message),
                    r.hooks,
                ));
            }
            if cmd.event == LifecycleEvent::DownloadBundle {
                return Ok((
                    StepOutcome::Succeeded,
                    format!("revision {origin}; {}", r.message),
                    r.hooks,
                ));
            }
            prefix = format!("revision {origin} and unpacked; ");
        }
        let r = dep.run_step(cmd.event).await;
        let outcome = match r.status {
            StepStatus::Succeeded => StepOutcome::Succeeded,
            StepStatus::Skipped => StepOutcome::Skipped,
            StepStatus::Failed => StepOutcome::Failed,
        };
        Ok((outcome, format!("{prefix}{}", r.message), r.hooks))
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
        let group = GroupLayout::new(&self.host.root, &cmd.application, &cmd.group).ok()?;
        Some(group.deployment(&cmd.deployment_id).ok()?.scripts_log())
    }
}
