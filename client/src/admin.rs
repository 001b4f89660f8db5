//! The operators' routes (admin token): applications, groups, revisions, deployments, instances, enrollment
//! tokens.
//!
//! Reads go to the next coordinator of the list after any failure. Every write (a POST) goes to another one only
//! when it reached none: a coordinator that had it may have done it before failing, and a second coordinator would
//! do it again (a second deployment) or refuse it as a conflict; the operator sees the error and decides.

use crate::failover::Resend;
use crate::routes::{self, Sub};
use crate::{Client, ClientError};
use bytes::Bytes;
use rollcage_proto::enroll::{CreateEnrollToken, CreatedEnrollToken, EnrollTokenInfo};
use rollcage_proto::page::{Page, PageQuery};
use rollcage_proto::wire::{
    Application, CreateApplication, CreateDeployment, CreateGroup, Deployment, DeploymentQuery,
    DeploymentSummary, Group, InstanceInfo, LogQuery, RegisterUrlRevision, Revision, StepLogPage,
    StopDeployment, UpdateGroup,
};
use serde::de::DeserializeOwned;

impl Client {
    /// `POST /v1/applications`.
    pub async fn create_application(
        &self,
        req: &CreateApplication,
    ) -> Result<Application, ClientError> {
        self.post_json(&routes::applications(), req, None, Resend::OnlyIfUnsent)
            .await
    }

    /// `GET /v1/applications`, every page: all applications, by name.
    pub async fn list_applications(&self) -> Result<Vec<Application>, ClientError> {
        self.all_pages(&routes::applications()).await
    }

    /// Every item of a paged list route (see [`rollcage_proto::page`]), the pages read in turn at the largest size.
    pub(crate) async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Vec<T>, ClientError> {
        let mut q = PageQuery {
            limit: Some(rollcage_proto::page::MAX_PAGE_SIZE),
            cursor: None,
        };
        let mut out = Vec::new();
        loop {
            let page: Page<T> = self.get_json(&routes::paged(path, &q)).await?;
            out.extend(page.items);
            match page.next_cursor {
                // A cursor that does not move would loop for ever: stop at a repeat.
                Some(next) if q.cursor.as_deref() != Some(next.as_str()) => q.cursor = Some(next),
                _ => return Ok(out),
            }
        }
    }

    /// `POST /v1/applications/{app}/groups`.
    pub async fn create_group(&self, app: &str, req: &CreateGroup) -> Result<Group, ClientError> {
        self.post_json(&routes::groups(app), req, None, Resend::OnlyIfUnsent)
            .await
    }

    /// `GET /v1/applications/{app}/groups`, every page: all the application's groups, by name.
    pub async fn list_groups(&self, app: &str) -> Result<Vec<Group>, ClientError> {
        self.all_pages(&routes::groups(app)).await
    }

    /// `PATCH /v1/applications/{app}/groups/{group}`: change the settings given; the group as it is now.
    pub async fn update_group(
        &self,
        app: &str,
        group: &str,
        req: &UpdateGroup,
    ) -> Result<Group, ClientError> {
        self.patch_json(&routes::group(app, group), req).await
    }

    /// `DELETE /v1/applications/{app}/groups/{group}` (refused while a deployment of it has not ended).
    pub async fn delete_group(&self, app: &str, group: &str) -> Result<(), ClientError> {
        self.delete(&routes::group(app, group)).await
    }

    /// `DELETE /v1/applications/{app}` (refused while it has groups or revisions).
    pub async fn delete_application(&self, app: &str) -> Result<(), ClientError> {
        self.delete(&routes::application(app)).await
    }

    /// `GET /v1/applications/{app}/groups/{group}`.
    pub async fn get_group(&self, app: &str, group: &str) -> Result<Group, ClientError> {
        self.get_json(&routes::group(app, group)).await
    }

    /// `POST /v1/applications/{app}/revisions`: upload an archive (`.tar.gz`, `.tar` or `.zip` bytes).
    pub async fn upload_revision(
        &self,
        app: &str,
        archive: impl Into<Bytes>,
    ) -> Result<Revision, ClientError> {
        self.post_bytes(&routes::revisions(app), archive.into())
            .await
    }

    /// `POST /v1/applications/{app}/revisions` with the revision's signature (armored SSHSIG, as `ssh-keygen -Y
    /// sign -n rollcage` writes it), sent in the [`rollcage_proto::wire::SIGNATURE_HEADER`] header.
    pub async fn upload_signed_revision(
        &self,
        app: &str,
        archive: impl Into<Bytes>,
        signature: &str,
    ) -> Result<Revision, ClientError> {
        let value = rollcage_proto::wire::signature_header_value(signature);
        let header = (rollcage_proto::wire::SIGNATURE_HEADER, value.as_str());
        self.post_bytes_with(&routes::revisions(app), archive.into(), Some(header))
            .await
    }

    /// `POST /v1/applications/{app}/revisions/url`: register an archive stored elsewhere.
    pub async fn register_url_revision(
        &self,
        app: &str,
        req: &RegisterUrlRevision,
    ) -> Result<Revision, ClientError> {
        self.post_json(&routes::url_revisions(app), req, None, Resend::OnlyIfUnsent)
            .await
    }

    /// `GET /v1/applications/{app}/revisions`, every page: the application's revisions, by id.
    pub async fn list_revisions(&self, app: &str) -> Result<Vec<Revision>, ClientError> {
        self.all_pages(&routes::revisions(app)).await
    }

    /// `DELETE /v1/applications/{app}/revisions/{id}` (refused while a deployment or a group depends on it).
    pub async fn delete_revision(&self, app: &str, id: &str) -> Result<(), ClientError> {
        self.delete(&routes::revision(app, id)).await
    }

    /// `GET /v1/applications/{app}/revisions/{id}`.
    pub async fn get_revision(&self, app: &str, id: &str) -> Result<Revision, ClientError> {
        self.get_json(&routes::revision(app, id)).await
    }

    /// `POST /v1/deployments`.
    pub async fn create_deployment(
        &self,
        req: &CreateDeployment,
    ) -> Result<Deployment, ClientError> {
        self.post_json(&routes::deployments(), req, None, Resend::OnlyIfUnsent)
            .await
    }

    /// `GET /v1/deployments`: one page of deployment summaries, newest first (the history only grows: callers
    /// page on with `next_cursor` as far as they need).
    pub async fn list_deployments(
        &self,
        query: &DeploymentQuery,
    ) -> Result<Page<DeploymentSummary>, ClientError> {
        self.get_json(&routes::deployments_page(query)).await
    }

    /// `GET /v1/applications/{app}/groups/{group}/deliveries`: every webhook delivery of the group, oldest first
    /// (all pages).
    pub async fn group_deliveries(
        &self,
        app: &str,
        group: &str,
    ) -> Result<Vec<rollcage_proto::webhook::WebhookDelivery>, ClientError> {
        self.all_pages(&routes::group_deliveries(app, group)).await
    }

    /// `GET /v1/deployments/{id}/deliveries`: the webhook deliveries of one deployment's events.
    pub async fn deployment_deliveries(
        &self,
        id: &str,
    ) -> Result<Vec<rollcage_proto::webhook::WebhookDelivery>, ClientError> {
        self.get_json(&routes::deployment_sub(id, routes::Sub::Deliveries))
            .await
    }

    /// `GET /v1/deployments/{id}`.
    pub async fn get_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.get_json(&routes::deployment(id)).await
    }

    /// `POST /v1/deployments/{id}/stop`.
    pub async fn stop_deployment(
        &self,
        id: &str,
        req: &StopDeployment,
    ) -> Result<Deployment, ClientError> {
        self.post_json(
            &routes::deployment_sub(id, Sub::Stop),
            req,
            None,
            Resend::OnlyIfUnsent,
        )
        .await
    }

    /// `POST /v1/deployments/{id}/continue`: a blue/green deployment waiting in `ready` switches traffic.
    pub async fn continue_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.post_json(
            &routes::deployment_sub(id, Sub::Continue),
            &NoParams {},
            None,
            Resend::OnlyIfUnsent,
        )
        .await
    }

    /// `POST /v1/deployments/{id}/rollback`: start a rollback deployment; answers with it.
    pub async fn rollback_deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.post_json(
            &routes::deployment_sub(id, Sub::Rollback),
            &NoParams {},
            None,
            Resend::OnlyIfUnsent,
        )
        .await
    }

    /// `GET /v1/deployments/{id}/events`: the deployment's server-sent events (`text/event-stream`), as a body
    /// to read frame by frame. Only the response head has a deadline; the caller bounds the idle time between
    /// frames (the coordinator sends a keep-alive comment every 15 s).
    pub async fn deployment_events(&self, id: &str) -> Result<hyper::body::Incoming, ClientError> {
        self.get_stream(
            &routes::deployment_sub(id, Sub::Events),
            "text/event-stream",
        )
        .await
    }

    /// `GET /v1/deployments/{id}/logs`: one page of the deployment's step logs (a long poll when
    /// `query.wait_ms` is set).
    pub async fn deployment_logs(
        &self,
        id: &str,
        query: &LogQuery,
    ) -> Result<StepLogPage, ClientError> {
        self.get_json(&routes::deployment_logs(id, query)).await
    }

    /// `GET /v1/instances`, every page: every enrolled instance, by name.
    pub async fn list_instances(&self) -> Result<Vec<InstanceInfo>, ClientError> {
        self.all_pages(&routes::instances()).await
    }

    /// `DELETE /v1/instances/{name}`: forget an instance (its token stops working; its name may enroll again).
    /// `force`: even while deployments that have not ended include it (it leaves them).
    pub async fn remove_instance(&self, name: &str, force: bool) -> Result<(), ClientError> {
        let path = if force {
            format!("{}?force=true", routes::instance(name))
        } else {
            routes::instance(name)
        };
        self.delete(&path).await
    }

    /// `POST /v1/instances/{name}/approve`: an instance pending approval may be given work.
    pub async fn approve_instance(&self, name: &str) -> Result<InstanceInfo, ClientError> {
        self.post_json(
            &routes::approve_instance(name),
            &NoParams {},
            None,
            Resend::OnlyIfUnsent,
        )
        .await
    }

    /// `POST /v1/enroll-tokens`: a new per-use enrollment token (its secret is in this answer only).
    pub async fn create_enroll_token(
        &self,
        req: &CreateEnrollToken,
    ) -> Result<CreatedEnrollToken, ClientError> {
        self.post_json(&routes::enroll_tokens(), req, None, Resend::OnlyIfUnsent)
            .await
    }

    /// `GET /v1/enroll-tokens`, every page: every per-use enrollment token, oldest first (never a secret).
    pub async fn list_enroll_tokens(&self) -> Result<Vec<EnrollTokenInfo>, ClientError> {
        self.all_pages(&routes::enroll_tokens()).await
    }

    /// `POST /v1/enroll-tokens/{id}/revoke`: the token enrolls no more.
    pub async fn revoke_enroll_token(&self, id: &str) -> Result<EnrollTokenInfo, ClientError> {
        self.post_json(
            &routes::revoke_enroll_token(id),
            &NoParams {},
            None,
            Resend::OnlyIfUnsent,
        )
        .await
    }
}

/// The body of an action without parameters: `{}`.
#[derive(serde::Serialize)]
struct NoParams {}
