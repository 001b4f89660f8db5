//! Finds the WASI 0.2 WIT packages of the `wasmtime-wasi-http` this workspace links (its `wit/deps/`: cli, clocks,
//! filesystem, http, io, random, sockets) and writes `wasi_deps.rs`: one `(file name, text)` per package, included
//! into the crate. So the WIT a hook is built against is exactly what the agent implements, and no third-party WIT
//! is kept in the repository.
//!
//! `cargo metadata --offline` (the outer build has already fetched every crate) names the package's manifest; a
//! nested cargo call from a build script is safe for metadata (it takes no build lock).

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// The crate whose `wit/deps/` holds every WASI package a component hook may import (`wasi:http` included).
const SOURCE: &str = "wasmtime-wasi-http";

fn main() {
    if let Err(e) = run() {
        panic!("collecting the WASI WIT packages failed: {e}");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(&manifest_dir)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata's JSON: {e}"))?;
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == SOURCE)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| format!("`{SOURCE}` is not in the workspace's dependency graph"))?;
    let deps = PathBuf::from(manifest)
        .parent()
        .ok_or("a manifest path without a directory")?
        .join("wit/deps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&deps)
        .map_err(|e| format!("{}: {e}", deps.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .wit file in {}", deps.display()));
    }
    let mut code = String::from(
        "/// WASI 0.2 packages: (file name, text).\npub const WASI_DEPS: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not UTF-8", f.display()))?;
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            f.display().to_string()
        )
        .map_err(|e| e.to_string())?;
        println!("cargo:rerun-if-changed={}", f.display());
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("wasi_deps.rs"), code).map_err(|e| e.to_string())?;
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    Ok(())
}
