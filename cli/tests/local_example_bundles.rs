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
