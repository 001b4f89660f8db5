//! The host's bundle store: every archive the agent fetched, kept once and named by its sha256
//! (`${root}/agent/bundles/<sha256>`, see [`crate::layout`]). A deployment dir refers to its archive by sha256
//! (`deploy-X/bundle.sha256`) instead of holding a copy, so a revision's archive is on the host once however many
//! deployments (a rollback, a redeploy) use it.
//!
//! Files are written by a fetch that hashed them while writing them (the agent's download from the coordinator, or
//! this crate's pipeline for a URL): a name in the store is a verified sha256. A file that is *reused* later (for
//! another deployment) is hashed again while it is unpacked, see [`super::Source::Stored`].

use super::error::PackageError;
use super::prune::select_removals;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// True for a sha256 in hex (either case): the only names the store uses, so a sha from outside can never be a
/// path.
pub(crate) fn is_sha256(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Archives on this host by sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleStore {
    dir: PathBuf,
}

impl BundleStore {
    /// The store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store of the agent rooted at `root` ([`crate::layout::bundle_store_dir`]).
    pub fn at_root(root: &Path) -> Self {
        Self::new(crate::layout::bundle_store_dir(root))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the archive with this sha256 lives (present or not); `None` when `sha256` is not a hex digest.
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        is_sha256(sha256).then(|| self.dir.join(sha256.to_ascii_lowercase()))
    }

    /// True when the store holds the archive with this sha256.
    pub fn contains(&self, sha256: &str) -> bool {
        self.path(sha256).is_some_and(|p| p.is_file())
    }

    /// Create the store's directory if needed, private (`crate::layout::ensure_private_dir`): its archives are the
    /// bundles of every application on this host.
    pub fn create(&self) -> std::io::Result<()> {
        crate::layout::ensure_private_dir(&self.dir).map(|_| ())
    }

    /// A temporary file in the store for an archive being fetched; persisted under its sha256 once verified, and
    /// removed when dropped otherwise. Its name has a `.` prefix, so it is never taken for an archive.
    pub(crate) fn incoming(&self) -> Result<tempfile::NamedTempFile, PackageError> {
        self.create()
            .map_err(|e| PackageError::io("create", &self.dir, e))?;
        tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.dir)
            .map_err(|e| PackageError::io("create a temporary file in", &self.dir, e))
    }

    /// Keep the newest `max_revisions` archives (by mtime), never removing those whose sha256 is in `keep` (they
    /// count toward the limit, like [`super::prune`]'s deployment dirs). Files that are not named by a sha256
    /// (a download's `.part`, an `.incoming-` file) are left alone. Returns the sha256s removed.
    pub fn prune(&self, max_revisions: usize, keep: &[&str]) -> Result<Vec<String>, PackageError> {
        let files = self
            .archives()?
            .into_iter()
            .map(|(sha, mtime, _)| (sha, mtime))
            .collect();
        let keep = lowercase(keep);
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        let remove = select_removals(files, max_revisions, &keep);
        self.remove_all(&remove, "removing old bundle from the store")?;
        Ok(remove)
    }

    /// The stored archives: `(sha256, mtime, size)` of each regular file named by a sha256 (a download's `.part`
    /// or an `.incoming-` file is no archive yet).
    fn archives(&self) -> Result<Vec<(String, SystemTime, u64)>, PackageError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(PackageError::io("list", &self.dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PackageError::io("list", &self.dir, e))?;
            let Some(sha) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_sha256(&sha) {
                continue;
            }
            let meta = std::fs::symlink_metadata(entry.path())
                .map_err(|e| PackageError::io("stat", entry.path(), e))?;
            if !meta.is_file() {
                continue;
            }
            let mtime = meta
                .modified()
                .map_err(|e| PackageError::io("stat", entry.path(), e))?;
            files.push((sha, mtime, meta.len()));
        }
        Ok(files)
    }

    fn remove_all(&self, shas: &[String], why: &str) -> Result<(), PackageError> {
        for sha in shas {
            let path = self.dir.join(sha);
            tracing::info!(sha256 = %sha, path = %path.display(), "{why}");
            std::fs::remove_file(&path).map_err(|e| PackageError::io("remove", &path, e))?;
        }
        Ok(())
    }
}

/// sha256s as the store names its files.
fn lowercase(shas: &[&str]) -> Vec<String> {
    shas.iter().map(|s| s.to_ascii_lowercase()).collect()
}

/// Choose which stored archives to remove so that the store holds at most `max_bytes`: `files` are
/// `(sha256, mtime, size)`; the ones in `keep` always stay (and count); the newest of the others stay while they
/// fit. Pure.
pub(crate) fn select_over_bytes(
    mut files: Vec<(String, SystemTime, u64)>,
    max_bytes: u64,
    keep: &[&str],
) -> Vec<String> {
    // Newest first; ties broken by name so the choice is deterministic.
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut total: u64 = files
        .iter()
        .filter(|(sha, _, _)| keep.contains(&sha.as_str()))
        .map(|(_, _, size)| *size)
        .sum();
    let mut remove = Vec::new();
    for (sha, _, size) in files {
        if keep.contains(&sha.as_str()) {
            continue;
        }
        if total.saturating_add(size) <= max_bytes {
            total += size;
        } else {
            remove.push(sha);
        }
    }
    remove
}

impl BundleStore {
    /// Remove the oldest archives until the store holds at most `max_bytes` (`rollcage agent --max-cache-bytes`),
    /// never those in `keep` (this deployment's, and the revision installed last in each group). Returns the sha256s
    /// removed.
    pub fn prune_bytes(&self, max_bytes: u64, keep: &[&str]) -> Result<Vec<String>, PackageError> {
        let keep = lowercase(keep);
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        let remove = select_over_bytes(self.archives()?, max_bytes, &keep);
        self.remove_all(
            &remove,
            "removing old bundle from the store (over --max-cache-bytes)",
        )?;
        Ok(remove)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_retention_keeps_the_newest_that_fit_and_never_the_kept_ones() {
        use super::select_over_bytes;
        use std::time::{Duration, SystemTime};
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let files = vec![
            ("a".to_owned(), t(1), 50),
            ("b".to_owned(), t(2), 30),
            ("c".to_owned(), t(3), 40),
            ("d".to_owned(), t(4), 20),
        ];
        // 100 bytes: d (20) + c (40) fit, b would make 90 — fits; a would make 140 — removed.
        assert_eq!(select_over_bytes(files.clone(), 100, &[]), ["a"]);
        // The installed revision `a` (50) is kept whatever its age; then d (70), c would make 110: removed, b fits.
        assert_eq!(select_over_bytes(files.clone(), 100, &["a"]), ["c"]);
        // Kept ones over the bound stay; everything else goes.
        let mut gone = select_over_bytes(files, 10, &["a", "b"]);
        gone.sort();
        assert_eq!(gone, ["c", "d"]);
    }

    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn names_are_hex_digests_only() {
        let store = BundleStore::new("/r/agent/bundles");
        let sha = "AB".repeat(32);
        assert_eq!(
            store.path(&sha),
            Some(PathBuf::from(format!(
                "/r/agent/bundles/{}",
                "ab".repeat(32)
            )))
        );
        for bad in ["", "../x", &"g".repeat(64), &"a".repeat(63)] {
            assert_eq!(store.path(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn prune_keeps_the_newest_and_the_kept_and_ignores_other_files()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let store = BundleStore::new(tmp.path());
        let shas: Vec<String> = (0..4).map(|i| format!("{:x}", 10 + i).repeat(64)).collect();
        for (i, sha) in shas.iter().enumerate() {
            let path = tmp.path().join(sha);
            std::fs::write(&path, sha)?;
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(t)?;
        }
        std::fs::write(tmp.path().join(format!("{}.part", shas[0])), b"x")?;
        // Limit 2: the oldest (`a…`) stays because it is in use, so only the newest other one (`d…`) fits.
        let removed = store.prune(2, &[&shas[0].to_ascii_uppercase()])?;
        assert_eq!(removed, vec![shas[2].clone(), shas[1].clone()]);
        assert!(store.contains(&shas[0]) && store.contains(&shas[3]));
        assert!(tmp.path().join(format!("{}.part", shas[0])).is_file());
        Ok(())
    }
}
