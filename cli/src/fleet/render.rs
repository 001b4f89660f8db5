//! Text output of read commands.

use rollcage_proto::wire::{Deployment, DeploymentKind, InstanceInfo, StepState};
use std::fmt::Write;

/// One line of `rollcage deployments`: id, application/group, revision, status, then the options and the
/// description.
pub fn summary_line(d: &rollcage_proto::wire::DeploymentSummary) -> String {
    let mut s = format!(
        "{}  {}/{}  {}  {}  concurrency {}{}",
        d.id,
        d.application,
        d.group,
        d.revision,
        d.status,
        d.concurrency,
        options(d.ignore_application_stop_failures, d.file_exists_behavior)
    );
    if let Some(text) = &d.description {
        let _ = write!(s, "  — {text}");
    }
    s
}

/// A deployment's agent options as `, ignore-application-stop-failures, file-exists-behavior OVERWRITE` (empty
/// when it has none).
pub fn options(
    ignore_application_stop_failures: bool,
    file_exists_behavior: Option<rollcage_proto::FileExistsBehavior>,
) -> String {
    let mut s = String::new();
    if ignore_application_stop_failures {
        s.push_str(", ignore-application-stop-failures");
    }
    if let Some(b) = file_exists_behavior {
        let _ = write!(s, ", file-exists-behavior {b}");
    }
    s
}

/// A deployment, one line per instance, failed steps with their message and log tail.
pub fn deployment(d: &Deployment) -> String {
    let mut s = String::new();
    let kind = match &d.kind {
        DeploymentKind::Normal => String::new(),
        DeploymentKind::Rollback { of, automatic } => {
            format!(
                " (rollback of {of}{})",
                if *automatic { ", automatic" } else { "" }
            )
        }
        DeploymentKind::CatchUp { instance } => format!(" (catch-up of {instance})"),
    };
    let _ = writeln!(
        s,
        "deployment {}{kind}: {}/{} revision {} — {} ({})",
        d.id,
        d.application,
        d.group,
        d.revision,
        d.status,
        d.status.description()
    );
    if let Some(text) = &d.description {
        let _ = writeln!(s, "  {text}");
    }
    let _ = writeln!(
        s,
        "  concurrency {}, failure tolerance {}{}",
        d.concurrency,
        d.failure_tolerance,
        options(d.ignore_application_stop_failures, d.file_exists_behavior)
    );
    if !d.message.is_empty() {
        let _ = writeln!(s, "  {}", d.message);
    }
    if let Some(rb) = &d.rollback_deployment {
        let _ = writeln!(s, "  rollback: {rb}");
    }
    let a = &d.actors;
    let acts: Vec<String> = [
        ("created by", &a.created_by),
        ("stopped by", &a.stopped_by),
        ("rolled back by", &a.rolled_back_by),
        ("continued by", &a.continued_by),
    ]
    .into_iter()
    .filter_map(|(what, who)| who.as_ref().map(|w| format!("{what} {w}")))
    .collect();
    if !acts.is_empty() {
        let _ = writeln!(s, "  {}", acts.join(", "));
    }
    for i in &d.instances {
        let done = i
            .steps
            .iter()
            .filter(|st| matches!(st.state, StepState::Succeeded | StepState::Skipped))
            .count();
        let current = i
            .steps
            .iter()
            .find(|st| st.state == StepState::Running)
            .map(|st| format!(", running {}", st.event))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<24} {:<12} {done}/{} steps{current}",
            i.instance,
            i.status,
            i.steps.len()
        );
        for st in i
            .steps
            .iter()
            .filter(|st| matches!(st.state, StepState::Failed | StepState::Cancelled))
        {
            let _ = writeln!(s, "      {} {:?}: {}", st.event, st.state, st.message);
            for line in st.log_tail.lines() {
                let _ = writeln!(s, "        | {line}");
            }
        }
    }
    s
}

/// The instance list: name, approval state, connection, and the enrollment token it enrolled with.
pub fn instances(list: &[InstanceInfo]) -> String {
    let mut s = String::new();
    for i in list {
        let tags = if i.tags.is_empty() {
            "-".to_owned()
        } else {
            rollcage_proto::tags::show(&i.tags)
        };
        let _ = writeln!(
            s,
            "{:<24} {:<9} {:<7} {:<10} {tags}",
            i.name,
            i.state,
            if i.lost { "lost" } else { "online" },
            i.enrolled_with.as_deref().unwrap_or("-")
        );
        // Per group, what it last installed successfully (what a catch-up compares with).
        for r in &i.installed {
            let _ = writeln!(
                s,
                "    {}/{}: {} ({})",
                r.application, r.group, r.revision, r.deployment
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::LifecycleEvent;
    use rollcage_proto::wire::{
        Concurrency, DeploymentStatus, DeploymentStyle, InstanceProgress, InstanceStatus,
        StepProgress,
    };

    #[test]
    fn a_failed_step_shows_its_message_and_log_tail() {
        let step = |event, state, message: &str, log: &str| StepProgress {
            event,
            state,
            started_at_ms: Some(1),
            ended_at_ms: Some(2),
            message: message.into(),
            log_tail: log.into(),
        };
        let d = Deployment {
            id: "d-1".into(),
            application: "shop".into(),
            group: "web".into(),
            revision: "r-1".into(),
            style: DeploymentStyle::InPlace,
            concurrency: Concurrency::Percent(50),
            failure_tolerance: 0,
            kind: DeploymentKind::Rollback {
                of: "d-0".into(),
                automatic: true,
            },
            status: DeploymentStatus::Failed,
            message: "1 of 1 instance(s) failed".into(),
            created_at_ms: 0,
            ended_at_ms: Some(3),
            rollback_deployment: None,
            actors: rollcage_proto::access::DeploymentActors {
                created_by: Some("system".into()),
                stopped_by: Some("alice".into()),
                ..Default::default()
            },
            description: Some("hotfix for #42".into()),
            ignore_application_stop_failures: true,
            file_exists_behavior: Some(rollcage_proto::FileExistsBehavior::Overwrite),
            bakes: Vec::new(),
            instances: vec![InstanceProgress {
                instance: "i1".into(),
                status: InstanceStatus::Failed,
                steps: vec![
                    step(
                        LifecycleEvent::BeforeInstall,
                        StepState::Succeeded,
                        "ok",
                        "",
                    ),
                    step(
                        LifecycleEvent::ValidateService,
                        StepState::Failed,
                        "scripts/check.sh: failed with exit code 3",
                        "curl: connection refused\nretrying",
                    ),
                ],
            }],
        };
        let text = deployment(&d);
        assert!(text.contains("rollback of d-0, automatic"), "{text}");
        assert!(
            text.contains(
                "concurrency 50%, failure tolerance 0, ignore-application-stop-failures, file-exists-behavior OVERWRITE"
            ),
            "{text}"
        );
        assert!(text.contains("\n  hotfix for #42\n"), "{text}");
        assert!(
            text.contains("i1") && text.contains("failed") && text.contains("1/2 steps"),
            "{text}"
        );
        assert!(
            text.contains("ValidateService Failed: scripts/check.sh: failed with exit code 3"),
            "{text}"
        );
        assert!(text.contains("| curl: connection refused"), "{text}");
        assert!(
            text.contains("  created by system, stopped by alice\n"),
            "who acted: {text}"
        );
    }

    #[test]
    fn the_instance_list_shows_pending_instances_and_their_token() {
        let i = |name: &str, state, with: Option<&str>| InstanceInfo {
            name: name.into(),
            enrolled_at_ms: 0,
            last_seen_ms: 0,
            lost: false,
            state,
            enrolled_with: with.map(str::to_owned),
            tags: Default::default(),
            installed: vec![],
        };
        use rollcage_proto::wire::{InstalledRevision, InstanceState};
        let mut tagged = i("web-2", InstanceState::Pending, Some("et-1f"));
        tagged.tags = [
            ("env".to_owned(), "prod".to_owned()),
            ("role".to_owned(), "web".to_owned()),
        ]
        .into();
        tagged.installed = vec![InstalledRevision {
            application: "shop".into(),
            group: "web".into(),
            revision: "r-1234".into(),
            deployment: "d-9".into(),
        }];
        let text = instances(&[i("web-1", InstanceState::Approved, None), tagged]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("approved") && lines[0].contains(" - ") && lines[0].ends_with('-'),
            "{text}"
        );
        assert!(
            lines[1].contains("pending")
                && lines[1].contains("et-1f")
                && lines[1].ends_with("env=prod,role=web"),
            "{text}"
        );
        assert_eq!(lines[2], "    shop/web: r-1234 (d-9)", "{text}");
    }
}
