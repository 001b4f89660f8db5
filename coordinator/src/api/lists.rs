//! The paged list routes (admin token): applications, an application's groups, deployments (as summaries, newest
//! first) and instances. Each takes `limit` and `cursor` and answers a [`Page`] (`rollcage_proto::page` has the
//! bounds and the cursor's contract); the store reads one row more than the page holds to know whether another
//! follows.

use super::query::{PageBounds, Query};
use super::{ApiError, Json, Path};
use crate::state::State;
use crate::store::{apps, deployments, instances};
use axum::extract::State as AxState;
use rollcage_proto::page::{Page, PageQuery};
use rollcage_proto::wire::{
    Application, DeploymentQuery, DeploymentSummary, Group, InstanceInfo, now_ms,
};

/// `GET /v1/applications`: by name.
pub async fn applications(
    AxState(st): AxState<State>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Application>>, ApiError> {
    let b = PageBounds::of(&q)?;
    let rows = st.store.read(|c| {
        apps::applications_page(c, b.cursor.as_deref(), b.overfetch()).map_err(ApiError::from)
    })?;
    Ok(Json(Page::from_overfetch(rows, b.size, |a| a.name.clone())))
}

/// `GET /v1/applications/{app}/groups`: by name.
pub async fn groups(
    AxState(st): AxState<State>,
    Path(app): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Group>>, ApiError> {
    let b = PageBounds::of(&q)?;
    let rows = st.store.read(|c| {
        super::admin::app_exists(c, &app)?;
        Ok::<_, ApiError>(apps::groups_page(
            c,
            &app,
            b.cursor.as_deref(),
            b.overfetch(),
        )?)
    })?;
    Ok(Json(Page::from_overfetch(rows, b.size, |g| g.name.clone())))
}

/// `GET /v1/applications/{app}/revisions`: the application's revisions, by id (paged).
pub async fn revisions(
    AxState(st): AxState<State>,
    Path(app): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<rollcage_proto::wire::Revision>>, ApiError> {
    let b = PageBounds::of(&q)?;
    let rows = st.store.read(|c| {
        super::admin::app_exists(c, &app)?;
        Ok::<_, ApiError>(crate::store::revisions::page(
            c,
            &app,
            b.cursor.as_deref(),
            b.overfetch(),
        )?)
    })?;
    Ok(Json(Page::from_overfetch(rows, b.size, |r| r.id.clone())))
}

/// `GET /v1/deployments`: summaries (no per-instance progress), newest first, optionally of one application or
/// group; the cursor is the `seq` of the page's last deployment.
pub async fn deployments(
    AxState(st): AxState<State>,
    Query(q): Query<DeploymentQuery>,
) -> Result<Json<Page<DeploymentSummary>>, ApiError> {
    let b = PageBounds::of(&q.page())?;
    if q.group.is_some() && q.application.is_none() {
        return Err(ApiError::Invalid(
            "query parameter `group` needs `application`: a group's name is only unique within its application"
                .into(),
        ));
    }
    let filter = deployments::ListFilter {
        application: q.application.as_deref(),
        group: q.group.as_deref(),
    };
    let before = b.seq_cursor()?;
    let rows = st.store.read(|c| {
        deployments::summaries(c, filter, before, b.overfetch()).map_err(ApiError::from)
    })?;
    let page = Page::from_overfetch(rows, b.size, |(seq, _)| seq.to_string());
    Ok(Json(Page {
        items: page.items.into_iter().map(|(_, d)| d).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /v1/instances`: by name, each with its approval state and whether it is lost (not heard from within the
/// heartbeat deadline).
pub async fn instances(
    AxState(st): AxState<State>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<InstanceInfo>>, ApiError> {
    let b = PageBounds::of(&q)?;
    let rows = st.store.read(|c| {
        let rows = instances::page(c, b.cursor.as_deref(), b.overfetch())?;
        rows.into_iter()
            .map(|r| Ok((instances::installed(c, &r.name)?, r)))
            .collect::<Result<Vec<_>, crate::store::StoreError>>()
            .map_err(ApiError::from)
    })?;
    let page = Page::from_overfetch(rows, b.size, |(_, r)| r.name.clone());
    let now = now_ms();
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|(installed, row)| instance_info(&st, row, installed, now))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// An instance as the API shows it at `now`: its row, when it was last heard from, whether it is lost.
pub(super) fn instance_info(
    st: &State,
    row: instances::Row,
    installed: Vec<rollcage_proto::wire::InstalledRevision>,
    now: i64,
) -> InstanceInfo {
    let deadline = i64::try_from(st.settings.heartbeat_deadline.as_millis()).unwrap_or(i64::MAX);
    let seen = st.last_seen(&row.name);
    InstanceInfo {
        lost: seen.is_none_or(|s| now - s > deadline),
        last_seen_ms: seen.unwrap_or(row.enrolled_at),
        name: row.name,
        enrolled_at_ms: row.enrolled_at,
        state: row.state,
        enrolled_with: row.enrolled_with,
        tags: row.tags,
        installed,
    }
}

/// `GET /v1/applications/{app}/groups/{group}/deliveries`: the group's webhook deliveries in delivery order (oldest
/// first; the cursor is the last one's row), each with its state, attempts, last status or error and next attempt.
pub async fn group_deliveries(
    AxState(st): AxState<State>,
    Path((app, group)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<rollcage_proto::webhook::WebhookDelivery>>, ApiError> {
    let b = PageBounds::of(&q)?;
    let after = b.seq_cursor()?;
    let rows = st.store.read(|c| {
        let g = apps::group(c, &app, &group)?.ok_or_else(|| {
            ApiError::NotFound(format!("deployment group `{app}/{group}` not found"))
        })?;
        Ok::<_, ApiError>(crate::store::webhooks::of_group(
            c,
            &g.id,
            after,
            b.overfetch(),
        )?)
    })?;
    let page = Page::from_overfetch(rows, b.size, |(seq, _)| seq.to_string());
    Ok(Json(Page {
        items: page.items.into_iter().map(|(_, d)| d).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /v1/deployments/{id}/deliveries`: every webhook delivery of one deployment's events, in delivery order.
pub async fn deployment_deliveries(
    AxState(st): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<Vec<rollcage_proto::webhook::WebhookDelivery>>, ApiError> {
    st.store.read(|c| {
        if deployments::get(c, &id)?.is_none() {
            return Err(ApiError::NotFound(format!("deployment `{id}` not found")));
        }
        Ok(Json(crate::store::webhooks::of_deployment(c, &id)?))
    })
}
