//! Package pipeline from local sources: format detection by content, wrapper stripping, checksum verification,
//! one test per hostile archive kind (each asserting the error, that nothing exists outside the deployment dir and
//! that no staging dir is left), limits, setuid clearing, directory sources and retention.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup: a failure to build a fixture should panic loudly

use rollcage_runtime::layout::{DeployLayout, GroupLayout};
use rollcage_runtime::package::{
    BundleStore, FetchOptions, Fetched, PackageError, Source, UnpackLimits, fetch, prune,
};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tar::EntryType;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One archive entry, written with raw headers so hostile names survive.
enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Special(&'a str, EntryType),
}

fn raw_header(name: &str, ty: EntryType, size: u64, mode: u32, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        // Bypass `set_path`, which refuses `..` and absolute names.
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn tar_bytes(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(name, data, mode) => {
                b.append(
                    &raw_header(name, EntryType::Regular, data.len() as u64, *mode, None),
                    *data,
                )
                .unwrap();
            }
            E::Dir(name, mode) => b
                .append(
                    &raw_header(name, EntryType::Directory, 0, *mode, None),
                    &[][..],
                )
                .unwrap(),
            E::Sym(name, target) => {
                b.append(
                    &raw_header(name, EntryType::Symlink, 0, 0o777, Some(target)),
                    &[][..],
                )
                .unwrap();
            }
            E::Hard(name, target) => {
                b.append(
                    &raw_header(name, EntryType::Link, 0, 0o644, Some(target)),
                    &[][..],
                )
                .unwrap();
            }
            E::Special(name, ty) => b
                .append(&raw_header(name, *ty, 0, 0o644, None), &[][..])
                .unwrap(),
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Zip entries: (name, contents, unix mode including the file type bits).
fn zip_bytes(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        if mode & 0o170_000 == 0o120_000 {
            w.add_symlink(*name, std::str::from_utf8(data).unwrap(), opts)
                .unwrap();
        } else if name.ends_with('/') {
            w.add_directory(*name, opts).unwrap();
        } else {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
    }
    let mut bytes = w.finish().unwrap().into_inner();
    // The writer keeps only the permission bits; set the full unix mode (file type included) in every central
    // directory record, as a hostile archiver would.
    let eocd = bytes.len() - 22;
    assert_eq!(&bytes[eocd..eocd + 4], b"PK\x05\x06");
    let mut pos = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    for (_, _, mode) in entries {
        assert_eq!(&bytes[pos..pos + 4], b"PK\x01\x02");
        bytes[pos + 5] = 3; // made by: Unix
        bytes[pos + 38..pos + 42].copy_from_slice(&(mode << 16).to_le_bytes());
        let len =
            |at: usize| usize::from(u16::from_le_bytes([bytes[pos + at], bytes[pos + at + 1]]));
        pos += 46 + len(28) + len(30) + len(32);
    }
    bytes
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A scratch area: `src/` for bundles, `root/` for the agent root, `outside/` which must stay empty.
struct Env {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    group: GroupLayout,
    deploy: DeployLayout,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_owned();
        let (src, root, outside) = (base.join("src"), base.join("root"), base.join("outside"));
        for d in [&src, &root, &outside] {
            std::fs::create_dir(d).unwrap();
        }
        let group = GroupLayout::new(&root, "web", "prod").unwrap();
        let deploy = group.deployment("d-1").unwrap();
        Self {
            _tmp: tmp,
            src,
            root,
            outside,
            group,
            deploy,
        }
    }

    fn write_bundle(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.src.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    async fn fetch_bytes(
        &self,
        name: &str,
        data: &[u8],
        opts: &FetchOptions,
    ) -> Result<Fetched, PackageError> {
        let path = self.write_bundle(name, data);
        fetch(&Source::Archive(path), &self.deploy, opts).await
    }

    /// After a failed fetch into a fresh root: no deployment dir, nothing but (empty) group dirs under the root, and
    /// nothing outside.
    fn assert_nothing_left(&self) {
        assert!(!self.deploy.dir().exists(), "deployment dir left behind");
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let ft = e.file_type().unwrap();
                assert!(
                    ft.is_dir(),
                    "left behind under the root: {}",
                    e.path().display()
                );
                stack.push(e.path());
            }
        }
        let outside: Vec<_> = std::fs::read_dir(&self.outside).unwrap().collect();
        assert!(
            outside.is_empty(),
            "something was written outside: {outside:?}"
        );
    }

    fn revision(&self, rel: &str) -> PathBuf {
        self.deploy.revision_dir().join(rel)
    }

    /// The agent's bundle store under this root.
    fn store(&self) -> BundleStore {
        BundleStore::at_root(&self.root)
    }

    /// Options that keep the archive in the store, as the agent's do.
    fn stored_opts(&self, expected_sha256: Option<String>) -> FetchOptions {
        FetchOptions {
            expected_sha256,
            store: Some(self.store()),
            ..opts()
        }
    }
}

fn opts() -> FetchOptions {
    FetchOptions::default()
}

/// Every file under `dir` whose content is `data`.
fn copies_of(dir: &Path, data: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && std::fs::read(&path).unwrap() == data {
                found.push(path);
            }
        }
    }
    found
}

async fn hostile_tar(env: &Env, entries: &[E<'_>]) -> PackageError {
    let err = env
        .fetch_bytes("hostile.tar", &tar_bytes(entries), &opts())
        .await
        .expect_err("hostile archive accepted");
    env.assert_nothing_left();
    err
}

fn outside_str(env: &Env) -> String {
    env.outside.display().to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// Formats, layout, verification.

#[tokio::test]
async fn tar_gz_is_detected_by_content_and_laid_out() -> TestResult {
    let env = Env::new();
    let data = gzip(&tar_bytes(&[
        E::Dir("scripts/", 0o755),
        E::File("appspec.yml", b"version: 0.0\n", 0o644),
        E::File("scripts/start.sh", b"#!/bin/sh\n", 0o755),
    ]));
    // Named like a zip: the name must not matter.
    let fetched = env
        .fetch_bytes("bundle.zip", &data, &env.stored_opts(Some(sha256(&data))))
        .await?;
    assert_eq!(fetched.sha256.as_deref(), Some(sha256(&data).as_str()));
    assert_eq!(fetched.bytes, data.len() as u64);
    assert_eq!(fetched.entries, 3);
    assert_eq!(
        std::fs::read(env.revision("appspec.yml"))?,
        b"version: 0.0\n"
    );
    assert_eq!(
        std::fs::metadata(env.revision("scripts/start.sh"))?
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    // The archive is kept once, in the store, and the deployment dir refers to it.
    let stored = env.store().path(&sha256(&data)).ok_or("bad sha")?;
    assert_eq!(std::fs::read(&stored)?, data);
    assert_eq!(env.deploy.stored_bundle()?, Some(sha256(&data)));
    assert_eq!(copies_of(&env.root, &data), vec![stored]);
    assert!(env.deploy.logs_dir().is_dir());
    let names: Vec<_> = std::fs::read_dir(env.deploy.dir())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        names.len(),
        3,
        "only bundle.sha256, revision and logs expected: {names:?}"
    );
    Ok(())
}

#[tokio::test]
async fn without_a_store_no_copy_of_the_archive_is_kept() -> TestResult {
    let env = Env::new();
    for (name, data) in [
        (
            "b.tgz",
            gzip(&tar_bytes(&[E::File("appspec.yml", b"a", 0o644)])),
        ),
        ("b.zip", zip_bytes(&[("appspec.yml", b"a", 0o100_644)])),
    ] {
        env.fetch_bytes(name, &data, &opts()).await?;
        assert!(env.revision("appspec.yml").is_file());
        assert!(copies_of(&env.root, &data).is_empty(), "{name} copied");
        assert_eq!(env.deploy.stored_bundle()?, None);
    }
    Ok(())
}

#[tokio::test]
async fn a_stored_archive_verified_by_its_caller_is_not_hashed_again() -> TestResult {
    let env = Env::new();
    let data = gzip(&tar_bytes(&[E::File("appspec.yml", b"a", 0o644)]));
    // Stored under a name that is not its sha256: only an archive that is not hashed can pass.
    let name = "ab".repeat(32);
    let store = env.store();
    store.create()?;
    std::fs::write(store.path(&name).ok_or("bad sha")?, &data)?;
    let source = Source::Stored {
        sha256: name.clone(),
        verified: true,
    };
    let fetched = fetch(&source, &env.deploy, &env.stored_opts(Some(name.clone()))).await?;
    assert_eq!(fetched.sha256.as_deref(), Some(name.as_str()));
    assert_eq!(fetched.bytes, data.len() as u64);
    assert!(env.revision("appspec.yml").is_file());
    assert_eq!(env.deploy.stored_bundle()?, Some(name.clone()));
    // Read in place: still one copy.
    assert_eq!(copies_of(&env.root, &data).len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_reused_stored_archive_is_verified_and_dropped_when_altered() -> TestResult {
    let env = Env::new();
    let data = zip_bytes(&[("appspec.yml", b"a", 0o100_644)]);
    let sha = sha256(&data);
    let store = env.store();
    store.create()?;
    let path = store.path(&sha).ok_or("bad sha")?;
    let reused = Source::Stored {
        sha256: sha.clone(),
        verified: false,
    };
    // Intact: unpacked from the store (a zip, read back from the stored file).
    std::fs::write(&path, &data)?;
    fetch(&reused, &env.deploy, &env.stored_opts(Some(sha.clone()))).await?;
    assert!(env.revision("appspec.yml").is_file());
    assert_eq!(copies_of(&env.root, &data), vec![path.clone()]);

    // Altered on disk since it was stored: refused, and removed so that the next fetch downloads it again.
    let other = env.group.deployment("d-2")?;
    let tampered = zip_bytes(&[("appspec.yml", b"evil", 0o100_644)]);
    std::fs::write(&path, &tampered)?;
    let err = fetch(&reused, &other, &env.stored_opts(Some(sha.clone())))
        .await
        .expect_err("altered stored bundle accepted");
    match &err {
        PackageError::StoredMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &sha);
            assert_eq!(actual, &sha256(&tampered));
        }
        other => panic!("expected StoredMismatch, got {other}"),
    }
    assert!(!path.exists(), "altered bundle kept in the store");
    assert!(!other.dir().exists());
    Ok(())
}

#[tokio::test]
async fn a_mismatch_leaves_nothing_in_the_store() -> TestResult {
    let env = Env::new();
    for (name, data) in [
        (
            "b.tgz",
            gzip(&tar_bytes(&[E::File("appspec.yml", b"a", 0o644)])),
        ),
        ("b.zip", zip_bytes(&[("appspec.yml", b"a", 0o100_644)])),
    ] {
        let err = env
            .fetch_bytes(name, &data, &env.stored_opts(Some("0".repeat(64))))
            .await
            .expect_err("mismatch accepted");
        assert!(
            matches!(err, PackageError::ChecksumMismatch { .. }),
            "{err}"
        );
        env.assert_nothing_left();
    }
    Ok(())
}

#[tokio::test]
async fn plain_tar_is_detected_by_content() -> TestResult {
    let env = Env::new();
    let data = tar_bytes(&[
        E::File("appspec.yml", b"a", 0o600),
        E::File("x/y.txt", b"y", 0o640),
    ]);
    env.fetch_bytes("bundle.tgz", &data, &opts()).await?;
    assert_eq!(std::fs::read(env.revision("x/y.txt"))?, b"y");
    assert_eq!(
        std::fs::metadata(env.revision("appspec.yml"))?
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    Ok(())
}

#[tokio::test]
async fn zip_is_detected_by_content_with_modes_and_inside_symlinks() -> TestResult {
    let env = Env::new();
    let data = zip_bytes(&[
        ("appspec.yml", b"version: 0.0\n", 0o100_644),
        ("bin/", b"", 0o040_755),
        ("bin/run", b"#!/bin/sh\n", 0o100_750),
        ("run-link", b"bin/run", 0o120_777),
    ]);
    let fetched = env
        .fetch_bytes(
            "bundle.tar.gz",
            &data,
            &FetchOptions {
                expected_sha256: Some(sha256(&data)),
                ..opts()
            },
        )
        .await?;
    assert_eq!(fetched.entries, 4);
    assert_eq!(
        std::fs::metadata(env.revision("bin/run"))?
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::read_link(env.revision("run-link"))?,
        Path::new("bin/run")
    );
    assert_eq!(std::fs::read(env.revision("run-link"))?, b"#!/bin/sh\n");
    Ok(())
}

#[tokio::test]
async fn file_url_source() -> TestResult {
    let env = Env::new();
    let path = env.write_bundle("b", &tar_bytes(&[E::File("appspec.yml", b"a", 0o644)]));
    let url = url::Url::from_file_path(&path).map_err(|()| "bad path")?;
    fetch(&Source::Url(url), &env.deploy, &opts()).await?;
    assert!(env.revision("appspec.yml").is_file());
    Ok(())
}

#[tokio::test]
async fn unknown_format_is_refused() -> TestResult {
    let env = Env::new();
    let err = env
        .fetch_bytes("bundle.tar", b"#!/bin/sh\necho not an archive\n", &opts())
        .await
        .expect_err("accepted");
    assert!(matches!(err, PackageError::UnknownFormat { .. }), "{err}");
    env.assert_nothing_left();
    Ok(())
}

#[tokio::test]
async fn wrapper_directory_is_stripped_like_codedeploy() -> TestResult {
    let env = Env::new();
    let data = gzip(&tar_bytes(&[
        E::Dir("myapp-1.2/", 0o755),
        E::File("myapp-1.2/AppSpec.yml", b"version: 0.0\n", 0o644),
        E::File("myapp-1.2/scripts/a.sh", b"x", 0o755),
        E::Sym("myapp-1.2/link", "scripts/a.sh"),
    ]));
    env.fetch_bytes("b", &data, &opts()).await?;
    assert!(env.revision("AppSpec.yml").is_file());
    assert!(env.revision("scripts/a.sh").is_file());
    assert_eq!(std::fs::read(env.revision("link"))?, b"x");
    assert!(!env.revision("myapp-1.2").exists());
    Ok(())
}

#[tokio::test]
async fn single_directory_without_appspec_is_kept() -> TestResult {
    let env = Env::new();
    let data = tar_bytes(&[E::File("site/index.html", b"<p>", 0o644)]);
    env.fetch_bytes("b", &data, &opts()).await?;
    assert!(env.revision("site/index.html").is_file());
    Ok(())
}

#[tokio::test]
async fn link_escaping_only_after_wrapper_stripping_is_refused() -> TestResult {
    let env = Env::new();
    // Inside the archive root, but once `w/` becomes the revision, `../bundle` points into the deployment dir.
    let data = tar_bytes(&[
        E::File("w/appspec.yml", b"a", 0o644),
        E::Sym("w/peek", "../bundle"),
    ]);
    let err = env
        .fetch_bytes("b", &data, &opts())
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::LinkEscapes { entry, .. } if entry == "w/peek"),
        "{err}"
    );
    env.assert_nothing_left();
    Ok(())
}

#[tokio::test]
async fn sha256_mismatch_leaves_nothing_behind() -> TestResult {
    let env = Env::new();
    let data = gzip(&tar_bytes(&[E::File("appspec.yml", b"a", 0o644)]));
    let wrong = "0".repeat(64);
    let err = env
        .fetch_bytes(
            "b.tgz",
            &data,
            &FetchOptions {
                expected_sha256: Some(wrong.clone()),
                ..opts()
            },
        )
        .await
        .expect_err("mismatch accepted");
    match &err {
        PackageError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256(&data));
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    env.assert_nothing_left();
    Ok(())
}

#[tokio::test]
async fn sha256_mismatch_on_zip_leaves_nothing_behind() -> TestResult {
    let env = Env::new();
    let data = zip_bytes(&[("appspec.yml", b"a", 0o100_644)]);
    let opts = FetchOptions {
        expected_sha256: Some("ab".repeat(32)),
        ..opts()
    };
    let err = env
        .fetch_bytes("b.zip", &data, &opts)
        .await
        .expect_err("mismatch accepted");
    assert!(
        matches!(err, PackageError::ChecksumMismatch { .. }),
        "{err}"
    );
    env.assert_nothing_left();
    Ok(())
}

#[tokio::test]
async fn failure_keeps_a_deployment_dir_it_did_not_create() -> TestResult {
    let env = Env::new();
    std::fs::create_dir_all(env.deploy.logs_dir())?;
    std::fs::write(env.deploy.scripts_log(), b"earlier\n")?;
    let opts = FetchOptions {
        expected_sha256: Some("ab".repeat(32)),
        ..opts()
    };
    let data = tar_bytes(&[E::File("appspec.yml", b"a", 0o644)]);
    env.fetch_bytes("b", &data, &opts)
        .await
        .expect_err("mismatch accepted");
    let names: Vec<_> = std::fs::read_dir(env.deploy.dir())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("logs")],
        "staging, bundle or revision left behind"
    );
    assert_eq!(std::fs::read(env.deploy.scripts_log())?, b"earlier\n");
    Ok(())
}

#[tokio::test]
async fn malformed_expected_sha256_is_refused_before_fetching() -> TestResult {
    let env = Env::new();
    let opts = FetchOptions {
        expected_sha256: Some("xyz".into()),
        ..opts()
    };
    let err = env
        .fetch_bytes("b", &tar_bytes(&[]), &opts)
        .await
        .expect_err("accepted");
    assert!(matches!(err, PackageError::InvalidChecksum { .. }), "{err}");
    env.assert_nothing_left();
    Ok(())
}

#[tokio::test]
async fn truncated_gzip_is_malformed() -> TestResult {
    let env = Env::new();
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let data = gzip(&tar_bytes(&[E::File("appspec.yml", &big, 0o644)]));
    let err = env
        .fetch_bytes("b", &data[..data.len() / 2], &opts())
        .await
        .expect_err("accepted");
    assert!(matches!(err, PackageError::Malformed { .. }), "{err}");
    env.assert_nothing_left();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Hostile archives: one test per kind.

#[tokio::test]
async fn absolute_path_is_refused() {
    let env = Env::new();
    let name = format!("{}/pwned", outside_str(&env));
    let err = hostile_tar(&env, &[E::File(&name, b"x", 0o644)]).await;
    assert!(
        matches!(&err, PackageError::AbsolutePath { entry } if *entry == name),
        "{err}"
    );
}

#[tokio::test]
async fn parent_traversal_is_refused() {
    let env = Env::new();
    let name = "a/../../../../../outside/pwned";
    let err = hostile_tar(&env, &[E::File(name, b"x", 0o644)]).await;
    assert!(
        matches!(&err, PackageError::ParentTraversal { entry } if entry == name),
        "{err}"
    );
}

#[tokio::test]
async fn absolute_symlink_then_write_through_it_is_refused() {
    let env = Env::new();
    let target = outside_str(&env);
    let err = hostile_tar(
        &env,
        &[E::Sym("a", &target), E::File("a/pwned", b"x", 0o644)],
    )
    .await;
    assert!(
        matches!(&err, PackageError::LinkEscapes { kind: "symlink", entry, .. } if entry == "a"),
        "{err}"
    );
}

#[tokio::test]
async fn relative_symlink_escaping_is_refused() {
    let env = Env::new();
    let err = hostile_tar(
        &env,
        &[E::Dir("d/", 0o755), E::Sym("d/up", "../../../../outside")],
    )
    .await;
    assert!(
        matches!(&err, PackageError::LinkEscapes { kind: "symlink", entry, .. } if entry == "d/up"),
        "{err}"
    );
}

#[tokio::test]
async fn symlink_escaping_through_a_later_symlink_is_refused() {
    let env = Env::new();
    // `e -> d/..` is the root while `d` is missing; once `d -> .` exists, the kernel resolves `e` above the root.
    let err = hostile_tar(&env, &[E::Sym("e", "d/.."), E::Sym("d", ".")]).await;
    assert!(
        matches!(&err, PackageError::LinkEscapes { kind: "symlink", entry, .. } if entry == "e"),
        "{err}"
    );
}

#[tokio::test]
async fn write_through_a_symlink_is_refused_even_inside() {
    let env = Env::new();
    let err = hostile_tar(
        &env,
        &[
            E::Dir("real/", 0o755),
            E::Sym("a", "real"),
            E::File("a/x", b"x", 0o644),
        ],
    )
    .await;
    assert!(
        matches!(&err, PackageError::ThroughSymlink { entry, link } if entry == "a/x" && link == "a"),
        "{err}"
    );
}

#[tokio::test]
async fn hardlink_outside_is_refused() {
    let env = Env::new();
    let target = format!("{}/victim", outside_str(&env));
    let err = hostile_tar(&env, &[E::Hard("h", &target)]).await;
    assert!(
        matches!(&err, PackageError::LinkEscapes { kind: "hardlink", entry, .. } if entry == "h"),
        "{err}"
    );
    let err = hostile_tar(&env, &[E::Hard("h2", "../../outside/victim")]).await;
    assert!(
        matches!(&err, PackageError::LinkEscapes { kind: "hardlink", entry, .. } if entry == "h2"),
        "{err}"
    );
}

#[tokio::test]
async fn hardlink_through_a_symlink_is_refused() {
    let env = Env::new();
    // The target path `s/f` crosses the (inside) symlink `s`: hardlink targets must be reached without links.
    let entries = [
        E::Dir("d/", 0o755),
        E::File("d/f", b"1", 0o644),
        E::Sym("s", "d"),
        E::Hard("h", "s/f"),
    ];
    let err = hostile_tar(&env, &entries).await;
    assert!(
        matches!(&err, PackageError::HardlinkTarget { entry, .. } if entry == "h"),
        "{err}"
    );
}

#[tokio::test]
async fn hardlinks_inside_are_unpacked() -> TestResult {
    let env = Env::new();
    let data = tar_bytes(&[E::File("f", b"data", 0o644), E::Hard("g", "f")]);
    env.fetch_bytes("b", &data, &opts()).await?;
    assert_eq!(std::fs::read(env.revision("g"))?, b"data");
    Ok(())
}

#[tokio::test]
async fn character_device_is_refused() {
    let env = Env::new();
    let err = hostile_tar(&env, &[E::Special("dev/mem", EntryType::Char)]).await;
    assert!(
        matches!(&err, PackageError::SpecialFile { entry, kind: "character device" } if entry == "dev/mem"),
        "{err}"
    );
}

#[tokio::test]
async fn block_device_is_refused() {
    let env = Env::new();
    let err = hostile_tar(&env, &[E::Special("sda", EntryType::Block)]).await;
    assert!(
        matches!(
            &err,
            PackageError::SpecialFile {
                kind: "block device",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn fifo_is_refused() {
    let env = Env::new();
    let err = hostile_tar(&env, &[E::Special("pipe", EntryType::Fifo)]).await;
    assert!(
        matches!(&err, PackageError::SpecialFile { entry, kind: "fifo" } if entry == "pipe"),
        "{err}"
    );
}

#[tokio::test]
async fn zip_socket_is_refused() {
    let env = Env::new();
    let data = zip_bytes(&[("sock", b"", 0o140_644)]);
    let err = env
        .fetch_bytes("b.zip", &data, &opts())
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::SpecialFile { kind: "socket", .. }),
        "{err}"
    );
    env.assert_nothing_left();
}

#[tokio::test]
async fn zip_parent_traversal_is_refused() {
    let env = Env::new();
    let data = zip_bytes(&[("../../outside/pwned", b"x", 0o100_644)]);
    let err = env
        .fetch_bytes("b.zip", &data, &opts())
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::ParentTraversal { .. }),
        "{err}"
    );
    env.assert_nothing_left();
}

#[tokio::test]
async fn zip_symlink_escaping_is_refused() {
    let env = Env::new();
    let target = outside_str(&env);
    let data = zip_bytes(&[
        ("a", target.as_bytes(), 0o120_777),
        ("a/pwned", b"x", 0o100_644),
    ]);
    let err = env
        .fetch_bytes("b.zip", &data, &opts())
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::LinkEscapes { entry, .. } if entry == "a"),
        "{err}"
    );
    env.assert_nothing_left();
}

#[tokio::test]
async fn more_entries_than_the_limit_are_refused() {
    let env = Env::new();
    let limits = UnpackLimits {
        max_entries: 3,
        ..UnpackLimits::default()
    };
    let data = tar_bytes(&[
        E::File("a", b"", 0o644),
        E::File("b", b"", 0o644),
        E::File("c", b"", 0o644),
        E::File("d", b"", 0o644),
    ]);
    let err = env
        .fetch_bytes("b", &data, &FetchOptions { limits, ..opts() })
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::TooManyEntries { limit: 3, entry } if entry == "d"),
        "{err}"
    );
    env.assert_nothing_left();
}

#[tokio::test]
async fn more_bytes_than_the_limit_are_refused() {
    let env = Env::new();
    let limits = UnpackLimits {
        max_bytes: 1000,
        ..UnpackLimits::default()
    };
    let data = gzip(&tar_bytes(&[
        E::File("a", &[7; 600], 0o644),
        E::File("b", &[7; 600], 0o644),
    ]));
    let err = env
        .fetch_bytes("b", &data, &FetchOptions { limits, ..opts() })
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::TooManyBytes { limit: 1000, entry } if entry == "b"),
        "{err}"
    );
    env.assert_nothing_left();
}

#[tokio::test]
async fn zip_bytes_over_the_limit_are_refused() {
    let env = Env::new();
    let limits = UnpackLimits {
        max_bytes: 10_000,
        ..UnpackLimits::default()
    };
    // Highly compressible: a small zip that inflates past the limit.
    let data = zip_bytes(&[("bomb", &[0u8; 100_000], 0o100_644)]);
    assert!(data.len() < 10_000);
    let err = env
        .fetch_bytes("b.zip", &data, &FetchOptions { limits, ..opts() })
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::TooManyBytes { entry, .. } if entry == "bomb"),
        "{err}"
    );
    env.assert_nothing_left();
}

#[tokio::test]
async fn setuid_and_setgid_bits_are_cleared() -> TestResult {
    let env = Env::new();
    let data = tar_bytes(&[
        E::Dir("shared/", 0o3775),
        E::File("shared/su", b"x", 0o4755),
        E::File("sg", b"x", 0o2711),
    ]);
    env.fetch_bytes("b", &data, &opts()).await?;
    let mode = |p: &str| {
        std::fs::symlink_metadata(env.revision(p)).map(|m| m.permissions().mode() & 0o7777)
    };
    assert_eq!(mode("shared/su")?, 0o755);
    assert_eq!(mode("sg")?, 0o711);
    assert_eq!(mode("shared")?, 0o1775, "sticky kept, setgid cleared");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Directory sources.

#[tokio::test]
async fn directory_source_is_copied() -> TestResult {
    let env = Env::new();
    let dir = env.src.join("app");
    std::fs::create_dir_all(dir.join("scripts"))?;
    std::fs::write(dir.join("appspec.yml"), b"version: 0.0\n")?;
    std::fs::write(dir.join("scripts/run.sh"), b"#!/bin/sh\n")?;
    std::fs::set_permissions(
        dir.join("scripts/run.sh"),
        std::fs::Permissions::from_mode(0o4750),
    )?;
    std::os::unix::fs::symlink("scripts/run.sh", dir.join("run"))?;
    let fetched = fetch(&Source::Directory(dir), &env.deploy, &env.stored_opts(None)).await?;
    assert_eq!(fetched.sha256, None);
    assert_eq!(fetched.entries, 4);
    assert_eq!(
        std::fs::read(env.revision("appspec.yml"))?,
        b"version: 0.0\n"
    );
    assert_eq!(
        std::fs::metadata(env.revision("scripts/run.sh"))?
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::read_link(env.revision("run"))?,
        Path::new("scripts/run.sh")
    );
    // No archive: nothing in the store, nothing referred to.
    assert!(!env.deploy.bundle_ref_file().exists());
    assert!(!env.store().dir().exists());
    assert!(env.deploy.logs_dir().is_dir());
    Ok(())
}

#[tokio::test]
async fn directory_source_with_symlink_out_is_refused() -> TestResult {
    let env = Env::new();
    let dir = env.src.join("app");
    std::fs::create_dir_all(&dir)?;
    std::os::unix::fs::symlink(&env.outside, dir.join("escape"))?;
    let err = fetch(&Source::Directory(dir), &env.deploy, &opts())
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::LinkEscapes { entry, .. } if entry == "escape"),
        "{err}"
    );
    env.assert_nothing_left();
    Ok(())
}

#[tokio::test]
async fn directory_source_with_fifo_is_refused() -> TestResult {
    let env = Env::new();
    let dir = env.src.join("app");
    std::fs::create_dir_all(&dir)?;
    nix::unistd::mkfifo(
        &dir.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )?;
    let err = fetch(&Source::Directory(dir), &env.deploy, &opts())
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::SpecialFile { kind: "fifo", .. }),
        "{err}"
    );
    env.assert_nothing_left();
    Ok(())
}

#[tokio::test]
async fn directory_source_cannot_be_checksummed() -> TestResult {
    let env = Env::new();
    let opts = FetchOptions {
        expected_sha256: Some("ab".repeat(32)),
        ..opts()
    };
    let err = fetch(&Source::Directory(env.src.clone()), &env.deploy, &opts)
        .await
        .expect_err("accepted");
    assert!(
        matches!(err, PackageError::ChecksumNotApplicable { .. }),
        "{err}"
    );
    env.assert_nothing_left();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Retention.

#[test]
fn prune_keeps_the_newest_and_the_protected() -> TestResult {
    let env = Env::new();
    let base = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (i, id) in ["d1", "d2", "d3", "d4", "d5", "d6", "d7"]
        .iter()
        .enumerate()
    {
        let dir = env.group.deployment(id)?.dir().to_owned();
        std::fs::create_dir_all(dir.join("revision"))?;
        let mtime = base + std::time::Duration::from_secs(60 * i as u64);
        std::fs::File::open(&dir)?.set_modified(mtime)?;
    }
    std::fs::create_dir_all(env.group.state_dir())?;
    // d7 is current, d1 the last successful one: both stay and count toward the five.
    let mut removed = prune(&env.group, 5, &["d7", "d1"])?;
    removed.sort();
    assert_eq!(removed, vec!["d2".to_owned(), "d3".to_owned()]);
    for id in ["d1", "d4", "d5", "d6", "d7"] {
        assert!(env.group.deployment(id)?.dir().is_dir(), "{id} removed");
    }
    assert!(
        env.group.state_dir().is_dir(),
        "state dir is not a deployment dir"
    );
    assert!(prune(&env.group, 5, &["d7", "d1"])?.is_empty());
    Ok(())
}

#[test]
fn prune_of_a_missing_group_is_a_no_op() -> TestResult {
    let env = Env::new();
    assert!(
        prune(
            &env.group,
            rollcage_runtime::package::DEFAULT_MAX_REVISIONS,
            &[]
        )?
        .is_empty()
    );
    let _ = env.root;
    Ok(())
}

#[tokio::test]
async fn bundle_larger_than_the_limits_allow_is_refused() {
    let env = Env::new();
    let limits = UnpackLimits {
        max_entries: 4,
        max_bytes: 1000,
        ..UnpackLimits::default()
    };
    // A tiny tar followed by 2 MiB of trailing bytes: the tar itself is fine, but the bundle could fill the disk.
    let mut data = tar_bytes(&[E::File("appspec.yml", b"a", 0o644)]);
    data.extend(std::iter::repeat_n(0xAAu8, 2 << 20));
    let err = env
        .fetch_bytes("b", &data, &FetchOptions { limits, ..opts() })
        .await
        .expect_err("accepted");
    assert!(matches!(err, PackageError::BundleTooLarge { .. }), "{err}");
    env.assert_nothing_left();
}

/// Whatever the general entry limit, a zip lists at most `MAX_ZIP_MEMBERS` members: the zip reader holds its whole
/// directory in memory (about 640 bytes a member), and the agent's memory budget is 64 MiB.
#[tokio::test]
async fn a_zip_over_the_member_cap_is_refused_from_its_end_record() {
    let env = Env::new();
    let names: Vec<String> = (0..=rollcage_runtime::package::MAX_ZIP_MEMBERS)
        .map(|i| format!("f{i}"))
        .collect();
    let entries: Vec<(&str, &[u8], u32)> = names
        .iter()
        .map(|n| (n.as_str(), &b""[..], 0o100_644))
        .collect();
    let data = zip_bytes(&entries);
    let err = env
        .fetch_bytes("many.zip", &data, &opts())
        .await
        .expect_err("accepted");
    assert!(
        matches!(&err, PackageError::ZipTooManyMembers { members, limit, .. }
            if *members == names.len() as u64 && *limit == rollcage_runtime::package::MAX_ZIP_MEMBERS),
        "{err}"
    );
    assert!(err.to_string().contains("tar.gz"), "{err}");
    env.assert_nothing_left();
}

#[tokio::test]
async fn zip_with_too_many_members_is_refused_up_front() {
    let env = Env::new();
    let limits = UnpackLimits {
        max_entries: 2,
        ..UnpackLimits::default()
    };
    let data = zip_bytes(&[
        ("a", b"1", 0o100_644),
        ("b", b"2", 0o100_644),
        ("c", b"3", 0o100_644),
    ]);
    let err = env
        .fetch_bytes("b.zip", &data, &FetchOptions { limits, ..opts() })
        .await
        .expect_err("accepted");
    assert!(
        // Refused from the end record, before the zip crate parses (and holds) the whole central directory.
        matches!(&err, PackageError::TooManyEntries { limit: 2, entry } if entry == "member 3 (of 3 listed)"),
        "{err}"
    );
    env.assert_nothing_left();
}
