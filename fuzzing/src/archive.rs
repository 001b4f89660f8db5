//! Target `archive`: the bundle unpacker (`rollcage_runtime::package::fetch` of a local archive, format detected
//! from the content: tar, tar.gz or zip) with the agent's real limits, each input into a fresh temporary root.
//! Input that is not gzip or zip is unpacked a second time gzip-compressed, so the tar.gz path sees every tar the
//! fuzzer makes (mutating compressed bytes rarely yields a tar worth reading).
//!
//! Asserts: no panic; a refusal is a short error (under 1 KiB, one line) and leaves no deployment dir; an accepted
//! archive left only directories, regular files and symlinks, no setuid/setgid bit, and every symlink resolves
//! inside the revision as the kernel would follow it (checked on disk, independently of the unpacker's own
//! bookkeeping); a tar that unpacks also unpacks, to as many entries, when gzip-compressed.

use crate::Verdict;
use flate2::Compression;
use flate2::write::GzEncoder;
use rollcage_runtime::layout::{DeployLayout, GroupLayout};
use rollcage_runtime::package::{FetchOptions, Fetched, PackageError, Source, fetch};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// The unpacker's errors are one short line whatever the archive names (the same bound as
/// `runtime/tests/hostile_archives.rs`).
const SHORT: usize = 1024;

/// Symlinks followed while checking one link, as Linux's `MAXSYMLINKS`: past it the kernel refuses the lookup
/// (`ELOOP`), so nothing behind it can be reached.
const MAX_LINK_EXPANSIONS: u32 = 40;

/// Run `data` through the unpacker as an archive (and, when it is neither gzip nor zip, as its gzip too).
pub fn check(data: &[u8]) -> Verdict {
    let plain = unpack(data);
    let compressed = data.starts_with(&[0x1f, 0x8b]) || data.starts_with(b"PK");
    if !compressed {
        let gz = unpack(&gzip(data));
        if let Ok(tar) = &plain {
            match &gz {
                Ok(gz) => assert_eq!(gz.entries, tar.entries, "entries of the tar and its gzip"),
                Err(e) => panic!("a tar that unpacks is refused once gzip-compressed: {e}"),
            }
        }
    }
    Verdict::any([plain.is_ok()])
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(data);
    gz.finish().unwrap_or_default()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // The blocking thread a fetch runs on is kept for the whole run: a pool thread exiting between inputs
        // leaves glibc's thread-exit bookkeeping behind, which LeakSanitizer reports as a leak of the input that
        // happened to be running (found so, 96 bytes from `__cxa_thread_atexit_impl`).
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot start a tokio runtime: {e}"),
        }
    })
}

/// A fresh temporary root, in tmpfs when there is one (a fuzzer unpacks thousands of archives a second).
fn scratch() -> tempfile::TempDir {
    let made = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm"),
        false => tempfile::tempdir(),
    };
    match made {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary dir: {e}"),
    }
}

/// Unpack `archive` as the agent would and check what it left.
fn unpack(archive: &[u8]) -> Result<Fetched, PackageError> {
    let tmp = scratch();
    let bundle = tmp.path().join("bundle");
    if let Err(e) = std::fs::write(&bundle, archive) {
        panic!("cannot write {}: {e}", bundle.display());
    }
    let deploy = match GroupLayout::new(&tmp.path().join("root"), "app", "group")
        .and_then(|g| g.deployment("d-1"))
    {
        Ok(d) => d,
        Err(e) => panic!("layout: {e}"),
    };
    let result = runtime().block_on(fetch(
        &Source::Archive(bundle),
        &deploy,
        &FetchOptions::default(),
    ));
    match &result {
        Ok(_) => accepted(&deploy),
        Err(e) => refused(&deploy, e),
    }
    result
}

fn refused(deploy: &DeployLayout, e: &PackageError) {
    let shown = e.to_string();
    assert!(shown.len() < SHORT, "{} bytes: {shown}", shown.len());
    assert!(!shown.contains('\n'), "an error of several lines: {shown}");
    assert!(
        !deploy.dir().exists(),
        "deployment dir left behind after: {shown}"
    );
}

fn accepted(deploy: &DeployLayout) {
    let root = deploy.revision_dir();
    assert!(root.is_dir(), "no revision dir");
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => panic!("cannot list {}: {e}", dir.display()),
            };
            let rel = rel.join(entry.file_name());
            let meta = match std::fs::symlink_metadata(root.join(&rel)) {
                Ok(m) => m,
                Err(e) => panic!("cannot stat {}: {e}", rel.display()),
            };
            let kind = meta.file_type();
            if kind.is_symlink() {
                let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
                let target = read_link(&root, &rel);
                assert!(
                    resolves_inside(&root, &parent, &target),
                    "symlink {} -> {} leads outside the revision",
                    rel.display(),
                    target.display()
                );
            } else if kind.is_dir() {
                stack.push(rel);
            } else {
                assert!(kind.is_file(), "{} is not a file: {kind:?}", rel.display());
                let mode = meta.permissions().mode();
                assert_eq!(mode & 0o6000, 0, "{} has mode {mode:o}", rel.display());
            }
        }
    }
}

fn read_link(root: &Path, rel: &Path) -> PathBuf {
    match std::fs::read_link(root.join(rel)) {
        Ok(t) => t,
        Err(e) => panic!("cannot read the link {}: {e}", rel.display()),
    }
}

/// Whether `target`, a symlink's target found in directory `dir` (relative to `root`), stays inside `root` when
/// followed as the kernel does, through the symlinks actually on disk. A component that does not exist is taken
/// lexically (a hook could create it later), which is stricter than the kernel.
fn resolves_inside(root: &Path, dir: &Path, target: &Path) -> bool {
    let mut here: Vec<OsString> = dir.iter().map(ToOwned::to_owned).collect();
    let mut budget = MAX_LINK_EXPANSIONS;
    walk(root, &mut here, target, &mut budget)
}

fn walk(root: &Path, here: &mut Vec<OsString>, target: &Path, budget: &mut u32) -> bool {
    for comp in target.components() {
        match comp {
            Component::RootDir | Component::Prefix(_) => return false,
            Component::CurDir => {}
            Component::ParentDir => {
                if here.pop().is_none() {
                    return false;
                }
            }
            Component::Normal(name) => {
                here.push(name.to_owned());
                let at: PathBuf = here.iter().collect();
                let is_link = std::fs::symlink_metadata(root.join(&at))
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if is_link {
                    if *budget == 0 {
                        // The kernel gives up here (ELOOP): nothing further is reachable.
                        return true;
                    }
                    *budget -= 1;
                    let inner = read_link(root, &at);
                    here.pop();
                    if !walk(root, here, &inner, budget) {
                        return false;
                    }
                }
            }
        }
    }
    true
}
