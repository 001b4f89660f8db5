//! The people routes: named operator tokens (`POST/GET /v1/tokens`, `DELETE /v1/tokens/{name}`, admins only),
//! `GET /v1/whoami` (any operator: the dashboard and the CLI ask what they may do), and `GET /v1/audit` (admins
//! only: the audit trail, newest first, paged).

use super::guard::{AuditTarget, Caller};
use super::query::{PageBounds, Query};
use super::{ApiError, Json, Path};
use crate::auth::{self, Operator};
use crate::state::State;
use crate::store::{audit, tokens};
use axum::extract::State as AxState;
use axum::http::StatusCode;
use rollcage_proto::access::{
    AuditEntry, AuditQuery, BOOTSTRAP_TOKEN, CreateToken, CreatedToken, Role, TokenInfo, WhoAmI,
};
use rollcage_proto::page::Page;
use rollcage_proto::wire::{NAME_RULE, is_valid_name, now_ms};

/// Most applications one deployer token may name.
const MAX_APPS: usize = 1000;

/// `POST /v1/tokens`: a new named token; its secret is in this answer only.
pub async fn create_token(
    AxState(st): AxState<State>,
    Json(req): Json<CreateToken>,
) -> Result<(StatusCode, axum::Extension<AuditTarget>, Json<CreatedToken>), ApiError> {
    if !is_valid_name(&req.name) {
        return Err(ApiError::Invalid(format!(
            "field `name`: invalid token name `{}`: expected {NAME_RULE}",
            rollcage_proto::clip::clip_head(&req.name, 160)
        )));
    }
    if req.name == BOOTSTRAP_TOKEN {
        return Err(ApiError::Conflict(format!(
            "token name `{BOOTSTRAP_TOKEN}` is the admin token file's (DATA/admin-token): choose another"
        )));
    }
    if req.role != Role::Deployer && !req.apps.is_empty() {
        return Err(ApiError::Invalid(format!(
            "field `apps`: only a deployer token names applications; a {} token {}",
            req.role,
            if req.role == Role::Admin {
                "deploys every application"
            } else {
                "deploys none"
            }
        )));
    }
    if req.apps.len() > MAX_APPS {
        return Err(ApiError::Invalid(format!(
            "field `apps`: {} applications: at most {MAX_APPS}",
            req.apps.len()
        )));
    }
    if let Some(bad) = req.apps.iter().find(|a| !is_valid_name(a)) {
        return Err(ApiError::Invalid(format!(
            "field `apps`: invalid application name `{}`: expected {NAME_RULE}",
            rollcage_proto::clip::clip_head(bad, 160)
        )));
    }
    let mut apps = req.apps;
    apps.sort();
    apps.dedup();
    let secret = auth::random_bytes_hex(32)
        .map_err(|e| ApiError::Internal(format!("reading random bytes for a token: {e}")))?;
    let hash = auth::hash_token(&secret);
    let info = TokenInfo {
        name: req.name,
        role: req.role,
        apps,
        created_at_ms: now_ms(),
        last_used_ms: None,
    };
    let created = st
        .store
        .write(|tx| tokens::insert(tx, &info, &hash).map_err(ApiError::from))?;
    if !created {
        return Err(ApiError::Conflict(format!(
            "a token named `{}` exists: revoke it first, or choose another name",
            info.name
        )));
    }
    st.tokens.set_operator(
        hash,
        Operator {
            name: info.name.clone(),
            role: info.role,
            apps: info.apps.clone(),
        },
        false,
    );
    tracing::info!(token = %info.name, role = %info.role, "operator token created");
    Ok((
        StatusCode::CREATED,
        axum::Extension(AuditTarget(info.name.clone())),
        Json(CreatedToken {
            info,
            token: secret,
        }),
    ))
}

/// `GET /v1/tokens`: the live named tokens by name (never a secret or a hash; the bootstrap token is not listed).
pub async fn list_tokens(
    AxState(st): AxState<State>,
    Query(q): Query<rollcage_proto::page::PageQuery>,
) -> Result<Json<Page<TokenInfo>>, ApiError> {
    let b = PageBounds::of(&q)?;
    let rows = st
        .store
        .read(|c| tokens::page(c, b.cursor.as_deref(), b.overfetch()).map_err(ApiError::from))?;
    Ok(Json(Page::from_overfetch(rows, b.size, |t| t.name.clone())))
}

/// `DELETE /v1/tokens/{name}`: revoke a named token; refused with 401 from the next request on.
pub async fn revoke_token(
    AxState(st): AxState<State>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if name == BOOTSTRAP_TOKEN {
        return Err(ApiError::Conflict(
            "the bootstrap token (DATA/admin-token or --admin-token-file) cannot be revoked through the API: \
             replace the file and restart the coordinator"
                .into(),
        ));
    }
    let revoked = st
        .store
        .write(|tx| tokens::revoke(tx, &name, now_ms()).map_err(ApiError::from))?;
    if !revoked {
        return Err(ApiError::NotFound(format!(
            "no token named `{}`",
            rollcage_proto::clip::clip_head(&name, 160)
        )));
    }
    st.tokens.revoke_operator(&name);
    tracing::info!(token = %name, "operator token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/whoami`.
pub async fn whoami(Caller(op): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: op.name,
        role: op.role,
        apps: op.apps,
    })
}

/// `GET /v1/audit`: newest first; `since_ms` and `actor` filter; the cursor is the `seq` of the previous page's
/// last entry.
pub async fn audit_trail(
    AxState(st): AxState<State>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let b = PageBounds::of(&q.page())?;
    let before = b.seq_cursor()?;
    let filter = audit::Filter {
        since_ms: q.since_ms,
        actor: q.actor.as_deref(),
    };
    let rows = st
        .store
        .read(|c| audit::page(c, filter, before, b.overfetch()).map_err(ApiError::from))?;
    Ok(Json(Page::from_overfetch(rows, b.size, |e| {
        e.seq.to_string()
    })))
}
