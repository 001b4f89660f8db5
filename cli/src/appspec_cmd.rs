//! `rollcage appspec check PATH`: validate an AppSpec and print every problem as `FILE:LINE:COL: message`.
//!
//! PATH may be an AppSpec file, an unpacked revision directory, or a bundle archive (tar, tar.gz, zip; detected
//! by content, not name). An archive is read in place — nothing is written — and its AppSpec is found at the root
//! or under a single wrapper directory, as CodeDeploy strips one. Exit status: 0 valid (with a one-line summary),
//! 1 problems found, 2 usage or I/O error.
//!
//! `rollcage appspec check --form FILE` validates a deployment form (see `rollcage_runtime::form`) the same way:
//! every problem as `FILE: field.path: message`, with the same exit statuses.

mod archive;

use rollcage_runtime::appspec::{self, AppSpec, AppSpecError, DirRevision, Problem, RevisionView};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// What PATH turned out to be.
enum Input {
    /// An AppSpec file (no revision to check hook locations against).
    File { name: String, text: String },
    /// A revision: its AppSpec, and a view to check locations against.
    Revision {
        name: String,
        text: String,
        view: Box<dyn RevisionView>,
    },
}

/// Run the check; see the module doc for the exit statuses.
pub fn check(path: &Path) -> ExitCode {
    let input = match read_input(path) {
        Ok(Ok(input)) => input,
        Ok(Err(not_found)) => {
            println!("{}: {not_found}", path.display());
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("rollcage: {e}");
            return ExitCode::from(2);
        }
    };
    let (name, checked) = match &input {
        Input::File { name, text } => (name, appspec::check_in(text, None)),
        Input::Revision { name, text, view } => {
            (name, appspec::check_in(text, Some(view.as_ref())))
        }
    };
    for w in sorted(checked.warnings) {
        println!("{}", w.located(name, "warning: "));
    }
    match checked.result {
        Ok(spec) => {
            println!("{name}: valid ({})", summary(&spec));
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in sorted(problems) {
                println!("{}", p.located(name, ""));
            }
            ExitCode::from(1)
        }
    }
}

/// Validate a deployment form; exit statuses as for an AppSpec.
pub fn check_form(path: &Path) -> ExitCode {
    use rollcage_runtime::form::{self, FormError};
    let name = path.display();
    match form::load(path) {
        Ok(f) => {
            let scripts: Vec<&str> = form::FormScriptEvent::ALL
                .iter()
                .filter(|e| f.script(e.key).is_some())
                .map(|e| e.key)
                .collect();
            println!(
                "{name}: valid form (destination {}, scripts: {})",
                f.destination.display(),
                if scripts.is_empty() {
                    "none".to_owned()
                } else {
                    scripts.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        Err(FormError::Invalid { problems, .. }) => {
            for p in problems {
                println!("{name}: {p}");
            }
            ExitCode::from(1)
        }
        Err(e @ FormError::Syntax { .. }) => {
            println!("{e}");
            ExitCode::from(1)
        }
        Err(e @ FormError::Io { .. }) => {
            eprintln!("rollcage: {e}");
            ExitCode::from(2)
        }
    }
}

/// Reading order; problems without a position (whole-document ones) first.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `3 files, 5 hooks in 4 events, 1 permission`.
fn summary(spec: &AppSpec) -> String {
    let hooks: usize = spec.hooks.values().map(Vec::len).sum();
    format!(
        "{}, {} in {}, {}",
        plural(spec.files.len(), "file", "files"),
        plural(hooks, "hook", "hooks"),
        plural(spec.hooks.len(), "event", "events"),
        plural(spec.permissions.len(), "permission", "permissions"),
    )
}

/// What PATH holds. The inner `Err` is "a revision without an AppSpec" (a finding, exit 1); the outer one an
/// I/O error (exit 2).
fn read_input(path: &Path) -> Result<Result<Input, String>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_dir() {
        let file = match appspec::find_in_revision(path) {
            Ok(file) => file,
            Err(AppSpecError::NotFound(_)) => {
                return Ok(Err(
                    "no appspec.yml or appspec.yaml at the root of the revision".to_owned(),
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let text = read_text(&file)?;
        let view = Box::new(DirRevision::new(path));
        return Ok(Ok(Input::Revision {
            name: file.display().to_string(),
            text,
            view,
        }));
    }
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(archive::SNIFF_LEN as u64).read_to_end(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match archive::Format::sniff(&head) {
        Some(format) => {
            let found = archive::read(path, format)
                .map_err(|e| format!("cannot read archive {}: {e}", path.display()))?;
            Ok(found.map(|a| Input::Revision {
                name: format!("{}!{}", path.display(), a.appspec_name),
                text: a.appspec_text.clone(),
                view: Box::new(a),
            }))
        }
        None => Ok(Ok(Input::File {
            name: path.display().to_string(),
            text: read_text(path)?,
        })),
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
