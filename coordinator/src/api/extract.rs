//! The auth extractors: [`Admin`] (an operator with the admin role), [`Agent`] (an enrolled agent, by its own
//! token) and [`Enroller`] (the standing enrollment token or a per-use one that still enrolls). Each reads `Authorization: Bearer <token>`; a missing or wrong
//! token is a 401 in the API's error shape. Operator routes are guarded by the route table (`super::guard`): the
//! handlers behind it need no extractor; [`Admin`] stays for routes whose handler wants to insist on the admin role.

use super::ApiError;
use crate::state::State;
use crate::store::enroll_tokens;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rollcage_proto::enroll::{EnrollTokenInfo, EnrollTokenStatus};
use rollcage_proto::wire::now_ms;

/// The bearer token of a request.
pub(crate) fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
        })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "malformed Authorization header: expected `Bearer <token>`".into(),
            )
        })
}

/// An operator with the admin role (the bootstrap token or a named admin token): 401 for a token that is no
/// operator's, 403 for an operator of another role.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<State> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let super::guard::Caller(op) =
            super::guard::Caller::from_request_parts(parts, state).await?;
        crate::access::decide(&op, crate::access::Need::Admin, None, "do this")
            .map(|()| Self)
            .map_err(ApiError::Forbidden)
    }
}

/// An enrolled agent, by name.
#[derive(Debug, Clone)]
pub struct Agent(pub String);

impl FromRequestParts<State> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let Some(name) = state.agent(token) else {
            let hash = crate::auth::hash_token(token);
            let removed = state
                .store
                .read(|c| crate::store::instances::removed_by_token_hash(c, &hash))?;
            return Err(match removed {
                Some(name) => ApiError::InstanceRemoved(format!(
                    "instance `{name}` was removed by an operator; coming back takes an operator and an \
                     enrollment token (start the agent with --enroll-token-file FILE)"
                )),
                None => ApiError::Unauthorized("invalid agent token: enroll again".into()),
            });
        };
        state.seen(&name, now_ms());
        Ok(Self(name))
    }
}

/// A caller holding an enrollment token that still enrolls: the standing one, or a per-use token (its id) whose
/// use the enrollment takes in the transaction that records the instance
/// ([`crate::store::enroll_tokens::consume`]).
///
/// A token that matches nothing is "invalid enrollment token", as before. Only a caller presenting a per-use
/// token that was once valid learns why it no longer is (expired at …, used N of N times, revoked): nothing else
/// about the token or the coordinator (no id, no label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enroller {
    /// The standing token (`DATA/enroll-token`, `--enroll-token-file`): unlimited.
    Standing,
    /// A per-use token, by id.
    PerUse(String),
}

impl Enroller {
    /// What the instance record keeps as the token it enrolled with: the per-use token's id, or `standing`.
    pub fn recorded_as(&self) -> &str {
        match self {
            Self::Standing => "standing",
            Self::PerUse(id) => id,
        }
    }
}

/// The 401 for a per-use token that no longer enrolls, saying which of the reasons it is.
pub(crate) fn refused(info: &EnrollTokenInfo, status: EnrollTokenStatus) -> ApiError {
    tracing::warn!(token = %info.id, %status, "enrollment refused");
    ApiError::Unauthorized(match status {
        EnrollTokenStatus::Expired => format!(
            "enrollment token expired at {}",
            rfc3339(info.expires_at_ms)
        ),
        EnrollTokenStatus::UsedUp => format!(
            "enrollment token used up: used {} of {} times",
            info.uses, info.uses_allowed
        ),
        EnrollTokenStatus::Revoked => "enrollment token revoked".into(),
        // Not a refusal; kept total so a new status cannot slip through as an empty message.
        EnrollTokenStatus::Usable => "enrollment token refused".into(),
    })
}

impl FromRequestParts<State> for Enroller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        // The standing token is checked in memory (its hash); when disabled it enrolls nothing.
        if state.settings.standing_enroll_token && state.tokens.is_enroll(token) {
            return Ok(Self::Standing);
        }
        let hash = crate::auth::hash_token(token);
        let now = now_ms();
        let found = state
            .store
            .read(|c| enroll_tokens::by_hash(c, &hash, now).map_err(ApiError::from))?;
        match found {
            Some(info) if info.status == EnrollTokenStatus::Usable => Ok(Self::PerUse(info.id)),
            Some(info) => Err(refused(&info, info.status)),
            None => Err(ApiError::Unauthorized("invalid enrollment token".into())),
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC to the second (`2026-12-05T13:30:00Z`); the raw number if out of range.
fn rfc3339(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{ms} ms since the Unix epoch"))
}
