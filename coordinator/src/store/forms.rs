//! Deployment forms: a group's default form and the form each deployment runs with.
//!
//! A form ([`rollcage_proto::form::Form`]) replaces the package's `appspec.yml`. It arrives validated (the API
//! decodes it with every rule, answering 400 with the field path), is stored as its canonical JSON in tables of its
//! own, keyed by group and deployment id, and is decoded back into the type when a row is read (a row that no
//! longer decodes is [`StoreError::Corrupt`](super::StoreError::Corrupt)).

use super::{Conn, OptionalExt, args};
use super::{Result, StoreError, sql};
use rollcage_proto::form::Form;

/// Longest form accepted (its canonical JSON), in bytes: scripts are meant to be short commands; a bigger program
/// belongs in the package. Keeps every step command small.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Check that a form is within [`MAX_FORM_BYTES`] (its content was validated when it was decoded).
pub fn check_size(form: &Form) -> std::result::Result<(), String> {
    let len = form.to_json().len();
    if len > MAX_FORM_BYTES {
        return Err(format!(
            "form: {len} bytes, more than the {MAX_FORM_BYTES} accepted"
        ));
    }
    Ok(())
}

fn decode(what: &'static str, text: Option<String>) -> Result<Option<Form>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            what,
            detail: format!("{e}: {t}"),
        })
    })
    .transpose()
}

/// Set (or clear, with `None`) a group's default form.
pub fn set_group_form(c: &Conn<'_>, group_id: &str, form: Option<&Form>) -> Result<()> {
    match form {
        Some(f) => c.execute(
            "INSERT INTO group_forms (group_id, form) VALUES (?1, ?2) \
             ON CONFLICT (group_id) DO UPDATE SET form = excluded.form",
            args![group_id, f.to_json()],
        ),
        None => c.execute("DELETE FROM group_forms WHERE group_id = ?1", [group_id]),
    }
    .map_err(sql)?;
    Ok(())
}

/// A group's default form.
pub fn group_form(c: &Conn<'_>, group_id: &str) -> Result<Option<Form>> {
    let text = c
        .query_row(
            "SELECT form FROM group_forms WHERE group_id = ?1",
            [group_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    decode("group_forms.form", text)
}

/// Set (or clear) the form a deployment runs with.
pub fn set_deployment_form(c: &Conn<'_>, deployment_id: &str, form: Option<&Form>) -> Result<()> {
    match form {
        Some(f) => c.execute(
            "INSERT INTO deployment_forms (deployment_id, form) VALUES (?1, ?2) \
             ON CONFLICT (deployment_id) DO UPDATE SET form = excluded.form",
            args![deployment_id, f.to_json()],
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
pub fn deployment_form(c: &Conn<'_>, deployment_id: &str) -> Result<Option<Form>> {
    let text = c
        .query_row(
            "SELECT form FROM deployment_forms WHERE deployment_id = ?1",
            [deployment_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    decode("deployment_forms.form", text)
}

/// The form of the newest successful deployment of `revision` in the group, other than `except`: what a rollback
/// to that revision re-runs, so it gets the scripts the revision was installed with.
pub fn form_of_last_success(
    c: &Conn<'_>,
    app: &str,
    group: &str,
    revision: &str,
    except: &str,
) -> Result<Option<Form>> {
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
    decode("deployment_forms.form", form.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(start: &str) -> Form {
        Form::from_value(&json!({"destination": "/opt/app", "start": start})).unwrap_or_else(|p| {
            panic!("test form is invalid: {p:?}");
        })
    }

    #[test]
    fn check_size_refuses_a_form_over_the_bound() {
        assert!(check_size(&form("true")).is_ok());
        let big = check_size(&form(&"a".repeat(MAX_FORM_BYTES)))
            .err()
            .unwrap_or_default();
        assert!(big.contains("more than the 65536 accepted"), "{big}");
    }

    #[test]
    fn forms_are_stored_typed_and_a_row_that_no_longer_decodes_is_corrupt() -> Result<()> {
        let conn = rusqlite::Connection::open_in_memory().map_err(sql)?;
        let c = Conn::sqlite(&conn);
        c.execute_batch(
            "CREATE TABLE group_forms (group_id TEXT PRIMARY KEY, form TEXT NOT NULL); \
             CREATE TABLE deployment_forms (deployment_id TEXT PRIMARY KEY, form TEXT NOT NULL);",
        )
        .map_err(sql)?;
        let f = form("./run");
        set_group_form(&c, "g-1", Some(&f))?;
        assert_eq!(group_form(&c, "g-1")?, Some(f.clone()));
        set_deployment_form(&c, "d-1", Some(&f))?;
        assert_eq!(deployment_form(&c, "d-1")?, Some(f));
        set_deployment_form(&c, "d-1", None)?;
        assert_eq!(deployment_form(&c, "d-1")?, None);
        c.execute(
            "INSERT INTO deployment_forms (deployment_id, form) VALUES ('d-2', '{\"destination\":\"rel\"}')",
            (),
        )
        .map_err(sql)?;
        assert!(matches!(
            deployment_form(&c, "d-2"),
            Err(StoreError::Corrupt {
                what: "deployment_forms.form",
                ..
            })
        ));
        Ok(())
    }
}
