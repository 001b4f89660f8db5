//! The people routes: named operator tokens, who am I, and the audit trail.

use crate::failover::Resend;
use crate::routes;
use crate::{Client, ClientError};
use rollcage_proto::access::{
    AuditEntry, AuditQuery, CreateToken, CreatedToken, TokenInfo, WhoAmI,
};
use rollcage_proto::page::Page;

impl Client {
    /// `POST /v1/tokens`: a new named token (its secret is in the answer, once).
    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.post_json(&routes::tokens(), req, None, Resend::OnlyIfUnsent)
            .await
    }

    /// `GET /v1/tokens`, every page: the named tokens that are not revoked, by name.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.all_pages(&routes::tokens()).await
    }

    /// `DELETE /v1/tokens/{name}`: revoke a named token.
    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&routes::token(name)).await
    }

    /// `GET /v1/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get_json(&routes::whoami()).await
    }

    /// `GET /v1/audit`: one page of the audit trail, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, ClientError> {
        self.get_json(&routes::audit(query)).await
    }
}
