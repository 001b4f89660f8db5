//! Config renderer: read a template from the revision, substitute `${NAME}` with lifecycle values, and write the
//! result into a granted read-write directory.
//!
//! Arguments (from `sandbox.args`): `TEMPLATE OUTPUT`. `TEMPLATE` is relative to the revision (the working
//! directory, mounted read-only at `/revision`); `OUTPUT` is a guest path inside a `read-write` grant of
//! `sandbox.dirs`. `NAME` is a lifecycle variable (`DEPLOYMENT_ID`, `APPLICATION_NAME`, …) or one granted through
//! `sandbox.env`; an unknown name fails the hook rather than rendering a broken config. The output is written to a
//! temporary file next to it and renamed, so readers never see half a file.

use rollcage_sdk::{Context, HookError, HookResult, log, template};
use std::process::ExitCode;

fn render_hook(ctx: &Context) -> HookResult {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [template_path, output] = args.as_slice() else {
        return Err(HookError::new("usage: render_config TEMPLATE OUTPUT"));
    };
    let text = std::fs::read_to_string(template_path)
        .map_err(|e| HookError::new(format!("reading template `{template_path}`: {e}")))?;
    let rendered = template::render(&text, |name| ctx.lookup(name))
        .map_err(|e| HookError::new(format!("template `{template_path}`: {e}")))?;
    let tmp = format!("{output}.tmp");
    std::fs::write(&tmp, &rendered).map_err(|e| HookError::new(format!("writing `{tmp}`: {e}")))?;
    std::fs::rename(&tmp, output)
        .map_err(|e| HookError::new(format!("renaming `{tmp}` to `{output}`: {e}")))?;
    log::info(
        "rendered",
        &[
            ("template", template_path),
            ("output", output),
            ("bytes", &rendered.len()),
        ],
    );
    Ok(())
}

fn main() -> ExitCode {
    rollcage_sdk::run(render_hook)
}
