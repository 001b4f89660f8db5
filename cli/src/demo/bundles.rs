//! The demo's revisions: the example bundle `hooks-examples/demo-web` (embedded, so the demo needs no checkout)
//! written to the temp dir once per version, each with its own `release.env` (version, the instance whose
//! ValidateService fails, the app's answer delay, the share of requests it answers with a 500).

use super::plan::Faults;
use anyhow::Context as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// The bundle's files: (path, contents, executable). `release.env` is generated per revision.
const FILES: [(&str, &str, bool); 4] = [
    (
        "appspec.yml",
        include_str!("../../../hooks-examples/demo-web/appspec.yml"),
        false,
    ),
    (
        "scripts/stop.sh",
        include_str!("../../../hooks-examples/demo-web/scripts/stop.sh"),
        true,
    ),
    (
        "scripts/start.sh",
        include_str!("../../../hooks-examples/demo-web/scripts/start.sh"),
        true,
    ),
    (
        "scripts/validate.sh",
        include_str!("../../../hooks-examples/demo-web/scripts/validate.sh"),
        true,
    ),
];

/// How long the app holds each answer: long enough that requests are in flight while an instance drains, short
/// enough that two load workers send plenty of requests.
pub const APP_DELAY_MS: u64 = 50;

/// The `release.env` of a revision.
pub fn release_env(version: &str, faults: Faults) -> String {
    format!(
        "# Written by `rollcage demo` for this revision; sourced by the hooks.\n\
         VERSION={version}\n\
         FAIL_ON={}\n\
         DELAY_MS={APP_DELAY_MS}\n\
         FAIL_PERCENT={}\n",
        faults.fail_on.unwrap_or(""),
        faults.fail_percent
    )
}

/// Write the revision `version` into `dir`.
pub fn write_revision(dir: &Path, version: &str, faults: Faults) -> anyhow::Result<()> {
    let files = FILES
        .iter()
        .map(|(p, t, x)| (*p, (*t).to_owned(), *x))
        .chain([("release.env", release_env(version, faults), false)]);
    for (rel, text, exec) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_env_names_the_version_and_the_failing_instance() {
        let env = release_env(
            "v4",
            Faults {
                fail_on: Some("i2"),
                fail_percent: 0,
            },
        );
        assert!(env.contains("\nVERSION=v4\n"), "{env}");
        assert!(env.contains("\nFAIL_ON=i2\n"), "{env}");
        assert!(env.contains("\nFAIL_PERCENT=0\n"), "{env}");
        assert!(release_env("v1", Faults::default()).contains("\nFAIL_ON=\n"));
        let bad = release_env(
            "v5",
            Faults {
                fail_on: None,
                fail_percent: 30,
            },
        );
        assert!(bad.contains("\nFAIL_PERCENT=30\n"), "{bad}");
    }

    #[test]
    fn a_revision_has_the_example_hooks_executable() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        write_revision(dir.path(), "v2", Faults::default())?;
        let spec = std::fs::read_to_string(dir.path().join("appspec.yml"))?;
        for script in ["stop.sh", "start.sh", "validate.sh"] {
            assert!(spec.contains(&format!("scripts/{script}")), "{script}");
            let mode = std::fs::metadata(dir.path().join("scripts").join(script))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "{script} is executable");
        }
        let env = std::fs::read_to_string(dir.path().join("release.env"))?;
        assert!(env.contains("VERSION=v2"));
        Ok(())
    }
}
