//! The JSON body of a webhook post ([`rollcage_proto::webhook::WebhookBody`]), rendered from the database at the
//! delivery's first attempt and kept in its row. Rendering then, not in the transition's transaction, keeps the
//! engine's transactions as short as before and lets the body say who acted (recorded after the deployment row,
//! in the same transaction); everything it reads is settled once the transition committed.

use crate::store::webhooks::{Claimed, delivery_id, failed_step};
use crate::store::{Conn, Result, StoreError, actors, deployments};
use rollcage_proto::webhook::{WebhookBody, WebhookEvent};

/// The body of delivery `d`.
pub fn render(c: &Conn<'_>, d: &Claimed) -> Result<String> {
    let row = deployments::get(c, &d.deployment_id)?;
    let who = actors::of(c, &d.deployment_id)?;
    let failure = match d.event {
        WebhookEvent::InstanceFailed => failed_step(c, &d.deployment_id, d.instance.as_deref())?,
        WebhookEvent::DeploymentFailed => failed_step(c, &d.deployment_id, None)?,
        _ => None,
    };
    let body = match row {
        Some(row) => WebhookBody {
            delivery_id: delivery_id(d.seq),
            event: d.event,
            occurred_at_ms: d.occurred_at,
            kind: match (&row.rollback_of, &row.catch_up) {
                (Some(_), _) => "rollback",
                (None, Some(_)) => "catch-up",
                (None, None) => "normal",
            }
            .to_owned(),
            application: row.application,
            group: row.group,
            deployment_id: row.id,
            rollback_of: row.rollback_of,
            rollback_deployment: row.rollback_deployment,
            revision: row.revision,
            created_by: who.created_by,
            stopped_by: who.stopped_by,
            description: row.description,
            status: row.status.name().to_owned(),
            message: row.message,
            instance: d.instance.clone(),
            failure,
            created_at_ms: row.created_at,
            ended_at_ms: row.ended_at,
        },
        // Deployments are kept as history, so this is a database edited by hand: still say what is known.
        None => WebhookBody {
            delivery_id: delivery_id(d.seq),
            event: d.event,
            occurred_at_ms: d.occurred_at,
            application: String::new(),
            group: String::new(),
            deployment_id: d.deployment_id.clone(),
            kind: String::new(),
            rollback_of: None,
            rollback_deployment: None,
            revision: String::new(),
            created_by: None,
            stopped_by: None,
            description: None,
            status: String::new(),
            message: String::new(),
            instance: d.instance.clone(),
            failure,
            created_at_ms: 0,
            ended_at_ms: None,
        },
    };
    serde_json::to_string(&body).map_err(|e| StoreError::Corrupt {
        what: "webhook body",
        detail: e.to_string(),
    })
}
