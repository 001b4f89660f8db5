//! `rollcage local` deploys the example bundle of `hooks-examples/bundles` in both flavours: sandboxed wasm hooks
//! (compiled from source by `rollcage-hooks-artifacts`) and their shell twins. Both must render the config into
//! the granted directory and pass the health check.

use rollcage_hooks_artifacts::{BundleParams, Flavour, assemble_bundle};
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A health endpoint answering 200 to every request, on a thread, for the life of the test process.
fn health_server() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n",
            );
        }
    });
    Ok(base)
}

fn deploy(flavour: Flavour) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let config_dir = tmp.path().join("config");
    std::fs::create_dir_all(&config_dir)?;
    let params = BundleParams {
        health_base: health_server()?,
        config_dir: config_dir.clone(),
    };
    let bundle = tmp.path().join("bundle");
    assemble_bundle(flavour, &bundle, &params)?;
    let root = tmp.path().join("root");
    let out = Command::new(env!("CARGO_BIN_EXE_rollcage"))
        .args([
            "local",
            "--app",
            "example",
            "--group",
            "dev",
            "--deployment-id",
            "d1",
            "--bundle",
        ])
        .arg(&bundle)
        .arg("--root")
        .arg(&root)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{flavour:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hook_ext = if flavour == Flavour::Wasm {
        ".wasm"
    } else {
        ".sh"
    };
    for hook in ["render_config", "validate_health"] {
        assert!(
            stdout.contains(&format!("hooks/{hook}{hook_ext} succeeded")),
            "{hook} did not run:\n{stdout}"
        );
    }
    let rendered = std::fs::read_to_string(config_dir.join("app.conf"))?;
    assert!(
        rendered.contains("example") && rendered.contains("dev") && rendered.contains("d1"),
        "{rendered}"
    );
    if flavour == Flavour::Wasm {
        // Compiled once on this host, into the agent's private cache.
        let cache = root.join("cache/wasm");
        assert!(
            has_artifacts(&cache)?,
            "no compiled artifact in {}",
            cache.display()
        );
    }
    Ok(())
}

fn has_artifacts(dir: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".cwasm")))
}

#[test]
fn the_wasm_example_bundle_deploys() -> TestResult {
    deploy(Flavour::Wasm)
}

#[test]
fn the_shell_twin_example_bundle_deploys() -> TestResult {
    deploy(Flavour::Shell)
}

/// `rollcage local` with the example bundle of `flavour` (its health URL at `health_base`, its polling deadline
/// cut to `deadline_secs`) under `root`: the command's output and whether it succeeded.
fn deploy_poller(
    flavour: Flavour,
    health_base: &str,
    deadline_secs: u32,
    root: &Path,
    deployment_id: &str,
) -> Result<(bool, String), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let bundle = tmp.path().join("bundle");
    let params = BundleParams {
        health_base: health_base.to_owned(),
        ..BundleParams::default()
    };
    assemble_bundle(flavour, &bundle, &params)?;
    let spec = bundle.join("appspec.yml");
    let text = std::fs::read_to_string(&spec)?.replace(
        "/health\", \"20\",",
        &format!("/health\", \"{deadline_secs}\","),
    );
    std::fs::write(&spec, text)?;
    let out = Command::new(env!("CARGO_BIN_EXE_rollcage"))
        .args(["local", "--app", "example", "--group", "dev"])
        .args(["--deployment-id", deployment_id, "--bundle"])
        .arg(&bundle)
        .arg("--root")
        .arg(root)
        .output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// The Python or JavaScript health poller validates a running app over its http grant, and fails with a clear
/// outcome when the app is down. Both deployments share one agent root, so the component is compiled once (the
/// second run loads it from the cache).
fn poller_validates_and_fails_when_down(flavour: Flavour) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root");
    let started = std::time::Instant::now();
    let (ok, out) = deploy_poller(flavour, &health_server()?, 20, &root, "d1")?;
    eprintln!(
        "{flavour:?}: first deployment (compiles the component) took {:?}",
        started.elapsed()
    );
    assert!(ok, "{flavour:?} against a running app failed:\n{out}");
    assert!(
        out.contains("hooks/validate_health.wasm succeeded"),
        "{out}"
    );
    assert!(has_artifacts(&root.join("cache/wasm"))?, "nothing compiled");
    let dir = out
        .lines()
        .find_map(|l| l.strip_prefix("deployment d1 of example/dev into "))
        .ok_or("no deployment directory in the output")?;
    let log = std::fs::read_to_string(Path::new(dir).join("logs/scripts.log"))?;
    assert!(
        log.contains("level=info msg=healthy") && log.contains("attempts=1"),
        "{log}"
    );
    assert!(log.contains("event=ValidateService"), "{log}");

    // The app is down: nothing listens on the granted port.
    let down = {
        let l = TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    let started = std::time::Instant::now();
    let (ok, out) = deploy_poller(flavour, &down, 2, &root, "d2")?;
    eprintln!(
        "{flavour:?}: second deployment (cached component, app down) took {:?}",
        started.elapsed()
    );
    assert!(!ok, "{flavour:?} passed with the app down:\n{out}");
    assert!(
        out.contains("hooks/validate_health.wasm failed") && out.contains("exit code 3"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{down}/health not healthy after 2 s")),
        "{out}"
    );
    Ok(())
}

#[test]
fn the_python_health_poller_validates_a_running_app_and_fails_when_it_is_down() -> TestResult {
    poller_validates_and_fails_when_down(Flavour::Python)
}

#[test]
fn the_javascript_health_poller_validates_a_running_app_and_fails_when_it_is_down() -> TestResult {
    poller_validates_and_fails_when_down(Flavour::Js)
}
