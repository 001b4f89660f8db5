//! The WIT a component hook is built against, in one place: `rollcage:hook` (`hook.wit`: the lifecycle context and
//! structured log lines the agent adds to WASI; `world.wit`: the `hook` world) and the WASI 0.2 packages the world
//! includes, taken at build time from the `wasmtime-wasi-http` the agent links (see `build.rs`), so they match
//! what the agent implements and no copy of them is kept in git.
//!
//! Used by the example hooks' build (`hooks-examples/artifacts`) and by `rollcage hook new`, which write the same
//! directory: `hook.wit`, `world.wit` and `deps/*.wit`.

use std::path::Path;

/// `rollcage:hook`'s interfaces (and the `imports` world the Rust SDK binds).
pub const HOOK_WIT: &str = include_str!("../hook.wit");
/// The `hook` world.
pub const WORLD_WIT: &str = include_str!("../world.wit");

include!(concat!(env!("OUT_DIR"), "/wasi_deps.rs"));

/// The world a hook targets (`componentize-py -w hook`, `componentize-js -n hook`).
pub const WORLD: &str = "hook";

/// Write the WIT directory a hook builds against into `dir`: `hook.wit`, `world.wit` and `deps/<package>.wit`.
/// A file already holding the same text is left alone, so a build that watches these files does not rerun.
pub fn write_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("deps"))?;
    let files = [("hook.wit", HOOK_WIT), ("world.wit", WORLD_WIT)]
        .into_iter()
        .map(|(n, t)| (dir.join(n), t))
        .chain(
            WASI_DEPS
                .iter()
                .map(|(n, t)| (dir.join("deps").join(n), *t)),
        );
    for (path, text) in files {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_world_and_every_package_it_includes_are_here() {
        assert!(WORLD_WIT.contains("world hook"));
        assert!(
            !HOOK_WIT
                .lines()
                .any(|l| l.trim_start().starts_with("include wasi:")
                    || l.trim_start().starts_with("import wasi:")),
            "hook.wit stands alone"
        );
        let names: Vec<&str> = WASI_DEPS.iter().map(|(n, _)| *n).collect();
        for package in [
            "cli.wit",
            "clocks.wit",
            "filesystem.wit",
            "http.wit",
            "io.wit",
            "random.wit",
            "sockets.wit",
        ] {
            assert!(names.contains(&package), "{package} in {names:?}");
        }
        // The version the hook world includes is the one the packages define.
        assert!(WORLD_WIT.contains("wasi:cli/command@0.2.12"));
        let cli = WASI_DEPS
            .iter()
            .find(|(n, _)| *n == "cli.wit")
            .map(|(_, t)| *t)
            .unwrap_or("");
        assert!(
            cli.contains("package wasi:cli@0.2.12"),
            "{}",
            &cli[..cli.len().min(200)]
        );
    }
}
