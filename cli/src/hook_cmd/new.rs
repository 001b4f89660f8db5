//! `rollcage hook new --lang rust|python|js NAME`: write a hook project that builds with one command and that
//! `rollcage hook run` executes. The templates live beside this file (`templates/LANG/`) and are compiled into the
//! binary; `{{name}}` and `{{sdk}}` are the only substitutions. The Python and JavaScript hooks are the examples the
//! tests deploy (`hooks-examples/python`, `hooks-examples/js`), their build line pointed at the project, and their
//! `wit/` is `rollcage-wit`'s: the `rollcage:hook` world and the WASI packages of the wasmtime the agent links.
//!
//! The project is staged in a temp dir next to its destination and renamed into place, so a failure leaves nothing
//! half-written, and an existing directory is never touched.

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `rollcage hook new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The language of the hook.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The project's name (also its directory and the built file's name): a lowercase letter, then lowercase
    /// letters, digits, `-` or `_`, at most 64.
    name: String,
    /// Where to create the project's directory (default: the current directory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The `rollcage-sdk` crate a Rust hook depends on (a path). Default: the SDK of the source tree this binary
    /// was built from.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// Hook languages.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Lang {
    /// Rust with `rollcage-sdk`, built for `wasm32-wasip1`.
    Rust,
    /// Python, built into a WASI 0.2 component by componentize-py.
    Python,
    /// JavaScript, built into a WASI 0.2 component by componentize-js.
    Js,
}

/// One file of a template: its path in the project and its text.
type TemplateFile = (&'static str, &'static str);

const RUST: &[TemplateFile] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
    (
        ".cargo/config.toml",
        include_str!("templates/rust/.cargo/config.toml"),
    ),
    ("src/main.rs", include_str!("templates/rust/src/main.rs")),
    ("sandbox.yml", include_str!("templates/rust/sandbox.yml")),
    ("README.md", include_str!("templates/rust/README.md")),
    // Named without its dot in the source tree so that it does not apply there.
    (".gitignore", include_str!("templates/rust/gitignore")),
];

/// A Python hook: the example health poller (`hooks-examples/python`, the one the tests deploy), its build script,
/// grant and README; `wit/` is written from `rollcage-wit`.
const PYTHON: &[TemplateFile] = &[
    (
        "hook.py",
        include_str!("../../../hooks-examples/python/validate_health.py"),
    ),
    ("build.sh", include_str!("templates/python/build.sh")),
    ("sandbox.yml", include_str!("templates/rust/sandbox.yml")),
    ("README.md", include_str!("templates/python/README.md")),
    (".gitignore", include_str!("templates/python/gitignore")),
];

/// A JavaScript hook: the example health poller (`hooks-examples/js`), as for Python.
const JS: &[TemplateFile] = &[
    (
        "hook.js",
        include_str!("../../../hooks-examples/js/validate_health.js"),
    ),
    ("build.sh", include_str!("templates/js/build.sh")),
    ("sandbox.yml", include_str!("templates/rust/sandbox.yml")),
    ("README.md", include_str!("templates/js/README.md")),
    (".gitignore", include_str!("templates/rust/gitignore")),
];

/// How the examples say they are built, and what a generated project says instead (its files are `hook.*`).
const BUILD_LINES: [(&str, &str); 3] = [
    (
        "componentize validate_health -o validate_health.wasm",
        "componentize hook -o hook.wasm    (./build.sh)",
    ),
    (
        "componentize-js validate_health.js --wit wit",
        "componentize-js hook.js --wit wit",
    ),
    (
        "-d fetch-event -o validate_health.wasm",
        "-d fetch-event -o hook.wasm    (./build.sh)",
    ),
];

/// The SDK of the source tree this binary was built from.
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

/// Longest project name: a crate and file name, not a sentence.
const MAX_NAME: usize = 64;

/// Write the project and say how to build and run it.
pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dest = args.dir.join(&args.name);
    if dest.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; choose another name or --dir",
            dest.display()
        );
    }
    let (files, sdk) = match args.lang {
        Lang::Rust => (RUST, Some(sdk_path(args.sdk.as_deref())?)),
        Lang::Python => (PYTHON, None),
        Lang::Js => (JS, None),
    };
    let sdk_text = sdk
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if sdk_text.contains(['"', '\\', '\n']) {
        bail!(
            "--sdk {sdk_text}: the path cannot hold a quote, backslash or newline (it goes into Cargo.toml)"
        );
    }
    let parent = if args.dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        args.dir.as_path()
    };
    let stage = tempfile::Builder::new()
        .prefix(&format!(".{}-", args.name))
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging dir in {}", parent.display()))?;
    for (path, text) in files {
        let mut text = text
            .replace("{{name}}", &args.name)
            .replace("{{sdk}}", &sdk_text);
        for (example, project) in BUILD_LINES {
            text = text.replace(example, project);
        }
        let file = stage.path().join(path);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("{}", file.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("{}", file.display()))?;
        }
    }
    if matches!(args.lang, Lang::Python | Lang::Js) {
        let wit = stage.path().join("wit");
        rollcage_wit::write_dir(&wit).with_context(|| format!("{}", wit.display()))?;
    }
    let staged = stage.keep();
    if let Err(e) = std::fs::rename(&staged, &dest) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("moving the project to {}", dest.display()));
    }
    println!("created {} ({:?} hook)", dest.display(), args.lang);
    println!("next: cd {} && cat README.md", dest.display());
    Ok(ExitCode::SUCCESS)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "hook name `{name}`: expected a lowercase letter, then lowercase letters, digits, `-` or `_` (at most {MAX_NAME})"
        );
    }
    Ok(())
}

fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = given.unwrap_or(Path::new(BUILT_WITH_SDK));
    let sdk = std::fs::canonicalize(path)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file());
    sdk.ok_or_else(|| {
        anyhow::anyhow!(
            "no rollcage-sdk crate at {}; give the path of rollcage's `sdk/` directory with --sdk",
            path.display()
        )
    })
}
