//! Form-defined deployments: validation with field paths, the plan a form stands for, and the lifecycle of a plain
//! archive with no appspec.yml deployed with a form (order, stop from the previous revision's form, cwd).

use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::StepOutcome;
use rollcage_runtime::appspec::FileExistsBehavior;
use rollcage_runtime::form::{self, Form, FormError, FormSyntax, ToAppSpec as _};
use rollcage_runtime::lifecycle::{DeploymentSpec, HostConfig, HostDeployment};
use rollcage_runtime::package::{Source, UnpackLimits};
use std::path::Path;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn problems(text: &str, syntax: FormSyntax) -> Vec<String> {
    match form::parse(text, syntax, "test") {
        Err(FormError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => vec![format!("not Invalid: {other:?}")],
    }
}

fn has(problems: &[String], prefix: &str, words: &str) -> bool {
    problems
        .iter()
        .any(|p| p.starts_with(prefix) && p.contains(words))
}

#[test]
fn every_problem_is_reported_at_once_with_its_field_path() {
    let text = r#"
destination = "opt/app"
strat = "echo hi"
stop = ""
[check]
script = "   "
timeout = 0
colour = "red"
"#;
    let p = problems(text, FormSyntax::Toml);
    assert!(has(&p, "strat: ", "did you mean `start`"), "{p:?}");
    assert!(has(&p, "destination: ", "relative"), "{p:?}");
    assert!(has(&p, "stop: ", "empty"), "{p:?}");
    assert!(has(&p, "check.script: ", "empty"), "{p:?}");
    assert!(has(&p, "check.timeout: ", "1..="), "{p:?}");
    assert!(has(&p, "check.colour: ", "unknown key"), "{p:?}");
    assert_eq!(p.len(), 6, "{p:?}");
}

#[test]
fn yaml_forms_are_validated_the_same_way() {
    let text = "destination: /srv/app\nfile_exists_behavior: REPLACE\nstart:\n  script: ./run\n  runas: 'bad user'\n";
    let p = problems(text, FormSyntax::Yaml);
    assert!(has(&p, "file_exists_behavior: ", "OVERWRITE"), "{p:?}");
    assert!(has(&p, "start.runas: ", "user name"), "{p:?}");
    assert_eq!(p.len(), 2, "{p:?}");
    let missing = problems("start: ./run\n", FormSyntax::Guess);
    assert!(has(&missing, "destination: ", "required"), "{missing:?}");
    let dotdot = problems("destination = \"/srv/../etc\"\n", FormSyntax::Guess);
    assert!(has(&dotdot, "destination: ", "`..`"), "{dotdot:?}");
}

#[test]
fn a_form_is_the_appspec_of_its_scripts_and_round_trips_as_json() -> TestResult {
    let text = r#"
destination = "/srv/app"
file_exists_behavior = "OVERWRITE"
stop = "./stop.sh"
start = { script = "./start.sh", timeout = 30, runas = "root" }
check = "curl -f localhost"
"#;
    let f = form::parse(text, FormSyntax::Toml, "t")?;
    let spec = f.to_appspec();
    assert_eq!(spec.files.len(), 1);
    assert_eq!(spec.files[0].source, "");
    assert_eq!(spec.files[0].destination, Path::new("/srv/app"));
    assert_eq!(
        spec.file_exists_behavior,
        Some(FileExistsBehavior::Overwrite)
    );
    let events: Vec<LifecycleEvent> = spec.hooks.keys().copied().collect();
    assert_eq!(
        events,
        [
            LifecycleEvent::ApplicationStop,
            LifecycleEvent::ApplicationStart,
            LifecycleEvent::ValidateService
        ]
    );
    let start = &spec.hooks_for(LifecycleEvent::ApplicationStart)[0];
    assert_eq!(start.timeout_secs, 30);
    assert_eq!(start.runas.as_deref(), Some("root"));
    let back = form::from_json(&f.to_json(), "json")?;
    assert_eq!(back, f);
    Ok(())
}

/// A form's canonical JSON saved as `form.json` loads back as the same form, whatever its scripts hold. It was read
/// as YAML, which refuses DEL and C1 control characters that JSON strings carry raw (and folds U+2028), so a form
/// with one could not be loaded from its own JSON (found by the `form` fuzz oracle; input kept in
/// `fuzz/regressions/form/`).
#[test]
fn a_forms_canonical_json_file_loads_back_whatever_its_scripts_hold() -> TestResult {
    let text = "destination = \"/srv\"\nstart = \"a\\u2028b\\u007fc\\u0085d\"\n";
    let f = form::parse(text, FormSyntax::Toml, "t")?;
    assert_eq!(
        f.start.as_ref().map(|s| s.script.as_str()),
        Some("a\u{2028}b\u{7f}c\u{85}d")
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("form.json");
    std::fs::write(&path, f.to_json())?;
    assert_eq!(FormSyntax::from_path(&path), FormSyntax::Json);
    assert_eq!(form::load(&path)?, f);
    // YAML files are still YAML.
    assert_eq!(
        FormSyntax::from_path(Path::new("form.yml")),
        FormSyntax::Yaml
    );
    Ok(())
}

/// A plain `.tar.gz` (no appspec.yml) holding `payload.txt` = `version`.
fn plain_archive(path: &Path, version: &str) -> TestResult {
    let file = std::fs::File::create(path)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let body = format!("{version}\n");
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "payload.txt", body.as_bytes())?;
    tar.into_inner()?.finish()?;
    Ok(())
}

/// A form whose scripts append `<version> <step> <payload in cwd>` to `log`.
fn logging_form(dest: &Path, log: &Path, version: &str) -> Result<Form, FormError> {
    let line = |step: &str| {
        format!(
            "echo \"{version} {step} $(cat payload.txt)\" >> '{}'",
            log.display()
        )
    };
    let text = format!(
        "destination = '{}'\nstop = '''{}\n'''\nstart = '''{}\n'''\ncheck = '''#!/bin/sh\n{}\n'''\n",
        dest.display(),
        line("stop"),
        line("start"),
        line("check"),
    );
    form::parse(&text, FormSyntax::Toml, "test form")
}

fn spec(id: &str, bundle: &Path, form: Option<Form>) -> DeploymentSpec {
    DeploymentSpec {
        application: "app".into(),
        group: "web".into(),
        group_id: "web".into(),
        deployment_id: id.into(),
        source: Source::Archive(bundle.to_owned()),
        expected_sha256: None,
        file_exists_behavior: FileExistsBehavior::Disallow,
        limits: UnpackLimits::default(),
        form,
        signature: None,
        overrides: Default::default(),
    }
}

#[tokio::test]
async fn a_plain_archive_deploys_with_a_form_in_the_seed_order() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dest, log) = (tmp.path().join("srv"), tmp.path().join("events.log"));
    let host = HostConfig::new(tmp.path().join("root"));
    for (id, version) in [("d1", "v1"), ("d2", "v2")] {
        let bundle = tmp.path().join(format!("{version}.tar.gz"));
        plain_archive(&bundle, version)?;
        let form = logging_form(&dest, &log, version)?;
        let dep = HostDeployment::new(&host, spec(id, &bundle, Some(form)))?;
        for event in rollcage_proto::plan(rollcage_proto::wire::DeploymentStyle::InPlace, false)
            .agent_steps()
        {
            let r = dep.run_step(event).await;
            assert_ne!(r.status, StepOutcome::Failed, "{event}: {}", r.message);
        }
        assert_eq!(
            std::fs::read_to_string(dest.join("payload.txt"))?,
            format!("{version}\n")
        );
    }
    let lines = std::fs::read_to_string(&log)?;
    // First deployment: no stop (nothing installed yet). Second: v1's stop (run in v1's revision), then v2.
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [
            "v1 start v1",
            "v1 check v1",
            "v1 stop v1",
            "v2 start v2",
            "v2 check v2"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_package_with_neither_appspec_nor_form_fails_download_naming_both_fixes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let bundle = tmp.path().join("plain.tar.gz");
    plain_archive(&bundle, "v1")?;
    let host = HostConfig::new(tmp.path().join("root"));
    let dep = HostDeployment::new(&host, spec("d1", &bundle, None))?;
    let r = dep.run_step(LifecycleEvent::DownloadBundle).await;
    assert_eq!(r.status, StepOutcome::Failed, "{}", r.message);
    assert!(r.message.starts_with("DownloadBundle:"), "{}", r.message);
    assert!(r.message.contains("add an appspec.yml"), "{}", r.message);
    assert!(r.message.contains("--form"), "{}", r.message);
    Ok(())
}

#[tokio::test]
async fn the_form_wins_over_the_packages_appspec_and_the_report_says_so() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let rev = tmp.path().join("rev");
    std::fs::create_dir_all(&rev)?;
    std::fs::write(rev.join("payload.txt"), "dir\n")?;
    // An AppSpec that would fail: its hook does not exist. The form must be used instead.
    std::fs::write(
        rev.join("appspec.yml"),
        "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: missing.sh\n",
    )?;
    let (dest, log) = (tmp.path().join("srv"), tmp.path().join("events.log"));
    let host = HostConfig::new(tmp.path().join("root"));
    let mut s = spec("d1", &rev, Some(logging_form(&dest, &log, "f")?));
    s.source = Source::Directory(rev.clone());
    let dep = HostDeployment::new(&host, s)?;
    let download = dep.run_step(LifecycleEvent::DownloadBundle).await;
    assert_eq!(
        download.status,
        StepOutcome::Succeeded,
        "{}",
        download.message
    );
    assert!(
        download.message.contains("appspec.yml is ignored"),
        "{}",
        download.message
    );
    for event in [LifecycleEvent::Install, LifecycleEvent::ApplicationStart] {
        let r = dep.run_step(event).await;
        assert_eq!(r.status, StepOutcome::Succeeded, "{event}: {}", r.message);
    }
    assert_eq!(std::fs::read_to_string(&log)?, "f start dir\n");
    Ok(())
}
