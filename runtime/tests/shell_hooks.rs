//! Shell hook runner, end to end: real scripts run by `/bin/sh` in a temporary revision.
//!
//! These tests assume root (CI runs as root): `runas nobody` needs it.

use rollcage_proto::{HookOutcome, HookStatus, LifecycleEvent};
use rollcage_runtime::appspec::HookSpec;
use rollcage_runtime::hooks::log::DEFAULT_TAIL_BYTES;
use rollcage_runtime::hooks::shell::output::MAX_LINE_BYTES;
use rollcage_runtime::hooks::shell::reap::{MARKER_VAR, parse_stat};
use rollcage_runtime::hooks::shell::{self, BASE_PATH, OUTPUT_GRACE, ShellOptions};
use rollcage_runtime::hooks::{HookEnv, HookRun, ScriptLog, run_hook};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// The brief's floor for the reported tail.
const _: () = assert!(DEFAULT_TAIL_BYTES >= 4096);

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A revision directory with its `scripts.log`.
struct Fixture {
    _dir: tempfile::TempDir,
    rev: PathBuf,
    log_path: PathBuf,
    log: ScriptLog,
    env: HookEnv,
}

impl Fixture {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let rev = dir.path().join("rev");
        fs::create_dir(&rev)?;
        let log_path = dir.path().join("logs/scripts.log");
        let log = ScriptLog::open(&log_path)?;
        let env = HookEnv {
            deployment_id: "d-TEST123".to_owned(),
            application_name: "shop".to_owned(),
            deployment_group_name: "web".to_owned(),
            deployment_group_id: "g-42".to_owned(),
            extra: vec![("ROLLCAGE_INSTANCE".to_owned(), "host-1".to_owned())],
        };
        Ok(Self {
            _dir: dir,
            rev,
            log_path,
            log,
            env,
        })
    }

    fn script(&self, location: &str, body: &str, mode: u32) -> Result<PathBuf, std::io::Error> {
        let path = self.rev.join(location);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, body)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(path)
    }

    fn spec(location: &str, timeout_secs: u64, runas: Option<&str>) -> HookSpec {
        HookSpec {
            location: location.to_owned(),
            timeout_secs,
            runas: runas.map(str::to_owned),
            sudo: false,
            sandbox: None,
        }
    }

    async fn run(&self, location: &str, timeout_secs: u64, runas: Option<&str>) -> HookOutcome {
        self.run_with(location, timeout_secs, runas, &quick()).await
    }

    async fn run_with(
        &self,
        location: &str,
        timeout_secs: u64,
        runas: Option<&str>,
        options: &ShellOptions,
    ) -> HookOutcome {
        let hook = Self::spec(location, timeout_secs, runas);
        let run = HookRun {
            event: LifecycleEvent::AfterInstall,
            hook: &hook,
            revision_dir: &self.rev,
            script_root: None,
            deploy_dir: None,
            env: &self.env,
            log: &self.log,
            wasm: None,
        };
        shell::run_with(run, options).await
    }

    fn log_text(&self) -> Result<String, std::io::Error> {
        fs::read_to_string(&self.log_path)
    }

    fn read(&self, name: &str) -> Result<String, std::io::Error> {
        Ok(fs::read_to_string(self.rev.join(name))?
            .trim_end()
            .to_owned())
    }

    fn pid(&self, name: &str) -> Result<i32, Box<dyn std::error::Error>> {
        Ok(self.read(name)?.parse()?)
    }
}

/// Short graces so timeout tests finish quickly; the defaults are exercised separately.
fn quick() -> ShellOptions {
    ShellOptions {
        term_grace: Duration::from_millis(500),
        output_grace: Duration::from_millis(500),
        ..ShellOptions::default()
    }
}

/// True when `pid` exists and is not a zombie (an unreaped zombie no longer runs anything).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Kill a process a test left running on purpose.
fn cleanup(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Waits briefly for a SIGTERMed/SIGKILLed process to leave the process table view.
fn gone_soon(pid: i32) -> bool {
    for _ in 0..20 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn environment_is_built_from_nothing() -> TestResult {
    // SAFETY: set before any runtime or other thread of this test exists; nextest runs each test in its own process.
    unsafe { std::env::set_var("ROLLCAGE_TEST_AGENT_SECRET", "must-not-leak") };
    let fx = Fixture::new()?;
    fx.script("hooks/env.sh", "#!/bin/sh\nexec env > env.txt\n", 0o755)?;
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fx.run("hooks/env.sh", 30, None));
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");

    let text = fx.read("env.txt")?;
    let vars: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    assert!(
        !text.contains("ROLLCAGE_TEST_AGENT_SECRET"),
        "agent env leaked: {text}"
    );
    assert!(!text.contains("must-not-leak"), "agent env leaked: {text}");
    let home = nix::unistd::User::from_uid(nix::unistd::geteuid())?
        .map(|u| u.dir.display().to_string())
        .unwrap_or_else(|| "/".to_owned());
    let expected = [
        ("PATH", BASE_PATH),
        ("HOME", home.as_str()),
        ("LANG", "C.UTF-8"),
        ("LIFECYCLE_EVENT", "AfterInstall"),
        ("DEPLOYMENT_ID", "d-TEST123"),
        ("APPLICATION_NAME", "shop"),
        ("DEPLOYMENT_GROUP_NAME", "web"),
        ("DEPLOYMENT_GROUP_ID", "g-42"),
        ("ROLLCAGE_INSTANCE", "host-1"),
    ];
    for (key, value) in expected {
        assert_eq!(vars.get(key), Some(&value), "{key} in {text}");
    }
    // Nothing else but the kill marker and what the shell itself exports (dash: PWD).
    let allowed: Vec<&str> = expected
        .iter()
        .map(|(k, _)| *k)
        .chain([MARKER_VAR, "PWD"])
        .collect();
    let extra: Vec<&&str> = vars.keys().filter(|k| !allowed.contains(k)).collect();
    assert!(extra.is_empty(), "unexpected variables {extra:?} in {text}");
    Ok(())
}

#[tokio::test]
async fn exit_codes_map_to_outcomes() -> TestResult {
    let fx = Fixture::new()?;
    fx.script("ok.sh", "#!/bin/sh\necho fine\n", 0o755)?;
    fx.script("fail.sh", "#!/bin/sh\nexit 3\n", 0o755)?;
    fx.script("signal.sh", "#!/bin/sh\nkill -KILL $$\n", 0o755)?;

    let ok = fx.run("ok.sh", 30, None).await;
    assert_eq!(ok.status, HookStatus::Succeeded);
    assert_eq!(ok.status.code(), 0);
    assert_eq!(ok.log_tail, "fine");
    assert_eq!(ok.location, "ok.sh");

    let fail = fx.run("fail.sh", 30, None).await;
    assert_eq!(fail.status, HookStatus::Failed { exit_code: 3 });
    assert_eq!(fail.status.code(), 4);

    let sig = fx.run("signal.sh", 30, None).await;
    assert_eq!(sig.status, HookStatus::KilledBySignal { signal: 9 });
    Ok(())
}

#[tokio::test]
async fn missing_script_is_reported_without_running() -> TestResult {
    let fx = Fixture::new()?;
    let outcome = fx.run("hooks/nope.sh", 30, None).await;
    assert_eq!(outcome.status, HookStatus::ScriptMissing);
    assert_eq!(outcome.status.code(), 1);
    // A dangling symlink is missing too.
    symlink("does-not-exist", fx.rev.join("dangling.sh"))?;
    assert_eq!(
        fx.run("dangling.sh", 30, None).await.status,
        HookStatus::ScriptMissing
    );
    Ok(())
}

#[tokio::test]
async fn a_directory_is_not_executable() -> TestResult {
    let fx = Fixture::new()?;
    fs::create_dir(fx.rev.join("hooks"))?;
    let outcome = fx.run("hooks", 30, None).await;
    assert!(
        matches!(&outcome.status, HookStatus::NotExecutable { reason } if reason.contains("not a regular file")),
        "{outcome:?}"
    );
    assert_eq!(outcome.status.code(), 2);
    Ok(())
}

#[tokio::test]
async fn a_bad_interpreter_is_not_executable() -> TestResult {
    let fx = Fixture::new()?;
    fx.script("bad.sh", "#!/nonexistent/interpreter\necho never\n", 0o755)?;
    let outcome = fx.run("bad.sh", 30, None).await;
    assert!(
        matches!(&outcome.status, HookStatus::NotExecutable { reason } if reason.contains("/nonexistent/interpreter")),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_binary_that_is_not_elf_is_not_executable() -> TestResult {
    let fx = Fixture::new()?;
    let path = fx.rev.join("blob");
    fs::write(&path, b"PK\x03\x04\0\0\0\0not a program")?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    let outcome = fx.run("blob", 30, None).await;
    assert!(
        matches!(outcome.status, HookStatus::NotExecutable { .. }),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_location_escaping_the_revision_is_refused() -> TestResult {
    let fx = Fixture::new()?;
    let outside = fx.rev.parent().ok_or("no parent")?.join("outside.sh");
    fs::write(&outside, "#!/bin/sh\ntouch ran-outside\n")?;
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755))?;
    symlink(&outside, fx.rev.join("link.sh"))?;

    let via_link = fx.run("link.sh", 30, None).await;
    assert!(
        matches!(&via_link.status, HookStatus::NotExecutable { reason } if reason.contains("outside the revision")),
        "{via_link:?}"
    );
    let via_dots = fx.run("../outside.sh", 30, None).await;
    assert!(
        matches!(via_dots.status, HookStatus::NotExecutable { .. }),
        "{via_dots:?}"
    );
    let absolute = fx.run(&outside.display().to_string(), 30, None).await;
    assert!(
        matches!(absolute.status, HookStatus::NotExecutable { .. }),
        "{absolute:?}"
    );
    assert!(!fx.rev.join("ran-outside").exists());
    Ok(())
}

#[tokio::test]
async fn a_script_with_mode_0644_is_made_executable() -> TestResult {
    let fx = Fixture::new()?;
    let path = fx.script("hooks/start.sh", "#!/bin/sh\necho started\n", 0o644)?;
    let outcome = fx.run("hooks/start.sh", 30, None).await;
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o755);
    Ok(())
}

#[tokio::test]
async fn a_script_without_shebang_runs_with_sh() -> TestResult {
    let fx = Fixture::new()?;
    fx.script("plain.sh", "echo from-plain > plain.txt\n", 0o755)?;
    let outcome = fx.run("plain.sh", 30, None).await;
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert_eq!(fx.read("plain.txt")?, "from-plain");
    Ok(())
}

#[tokio::test]
async fn cwd_is_the_revision_and_stdin_is_empty() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "hooks/where.sh",
        "#!/bin/sh\npwd -P > cwd.txt\nif read -r line; then echo got-input > stdin.txt; else echo eof > stdin.txt; fi\n",
        0o755,
    )?;
    let outcome = fx.run("hooks/where.sh", 30, None).await;
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert_eq!(Path::new(&fx.read("cwd.txt")?), fs::canonicalize(&fx.rev)?);
    assert_eq!(fx.read("stdin.txt")?, "eof");
    Ok(())
}

#[tokio::test]
async fn timeout_kills_the_script_and_its_grandchild() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "hooks/hang.sh",
        "#!/bin/sh\necho $$ > script.pid\nsleep 1000 &\necho $! > grandchild.pid\nsleep 1000\n",
        0o755,
    )?;
    let outcome = fx.run("hooks/hang.sh", 1, None).await;
    assert_eq!(
        outcome.status,
        HookStatus::TimedOut { timeout_secs: 1 },
        "{outcome:?}"
    );
    assert_eq!(outcome.status.code(), 3);
    let (script, grandchild) = (fx.pid("script.pid")?, fx.pid("grandchild.pid")?);
    let still = [script, grandchild]
        .into_iter()
        .filter(|&p| alive(p))
        .collect::<Vec<_>>();
    [script, grandchild].into_iter().for_each(cleanup);
    assert!(
        still.is_empty(),
        "processes survived the timeout: {still:?}"
    );
    assert!(fx.log_text()?.contains("timeout after 1 s"));
    Ok(())
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() -> TestResult {
    let fx = Fixture::new()?;
    // `trap '' TERM` is inherited by the children as an ignored signal.
    fx.script(
        "stubborn.sh",
        "#!/bin/sh\ntrap '' TERM\nsleep 1000 &\necho $! > grandchild.pid\nwhile :; do sleep 1; done\n",
        0o755,
    )?;
    let options = quick();
    let started = Instant::now();
    let outcome = fx.run_with("stubborn.sh", 1, None, &options).await;
    let took = started.elapsed();
    assert_eq!(
        outcome.status,
        HookStatus::TimedOut { timeout_secs: 1 },
        "{outcome:?}"
    );
    let grandchild = fx.pid("grandchild.pid")?;
    let survived = alive(grandchild);
    cleanup(grandchild);
    assert!(
        !survived,
        "SIGTERM-ignoring grandchild {grandchild} survived"
    );
    assert!(
        took >= Duration::from_secs(1) + options.term_grace,
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(fx.log_text()?.contains("SIGKILL"));
    Ok(())
}

#[tokio::test]
async fn timeout_reaches_a_grandchild_that_left_the_process_group() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "escape.sh",
        "#!/bin/sh\nsetsid sleep 1000 &\necho $! > escapee.pid\nsleep 1000\n",
        0o755,
    )?;
    let outcome = fx.run("escape.sh", 1, None).await;
    assert_eq!(
        outcome.status,
        HookStatus::TimedOut { timeout_secs: 1 },
        "{outcome:?}"
    );
    let escapee = fx.pid("escapee.pid")?;
    let survived = !gone_soon(escapee);
    cleanup(escapee);
    assert!(
        !survived,
        "setsid grandchild {escapee} survived the timeout"
    );
    Ok(())
}

#[tokio::test]
async fn a_cancelled_run_kills_the_hook_and_its_children() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "long.sh",
        "#!/bin/sh\nsleep 1000 &\necho $! > child.pid\necho $$ > script.pid\nsleep 1000\n",
        0o755,
    )?;
    // A forced stop drops the step's future; the hook must not keep running unsupervised.
    let cancelled =
        tokio::time::timeout(Duration::from_millis(500), fx.run("long.sh", 60, None)).await;
    assert!(
        cancelled.is_err(),
        "the hook ended on its own: {cancelled:?}"
    );
    let (script, child) = (fx.pid("script.pid")?, fx.pid("child.pid")?);
    let survivors: Vec<i32> = [script, child]
        .into_iter()
        .filter(|&p| !gone_soon(p))
        .collect();
    for &pid in &survivors {
        cleanup(pid);
    }
    assert!(
        survivors.is_empty(),
        "processes {survivors:?} survived the cancelled run"
    );
    Ok(())
}

#[tokio::test]
async fn a_daemon_holding_stdout_does_not_hang_the_hook() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "hooks/start.sh",
        "#!/bin/sh\nsleep 30 &\necho $! > daemon.pid\necho started\nexit 0\n",
        0o755,
    )?;
    let hook = Fixture::spec("hooks/start.sh", 60, None);
    let run = HookRun {
        event: LifecycleEvent::ApplicationStart,
        hook: &hook,
        revision_dir: &fx.rev,
        script_root: None,
        deploy_dir: None,
        env: &fx.env,
        log: &fx.log,
        wasm: None,
    };
    let started = Instant::now();
    // The public entry point, with the default grace.
    let outcome = run_hook(run).await;
    let took = started.elapsed();
    let daemon = fx.pid("daemon.pid")?;
    let daemon_alive = alive(daemon);
    cleanup(daemon);

    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert!(
        took >= OUTPUT_GRACE,
        "returned before the output grace: {took:?}"
    );
    assert!(
        took < OUTPUT_GRACE + Duration::from_secs(5),
        "hung on the daemon's stdout: {took:?}"
    );
    assert!(daemon_alive, "the daemon must survive a normal exit");
    assert_eq!(outcome.warnings.len(), 1, "{outcome:?}");
    assert!(
        outcome.warnings[0].contains("kept stdout/stderr open"),
        "{outcome:?}"
    );
    assert_eq!(outcome.log_tail, "started");
    let log = fx.log_text()?;
    assert!(
        log.contains("[agent] ApplicationStart hooks/start.sh: warning: a background process"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn runas_nobody_runs_with_nobodys_uid_and_home() -> TestResult {
    let fx = Fixture::new()?;
    let nobody = nix::unistd::User::from_name("nobody")?.ok_or("no user nobody on this host")?;
    // nobody must reach the revision and write its answers.
    let top = fx.rev.parent().ok_or("no parent")?;
    fs::set_permissions(top, fs::Permissions::from_mode(0o755))?;
    fs::set_permissions(&fx.rev, fs::Permissions::from_mode(0o755))?;
    let out = fx.rev.join("out");
    fs::create_dir(&out)?;
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777))?;
    // Mode 0644 and owned by root: the runner must make it executable for nobody too.
    fx.script(
        "hooks/who.sh",
        "#!/bin/sh\nid -u > out/uid\nid -g > out/gid\necho \"$HOME\" > out/home\n",
        0o644,
    )?;
    let outcome = fx.run("hooks/who.sh", 30, Some("nobody")).await;
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert_eq!(fx.read("out/uid")?, nobody.uid.to_string());
    assert_eq!(fx.read("out/uid")?, "65534");
    assert_eq!(fx.read("out/gid")?, nobody.gid.to_string());
    assert_eq!(fx.read("out/home")?, nobody.dir.display().to_string());
    Ok(())
}

#[tokio::test]
async fn an_unknown_runas_user_is_refused_without_running() -> TestResult {
    let fx = Fixture::new()?;
    fx.script("hooks/x.sh", "#!/bin/sh\ntouch ran\n", 0o755)?;
    let outcome = fx
        .run("hooks/x.sh", 30, Some("no-such-user-rollcage"))
        .await;
    assert_eq!(
        outcome.status,
        HookStatus::UnknownUser {
            user: "no-such-user-rollcage".to_owned()
        }
    );
    assert!(!fx.rev.join("ran").exists());
    Ok(())
}

#[tokio::test]
async fn lines_are_tagged_by_stream_and_bracketed_by_start_and_end() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "hooks/talk.sh",
        "#!/bin/sh\necho to-out\necho to-err >&2\nexit 2\n",
        0o755,
    )?;
    let outcome = fx.run("hooks/talk.sh", 30, None).await;
    assert_eq!(outcome.status, HookStatus::Failed { exit_code: 2 });
    let log = fx.log_text()?;
    assert!(
        log.contains("] [stdout] AfterInstall hooks/talk.sh: to-out\n"),
        "{log}"
    );
    assert!(
        log.contains("] [stderr] AfterInstall hooks/talk.sh: to-err\n"),
        "{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.contains("[agent] AfterInstall hooks/talk.sh: start: ")),
        "{log}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("end: failed with exit code 2 (code 4) after ")),
        "{log}"
    );
    // Every line starts with a timestamp.
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("[20") && l.as_bytes().get(24) == Some(&b']')),
        "{log}"
    );
    assert!(outcome.log_tail.contains("[stderr] to-err"), "{outcome:?}");
    assert!(outcome.log_tail.contains("to-out"), "{outcome:?}");
    Ok(())
}

#[tokio::test]
async fn the_log_tail_is_bounded_and_long_lines_are_split() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "hooks/loud.sh",
        "#!/bin/sh\ni=0\nwhile [ $i -lt 3000 ]; do echo \"line $i padded to make it longer than a few bytes\"; \
         i=$((i+1)); done\nhead -c 40000 /dev/zero | tr '\\0' x\necho\necho last\n",
        0o755,
    )?;
    let outcome = fx.run("hooks/loud.sh", 60, None).await;
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert!(
        outcome.log_tail.len() <= DEFAULT_TAIL_BYTES + 1,
        "tail {} bytes",
        outcome.log_tail.len()
    );
    assert!(outcome.log_tail.ends_with("last"), "{}", outcome.log_tail);
    let log = fx.log_text()?;
    assert!(log.contains(": line 0 padded"), "the log keeps everything");
    assert!(log.contains(": line 2999 padded"));
    let pieces: Vec<usize> = log
        .lines()
        .filter_map(|l| l.split_once("hooks/loud.sh: ").map(|(_, t)| t))
        .filter(|t| t.starts_with("xxx"))
        .map(str::len)
        .collect();
    assert_eq!(
        pieces,
        vec![MAX_LINE_BYTES, MAX_LINE_BYTES, 40000 - 2 * MAX_LINE_BYTES],
        "long line pieces"
    );
    Ok(())
}

#[tokio::test]
async fn output_beyond_the_log_budget_only_reaches_the_tail() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "hooks/flood.sh",
        "#!/bin/sh\ni=0\nwhile [ $i -lt 50 ]; do echo \"flood $i\"; i=$((i+1)); done\n",
        0o755,
    )?;
    let options = ShellOptions {
        max_logged_bytes: 100,
        ..quick()
    };
    let outcome = fx.run_with("hooks/flood.sh", 30, None, &options).await;
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("exceeded 100 bytes")),
        "{outcome:?}"
    );
    assert!(
        outcome.log_tail.ends_with("flood 49"),
        "{}",
        outcome.log_tail
    );
    let log = fx.log_text()?;
    assert!(log.contains(": flood 0\n"), "{log}");
    assert!(!log.contains(": flood 49\n"), "{log}");
    Ok(())
}

#[tokio::test]
async fn a_huge_timeout_does_not_overflow() -> TestResult {
    let fx = Fixture::new()?;
    fx.script("ok.sh", "#!/bin/sh\nexit 0\n", 0o755)?;
    let outcome = fx.run("ok.sh", u64::MAX, None).await;
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    Ok(())
}

#[tokio::test]
async fn a_hook_printing_without_pause_still_times_out() -> TestResult {
    let fx = Fixture::new()?;
    fx.script("hooks/yes.sh", "#!/bin/sh\nexec yes flood\n", 0o755)?;
    let options = ShellOptions {
        max_logged_bytes: 1024 * 1024,
        ..quick()
    };
    let started = Instant::now();
    let outcome = fx.run_with("hooks/yes.sh", 1, None, &options).await;
    let took = started.elapsed();
    assert_eq!(
        outcome.status,
        HookStatus::TimedOut { timeout_secs: 1 },
        "{outcome:?}"
    );
    assert!(
        took < Duration::from_secs(1) + options.term_grace + Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        outcome.log_tail.ends_with("flood"),
        "tail: {:?}",
        outcome.log_tail.get(..100)
    );
    Ok(())
}

#[tokio::test]
async fn a_daemon_flooding_stdout_is_cut_off_after_the_grace() -> TestResult {
    let fx = Fixture::new()?;
    fx.script(
        "hooks/start.sh",
        "#!/bin/sh\nyes flood &\necho $! > daemon.pid\nexit 0\n",
        0o755,
    )?;
    let options = ShellOptions {
        max_logged_bytes: 1024 * 1024,
        ..quick()
    };
    let started = Instant::now();
    let outcome = fx.run_with("hooks/start.sh", 60, None, &options).await;
    let took = started.elapsed();
    let daemon = fx.pid("daemon.pid")?;
    cleanup(daemon);
    assert_eq!(outcome.status, HookStatus::Succeeded, "{outcome:?}");
    assert!(
        took < options.output_grace + Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("kept stdout/stderr open")),
        "{outcome:?}"
    );
    Ok(())
}
