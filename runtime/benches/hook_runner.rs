//! Benchmark of the hook runner (not a test): the same trivial hook as a cached preview-1 wasm module, as a cached
//! WASI 0.2 component (Rust, `wasm32-wasip2`) and as a `#!/bin/sh` `exit 0` script, each run through `run_hook`
//! (outcome, logging and all); prints the medians and the ratios against the shell hook. Also the first-run compile
//! time of each, the load time of a cached artifact in a restarted agent, and the agent's RSS with 16 wasm hooks
//! running at once.
//!
//! Run: `cargo bench -p rollcage-runtime --bench hook_runner` (env `RUNS=n` to change the 300 runs per side).
//!
//! If the shell runner is still a stub (branch without the shell-hooks work) the shell side is measured with a
//! plain `tokio::process::Command` spawn of the same script instead, and the output says so.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use rollcage_proto::{HookStatus, LifecycleEvent, SandboxSpec};
use rollcage_runtime::appspec::HookSpec;
use rollcage_runtime::hooks::{HookEnv, HookRun, ScriptLog, WasmConfig, WasmHooks, run_hook};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn hook(location: &str, timeout_secs: u64, sandbox: Option<SandboxSpec>) -> HookSpec {
    HookSpec {
        location: location.to_owned(),
        timeout_secs,
        runas: None,
        sudo: false,
        sandbox,
    }
}

async fn runs(
    n: usize,
    wasm: &WasmHooks,
    spec: &HookSpec,
    rev: &Path,
    env: &HookEnv,
    log: &ScriptLog,
) -> (Vec<Duration>, HookStatus) {
    let mut times = Vec::with_capacity(n);
    let mut last = HookStatus::Succeeded;
    for _ in 0..n {
        let run = HookRun {
            event: LifecycleEvent::ValidateService,
            hook: spec,
            revision_dir: rev,
            script_root: None,
            deploy_dir: None,
            env,
            log,
            wasm: Some(wasm),
        };
        let t = Instant::now();
        let out = run_hook(run).await;
        times.push(t.elapsed());
        last = out.status;
    }
    (times, last)
}

fn report(label: &str, v: &[Duration]) {
    println!(
        "{label:<58} n={:<4} median={:>9.1}us p10={:>9.1} p90={:>9.1}",
        v.len(),
        us(median(v.to_vec())),
        us(pct(v, 0.1)),
        us(pct(v, 0.9))
    );
}

fn main() {
    let n: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(n));
}

const STAND_IN_NOTE: &str = "the shell baseline is a STAND-IN: tokio::process::Command spawn+wait of the same \
                             script, env cleared, no logging";

async fn bench(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rev = dir.path().join("revision");
    std::fs::create_dir_all(rev.join("hooks")).expect("mkdir");
    let noop = rev.join("hooks/noop.wasm");
    std::fs::copy(rollcage_hooks_artifacts::TEST_NOOP, &noop).expect("copy");
    let noop_p2 = rev.join("hooks/noop_p2.wasm");
    std::fs::copy(rollcage_hooks_artifacts::P2_TEST_NOOP, &noop_p2).expect("copy");
    std::fs::copy(
        rollcage_hooks_artifacts::TEST_SLEEP,
        rev.join("hooks/sleep.wasm"),
    )
    .expect("copy");
    let script = rev.join("hooks/noop.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let log = ScriptLog::open(&dir.path().join("logs/scripts.log")).expect("log");
    let env = HookEnv {
        deployment_id: "d-1".into(),
        application_name: "app".into(),
        ..HookEnv::default()
    };
    let cache = dir.path().join("cache");

    // First run: compile + write the artifact; then a restarted agent loading it.
    let wasm = WasmHooks::new(WasmConfig::new(&cache)).expect("wasm");
    let t = Instant::now();
    wasm.precompile_file(&noop).await.expect("precompile");
    let compile = t.elapsed();
    let restarted = WasmHooks::new(WasmConfig::new(&cache)).expect("wasm");
    let t = Instant::now();
    restarted.precompile_file(&noop).await.expect("load");
    let load = t.elapsed();
    let size = std::fs::metadata(&noop).map(|m| m.len()).unwrap_or(0);
    println!(
        "first run: compile noop.wasm ({size} bytes) + write artifact: {:.1} ms (compiles: {})",
        compile.as_secs_f64() * 1e3,
        wasm.compile_count()
    );
    println!(
        "restarted agent: load cached artifact: {:.1} us (compiles: {})",
        us(load),
        restarted.compile_count()
    );
    let t = Instant::now();
    wasm.precompile_file(&noop_p2).await.expect("precompile p2");
    let compile_p2 = t.elapsed();
    let t = Instant::now();
    restarted.precompile_file(&noop_p2).await.expect("load p2");
    let load_p2 = t.elapsed();
    let size_p2 = std::fs::metadata(&noop_p2).map(|m| m.len()).unwrap_or(0);
    println!(
        "first run: compile noop_p2.wasm component ({size_p2} bytes) + write artifact: {:.1} ms",
        compile_p2.as_secs_f64() * 1e3
    );
    println!(
        "restarted agent: load cached component artifact: {:.1} us (compiles: {})",
        us(load_p2),
        restarted.compile_count()
    );

    // Warm-up, then the measured runs.
    let wasm_hook = hook("hooks/noop.wasm", 60, None);
    let p2_hook = hook("hooks/noop_p2.wasm", 60, None);
    let shell_hook = hook("hooks/noop.sh", 60, None);
    runs(20, &wasm, &wasm_hook, &rev, &env, &log).await;
    let (wasm_times, wasm_status) = runs(n, &wasm, &wasm_hook, &rev, &env, &log).await;
    assert_eq!(wasm_status, HookStatus::Succeeded);
    report(
        "wasm noop via run_hook (cached preview-1 module)",
        &wasm_times,
    );
    runs(20, &wasm, &p2_hook, &rev, &env, &log).await;
    let (p2_times, p2_status) = runs(n, &wasm, &p2_hook, &rev, &env, &log).await;
    assert_eq!(p2_status, HookStatus::Succeeded);
    report("wasm noop via run_hook (cached Rust component)", &p2_times);

    let (_, shell_status) = runs(3, &wasm, &shell_hook, &rev, &env, &log).await;
    let (shell_label, shell_times) = if shell_status == HookStatus::Succeeded {
        runs(20, &wasm, &shell_hook, &rev, &env, &log).await;
        let (t, _) = runs(n, &wasm, &shell_hook, &rev, &env, &log).await;
        ("shell `exit 0` via run_hook", t)
    } else {
        println!(
            "NOTE: run_hook's shell runner is not available here ({shell_status}); {STAND_IN_NOTE}"
        );
        (
            "STAND-IN shell `exit 0` (tokio::process spawn, no run_hook)",
            spawn_times(n, &script, &rev).await,
        )
    };
    report(shell_label, &shell_times);
    let shell_median = us(median(shell_times));
    let ratio = us(median(wasm_times)) / shell_median;
    println!("ratio wasm module/shell (medians) = {ratio:.3} (target <= 0.1)");
    let ratio_p2 = us(median(p2_times)) / shell_median;
    println!("ratio Rust component/shell (medians) = {ratio_p2:.3} (target <= 0.1)");

    // 16 wasm hooks at once (each sleeping in a host call until its 2 s timeout); RSS sampled mid-way.
    let warm = hook("hooks/sleep.wasm", 1, None);
    runs(1, &wasm, &warm, &rev, &env, &log).await; // compile outside the sample
    let sleep_hook = hook("hooks/sleep.wasm", 2, Some(SandboxSpec::default()));
    let before = rss_kib();
    let sampler = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        rss_kib()
    });
    let all = (0..16).map(|_| {
        run_hook(HookRun {
            event: LifecycleEvent::ValidateService,
            hook: &sleep_hook,
            revision_dir: &rev,
            script_root: None,
            deploy_dir: None,
            env: &env,
            log: &log,
            wasm: Some(&wasm),
        })
    });
    let outcomes = futures_join_all(all).await;
    let during = sampler.await.unwrap_or(0);
    let timed_out = HookStatus::TimedOut { timeout_secs: 2 };
    assert!(outcomes.iter().all(|o| o.status == timed_out));
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "RSS with 16 wasm hooks running at once: {:.1} MiB (before: {:.1} MiB, +{:.2} MiB per hook)",
        mib(during),
        mib(before),
        mib(during.saturating_sub(before)) / 16.0
    );
}

/// The stand-in shell baseline: spawn and wait for the script, `n` times after 20 warm-up runs.
async fn spawn_times(n: usize, script: &Path, rev: &Path) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let s = Instant::now();
        let mut cmd = tokio::process::Command::new(script);
        let status = cmd
            .current_dir(rev)
            .env_clear()
            .status()
            .await
            .expect("spawn");
        assert!(status.success());
        if i >= 20 {
            times.push(s.elapsed());
        }
    }
    times
}

/// Await every future concurrently on this task (no extra dependency for `join_all`).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
