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
//!   the hook truncates a file (`O_TRUNC` / `truncate`, shrinking `fd_filestat_set_size` / `set-size`). Deleting
//!   a file gives nothing back: an open descriptor may still hold the data. Directories, symlinks and empty files
//!   are not charged. A component writes files mostly through `wasi:io` output streams, which the guard follows
//!   from the descriptor they were made on ([`component`]).
//!
//! A refusal gives the guest an error (preview 1: `EPERM` for a link, `EDQUOT` for the quota; WASI 0.2:
//! `not-permitted`, `quota`, or `insufficient-space` on a stream — which wasi-libc, and so Rust's std on
//! `wasm32-wasip2`, reports as `EIO`: it does not read a failed stream write's error code) and is recorded: the hook
//! then fails with [`rollcage_proto::HookStatus::SandboxViolation`] naming the grant and the rule, even if the
//! guest ignored the error, because what it meant to leave behind is incomplete; the audit lists the refusal
//! ([`FsGuard::finish`]).
//!
//! Both kinds of hook get the same guard. This module is the state and the decisions (pure), keyed by a
//! descriptor's number — a preview-1 fd, or a WASI 0.2 resource handle (`Resource::rep()`, which the component's
//! table hands out the same way: unique while open, reused after a drop). [`link`] wraps wasmtime-wasi's
//! preview-1 functions with it, [`component`] the `wasi:filesystem` and `wasi:io/streams` methods of components.

pub(crate) mod component;
pub(crate) mod link;

use super::audit::{Audit, Kind, Verdict};
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

/// Do the two names lie in the same directory (same descriptor, same parent path, compared lexically)? A symlink
/// renamed within its directory keeps its meaning. Pure.
pub(crate) fn same_directory(old_dir: u32, old: &str, new_dir: u32, new: &str) -> bool {
    fn parent(p: &str) -> &str {
        let p = p.trim_end_matches('/');
        p.rsplit_once('/').map_or("", |(dir, _)| dir)
    }
    old_dir == new_dir && parent(old) == parent(new)
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

/// Which rule a refusal broke: it decides the audit record's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The symlink rule (a symlink, a hard link to one, a move of one).
    Link,
    /// The write quota.
    Quota,
}

/// The guard's state for one hook run: which descriptors lead into which read-write grant, each grant's account,
/// and the first refusal.
#[derive(Debug, Default)]
pub(crate) struct FsGuard {
    /// Descriptor → index into `grants`, for every descriptor opened (directly or through other tracked
    /// directories) from a read-write grant's preopen.
    fds: HashMap<u32, usize>,
    grants: Vec<Grant>,
    /// `sandbox.dirs` index → index into `grants` (read-only grants have none).
    by_dir: Vec<Option<usize>>,
    /// The first refusal, and how many followed it.
    violation: Option<(Rule, String)>,
    further: u64,
}

impl FsGuard {
    /// The guard of a preview-1 run with this grant (preopen descriptors numbered as `sandbox::build` adds them).
    pub(crate) fn new(spec: &SandboxSpec) -> Self {
        let mut guard = Self::unopened(spec);
        guard.preopened(FIRST_PREOPEN_FD..);
        guard
    }

    /// The guard of a run with this grant before any preopen has a descriptor: a component gets its preopens'
    /// handles only when it calls `get-directories` ([`Self::preopened`]).
    pub(crate) fn unopened(spec: &SandboxSpec) -> Self {
        let mut guard = Self::default();
        for (i, dir) in spec.dirs.iter().enumerate() {
            let Some(quota) = dir.quota_bytes() else {
                guard.by_dir.push(None);
                continue;
            };
            guard.by_dir.push(Some(guard.grants.len()));
            guard.grants.push(Grant {
                label: format!("sandbox.dirs[{i}] (`{}`)", dir.guest_path()),
                quota,
                quota_mib: quota >> 20,
                grown: 0,
            });
        }
        guard
    }

    /// The preopens were handed out as `handles`, in the order `sandbox::build` adds them (the revision, then
    /// `dirs` in order, then `.`): each read-write grant's handle now leads into it, every other one into none.
    /// A component may ask for its preopens more than once; each call gives new handles, all tracked.
    pub(crate) fn preopened(&mut self, handles: impl IntoIterator<Item = u32>) {
        for (i, handle) in handles.into_iter().enumerate() {
            if i > self.by_dir.len() {
                // `.` and anything after it: the revision, read-only.
                self.fds.remove(&handle);
                break;
            }
            match i
                .checked_sub(1)
                .and_then(|d| self.by_dir.get(d).copied().flatten())
            {
                Some(g) => self.fds.insert(handle, g),
                None => self.fds.remove(&handle),
            };
        }
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
        self.record(Rule::Quota, reason);
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
        self.record(Rule::Link, reason);
    }

    /// Record a refused hard link to the symlink `path`.
    pub(crate) fn refuse_hard_link(&mut self, dirfd: u32, path: &str, new: &str) {
        let reason = format!(
            "{}: hard link `{}` to the symlink `{}` refused: hard links to symlinks are not allowed (a symlink's relative target may point elsewhere from the new place)",
            self.place(dirfd),
            clip_head(new, MAX_QUOTED),
            clip_head(path, MAX_QUOTED)
        );
        self.record(Rule::Link, reason);
    }

    /// Record a refused move of the symlink `path` to another directory.
    pub(crate) fn refuse_move(&mut self, dirfd: u32, path: &str, new: &str) {
        let reason = format!(
            "{}: moving the symlink `{}` to `{}` refused: a symlink may only be renamed within its directory (its relative target may point elsewhere from another place)",
            self.place(dirfd),
            clip_head(path, MAX_QUOTED),
            clip_head(new, MAX_QUOTED)
        );
        self.record(Rule::Link, reason);
    }

    fn place(&self, fd: u32) -> String {
        self.grant_of(fd)
            .and_then(|g| self.grants.get(g))
            .map_or_else(|| "the sandbox".to_owned(), |g| g.label.clone())
    }

    fn record(&mut self, rule: Rule, reason: String) {
        tracing::warn!(%reason, "wasm hook refused by the sandbox");
        if self.violation.is_none() {
            self.violation = Some((rule, reason));
        } else {
            self.further += 1;
        }
    }

    /// The first refusal of the run (with a count of the others), if any.
    pub(crate) fn violation(&self) -> Option<String> {
        let (_, first) = self.violation.as_ref()?;
        Some(match self.further {
            0 => first.clone(),
            n => format!("{first} (and {n} more refusals)"),
        })
    }

    /// At the end of a run: the violation ([`Self::violation`]), also recorded in the audit as denied — a `link`
    /// record for the symlink rule, a `file` record for the quota.
    pub(crate) fn finish(&self, audit: &mut Audit) -> Option<String> {
        let violation = self.violation()?;
        let kind = match self.violation.as_ref().map(|(rule, _)| *rule) {
            Some(Rule::Quota) => Kind::File,
            _ => Kind::Link,
        };
        audit.record(kind, Verdict::Denied, &violation);
        Some(violation)
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
    fn component_preopen_handles_are_tracked_in_the_order_they_are_handed_out() {
        let spec = SandboxSpec {
            dirs: vec![
                grant(DirAccess::ReadOnly, None),
                grant(DirAccess::ReadWrite, Some(1)),
            ],
            ..SandboxSpec::default()
        };
        let mut g = FsGuard::unopened(&spec);
        assert_eq!(g.grant_of(4), None, "no handle before get-directories");
        // The revision, dirs[0] (read-only), dirs[1] (read-write), `.`.
        g.preopened([7, 9, 2, 12]);
        assert_eq!(
            [7, 9, 2, 12].map(|h| g.grant_of(h)),
            [None, None, Some(0), None]
        );
        g.preopened([20, 21, 22, 23]);
        assert_eq!(
            (g.grant_of(2), g.grant_of(22)),
            (Some(0), Some(0)),
            "a second call's handles are tracked too"
        );
        g.closed(2);
        g.preopened([2, 5]);
        assert_eq!(g.grant_of(2), None, "a reused handle is the revision now");
    }

    #[test]
    fn a_rename_stays_in_its_directory_only_with_the_same_descriptor_and_parent() {
        assert!(same_directory(4, "tmp-link", 4, "current"));
        assert!(same_directory(4, "a/tmp", 4, "a/current/"));
        assert!(!same_directory(4, "a/tmp", 4, "current"));
        assert!(!same_directory(4, "tmp", 5, "tmp"));
    }

    #[test]
    fn the_audit_records_the_violation_by_its_rule() {
        let spec = SandboxSpec {
            dirs: vec![grant(DirAccess::ReadWrite, Some(1))],
            ..SandboxSpec::default()
        };
        let mut audit = Audit::default();
        assert_eq!(FsGuard::new(&spec).finish(&mut audit), None);
        let mut g = FsGuard::new(&spec);
        assert!(!g.admit(0, 2 << 20));
        let v = g.finish(&mut audit).unwrap_or_default();
        let mut g = FsGuard::new(&spec);
        g.refuse_hard_link(4, "a", "b");
        g.finish(&mut audit);
        let listed = audit.listed();
        assert_eq!(
            listed
                .iter()
                .map(|r| (r.kind, r.verdict))
                .collect::<Vec<_>>(),
            [(Kind::File, Verdict::Denied), (Kind::Link, Verdict::Denied)]
        );
        assert_eq!(listed[0].detail, v);
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
