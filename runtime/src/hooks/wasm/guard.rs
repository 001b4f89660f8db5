//! The filesystem guard of a hook's read-write grants (issue 12): what wasmtime's capability checks do not cover.
//!
//! wasmtime-wasi confines every *path a guest opens* to its preopens, but two things a guest leaves behind reach
//! further, because someone else uses them later — a root hook, the application, an operator's shell:
//! - **Symlinks.** A symlink's target is not resolved when it is made, so `mine -> ../../../../etc` or
//!   `mine -> /etc` can be created inside a grant and followed later by whoever trusts the directory. The rule
//!   here: a symlink made by a hook must have a relative target that never climbs above the directory the link is
//!   in (checked lexically, component by component; [`check_symlink_target`]). That is stricter than "stays inside
//!   the grant", on purpose: a relative target is resolved from wherever the link is, and a link (or the directory
//!   holding it) can be renamed or hard-linked to a shallower place afterwards. A target that never climbs above
//!   its own directory stays inside the grant wherever the link moves; one that climbs "only within the grant"
//!   does not. Hard links to a symlink, and renaming a symlink into another directory, are refused whatever its
//!   target, for the same reason (a symlink already in the grant, made by someone else, may climb); renaming one
//!   within its directory (the `current -> releases/v3` switch) is fine. Known limit: renaming a *directory* that
//!   holds such foreign climbing symlinks is not checked (it would need a walk of the directory per rename).
//! - **Disk space.** A grant is a directory on the host's disk. Each read-write grant has a byte quota
//!   (`max_mb`, [`rollcage_proto::sandbox::DEFAULT_GRANT_MAX_MB`] by default): how much one run may grow the files
//!   under it. What the directory held before the run does not count — a grant is often an application's data
//!   directory, which may be large and is not the hook's to pay for — so nothing is walked at start. Growth is
//!   measured per write as the file's size after minus before (so append mode, `pwrite` past the end and
//!   `ftruncate` are all the same case), checked *before* the write against its worst case, and given back when
//!   the hook truncates a file (`O_TRUNC`, shrinking `fd_filestat_set_size`). Deleting a file gives nothing back:
//!   an open descriptor may still hold the data. Directories, symlinks and empty files are not charged.
//!
//! A refusal gives the guest an errno (`EPERM` for a link, `EDQUOT` for the quota) and is recorded: the hook then
//! fails with [`rollcage_proto::HookStatus::SandboxViolation`] naming the grant and the rule, even if the guest
//! ignored the error, because what it meant to leave behind is incomplete.
//!
//! This module is the state and the decisions (pure); [`link`] wraps wasmtime-wasi's preview-1 functions with them.

pub(crate) mod link;

use rollcage_proto::SandboxSpec;
use rollcage_proto::clip::clip_head;
use std::collections::HashMap;

/// The first descriptor number wasmtime-wasi gives a preopen (0–2 are stdio); preopens follow in the order they
/// were added (`sandbox::build`: the revision, then `dirs` in order, then `.`).
const FIRST_PREOPEN_FD: u32 = 3;

/// Longest piece of guest-chosen text (a symlink target, a path) quoted in a refusal.
const MAX_QUOTED: usize = 200;

/// Why a symlink target is refused. Pure data; [`FsGuard::refuse_symlink`] turns it into the recorded reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetRefusal {
    /// `/...`: resolved from the host's root, outside every grant.
    Absolute,
    /// A `..` that leaves the directory the link is in.
    Climbs,
    /// An empty target.
    Empty,
}

impl TargetRefusal {
    fn describe(self) -> &'static str {
        match self {
            Self::Absolute => "its target is absolute (it would be resolved from the host's root)",
            Self::Climbs => "its target climbs above the directory the link is in",
            Self::Empty => "its target is empty",
        }
    }
}

/// The symlink rule: relative, and never above the link's own directory at any step. Pure.
pub(crate) fn check_symlink_target(target: &str) -> Result<(), TargetRefusal> {
    if target.is_empty() {
        return Err(TargetRefusal::Empty);
    }
    if target.starts_with('/') {
        return Err(TargetRefusal::Absolute);
    }
    let mut depth: u64 = 0;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => depth = depth.checked_sub(1).ok_or(TargetRefusal::Climbs)?,
            _ => depth += 1,
        }
    }
    Ok(())
}

/// The worst-case growth of a write of `len` bytes at `pos` to a file of `size` bytes: what it adds if it lands at
/// `pos`, or `len` if the descriptor appends. Pure.
pub(crate) fn worst_growth(size: u64, pos: u64, len: u64) -> u64 {
    pos.saturating_add(len).saturating_sub(size).max(len)
}

/// One read-write grant's account.
#[derive(Debug)]
struct Grant {
    /// `sandbox.dirs[i] (`/guest`)`, for messages.
    label: String,
    /// Quota in bytes.
    quota: u64,
    /// `max_mb` as configured (or defaulted), for messages.
    quota_mib: u64,
    /// Net growth of the files under the grant in this run, in bytes (negative after truncating old content).
    grown: i128,
}

/// The guard's state for one hook run: which descriptors lead into which read-write grant, each grant's account,
/// and the first refusal.
#[derive(Debug, Default)]
pub(crate) struct FsGuard {
    /// Descriptor → index into `grants`, for every descriptor opened (directly or through other tracked
    /// directories) from a read-write grant's preopen.
    fds: HashMap<u32, usize>,
    grants: Vec<Grant>,
    /// The first refusal, and how many followed it.
    violation: Option<String>,
    further: u64,
}

impl FsGuard {
    /// The guard of a run with this grant (preopen descriptors numbered as `sandbox::build` adds them).
    pub(crate) fn new(spec: &SandboxSpec) -> Self {
        let mut guard = Self::default();
        for (i, dir) in spec.dirs.iter().enumerate() {
            let Some(quota) = dir.quota_bytes() else {
                continue;
            };
            let fd =
                FIRST_PREOPEN_FD + 1 + u32::try_from(i).unwrap_or(u32::MAX - FIRST_PREOPEN_FD - 1);
            guard.fds.insert(fd, guard.grants.len());
            guard.grants.push(Grant {
                label: format!("sandbox.dirs[{i}] (`{}`)", dir.guest_path()),
                quota,
                quota_mib: quota >> 20,
                grown: 0,
            });
        }
        guard
    }

    /// The grant a descriptor leads into, if it is a tracked one.
    pub(crate) fn grant_of(&self, fd: u32) -> Option<usize> {
        self.fds.get(&fd).copied()
    }

    /// A descriptor was opened: `from`'s grant (if any) is now also `new`'s; an untracked `from` clears whatever
    /// an earlier, closed descriptor with the same number left.
    pub(crate) fn opened(&mut self, from: u32, new: u32) {
        match self.grant_of(from) {
            Some(g) => self.fds.insert(new, g),
            None => self.fds.remove(&new),
        };
    }

    /// A descriptor was closed.
    pub(crate) fn closed(&mut self, fd: u32) {
        self.fds.remove(&fd);
    }

    /// `fd_renumber(from, to)` succeeded: `to` is now what `from` was, and `from` is closed.
    pub(crate) fn renumbered(&mut self, from: u32, to: u32) {
        match self.fds.remove(&from) {
            Some(g) => self.fds.insert(to, g),
            None => self.fds.remove(&to),
        };
    }

    /// May grant `g` grow by `growth` bytes? Records the refusal when not.
    pub(crate) fn admit(&mut self, g: usize, growth: u64) -> bool {
        let Some(grant) = self.grants.get(g) else {
            return true;
        };
        if grant.grown + i128::from(growth) <= i128::from(grant.quota) {
            return true;
        }
        let reason = format!(
            "{}: write quota of {} MiB (max_mb) exceeded: the hook tried to add more than {} bytes to the files under it in this run",
            grant.label, grant.quota_mib, grant.quota
        );
        self.record(reason);
        false
    }

    /// Grant `g`'s files changed size by `delta` bytes (negative: truncated).
    pub(crate) fn grew(&mut self, g: usize, delta: i128) {
        if let Some(grant) = self.grants.get_mut(g) {
            grant.grown += delta;
        }
    }

    /// Record a refused symlink made through descriptor `dirfd`.
    pub(crate) fn refuse_symlink(
        &mut self,
        dirfd: u32,
        link: &str,
        target: &str,
        why: TargetRefusal,
    ) {
        let reason = format!(
            "{}: symlink `{}` -> `{}` refused: {} (a hook's symlinks must stay inside their own directory)",
            self.place(dirfd),
            clip_head(link, MAX_QUOTED),
            clip_head(target, MAX_QUOTED),
            why.describe()
        );
        self.record(reason);
    }

    /// Record a refused hard link to the symlink `path`.
    pub(crate) fn refuse_hard_link(&mut self, dirfd: u32, path: &str, new: &str) {
        let reason = format!(
            "{}: hard link `{}` to the symlink `{}` refused: hard links to symlinks are not allowed (a symlink's relative target may point elsewhere from the new place)",
            self.place(dirfd),
            clip_head(new, MAX_QUOTED),
            clip_head(path, MAX_QUOTED)
        );
        self.record(reason);
    }

    /// Record a refused move of the symlink `path` to another directory.
    pub(crate) fn refuse_move(&mut self, dirfd: u32, path: &str, new: &str) {
        let reason = format!(
            "{}: moving the symlink `{}` to `{}` refused: a symlink may only be renamed within its directory (its relative target may point elsewhere from another place)",
            self.place(dirfd),
            clip_head(path, MAX_QUOTED),
            clip_head(new, MAX_QUOTED)
        );
        self.record(reason);
    }

    fn place(&self, fd: u32) -> String {
        self.grant_of(fd)
            .and_then(|g| self.grants.get(g))
            .map_or_else(|| "the sandbox".to_owned(), |g| g.label.clone())
    }

    fn record(&mut self, reason: String) {
        tracing::warn!(%reason, "wasm hook refused by the sandbox");
        if self.violation.is_none() {
            self.violation = Some(reason);
        } else {
            self.further += 1;
        }
    }

    /// The first refusal of the run (with a count of the others), if any.
    pub(crate) fn violation(&self) -> Option<String> {
        let first = self.violation.as_ref()?;
        Some(match self.further {
            0 => first.clone(),
            n => format!("{first} (and {n} more refusals)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::{DirAccess, DirGrant};

    #[test]
    fn symlink_targets_may_not_leave_their_directory() {
        for ok in ["a", "a/b", "./a", "a/../b", "a/b/../../c", "a//b/", "x/.."] {
            assert_eq!(check_symlink_target(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("../../../../etc", TargetRefusal::Climbs),
            ("..", TargetRefusal::Climbs),
            ("a/../..", TargetRefusal::Climbs),
            ("a/../../a", TargetRefusal::Climbs),
            ("./../x", TargetRefusal::Climbs),
            ("/etc", TargetRefusal::Absolute),
            ("//etc", TargetRefusal::Absolute),
            ("", TargetRefusal::Empty),
        ] {
            assert_eq!(check_symlink_target(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn worst_growth_covers_append_and_writes_past_the_end() {
        assert_eq!(worst_growth(100, 100, 10), 10);
        assert_eq!(
            worst_growth(100, 0, 10),
            10,
            "an appending descriptor adds len"
        );
        assert_eq!(worst_growth(100, 200, 10), 110, "a hole counts");
        assert_eq!(worst_growth(0, u64::MAX, 10), u64::MAX);
    }

    fn grant(access: DirAccess, max_mb: Option<u64>) -> DirGrant {
        DirGrant {
            host: "/h".to_owned(),
            guest: Some("/data".to_owned()),
            access,
            max_mb,
        }
    }

    #[test]
    fn only_read_write_grants_are_tracked_from_their_preopen_descriptor() {
        let spec = SandboxSpec {
            dirs: vec![
                grant(DirAccess::ReadOnly, None),
                grant(DirAccess::ReadWrite, Some(1)),
            ],
            ..SandboxSpec::default()
        };
        let mut g = FsGuard::new(&spec);
        assert_eq!(g.grant_of(4), None, "dirs[0] is read-only");
        assert_eq!(g.grant_of(5), Some(0));
        g.opened(5, 9);
        g.opened(9, 10);
        assert_eq!(
            g.grant_of(10),
            Some(0),
            "a directory opened from a grant stays in it"
        );
        g.renumbered(10, 11);
        assert_eq!((g.grant_of(10), g.grant_of(11)), (None, Some(0)));
        g.opened(3, 11);
        assert_eq!(
            g.grant_of(11),
            None,
            "a reused number from the revision is not in the grant"
        );
    }

    #[test]
    fn the_quota_counts_net_growth_and_names_the_grant() {
        let spec = SandboxSpec {
            dirs: vec![grant(DirAccess::ReadWrite, Some(1))],
            ..SandboxSpec::default()
        };
        let mut g = FsGuard::new(&spec);
        assert!(g.admit(0, 1 << 20));
        g.grew(0, 1 << 20);
        assert!(g.violation().is_none());
        g.grew(0, -(1 << 19));
        assert!(g.admit(0, 1 << 19), "truncating gave the bytes back");
        assert!(!g.admit(0, (1 << 19) + 1));
        let v = g.violation().unwrap_or_default();
        assert!(
            v.contains("sandbox.dirs[0] (`/data`)") && v.contains("1 MiB (max_mb)"),
            "{v}"
        );
    }

    #[test]
    fn refusals_keep_the_first_reason_and_count_the_rest() {
        let mut g = FsGuard::new(&SandboxSpec::default());
        g.refuse_symlink(4, "mine", "../../../../etc", TargetRefusal::Climbs);
        g.refuse_hard_link(4, "mine", "other");
        let v = g.violation().unwrap_or_default();
        assert!(
            v.starts_with("the sandbox: symlink `mine` -> `../../../../etc` refused"),
            "{v}"
        );
        assert!(v.ends_with("(and 1 more refusals)"), "{v}");
    }
}
