//! Prometheus metrics of the coordinator: the registry and its instruments, rendered as OpenMetrics text (which
//! Prometheus scrapes natively). The route `GET /metrics` lives in `api::metrics`; the recorders (step reports)
//! and the LB counter source only need this module.
//!
//! | metric | type | source |
//! |---|---|---|
//! | `rollcage_deployments{status}` | gauge | the database, at scrape time (every status, 0 included) |
//! | `rollcage_step_duration_seconds{event}` | histogram | each recorded agent step report (`duration_ms`) |
//! | `rollcage_step_reports_total{outcome}` | counter | each recorded agent step report (repeats excluded) |
//! | `rollcage_hook_capability_calls_total{kind,result}` | counter | the capability audit counts of the wasm hooks of each recorded step report (`kind` one of `rollcage_proto::CAPABILITY_KINDS`, else `other`) |
//! | `rollcage_agents_enrolled` / `rollcage_agents_connected` | gauge | enrolled agents / those heard from within the heartbeat deadline |
//! | `rollcage_lb_requests_total{group}` / `rollcage_lb_errors_total{group}` | counter | the [`LbCounterSource`] hook, when one is set |
//! | `rollcage_canary_weight_percent{application,group,deployment}` | gauge | the database, at scrape time: the new group's weight of each running canary |
//! | `rollcage_analysis_verdicts_total{result}` | counter | the database, at scrape time: judged intervals by `pass`/`fail`/`no_verdict` (every coordinator of a shared database counts them all) |
//!
//! The scrape token (`DATA/metrics-token`) is checked here ([`Metrics::is_scrape_token`]); why there is one is told
//! in `api::metrics`.

use crate::auth;
use crate::store::{Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rollcage_proto::wire::DeploymentStatus;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A dead load balancer must not hang the scrape: past this its counters are left out of this scrape.
const LB_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Rendering the metrics failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Reading the scrape-time figures failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The exposition could not be written.
    #[error("encoding metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// Request counters of one LB server group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbGroupCounters {
    /// The server group.
    pub group: String,
    /// Requests it received (cumulative).
    pub requests: u64,
    /// 5xx responses (cumulative).
    pub errors: u64,
}

/// Hook for the load-balancer wiring: whatever drives the LB (e.g. an `LbDriver`'s `counters(group)` for each
/// configured group) implements this and registers it with [`Metrics::set_lb_source`]; each scrape then asks it
/// for the current counters.
#[async_trait::async_trait]
pub trait LbCounterSource: Send + Sync + std::fmt::Debug {
    /// Current cumulative counters of every configured group.
    async fn lb_counters(&self) -> Vec<LbGroupCounters>;
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabel {
    kind: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabel {
    application: String,
    group: String,
    deployment: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

fn step_histogram() -> Histogram {
    // 10 ms … ~44 min in ×3 steps: hooks range from no-ops to long database migrations.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

/// The coordinator's metrics registry and instruments.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    deployments: Family<StatusLabel, Gauge>,
    step_duration: Family<EventLabel, Histogram, fn() -> Histogram>,
    step_reports: Family<OutcomeLabel, Counter>,
    hook_capabilities: Family<CapabilityLabel, Counter>,
    agents_enrolled: Gauge,
    agents_connected: Gauge,
    lb_requests: Family<GroupLabel, Counter>,
    lb_errors: Family<GroupLabel, Counter>,
    canary_weight: Family<CanaryLabel, Gauge>,
    analysis_verdicts: Family<ResultLabel, Counter>,
    lb_source: OnceLock<Arc<dyn LbCounterSource>>,
    scrape_token_hash: OnceLock<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every instrument registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let deployments = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "rollcage_deployments",
            "Deployments by status",
            deployments.clone(),
        );
        let step_duration =
            Family::<EventLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                step_histogram as fn() -> Histogram,
            );
        registry.register(
            "rollcage_step_duration_seconds",
            "Duration of agent steps by lifecycle event, as the agents measured them",
            step_duration.clone(),
        );
        let step_reports = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "rollcage_step_reports",
            "Step reports recorded from agents, by outcome (repeats not counted)",
            step_reports.clone(),
        );
        let hook_capabilities = Family::<CapabilityLabel, Counter>::default();
        registry.register(
            "rollcage_hook_capability_calls",
            "Capability uses of wasm hooks by kind and result (allowed, denied), from the hooks' audits",
            hook_capabilities.clone(),
        );
        let agents_enrolled = Gauge::default();
        registry.register(
            "rollcage_agents_enrolled",
            "Enrolled agents",
            agents_enrolled.clone(),
        );
        let agents_connected = Gauge::default();
        registry.register(
            "rollcage_agents_connected",
            "Agents heard from within the heartbeat deadline",
            agents_connected.clone(),
        );
        let lb_requests = Family::<GroupLabel, Counter>::default();
        registry.register(
            "rollcage_lb_requests",
            "Requests the load balancer received, by server group",
            lb_requests.clone(),
        );
        let lb_errors = Family::<GroupLabel, Counter>::default();
        registry.register(
            "rollcage_lb_errors",
            "5xx responses of the load balancer, by server group",
            lb_errors.clone(),
        );
        let canary_weight = Family::<CanaryLabel, Gauge>::default();
        registry.register(
            "rollcage_canary_weight_percent",
            "Percent of traffic on the new server group of each running canary",
            canary_weight.clone(),
        );
        let analysis_verdicts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "rollcage_analysis_verdicts",
            "Judged intervals of canaries and analysis gates, by result (pass, fail, no_verdict)",
            analysis_verdicts.clone(),
        );
        Self {
            registry,
            deployments,
            step_duration,
            step_reports,
            hook_capabilities,
            agents_enrolled,
            agents_connected,
            lb_requests,
            lb_errors,
            canary_weight,
            analysis_verdicts,
            lb_source: OnceLock::new(),
            scrape_token_hash: OnceLock::new(),
        }
    }

    /// Record one agent step report that was new (not a repeat).
    pub fn step_reported(&self, event: &str, outcome: &str, duration_ms: u64) {
        self.step_reports
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
        #[allow(clippy::cast_precision_loss)] // durations are far below 2^52 ms
        let secs = duration_ms as f64 / 1000.0;
        self.step_duration
            .get_or_create(&EventLabel {
                event: event.to_owned(),
            })
            .observe(secs);
    }

    /// Add the capability audit counts of a recorded step report's hooks. Labels come from the agent, so they
    /// are pinned to the known sets (anything else is `other`): an agent cannot grow the label space.
    pub fn hook_capabilities(&self, hooks: &[rollcage_proto::HookOutcome]) {
        let known = |set: &[&'static str], v: &str| -> &'static str {
            set.iter().find(|k| **k == v).copied().unwrap_or("other")
        };
        for c in hooks.iter().flat_map(|h| &h.capabilities) {
            self.hook_capabilities
                .get_or_create(&CapabilityLabel {
                    kind: known(&rollcage_proto::CAPABILITY_KINDS, &c.kind).to_owned(),
                    result: known(&rollcage_proto::CAPABILITY_RESULTS, &c.result).to_owned(),
                })
                .inc_by(c.count);
        }
    }

    /// Set the LB counter source (once; later calls are ignored and return false).
    pub fn set_lb_source(&self, source: Arc<dyn LbCounterSource>) -> bool {
        self.lb_source.set(source).is_ok()
    }

    /// Accept `token` (besides the admin token) for scrapes (once; later calls are ignored).
    pub fn set_scrape_token(&self, token: &str) {
        self.set_scrape_token_hash(auth::hash_token(token));
    }

    /// Set the scrape token by its sha256 (shared by the coordinators of one database).
    pub fn set_scrape_token_hash(&self, hash: String) {
        let _ = self.scrape_token_hash.set(hash);
    }

    /// Whether `token` is the scrape token.
    pub fn is_scrape_token(&self, token: &str) -> bool {
        self.scrape_token_hash
            .get()
            .is_some_and(|h| *h == auth::hash_token(token))
    }

    /// Counters only go up: take the source's cumulative value where it is ahead (an LB whose counters were
    /// reset simply stays put until it catches up; Prometheus `rate()` copes with either).
    fn set_lb(&self, counters: &[LbGroupCounters]) {
        for c in counters {
            let label = GroupLabel {
                group: c.group.clone(),
            };
            for (family, value) in [(&self.lb_requests, c.requests), (&self.lb_errors, c.errors)] {
                let counter = family.get_or_create(&label);
                let current = counter.get();
                if value > current {
                    counter.inc_by(value - current);
                }
            }
        }
    }

    /// The exposition text, after refreshing the scrape-time gauges from `store` (`connected` tells whether an
    /// enrolled agent was heard from within the heartbeat deadline).
    pub async fn render(
        &self,
        store: &Store,
        connected: impl Fn(&str) -> bool,
    ) -> Result<String, MetricsError> {
        let (by_status, agents) = store.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT status, COUNT(*) FROM deployments GROUP BY status")?;
            let rows = stmt
                .query_map((), |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())?;
            let agents = crate::store::instances::all(c)?;
            Ok::<_, StoreError>((rows, agents))
        })?;
        let (canaries, verdicts) = store.read(|c| {
            Ok::<_, StoreError>((
                crate::store::bakes::running_canaries(c)?,
                crate::store::bakes::verdict_counts(c)?,
            ))
        })?;
        // Only running canaries have a weight: ended ones leave the family.
        self.canary_weight.clear();
        for (deployment, application, group, state) in canaries {
            self.canary_weight
                .get_or_create(&CanaryLabel {
                    application,
                    group,
                    deployment,
                })
                .set(i64::from(state.weight.percent()));
        }
        for result in ["pass", "fail", "no_verdict"] {
            let n = verdicts
                .iter()
                .find(|(r, _)| r == result)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
            let counter = self.analysis_verdicts.get_or_create(&ResultLabel {
                result: result.to_owned(),
            });
            if n > counter.get() {
                counter.inc_by(n - counter.get());
            }
        }
        for status in [
            DeploymentStatus::InProgress,
            DeploymentStatus::Stopping,
            DeploymentStatus::Succeeded,
            DeploymentStatus::Failed,
            DeploymentStatus::Stopped,
        ] {
            let n = by_status
                .iter()
                .find(|(s, _)| s == status.name())
                .map_or(0, |(_, n)| *n);
            self.deployments
                .get_or_create(&StatusLabel {
                    status: status.name().to_owned(),
                })
                .set(n);
        }
        let connected = agents.iter().filter(|(name, _, _)| connected(name)).count();
        self.agents_enrolled
            .set(i64::try_from(agents.len()).unwrap_or(i64::MAX));
        self.agents_connected
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
        if let Some(source) = self.lb_source.get() {
            match tokio::time::timeout(LB_SCRAPE_TIMEOUT, source.lb_counters()).await {
                Ok(counters) => self.set_lb(&counters),
                Err(_) => {
                    tracing::warn!(source = ?source, "LB counters timed out; left out of this scrape")
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
