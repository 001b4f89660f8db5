//! The host's bundle store through the lifecycle, as the agent uses it: one copy of each archive on the host, and
//! retention that keeps `max_revisions` archives but never the current one nor one installed in any group.

use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::StepOutcome;
use rollcage_runtime::appspec::FileExistsBehavior;
use rollcage_runtime::lifecycle::{DeploymentSpec, HostConfig, HostDeployment};
use rollcage_runtime::package::{BundleStore, Source, UnpackLimits};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A tar.gz revision with an empty AppSpec and a file naming `label` (so every label has its own sha256).
fn archive(label: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("appspec.yml", "version: 0.0\nos: linux\n".to_owned()),
        ("label.txt", format!("{label}\n")),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data.as_bytes())?;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar.into_inner()?)?;
    Ok(gz.finish()?)
}

struct Host {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    config: HostConfig,
}

impl Host {
    fn new(max_revisions: usize) -> Result<Self, Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let src = tmp.path().join("src");
        std::fs::create_dir(&src)?;
        let mut config = HostConfig::new(tmp.path().join("root")).with_bundle_store();
        config.max_revisions = max_revisions;
        Ok(Self {
            _tmp: tmp,
            src,
            config,
        })
    }

    fn store(&self) -> BundleStore {
        BundleStore::at_root(&self.config.root)
    }

    /// Run `events` of deployment `id` of revision `label` in `group`; returns the archive's sha256.
    async fn deploy(
        &self,
        group: &str,
        id: &str,
        label: &str,
        events: &[LifecycleEvent],
    ) -> Result<String, Box<dyn std::error::Error>> {
        let data = archive(label)?;
        let sha = hex::encode(Sha256::digest(&data));
        let path = self.src.join(format!("{label}.tgz"));
        std::fs::write(&path, &data)?;
        let spec = DeploymentSpec {
            application: "web".into(),
            group: group.into(),
            group_id: group.into(),
            deployment_id: id.into(),
            source: Source::Archive(path),
            expected_sha256: Some(sha.clone()),
            file_exists_behavior: FileExistsBehavior::default(),
            limits: UnpackLimits::default(),
            form: None,
            signature: None,
            overrides: Default::default(),
        };
        let dep = HostDeployment::new(&self.config, spec)?;
        for event in events {
            let r = dep.run_step(*event).await;
            assert_eq!(r.status, StepOutcome::Succeeded, "{event}: {}", r.message);
        }
        Ok(sha)
    }
}

/// Every regular file under `dir` whose content is `data`.
fn copies_of(dir: &Path, data: &[u8]) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && std::fs::read(&path)? == data {
                found.push(path);
            }
        }
    }
    Ok(found)
}

#[tokio::test]
async fn a_deployment_leaves_one_copy_of_its_archive_on_the_host() -> TestResult {
    let host = Host::new(5)?;
    let sha = host
        .deploy("prod", "d1", "v1", &[LifecycleEvent::DownloadBundle])
        .await?;
    // A second deployment of the same revision reuses the stored archive.
    host.deploy("prod", "d2", "v1", &[LifecycleEvent::DownloadBundle])
        .await?;
    let stored = host.store().path(&sha).ok_or("bad sha")?;
    assert_eq!(
        copies_of(&host.config.root, &archive("v1")?)?,
        vec![stored],
        "expected the archive once, in the store"
    );
    for id in ["d1", "d2"] {
        let layout = rollcage_runtime::layout::GroupLayout::new(&host.config.root, "web", "prod")?
            .deployment(id)?;
        assert_eq!(layout.stored_bundle()?, Some(sha.clone()));
        assert!(layout.revision_dir().join("label.txt").is_file());
    }
    Ok(())
}

#[tokio::test]
async fn retention_keeps_the_current_and_every_installed_bundle() -> TestResult {
    use LifecycleEvent::{DownloadBundle, Install};
    let host = Host::new(2)?;
    // Installed in another group of this host: its archive must outlive any number of deployments elsewhere.
    let other = host
        .deploy("staging", "s1", "x", &[DownloadBundle, Install])
        .await?;
    let installed = host
        .deploy("prod", "d1", "v1", &[DownloadBundle, Install])
        .await?;
    let mut current = String::new();
    for (i, label) in ["v2", "v3", "v4"].iter().enumerate() {
        current = host
            .deploy("prod", &format!("d{}", i + 2), label, &[DownloadBundle])
            .await?;
    }
    let store = host.store();
    let mut kept: Vec<String> = std::fs::read_dir(store.dir())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    kept.sort();
    let mut expected = vec![other, installed, current];
    expected.sort();
    // Limit 2, but the current archive and the two installed ones are never removed; v2 and v3 are.
    assert_eq!(kept, expected);
    Ok(())
}
