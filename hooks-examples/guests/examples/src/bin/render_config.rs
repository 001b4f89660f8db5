//! Config renderer: read a template from the revision, substitute `${NAME}` with lifecycle values, and write the
//! result into a granted read-write directory.
//!
//! Arguments (from `sandbox.args`): `TEMPLATE OUTPUT`. `TEMPLATE` is relative to the revision (the working
//! directory, mounted read-only at `/revision`); `OUTPUT` is a guest path inside a `read-write` grant of
//! `sandbox.dirs`. `NAME` is a lifecycle variable (`DEPLOYMENT_ID`, `APPLICATION_NAME`, …) or one granted through
//! `sandbox.env`; an unknown name fails the hook rather than rendering a broken config. The output is written to a
//! temporary file next to it and renamed, so readers never see half a file.

use rollcage_sdk::{Context, HookError, HookResult, log};
use std::process::ExitCode;

fn render_hook(ctx: &Context) -> HookResult {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [template, output] = args.as_slice() else {
        return Err(HookError::new("usage: render_config TEMPLATE OUTPUT"));
    };
    let text = std::fs::read_to_string(template)
        .map_err(|e| HookError::new(format!("reading template `{template}`: {e}")))?;
    let rendered = render(&text, |name| ctx.lookup(name)).map_err(HookError::new)?;
    let tmp = format!("{output}.tmp");
    std::fs::write(&tmp, &rendered).map_err(|e| HookError::new(format!("writing `{tmp}`: {e}")))?;
    std::fs::rename(&tmp, output)
        .map_err(|e| HookError::new(format!("renaming `{tmp}` to `{output}`: {e}")))?;
    log::info(
        "rendered",
        &[
            ("template", template),
            ("output", output),
            ("bytes", &rendered.len()),
        ],
    );
    Ok(())
}

/// Replace every `${NAME}` (NAME = letters, digits, `_`) with `lookup(NAME)`; `$$` is a literal `$`.
fn render(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` at byte {pos}"))?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad variable name `{name}`"));
            }
            out.push_str(
                &lookup(name).ok_or_else(|| format!("unknown variable `{name}` in template"))?,
            );
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn main() -> ExitCode {
    rollcage_sdk::run(render_hook)
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn substitutes_and_rejects_unknown_names() {
        let lookup = |n: &str| (n == "DEPLOYMENT_ID").then(|| "d-1".to_owned());
        assert_eq!(
            render("id=${DEPLOYMENT_ID} cost=$$5 $x", lookup),
            Ok("id=d-1 cost=$5 $x".to_owned())
        );
        assert!(render("${NOPE}", lookup).is_err());
        assert!(render("${DEPLOYMENT_ID", lookup).is_err());
    }
}
