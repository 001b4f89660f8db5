//! A form as the internal plan: the [`AppSpec`] it stands for, and its scripts written into the deployment dir.

use super::{Form, FormScriptEvent};
use crate::appspec::{AppSpec, DEFAULT_HOOK_TIMEOUT_SECS, FileMapping, HookSpec};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// The form's canonical JSON inside its form dir.
pub const FORM_FILE: &str = "form.json";

/// A form as the AppSpec it stands for (the form type lives in `rollcage_proto`, the AppSpec here).
pub trait ToAppSpec {
    /// The AppSpec this form stands for: the whole revision copied to `destination`, and one shell hook per
    /// script whose location is `<Event>.sh`, relative to the form dir [`write_form_dir`] fills.
    fn to_appspec(&self) -> AppSpec;
}

impl ToAppSpec for Form {
    fn to_appspec(&self) -> AppSpec {
        let mut spec = AppSpec {
            files: vec![FileMapping {
                source: String::new(),
                destination: self.destination.clone(),
            }],
            file_exists_behavior: self.file_exists_behavior,
            ..AppSpec::default()
        };
        for field in FormScriptEvent::ALL {
            if let Some(s) = self.script(field.key) {
                spec.hooks.insert(
                    field.event,
                    vec![HookSpec {
                        location: script_file_name(field),
                        timeout_secs: s.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT_SECS),
                        runas: s.runas.clone(),
                        sudo: false,
                        sandbox: None,
                    }],
                );
            }
        }
        spec
    }
}

fn script_file_name(field: FormScriptEvent) -> String {
    format!("{}.sh", field.event.name())
}

/// Write `form` (as `form.json`) and its scripts into `dir`, replacing what was there. Everything is staged in a
/// sibling temp dir and renamed into place, so `dir` is either absent, the old content or complete.
pub fn write_form_dir(form: &Form, dir: &Path) -> std::io::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| std::io::Error::other(format!("{} has no parent", dir.display())))?;
    // The deployment dir: private, like every deployment dir (`crate::layout`).
    crate::layout::ensure_private_dir(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".form-staging-")
        .tempdir_in(parent)?;
    write_file(
        &staging.path().join(FORM_FILE),
        form.to_json().as_bytes(),
        0o644,
    )?;
    for field in FormScriptEvent::ALL {
        if let Some(s) = form.script(field.key) {
            let mut body = s.script.clone();
            if !body.ends_with('\n') {
                body.push('\n');
            }
            write_file(
                &staging.path().join(script_file_name(field)),
                body.as_bytes(),
                0o755,
            )?;
        }
    }
    // The scripts must be readable by a `runas` user: the form dir itself is world-readable like a revision.
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dir).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staged);
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
