//! Target `lb`: a deployment group's load-balancer settings ([`GroupLb`]) as `rollcage group create --lb FILE`
//! reads them (TOML, YAML or JSON) and as the coordinator receives them inside `POST …/groups` ([`CreateGroup`]),
//! then checked against every style ([`GroupLb::check`]) and queried as the engine does.
//!
//! Asserts: no panic; checking is deterministic and a refusal names at least one field; settings accepted for a
//! load-balanced style give every instance a target in its server group, the other group of blue/green is a
//! different one, and the settings survive a JSON round trip (the coordinator stores them as JSON) unchanged.

use crate::Verdict;
use rollcage_proto::lb::GroupLb;
use rollcage_proto::wire::{CreateGroup, DeploymentStyle};

/// Run `data` through the settings readers.
pub fn check(data: &[u8]) -> Verdict {
    let mut ok = Vec::new();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(lb) = toml::from_str::<GroupLb>(text) {
            ok.push(settings(&lb, &instances_of(&lb)));
        }
        if let Ok(lb) = serde_yaml::from_str::<GroupLb>(text) {
            ok.push(settings(&lb, &instances_of(&lb)));
        }
    }
    if let Ok(lb) = serde_json::from_slice::<GroupLb>(data) {
        ok.push(settings(&lb, &instances_of(&lb)));
    }
    if let Ok(req) = serde_json::from_slice::<CreateGroup>(data) {
        let checked = GroupLb::check(req.style, &req.instances, req.lb.as_ref());
        assert_eq!(
            checked,
            GroupLb::check(req.style, &req.instances, req.lb.as_ref())
        );
        refusal_names_fields(&checked);
        if let Some(lb) = &req.lb {
            settings(lb, &req.instances);
        }
        ok.push(checked.is_ok());
    }
    Verdict::any(ok)
}

/// The instance list a CLI user would give with these settings: every target's name.
fn instances_of(lb: &GroupLb) -> Vec<String> {
    lb.targets.keys().cloned().collect()
}

/// Check `lb` for every style as the coordinator does; true when some load-balanced style accepts it.
fn settings(lb: &GroupLb, instances: &[String]) -> bool {
    let json = match serde_json::to_string(lb) {
        Ok(j) => j,
        Err(e) => panic!("settings that were read cannot be written as JSON: {e}: {lb:?}"),
    };
    match serde_json::from_str::<GroupLb>(&json) {
        Ok(back) => assert_eq!(&back, lb, "JSON round trip of {json}"),
        Err(e) => panic!("settings written as JSON do not read back: {e}: {json}"),
    }
    let _ = lb.lb.validate();
    let mut any = false;
    for style in DeploymentStyle::ALL.iter().copied() {
        let checked = GroupLb::check(style, instances, Some(lb));
        refusal_names_fields(&checked);
        if checked.is_ok() {
            any = true;
            accepted(lb, style, instances);
        }
    }
    any
}

fn refusal_names_fields(checked: &Result<(), rollcage_proto::problem::FieldProblems>) {
    if let Err(p) = checked {
        assert!(!p.0.is_empty(), "refused without a problem");
        for problem in &p.0 {
            assert!(!problem.message.is_empty(), "{problem:?}");
        }
    }
}

fn accepted(lb: &GroupLb, style: DeploymentStyle, instances: &[String]) {
    for name in instances {
        let Some((group, addr)) = lb.target(name) else {
            panic!("{style:?}: accepted instance {name:?} has no target in {lb:?}");
        };
        assert!(
            lb.instances_of(group).contains(name),
            "{style:?}: {name:?} at {addr} is not listed in its group {group:?}"
        );
    }
    if style == DeploymentStyle::BlueGreen {
        let Some(active) = lb.active_group.as_deref() else {
            panic!("blue-green accepted without an active group: {lb:?}");
        };
        match lb.other_group(active) {
            Some(other) => assert_ne!(other, active),
            None => panic!("blue-green accepted without a second group: {lb:?}"),
        }
    }
}
