//! Groups' webhooks and their delivery outbox (issue 15).
//!
//! A group's endpoints are rows of `webhooks`, its signing secret a row of `webhook_secrets` (kept in the database
//! because every coordinator signs with it; never returned by the API). [`enqueue`] is called by the store
//! functions that record a transition ([`super::deployments`]), in their transaction: one `webhook_deliveries`
//! row per endpoint of the deployment's group, so an event is queued exactly when its transition commits and the
//! engine never waits on a receiver. The delivery task (`crate::webhooks`) [`claim`]s the due head of each
//! endpoint's queue (its oldest row not yet delivered or given up), posts it and [`record`]s the outcome. A claim
//! is a lease on the row (`lease_holder`, `lease_until`), taken by one `UPDATE` that re-checks the lease, so two
//! coordinators on one PostgreSQL database never post the same row at once, and an endpoint's next row is not a
//! head until the one before it ended: deliveries to one endpoint go out strictly in order.

use super::{Conn, OptionalExt, Result, StoreError, Tx, args, sql};
use rollcage_proto::webhook::{
    DeliveryState, GroupWebhooks, WebhookDelivery, WebhookEvent, WebhookFailure,
};

/// A group's webhook settings (never the secret itself).
pub fn config(c: &Conn<'_>, group_id: &str) -> Result<GroupWebhooks> {
    let urls = c
        .query_map(
            "SELECT url FROM webhooks WHERE group_id = ?1 ORDER BY ord",
            [group_id],
            |r| r.get::<String>(0),
        )
        .map_err(sql)?;
    let has_secret = c
        .prepare_cached("SELECT 1 FROM webhook_secrets WHERE group_id = ?1")
        .map_err(sql)?
        .exists([group_id])
        .map_err(sql)?;
    Ok(GroupWebhooks { urls, has_secret })
}

/// Replace group `group_id`'s endpoints with `urls` (when given; an empty list also drops the secret) and its
/// secret with `secret` (when given). The caller checked both ([`rollcage_proto::webhook::check`]).
pub fn set_config(
    c: &Conn<'_>,
    group_id: &str,
    urls: Option<&[String]>,
    secret: Option<&str>,
) -> Result<()> {
    if let Some(urls) = urls {
        c.execute("DELETE FROM webhooks WHERE group_id = ?1", [group_id])
            .map_err(sql)?;
        for (ord, url) in urls.iter().enumerate() {
            c.execute(
                "INSERT INTO webhooks (group_id, url, ord) VALUES (?1, ?2, ?3)",
                args![group_id, url, ord],
            )
            .map_err(sql)?;
        }
        if urls.is_empty() {
            c.execute(
                "DELETE FROM webhook_secrets WHERE group_id = ?1",
                [group_id],
            )
            .map_err(sql)?;
        }
    }
    if let Some(secret) = secret {
        c.execute(
            "INSERT INTO webhook_secrets (group_id, secret) VALUES (?1, ?2) \
             ON CONFLICT (group_id) DO UPDATE SET secret = excluded.secret",
            args![group_id, secret],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// Group `group_id` is deleted: its endpoints and secret go, and what it had not delivered yet is given up (with no
/// secret left it could not be signed).
pub fn delete_group(c: &Conn<'_>, group_id: &str, now: i64) -> Result<()> {
    set_config(c, group_id, Some(&[]), None)?;
    c.execute(
        "UPDATE webhook_deliveries SET state = 'failed', last_error = 'the deployment group was deleted', \
         ended_at = ?2, lease_holder = NULL, lease_until = NULL WHERE group_id = ?1 AND state = 'pending'",
        args![group_id, now],
    )
    .map_err(sql)?;
    Ok(())
}

/// Queue `event` of deployment `deployment_id` (and `instance`, for an instance event) for every endpoint of its
/// group, in the caller's transaction. Queuing the same event twice is a no-op (one row per event, instance and
/// endpoint), so a transition recorded again never posts twice.
pub fn enqueue(
    c: &Tx<'_>,
    event: WebhookEvent,
    deployment_id: &str,
    instance: Option<&str>,
    now: i64,
) -> Result<()> {
    let n = c
        .execute(
            "INSERT INTO webhook_deliveries (group_id, url, event, deployment_id, instance, occurred_at, state, \
             next_attempt_at) \
             SELECT w.group_id, w.url, ?1, ?2, ?3, ?4, 'pending', ?4 FROM webhooks w \
             WHERE w.group_id = (SELECT group_id FROM deployments WHERE id = ?2) ORDER BY w.ord \
             ON CONFLICT DO NOTHING",
            args![event.name(), deployment_id, instance.unwrap_or(""), now],
        )
        .map_err(sql)?;
    if n > 0 {
        c.touch_webhooks();
    }
    Ok(())
}

/// The delivery id of row `seq`: the idempotency key a receiver sees on every retry.
pub fn delivery_id(seq: i64) -> String {
    format!("wh-{seq}")
}

/// A delivery the caller holds the lease on, ready to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Row (its delivery id is [`delivery_id`]).
    pub seq: i64,
    /// Group.
    pub group_id: String,
    /// Endpoint.
    pub url: String,
    /// Event.
    pub event: WebhookEvent,
    /// Deployment.
    pub deployment_id: String,
    /// Instance (instance events).
    pub instance: Option<String>,
    /// When it happened.
    pub occurred_at: i64,
    /// The body, once rendered (at the first attempt).
    pub body: Option<String>,
    /// The group's signing secret, if it has one.
    pub secret: Option<String>,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// Lease, for `holder` until `now + lease_ms`, at most `limit` due deliveries: the head (oldest row still pending) of
/// each endpoint's queue whose next attempt is due and that nobody holds. One statement: the lease is re-checked on
/// the row itself, so on PostgreSQL a second coordinator running it at the same time skips the rows the first took.
pub fn claim(
    c: &Tx<'_>,
    holder: &str,
    now: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>> {
    let seqs = c
        .query_map(
            "UPDATE webhook_deliveries SET lease_holder = ?1, lease_until = ?2 \
             WHERE state = 'pending' AND (lease_until IS NULL OR lease_until < ?3) AND seq IN ( \
               SELECT d.seq FROM webhook_deliveries d JOIN ( \
                 SELECT MIN(seq) AS head FROM webhook_deliveries WHERE state = 'pending' GROUP BY group_id, url \
               ) h ON d.seq = h.head \
               WHERE d.next_attempt_at <= ?3 AND (d.lease_until IS NULL OR d.lease_until < ?3) \
               ORDER BY d.seq LIMIT ?4) \
             RETURNING seq",
            args![holder, now.saturating_add(lease_ms), now, limit],
            |r| r.get::<i64>(0),
        )
        .map_err(sql)?;
    let mut out = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let row = c
            .query_row(
                "SELECT d.seq, d.group_id, d.url, d.event, d.deployment_id, d.instance, d.occurred_at, d.body, \
                 s.secret, d.attempts FROM webhook_deliveries d \
                 LEFT JOIN webhook_secrets s ON s.group_id = d.group_id WHERE d.seq = ?1",
                [seq],
                |r| {
                    let event: String = r.get(3)?;
                    let instance: String = r.get(5)?;
                    Ok(Claimed {
                        seq: r.get(0)?,
                        group_id: r.get(1)?,
                        url: r.get(2)?,
                        event: WebhookEvent::from_name(&event).ok_or(StoreError::Corrupt {
                            what: "webhook_deliveries.event",
                            detail: event.clone(),
                        })?,
                        deployment_id: r.get(4)?,
                        instance: (!instance.is_empty()).then_some(instance),
                        occurred_at: r.get(6)?,
                        body: r.get(7)?,
                        secret: r.get(8)?,
                        attempts: r.get(9)?,
                    })
                },
            )
            .map_err(sql)?;
        out.push(row);
    }
    out.sort_by_key(|c| c.seq);
    Ok(out)
}

/// Keep the body rendered for row `seq` (every retry sends these bytes).
pub fn set_body(c: &Conn<'_>, seq: i64, body: &str) -> Result<()> {
    c.execute(
        "UPDATE webhook_deliveries SET body = ?2 WHERE seq = ?1",
        args![seq, body],
    )
    .map_err(sql)?;
    Ok(())
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Delivered (the endpoint answered 2xx with this status).
    Delivered {
        /// The status.
        status: u16,
    },
    /// Failed; try again at `next_at` (ms).
    Retry {
        /// The status, if the endpoint answered.
        status: Option<u16>,
        /// Why it failed.
        error: String,
        /// When to try again.
        next_at: i64,
    },
    /// Failed for the last time: given up.
    GiveUp {
        /// The status, if the endpoint answered.
        status: Option<u16>,
        /// Why it failed.
        error: String,
    },
}

/// Record the attempt `holder` made on row `seq` and release its lease. `false` when `holder` no longer held it
/// (its lease lapsed and another coordinator took the row over; nothing is written).
pub fn record(c: &Conn<'_>, seq: i64, holder: &str, attempt: &Attempt, now: i64) -> Result<bool> {
    let (state, status, error, next_at, ended) = match attempt {
        Attempt::Delivered { status } => (
            DeliveryState::Delivered,
            Some(*status),
            None,
            now,
            Some(now),
        ),
        Attempt::Retry {
            status,
            error,
            next_at,
        } => (
            DeliveryState::Pending,
            *status,
            Some(error.as_str()),
            *next_at,
            None,
        ),
        Attempt::GiveUp { status, error } => (
            DeliveryState::Failed,
            *status,
            Some(error.as_str()),
            now,
            Some(now),
        ),
    };
    let n = c
        .execute(
            "UPDATE webhook_deliveries SET state = ?3, attempts = attempts + 1, last_status = ?4, last_error = ?5, \
             next_attempt_at = ?6, ended_at = ?7, lease_holder = NULL, lease_until = NULL \
             WHERE seq = ?1 AND lease_holder = ?2 AND state = 'pending'",
            args![
                seq,
                holder,
                state.name(),
                status.map(i64::from),
                error,
                next_at,
                ended
            ],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

/// Give back every lease `holder` holds (a coordinator starting again: on SQLite its holder name does not change,
/// and what it was posting when it stopped is due again at once).
pub fn release_all(c: &Conn<'_>, holder: &str) -> Result<()> {
    c.execute(
        "UPDATE webhook_deliveries SET lease_holder = NULL, lease_until = NULL \
         WHERE lease_holder = ?1 AND state = 'pending'",
        [holder],
    )
    .map_err(sql)?;
    Ok(())
}

/// When the next attempt of an endpoint's head is due (ms; a leased head's when its lease lapses), if any is pending.
pub fn next_due(c: &Conn<'_>) -> Result<Option<i64>> {
    let v: Option<i64> = c
        .query_row(
            "SELECT MIN(COALESCE(d.lease_until, d.next_attempt_at)) FROM webhook_deliveries d JOIN ( \
               SELECT MIN(seq) AS head FROM webhook_deliveries WHERE state = 'pending' GROUP BY group_id, url \
             ) h ON d.seq = h.head",
            (),
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?
        .flatten();
    Ok(v)
}

const LIST_COLS: &str = "seq, url, event, deployment_id, instance, occurred_at, state, attempts, last_status, \
                         last_error, next_attempt_at, ended_at";

fn to_delivery(r: &crate::store::Row<'_>) -> Result<WebhookDelivery> {
    let event: String = r.get(2)?;
    let instance: String = r.get(4)?;
    let state: String = r.get(6)?;
    let state = DeliveryState::from_name(&state).ok_or(StoreError::Corrupt {
        what: "webhook_deliveries.state",
        detail: state.clone(),
    })?;
    let status: Option<i64> = r.get(8)?;
    Ok(WebhookDelivery {
        id: delivery_id(r.get(0)?),
        url: r.get(1)?,
        event: WebhookEvent::from_name(&event).ok_or(StoreError::Corrupt {
            what: "webhook_deliveries.event",
            detail: event.clone(),
        })?,
        deployment_id: r.get(3)?,
        instance: (!instance.is_empty()).then_some(instance),
        occurred_at_ms: r.get(5)?,
        state,
        attempts: r.get(7)?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(9)?,
        next_attempt_at_ms: match state {
            DeliveryState::Pending => Some(r.get(10)?),
            _ => None,
        },
        ended_at_ms: r.get(11)?,
    })
}

/// Up to `limit` deliveries of group `group_id` in delivery order, those after row `after` (the paging cursor)
/// when given; each with its row's `seq` (the next cursor).
pub fn of_group(
    c: &Conn<'_>,
    group_id: &str,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<(i64, WebhookDelivery)>> {
    c.query_map(
        &format!(
            "SELECT {LIST_COLS} FROM webhook_deliveries WHERE group_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        ),
        args![group_id, after.unwrap_or(0), limit],
        |r| Ok((r.get(0)?, to_delivery(r)?)),
    )
    .map_err(sql)
}

/// Every delivery of deployment `id`, in delivery order (bounded by its events times its group's endpoints).
pub fn of_deployment(c: &Conn<'_>, id: &str) -> Result<Vec<WebhookDelivery>> {
    c.query_map(
        &format!(
            "SELECT {LIST_COLS} FROM webhook_deliveries WHERE deployment_id = ?1 ORDER BY seq"
        ),
        [id],
        to_delivery,
    )
    .map_err(sql)
}

/// The step that failed first in deployment `id` (of `instance`, when given), for a body.
pub fn failed_step(
    c: &Conn<'_>,
    id: &str,
    instance: Option<&str>,
) -> Result<Option<WebhookFailure>> {
    c.query_row(
        "SELECT instance, event, message, log_tail FROM steps WHERE deployment_id = ?1 AND state = 'failed' \
         AND (?2 = '' OR instance = ?2) ORDER BY ended_at, id LIMIT 1",
        args![id, instance.unwrap_or("")],
        |r| {
            Ok(WebhookFailure {
                instance: r.get(0)?,
                event: r.get(1)?,
                message: r.get(2)?,
                log_tail: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, apps, deployments};
    use rollcage_proto::wire::{Concurrency, DeploymentStatus, DeploymentStyle, Group};

    fn setup(s: &Store, urls: &[&str]) -> Result<()> {
        s.write(|tx| {
            apps::insert_application(tx, "app", 0)?;
            apps::insert_group(
                tx,
                &crate::testkit::group(
                    ("g-1", "web", DeploymentStyle::InPlace),
                    Concurrency::Count(1),
                    false,
                    &["i1"],
                    None,
                ),
            )?;
            let g: Group = apps::group(tx, "app", "web")?.ok_or(StoreError::NoRows)?;
            let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
            set_config(tx, &g.id, Some(&urls), Some("0123456789abcdef"))?;
            let row = deployments::DeploymentRow {
                id: "d-1".into(),
                application: "app".into(),
                group: "web".into(),
                group_id: g.id.clone(),
                revision: "r-1".into(),
                style: DeploymentStyle::InPlace,
                concurrency: Concurrency::Count(1),
                failure_tolerance: 0,
                auto_rollback: false,
                rollback_of: None,
                automatic: false,
                status: DeploymentStatus::InProgress,
                force_stop: false,
                message: String::new(),
                created_at: 0,
                ended_at: None,
                rollback_deployment: None,
                switch_to: None,
                continued: false,
                catch_up: None,
                overrides: Default::default(),
                description: None,
            };
            deployments::insert(tx, &row, &[], &["i1".to_owned()])
        })
    }

    #[test]
    fn settings_are_stored_and_the_secret_is_only_said_to_exist() -> Result<()> {
        crate::store::each_backend(|s| {
            setup(s, &["http://a.example/1", "http://b.example/2"])?;
            let g = s
                .read(|c| apps::group(c, "app", "web"))?
                .ok_or(StoreError::NoRows)?;
            assert_eq!(
                g.webhooks,
                GroupWebhooks {
                    urls: vec!["http://a.example/1".into(), "http://b.example/2".into()],
                    has_secret: true
                }
            );
            s.write(|tx| set_config(tx, &g.id, Some(&[]), None))?;
            assert_eq!(s.read(|c| config(c, &g.id))?, GroupWebhooks::default());
            Ok(())
        })
    }

    #[test]
    fn each_endpoint_gets_its_events_in_order_one_at_a_time_and_once() -> Result<()> {
        crate::store::each_backend(|s| {
            setup(s, &["http://a.example/", "http://b.example/"])?;
            // Created by insert (in setup); three more events, one queued twice.
            s.write(|tx| {
                enqueue(tx, WebhookEvent::InstanceStarted, "d-1", Some("i1"), 10)?;
                enqueue(tx, WebhookEvent::InstanceStarted, "d-1", Some("i1"), 11)?;
                enqueue(tx, WebhookEvent::InstanceFailed, "d-1", Some("i1"), 12)?;
                assert!(tx.touched().webhooks);
                Ok::<_, StoreError>(())
            })?;
            let all = s.read(|c| of_deployment(c, "d-1"))?;
            let events: Vec<(&str, &str)> = all
                .iter()
                .map(|d| (d.url.as_str(), d.event.name()))
                .collect();
            assert_eq!(
                events,
                [
                    ("http://a.example/", "deployment.created"),
                    ("http://b.example/", "deployment.created"),
                    ("http://a.example/", "instance.started"),
                    ("http://b.example/", "instance.started"),
                    ("http://a.example/", "instance.failed"),
                    ("http://b.example/", "instance.failed"),
                ]
            );
            // One head per endpoint; a second holder gets nothing while the leases hold.
            let first = s.write(|tx| claim(tx, "c1", 100, 60_000, 10))?;
            assert_eq!(first.len(), 2);
            assert!(
                first
                    .iter()
                    .all(|c| c.event == WebhookEvent::DeploymentCreated)
            );
            assert_eq!(first[0].secret.as_deref(), Some("0123456789abcdef"));
            assert!(s.write(|tx| claim(tx, "c2", 101, 60_000, 10))?.is_empty());
            // a: delivered, so its next row is the head; b: retry later, so b's queue waits.
            let (a, b) = (&first[0], &first[1]);
            assert!(s.write(|tx| record(
                tx,
                a.seq,
                "c1",
                &Attempt::Delivered { status: 200 },
                102
            ))?);
            let retry = Attempt::Retry {
                status: Some(503),
                error: "503 Service Unavailable".into(),
                next_at: 5_000,
            };
            assert!(s.write(|tx| record(tx, b.seq, "c1", &retry, 102))?);
            assert!(
                !s.write(|tx| record(tx, b.seq, "c1", &retry, 103))?,
                "the lease was released: a second record is refused"
            );
            let second = s.write(|tx| claim(tx, "c2", 200, 60_000, 10))?;
            assert_eq!(second.len(), 1);
            assert_eq!(
                (second[0].url.as_str(), second[0].event),
                ("http://a.example/", WebhookEvent::InstanceStarted)
            );
            assert_eq!(s.read(next_due)?, Some(5_000));
            // b's head is due again at 5 s with its attempt counted; a lapsed lease is taken over.
            let third = s.write(|tx| claim(tx, "c1", 70_000, 60_000, 10))?;
            let heads: Vec<(&str, WebhookEvent, u32)> = third
                .iter()
                .map(|c| (c.url.as_str(), c.event, c.attempts))
                .collect();
            assert_eq!(
                heads,
                [
                    ("http://b.example/", WebhookEvent::DeploymentCreated, 1),
                    ("http://a.example/", WebhookEvent::InstanceStarted, 0),
                ]
            );
            assert!(
                !s.write(|tx| record(
                    tx,
                    second[0].seq,
                    "c2",
                    &Attempt::Delivered { status: 200 },
                    70_001
                ))?,
                "c2's lease lapsed: its late outcome is not written"
            );
            let give_up = Attempt::GiveUp {
                status: None,
                error: "connection refused".into(),
            };
            assert!(s.write(|tx| record(tx, third[0].seq, "c1", &give_up, 70_002))?);
            let list = s.read(|c| of_deployment(c, "d-1"))?;
            let b_created = list
                .iter()
                .find(|d| d.id == delivery_id(third[0].seq))
                .ok_or(StoreError::NoRows)?;
            assert_eq!(b_created.state, DeliveryState::Failed);
            assert_eq!(b_created.attempts, 2);
            assert_eq!(b_created.last_error.as_deref(), Some("connection refused"));
            // Given up: b's next event is its head now.
            let fourth = s.write(|tx| claim(tx, "c1", 70_003, 60_000, 10))?;
            assert_eq!(fourth.len(), 1);
            assert_eq!(
                (fourth[0].url.as_str(), fourth[0].event),
                ("http://b.example/", WebhookEvent::InstanceStarted)
            );
            let page = s.read(|c| of_group(c, "g-1", Some(third[0].seq), 2))?;
            assert_eq!(page.len(), 2);
            assert!(page.iter().all(|(seq, _)| *seq > third[0].seq));
            Ok(())
        })
    }

    #[test]
    fn two_coordinators_claiming_at_once_never_take_the_same_delivery() -> Result<()> {
        crate::store::each_backend(|s| {
            let urls: Vec<String> = (0..12).map(|i| format!("http://h{i}.example/")).collect();
            let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
            setup(s, &refs)?;
            let s = std::sync::Arc::new(s);
            let taken: Vec<Vec<i64>> = std::thread::scope(|scope| {
                let handles: Vec<_> = ["c1", "c2"]
                    .into_iter()
                    .map(|holder| {
                        let s = s.clone();
                        scope.spawn(move || {
                            let mut mine = Vec::new();
                            for _ in 0..6 {
                                let got = s.write(|tx| claim(tx, holder, 100, 60_000, 2))?;
                                mine.extend(got.into_iter().map(|c| c.seq));
                            }
                            Ok::<_, StoreError>(mine)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(StoreError::NoRows)))
                    .collect::<Result<Vec<_>>>()
            })?;
            let mut all: Vec<i64> = taken.concat();
            let n = all.len();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), n, "a delivery claimed twice: {taken:?}");
            assert_eq!(n, 12, "every endpoint's head claimed once: {taken:?}");
            Ok(())
        })
    }
}
