//! Benchmark: `package::fetch` of a local tar.gz with an expected sha256 (one streaming pass: read, hash, copy to
//! `bundle`, decompress, unpack) against `sha256sum FILE && tar -xzf FILE -C DIR` on the same file, run back to
//! back and interleaved. Prints both medians, their ratio (target ≤ 1.0) and the fetch's peak RSS (target < 64 MiB).
//!
//! The archive (≥ 200 MiB compressed, a mix of incompressible "binaries" and compressible text) is generated once
//! and cached under the target dir. Each fetch runs in a child process (this binary re-executed with
//! `--fetch-child`) so its peak RSS (`VmHWM`) is its own.
//!
//! Run: `cargo bench -p rollcage-runtime --bench fetch_unpack` (env `ROLLCAGE_BENCH_RUNS`, default 5).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: any setup failure should abort loudly

use rollcage_runtime::layout::GroupLayout;
use rollcage_runtime::package::{FetchOptions, Source, fetch};
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Compressed size the generated archive must reach.
const TARGET_COMPRESSED: u64 = 200 << 20;
const MIB: f64 = (1 << 20) as f64;

/// xorshift64*: fast, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "config", "deploy", "revision", "handler", "request", "response", "buffer", "stream",
    "session", "token", "manager", "service", "client", "server", "cache", "index", "record",
    "value", "result", "error", "status", "payload", "encoder", "decoder", "metrics", "logger",
    "worker", "queue", "timeout", "retry", "policy", "user",
];

/// A source-code / log-like line: compresses about 4–6×, like real text assets.
fn text_line(rng: &mut Rng, out: &mut Vec<u8>) {
    let w = |rng: &mut Rng| WORDS[rng.below(WORDS.len() as u64) as usize];
    match rng.below(4) {
        0 => writeln!(
            out,
            "    let {}_{} = {}::{}(&{}, {});",
            w(rng),
            rng.below(100),
            w(rng),
            w(rng),
            w(rng),
            rng.below(100_000)
        ),
        1 => writeln!(
            out,
            "2026-11-26T13:{:02}:{:02}.{:03}Z INFO {} {}={} {}={}",
            rng.below(60),
            rng.below(60),
            rng.below(1000),
            w(rng),
            w(rng),
            rng.below(1 << 20),
            w(rng),
            w(rng)
        ),
        2 => writeln!(
            out,
            "// {} the {} before the {} is {}",
            w(rng),
            w(rng),
            w(rng),
            w(rng)
        ),
        _ => writeln!(
            out,
            "    if {}.{}() > {} {{ return Err(Error::{}); }}",
            w(rng),
            w(rng),
            rng.below(4096),
            w(rng)
        ),
    }
    .unwrap();
}

/// Generate the archive at `path` (via a temp file and rename). Returns (entries, unpacked bytes).
fn generate(path: &Path) -> (u64, u64) {
    let tmp = path.with_extension("partial");
    let file = std::fs::File::create(&tmp).unwrap();
    let gz = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(1 << 20, file),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut entries, mut unpacked) = (0u64, 0u64);
    let mut add = |tar: &mut tar::Builder<_>, name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
        entries += 1;
        unpacked += data.len() as u64;
    };
    add(
        &mut tar,
        "app/appspec.yml",
        b"version: 0.0\nos: linux\n",
        0o644,
    );
    let mut n = 0u64;
    loop {
        let compressed = tar.get_ref().get_ref().get_ref().metadata().unwrap().len();
        if compressed >= TARGET_COMPRESSED + (4 << 20) {
            break;
        }
        n += 1;
        let dir = format!("app/module{:02}/sub{}", n % 40, n % 7);
        let mut data = Vec::new();
        if rng.below(20) == 0 {
            // An incompressible "binary" (jar, image, compressed asset): 64 KiB – 2 MiB.
            let len = 64 * 1024 + rng.below(2 << 20) as usize;
            data.reserve(len);
            while data.len() < len {
                data.extend_from_slice(&rng.next().to_le_bytes());
            }
            add(&mut tar, &format!("{dir}/blob{n}.bin"), &data, 0o644);
        } else {
            // Text (sources, configs, logs): 512 B – 400 KiB. About half the compressed bytes end up text.
            let len = 512 + rng.below(400 * 1024) as usize;
            while data.len() < len {
                text_line(&mut rng, &mut data);
            }
            let mode = if n.is_multiple_of(5) { 0o755 } else { 0o644 };
            add(&mut tar, &format!("{dir}/file{n}.txt"), &data, mode);
        }
    }
    let gz = tar.into_inner().unwrap();
    gz.finish()
        .unwrap()
        .into_inner()
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::rename(&tmp, path).unwrap();
    (entries, unpacked)
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Child mode: one fetch, then print the peak RSS.
fn child(archive: &str, root: &str, sha: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deploy = GroupLayout::new(Path::new(root), "bench", "g")
        .unwrap()
        .deployment("d")
        .unwrap();
    let opts = FetchOptions {
        expected_sha256: Some(sha.to_owned()),
        ..FetchOptions::default()
    };
    let fetched = rt
        .block_on(fetch(
            &Source::Archive(PathBuf::from(archive)),
            &deploy,
            &opts,
        ))
        .unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim();
    println!("entries={} vmhwm_kib={hwm}", fetched.entries);
}

fn run_fetch(exe: &Path, archive: &Path, root: &Path, sha: &str) -> (Duration, u64) {
    let start = Instant::now();
    let out = Command::new(exe)
        .arg("--fetch-child")
        .arg(archive)
        .arg(root)
        .arg(sha)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(out.status.success(), "fetch child failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let kib = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vmhwm_kib="))
        .unwrap()
        .parse()
        .unwrap();
    (elapsed, kib)
}

fn run_baseline(archive: &Path, dir: &Path) -> Duration {
    std::fs::create_dir_all(dir).unwrap();
    let start = Instant::now();
    // Paths are passed as positional arguments, never spliced into the script.
    let status = Command::new("sh")
        .args([
            "-c",
            "sha256sum \"$1\" >/dev/null && tar -xzf \"$1\" -C \"$2\"",
            "sh",
        ])
        .arg(archive)
        .arg(dir)
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "baseline failed: {status:?}");
    elapsed
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--fetch-child") {
        child(&args[2], &args[3], &args[4]);
        return;
    }
    let runs: usize = std::env::var("ROLLCAGE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rollcage-fetch-unpack");
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("bundle-v2-200mib.tar.gz");
    if !archive.exists() {
        eprintln!("generating {} (once) ...", archive.display());
        let t = Instant::now();
        let (entries, unpacked) = generate(&archive);
        eprintln!(
            "  {entries} entries, {:.1} MiB unpacked, in {:.1} s",
            unpacked as f64 / MIB,
            t.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&archive).unwrap().len();
    let sha = sha256_file(&archive);
    let exe = std::env::current_exe().unwrap();
    let work = dir.join("runs");
    let _ = std::fs::remove_dir_all(&work);

    let (mut fetch_times, mut base_times, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let fetch_root = work.join(format!("fetch-{i}"));
        let base_dir = work.join(format!("tar-{i}"));
        // Interleaved, alternating which side goes first so neither always gets the warmer cache.
        let mut f = || {
            let (t, kib) = run_fetch(&exe, &archive, &fetch_root, &sha);
            fetch_times.push(t);
            rss.push(kib);
        };
        if i.is_multiple_of(2) {
            f();
            base_times.push(run_baseline(&archive, &base_dir));
        } else {
            base_times.push(run_baseline(&archive, &base_dir));
            f();
        }
        std::fs::remove_dir_all(&work).unwrap();
    }

    let (mf, mb) = (median(&fetch_times), median(&base_times));
    let fmt = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut rss_sorted = rss.clone();
    rss_sorted.sort();
    println!(
        "fetch_unpack: {} ({:.1} MiB tar.gz), {runs} runs each, interleaved",
        archive.display(),
        size as f64 / MIB
    );
    println!(
        "  rollcage fetch (sha256 + bundle copy + gunzip + untar, one pass): median {:.3} s  [{}]",
        mf.as_secs_f64(),
        fmt(&fetch_times)
    );
    println!(
        "  baseline `sha256sum FILE && tar -xzf FILE -C DIR`:               median {:.3} s  [{}]",
        mb.as_secs_f64(),
        fmt(&base_times)
    );
    println!(
        "  ratio fetch/baseline: {:.3} (target <= 1.0)",
        mf.as_secs_f64() / mb.as_secs_f64()
    );
    println!(
        "  fetch peak RSS (VmHWM): median {:.1} MiB, max {:.1} MiB (target < 64 MiB)",
        rss_sorted[rss_sorted.len() / 2] as f64 / 1024.0,
        rss_sorted[rss_sorted.len() - 1] as f64 / 1024.0
    );
}
