//! `rollcage hook run` and `rollcage hook new`, through the real binary: a hook run here under a grant prints its
//! output, outcome and capability audit, and exits 0 only when the hook succeeded; a bad grant file is named with
//! its line and column; a generated project builds with its one command and its hook runs.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn rollcage(args: &[&std::ffi::OsStr], cache: &Path) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_rollcage"))
        .args(args)
        .env_remove("ROLLCAGE_LOG")
        .env("XDG_CACHE_HOME", cache)
        .output()
}

/// A health endpoint answering `200 ok` to every request; counts the connections it accepted.
fn health_server() -> std::io::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    Ok((port, seen))
}

/// A revision dir holding the SDK's `http` test guest (a preview-1 module) as `hooks/http.wasm`.
fn revision_with_http_guest(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let hook = hooks.join("http.wasm");
    std::fs::copy(rollcage_hooks_artifacts::TEST_HTTP, &hook)?;
    Ok(hook)
}

/// `rollcage hook run HOOK --revision REVISION [--sandbox GRANT]`.
fn hook_run(
    hook: &Path,
    revision: &Path,
    grant: Option<&Path>,
    cache: &Path,
) -> std::io::Result<Output> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "hook".as_ref(),
        "run".as_ref(),
        hook.as_os_str(),
        "--revision".as_ref(),
        revision.as_os_str(),
    ];
    if let Some(g) = grant {
        args.extend(["--sandbox".as_ref(), g.as_os_str()]);
    }
    rollcage(&args, cache)
}

/// `rollcage hook new --lang LANG --dir DIR NAME`.
fn hook_new(lang: &str, dir: &Path, name: &str) -> std::io::Result<Output> {
    rollcage(
        &[
            "hook".as_ref(),
            "new".as_ref(),
            "--lang".as_ref(),
            lang.as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
            name.as_ref(),
        ],
        dir,
    )
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rollcage hook run` of the `http` guest asking for a health endpoint's `/health`, under a grant of
/// `http://127.0.0.1:{granted(port)}/`: the endpoint's port and request counter, and the run's (code, stdout, stderr).
#[allow(clippy::type_complexity, reason = "one test helper's result")]
fn run_http_guest(
    granted: &dyn Fn(u16) -> u16,
) -> Result<(u16, Arc<AtomicUsize>, (i32, String, String)), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let revision = tmp.path().join("rev");
    let hook = revision_with_http_guest(&revision)?;
    let (port, seen) = health_server()?;
    let grant = tmp.path().join("grant.yml");
    std::fs::write(
        &grant,
        format!(
            "http: [\"http://127.0.0.1:{}/\"]\nargs: [\"http://127.0.0.1:{port}/health\"]\n",
            granted(port)
        ),
    )?;
    let out = hook_run(&hook, &revision, Some(&grant), tmp.path())?;
    Ok((port, seen, text(&out)))
}

#[test]
fn hook_run_prints_the_output_outcome_and_audit_of_a_granted_request() -> TestResult {
    let (port, seen, (code, stdout, stderr)) = run_http_guest(&|port| port)?;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("running hooks/http.wasm for ValidateService"),
        "{stdout}"
    );
    assert!(
        stdout.contains("status 200 body ok"),
        "the hook's own output: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "[capability] ValidateService hooks/http.wasm: http GET http://127.0.0.1:{port}/health -> 200, 2 bytes allowed"
        )),
        "the audit line: {stdout}"
    );
    assert!(stdout.contains("outcome: succeeded"), "{stdout}");
    assert!(stdout.contains("capabilities: http allowed 1"), "{stdout}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn hook_run_fails_and_names_a_request_outside_the_grant_which_never_leaves() -> TestResult {
    // Granted: another port. Asked: the listener's.
    let (port, seen, (code, stdout, stderr)) = run_http_guest(&|_| 1)?;
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("outcome: failed with exit code 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "http GET http://127.0.0.1:{port}/health (not granted) denied"
        )),
        "the denial in the audit: {stdout}"
    );
    assert!(stdout.contains("capabilities: http denied 1"), "{stdout}");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the request must not leave");
    Ok(())
}

#[test]
fn hook_run_refuses_a_bad_grant_with_its_position_and_a_hook_outside_the_revision() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let revision = tmp.path().join("rev");
    let hook = revision_with_http_guest(&revision)?;
    let grant = tmp.path().join("grant.yml");
    std::fs::write(&grant, "env: [APP_PORT]\nmemory_mb: 0\n")?;
    let out = hook_run(&hook, &revision, Some(&grant), tmp.path())?;
    let (code, stdout, stderr) = text(&out);
    assert_ne!(code, 0, "{stdout}");
    let located = format!("{}:2:12: sandbox.memory_mb", grant.display());
    assert!(stderr.contains(&located), "want `{located}` in:\n{stderr}");
    assert!(!stdout.contains("running"), "nothing ran: {stdout}");

    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere)?;
    let out = hook_run(&hook, &elsewhere, None, tmp.path())?;
    let (code, _, stderr) = text(&out);
    assert_ne!(code, 0);
    assert!(stderr.contains("is outside the revision"), "{stderr}");
    assert!(stderr.contains("--revision"), "{stderr}");
    Ok(())
}

#[test]
fn hook_new_rust_builds_with_one_command_and_its_hook_runs() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = hook_new("rust", tmp.path(), "health-check")?;
    let (code, stdout, stderr) = text(&out);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let project = tmp.path().join("health-check");
    for file in [
        "Cargo.toml",
        "src/main.rs",
        "sandbox.yml",
        "README.md",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file} written");
    }
    // The same name again is refused and leaves the project alone.
    let again = hook_new("rust", tmp.path(), "health-check")?;
    let (code, _, stderr) = text(&again);
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");

    // The README's one command (a preview-1 module), then its component build of the same source (a WASI 0.2
    // component on the SDK): each runs under the project's grant and polls the health endpoint. A target dir
    // shared across runs keeps a rerun fast; offline, because every crate the SDK needs is already in the local
    // registry (the workspace built with it).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hook-new-rust");
    let (port, seen) = health_server()?;
    let sandbox = std::fs::read_to_string(project.join("sandbox.yml"))?
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    std::fs::write(project.join("sandbox.yml"), sandbox)?;
    let hooks = project.join("hooks");
    std::fs::create_dir(&hooks)?;
    for (extra, built) in [
        (&[][..], "wasm32-wasip1"),
        (&["--target", "wasm32-wasip2"][..], "wasm32-wasip2"),
    ] {
        let build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "--offline"])
            .args(extra)
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .output()?;
        let (code, _, stderr) = text(&build);
        assert_eq!(
            code, 0,
            "cargo build {extra:?} of the generated project:\n{stderr}"
        );
        let hook = hooks.join(format!("health-check-{built}.wasm"));
        std::fs::copy(target.join(built).join("release/health-check.wasm"), &hook)?;
        let before = seen.load(Ordering::SeqCst);
        let run = hook_run(
            &hook,
            &project,
            Some(&project.join("sandbox.yml")),
            tmp.path(),
        )?;
        let (code, stdout, stderr) = text(&run);
        assert_eq!(code, 0, "{built}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.contains("msg=healthy"), "{built}: {stdout}");
        assert!(stdout.contains("outcome: succeeded"), "{built}: {stdout}");
        assert!(seen.load(Ordering::SeqCst) > before, "{built}: no request");
    }
    Ok(())
}

/// `hook new --lang LANG`, its `./build.sh` with the tool the test set-up installed, then `hook run` of the built
/// component against a health endpoint: healthy, audited, exit 0.
fn new_component_project_builds_and_runs(lang: &str, tool_var: &str, tool: &str) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (code, stdout, stderr) = text(&hook_new(lang, tmp.path(), "health-check")?);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let project = tmp.path().join("health-check");
    for file in [
        "build.sh",
        "sandbox.yml",
        "README.md",
        "wit/hook.wit",
        "wit/world.wit",
        "wit/deps/http.wit",
    ] {
        assert!(project.join(file).is_file(), "{file} written");
    }
    let source = std::fs::read_to_string(project.join(if lang == "python" {
        "hook.py"
    } else {
        "hook.js"
    }))?;
    assert!(
        source.contains("-o hook.wasm    (./build.sh)"),
        "the build line names the project's files:\n{source}"
    );
    // The README's one command, with the tool `scripts/setup.sh` installed.
    let build = Command::new(project.join("build.sh"))
        .env(tool_var, tool)
        .output()?;
    let (code, stdout, stderr) = text(&build);
    assert_eq!(code, 0, "{tool_var}={tool} ./build.sh:\n{stdout}\n{stderr}");
    let (port, seen) = health_server()?;
    let sandbox = std::fs::read_to_string(project.join("sandbox.yml"))?
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    std::fs::write(project.join("sandbox.yml"), sandbox)?;
    // A cache shared by reruns: the component's first compile is the slow part.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hook-run-cache");
    let run = hook_run(
        &project.join("hook.wasm"),
        &project,
        Some(&project.join("sandbox.yml")),
        &cache,
    )?;
    let (code, stdout, stderr) = text(&run);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("msg=healthy"), "{stdout}");
    assert!(
        stdout.contains(&format!("http GET http://127.0.0.1:{port}/health -> 200")),
        "the audit names the request: {stdout}"
    );
    assert!(stdout.contains("outcome: succeeded"), "{stdout}");
    assert!(seen.load(Ordering::SeqCst) >= 1);
    Ok(())
}

#[test]
fn hook_new_python_builds_with_one_command_and_its_hook_runs() -> TestResult {
    new_component_project_builds_and_runs(
        "python",
        "COMPONENTIZE_PY",
        "/opt/rollcage-venv/bin/componentize-py",
    )
}

#[test]
fn hook_new_js_builds_with_one_command_and_its_hook_runs() -> TestResult {
    new_component_project_builds_and_runs(
        "js",
        "COMPONENTIZE_JS",
        "/opt/rollcage-node/node_modules/.bin/componentize-js",
    )
}
