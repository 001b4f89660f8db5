//! What a hook may leave in a read-write grant — no symlink out of its directory, no hard link to a symlink, no
//! symlink moved to another directory, no more than `max_mb` of growth — checked once for both kinds of hook:
//! each case takes the test program (`TEST_GRANT` / `TEST_FS` for preview-1 modules, `P2_TEST_GRANT` /
//! `P2_TEST_FS` for components) and `wasm_hooks.rs` and `wasm_components.rs` each run every case. Each refusal fails
//! the hook with `SandboxViolation` naming the grant, is listed in the audit, and nothing escaping is left behind.

use super::{Harness, TestResult, args};
use rollcage_proto::{DirAccess, DirGrant, HookOutcome, HookStatus, SandboxSpec};
use std::path::{Path, PathBuf};

/// A harness plus a grant dir `data/` (read-write at `/data`, after a read-only grant so that the grant is not the
/// first preopen) and a directory outside it.
pub struct Grant {
    pub h: Harness,
    pub data: PathBuf,
    /// The `grant` test program (module or component).
    program: String,
}

impl Grant {
    pub fn new(program: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let h = Harness::new()?;
        let data = h.dir.path().join("data");
        std::fs::create_dir_all(data.join("deep/er"))?;
        std::fs::create_dir_all(h.dir.path().join("ro"))?;
        Ok(Self {
            h,
            data,
            program: program.to_owned(),
        })
    }

    fn sandbox(&self, max_mb: Option<u64>, a: &[&str]) -> SandboxSpec {
        SandboxSpec {
            dirs: vec![
                DirGrant {
                    host: self.h.dir.path().join("ro").display().to_string(),
                    guest: Some("/ro".to_owned()),
                    access: DirAccess::ReadOnly,
                    max_mb: None,
                },
                DirGrant {
                    host: self.data.display().to_string(),
                    guest: Some("/data".to_owned()),
                    access: DirAccess::ReadWrite,
                    max_mb,
                },
            ],
            ..args(a)
        }
    }

    pub async fn run(
        &self,
        max_mb: Option<u64>,
        a: &[&str],
    ) -> Result<HookOutcome, std::io::Error> {
        self.h.run(&self.program, 30, self.sandbox(max_mb, a)).await
    }

    /// Every symlink under the grant, with its target.
    pub fn symlinks(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut found = Vec::new();
        let mut todo = vec![self.data.clone()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = e.path();
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.file_type().is_symlink() => {
                        found.push((p.clone(), std::fs::read_link(&p).unwrap_or_default()));
                    }
                    Ok(m) if m.is_dir() => todo.push(p),
                    _ => {}
                }
            }
        }
        found.sort();
        found
    }

    /// The size of `name` under the grant dir.
    pub fn size(&self, name: &str) -> Result<u64, std::io::Error> {
        Ok(std::fs::metadata(self.data.join(name))?.len())
    }
}

/// The reason of a `SandboxViolation` outcome (panics on any other).
pub fn violation(out: &HookOutcome) -> &str {
    match &out.status {
        HookStatus::SandboxViolation { reason } => reason,
        other => panic!(
            "expected a sandbox violation, got {other:?}; output: {}",
            out.log_tail
        ),
    }
}

/// The refusal is in the audit: a denied `[capability]` line of `kind` starting with the grant's label.
fn assert_audited(out: &HookOutcome, kind: &str) {
    let start = format!("[capability] {kind} sandbox.dirs[1] (`/data`): ");
    assert!(
        out.log_tail
            .lines()
            .any(|l| l.starts_with(&start) && l.ends_with(" denied")),
        "no `{start}… denied` line in {}",
        out.log_tail
    );
}

pub async fn a_symlink_climbing_out_of_the_grant_is_refused_and_fails_the_hook(
    program: &str,
) -> TestResult {
    let g = Grant::new(program)?;
    for (target, link) in [
        ("../../../../etc", "/data/mine"),
        ("../../../../etc", "/data/deep/er/mine"),
        ("er/../../..", "/data/deep/mine"),
        ("..", "/data/mine"),
    ] {
        let out = g.run(None, &["symlink", target, link]).await?;
        let reason = violation(&out);
        assert!(
            reason.contains("sandbox.dirs[1] (`/data`)")
                && reason.contains(target)
                && reason.contains("climbs above the directory the link is in"),
            "{reason}"
        );
        assert_eq!(
            HookStatus::SandboxViolation {
                reason: reason.to_owned()
            }
            .code(),
            13
        );
        // The guest saw the refusal (and ignored it; the hook failed anyway).
        assert!(out.log_tail.contains("denied:"), "{}", out.log_tail);
        assert_audited(&out, "link");
        assert_eq!(
            g.symlinks(),
            Vec::<(PathBuf, PathBuf)>::new(),
            "{target} -> left a link"
        );
    }
    Ok(())
}

pub async fn an_absolute_symlink_target_is_refused(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    let out = g
        .run(None, &["symlink", "/etc/passwd", "/data/mine"])
        .await?;
    let reason = violation(&out);
    assert!(reason.contains("absolute"), "{reason}");
    assert!(g.symlinks().is_empty());
    Ok(())
}

pub async fn a_symlink_inside_its_directory_is_allowed(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    let out = g
        .run(None, &["symlink", "deep/er/../er", "/data/current"])
        .await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert_eq!(
        g.symlinks(),
        vec![(g.data.join("current"), PathBuf::from("deep/er/../er"))]
    );
    Ok(())
}

pub async fn a_hard_link_to_a_symlink_is_refused(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    // Links already in the grant (made by someone else): one pointing out, one that stays inside only at its
    // depth and would leave the grant from the top.
    std::os::unix::fs::symlink("../../../../etc", g.data.join("out"))?;
    std::os::unix::fs::symlink("../../x", g.data.join("deep/er/up"))?;
    let before = g.symlinks();
    for (from, to) in [
        ("/data/out", "/data/mine"),
        ("/data/deep/er/up", "/data/up2"),
    ] {
        let out = g.run(None, &["hardlink", from, to]).await?;
        let reason = violation(&out);
        assert!(
            reason.contains("sandbox.dirs[1] (`/data`)") && reason.contains("hard link"),
            "{reason}"
        );
        assert_eq!(g.symlinks(), before, "{from} -> {to}");
    }
    // A hard link to a regular file is fine.
    std::fs::write(g.data.join("plain"), "x")?;
    let out = g
        .run(None, &["hardlink", "/data/plain", "/data/plain2"])
        .await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert_eq!(std::fs::read_to_string(g.data.join("plain2"))?, "x");
    Ok(())
}

pub async fn a_symlink_is_renamed_within_its_directory_only(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    // The `current` switch: a new link made beside the old one and renamed over it.
    std::os::unix::fs::symlink("deep", g.data.join("current"))?;
    let out = g.run(None, &["symlink", "deep/er", "/data/next"]).await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    let out = g
        .run(None, &["rename", "/data/next", "/data/current"])
        .await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert_eq!(
        std::fs::read_link(g.data.join("current"))?,
        PathBuf::from("deep/er")
    );
    // A link someone else made, harmless at its depth, may not be moved up to where it points out.
    std::os::unix::fs::symlink("../../x", g.data.join("deep/er/up"))?;
    let out = g
        .run(None, &["rename", "/data/deep/er/up", "/data/up"])
        .await?;
    let reason = violation(&out);
    assert!(reason.contains("moving the symlink"), "{reason}");
    assert!(
        !g.data.join("up").exists() && std::fs::symlink_metadata(g.data.join("deep/er/up")).is_ok()
    );
    Ok(())
}

pub async fn writing_past_the_quota_fails_the_hook_naming_the_grant(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    let out = g.run(Some(1), &["fill", "/data/big", "2"]).await?;
    let reason = violation(&out);
    assert!(
        reason.contains("sandbox.dirs[1] (`/data`)")
            && reason.contains("write quota of 1 MiB (max_mb)"),
        "{reason}"
    );
    assert!(out.log_tail.contains("denied:"), "{}", out.log_tail);
    assert_audited(&out, "file");
    let size = g.size("big")?;
    assert!(size <= 1 << 20, "the file grew past the quota: {size}");
    Ok(())
}

pub async fn rewriting_a_file_within_the_quota_is_not_charged_twice(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    // 3 x 1 MiB into the same file, truncated each time: 1 MiB of growth, under a 2 MiB quota.
    let out = g.run(Some(2), &["fill", "/data/f", "1", "3"]).await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert_eq!(g.size("f")?, 1 << 20);
    // Content already in the grant does not count.
    std::fs::write(g.data.join("old"), vec![0u8; 3 << 20])?;
    let out = g.run(Some(2), &["fill", "/data/g", "1"]).await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    Ok(())
}

pub async fn appending_to_a_file_counts_what_it_adds_wherever_the_position_was(
    program: &str,
) -> TestResult {
    let g = Grant::new(program)?;
    // An appending descriptor starts at position 0 of a 3 MiB file: every write still adds its length.
    std::fs::write(g.data.join("log"), vec![1u8; 3 << 20])?;
    let out = g.run(Some(2), &["append", "/data/log", "1"]).await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert_eq!(g.size("log")?, 4 << 20);
    let out = g.run(Some(2), &["append", "/data/log", "3"]).await?;
    let reason = violation(&out);
    assert!(reason.contains("write quota of 2 MiB"), "{reason}");
    assert!(g.size("log")? <= 6 << 20);
    Ok(())
}

pub async fn a_read_write_grant_without_max_mb_has_the_default_quota(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    let mib = rollcage_proto::sandbox::DEFAULT_GRANT_MAX_MB;
    let out = g
        .run(None, &["fill", "/data/big", &(mib + 1).to_string()])
        .await?;
    let reason = violation(&out);
    assert!(
        reason.contains(&format!("write quota of {mib} MiB")),
        "{reason}"
    );
    assert!(g.size("big")? <= mib << 20);
    Ok(())
}

/// `pwrite` (preview 1 `fd_pwrite`, WASI 0.2 `descriptor.write`): a write past the end counts the hole it leaves.
pub async fn a_positioned_write_past_the_end_counts_the_hole(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    let out = g.run(Some(1), &["pwrite", "/data/p", "0", "4096"]).await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    // One byte at 2 MiB would add 2 MiB - 4095 bytes: more than the 1 MiB quota.
    let out = g
        .run(
            Some(1),
            &["pwrite", "/data/p", &(2u64 << 20).to_string(), "1"],
        )
        .await?;
    let reason = violation(&out);
    assert!(reason.contains("write quota of 1 MiB"), "{reason}");
    assert_eq!(g.size("p")?, 4096, "the refused write did not land");
    Ok(())
}

/// Resizing (preview 1 `fd_filestat_set_size`, WASI 0.2 `descriptor.set-size`): growing is charged, shrinking
/// gives the bytes back.
pub async fn resizing_is_charged_and_shrinking_gives_bytes_back(program: &str) -> TestResult {
    let g = Grant::new(program)?;
    let mib = (1u64 << 20).to_string();
    let out = g
        .run(Some(1), &["setlen", "/data/s", &(2u64 << 20).to_string()])
        .await?;
    let reason = violation(&out);
    assert!(reason.contains("write quota of 1 MiB"), "{reason}");
    assert_eq!(g.size("s")?, 0, "the refused resize did not happen");
    // 1 MiB, then 0, then 1 MiB again in one run: 1 MiB of growth, because shrinking gave the first back.
    let out = g
        .run(Some(1), &["setlen", "/data/t", &mib, "0", &mib])
        .await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert_eq!(g.size("t")?, 1 << 20);
    Ok(())
}

/// A write into a read-write grant lands on the host; a read-only grant stays read-only. `fs` is the `fs` test
/// program.
pub async fn a_read_write_grant_works_and_read_only_grants_stay_read_only(fs: &str) -> TestResult {
    let h = Harness::new()?;
    let (rw, ro) = (h.dir.path().join("rw"), h.dir.path().join("ro"));
    std::fs::create_dir_all(&rw)?;
    std::fs::create_dir_all(&ro)?;
    std::fs::write(ro.join("in.txt"), "granted input")?;
    let grant = |host: &Path, guest: &str, access| DirGrant {
        host: host.display().to_string(),
        guest: Some(guest.to_owned()),
        access,
        max_mb: None,
    };
    let sandbox = |a: &[&str]| SandboxSpec {
        dirs: vec![
            grant(&rw, "/out", DirAccess::ReadWrite),
            grant(&ro, "/in", DirAccess::ReadOnly),
        ],
        ..args(a)
    };
    let out = h
        .run(
            fs,
            10,
            sandbox(&["write", "/out/result.txt", "written by wasm"]),
        )
        .await?;
    assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
    assert_eq!(
        std::fs::read_to_string(rw.join("result.txt"))?,
        "written by wasm"
    );
    for path in ["/in/result.txt", "/in/in.txt"] {
        let out = h.run(fs, 10, sandbox(&["write", path, "nope"])).await?;
        assert_eq!(
            out.status,
            HookStatus::Failed { exit_code: 1 },
            "{path}: {}",
            out.log_tail
        );
        assert!(out.log_tail.contains("denied:"), "{}", out.log_tail);
    }
    assert!(!ro.join("result.txt").exists());
    assert_eq!(std::fs::read_to_string(ro.join("in.txt"))?, "granted input");
    Ok(())
}

/// Declares one `#[tokio::test]` per case above, each running it with `$grant` (the `grant` program) or `$fs`
/// (the `fs` program), so both suites run the whole table.
#[macro_export]
macro_rules! grant_cases {
    (grant: $grant:expr, fs: $fs:expr) => {
        $crate::grant_cases!(@grant $grant;
            a_symlink_climbing_out_of_the_grant_is_refused_and_fails_the_hook,
            an_absolute_symlink_target_is_refused,
            a_symlink_inside_its_directory_is_allowed,
            a_hard_link_to_a_symlink_is_refused,
            a_symlink_is_renamed_within_its_directory_only,
            writing_past_the_quota_fails_the_hook_naming_the_grant,
            rewriting_a_file_within_the_quota_is_not_charged_twice,
            appending_to_a_file_counts_what_it_adds_wherever_the_position_was,
            a_read_write_grant_without_max_mb_has_the_default_quota,
            a_positioned_write_past_the_end_counts_the_hole,
            resizing_is_charged_and_shrinking_gives_bytes_back,
        );
        #[tokio::test]
        async fn a_read_write_grant_works_and_read_only_grants_stay_read_only()
        -> $crate::wasm_support::TestResult {
            $crate::wasm_support::grant::a_read_write_grant_works_and_read_only_grants_stay_read_only($fs).await
        }
    };
    (@grant $grant:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() -> $crate::wasm_support::TestResult {
                $crate::wasm_support::grant::$case($grant).await
            }
        )*
    };
}
