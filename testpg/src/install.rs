//! Where PostgreSQL's binaries are, and whom a test server runs as.
//!
//! Debian installs each major version's server binaries in `/usr/lib/postgresql/VERSION/bin` (off `PATH`: its
//! `pg_wrapper` wraps only the client tools); the newest version there wins. Elsewhere, a `PATH` directory holding
//! both `initdb` and `postgres` is used.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// Where Debian's `postgresql-VERSION` packages put their binaries, one `VERSION/bin` each.
pub const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The user a server runs as when we are root (PostgreSQL refuses to run as root); Debian's package creates it.
pub const RUN_AS_USER: &str = "postgres";

/// The binaries found, and whom to run them as.
#[derive(Debug, Clone)]
pub struct Install {
    /// The directory with `initdb` and `postgres`.
    pub bin_dir: PathBuf,
    /// `Some` when we are root: the `postgres` user's ids, which `initdb` and `postgres` run as and which own
    /// the server's directory. `None`: they run as us.
    pub run_as: Option<RunAs>,
}

/// A user and group to run a server as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Install {
    /// Find the binaries (see the module doc) and, when root, the `postgres` user.
    pub fn find() -> Result<Install> {
        let bin_dir = find_bin_dir(Path::new(DEBIAN_ROOT), std::env::var_os("PATH").as_deref())?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name(RUN_AS_USER)
                .ok()
                .flatten()
                .ok_or(Error::NoPostgresUser)?;
            Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        } else {
            None
        };
        Ok(Install { bin_dir, run_as })
    }

    /// The path of binary `name` (`initdb`, `postgres`).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A command running binary `name` as the server's user, in `dir`, with no stdin.
    pub(crate) fn command(&self, name: &str, dir: &Path) -> Command {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(self.binary(name));
        cmd.current_dir(dir).stdin(std::process::Stdio::null());
        if let Some(RunAs { uid, gid }) = self.run_as {
            // std drops the supplementary groups when root sets a uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Give `path` to the server's user (when we are root; otherwise it is ours already).
    pub(crate) fn give(&self, path: &Path) -> Result<()> {
        if let Some(RunAs { uid, gid }) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(Error::io("giving to the `postgres` user", path))?;
        }
        Ok(())
    }
}

/// The newest `DEBIAN_ROOT/VERSION/bin` with `initdb` and `postgres`, else the first `PATH` directory with both.
pub fn find_bin_dir(debian_root: &Path, path_var: Option<&OsStr>) -> Result<PathBuf> {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let versions: Vec<String> = std::fs::read_dir(debian_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| complete(&e.path().join("bin")))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    if let Some(v) = newest_version(&versions) {
        return Ok(debian_root.join(v).join("bin"));
    }
    let path_dirs: Vec<PathBuf> = path_var
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    if let Some(dir) = path_dirs.iter().find(|d| complete(d)) {
        return Ok(dir.clone());
    }
    Err(Error::NotInstalled {
        searched: format!("{}/*/bin and PATH", debian_root.display()),
    })
}

/// The highest of Debian's version directory names (`15`, `16`, `9.6`), compared numerically; names that are not
/// versions are ignored.
pub fn newest_version(names: &[String]) -> Option<&str> {
    let key = |n: &str| -> Option<Vec<u32>> { n.split('.').map(|p| p.parse().ok()).collect() };
    names
        .iter()
        .filter_map(|n| Some((key(n)?, n.as_str())))
        .max()
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn newest_version_compares_numbers_not_text() {
        assert_eq!(newest_version(&names(&["9.6", "15", "10"])), Some("15"));
        assert_eq!(newest_version(&names(&["16", "17", "lib"])), Some("17"));
        assert_eq!(newest_version(&names(&["lib"])), None);
        assert_eq!(newest_version(&[]), None);
    }

    #[test]
    fn missing_postgresql_is_an_error_naming_the_setup_script()
    -> Result<(), Box<dyn std::error::Error>> {
        let empty = tempfile::tempdir()?;
        // A version directory without the binaries does not count.
        std::fs::create_dir_all(empty.path().join("15/bin"))?;
        let err = find_bin_dir(empty.path(), Some(empty.path().as_os_str()));
        assert!(matches!(err, Err(Error::NotInstalled { .. })), "{err:?}");
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("scripts/setup.sh"), "{text}");
        Ok(())
    }

    #[test]
    fn the_newest_complete_debian_version_wins() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        for v in ["13", "15"] {
            let bin = root.path().join(v).join("bin");
            std::fs::create_dir_all(&bin)?;
            std::fs::write(bin.join("initdb"), "")?;
            std::fs::write(bin.join("postgres"), "")?;
        }
        // 16 is half-installed (no `postgres`).
        std::fs::create_dir_all(root.path().join("16/bin"))?;
        std::fs::write(root.path().join("16/bin/initdb"), "")?;
        assert_eq!(find_bin_dir(root.path(), None)?, root.path().join("15/bin"));
        Ok(())
    }
}
