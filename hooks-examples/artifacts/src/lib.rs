//! The wasm builds of `hooks-examples/guests`, for tests and benchmarks, and the example bundles.
//!
//! `build.rs` compiles every guest from source, for `wasm32-wasip1` (preview-1 core modules) and for
//! `wasm32-wasip2` (WASI 0.2 command components), and generates one constant per program and target:
//! `EXAMPLE_<NAME>` for the example hooks (`examples/src/bin/<name>.rs`) and `TEST_<NAME>` for the test programs
//! (`test-programs/src/bin/<name>.rs`), each the absolute path of the `.wasm` module; `P2_EXAMPLE_<NAME>` and
//! `P2_TEST_<NAME>` the same programs as components. `foreach_test!(m)` / `foreach_p2_test!(m)` call `m!(name)`
//! for every test program.
//!
//! `PY_EXAMPLE_VALIDATE_HEALTH` and `JS_EXAMPLE_VALIDATE_HEALTH` are the Python and JavaScript health pollers
//! (`hooks-examples/python`, `hooks-examples/js`) built into components by componentize-py / componentize-js
//! (`build_polyglot.rs`); `PY_BENCH_NOOP` and `JS_BENCH_NOOP` the hook runner benchmark's no-op hooks
//! (`hooks-examples/bench`), and `PY_TEST_PROBE` the Python sandbox probe of the component tests
//! (`hooks-examples/probes/python`), built the same way.
//!
//! [`assemble_bundle`] lays out a deployable example bundle: `bundles/wasm` (the hooks as wasm modules or, as
//! [`Flavour::WasmComponent`], the same hooks as components, built
//! here), `bundles/shell` (their shell twins), `bundles/python` and `bundles/js` (the health poller as a Python or
//! JavaScript component).

use std::io;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/gen.rs"));

/// The example bundles' sources (`wasm/` and `shell/`).
pub const BUNDLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bundles");

/// The health endpoint base the committed bundles use; [`assemble_bundle`] replaces it.
pub const DEFAULT_HEALTH_BASE: &str = "http://127.0.0.1:18080";

/// The directory the committed bundles render their config into; [`assemble_bundle`] replaces it.
pub const DEFAULT_CONFIG_DIR: &str = "/tmp/rollcage-example/config";

/// Which twin of the example bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Hooks are the wasm modules built from `guests/examples`.
    Wasm,
    /// The same bundle with the same hooks built for `wasm32-wasip2`: WASI 0.2 components on the Rust SDK.
    WasmComponent,
    /// Hooks are the shell twins.
    Shell,
    /// The ValidateService health poller in Python ([`PY_EXAMPLE_VALIDATE_HEALTH`]), as a WASI 0.2 component.
    Python,
    /// The ValidateService health poller in JavaScript ([`JS_EXAMPLE_VALIDATE_HEALTH`]), as a WASI 0.2 component.
    Js,
}

impl Flavour {
    /// The bundle's directory name under [`BUNDLES_DIR`].
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Wasm | Self::WasmComponent => "wasm",
            Self::Shell => "shell",
            Self::Python => "python",
            Self::Js => "js",
        }
    }
}

/// Where the assembled bundle's hooks look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleParams {
    /// `http://host:port` of the health endpoint (the hook GETs `{base}/health`).
    pub health_base: String,
    /// Existing host directory the config renderer writes `app.conf` into.
    pub config_dir: PathBuf,
}

impl Default for BundleParams {
    fn default() -> Self {
        Self {
            health_base: DEFAULT_HEALTH_BASE.to_owned(),
            config_dir: PathBuf::from(DEFAULT_CONFIG_DIR),
        }
    }
}

/// Copy the example bundle of `flavour` to `dest` (created), pointing it at `params`; the wasm flavour gets the
/// freshly built modules under `hooks/`.
pub fn assemble_bundle(flavour: Flavour, dest: &Path, params: &BundleParams) -> io::Result<()> {
    let src = Path::new(BUNDLES_DIR).join(flavour.dir_name());
    copy_tree(&src, dest, params)?;
    let hooks = dest.join("hooks");
    match flavour {
        Flavour::Shell => {}
        Flavour::Wasm => {
            std::fs::create_dir_all(&hooks)?;
            std::fs::copy(EXAMPLE_VALIDATE_HEALTH, hooks.join("validate_health.wasm"))?;
            std::fs::copy(EXAMPLE_RENDER_CONFIG, hooks.join("render_config.wasm"))?;
        }
        Flavour::WasmComponent => {
            std::fs::create_dir_all(&hooks)?;
            std::fs::copy(
                P2_EXAMPLE_VALIDATE_HEALTH,
                hooks.join("validate_health.wasm"),
            )?;
            std::fs::copy(P2_EXAMPLE_RENDER_CONFIG, hooks.join("render_config.wasm"))?;
        }
        Flavour::Python | Flavour::Js => {
            let built = if flavour == Flavour::Python {
                PY_EXAMPLE_VALIDATE_HEALTH
            } else {
                JS_EXAMPLE_VALIDATE_HEALTH
            };
            std::fs::create_dir_all(&hooks)?;
            std::fs::copy(built, hooks.join("validate_health.wasm"))?;
        }
    }
    Ok(())
}

fn copy_tree(src: &Path, dest: &Path, params: &BundleParams) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&from, &to, params)?;
            continue;
        }
        let text = std::fs::read_to_string(&from)?;
        let text = text
            .replace(DEFAULT_HEALTH_BASE, &params.health_base)
            .replace(DEFAULT_CONFIG_DIR, &params.config_dir.display().to_string());
        std::fs::write(&to, text)?;
        std::fs::set_permissions(&to, std::fs::metadata(&from)?.permissions())?;
    }
    Ok(())
}
