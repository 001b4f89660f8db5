//! The seed's step plans: which lifecycle events each deployment style runs, in which order, per instance and
//! once per deployment. This is the one home of those orders (`shared/notes/lifecycle.md` restates the seed);
//! the coordinator's engine, the agent, `rollcage local` and the demo's expectations all read them from here.
//!
//! Who performs each step is a rule of the event, not of the plan: [`LifecycleEvent::performer`].

use crate::lifecycle::{LifecycleEvent, Performer};
use crate::wire::DeploymentStyle;

use LifecycleEvent as E;

/// Rolling without a load balancer, and blue/green's per-instance steps on the idle server group.
const ROLLING: [LifecycleEvent; 7] = [
    E::DownloadBundle,
    E::ApplicationStop,
    E::BeforeInstall,
    E::Install,
    E::AfterInstall,
    E::ApplicationStart,
    E::ValidateService,
];

/// Rolling with a load balancer: download first (so the instance is out of traffic as briefly as possible), then
/// block traffic, update, validate, and allow traffic again.
const ROLLING_LB: [LifecycleEvent; 13] = [
    E::DownloadBundle,
    E::BeforeBlockTraffic,
    E::BlockTraffic,
    E::AfterBlockTraffic,
    E::ApplicationStop,
    E::BeforeInstall,
    E::Install,
    E::AfterInstall,
    E::ApplicationStart,
    E::ValidateService,
    E::BeforeAllowTraffic,
    E::AllowTraffic,
    E::AfterAllowTraffic,
];

/// A blue/green catch-up: a host that joins the *active* server group (it enrolled, or was re-imaged) is brought to
/// the revision that group serves. Its server is taken out first (a no-op when it was never in) and put back only
/// once ValidateService passed — a live group must not get a half-installed member — and nothing switches. The four
/// traffic hooks stay skipped, as in every blue/green deployment.
const CATCH_UP_BLUE_GREEN: [LifecycleEvent; 9] = [
    E::DownloadBundle,
    E::BlockTraffic,
    E::ApplicationStop,
    E::BeforeInstall,
    E::Install,
    E::AfterInstall,
    E::ApplicationStart,
    E::ValidateService,
    E::AllowTraffic,
];

/// Blue/green's one deployment-wide step, after every instance of the idle group validated.
const SWITCH: [LifecycleEvent; 1] = [E::SwitchTraffic];

/// A style's whole plan: the steps each instance goes through, then the deployment-wide steps that run once
/// every instance is done (blue/green's SwitchTraffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StylePlan {
    /// Per instance, in order.
    pub per_instance: &'static [LifecycleEvent],
    /// Once, after every instance, in order.
    pub deployment_wide: &'static [LifecycleEvent],
}

impl StylePlan {
    /// The per-instance steps the agent performs, in order (what `rollcage local` runs on one host).
    pub fn agent_steps(&self) -> impl Iterator<Item = LifecycleEvent> + '_ {
        self.per_instance
            .iter()
            .copied()
            .filter(|e| e.performer() == Performer::Agent)
    }

    /// The events whose hooks run on a host, in order, each with the revision whose scripts it runs: the steps
    /// that stop or drain the running application take the revision installed on the host (and are skipped when
    /// nothing is installed yet, on a host's first deployment), every other step the revision being deployed.
    pub fn hooks<R: Copy>(
        &self,
        installed: Option<R>,
        deployed: R,
    ) -> impl Iterator<Item = (LifecycleEvent, R)> + use<R> {
        let steps: &'static [LifecycleEvent] = self.per_instance;
        steps
            .iter()
            .copied()
            .filter(|e| e.is_scriptable())
            .filter_map(move |e| match (e.uses_previous_revision(), installed) {
                (true, Some(r)) => Some((e, r)),
                (true, None) => None,
                (false, _) => Some((e, deployed)),
            })
    }
}

/// The plan of `style`; `rollback` for a rollback deployment. A rollback starts from the host's cached revision
/// (no DownloadBundle: the agent downloads again only if its cache lost the archive); a blue/green rollback only
/// switches traffic back to the group that still runs the previous revision.
pub fn plan(style: DeploymentStyle, rollback: bool) -> StylePlan {
    // Every plan starts with DownloadBundle, so a rollback's is the same list without its first step.
    let per_instance: &'static [LifecycleEvent] = match (style, rollback) {
        (DeploymentStyle::InPlace, false) | (DeploymentStyle::BlueGreen, false) => &ROLLING,
        (DeploymentStyle::InPlace, true) => &ROLLING[1..],
        (DeploymentStyle::InPlaceLb, false) => &ROLLING_LB,
        (DeploymentStyle::InPlaceLb, true) => &ROLLING_LB[1..],
        (DeploymentStyle::BlueGreen, true) => &[],
    };
    let deployment_wide: &'static [LifecycleEvent] = match style {
        DeploymentStyle::BlueGreen => &SWITCH,
        DeploymentStyle::InPlace | DeploymentStyle::InPlaceLb => &[],
    };
    StylePlan {
        per_instance,
        deployment_wide,
    }
}

/// The plan of a deployment: a rollback's ([`plan`] with `rollback`), a catch-up's (one host brought to its group's
/// last successful revision: the style's own plan, but on blue/green [`CATCH_UP_BLUE_GREEN`], since the host joins
/// the server group that already serves), else the style's.
pub fn plan_of(style: DeploymentStyle, rollback: bool, catch_up: bool) -> StylePlan {
    match (style, catch_up && !rollback) {
        (DeploymentStyle::BlueGreen, true) => StylePlan {
            per_instance: &CATCH_UP_BLUE_GREEN,
            deployment_wide: &[],
        },
        _ => plan(style, rollback),
    }
}

/// Every style, for tests and documentation that walk all plans.
pub const STYLES: [DeploymentStyle; 3] = [
    DeploymentStyle::InPlace,
    DeploymentStyle::InPlaceLb,
    DeploymentStyle::BlueGreen,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The one independent oracle of the seed's orders (`shared/notes/lifecycle.md`), written out literally.
    /// Every other test reads the plans from [`plan`]; this one checks [`plan`] against the seed.
    const SEED_ROLLING: [&str; 7] = [
        "DownloadBundle",
        "ApplicationStop",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ];
    const SEED_ROLLING_LB: [&str; 13] = [
        "DownloadBundle",
        "BeforeBlockTraffic",
        "BlockTraffic",
        "AfterBlockTraffic",
        "ApplicationStop",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
        "BeforeAllowTraffic",
        "AllowTraffic",
        "AfterAllowTraffic",
    ];
    const fn without_first(steps: &'static [&'static str]) -> &'static [&'static str] {
        match steps {
            [_, rest @ ..] => rest,
            [] => &[],
        }
    }
    /// (style, rollback, per instance, deployment-wide). The seed: a rolling rollback runs steps 2.. with the
    /// previous revision (no download); blue/green runs steps 1–7 on the idle group, then switches; its rollback
    /// only switches back.
    const SEED: [(&str, bool, &[&str], &[&str]); 6] = [
        ("in-place", false, &SEED_ROLLING, &[]),
        ("in-place", true, without_first(&SEED_ROLLING), &[]),
        ("in-place-lb", false, &SEED_ROLLING_LB, &[]),
        ("in-place-lb", true, without_first(&SEED_ROLLING_LB), &[]),
        ("blue-green", false, &SEED_ROLLING, &["SwitchTraffic"]),
        ("blue-green", true, &[], &["SwitchTraffic"]),
    ];

    fn names(events: &[LifecycleEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.name()).collect()
    }

    #[test]
    fn every_plan_is_the_seed_s() {
        assert_eq!(
            SEED.len(),
            STYLES.len() * 2,
            "the oracle covers every style"
        );
        for (style, rollback, per_instance, deployment_wide) in SEED {
            let Ok(s) = style.parse::<DeploymentStyle>() else {
                panic!("unknown style {style}");
            };
            let p = plan(s, rollback);
            assert_eq!(
                names(p.per_instance),
                *per_instance,
                "{style} rollback={rollback}"
            );
            assert_eq!(
                names(p.deployment_wide),
                *deployment_wide,
                "{style} rollback={rollback}"
            );
        }
    }

    #[test]
    fn hooks_stop_the_installed_revision_and_run_the_rest_from_the_deployed_one() {
        let rolling = plan(DeploymentStyle::InPlace, false);
        let run = |installed: Option<&'static str>| -> Vec<(&str, &str)> {
            rolling
                .hooks(installed, "new")
                .map(|(e, r)| (e.name(), r))
                .collect()
        };
        // The seed's hooks: every step but the agent's built-in DownloadBundle and Install.
        let hooks: Vec<&str> = SEED_ROLLING
            .into_iter()
            .filter(|e| !matches!(*e, "DownloadBundle" | "Install"))
            .collect();
        let expect = |first: Option<&'static str>| -> Vec<(&str, &str)> {
            hooks
                .iter()
                .filter_map(|e| match (*e, first) {
                    ("ApplicationStop", Some(old)) => Some((*e, old)),
                    ("ApplicationStop", None) => None,
                    _ => Some((*e, "new")),
                })
                .collect()
        };
        assert_eq!(
            run(None),
            expect(None),
            "nothing installed: no ApplicationStop"
        );
        assert_eq!(run(Some("old")), expect(Some("old")));
        let lb: Vec<_> = plan(DeploymentStyle::InPlaceLb, false)
            .hooks(Some("old"), "new")
            .filter(|(_, r)| *r == "old")
            .map(|(e, _)| e.name())
            .collect();
        assert_eq!(
            lb,
            ["BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop"]
        );
    }

    #[test]
    fn traffic_steps_are_the_coordinator_s_and_the_rest_the_agent_s() {
        let lb = plan(DeploymentStyle::InPlaceLb, false);
        let coordinator: Vec<_> = lb
            .per_instance
            .iter()
            .filter(|e| e.performer() == Performer::Coordinator)
            .map(|e| e.name())
            .collect();
        assert_eq!(coordinator, ["BlockTraffic", "AllowTraffic"]);
        assert_eq!(lb.agent_steps().count(), 11);
        let bg = plan(DeploymentStyle::BlueGreen, false);
        assert!(
            bg.deployment_wide
                .iter()
                .all(|e| e.performer() == Performer::Coordinator)
        );
        assert!(bg.agent_steps().eq(bg.per_instance.iter().copied()));
    }

    #[test]
    fn a_catch_up_is_the_style_plan_but_on_blue_green_it_joins_the_serving_group_after_validating()
    {
        for style in [DeploymentStyle::InPlace, DeploymentStyle::InPlaceLb] {
            assert_eq!(plan_of(style, false, true), plan(style, false));
        }
        for style in STYLES {
            assert_eq!(
                plan_of(style, true, true),
                plan(style, true),
                "a rollback is a rollback"
            );
            assert_eq!(plan_of(style, false, false), plan(style, false));
        }
        let bg = plan_of(DeploymentStyle::BlueGreen, false, true);
        assert!(bg.deployment_wide.is_empty(), "nothing switches");
        let names: Vec<&str> = bg.per_instance.iter().map(|e| e.name()).collect();
        // The seed's blue/green steps, between taking the server out and putting it back.
        assert_eq!(names[0], "DownloadBundle");
        assert_eq!(names[1], "BlockTraffic");
        assert_eq!(names[names.len() - 1], "AllowTraffic");
        let inner: Vec<&str> = names[2..names.len() - 1].to_vec();
        let seed: Vec<&str> = SEED_ROLLING[1..].to_vec();
        assert_eq!(inner, seed);
        assert!(
            bg.per_instance.iter().all(|e| !matches!(
                e,
                E::BeforeBlockTraffic
                    | E::AfterBlockTraffic
                    | E::BeforeAllowTraffic
                    | E::AfterAllowTraffic
            )),
            "blue/green skips the four traffic hooks"
        );
    }
}
