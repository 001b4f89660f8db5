//! Shared fixtures of the install integration tests: a temp dir holding the agent root, revisions and the
//! destinations (absolute paths inside the temp dir).

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use rollcage_runtime::appspec::{
    AppSpec, FileExistsBehavior, FileMapping, ObjectTypes, Permission,
};
use rollcage_runtime::install::{
    InstallError, InstallOptions, InstallReport, InstallRequest, install_with,
};
use rollcage_runtime::layout::GroupLayout;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Any error of a test.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A temp dir with an agent root, revisions and a destination area.
pub struct Fixture {
    /// Keeps everything alive.
    pub tmp: tempfile::TempDir,
    /// The group layout under `tmp/root`.
    pub group: GroupLayout,
    /// `tmp/dest`, where destinations live.
    pub dest: PathBuf,
    /// Options used by [`Fixture::install`] (tool search path).
    pub options: InstallOptions,
}

impl Fixture {
    /// A fresh fixture with an existing, empty `dest`.
    pub fn new() -> std::io::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let group = GroupLayout::new(&tmp.path().join("root"), "web", "prod")
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest)?;
        Ok(Self {
            tmp,
            group,
            dest,
            options: InstallOptions::default(),
        })
    }

    /// A revision `tmp/rev-NAME` holding `files` (path → content; parents created). Paths ending in `/` are
    /// empty directories.
    pub fn revision(&self, name: &str, files: &[(&str, &str)]) -> std::io::Result<PathBuf> {
        let rev = self.tmp.path().join(format!("rev-{name}"));
        fs::create_dir_all(&rev)?;
        for (path, content) in files {
            let p = rev.join(path);
            if path.ends_with('/') {
                fs::create_dir_all(&p)?;
                continue;
            }
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&p, content)?;
        }
        Ok(rev)
    }

    /// Install `spec` from `revision` as deployment `deploy`, default behaviour DISALLOW.
    pub fn install(
        &self,
        spec: &AppSpec,
        revision: &Path,
        deploy: &str,
    ) -> Result<InstallReport, InstallError> {
        self.install_default(spec, revision, deploy, FileExistsBehavior::Disallow)
    }

    /// Install with a given default behaviour.
    pub fn install_default(
        &self,
        spec: &AppSpec,
        revision: &Path,
        deploy: &str,
        default_behavior: FileExistsBehavior,
    ) -> Result<InstallReport, InstallError> {
        let req = InstallRequest {
            spec,
            revision_dir: revision,
            group: &self.group,
            deployment_id: deploy,
            default_behavior,
        };
        install_with(&req, &self.options)
    }

    /// A path under `dest`.
    pub fn d(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }
}

/// An AppSpec copying each `(source, destination)`.
pub fn spec(files: &[(&str, &Path)]) -> AppSpec {
    AppSpec {
        files: files
            .iter()
            .map(|(s, d)| FileMapping {
                source: (*s).to_owned(),
                destination: d.to_path_buf(),
            })
            .collect(),
        ..AppSpec::default()
    }
}

/// A permission entry on `object` with pattern `**` and nothing set.
pub fn permission(object: &Path) -> Permission {
    Permission {
        object: object.to_path_buf(),
        pattern: "**".into(),
        except: vec![],
        types: ObjectTypes::default(),
        owner: None,
        group: None,
        mode: None,
        acls: None,
        context: None,
    }
}

/// The permission bits of `path` (without following a symlink).
pub fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

/// Does anything exist at `path` (a dangling symlink counts)?
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Names in `dir` that look like staging files.
pub fn staging_leftovers(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rollcage-tmp") {
            out.push(name);
        }
    }
    Ok(out)
}

/// Write an executable shell script at `dir/name`.
pub fn script(dir: &Path, name: &str, body: &str) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n"))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
    Ok(p)
}
