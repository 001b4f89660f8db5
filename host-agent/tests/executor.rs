//! The real executor against a small HTTP server that serves one archive and counts its downloads: each revision's
//! archive is on the host once (in the bundle store, which the deployment dir refers to), a rollback takes it from
//! there or downloads it again when the store lost it, and an archive altered in the store is refused and dropped.

use rollcage_agent::executor::{RuntimeExecutor, StepExecutor};
use rollcage_client::Client;
use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::{RevisionLocation, RevisionRef, StepCommand, StepOutcome, StepReport};
use rollcage_runtime::layout::GroupLayout;
use rollcage_runtime::lifecycle::HostConfig;
use rollcage_runtime::package::BundleStore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A plain tar revision with an empty AppSpec and a file naming `label`.
fn archive(label: &str) -> Result<Vec<u8>, std::io::Error> {
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
    tar.into_inner()
}

/// Serves `body` for every GET on loopback; counts the requests.
async fn serve(body: Vec<u8>) -> Result<(String, Arc<AtomicUsize>), std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicUsize::new(0));
    let served = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                served.fetch_add(1, Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok((format!("http://{addr}"), count))
}

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: Vec<u8>,
    sha: String,
    base: String,
    downloads: Arc<AtomicUsize>,
    exec: RuntimeExecutor,
}

async fn env() -> Result<Env, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    let data = archive("v1")?;
    let sha = hex::encode(Sha256::digest(&data));
    let (base, downloads) = serve(data.clone()).await?;
    let client = Client::new(&base, Some("agent-token".into()), None)?;
    let exec = RuntimeExecutor::new(HostConfig::new(&root), client);
    Ok(Env {
        _tmp: tmp,
        root,
        data,
        sha,
        base,
        downloads,
        exec,
    })
}

impl Env {
    fn command(&self, deployment: &str, event: LifecycleEvent, rollback: bool) -> StepCommand {
        StepCommand {
            command_id: 1,
            deployment_id: deployment.into(),
            application: "web".into(),
            group: "prod".into(),
            group_id: "prod".into(),
            event,
            revision: RevisionRef {
                id: "r-1".into(),
                sha256: self.sha.clone(),
                location: RevisionLocation::Coordinator,
                signature: None,
                size: None,
            },
            rollback,
            form: None,
            overrides: Default::default(),
        }
    }

    async fn run(&self, cmd: &StepCommand) -> StepReport {
        self.exec.run(cmd).await
    }

    fn stored(&self) -> Result<PathBuf, String> {
        BundleStore::at_root(&self.root)
            .path(&self.sha)
            .ok_or_else(|| "bad sha".to_owned())
    }

    fn downloads(&self) -> usize {
        self.downloads.load(Ordering::SeqCst)
    }

    fn deploy_dir(&self, id: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
        Ok(GroupLayout::new(&self.root, "web", "prod")?
            .deployment(id)?
            .dir()
            .to_owned())
    }
}

fn succeeded(r: &StepReport) -> bool {
    r.outcome == StepOutcome::Succeeded
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
async fn a_deployment_leaves_exactly_one_copy_of_the_archive() -> TestResult {
    let env = env().await?;
    let r = env
        .run(&env.command("d1", LifecycleEvent::DownloadBundle, false))
        .await;
    assert!(succeeded(&r), "{}", r.message);
    assert!(
        r.message.starts_with("revision downloaded;"),
        "{}",
        r.message
    );
    assert_eq!(env.downloads(), 1);
    assert_eq!(copies_of(&env.root, &env.data)?, vec![env.stored()?]);
    let dir = env.deploy_dir("d1")?;
    assert!(!dir.join("bundle").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("bundle.sha256"))?.trim(),
        env.sha
    );
    // The next steps run from the unpacked revision: nothing is fetched again.
    let r = env
        .run(&env.command("d1", LifecycleEvent::BeforeInstall, false))
        .await;
    assert_eq!(r.outcome, StepOutcome::Skipped, "{}", r.message);
    assert_eq!(env.downloads(), 1);
    Ok(())
}

#[tokio::test]
async fn a_rollback_takes_the_store_copy_or_downloads_again_without_it() -> TestResult {
    let env = env().await?;
    let r = env
        .run(&env.command("d1", LifecycleEvent::DownloadBundle, false))
        .await;
    assert!(succeeded(&r), "{}", r.message);

    // A rollback has no DownloadBundle: its first step that runs the revision fetches it, from the store.
    let r = env
        .run(&env.command("d2", LifecycleEvent::BeforeInstall, true))
        .await;
    assert_eq!(r.outcome, StepOutcome::Skipped, "{}", r.message);
    assert!(
        r.message
            .starts_with("revision taken from the host cache and unpacked;"),
        "{}",
        r.message
    );
    assert_eq!(env.downloads(), 1);
    assert_eq!(copies_of(&env.root, &env.data)?.len(), 1);

    // The store lost it: downloaded again.
    std::fs::remove_file(env.stored()?)?;
    let r = env
        .run(&env.command("d3", LifecycleEvent::BeforeInstall, true))
        .await;
    assert_eq!(r.outcome, StepOutcome::Skipped, "{}", r.message);
    assert!(
        r.message.starts_with("revision downloaded and unpacked;"),
        "{}",
        r.message
    );
    assert_eq!(env.downloads(), 2);
    assert_eq!(copies_of(&env.root, &env.data)?, vec![env.stored()?]);
    Ok(())
}

#[tokio::test]
async fn an_archive_altered_in_the_store_is_refused_then_downloaded_again() -> TestResult {
    let env = env().await?;
    let r = env
        .run(&env.command("d1", LifecycleEvent::DownloadBundle, false))
        .await;
    assert!(succeeded(&r), "{}", r.message);
    // Same size, other content: only hashing the reused file can tell.
    let tampered = archive("v2")?;
    assert_eq!(tampered.len(), env.data.len());
    std::fs::write(env.stored()?, &tampered)?;

    let r = env
        .run(&env.command("d2", LifecycleEvent::DownloadBundle, false))
        .await;
    assert_eq!(r.outcome, StepOutcome::Failed, "{}", r.message);
    assert!(r.message.contains("sha256"), "{}", r.message);
    assert!(!env.stored()?.exists(), "altered archive kept");
    assert!(!env.deploy_dir("d2")?.exists());

    // The coordinator's next attempt downloads it again.
    let r = env
        .run(&env.command("d2", LifecycleEvent::DownloadBundle, false))
        .await;
    assert!(succeeded(&r), "{}", r.message);
    assert_eq!(env.downloads(), 2);
    let label = env.deploy_dir("d2")?.join("revision/label.txt");
    assert_eq!(std::fs::read_to_string(label)?, "v1\n");
    Ok(())
}

#[tokio::test]
async fn a_url_revision_is_fetched_once_into_the_store() -> TestResult {
    let env = env().await?;
    let with_url = |id: &str, event, rollback| {
        let mut cmd = env.command(id, event, rollback);
        cmd.revision.location = RevisionLocation::Url {
            url: format!("{}/v1.tar", env.base),
        };
        cmd
    };
    let r = env
        .run(&with_url("d1", LifecycleEvent::DownloadBundle, false))
        .await;
    assert!(succeeded(&r), "{}", r.message);
    assert_eq!(env.downloads(), 1);
    assert_eq!(copies_of(&env.root, &env.data)?, vec![env.stored()?]);

    let r = env
        .run(&with_url("d2", LifecycleEvent::BeforeInstall, true))
        .await;
    assert_eq!(r.outcome, StepOutcome::Skipped, "{}", r.message);
    assert!(
        r.message.starts_with("revision taken from the host cache"),
        "{}",
        r.message
    );
    assert_eq!(env.downloads(), 1);
    Ok(())
}
