//! The load-balancer counters behind `/metrics`: for every deployment group with load-balancer settings, each of
//! its server groups' cumulative request and 5xx counters, read through the group's driver at scrape time and
//! labelled `app/group/server-group` (two deployment groups may use the same server-group names on different
//! LBs, so the bare name would mix their counters).

use crate::metrics::{LbCounterSource, LbGroupCounters};
use crate::state::AppState;
use crate::store::apps;
use rollcage_lbdriver::{Connect as _, LbConfig};
use std::sync::Weak;

/// Reads the counters of every configured server group through its driver.
#[derive(Debug)]
pub struct GroupLbCounters {
    /// Weak: the metrics registry this source is registered with lives inside the state.
    state: Weak<AppState>,
}

impl GroupLbCounters {
    /// A source reading the groups of `state`.
    pub fn new(state: Weak<AppState>) -> Self {
        Self { state }
    }
}

/// One server group to read: its metrics label, and the LB it lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterTarget {
    /// `app/group/server-group`.
    pub label: String,
    /// The server group's name on the LB.
    pub server_group: String,
    /// The LB.
    pub lb: LbConfig,
}

/// Every server group of every load-balanced deployment group, in a stable order.
pub fn targets(groups: &[rollcage_proto::wire::Group]) -> Vec<CounterTarget> {
    let mut out = Vec::new();
    for g in groups {
        let Some(settings) = &g.lb else {
            continue;
        };
        for server_group in settings.lb.server_groups.keys() {
            out.push(CounterTarget {
                label: format!("{}/{}/{server_group}", g.application, g.name),
                server_group: server_group.clone(),
                lb: settings.lb.clone(),
            });
        }
    }
    out
}

#[async_trait::async_trait]
impl LbCounterSource for GroupLbCounters {
    async fn lb_counters(&self) -> Vec<LbGroupCounters> {
        let Some(state) = self.state.upgrade() else {
            return Vec::new();
        };
        let groups = state.store.read(|c| {
            let mut all = Vec::new();
            for app in apps::applications(c)? {
                // A group row that no longer decodes (a database edited by hand) costs this scrape that
                // application's counters, not every application's.
                match apps::groups(c, &app.name) {
                    Ok(groups) => all.extend(groups),
                    Err(e) => {
                        tracing::warn!(application = %app.name, error = %e, "metrics: reading its groups")
                    }
                }
            }
            Ok::<_, crate::store::StoreError>(all)
        });
        let groups = match groups {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: reading the load-balanced groups");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for t in targets(&groups) {
            let counters = match t.lb.connect() {
                Ok(driver) => driver.counters(&t.server_group).await,
                Err(e) => Err(e),
            };
            match counters {
                Ok(c) => out.push(LbGroupCounters {
                    group: t.label,
                    requests: c.requests,
                    errors: c.errors_5xx,
                }),
                // An LB that is down or does not know the group yet has no counters to give this scrape.
                Err(e) => tracing::debug!(group = %t.label, error = %e, "metrics: LB counters"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::lb::{
        DEFAULT_DRAIN_TIMEOUT_SECS, DEFAULT_REGISTER_TIMEOUT_SECS, DriverConfig, GroupLb,
    };
    use rollcage_proto::wire::{Concurrency, DeploymentStyle, Group};

    fn group(app: &str, name: &str, style: DeploymentStyle, lb: Option<GroupLb>) -> Group {
        Group {
            id: format!("g-{name}"),
            application: app.into(),
            name: name.into(),
            style,
            concurrency: Concurrency::Count(1),
            failure_tolerance: 0,
            auto_rollback: false,
            instances: vec!["i0".into(), "i1".into()],
            tags: Default::default(),
            lb,
            webhooks: Default::default(),
            created_at_ms: 0,
        }
    }

    /// Settings for `i0` at `127.0.0.1:1` and `i1` at `127.0.0.1:2`, with these server groups.
    fn settings(groups: &[(&str, &[&str])]) -> GroupLb {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        GroupLb {
            lb: LbConfig {
                driver: DriverConfig::Builtin {
                    admin_url: "http://127.0.0.1:9".into(),
                    token_file: "/t".into(),
                    health_check: None,
                },
                service: "app1".into(),
                server_groups: groups
                    .iter()
                    .map(|(g, m)| ((*g).to_owned(), owned(m)))
                    .collect(),
                drain_timeout_secs: DEFAULT_DRAIN_TIMEOUT_SECS,
                register_timeout_secs: DEFAULT_REGISTER_TIMEOUT_SECS,
            },
            targets: [("i0", "127.0.0.1:1"), ("i1", "127.0.0.1:2")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            active_group: None,
            wait_for_continue: false,
            keep_old_group: true,
            canary: None,
            analysis: None,
        }
    }

    #[test]
    fn every_server_group_of_every_lb_group_is_read_under_a_qualified_label() {
        let groups = [
            group("shop", "plain", DeploymentStyle::InPlace, None),
            group(
                "shop",
                "web",
                DeploymentStyle::BlueGreen,
                Some(GroupLb {
                    active_group: Some("blue".into()),
                    ..settings(&[("blue", &["127.0.0.1:1"]), ("green", &["127.0.0.1:2"])])
                }),
            ),
            group(
                "blog",
                "web",
                DeploymentStyle::InPlaceLb,
                Some(settings(&[("blue", &["127.0.0.1:1", "127.0.0.1:2"])])),
            ),
        ];
        let t = targets(&groups);
        let labels: Vec<&str> = t.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["shop/web/blue", "shop/web/green", "blog/web/blue"]);
        assert_eq!(t[1].server_group, "green");
    }
}
