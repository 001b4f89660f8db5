//! The capability audit of one wasm hook run: every use of a granted capability the host sees — a file or
//! directory opened under a grant (with its guest path, read or write), a directory listed, the granted environment
//! variables handed over, an HTTP request (method, URL, status, bytes) — and every attempt the sandbox denied.
//!
//! Bounded: the first [`MAX_LISTED`] records are kept in full (each detail clipped to [`MAX_DETAIL`] bytes); every
//! later one is only counted, and the summary says how many were left out. So a guest that opens a file in a loop
//! costs the agent a counter, not memory. Pure: the runner's host-call wrappers record, the runner writes the
//! result as `[capability]` lines into `scripts.log` and the step's report tail ([`Audit::lines`]).
//!
//! What the host cannot see is not in it: a preview-1 guest's libc resolves absolute paths against its preopens
//! itself, so `open("/etc/passwd")` outside every grant fails inside the guest without a host call; a guest reads
//! its environment as one block, so the names it looks up in it are its own business (what it was given is
//! recorded).

use rollcage_proto::SandboxSpec;
use rollcage_proto::clip::clip_head;
use rollcage_proto::hostcall::REVISION_MOUNT;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Records kept in full per run; later ones are counted. A hook that validates a service or renders a config
/// touches a handful of files; 32 lines (~2 KiB) also leave most of the report's 8 KiB tail to the hook's output.
pub(crate) const MAX_LISTED: usize = 32;

/// Longest detail (a path, a URL) kept in a record.
pub(crate) const MAX_DETAIL: usize = 256;

/// What kind of capability was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// Opening a file or directory (read, write).
    File,
    /// Listing a directory.
    Dir,
    /// The environment handed over.
    Env,
    /// An outgoing HTTP request.
    Http,
    /// A socket or a name lookup (components only; always denied).
    Net,
    /// Making a link or renaming (the filesystem guard's rules).
    Link,
}

impl Kind {
    /// The label used in lines and metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Env => "env",
            Self::Http => "http",
            Self::Net => "net",
            Self::Link => "link",
        }
    }
}

/// Whether the sandbox let it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Verdict {
    /// Allowed (the call may still have failed for another reason, e.g. a missing file; the detail says so).
    Allowed,
    /// Refused by the grant.
    Denied,
}

impl Verdict {
    /// The label used in lines and metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

/// One recorded use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    pub(crate) verdict: Verdict,
    /// What was done, e.g. `read /revision/app.conf`.
    pub(crate) detail: String,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.kind.label(),
            self.detail,
            self.verdict.label()
        )
    }
}

/// The audit of one run.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    listed: Vec<Record>,
    counts: BTreeMap<(Kind, Verdict), u64>,
    unlisted: u64,
}

impl Audit {
    /// Record one use.
    pub(crate) fn record(&mut self, kind: Kind, verdict: Verdict, detail: impl AsRef<str>) {
        *self.counts.entry((kind, verdict)).or_default() += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(Record {
                kind,
                verdict,
                detail: clip_head(detail.as_ref(), MAX_DETAIL),
            });
        } else {
            self.unlisted += 1;
        }
    }

    /// Count `n` uses that are not listed (recorded elsewhere past their own cap, e.g. `wasi:http`'s log).
    pub(crate) fn count_unlisted(&mut self, kind: Kind, verdict: Verdict, n: u64) {
        if n > 0 {
            *self.counts.entry((kind, verdict)).or_default() += n;
            self.unlisted += n;
        }
    }

    /// How many uses of each kind with each verdict (all of them, listed or not).
    pub(crate) fn counts(&self) -> impl Iterator<Item = (Kind, Verdict, u64)> + '_ {
        self.counts.iter().map(|(&(k, v), &n)| (k, v, n))
    }

    /// The counts as the outcome carries them (for `/metrics`).
    pub(crate) fn wire_counts(&self) -> Vec<rollcage_proto::CapabilityCount> {
        self.counts()
            .map(|(k, v, count)| rollcage_proto::CapabilityCount {
                kind: k.label().to_owned(),
                result: v.label().to_owned(),
                count,
            })
            .collect()
    }

    /// The records kept in full.
    #[cfg(test)]
    pub(crate) fn listed(&self) -> &[Record] {
        &self.listed
    }

    /// The lines for `scripts.log` and the report: each listed record, then (if anything was recorded) a summary
    /// with the counts and how many were not listed.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.listed.iter().map(Record::to_string).collect();
        if self.counts.is_empty() {
            return lines;
        }
        let counts: Vec<String> = self
            .counts()
            .map(|(k, v, n)| format!("{} {}={n}", k.label(), v.label()))
            .collect();
        let mut summary = format!("summary: {}", counts.join(", "));
        if self.unlisted > 0 {
            summary.push_str(&format!(
                "; {} more not listed (the first {MAX_LISTED} are)",
                self.unlisted
            ));
        }
        lines.push(summary);
        lines
    }
}

/// The guest path of each open preview-1 directory descriptor, so a record can name `/data/x` rather than
/// "`x` under descriptor 5". Preopens are numbered as `sandbox::builder` adds them: 3 the revision, then `dirs` in
/// order, then `.` (the revision again, for relative paths).
#[derive(Debug, Default)]
pub(crate) struct FdPaths(HashMap<u32, String>);

/// The first preopen descriptor (0–2 are stdio).
const FIRST_PREOPEN_FD: u32 = 3;

impl FdPaths {
    /// The preopens of a run with this grant.
    pub(crate) fn preopens(spec: &SandboxSpec) -> Self {
        let mut paths = HashMap::new();
        paths.insert(FIRST_PREOPEN_FD, REVISION_MOUNT.to_owned());
        let mut fd = FIRST_PREOPEN_FD;
        for dir in &spec.dirs {
            fd += 1;
            paths.insert(fd, dir.guest_path().to_owned());
        }
        paths.insert(fd + 1, ".".to_owned());
        Self(paths)
    }

    /// The guest path of `rel` opened under `dirfd` (`?/rel` when the descriptor is unknown).
    pub(crate) fn path(&self, dirfd: u32, rel: &str) -> String {
        join(self.0.get(&dirfd).map_or("?", String::as_str), rel)
    }

    /// `new` was opened as `rel` under `dirfd`.
    pub(crate) fn opened(&mut self, dirfd: u32, rel: &str, new: u32) {
        let path = self.path(dirfd, rel);
        self.0.insert(new, path);
    }

    /// The guest path of `fd` itself.
    pub(crate) fn of(&self, fd: u32) -> String {
        self.0
            .get(&fd)
            .cloned()
            .unwrap_or_else(|| format!("fd {fd}"))
    }

    /// `fd` was closed.
    pub(crate) fn closed(&mut self, fd: u32) {
        self.0.remove(&fd);
    }

    /// `from` was renumbered to `to`.
    pub(crate) fn renumbered(&mut self, from: u32, to: u32) {
        match self.0.remove(&from) {
            Some(p) => self.0.insert(to, p),
            None => self.0.remove(&to),
        };
    }
}

/// `read`, `write` or `read-write`, from whether an open asked to read and to write.
pub(crate) fn access(read: bool, write: bool) -> &'static str {
    match (read, write) {
        (_, false) => "read",
        (false, true) => "write",
        (true, true) => "read-write",
    }
}

/// A guest path: `rel` under the directory `dir` (a guest path itself), without doubling slashes. `..` and `.`
/// are kept as the guest wrote them — the record shows what was asked.
pub(crate) fn join(dir: &str, rel: &str) -> String {
    if rel.starts_with('/') || dir.is_empty() || dir == "." {
        rel.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_past_the_cap_are_counted_and_the_summary_says_so() {
        let mut a = Audit::default();
        a.record(Kind::Env, Verdict::Allowed, "APP_PORT");
        for i in 0..MAX_LISTED + 10 {
            a.record(Kind::File, Verdict::Allowed, format!("read /revision/f{i}"));
        }
        a.record(Kind::File, Verdict::Denied, "read /revision/../etc/passwd");
        assert_eq!(a.listed().len(), MAX_LISTED);
        let lines = a.lines();
        assert_eq!(lines.len(), MAX_LISTED + 1);
        assert_eq!(lines[0], "env APP_PORT allowed");
        assert_eq!(lines[1], "file read /revision/f0 allowed");
        assert_eq!(
            lines[MAX_LISTED],
            format!(
                "summary: file allowed={}, file denied=1, env allowed=1; 12 more not listed (the first {MAX_LISTED} are)",
                MAX_LISTED + 10
            )
        );
    }

    #[test]
    fn the_labels_are_the_wire_s() {
        for k in [
            Kind::File,
            Kind::Dir,
            Kind::Env,
            Kind::Http,
            Kind::Net,
            Kind::Link,
        ] {
            assert!(
                rollcage_proto::CAPABILITY_KINDS.contains(&k.label()),
                "{k:?}"
            );
        }
        for v in [Verdict::Allowed, Verdict::Denied] {
            assert!(
                rollcage_proto::CAPABILITY_RESULTS.contains(&v.label()),
                "{v:?}"
            );
        }
        let mut a = Audit::default();
        a.record(Kind::Net, Verdict::Denied, "tcp socket (ipv4)");
        a.record(Kind::Net, Verdict::Denied, "name lookup x");
        assert_eq!(
            a.wire_counts(),
            [rollcage_proto::CapabilityCount {
                kind: "net".to_owned(),
                result: "denied".to_owned(),
                count: 2
            }]
        );
    }

    #[test]
    fn details_are_clipped_and_an_empty_audit_has_no_lines() {
        assert!(Audit::default().lines().is_empty());
        let mut a = Audit::default();
        a.record(Kind::Http, Verdict::Denied, "x".repeat(10_000));
        assert!(
            a.listed()[0].detail.len() <= MAX_DETAIL,
            "{}",
            a.listed()[0].detail
        );
    }

    #[test]
    fn descriptors_map_to_guest_paths() {
        let spec = SandboxSpec {
            dirs: vec![rollcage_proto::DirGrant {
                host: "/h".to_owned(),
                guest: Some("/data".to_owned()),
                access: rollcage_proto::DirAccess::ReadOnly,
                max_mb: None,
            }],
            ..SandboxSpec::default()
        };
        let mut p = FdPaths::preopens(&spec);
        assert_eq!(p.path(3, "a.txt"), "/revision/a.txt");
        assert_eq!(p.path(4, "x"), "/data/x");
        assert_eq!(p.path(5, "sub/x"), "sub/x");
        p.opened(4, "deep", 9);
        assert_eq!(p.path(9, "f"), "/data/deep/f");
        p.renumbered(9, 10);
        assert_eq!(
            (p.of(9), p.of(10)),
            ("fd 9".to_owned(), "/data/deep".to_owned())
        );
        p.closed(10);
        assert_eq!(p.path(10, "f"), "?/f");
    }

    #[test]
    fn paths_join_like_the_guest_asked() {
        assert_eq!(join("/revision", "data.txt"), "/revision/data.txt");
        assert_eq!(join("/", "etc"), "/etc");
        assert_eq!(join(".", "sub/x"), "sub/x");
        assert_eq!(join("/revision", "../x"), "/revision/../x");
        assert_eq!(access(true, false), "read");
        assert_eq!(access(true, true), "read-write");
        assert_eq!(access(false, true), "write");
    }
}
