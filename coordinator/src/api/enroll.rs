//! Enrollment routes for operators (admin token): per-use enrollment tokens (create, list, revoke) and the approval
//! of instances enrolled under `--enroll-approval`. The enrollment itself is an agent route ([`super::agent`]).

use super::query::{PageBounds, Query};
use super::{Admin, ApiError, Json, Path};
use crate::state::State;
use crate::store::{enroll_tokens, instances};
use axum::extract::State as AxState;
use axum::http::StatusCode;
use rollcage_proto::enroll::{CreateEnrollToken, CreatedEnrollToken, EnrollTokenInfo};
use rollcage_proto::page::{Page, PageQuery};
use rollcage_proto::wire::{InstanceInfo, now_ms};

/// `POST /v1/enroll-tokens`: a new per-use token; the secret is in this answer only (the store keeps its hash).
pub async fn create_token(
    _: Admin,
    AxState(st): AxState<State>,
    Json(req): Json<CreateEnrollToken>,
) -> Result<(StatusCode, Json<CreatedEnrollToken>), ApiError> {
    let spec = req.checked().map_err(ApiError::Invalid)?;
    let token = crate::auth::random_bytes_hex(32)
        .map_err(|e| ApiError::Internal(format!("random token: {e}")))?;
    let hash = crate::auth::hash_token(&token);
    // Ids are for people and `revoke`; 8 random bytes make a clash (a 500 on the UNIQUE index) beyond reach.
    let id = format!("et-{}", crate::auth::random_hex(8));
    let now = now_ms();
    let info = st
        .store
        .write(|tx| enroll_tokens::insert(tx, &id, &hash, &spec, now).map_err(ApiError::from))?;
    tracing::info!(token = %info.id, label = %info.label, uses = info.uses_allowed,
        expires_at_ms = info.expires_at_ms, "enrollment token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollToken { token, info }),
    ))
}

/// `GET /v1/enroll-tokens`: every per-use token, oldest first, with its status now (never a secret: only hashes
/// are stored); the cursor is the `seq` of the page's last token.
pub async fn list_tokens(
    _: Admin,
    AxState(st): AxState<State>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<EnrollTokenInfo>>, ApiError> {
    let b = PageBounds::of(&q)?;
    let after = b.seq_cursor()?;
    let now = now_ms();
    let rows = st
        .store
        .read(|c| enroll_tokens::page(c, after, b.overfetch(), now).map_err(ApiError::from))?;
    let page = Page::from_overfetch(rows, b.size, |(seq, _)| seq.to_string());
    Ok(Json(Page {
        items: page.items.into_iter().map(|(_, t)| t).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/enroll-tokens/{id}/revoke`: the token stops enrolling at once (instances it enrolled keep their own
/// tokens: remove them with `DELETE /v1/instances/{name}`). Revoking a revoked token changes nothing.
pub async fn revoke_token(
    _: Admin,
    AxState(st): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<EnrollTokenInfo>, ApiError> {
    let now = now_ms();
    let info = st
        .store
        .write(|tx| enroll_tokens::revoke(tx, &id, now).map_err(ApiError::from))?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "enrollment token `{}` not found",
                rollcage_proto::clip::clip_head(&id, 80)
            ))
        })?;
    tracing::info!(token = %info.id, "enrollment token revoked");
    Ok(Json(info))
}

/// `POST /v1/instances/{name}/approve`: an instance pending approval may be given work from now on (the next
/// deployment that names it, or that covers every instance, includes it). Approving an approved instance changes
/// nothing.
pub async fn approve_instance(
    _: Admin,
    AxState(st): AxState<State>,
    Path(name): Path<String>,
) -> Result<Json<InstanceInfo>, ApiError> {
    let now = now_ms();
    let row = st
        .store
        .write(|tx| {
            let row = instances::approve(tx, &name)?;
            // A pending instance was given no work, so it has nothing of its groups installed: it catches up now.
            if row.is_some() {
                crate::engine::catchup::on_hello(tx, &name, &[], now)?;
            }
            Ok::<_, ApiError>(row)
        })?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "instance `{}` is not enrolled",
                rollcage_proto::clip::clip_head(&name, 160)
            ))
        })?;
    tracing::info!(instance = %row.name, "instance approved");
    let installed = st
        .store
        .read(|c| instances::installed(c, &row.name).map_err(ApiError::from))?;
    Ok(Json(super::lists::instance_info(&st, row, installed, now)))
}
