//! The auth extractors: [`Admin`] (an operator with the admin role), [`Agent`] (an enrolled agent, by its own
//! token) and [`Enroller`] (the enrollment token). Each reads `Authorization: Bearer <token>`; a missing or wrong
//! token is a 401 in the API's error shape. Operator routes are guarded by the route table (`super::guard`): the
//! handlers behind it need no extractor; [`Admin`] stays for routes whose handler wants to insist on the admin role.

use super::ApiError;
use crate::state::State;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
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
        let name = state
            .tokens
            .agent(bearer(parts)?)
            .ok_or_else(|| ApiError::Unauthorized("invalid agent token: enroll again".into()))?;
        state.seen(&name, now_ms());
        Ok(Self(name))
    }
}

/// A caller holding the enrollment token.
#[derive(Debug, Clone, Copy)]
pub struct Enroller;

impl FromRequestParts<State> for Enroller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        if state.tokens.is_enroll(bearer(parts)?) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("invalid enrollment token".into()))
        }
    }
}
