//! Catch-up: an instance that joins a group (enrolls, or starts again having lost its root, e.g. re-imaged) gets
//! the group's last successful revision by itself, as CodeDeploy does for new Auto Scaling instances.
//!
//! On every start the agent says hello ([`rollcage_proto::wire::AgentHello`]): its tags and, per group it has
//! deployed, the deployment whose Install last succeeded on it. For each group the instance belongs to
//! ([`member`]), [`decide`] picks one of:
//!
//! - a normal deployment of the group is running and does not include it: it is **added** to that deployment, and
//!   the strategy starts it when the concurrency allows;
//! - otherwise, when the group's last deployment (catch-ups aside) **succeeded** and the host does not already have
//!   that revision installed (an agent restart): a one-instance **catch-up** deployment of the group's style
//!   (kind `catch-up`), so an `in-place-lb` host joins traffic only at its AllowTraffic;
//! - otherwise nothing (a host whose tags no group matches, a group that never deployed or whose last deployment
//!   failed).
//!
//! On a blue/green group where the host sits matters ([`Side`], from its `lb.targets` address):
//! - in the **active** server group (the one serving): the catch-up brings it to the revision that group serves,
//!   with [`rollcage_proto::plan_of`]'s blue/green catch-up plan: its server is taken out of the LB first and put
//!   back only after ValidateService, and nothing switches;
//! - in the **idle** group: nothing now; it gets the group's next deployment, which goes to the idle group (and it
//!   joins a running one, which deploys there);
//! - with no address in `lb.targets`: nothing (it is no server of either group).

use super::executor::{self, EngineError, NewDeployment, Result};
use crate::store::{Tx, apps, deployments, instances};
use rollcage_proto::plan;
use rollcage_proto::tags::Tags;
use rollcage_proto::wire::{DeploymentStatus, DeploymentStyle, Group, InstalledHere};

/// What the group's deployments look like to a newcomer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The group's style.
    pub style: DeploymentStyle,
    /// Its active deployment, if any.
    pub active: Option<Active>,
    /// Its newest ended deployment other than a catch-up: status and revision.
    pub last: Option<(DeploymentStatus, String)>,
    /// The revision of the deployment whose Install last succeeded on the host, as its agent said (`None`: nothing
    /// installed, or a deployment this coordinator does not know).
    pub installed_here: Option<String>,
    /// Blue/green: which server group the host is in.
    pub side: Side,
}

/// Where a host is in a blue/green group's load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Not a blue/green group, or the host has no address in `lb.targets`.
    None,
    /// In the server group that serves.
    Active,
    /// In the standby group, where the next deployment goes.
    Idle,
}

/// A group's active deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// Its id.
    pub id: String,
    /// A normal deployment (not a rollback or a catch-up), still in progress (not stopping, not waiting).
    pub joinable: bool,
    /// It already includes the instance.
    pub has_instance: bool,
}

/// What to do for one group the instance belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Nothing,
    /// Add the instance to running deployment `0`.
    Join(String),
    /// Start a catch-up deployment of revision `0` for the instance.
    CatchUp(String),
}

/// Whether an instance named `name` with `tags` belongs to `group`: its tag filter selects it, or its name list
/// names it, or the group names none and selects by no tags (every enrolled instance).
pub fn member(group: &Group, name: &str, tags: &Tags) -> bool {
    if !group.tags.is_empty() {
        group.tags.matches(tags)
    } else if !group.instances.is_empty() {
        group.instances.iter().any(|n| n == name)
    } else {
        true
    }
}

/// The decision for one group the instance belongs to (see the module doc).
pub fn decide(g: &GroupState) -> Decision {
    // Blue/green: a running deployment goes to the idle group, a catch-up to the active one.
    let (joins, catches_up) = match g.style {
        DeploymentStyle::BlueGreen => (g.side == Side::Idle, g.side == Side::Active),
        DeploymentStyle::InPlace | DeploymentStyle::InPlaceLb => (true, true),
    };
    match &g.active {
        Some(a) if a.has_instance || !a.joinable || !joins => Decision::Nothing,
        Some(a) => Decision::Join(a.id.clone()),
        None if !catches_up => Decision::Nothing,
        None => match &g.last {
            Some((DeploymentStatus::Succeeded, rev)) if g.installed_here.as_ref() != Some(rev) => {
                Decision::CatchUp(rev.clone())
            }
            _ => Decision::Nothing,
        },
    }
}

/// Act on an agent's hello: for each group `instance` belongs to, add it to the running deployment or start its
/// catch-up. Returns the deployments that will bring it up to date. A pending instance gets nothing (it is given
/// no work until approved; its hello after the approval, or the next deployment, brings it up to date).
pub fn on_hello(
    tx: &Tx<'_>,
    instance: &str,
    installed: &[InstalledHere],
    now: i64,
) -> Result<Vec<String>> {
    let Some(row) = instances::get(tx, instance)? else {
        return Err(EngineError::NotFound {
            what: "instance",
            name: instance.to_owned(),
        });
    };
    if row.state == rollcage_proto::wire::InstanceState::Pending {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for group in apps::all_groups(tx)? {
        if !member(&group, instance, &row.tags) {
            continue;
        }
        // Two hellos of one host (two coordinators) must not both start a catch-up: decided under the group's lock.
        deployments::lock_group(tx, &group.id)?;
        let state = group_state(tx, &group, instance, installed)?;
        match decide(&state) {
            Decision::Nothing => {}
            Decision::Join(id) => {
                deployments::lock(tx, &id)?;
                let steps = plan(group.style, false).per_instance;
                if deployments::add_instance(tx, &id, instance, steps)? {
                    tracing::info!(deployment = %id, %instance, group = %group.name,
                        "instance joined the group during a deployment: added to it");
                    executor::advance(tx, &id, now)?;
                    out.push(id);
                }
            }
            Decision::CatchUp(revision) => {
                // Installed as the group's last deployment was (its --file-exists-behavior,
                // --ignore-application-stop-failures).
                let overrides = deployments::last_ended(tx, &group.id)?
                    .map(|d| d.overrides)
                    .unwrap_or_default();
                let id = executor::create_deployment(
                    tx,
                    &NewDeployment {
                        application: &group.application,
                        group: &group.name,
                        revision: &revision,
                        rollback_of: None,
                        concurrency: None,
                        catch_up: Some(instance),
                        overrides,
                        description: Some(format!("catch-up of {instance}")),
                    },
                    &[],
                    now,
                )?;
                tracing::info!(deployment = %id, %instance, group = %group.name, %revision,
                    "catch-up deployment started");
                out.push(id);
            }
        }
    }
    Ok(out)
}

fn group_state(
    tx: &Tx<'_>,
    group: &Group,
    instance: &str,
    installed: &[InstalledHere],
) -> Result<GroupState> {
    let active = match deployments::active_for_group(tx, &group.application, &group.name)? {
        Some(id) => {
            let d = deployments::get(tx, &id)?.ok_or_else(|| EngineError::NotFound {
                what: "deployment",
                name: id.clone(),
            })?;
            Some(Active {
                joinable: d.rollback_of.is_none()
                    && d.catch_up.is_none()
                    && d.status == DeploymentStatus::InProgress,
                has_instance: deployments::has_instance(tx, &id, instance)?,
                id,
            })
        }
        None => None,
    };
    let installed_here = match installed
        .iter()
        .find(|i| i.application == group.application && i.group == group.name)
    {
        Some(i) => deployments::get(tx, &i.deployment)?
            .filter(|d| d.group_id == group.id)
            .map(|d| d.revision),
        None => None,
    };
    Ok(GroupState {
        style: group.style,
        active,
        last: deployments::last_ended(tx, &group.id)?.map(|d| (d.status, d.revision)),
        installed_here,
        side: side(tx, group, instance)?,
    })
}

/// Where `instance` is in blue/green `group`'s load balancer.
fn side(tx: &Tx<'_>, group: &Group, instance: &str) -> Result<Side> {
    let (DeploymentStyle::BlueGreen, Some(settings)) = (group.style, &group.lb) else {
        return Ok(Side::None);
    };
    let Some((server_group, _)) = settings.target(instance) else {
        return Ok(Side::None);
    };
    // Switched at least once: the store knows; never switched: the settings' first active group.
    let active =
        apps::active_server_group(tx, &group.id)?.or_else(|| settings.active_group.clone());
    Ok(if active.as_deref() == Some(server_group) {
        Side::Active
    } else {
        Side::Idle
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::tags::TagFilter;
    use rollcage_proto::wire::Concurrency;

    fn group(instances: &[&str], tags: &[&[(&str, &str)]]) -> Group {
        Group {
            id: "g-1".into(),
            application: "app".into(),
            name: "web".into(),
            style: DeploymentStyle::InPlace,
            concurrency: Concurrency::All,
            failure_tolerance: 0,
            auto_rollback: false,
            instances: instances.iter().map(|s| (*s).to_owned()).collect(),
            tags: TagFilter(
                tags.iter()
                    .map(|set| {
                        set.iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect()
                    })
                    .collect(),
            ),
            lb: None,
            created_at_ms: 0,
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn membership_is_by_tags_else_by_name_else_everyone() {
        let by_tags = group(&[], &[&[("env", "prod"), ("role", "web")]]);
        assert!(member(
            &by_tags,
            "x",
            &tags(&[("env", "prod"), ("role", "web")])
        ));
        assert!(!member(&by_tags, "x", &tags(&[("env", "prod")])));
        let by_name = group(&["a"], &[]);
        assert!(member(&by_name, "a", &Tags::new()));
        assert!(!member(&by_name, "b", &tags(&[("env", "prod")])));
        assert!(member(&group(&[], &[]), "anyone", &Tags::new()));
    }

    fn state(
        active: Option<Active>,
        last: Option<(DeploymentStatus, &str)>,
        here: Option<&str>,
    ) -> GroupState {
        GroupState {
            style: DeploymentStyle::InPlace,
            active,
            last: last.map(|(s, r)| (s, r.to_owned())),
            installed_here: here.map(str::to_owned),
            side: Side::None,
        }
    }

    #[test]
    fn a_newcomer_catches_up_to_the_last_success_unless_it_has_it() {
        let ok = Some((DeploymentStatus::Succeeded, "r-1"));
        assert_eq!(
            decide(&state(None, ok, None)),
            Decision::CatchUp("r-1".into())
        );
        assert_eq!(
            decide(&state(None, ok, Some("r-0"))),
            Decision::CatchUp("r-1".into()),
            "an older revision is brought up to date"
        );
        assert_eq!(
            decide(&state(None, ok, Some("r-1"))),
            Decision::Nothing,
            "an agent restart"
        );
        assert_eq!(
            decide(&state(None, Some((DeploymentStatus::Failed, "r-1")), None)),
            Decision::Nothing,
            "the group's last deployment failed"
        );
        assert_eq!(
            decide(&state(None, None, None)),
            Decision::Nothing,
            "never deployed"
        );
    }

    #[test]
    fn on_blue_green_the_active_group_catches_up_and_the_idle_one_joins_the_next_deployment() {
        let ok = Some((DeploymentStatus::Succeeded, "r-1"));
        let bg = |side, active: Option<Active>, here: Option<&str>| {
            let mut g = state(active, ok, here);
            g.style = DeploymentStyle::BlueGreen;
            g.side = side;
            g
        };
        assert_eq!(
            decide(&bg(Side::Active, None, None)),
            Decision::CatchUp("r-1".into()),
            "a host of the serving group gets what it serves"
        );
        assert_eq!(
            decide(&bg(Side::Active, None, Some("r-1"))),
            Decision::Nothing,
            "an agent restart"
        );
        assert_eq!(
            decide(&bg(Side::Idle, None, None)),
            Decision::Nothing,
            "the standby gets the next deployment"
        );
        assert_eq!(
            decide(&bg(Side::None, None, None)),
            Decision::Nothing,
            "no server of either group"
        );
        let running = || {
            Some(Active {
                id: "d-2".into(),
                joinable: true,
                has_instance: false,
            })
        };
        assert_eq!(
            decide(&bg(Side::Idle, running(), None)),
            Decision::Join("d-2".into()),
            "a running deployment deploys to the idle group: it takes the newcomer in"
        );
        assert_eq!(
            decide(&bg(Side::Active, running(), None)),
            Decision::Nothing,
            "not into a deployment of the other group"
        );
        let mut failed = bg(Side::Active, None, None);
        failed.last = Some((DeploymentStatus::Failed, "r-1".into()));
        assert_eq!(decide(&failed), Decision::Nothing);
    }

    #[test]
    fn a_running_normal_deployment_takes_the_newcomer_in_instead() {
        let active = |joinable, has_instance| {
            Some(Active {
                id: "d-2".into(),
                joinable,
                has_instance,
            })
        };
        let ok = Some((DeploymentStatus::Succeeded, "r-1"));
        assert_eq!(
            decide(&state(active(true, false), ok, None)),
            Decision::Join("d-2".into())
        );
        assert_eq!(
            decide(&state(active(true, true), ok, None)),
            Decision::Nothing
        );
        assert_eq!(
            decide(&state(active(false, false), ok, None)),
            Decision::Nothing,
            "a rollback, a catch-up or a stopping deployment is not joined"
        );
    }
}
