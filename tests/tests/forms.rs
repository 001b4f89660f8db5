//! Form-defined deployments across a fleet: a plain archive (no appspec.yml) deployed to 2 agents with forms.
//!
//! dA deploys v1 with the group's default form (label `g`), dB re-deploys v1 with its own form (`v1`), dC deploys
//! v2 with a form whose check fails; the automatic rollback to v1 must re-run dB's scripts (`v1`: the form v1 was
//! last installed with), not the group's default, while its ApplicationStop comes from what each host installed
//! last.

use rollcage_e2e::{Fleet, Marker, events_of};
use rollcage_proto::wire::DeploymentStatus;
use std::path::Path;
use std::time::Duration;

/// A form writing markers labelled `label`; the check also verifies the destination holds `expect`, and fails
/// when `fail_check`.
fn write_form(
    path: &Path,
    dest: &Path,
    label: &str,
    expect: &str,
    fail_check: bool,
) -> anyhow::Result<()> {
    let m = format!(
        "m() {{ echo \"$ROLLCAGE_INSTANCE $LIFECYCLE_EVENT $1 $(date +%s%N) $DEPLOYMENT_ID {label}\" >> \"$MARKERS\"; }}"
    );
    let check_extra = if fail_check {
        "echo 'health check failed' >&2; exit 3".to_owned()
    } else {
        // cwd is the revision: its payload must be what Install copied to the destination.
        format!(
            "grep -qx {expect} payload.txt && grep -qx {expect} '{}/payload.txt' || exit 4",
            dest.display()
        )
    };
    let text = format!(
        "destination = '{dest}'\nfile_exists_behavior = 'OVERWRITE'\n\
         stop = '''{m}\nm start\nm end'''\n\
         start = {{ script = '''{m}\nm start\nm end''', timeout = 60 }}\n\
         [check]\nscript = '''#!/bin/sh\n{m}\nm start\n{check_extra}\nm end'''\n",
        dest = dest.display()
    );
    std::fs::write(path, text)?;
    Ok(())
}

fn labelled(markers: &[Marker], instance: &str, deployment: &str) -> anyhow::Result<Vec<String>> {
    Ok(events_of(markers, instance, deployment)?
        .into_iter()
        .map(|(e, l)| format!("{e} {l}"))
        .collect())
}

#[test]
fn plain_archive_with_forms_deploys_in_order_and_rolls_back_with_the_previous_scripts()
-> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let result = (|| {
        let dir = fleet.dir.path();
        let dest = dir.join("srv");
        write_form(&dir.join("group.toml"), &dest, "g", "v1", false)?;
        write_form(&dir.join("v1.toml"), &dest, "v1", "v1", false)?;
        write_form(&dir.join("v2.toml"), &dest, "v2", "v2", true)?;
        fleet.cli(&["app", "create", "shop"])?;
        let group_form = dir.join("group.toml").display().to_string();
        fleet.cli(&[
            "group",
            "create",
            "--app",
            "shop",
            "web",
            "--style",
            "in-place",
            "--concurrency",
            "1",
            "--instances",
            "i0,i1",
            "--auto-rollback",
            "--form",
            group_form.as_str(),
        ])?;
        for (v, name) in [("v1", "b1"), ("v2", "b2")] {
            std::fs::create_dir_all(dir.join(name))?;
            std::fs::write(dir.join(name).join("payload.txt"), format!("{v}\n"))?;
        }
        let r1 = fleet.push("shop", &dir.join("b1"))?;
        let r2 = fleet.push("shop", &dir.join("b2"))?;

        let deploy = |rev: &str, form: Option<&str>| -> anyhow::Result<(i32, String)> {
            let mut args = vec![
                "deploy",
                "--app",
                "shop",
                "--group",
                "web",
                "--revision",
                rev,
            ];
            let path;
            if let Some(f) = form {
                path = dir.join(f).display().to_string();
                args.extend(["--form", path.as_str()]);
            }
            args.extend(["--wait", "--output", "json"]);
            let (code, out) = fleet.cli(&args)?;
            let d: rollcage_proto::wire::Deployment = serde_json::from_str(&out)?;
            Ok((code, d.id))
        };
        let (code, da) = deploy(&r1, None)?;
        assert_eq!(code, 0, "dA with the group's form");
        let (code, db) = deploy(&r1, Some("v1.toml"))?;
        assert_eq!(code, 0, "dB with its own form");
        let (code, dc) = deploy(&r2, Some("v2.toml"))?;
        assert_eq!(code, 2, "dC fails on its check");
        let d = fleet.status(&dc)?;
        let rb = d
            .rollback_deployment
            .ok_or_else(|| anyhow::anyhow!("no automatic rollback: {}", d.message))?;
        let rbd = fleet.wait_end(&rb, Duration::from_secs(60))?;
        assert_eq!(rbd.status, DeploymentStatus::Succeeded, "{}", rbd.message);
        assert_eq!(rbd.revision, r1);

        let markers = fleet.markers()?;
        let mut ran_dc = 0;
        for a in &fleet.agents {
            let n = a.name.as_str();
            // First deployment: nothing installed, so no stop; the group's form.
            assert_eq!(
                labelled(&markers, n, &da)?,
                ["ApplicationStart g", "ValidateService g"],
                "{n}"
            );
            // The deployment's form overrides the group's; stop comes from the form v1 was installed with (g).
            assert_eq!(
                labelled(&markers, n, &db)?,
                [
                    "ApplicationStop g",
                    "ApplicationStart v1",
                    "ValidateService v1"
                ],
                "{n}"
            );
            let dc_events = labelled(&markers, n, &dc)?;
            let installed_last = if dc_events.is_empty() {
                "v1"
            } else {
                ran_dc += 1;
                assert_eq!(
                    dc_events,
                    [
                        "ApplicationStop v1",
                        "ApplicationStart v2",
                        "ValidateService v2"
                    ],
                    "{n}"
                );
                "v2"
            };
            // The rollback stops what this host runs, then runs v1's scripts as dB stored them.
            assert_eq!(
                labelled(&markers, n, &rb)?,
                [
                    format!("ApplicationStop {installed_last}"),
                    "ApplicationStart v1".to_owned(),
                    "ValidateService v1".to_owned()
                ],
                "{n}"
            );
        }
        assert_eq!(
            ran_dc, 1,
            "concurrency 1 and no tolerance: one instance ran dC"
        );
        assert_eq!(std::fs::read_to_string(dest.join("payload.txt"))?, "v1\n");
        Ok(())
    })();
    if result.is_err() {
        eprintln!("fleet kept at {}", fleet.keep().display());
    }
    result
}
