//! Hostile archives from the adversarial probe (issue 12), built in memory or streamed to a file: a 64 MiB GNU long
//! name, long link targets (GNU long link, pax `linkpath`, zip), an oversized pax header, trees 5,000 directories
//! deep, duplicate entries and trailing gzip garbage. Each is refused (or unpacked) within seconds, with a short
//! error that names the limit or both positions, and nothing is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup: a failure to build a fixture should panic loudly

use flate2::Compression;
use flate2::write::GzEncoder;
use rollcage_runtime::layout::{DeployLayout, GroupLayout};
use rollcage_runtime::package::{
    EntryPosition, FetchOptions, Fetched, PackageError, Source, UnpackLimits, fetch,
};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tar::EntryType;

/// The acceptance bound for any hostile archive.
const BOUND: Duration = Duration::from_secs(5);
/// An error about one archive is a line, not a dump of what the archive holds.
const SHORT: usize = 1024;

struct Env {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    deploy: DeployLayout,
}

impl Env {
    fn new() -> Self {
        Self::with(tempfile::tempdir().unwrap())
    }

    /// In tmpfs: timing path handling, not the disk's `mkdir` (on a busy ext4, 2,000 `mkdir`s alone take seconds).
    fn in_tmpfs() -> Self {
        let shm = Path::new("/dev/shm");
        assert!(shm.is_dir(), "this test needs a tmpfs at /dev/shm");
        Self::with(tempfile::tempdir_in(shm).unwrap())
    }

    fn with(tmp: tempfile::TempDir) -> Self {
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let group = GroupLayout::new(&tmp.path().join("root"), "web", "prod").unwrap();
        let deploy = group.deployment("d-1").unwrap();
        Self {
            _tmp: tmp,
            src,
            deploy,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.src.join(name)
    }

    /// Fetch the archive at `path`, timing it; the fetch must end within [`BOUND`].
    async fn fetch_file(&self, path: &Path, limits: UnpackLimits) -> Result<Fetched, PackageError> {
        let opts = FetchOptions {
            limits,
            ..FetchOptions::default()
        };
        let start = Instant::now();
        let result = fetch(&Source::Archive(path.to_owned()), &self.deploy, &opts).await;
        let took = start.elapsed();
        assert!(took < BOUND, "took {took:?}");
        result
    }

    async fn fetch_bytes(&self, data: &[u8]) -> Result<Fetched, PackageError> {
        let path = self.path("bundle");
        std::fs::write(&path, data).unwrap();
        self.fetch_file(&path, UnpackLimits::default()).await
    }

    /// The fetch failed with a short error and left nothing.
    fn refused(&self, result: Result<Fetched, PackageError>) -> PackageError {
        let err = result.expect_err("accepted");
        let shown = err.to_string();
        assert!(shown.len() < SHORT, "{} bytes: {shown}", shown.len());
        assert!(!self.deploy.dir().exists(), "deployment dir left behind");
        err
    }
}

/// A GNU header with a raw `name` (≤ 100 bytes) and `link` (≤ 100 bytes).
fn header(name: &[u8], ty: EntryType, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(if ty == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// Zeros up to the next 512-byte block after `len` bytes of data.
fn padding(len: u64) -> Vec<u8> {
    vec![0; ((512 - len % 512) % 512) as usize]
}

/// Write a gzip'd tar to `path`: an extension member of type `ty` whose data is `len` bytes of `fill` then a NUL,
/// streamed (the bundle is small; what it declares is not), then the member it describes, then the end marker.
fn extension_bundle(path: &Path, ty: EntryType, len: u64, member: tar::Header) {
    let mut gz = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
    gz.write_all(header(b"././@LongLink", ty, len + 1, b"").as_bytes())
        .unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        gz.write_all(&chunk[..n as usize]).unwrap();
        left -= n;
    }
    gz.write_all(&[0]).unwrap();
    gz.write_all(&padding(len + 1)).unwrap();
    let size = member.entry_size().unwrap();
    gz.write_all(member.as_bytes()).unwrap();
    gz.write_all(&vec![b'x'; size as usize]).unwrap();
    gz.write_all(&padding(size)).unwrap();
    gz.write_all(&[0; 1024]).unwrap();
    gz.finish().unwrap();
}

fn tar_of(members: &[(tar::Header, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, data) in members {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.extend(padding(data.len() as u64));
    }
    out.extend([0; 1024]);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A pax extended header member carrying `records` (`key=value` each).
fn pax(records: &[(&str, &[u8])]) -> (tar::Header, Vec<u8>) {
    let mut data = Vec::new();
    for (key, value) in records {
        // "LEN key=value\n", where LEN counts itself.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len += 1;
        }
        data.extend(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    (
        header(b"PaxHeaders/x", EntryType::XHeader, data.len() as u64, b""),
        data,
    )
}

#[tokio::test]
async fn a_64_mib_gnu_long_name_is_refused_before_it_is_read() {
    let env = Env::new();
    let path = env.path("longname.tar.gz");
    let len = 64 << 20;
    extension_bundle(
        &path,
        EntryType::GNULongName,
        len,
        header(b"x", EntryType::Regular, 1, b""),
    );
    // The bundle is tiny; the name it declares is not.
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let err = env.refused(env.fetch_file(&path, UnpackLimits::default()).await);
    assert!(
        matches!(&err, PackageError::NameTooLong { what: "GNU long name", len: l, limit: 4096, prefix }
            if *l == len + 1 && prefix.starts_with("aaaa") && prefix.len() <= 300),
        "{err}"
    );
}

#[tokio::test]
async fn a_64_mib_gnu_long_link_is_refused_before_it_is_read() {
    let env = Env::new();
    let path = env.path("longlink.tar.gz");
    let len = 64 << 20;
    extension_bundle(
        &path,
        EntryType::GNULongLink,
        len,
        header(b"l", EntryType::Symlink, 0, b""),
    );
    let err = env.refused(env.fetch_file(&path, UnpackLimits::default()).await);
    assert!(
        matches!(
            &err,
            PackageError::NameTooLong {
                what: "GNU long link",
                limit: 4096,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_symlink_target_longer_than_path_max_is_refused() {
    let env = Env::new();
    let path = env.path("target.tar.gz");
    // 5,000 bytes: within the extension's bound (it is read), over PATH_MAX for a target.
    extension_bundle(
        &path,
        EntryType::GNULongLink,
        5000,
        header(b"l", EntryType::Symlink, 0, b""),
    );
    let err = env.refused(env.fetch_file(&path, UnpackLimits::default()).await);
    assert!(
        matches!(
            &err,
            PackageError::NameTooLong {
                what: "GNU long link",
                len: 5001,
                ..
            }
        ),
        "{err}"
    );
    // The same target through a pax `linkpath`.
    let target = vec![b'a'; 5000];
    let (h, data) = pax(&[("linkpath", &target)]);
    let bundle = tar_of(&[(h, &data), (header(b"l", EntryType::Symlink, 0, b""), b"")]);
    let err = env.refused(env.fetch_bytes(&bundle).await);
    assert!(
        matches!(
            &err,
            PackageError::NameTooLong {
                what: "link target",
                len: 5000,
                limit: 4096,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_oversized_pax_header_is_refused_before_it_is_read() {
    let env = Env::new();
    let path = env.path("pax.tar.gz");
    extension_bundle(
        &path,
        EntryType::XHeader,
        64 << 20,
        header(b"x", EntryType::Regular, 1, b""),
    );
    let err = env.refused(env.fetch_file(&path, UnpackLimits::default()).await);
    assert!(
        matches!(&err, PackageError::ExtensionTooLarge { offset: 0, limit, .. } if *limit == 1 << 20),
        "{err}"
    );
}

#[tokio::test]
async fn a_long_pax_path_is_refused_and_a_normal_one_is_used() {
    let env = Env::new();
    let long = vec![b'p'; 5000];
    let (h, data) = pax(&[("path", &long)]);
    let bundle = tar_of(&[(h, &data), (header(b"x", EntryType::Regular, 1, b""), b"1")]);
    let err = env.refused(env.fetch_bytes(&bundle).await);
    assert!(
        matches!(
            &err,
            PackageError::NameTooLong {
                what: "entry name",
                len: 5000,
                ..
            }
        ),
        "{err}"
    );
    let (h, data) = pax(&[("path", b"dir/real-name"), ("mtime", b"1700000000.5")]);
    let bundle = tar_of(&[
        (h, &data),
        (header(b"ignored", EntryType::Regular, 2, b""), b"ok"),
    ]);
    env.fetch_bytes(&bundle).await.unwrap();
    let got = std::fs::read(env.deploy.revision_dir().join("dir/real-name")).unwrap();
    assert_eq!(got, b"ok");
}

#[tokio::test]
async fn a_name_component_longer_than_name_max_is_refused() {
    let env = Env::new();
    let mut b = tar::Builder::new(Vec::new());
    let name = format!("d/{}", "n".repeat(300));
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, &name, &b"1"[..]).unwrap();
    let err = env.refused(env.fetch_bytes(&b.into_inner().unwrap()).await);
    assert!(
        matches!(
            &err,
            PackageError::NameTooLong {
                what: "entry name component",
                len: 300,
                limit: 255,
                ..
            }
        ),
        "{err}"
    );
}

/// A tar of directories `d/`, `d/d/`, … `depth` deep, with a file at the bottom and one near the top.
fn deep_tree(depth: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut path = String::new();
    for _ in 0..depth {
        path.push_str("d/");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &path, std::io::empty()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    b.append_data(&mut h, format!("{path}leaf"), &b"leaf"[..])
        .unwrap();
    // Back near the top: far above the directories the unpacker still has open, so it walks again from the root.
    b.append_data(&mut h, "d/top", &b"top!"[..]).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn a_tree_5000_deep_is_refused_at_the_depth_limit() {
    let env = Env::new();
    let err = env.refused(env.fetch_bytes(&gzip(&deep_tree(5000))).await);
    assert!(
        matches!(
            &err,
            PackageError::TooDeep {
                depth: 257,
                limit: 256,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_deep_tree_within_the_limits_unpacks_in_linear_time() {
    // 2,000 levels of one-letter names is as deep as PATH_MAX allows; with the old per-entry walk from the root this
    // took ~2M `openat` calls (the quadratic behind the 60 s of the probe).
    let env = Env::in_tmpfs();
    let path = env.path("deep.tar");
    std::fs::write(&path, deep_tree(2000)).unwrap();
    let limits = UnpackLimits {
        max_depth: 3000,
        ..UnpackLimits::default()
    };
    let fetched = env.fetch_file(&path, limits).await.unwrap();
    assert_eq!(fetched.entries, 2002);
    let top = std::fs::read(env.deploy.revision_dir().join("d/top")).unwrap();
    assert_eq!(top, b"top!");
    let leaf = env
        .deploy
        .revision_dir()
        .join("d/".repeat(2000))
        .join("leaf");
    // Too long a path for one syscall; read it relative to a directory halfway down.
    let half = env.deploy.revision_dir().join("d/".repeat(1000));
    let rest = leaf.strip_prefix(&half).unwrap().to_owned();
    let status = std::process::Command::new("cat")
        .arg(&rest)
        .current_dir(&half)
        .output()
        .unwrap();
    assert_eq!(status.stdout, b"leaf");
}

#[tokio::test]
async fn a_file_named_twice_is_refused_with_both_positions() {
    let env = Env::new();
    let spec = b"version: 0.0\nos: linux\n";
    let evil = b"version: 0.0\nos: linux\nhooks: {}\n";
    let bundle = tar_of(&[
        (
            header(b"appspec.yml", EntryType::Regular, spec.len() as u64, b""),
            spec,
        ),
        (header(b"x", EntryType::Regular, 1, b""), b"1"),
        (
            header(b"./appspec.yml", EntryType::Regular, evil.len() as u64, b""),
            evil,
        ),
    ]);
    let err = env.refused(env.fetch_bytes(&bundle).await);
    assert!(
        matches!(&err, PackageError::DuplicateEntry { entry, first, second }
            if entry == "appspec.yml"
                && *first == EntryPosition { index: 1, offset: Some(0) }
                && *second == EntryPosition { index: 3, offset: Some(2048) }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("entry 1 at byte 0 and entry 3 at byte 2048")
    );
    // A symlink then a file of the same name.
    let bundle = tar_of(&[
        (header(b"l", EntryType::Symlink, 0, b"x"), b""),
        (header(b"l", EntryType::Regular, 1, b""), b"1"),
    ]);
    let err = env.refused(env.fetch_bytes(&bundle).await);
    assert!(
        matches!(&err, PackageError::DuplicateEntry { entry, .. } if entry == "l"),
        "{err}"
    );
}

/// Archive bytes quoted in an error cannot add lines to a log or a report: the tar reader's own message quotes a
/// header's name and a bad numeric field raw, and a name may hold a newline (found by the `archive` fuzz target; the
/// input it found is kept in `fuzz/regressions/archive/`).
#[tokio::test]
async fn an_error_quoting_archive_bytes_stays_on_one_line() {
    let env = Env::new();
    // A ustar header whose name has newlines and whose checksum field is not text.
    let mut block = [0u8; 512];
    block[..7].copy_from_slice(b"a\nb\n\nc\n");
    block[148..156].copy_from_slice(b"\xff\n\xfe\n\n\n\n\n");
    block[257..263].copy_from_slice(b"ustar\0");
    let mut bundle = block.to_vec();
    bundle.extend_from_slice(&[0; 1024]);
    let err = env.refused(env.fetch_bytes(&bundle).await);
    assert!(matches!(err, PackageError::Malformed { .. }), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");
    // A name with a newline, quoted as the entry named twice.
    let bundle = tar_of(&[
        (header(b"x\ny", EntryType::Regular, 1, b""), b"1"),
        (header(b"x\ny", EntryType::Regular, 1, b""), b"2"),
    ]);
    let err = env.refused(env.fetch_bytes(&bundle).await);
    assert!(
        matches!(&err, PackageError::DuplicateEntry { entry, .. } if entry == "x\u{FFFD}y"),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[tokio::test]
async fn a_directory_listed_twice_is_accepted_and_its_later_mode_wins() {
    let env = Env::new();
    let mut late = header(b"d/", EntryType::Directory, 0, b"");
    late.set_mode(0o750);
    late.set_cksum();
    let bundle = tar_of(&[
        (header(b"d/", EntryType::Directory, 0, b""), b""),
        (header(b"d/f", EntryType::Regular, 1, b""), b"1"),
        (late, b""),
    ]);
    env.fetch_bytes(&bundle).await.unwrap();
    let mode = std::fs::metadata(env.deploy.revision_dir().join("d"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o750);
}

#[tokio::test]
async fn trailing_gzip_garbage_is_located() {
    let env = Env::new();
    let gz = gzip(&tar_of(&[(
        header(b"appspec.yml", EntryType::Regular, 1, b""),
        b"1",
    )]));
    let mut bundle = gz.clone();
    bundle.extend(b"not gzip at all");
    let err = env.refused(env.fetch_bytes(&bundle).await);
    assert!(
        matches!(&err, PackageError::TrailingData { end, trailing: 15, .. } if *end == gz.len() as u64),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!(
            "ends at byte {}; 15 bytes of trailing data follow",
            gz.len()
        )),
        "{err}"
    );
    // Zero padding after the last member is what tape tools leave: accepted, like `gzip -d` does.
    let mut padded = gz.clone();
    padded.extend([0; 4096]);
    env.fetch_bytes(&padded).await.unwrap();
}

#[tokio::test]
async fn a_zip_symlink_target_longer_than_path_max_is_refused_not_cut() {
    let env = Env::new();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let target = "t".repeat(5000);
    w.add_symlink("l", &target, zip::write::SimpleFileOptions::default())
        .unwrap();
    let bundle = w.finish().unwrap().into_inner();
    let path = env.path("b.zip");
    std::fs::write(&path, bundle).unwrap();
    let err = env.refused(env.fetch_file(&path, UnpackLimits::default()).await);
    assert!(
        matches!(
            &err,
            PackageError::NameTooLong {
                what: "symlink target",
                limit: 4096,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_zip_central_directory_too_large_to_parse_is_refused_before_it_is_parsed() {
    // 4,000 members with 2,000-byte paths: a 8.2 MB central directory, the zip crate would hold it ~3 times over.
    let env = Env::new();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let dirs = format!("{}/", "n".repeat(199)).repeat(10);
    for i in 0..4200 {
        w.start_file(
            format!("{dirs}{i:06}"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    }
    let path = env.path("big.zip");
    std::fs::write(&path, w.finish().unwrap().into_inner()).unwrap();
    let err = env.refused(env.fetch_file(&path, UnpackLimits::default()).await);
    assert!(
        matches!(&err, PackageError::ZipDirectoryTooLarge { bytes, limit, .. } if *bytes > *limit && *limit == 8 << 20),
        "{err}"
    );
}
