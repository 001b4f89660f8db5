//! The Python and JavaScript example hooks (`hooks-examples/python`, `hooks-examples/js`), the benchmark's no-op
//! hooks (`hooks-examples/bench`) and the Python sandbox probe (`hooks-examples/probes`), built into WASI 0.2
//! command components against the `rollcage:hook` world (`rollcage-wit`, written into `OUT_DIR/wit`) by
//! componentize-py and componentize-js, the pinned versions `scripts/setup.sh` installs.
//!
//! Each tool takes tens of seconds (most of it the embedded interpreter's snapshot), so a component is rebuilt only
//! when its inputs change: the output is named by a hash of the source, the WIT files and the tool's version, and
//! reused while it exists. The builds run at the same time.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One hook to build: its constant, the tool and the arguments after it.
pub struct Build {
    pub konst: &'static str,
    pub what: String,
    tool: PathBuf,
    args: Vec<String>,
    inputs: Vec<PathBuf>,
}

/// Where setup.sh puts each tool, overridable through the environment.
fn tool(var: &str, default: &str) -> PathBuf {
    println!("cargo:rerun-if-env-changed={var}");
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The builds, for the repository at `root`, against the WIT directory `wit` (written by `rollcage_wit::write_dir`).
pub fn builds(root: &Path, wit: &Path) -> Vec<Build> {
    let mut wit_files: Vec<PathBuf> = [wit.join("hook.wit"), wit.join("world.wit")]
        .into_iter()
        .chain(
            std::fs::read_dir(wit.join("deps"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        )
        .collect();
    wit_files.sort();
    let with = |f: &Path| [vec![f.to_owned()], wit_files.clone()].concat();
    let examples = root.join("hooks-examples");
    let componentize_py = tool("COMPONENTIZE_PY", "/opt/rollcage-venv/bin/componentize-py");
    let componentize_js = tool(
        "COMPONENTIZE_JS",
        "/opt/rollcage-node/node_modules/.bin/componentize-js",
    );
    // `dir/module.py`, under hooks-examples; componentize-py embeds all of `dir` (`-p`) in the component.
    let python = |konst, dir: &str, module: &str| {
        let dir = examples.join(dir);
        let source = dir.join(format!("{module}.py"));
        Build {
            konst,
            what: format!("{} (componentize-py)", source.display()),
            tool: componentize_py.clone(),
            args: vec![
                "-d".into(),
                wit.display().to_string(),
                "-w".into(),
                "hook".into(),
                "componentize".into(),
                "-p".into(),
                dir.display().to_string(),
                module.into(),
                "-o".into(),
            ],
            inputs: with(&source),
        }
    };
    // A file under hooks-examples.
    let js = |konst, file: &str| {
        let source = examples.join(file);
        Build {
            konst,
            what: format!("{} (componentize-js)", source.display()),
            tool: componentize_js.clone(),
            args: vec![
                source.display().to_string(),
                "--wit".into(),
                wit.display().to_string(),
                "-n".into(),
                "hook".into(),
                "-d".into(),
                "http".into(),
                "-d".into(),
                "fetch-event".into(),
                "-o".into(),
            ],
            inputs: with(&source),
        }
    };
    vec![
        python("PY_EXAMPLE_VALIDATE_HEALTH", "python", "validate_health"),
        js("JS_EXAMPLE_VALIDATE_HEALTH", "js/validate_health.js"),
        // The no-op hooks of the hook runner's benchmark (runtime/benches/hook_runner.rs).
        python("PY_BENCH_NOOP", "bench/python", "noop"),
        js("JS_BENCH_NOOP", "bench/js/noop.js"),
        // The sandbox probe of the component tests (runtime/tests/wasm_components.rs, `mod python`).
        python("PY_TEST_PROBE", "probes/python", "probe"),
    ]
}

/// Build every example (in parallel) into `out_dir`; returns (constant, path) pairs.
pub fn build_all(builds: &[Build], out_dir: &Path) -> Result<Vec<(&'static str, PathBuf)>, String> {
    let mut running = Vec::new();
    let mut done = Vec::new();
    for b in builds {
        for input in &b.inputs {
            println!("cargo:rerun-if-changed={}", input.display());
        }
        let version = Command::new(&b.tool)
            .arg("--version")
            .output()
            .map_err(|e| {
                format!(
                    "cannot run `{}` to build {}: {e}; run scripts/setup.sh (it installs the pinned componentize-py \
                     and componentize-js), or point COMPONENTIZE_PY / COMPONENTIZE_JS at them",
                    b.tool.display(),
                    b.what
                )
            })?;
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&version.stdout, &mut hasher);
        for input in &b.inputs {
            let bytes = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
            std::hash::Hash::hash(&(input, bytes), &mut hasher);
        }
        let out = out_dir.join(format!(
            "{}-{:016x}.wasm",
            b.konst.to_lowercase(),
            std::hash::Hasher::finish(&hasher)
        ));
        if out.is_file() {
            done.push((b.konst, out));
            continue;
        }
        let partial = out.with_extension("partial.wasm");
        let child = Command::new(&b.tool)
            .args(&b.args)
            .arg(&partial)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("running `{}` for {}: {e}", b.tool.display(), b.what))?;
        running.push((b, child, partial, out));
    }
    for (b, child, partial, out) in running {
        let output = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {}: {e}", b.what))?;
        if !output.status.success() {
            return Err(format!(
                "building {} failed ({}):\n{}{}",
                b.what,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        std::fs::rename(&partial, &out).map_err(|e| format!("{}: {e}", out.display()))?;
        done.push((b.konst, out));
    }
    Ok(done)
}
