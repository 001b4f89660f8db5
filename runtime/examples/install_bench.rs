//! Benchmark of Install: copying a revision tree (with write-ahead cleanup list) against `cp -a` of the same tree,
//! and replaying the cleanup list against `rm -rf`, run back to back in this process on the same files.
//!
//! `cargo run --release -p rollcage-runtime --example install_bench [FILES] [ROUNDS]` (default 5000 files of
//! 4 KiB in 50 directories, 7 rounds). Prints each median and the ratio ours / baseline.

use rollcage_runtime::appspec::{AppSpec, FileExistsBehavior, FileMapping};
use rollcage_runtime::install::{InstallRequest, install};
use rollcage_runtime::layout::GroupLayout;
use std::process::Command;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(7);
    let tmp = tempfile::tempdir()?;
    let rev = tmp.path().join("rev");
    let per_dir = 100;
    let content = vec![b'x'; 4096];
    for i in 0..files {
        let dir = rev.join(format!("d{:03}", i / per_dir));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("f{i:05}.txt")), &content)?;
    }
    let spec = AppSpec {
        files: vec![FileMapping {
            source: "/".into(),
            destination: tmp.path().join("dest"),
        }],
        ..AppSpec::default()
    };
    let empty = AppSpec::default();
    let (mut ours_copy, mut base_copy, mut ours_clean, mut base_clean) =
        (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // Ours: install into a fresh destination, then replay its cleanup list (an install with no files).
        let group = GroupLayout::new(&tmp.path().join(format!("root{round}")), "bench", "g")?;
        let req = |spec, id| InstallRequest {
            spec,
            revision_dir: &rev,
            group: &group,
            deployment_id: id,
            default_behavior: FileExistsBehavior::Disallow,
        };
        let t = Instant::now();
        let report = install(&req(&spec, "d-1"))?;
        ours_copy.push(t.elapsed());
        assert_eq!(report.copied as usize, files);
        let t = Instant::now();
        install(&req(&empty, "d-2"))?;
        ours_clean.push(t.elapsed());
        assert!(!tmp.path().join("dest").exists());

        // Baseline: cp -a of the same tree, rm -rf of it.
        let dest = tmp.path().join("dest");
        let t = Instant::now();
        run(Command::new("cp").arg("-a").arg(&rev).arg(&dest))?;
        base_copy.push(t.elapsed());
        let t = Instant::now();
        run(Command::new("rm").arg("-rf").arg(&dest))?;
        base_clean.push(t.elapsed());
    }
    report(
        "copy",
        "install",
        &mut ours_copy,
        "cp -a",
        &mut base_copy,
        files,
    );
    report(
        "cleanup",
        "replay",
        &mut ours_clean,
        "rm -rf",
        &mut base_clean,
        files,
    );
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(
    what: &str,
    ours: &str,
    o: &mut [Duration],
    base: &str,
    b: &mut [Duration],
    files: usize,
) {
    let (mo, mb) = (median(o), median(b));
    println!(
        "{what:8} {files} files: {ours} median {:.1} ms, {base} median {:.1} ms, ratio {:.2}",
        mo.as_secs_f64() * 1e3,
        mb.as_secs_f64() * 1e3,
        mo.as_secs_f64() / mb.as_secs_f64()
    );
}
