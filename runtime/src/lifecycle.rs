//! The agent-side steps of a deployment on this host, as the agent and `rollcage local` run them.
//!
//! A [`HostDeployment`] is one deployment of one application's deployment group on this host. Each
//! [`HostDeployment::run_step`] call performs one lifecycle event and returns a [`StepReport`]; the caller (the
//! agent's command loop, or `rollcage local`) decides the order and keeps any journal. Which revision's scripts run
//! is decided here: ApplicationStop, BeforeBlockTraffic and AfterBlockTraffic stop or drain the application that is
//! running, so they take the hooks of the revision whose Install last succeeded on this host (nothing on the first
//! deployment); every other event takes the hooks of the revision being deployed.
//!
//! A deployment's plan (files + hooks) comes from its [`Form`] when it has one (saved at DownloadBundle into
//! `deploy-X/form/`, which wins over an `appspec.yml` in the package), else from the revision's AppSpec; the plan
//! of the previously installed revision is read back the same way from that deployment's dir.

use crate::appspec::{self, AppSpec, AppSpecError, FileExistsBehavior};
use crate::form::{self, Form, FormError, ToAppSpec as _};
use crate::hooks::wasm::WasmHooks;
use crate::hooks::{self, HookEnv, HookRun, ScriptLog, Stream};
use crate::install::{self, InstallRequest};
use crate::layout::{DeployLayout, GroupLayout, InvalidName};
use crate::package::{
    self, BundleStore, DEFAULT_MAX_REVISIONS, FetchOptions, Source, UnpackLimits,
};
use rollcage_proto::wire::{AgentOverrides, StepOutcome};
use rollcage_proto::{HookOutcome, LifecycleEvent, Performer, StylePlan};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Settings of this host's agent that every deployment shares.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The agent's root directory.
    pub root: PathBuf,
    /// Extra variables every hook gets (`ROLLCAGE_INSTANCE`, `--var KEY=VALUE`), in order.
    pub hook_vars: Vec<(String, String)>,
    /// Deployment dirs kept per group, and archives kept in the bundle store.
    pub max_revisions: usize,
    /// At most this many bytes of archives in the bundle store (`rollcage agent --max-cache-bytes`), on top of
    /// [`HostConfig::max_revisions`]; never removing this deployment's nor the one installed last in any group.
    pub max_cache_bytes: Option<u64>,
    /// The host's bundle store (the agent's): fetched archives are kept there once, by sha256. `None` (`rollcage
    /// local`) keeps no copy of the archive.
    pub bundles: Option<BundleStore>,
    /// The agent's wasm hook runner (engine + compile cache), shared by every deployment. `None` runs wasm hooks
    /// with a process-wide runner whose cache lives in memory only.
    pub wasm: Option<Arc<WasmHooks>>,
    /// The host's OpenSSH allowed_signers file (`--trusted-signers`). When set, DownloadBundle refuses, before
    /// unpacking anything, a revision without a valid signature ([`DeploymentSpec::signature`]) from a key it lists
    /// for `rollcage`. `None`: signatures are not checked.
    pub trusted_signers: Option<PathBuf>,
}

impl HostConfig {
    /// Where the agent keeps compiled wasm hooks: `${root}/cache/wasm` (created 0700 by the runner).
    pub fn wasm_cache_dir(&self) -> PathBuf {
        self.root.join("cache").join("wasm")
    }

    /// A host rooted at `root` with no extra variables, the default retention, no bundle store and no wasm runner.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            hook_vars: Vec::new(),
            max_revisions: DEFAULT_MAX_REVISIONS,
            max_cache_bytes: None,
            bundles: None,
            wasm: None,
            trusted_signers: None,
        }
    }

    /// The same host with its bundle store at the agent's place ([`crate::layout::bundle_store_dir`]).
    pub fn with_bundle_store(mut self) -> Self {
        self.bundles = Some(BundleStore::at_root(&self.root));
        self
    }
}

/// What to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    /// Application name.
    pub application: String,
    /// Deployment group name.
    pub group: String,
    /// Deployment group id (`DEPLOYMENT_GROUP_ID`); the name when there is no separate id.
    pub group_id: String,
    /// Deployment id.
    pub deployment_id: String,
    /// Where the revision comes from.
    pub source: Source,
    /// Expected sha256 of the archive, lowercase hex.
    pub expected_sha256: Option<String>,
    /// `file_exists_behavior` when the AppSpec does not set one.
    pub file_exists_behavior: FileExistsBehavior,
    /// Unpack limits.
    pub limits: UnpackLimits,
    /// The deployment's form, when it is form-defined (wins over an `appspec.yml` in the package).
    pub form: Option<Form>,
    /// The revision's signature (armored SSHSIG), if it has one; checked when the host has trusted signers.
    pub signature: Option<String>,
    /// The deployment's overrides: ignore failures of the previous revision's ApplicationStop,
    /// BeforeBlockTraffic and AfterBlockTraffic; a `file_exists_behavior` that wins over the AppSpec's.
    pub overrides: AgentOverrides,
}

/// The report of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The event.
    pub event: LifecycleEvent,
    /// How it ended.
    pub status: StepOutcome,
    /// One line for people: what was done, or what failed.
    pub message: String,
    /// Every hook that ran, in order (the last one is the failed one when the step failed on a hook).
    pub hooks: Vec<HookOutcome>,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

impl StepReport {
    /// The first failed hook, if the step failed on a hook.
    pub fn failed_hook(&self) -> Option<&HookOutcome> {
        self.hooks.iter().find(|h| !h.is_success())
    }
}

/// A step could not be set up or performed (hook failures are not errors: they are in the report).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// An application, group or deployment name cannot be used as a path component.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The revision could not be fetched or unpacked.
    #[error("DownloadBundle: {0}")]
    Package(#[from] package::PackageError),
    /// The revision's AppSpec is missing or invalid.
    #[error("{0}")]
    AppSpec(#[from] appspec::AppSpecError),
    /// The package has no AppSpec and the deployment no form.
    #[error(
        "DownloadBundle: the package has no appspec.yml (or appspec.yaml) at its root ({}) and the \
         deployment has no form; either add an appspec.yml to the package, or deploy it with a form \
         (`--form FILE` giving destination and stop/start/check scripts)",
        revision.display()
    )]
    NoDeploymentSpec {
        /// The unpacked revision.
        revision: PathBuf,
    },
    /// A saved form could not be read back.
    #[error("{0}")]
    Form(#[from] FormError),
    /// Install failed.
    #[error("Install: {0}")]
    Install(#[from] install::InstallError),
    /// The revision of this deployment has not been downloaded on this host.
    #[error(
        "the revision of deployment {deployment} is not on this host ({path}); run DownloadBundle first"
    )]
    NotDownloaded {
        /// The deployment.
        deployment: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// Local I/O around the step failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The event is not performed by the agent (BlockTraffic, AllowTraffic, SwitchTraffic).
    #[error("{0} is performed by the coordinator, not the agent")]
    NotAnAgentStep(LifecycleEvent),
}

/// One deployment of one group on this host.
#[derive(Debug, Clone)]
pub struct HostDeployment {
    spec: DeploymentSpec,
    group: GroupLayout,
    deploy: DeployLayout,
    env: HookEnv,
    root: PathBuf,
    max_revisions: usize,
    max_cache_bytes: Option<u64>,
    bundles: Option<BundleStore>,
    wasm: Option<Arc<WasmHooks>>,
    trusted_signers: Option<PathBuf>,
}

impl HostDeployment {
    /// Check the names and compute the layout; touches nothing on disk.
    pub fn new(host: &HostConfig, spec: DeploymentSpec) -> Result<Self, LifecycleError> {
        let group = GroupLayout::new(&host.root, &spec.application, &spec.group)?;
        let deploy = group.deployment(&spec.deployment_id)?;
        let env = HookEnv {
            deployment_id: spec.deployment_id.clone(),
            application_name: spec.application.clone(),
            deployment_group_name: spec.group.clone(),
            deployment_group_id: spec.group_id.clone(),
            extra: host.hook_vars.clone(),
        };
        Ok(Self {
            spec,
            group,
            deploy,
            env,
            root: host.root.clone(),
            max_revisions: host.max_revisions,
            max_cache_bytes: host.max_cache_bytes,
            bundles: host.bundles.clone(),
            wasm: host.wasm.clone(),
            trusted_signers: host.trusted_signers.clone(),
        })
    }

    /// The deployment's cache directory.
    pub fn layout(&self) -> &DeployLayout {
        &self.deploy
    }

    /// The group's directory on this host.
    pub fn group_layout(&self) -> &GroupLayout {
        &self.group
    }

    /// What is being deployed.
    pub fn spec(&self) -> &DeploymentSpec {
        &self.spec
    }

    /// Perform one agent step and report how it went. Never panics on input from the bundle.
    pub async fn run_step(&self, event: LifecycleEvent) -> StepReport {
        let started = Instant::now();
        let result = match event {
            LifecycleEvent::DownloadBundle => self.download().await,
            LifecycleEvent::Install => self.install().await,
            e if e.performer() == Performer::Coordinator => Err(LifecycleError::NotAnAgentStep(e)),
            e if e.uses_previous_revision()
                && self.spec.overrides.ignore_application_stop_failures =>
            {
                ignoring_failure(e, self.run_hooks(e).await)
            }
            e => self.run_hooks(e).await,
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, message, hooks) = match result {
            Ok(done) => done,
            Err(e) => (StepOutcome::Failed, e.to_string(), Vec::new()),
        };
        StepReport {
            event,
            status,
            message,
            hooks,
            duration_ms,
        }
    }

    async fn download(&self) -> Result<(StepOutcome, String, Vec<HookOutcome>), LifecycleError> {
        let revision = self.deploy.revision_dir();
        let message = if revision.is_dir() {
            // The revision is renamed into place only once complete, so its presence means a finished download
            // (a rollback or a re-sent command after an agent restart re-uses it).
            format!("revision already cached at {}", revision.display())
        } else {
            let opts = FetchOptions {
                expected_sha256: self.spec.expected_sha256.clone(),
                limits: self.spec.limits,
                store: self.bundles.clone(),
            };
            let fetched = match &self.trusted_signers {
                Some(signers) => {
                    let check = package::SignatureCheck {
                        trusted_signers: signers,
                        signature: self.spec.signature.as_deref(),
                    };
                    package::fetch_signed(&self.spec.source, &self.deploy, &opts, check)
                        .await
                        .map(|(f, v)| (f, Some(v)))
                }
                None => package::fetch(&self.spec.source, &self.deploy, &opts)
                    .await
                    .map(|f| (f, None)),
            };
            // Pruned whether or not the fetch worked: a revision that fails to unpack must not grow the store.
            self.prune_store();
            let (fetched, verified) = fetched?;
            let signed = match verified {
                Some(v) => format!(
                    ", signed by {} ({}, {})",
                    v.signer, v.principals, v.listed_at
                ),
                None => String::new(),
            };
            match &fetched.sha256 {
                Some(sha) => format!(
                    "fetched {} bytes (sha256 {sha}), {} entries{signed}",
                    fetched.bytes, fetched.entries
                ),
                None => format!("copied directory, {} entries", fetched.entries),
            }
        };
        let mut message = message;
        if let Some(form) = &self.spec.form {
            let dir = self.deploy.form_dir();
            form::write_form_dir(form, &dir).map_err(|source| LifecycleError::Io {
                what: "writing the form into",
                path: dir.clone(),
                source,
            })?;
            if appspec::find_in_revision(&revision).is_ok() {
                message.push_str(
                    "; the deployment's form is used, the package's appspec.yml is ignored",
                );
            } else {
                message.push_str("; form-defined deployment");
            }
        }
        // Validate now rather than at Install, so a broken AppSpec fails the first step, before anything stops.
        let plan = load_plan(&self.deploy)?;
        // Warnings are told once, here, where the AppSpec is first read (later steps read it again silently).
        for w in &plan.warnings {
            tracing::warn!("{w}");
            message.push_str("; ");
            message.push_str(w);
        }
        // Compile the revision's wasm hooks now, so their first run is warm. A module that does not compile is
        // reported when its hook runs (with the hook's outcome), so here it is only logged — except a module over
        // a compile bound (too large, or compiling too long), which fails this step at once.
        if let Some(wasm) = &self.wasm {
            for done in wasm
                .precompile_revision(&plan.spec, &plan.script_root)
                .await
            {
                match done.result {
                    Err(e) if e.is_bound() => {
                        let message = format!("wasm hook `{}`: {e}", done.location);
                        return Ok((StepOutcome::Failed, message, Vec::new()));
                    }
                    Err(e) => {
                        tracing::warn!(location = %done.location, error = %e, "wasm hook does not compile")
                    }
                    Ok(()) => {}
                }
            }
        }
        let last = self.last_installed()?;
        let mut keep = vec![self.spec.deployment_id.as_str()];
        if let Some(last) = &last {
            keep.push(last);
        }
        match package::prune(&self.group, self.max_revisions, &keep) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, "pruned old deployment dirs")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune old deployment dirs"),
        }
        Ok((StepOutcome::Succeeded, message, Vec::new()))
    }

    /// Keep the newest `max_revisions` archives in the bundle store, never this deployment's nor the one installed
    /// last in any group on this host (a rollback or the next ApplicationStop may need it; the store is shared by
    /// every group). Best effort: a failure is logged, the step goes on.
    fn prune_store(&self) {
        let Some(store) = &self.bundles else { return };
        let mut keep: Vec<String> = self.spec.expected_sha256.iter().cloned().collect();
        match &self.spec.source {
            Source::Stored { sha256, .. } => keep.push(sha256.clone()),
            _ => keep.extend(self.deploy.stored_bundle().ok().flatten()),
        }
        match GroupLayout::all(&self.root) {
            Ok(groups) => {
                for group in groups {
                    let installed = group.last_installed().ok().flatten();
                    let layout = installed.and_then(|id| group.deployment(&id).ok());
                    keep.extend(layout.and_then(|l| l.stored_bundle().ok().flatten()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not list the groups: the bundle store is not pruned");
                return;
            }
        }
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        match store.prune(self.max_revisions, &keep) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, "pruned old bundles from the store")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune the bundle store"),
        }
        if let Some(max_bytes) = self.max_cache_bytes
            && let Err(e) = store.prune_bytes(max_bytes, &keep)
        {
            tracing::warn!(error = %e, "could not prune the bundle store to --max-cache-bytes");
        }
    }

    async fn install(&self) -> Result<(StepOutcome, String, Vec<HookOutcome>), LifecycleError> {
        let revision = self.revision_dir_checked()?;
        let mut spec = load_plan(&self.deploy)?.spec;
        // The deployment's `--file-exists-behavior` wins over the AppSpec's (or form's).
        if let Some(behavior) = self.spec.overrides.file_exists_behavior {
            spec.file_exists_behavior = Some(behavior);
        }
        let group = self.group.clone();
        let deployment_id = self.spec.deployment_id.clone();
        let default_behavior = self.spec.file_exists_behavior;
        let report = tokio::task::spawn_blocking(move || {
            install::install(&InstallRequest {
                spec: &spec,
                revision_dir: &revision,
                group: &group,
                deployment_id: &deployment_id,
                default_behavior,
            })
        })
        .await
        .map_err(|e| LifecycleError::Io {
            what: "install task",
            path: self.deploy.dir().to_owned(),
            source: std::io::Error::other(e),
        })??;
        // `install` itself records this deployment as the last installed one (CodeDeploy does it at Install).
        let message = format!(
            "{} copied, {} dir(s) created, {} retained, {} cleaned up from the previous install",
            report.copied, report.dirs_created, report.retained, report.cleaned
        );
        Ok((StepOutcome::Succeeded, message, Vec::new()))
    }

    async fn run_hooks(
        &self,
        event: LifecycleEvent,
    ) -> Result<(StepOutcome, String, Vec<HookOutcome>), LifecycleError> {
        let (deploy, which) = if event.uses_previous_revision() {
            match self.last_installed()? {
                None => {
                    return Ok((
                        StepOutcome::Skipped,
                        "no revision installed on this host yet".to_owned(),
                        Vec::new(),
                    ));
                }
                Some(id) => {
                    let layout = self.group.deployment(&id)?;
                    if !layout.revision_dir().is_dir() {
                        return Ok((
                            StepOutcome::Skipped,
                            format!(
                                "the installed revision (deployment {id}) is no longer cached on this host"
                            ),
                            Vec::new(),
                        ));
                    }
                    (layout, format!("deployment {id}"))
                }
            }
        } else {
            self.revision_dir_checked()?;
            (self.deploy.clone(), "this deployment".to_owned())
        };
        let plan = load_plan(&deploy)?;
        let revision = deploy.revision_dir();
        let hooks = plan.spec.hooks_for(event);
        if hooks.is_empty() {
            return Ok((
                StepOutcome::Skipped,
                format!("no {event} hooks in the revision of {which}"),
                Vec::new(),
            ));
        }
        let log_path = self.deploy.scripts_log();
        let log = ScriptLog::open(&log_path).map_err(|source| LifecycleError::Io {
            what: "opening",
            path: log_path.clone(),
            source,
        })?;
        let mut outcomes = Vec::with_capacity(hooks.len());
        for hook in hooks {
            let outcome = hooks::run_hook(HookRun {
                event,
                hook,
                revision_dir: &revision,
                script_root: Some(&plan.script_root),
                deploy_dir: Some(deploy.dir()),
                env: &self.env,
                log: &log,
                wasm: self.wasm.as_deref(),
            })
            .await;
            let ok = outcome.is_success();
            if !ok {
                // Best effort: the outcome itself is the report; a log write failure must not hide it.
                let note = format!("{} {}", outcome.location, outcome.status);
                let _ = log.line(event, &outcome.location, Stream::Agent, note.as_bytes());
            }
            outcomes.push(outcome);
            if !ok {
                let failed = outcomes
                    .last()
                    .map(|o| format!("{}: {}", o.location, o.status))
                    .unwrap_or_default();
                return Ok((StepOutcome::Failed, failed, outcomes));
            }
        }
        let message = format!("{} hook(s) of {which} succeeded", outcomes.len());
        Ok((StepOutcome::Succeeded, message, outcomes))
    }

    fn revision_dir_checked(&self) -> Result<PathBuf, LifecycleError> {
        let dir = self.deploy.revision_dir();
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(LifecycleError::NotDownloaded {
                deployment: self.spec.deployment_id.clone(),
                path: dir,
            })
        }
    }

    fn last_installed(&self) -> Result<Option<String>, LifecycleError> {
        self.group
            .last_installed()
            .map_err(|source| LifecycleError::Io {
                what: "reading",
                path: self.group.last_installed_file(),
                source,
            })
    }
}

/// A step of the previous revision's scripts run under `--ignore-application-stop-failures`: its failure (a hook
/// that failed, or the previous revision's plan that cannot be read) is logged and the step succeeds, with the
/// failure in its message and its hooks' outcomes kept, so nobody loses sight of it.
fn ignoring_failure(
    event: LifecycleEvent,
    result: Result<(StepOutcome, String, Vec<HookOutcome>), LifecycleError>,
) -> Result<(StepOutcome, String, Vec<HookOutcome>), LifecycleError> {
    let (why, hooks) = match result {
        Ok((StepOutcome::Failed, message, hooks)) => (message, hooks),
        Err(e) => (e.to_string(), Vec::new()),
        done => return done,
    };
    tracing::warn!(%event, error = %why, "failure ignored (--ignore-application-stop-failures)");
    Ok((
        StepOutcome::Succeeded,
        format!("{event} failed, ignored (--ignore-application-stop-failures): {why}"),
        hooks,
    ))
}

/// What a deployment does: its AppSpec (given or made from its form) and where its hook locations are found.
struct Plan {
    spec: AppSpec,
    script_root: PathBuf,
    /// The AppSpec's warnings, `FILE:LINE:COL: warning: …` (none for a form).
    warnings: Vec<String>,
}

/// The plan of the deployment in `deploy`: from its saved form if it has one, else from its revision's AppSpec.
fn load_plan(deploy: &DeployLayout) -> Result<Plan, LifecycleError> {
    let form_dir = deploy.form_dir();
    let form_file = form_dir.join(form::FORM_FILE);
    match std::fs::read_to_string(&form_file) {
        Ok(text) => {
            let form = form::from_json(&text, &form_file.display().to_string())?;
            return Ok(Plan {
                spec: form.to_appspec(),
                script_root: form_dir,
                warnings: Vec::new(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(LifecycleError::Io {
                what: "reading",
                path: form_file,
                source,
            });
        }
    }
    let revision = deploy.revision_dir();
    match appspec::load_checked(&revision) {
        Ok(loaded) => Ok(Plan {
            spec: loaded.spec,
            script_root: revision,
            warnings: loaded.warnings,
        }),
        Err(AppSpecError::NotFound(revision)) => Err(LifecycleError::NoDeploymentSpec { revision }),
        Err(e) => Err(e.into()),
    }
}

/// Run the agent's steps of `plan` in order until one fails, handing each report to `on_step` as it ends; returns
/// the failed step's report, if any. Steps the coordinator performs (load-balancer calls) are not run here: one
/// host with no coordinator has no load balancer to call.
pub async fn run_plan(
    deployment: &HostDeployment,
    plan: StylePlan,
    mut on_step: impl FnMut(&StepReport),
) -> Option<StepReport> {
    for event in plan.agent_steps() {
        let report = deployment.run_step(event).await;
        on_step(&report);
        if report.status == StepOutcome::Failed {
            return Some(report);
        }
    }
    None
}
