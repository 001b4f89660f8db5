//! Deployment forms: a group's default form and the form each deployment runs with.
//!
//! A form (canonical JSON of `rollcage_runtime::form::Form`) replaces the package's `appspec.yml`. It is kept in
//! tables of its own, keyed by group and deployment id, so the rest of the schema is untouched. The coordinator
//! only checks the JSON's shape; agents validate it fully (field paths) at DownloadBundle.

use super::{Result, sql};
use rusqlite::{Connection, OptionalExtension, params};

/// Longest form accepted, in bytes: scripts are meant to be short commands; a bigger program belongs in the
/// package. Keeps every step command small.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Check that `text` looks like a form: a JSON object with a string `destination`, at most [`MAX_FORM_BYTES`].
pub fn check(text: &str) -> std::result::Result<(), String> {
    if text.len() > MAX_FORM_BYTES {
        return Err(format!(
            "form: {} bytes, more than the {MAX_FORM_BYTES} accepted",
            text.len()
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("form: not JSON: {e}"))?;
    match value.get("destination") {
        Some(serde_json::Value::String(_)) => Ok(()),
        _ => Err("form: expected a JSON object with a string `destination`".to_owned()),
    }
}

/// Set (or clear, with `None`) a group's default form.
pub fn set_group_form(c: &Connection, group_id: &str, form: Option<&str>) -> Result<()> {
    match form {
        Some(f) => c.execute(
            "INSERT INTO group_forms (group_id, form) VALUES (?1, ?2) \
             ON CONFLICT (group_id) DO UPDATE SET form = excluded.form",
            params![group_id, f],
        ),
        None => c.execute("DELETE FROM group_forms WHERE group_id = ?1", [group_id]),
    }
    .map_err(sql)?;
    Ok(())
}

/// A group's default form.
pub fn group_form(c: &Connection, group_id: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT form FROM group_forms WHERE group_id = ?1",
        [group_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

/// Set (or clear) the form a deployment runs with.
pub fn set_deployment_form(c: &Connection, deployment_id: &str, form: Option<&str>) -> Result<()> {
    match form {
        Some(f) => c.execute(
            "INSERT INTO deployment_forms (deployment_id, form) VALUES (?1, ?2) \
             ON CONFLICT (deployment_id) DO UPDATE SET form = excluded.form",
            params![deployment_id, f],
        ),
        None => c.execute(
            "DELETE FROM deployment_forms WHERE deployment_id = ?1",
            [deployment_id],
        ),
    }
    .map_err(sql)?;
    Ok(())
}

/// The form a deployment runs with.
pub fn deployment_form(c: &Connection, deployment_id: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT form FROM deployment_forms WHERE deployment_id = ?1",
        [deployment_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
}

/// The form of the newest successful deployment of `revision` in the group, other than `except`: what a rollback
/// to that revision re-runs, so it gets the scripts the revision was installed with.
pub fn form_of_last_success(
    c: &Connection,
    app: &str,
    group: &str,
    revision: &str,
    except: &str,
) -> Result<Option<String>> {
    let form: Option<Option<String>> = c
        .query_row(
            "SELECT f.form FROM deployments d LEFT JOIN deployment_forms f ON f.deployment_id = d.id \
             WHERE d.application = ?1 AND d.group_name = ?2 AND d.revision = ?3 AND d.id != ?4 \
             AND d.status = 'succeeded' ORDER BY d.seq DESC LIMIT 1",
            [app, group, revision, except],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(form.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_accepts_an_object_with_a_destination_only() {
        assert!(check(r#"{"destination":"/opt/app","start":{"script":"true"}}"#).is_ok());
        assert!(check(r#"{"start":{"script":"true"}}"#).is_err());
        assert!(check("[1]").is_err());
        assert!(check("destination = '/x'").is_err());
        let big = format!(
            r#"{{"destination":"/x","start":"{}"}}"#,
            "a".repeat(MAX_FORM_BYTES)
        );
        assert!(check(&big).is_err());
    }
}
