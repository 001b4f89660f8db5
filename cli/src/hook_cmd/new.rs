//! `rollcage hook new --lang rust|python|js NAME`: write a hook project that builds with one command and that
//! `rollcage hook run` executes. The templates live beside this file (`templates/LANG/`) and are compiled into the
//! binary; `{{name}}` and `{{sdk}}` are the only substitutions.
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
        let text = text
            .replace("{{name}}", &args.name)
            .replace("{{sdk}}", &sdk_text);
        let file = stage.path().join(path);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("{}", file.display()))?;
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
