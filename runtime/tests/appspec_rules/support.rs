//! Helpers shared by the AppSpec rule tests.

use rollcage_runtime::appspec::{AppSpec, Problem, ProblemKind, parse};
use std::path::Path;

/// The two lines every valid AppSpec starts with.
pub const HEAD: &str = "version: 0.0\nos: linux\n";

/// Parse `text` that must be valid.
pub fn valid(text: &str) -> AppSpec {
    valid_in(text, None)
}

/// Parse `text` (checked against `root` when given) that must be valid.
pub fn valid_in(text: &str, root: Option<&Path>) -> AppSpec {
    match parse(text, root) {
        Ok(spec) => spec,
        Err(problems) => panic!("expected a valid AppSpec, got {problems:#?}\n---\n{text}"),
    }
}

/// The problems of `text`, which must be invalid.
pub fn problems(text: &str) -> Vec<Problem> {
    problems_in(text, None)
}

/// The problems of `text` checked against `root`.
pub fn problems_in(text: &str, root: Option<&Path>) -> Vec<Problem> {
    match parse(text, root) {
        Ok(spec) => panic!("expected problems, got a valid AppSpec {spec:#?}\n---\n{text}"),
        Err(problems) => problems,
    }
}

/// The one problem of `kind` at `path`; fails listing every problem otherwise.
pub fn expect(text: &str, kind: ProblemKind, path: &str) -> Problem {
    expect_in(text, None, kind, path)
}

/// [`expect`] against a revision directory.
pub fn expect_in(text: &str, root: Option<&Path>, kind: ProblemKind, path: &str) -> Problem {
    let all = problems_in(text, root);
    match all.iter().find(|p| p.kind == kind && p.path == path) {
        Some(p) => p.clone(),
        None => panic!("no {kind:?} at `{path}` among {all:#?}\n---\n{text}"),
    }
}

/// A revision directory with the given files (path, content); parent directories are created.
pub fn revision(files: &[(&str, &[u8])]) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for (rel, content) in files {
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
    }
    Ok(dir)
}

/// The first bytes of a wasm module (magic + version 1).
pub const WASM_HEADER: &[u8] = b"\0asm\x01\0\0\0";
