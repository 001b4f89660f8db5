//! Find a hook's script inside the revision and decide how to start it.
//!
//! The AppSpec validator already refuses a `location` with `..` or one that resolves outside the revision, but the
//! revision on disk is checked again here because it is what actually runs: a symlink may point elsewhere, the file
//! may be a directory, or it may not be executable yet (CodeDeploy's agent adds the execute bit; so do we).

use rollcage_proto::HookStatus;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The shell CodeDeploy (Ruby's `spawn`) and glibc's `execvp` fall back to for a text script without `#!`.
pub const FALLBACK_SHELL: &str = "/bin/sh";

/// How many leading bytes are inspected to tell a script from a binary. A `#!` line or an ELF magic is at the
/// start; 512 bytes are enough to see a NUL in any binary format worth recognising.
const HEADER_BYTES: usize = 512;

/// A script that exists inside the revision and may be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The canonical path of the script file.
    pub path: PathBuf,
    /// The canonical revision directory (the hook's working directory).
    pub revision_dir: PathBuf,
    /// How to start it.
    pub launch: Launch,
    /// The interpreter named by the `#!` line, if any (for error messages).
    pub interpreter: Option<String>,
}

/// How a script file is started, decided from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `execve` the file itself: it has a `#!` line or is an ELF binary.
    Direct,
    /// Run `/bin/sh FILE`: a text file without `#!`. `execvp` and CodeDeploy's agent do the same on `ENOEXEC`, so
    /// existing scripts without an interpreter line keep working.
    Shell,
}

/// Decide how to start a file from its first bytes, or say why it cannot be started.
pub fn classify_header(header: &[u8]) -> Result<Launch, String> {
    if header.starts_with(b"#!") || header.starts_with(b"\x7fELF") {
        Ok(Launch::Direct)
    } else if header.contains(&0) {
        // Decided here rather than left to `execve`: `execvp` (used when the child switches user) would hand
        // such a file to /bin/sh on ENOEXEC, `posix_spawn` would not, and the outcome must not depend on that.
        Err("binary file that is neither an ELF executable nor a `#!` script".to_owned())
    } else {
        Ok(Launch::Shell)
    }
}

/// True when `location` is a plain relative path that cannot leave the directory it is joined to.
pub fn is_confined(location: &str) -> bool {
    let path = Path::new(location);
    !location.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Find the script of `location` under `script_root` (the revision, or a form-defined deployment's form dir),
/// make it executable and decide how to start it; it will run with `revision_dir` as its working directory.
///
/// Errors are the hook's outcome: [`HookStatus::ScriptMissing`] when nothing is there (a dangling symlink counts
/// as missing), [`HookStatus::NotExecutable`] when it escapes the revision, is not a regular file, cannot be made
/// executable or is a binary this host cannot run.
pub fn resolve(
    script_root: &Path,
    revision_dir: &Path,
    location: &str,
) -> Result<Script, HookStatus> {
    let not_exec = |reason: String| HookStatus::NotExecutable { reason };
    if !is_confined(location) {
        return Err(not_exec(format!(
            "location `{location}` is not a relative path inside the revision (absolute or with `..`)"
        )));
    }
    let joined = script_root.join(location);
    let path = match fs::canonicalize(&joined) {
        Ok(path) => path,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(HookStatus::ScriptMissing),
        Err(e) => {
            return Err(not_exec(format!(
                "cannot resolve {}: {e}",
                joined.display()
            )));
        }
    };
    let root = fs::canonicalize(script_root).map_err(|e| {
        not_exec(format!(
            "cannot resolve script directory {}: {e}",
            script_root.display()
        ))
    })?;
    let cwd = fs::canonicalize(revision_dir).map_err(|e| {
        not_exec(format!(
            "cannot resolve revision directory {}: {e}",
            revision_dir.display()
        ))
    })?;
    if !path.starts_with(&root) || path == root {
        return Err(not_exec(format!(
            "location `{location}` resolves to {}, outside the revision {}",
            path.display(),
            root.display()
        )));
    }
    let meta = fs::metadata(&path)
        .map_err(|e| not_exec(format!("cannot stat {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(not_exec(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    make_executable(&path, meta.permissions().mode()).map_err(|e| {
        not_exec(format!(
            "cannot add the execute bit to {}: {e}",
            path.display()
        ))
    })?;
    let header =
        read_header(&path).map_err(|e| not_exec(format!("cannot read {}: {e}", path.display())))?;
    let launch =
        classify_header(&header).map_err(|why| not_exec(format!("{}: {why}", path.display())))?;
    Ok(Script {
        path,
        revision_dir: cwd,
        launch,
        interpreter: interpreter(&header),
    })
}

/// The interpreter path of a `#!` line.
pub fn interpreter(header: &[u8]) -> Option<String> {
    let line = header.strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    line.split_ascii_whitespace().next().map(str::to_owned)
}

/// The mode a script should have: owner execute always, and execute for group/others wherever they may read.
///
/// Owner execute is what CodeDeploy's `chmod +x` guarantees for the agent's user; mirroring read to execute for
/// group and others lets a `runas` user who can read the script also run it, without granting anything new.
pub fn executable_mode(mode: u32) -> u32 {
    mode | 0o100 | ((mode & 0o044) >> 2)
}

fn make_executable(path: &Path, mode: u32) -> io::Result<()> {
    let wanted = executable_mode(mode);
    if wanted & 0o7777 == mode & 0o7777 {
        return Ok(());
    }
    tracing::debug!(path = %path.display(), from = format_args!("{mode:o}"), to = format_args!("{wanted:o}"),
        "adding execute bits to hook script");
    fs::set_permissions(path, fs::Permissions::from_mode(wanted & 0o7777))
}

fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    fs::File::open(path)?
        .take(HEADER_BYTES as u64)
        .read_to_end(&mut header)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_pick_the_launch() {
        assert_eq!(
            classify_header(b"#!/bin/bash\necho hi\n"),
            Ok(Launch::Direct)
        );
        assert_eq!(
            classify_header(b"\x7fELF\x02\x01\x01\0\0"),
            Ok(Launch::Direct)
        );
        assert_eq!(classify_header(b"echo no shebang\n"), Ok(Launch::Shell));
        assert_eq!(classify_header(b""), Ok(Launch::Shell));
        assert!(classify_header(b"PK\x03\x04\0\0garbage").is_err());
    }

    #[test]
    fn interpreter_lines_are_read() {
        assert_eq!(
            interpreter(b"#! /usr/bin/env python3\nprint()"),
            Some("/usr/bin/env".to_owned())
        );
        assert_eq!(interpreter(b"#!/bin/sh"), Some("/bin/sh".to_owned()));
        assert_eq!(interpreter(b"echo"), None);
    }

    #[test]
    fn locations_must_stay_relative() {
        assert!(is_confined("scripts/start.sh"));
        assert!(is_confined("./start.sh"));
        assert!(!is_confined("/etc/passwd"));
        assert!(!is_confined("scripts/../../x"));
        assert!(!is_confined(""));
    }

    #[test]
    fn execute_bits_follow_read_bits() {
        assert_eq!(executable_mode(0o644), 0o755);
        assert_eq!(executable_mode(0o600), 0o700);
        assert_eq!(executable_mode(0o640), 0o750);
        assert_eq!(executable_mode(0o755), 0o755);
        assert_eq!(executable_mode(0o4644), 0o4755);
    }
}
