//! Applications and deployment groups. A group's load-balancer settings are stored as JSON and decoded into
//! [`rollcage_proto::lb::GroupLb`] by the row reader (validated when the group was created).

use super::{Conn, OptionalExt, args};
use super::{Result, decode, sql};
use rollcage_proto::wire::{Application, Group};

/// Insert an application; `false` when one with that name exists.
pub fn insert_application(c: &Conn<'_>, name: &str, now: i64) -> Result<bool> {
    let n = c
        .execute(
            "INSERT INTO applications (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            args![name, now],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// One application.
pub fn application(c: &Conn<'_>, name: &str) -> Result<Option<Application>> {
    c.query_row(
        "SELECT name, created_at FROM applications WHERE name = ?1",
        [name],
        |r| {
            Ok(Application {
                name: r.get(0)?,
                created_at_ms: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(sql)
}

/// Every application, by name.
pub fn applications(c: &Conn<'_>) -> Result<Vec<Application>> {
    let mut st = c
        .prepare("SELECT name, created_at FROM applications ORDER BY name")
        .map_err(sql)?;
    let rows = st
        .query_map((), |r| {
            Ok(Application {
                name: r.get(0)?,
                created_at_ms: r.get(1)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// Up to `limit` applications by name, those after `after` (the paging cursor: a name) when given.
pub fn applications_page(
    c: &Conn<'_>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Application>> {
    let mut st = c
        .prepare_cached(
            "SELECT name, created_at FROM applications WHERE name > ?1 ORDER BY name LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = st
        .query_map(
            args![
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(Application {
                    name: r.get(0)?,
                    created_at_ms: r.get(1)?,
                })
            },
        )
        .map_err(sql)?;
    rows.collect::<crate::store::Result<_>>().map_err(sql)
}

/// A group's settings that its row holds as JSON text.
struct JsonColumns {
    instances: String,
    tags: String,
    lb: Option<String>,
}

fn json_columns(g: &Group) -> Result<JsonColumns> {
    Ok(JsonColumns {
        instances: serde_json::to_string(&g.instances).unwrap_or_else(|_| "[]".to_owned()),
        tags: serde_json::to_string(&g.tags).unwrap_or_else(|_| "[]".to_owned()),
        // Typed settings serialise to a JSON object; the column holds that text.
        lb: g
            .lb
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| super::StoreError::Corrupt {
                what: "groups.lb",
                detail: e.to_string(),
            })?,
    })
}

/// Insert a group; `false` when the application already has one with that name.
pub fn insert_group(c: &Conn<'_>, g: &Group) -> Result<bool> {
    let JsonColumns {
        instances,
        tags,
        lb,
    } = json_columns(g)?;
    let n = c
        .execute(
            "INSERT INTO groups (id, application, name, style, concurrency, failure_tolerance, \
             auto_rollback, instances, created_at, lb, tags) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT DO NOTHING",
            args![
                g.id,
                g.application,
                g.name,
                g.style.name(),
                g.concurrency.to_string(),
                g.failure_tolerance,
                g.auto_rollback,
                instances,
                g.created_at_ms,
                lb,
                tags
            ],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

const GROUP_COLS: &str = "id, application, name, style, concurrency, failure_tolerance, auto_rollback, instances, \
                          created_at, lb, tags";

type GroupRow = (
    String,
    String,
    String,
    String,
    String,
    u32,
    bool,
    String,
    i64,
    Option<String>,
    String,
);

fn group_row(r: &crate::store::Row<'_>) -> crate::store::Result<GroupRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn to_group(row: GroupRow) -> Result<Group> {
    let (
        id,
        application,
        name,
        style,
        concurrency,
        failure_tolerance,
        auto_rollback,
        instances,
        created,
        lb,
        tags,
    ) = row;
    Ok(Group {
        id,
        application,
        name,
        style: decode("groups.style", &style)?,
        concurrency: decode("groups.concurrency", &concurrency)?,
        failure_tolerance,
        auto_rollback,
        instances: serde_json::from_str(&instances).map_err(|_| super::StoreError::Corrupt {
            what: "groups.instances",
            detail: instances.clone(),
        })?,
        tags: serde_json::from_str(&tags).map_err(|_| super::StoreError::Corrupt {
            what: "groups.tags",
            detail: tags.clone(),
        })?,
        lb: lb
            .map(|lb| {
                serde_json::from_str(&lb).map_err(|e| super::StoreError::Corrupt {
                    what: "groups.lb",
                    detail: format!("{e}: {lb}"),
                })
            })
            .transpose()?,
        webhooks: Default::default(),
        created_at_ms: created,
    })
}

/// `g` with its webhook settings ([`super::webhooks::config`]: the endpoints, and whether a secret is stored).
fn with_webhooks(c: &Conn<'_>, mut g: Group) -> Result<Group> {
    g.webhooks = super::webhooks::config(c, &g.id)?;
    Ok(g)
}

/// One group of an application.
pub fn group(c: &Conn<'_>, app: &str, name: &str) -> Result<Option<Group>> {
    let row = c
        .query_row(
            &format!("SELECT {GROUP_COLS} FROM groups WHERE application = ?1 AND name = ?2"),
            [app, name],
            group_row,
        )
        .optional()
        .map_err(sql)?;
    row.map(|r| to_group(r).and_then(|g| with_webhooks(c, g)))
        .transpose()
}

/// The groups of an application, by name.
pub fn groups(c: &Conn<'_>, app: &str) -> Result<Vec<Group>> {
    let mut st = c
        .prepare(&format!(
            "SELECT {GROUP_COLS} FROM groups WHERE application = ?1 ORDER BY name"
        ))
        .map_err(sql)?;
    let rows = st
        .query_map([app], group_row)
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|r| to_group(r).and_then(|g| with_webhooks(c, g)))
        .collect()
}

/// Replace group `g.id`'s settings (concurrency, tolerance, auto-rollback, instances, tags, load balancer); its
/// id, application, name, style and creation time stay.
pub fn update_group(c: &Conn<'_>, g: &Group) -> Result<()> {
    let JsonColumns {
        instances,
        tags,
        lb,
    } = json_columns(g)?;
    c.execute(
        "UPDATE groups SET concurrency = ?2, failure_tolerance = ?3, auto_rollback = ?4, instances = ?5, \
         tags = ?6, lb = ?7 WHERE id = ?1",
        args![
            g.id,
            g.concurrency.to_string(),
            g.failure_tolerance,
            g.auto_rollback,
            instances,
            tags,
            lb
        ],
    )
    .map_err(sql)?;
    Ok(())
}

/// Delete group `id` and its default form (its deployments stay, as history).
pub fn delete_group(c: &Conn<'_>, id: &str) -> Result<()> {
    c.execute("DELETE FROM group_forms WHERE group_id = ?1", [id])
        .map_err(sql)?;
    super::webhooks::delete_group(c, id, rollcage_proto::wire::now_ms())?;
    c.execute("DELETE FROM groups WHERE id = ?1", [id])
        .map_err(sql)?;
    Ok(())
}

/// Delete application `name` (the caller checked that nothing depends on it); `false` when there was none.
pub fn delete_application(c: &Conn<'_>, name: &str) -> Result<bool> {
    let n = c
        .execute("DELETE FROM applications WHERE name = ?1", [name])
        .map_err(sql)?;
    Ok(n == 1)
}

/// Every group of every application (the groups an instance that starts might belong to), without their webhooks.
pub fn all_groups(c: &Conn<'_>) -> Result<Vec<Group>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {GROUP_COLS} FROM groups ORDER BY application, name"
        ))
        .map_err(sql)?;
    let rows = st.query_map((), group_row).map_err(sql)?;
    rows.map(|r| r.map_err(sql).and_then(to_group)).collect()
}

/// Up to `limit` groups of an application by name, those after `after` (the paging cursor: a name) when given.
pub fn groups_page(
    c: &Conn<'_>,
    app: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Group>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {GROUP_COLS} FROM groups WHERE application = ?1 AND name > ?2 ORDER BY name LIMIT ?3"
        ))
        .map_err(sql)?;
    let rows = st
        .query_map(
            args![
                app,
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            group_row,
        )
        .map_err(sql)?
        .collect::<crate::store::Result<Vec<_>>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|r| to_group(r).and_then(|g| with_webhooks(c, g)))
        .collect()
}

/// Blue/green: the server group serving now, if a switch (or the group's settings) set one.
pub fn active_server_group(c: &Conn<'_>, group_id: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT active_server_group FROM groups WHERE id = ?1",
        [group_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql)
    .map(Option::flatten)
}

/// Blue/green: record the server group serving now (after a successful switch).
pub fn set_active_server_group(c: &Conn<'_>, group_id: &str, server_group: &str) -> Result<()> {
    c.execute(
        "UPDATE groups SET active_server_group = ?2 WHERE id = ?1",
        args![group_id, server_group],
    )
    .map_err(sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use rollcage_proto::lb::GroupLb;
    use rollcage_proto::wire::{Concurrency, DeploymentStyle};

    fn lb_group(lb: Option<GroupLb>) -> Group {
        Group {
            id: "g-1".into(),
            application: "app".into(),
            name: "web".into(),
            style: DeploymentStyle::InPlaceLb,
            concurrency: Concurrency::Count(1),
            failure_tolerance: 0,
            auto_rollback: false,
            instances: vec!["a".into()],
            tags: Default::default(),
            lb,
            webhooks: Default::default(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn lb_settings_are_read_back_typed_and_a_row_that_does_not_decode_is_corrupt()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let settings: GroupLb = serde_json::from_value(serde_json::json!({
            "targets": { "a": "127.0.0.1:8081" },
            "lb": {
                "service": "app1",
                "driver": { "kind": "haproxy", "socket": "/run/haproxy.sock" },
                "server_groups": { "web": ["127.0.0.1:8081"] }
            }
        }))?;
        Ok(crate::store::each_backend(|s| {
            s.write(|tx| {
                insert_application(tx, "app", 0)?;
                insert_group(tx, &lb_group(Some(settings.clone())))
            })?;
            let g = s.read(|c| group(c, "app", "web"))?;
            assert_eq!(g.and_then(|g| g.lb), Some(settings.clone()));
            s.write(|tx| {
                tx.execute(
                    "UPDATE groups SET lb = '{\"lb\":\"nonsense\"}' WHERE id = 'g-1'",
                    (),
                )
                .map_err(sql)
            })?;
            let read = s.read(|c| group(c, "app", "web"));
            assert!(
                matches!(
                    read,
                    Err(StoreError::Corrupt {
                        what: "groups.lb",
                        ..
                    })
                ),
                "{read:?}"
            );
            Ok(())
        })?)
    }
}
