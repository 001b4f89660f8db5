//! Target `form`: the form loader (`rollcage_runtime::form::parse`) on arbitrary text, as TOML and as YAML.
//!
//! Asserts: no panic; an accepted form's canonical JSON is not empty and reads back to the same form (as a string,
//! and as a `form.json` file is read); the AppSpec it stands for has one `files` entry to its destination and one hook
//! per script, each with a positive timeout; a refusal names at least one problem.

use crate::Verdict;
use rollcage_runtime::form::{
    Form, FormError, FormScriptEvent, FormSyntax, ToAppSpec, from_json, parse,
};
use std::path::Path;

/// Run `data` (as the UTF-8 text a form file must be) through the loader, as TOML and as YAML.
pub fn check(data: &[u8]) -> Verdict {
    let Ok(text) = std::str::from_utf8(data) else {
        return Verdict::Refused;
    };
    let results = [FormSyntax::Toml, FormSyntax::Yaml].map(|syntax| {
        let result = parse(text, syntax, "fuzz");
        match &result {
            Ok(form) => accepted(form),
            Err(FormError::Invalid { problems, .. }) => {
                assert!(!problems.is_empty(), "refused without a problem");
            }
            Err(_) => {}
        }
        result.is_ok()
    });
    Verdict::any(results)
}

fn accepted(form: &Form) {
    let json = form.to_json();
    assert!(!json.is_empty(), "no canonical JSON for {form:?}");
    match from_json(&json, "canonical JSON") {
        Ok(back) => assert_eq!(&back, form, "canonical JSON {json}"),
        Err(e) => panic!("the canonical JSON {json} of an accepted form is refused: {e}"),
    }
    // Saved to a file (`--form form.json`), it is read by the syntax its name implies.
    let syntax = FormSyntax::from_path(Path::new("form.json"));
    match parse(&json, syntax, "form.json") {
        Ok(back) => assert_eq!(&back, form, "canonical JSON read from form.json: {json}"),
        Err(e) => panic!("the canonical JSON {json} saved as form.json is refused: {e}"),
    }
    let spec = form.to_appspec();
    assert_eq!(spec.files.len(), 1, "{spec:?}");
    assert_eq!(spec.files[0].destination, form.destination);
    for e in FormScriptEvent::ALL {
        let hooks = spec.hooks_for(e.event);
        match form.script(e.key) {
            Some(_) => {
                assert_eq!(hooks.len(), 1, "{} → {:?}", e.key, e.event);
                assert!(hooks[0].timeout_secs > 0, "{:?}", hooks[0]);
            }
            None => assert!(hooks.is_empty(), "{} → {:?}", e.key, e.event),
        }
    }
}
