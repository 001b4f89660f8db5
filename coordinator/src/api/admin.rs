//! Operator routes: applications, groups, revisions, deployments, instances (their paged lists are in
//! [`super::lists`]). Who may call which is decided before they run, by the route table (`super::guard`); the
//! deployment actions record who acted ([`Caller`]).

use super::guard::{AuditTarget, Caller};
use super::{ApiError, Json, Path};
use crate::engine::executor::{self, NewDeployment};
use crate::state::State;
use crate::store::actors::{self, Act};
use crate::store::{apps, deployments, instances, revisions};
use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use rollcage_proto::clip::clip_head;
use rollcage_proto::lb::GroupLb;
use rollcage_proto::wire::{AgentOverrides, now_ms};
use rollcage_proto::wire::{
    Application, CreateApplication, CreateDeployment, CreateGroup, Deployment, Group, NAME_RULE,
    NameList, RegisterUrlRevision, Revision, StopDeployment,
};
use rollcage_signing::Sshsig;
use rollcage_signing::sshsig::MessageDigest;

/// A name given in field `field` follows the one name rule ([`rollcage_proto::wire::NAME_RULE`]).
fn check_name(field: &str, what: &str, v: &str) -> Result<(), ApiError> {
    if rollcage_proto::wire::is_valid_name(v) {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "field `{field}`: invalid {what} `{}`: expected {NAME_RULE}",
            rollcage_proto::clip::clip_head(v, 160)
        )))
    }
}

pub(super) fn app_exists(c: &crate::store::Conn<'_>, app: &str) -> Result<(), ApiError> {
    match apps::application(c, app)? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!("application `{app}` not found"))),
    }
}

/// `POST /v1/applications`.
pub async fn create_application(
    AxState(st): AxState<State>,
    Json(req): Json<CreateApplication>,
) -> Result<(StatusCode, Json<Application>), ApiError> {
    check_name("name", "application name", &req.name)?;
    let now = now_ms();
    let created = st
        .store
        .write(|tx| apps::insert_application(tx, &req.name, now).map_err(ApiError::from))?;
    if !created {
        return Err(ApiError::Conflict(format!(
            "application `{}` already exists",
            req.name
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(Application {
            name: req.name,
            created_at_ms: now,
        }),
    ))
}

/// `POST /v1/applications/{app}/groups`.
pub async fn create_group(
    AxState(st): AxState<State>,
    Path(app): Path<String>,
    Json(req): Json<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    check_name("name", "deployment group name", &req.name)?;
    check_group(
        req.style,
        &req.instances,
        &req.tags,
        req.lb.as_ref(),
        req.form.as_ref(),
        req.concurrency,
    )?;
    let form = req.form;
    let group = Group {
        id: format!("g-{}", crate::auth::random_hex(6)),
        application: app.clone(),
        name: req.name,
        style: req.style,
        concurrency: req.concurrency,
        failure_tolerance: req.failure_tolerance,
        auto_rollback: req.auto_rollback,
        instances: req.instances,
        tags: req.tags,
        lb: req.lb,
        created_at_ms: now_ms(),
    };
    st.store.write(|tx| {
        app_exists(tx, &app)?;
        if apps::insert_group(tx, &group)? {
            crate::store::forms::set_group_form(tx, &group.id, form.as_ref())?;
            Ok(())
        } else {
            Err(ApiError::Conflict(format!(
                "application `{app}` already has a deployment group `{}`",
                group.name
            )))
        }
    })?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// A group's settings, checked the same way at creation and at every update: bounded, valid instance names
/// without repeats (names not enrolled yet are accepted: a group may be set up before its hosts enroll, and a
/// deployment is refused while any is not enrolled, see `create_deployment`), a valid tag filter, not both, a
/// bounded form (its own rules ran when the body was decoded), and load-balancer settings that fit the style and
/// the instances.
fn check_group(
    style: rollcage_proto::wire::DeploymentStyle,
    instances: &[String],
    tags: &rollcage_proto::tags::TagFilter,
    lb: Option<&GroupLb>,
    form: Option<&rollcage_proto::Form>,
    concurrency: rollcage_proto::wire::Concurrency,
) -> Result<(), ApiError> {
    rollcage_proto::wire::check_instance_list(instances)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    // A minimum healthy that leaves no instance to deploy to, on a group that lists its instances, is refused now
    // rather than at its first deployment (a group of every enrolled instance, or of tags, is checked at each
    // deployment).
    if !instances.is_empty() {
        concurrency
            .check(instances.len())
            .map_err(|e| ApiError::Invalid(format!("field `concurrency`: {e}")))?;
    }
    tags.check()
        .map_err(|e| ApiError::Invalid(format!("field `tags`: {e}")))?;
    if !tags.is_empty() && !instances.is_empty() {
        return Err(ApiError::Invalid(
            "fields `instances` and `tags` both given: a group selects its instances by name or by tags, not both"
                .to_owned(),
        ));
    }
    if let Some(form) = form {
        crate::store::forms::check_size(form).map_err(ApiError::Invalid)?;
    }
    GroupLb::check(style, instances, lb).map_err(|problems| {
        let each: Vec<String> = problems
            .0
            .iter()
            .map(|p| format!("deployment group field `{}`: {}", p.path, p.message))
            .collect();
        ApiError::Invalid(each.join("; "))
    })
}

/// `PATCH /v1/applications/{app}/groups/{group}`: change a group's settings; the fields given replace the group's,
/// checked exactly as at creation. Refused while the group has a deployment that has not ended (it runs with the
/// settings it started with; changing the load balancer under it would strand its traffic steps).
pub async fn update_group(
    AxState(st): AxState<State>,
    Path((app, name)): Path<(String, String)>,
    Json(req): Json<rollcage_proto::wire::UpdateGroup>,
) -> Result<Json<Group>, ApiError> {
    let g = st.store.write(|tx| {
        let mut g = apps::group(tx, &app, &name)?.ok_or_else(|| {
            ApiError::NotFound(format!("deployment group `{app}/{name}` not found"))
        })?;
        refuse_while_active(tx, &app, &name, "changed")?;
        req.apply_to(&mut g);
        check_group(
            g.style,
            &g.instances,
            &g.tags,
            g.lb.as_ref(),
            req.form.as_ref(),
            g.concurrency,
        )?;
        apps::update_group(tx, &g)?;
        if let Some(form) = &req.form {
            crate::store::forms::set_group_form(tx, &g.id, Some(form))?;
        }
        Ok::<_, ApiError>(g)
    })?;
    tracing::info!(application = %app, group = %name, "deployment group updated");
    Ok(Json(g))
}

/// `DELETE /v1/applications/{app}/groups/{group}`: refused while a deployment of the group has not ended; its
/// past deployments stay, as history.
pub async fn delete_group(
    AxState(st): AxState<State>,
    Path((app, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    st.store.write(|tx| {
        let g = apps::group(tx, &app, &name)?.ok_or_else(|| {
            ApiError::NotFound(format!("deployment group `{app}/{name}` not found"))
        })?;
        deployments::lock_group(tx, &g.id)?;
        refuse_while_active(tx, &app, &name, "deleted")?;
        apps::delete_group(tx, &g.id)?;
        Ok::<_, ApiError>(())
    })?;
    tracing::info!(application = %app, group = %name, "deployment group deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn refuse_while_active(
    c: &crate::store::Conn<'_>,
    app: &str,
    group: &str,
    what: &str,
) -> Result<(), ApiError> {
    match deployments::active_for_group(c, app, group)? {
        Some(active) => Err(ApiError::Conflict(format!(
            "deployment group `{app}/{group}` has deployment `{active}` in progress; it can be {what} once that \
             ends (wait, or `rollcage stop {active}`)"
        ))),
        None => Ok(()),
    }
}

/// `DELETE /v1/applications/{app}`: refused while it has deployment groups (delete them first) or revisions.
pub async fn delete_application(
    AxState(st): AxState<State>,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.store.write(|tx| {
        app_exists(tx, &app)?;
        let groups: Vec<String> = apps::groups(tx, &app)?.into_iter().map(|g| g.name).collect();
        if !groups.is_empty() {
            return Err(ApiError::Conflict(format!(
                "application `{app}` has deployment groups: {}; delete them first (`rollcage group delete`)",
                NameList(&groups)
            )));
        }
        let revisions: i64 = tx.query_row(
            "SELECT COUNT(*) FROM revisions WHERE application = ?1",
            [app.as_str()],
            |r| r.get(0),
        )?;
        if revisions > 0 {
            return Err(ApiError::Conflict(format!(
                "application `{app}` has {revisions} revision(s); an application is deleted once it has none"
            )));
        }
        apps::delete_application(tx, &app)?;
        Ok::<_, ApiError>(())
    })?;
    tracing::info!(application = %app, "application deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/applications/{app}/groups/{group}`.
pub async fn get_group(
    AxState(st): AxState<State>,
    Path((app, group)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    st.store.read(|c| {
        apps::group(c, &app, &group)?.map(Json).ok_or_else(|| {
            ApiError::NotFound(format!("deployment group `{app}/{group}` not found"))
        })
    })
}

/// Largest archive accepted by upload.
const MAX_BUNDLE_BYTES: u64 = 8 << 30;

/// A signature given with a registration (`field` names where): an SSH signature for namespace `rollcage`. The
/// coordinator holds no trusted keys; agents decide whether its key is trusted.
fn parse_signature(field: &str, text: &str) -> Result<Sshsig, ApiError> {
    let sig = Sshsig::parse(text).map_err(|e| ApiError::Invalid(format!("{field}: {e}")))?;
    if sig.namespace() != rollcage_signing::NAMESPACE {
        return Err(ApiError::Invalid(format!(
            "{field}: the signature is for namespace \"{}\", expected \"{ns}\" (sign with `ssh-keygen -Y sign -n {ns}`)",
            clip_head(sig.namespace(), 160),
            ns = rollcage_signing::NAMESPACE
        )));
    }
    Ok(sig)
}

/// What the store keeps of a checked signature.
fn stored_signature(sig: &Sshsig) -> Result<revisions::StoredSignature, ApiError> {
    Ok(revisions::StoredSignature {
        armored: sig
            .armored()
            .map_err(|e| ApiError::Internal(format!("re-encoding a signature: {e}")))?,
        signed_by: sig.signer(),
    })
}

/// The upload's signature header ([`rollcage_proto::wire::SIGNATURE_HEADER`]), parsed, if given.
fn upload_signature(headers: &HeaderMap) -> Result<Option<Sshsig>, ApiError> {
    let field = format!("header `{}`", rollcage_proto::wire::SIGNATURE_HEADER);
    let Some(value) = headers.get(rollcage_proto::wire::SIGNATURE_HEADER) else {
        return Ok(None);
    };
    if value.len() > rollcage_signing::MAX_SIGNATURE_BYTES {
        return Err(ApiError::Invalid(format!(
            "{field}: {} bytes, more than an SSH signature's {}",
            value.len(),
            rollcage_signing::MAX_SIGNATURE_BYTES
        )));
    }
    let value = value.to_str().map_err(|_| {
        ApiError::Invalid(format!(
            "{field}: expected the signature's base64 on one line (the armored signature without its BEGIN/END lines)"
        ))
    })?;
    let armored = rollcage_proto::wire::signature_from_header(value);
    parse_signature(&field, &armored).map(Some)
}

/// `POST /v1/applications/{app}/revisions`: the body is the archive; stored by sha256 as it streams in. With a
/// signature header, the signature is checked against the archive (with the key it names) in the same pass.
pub async fn upload_revision(
    AxState(st): AxState<State>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Revision>), ApiError> {
    st.store.read(|c| app_exists(c, &app))?;
    // Checked before a byte of the body is read: a malformed signature costs no upload.
    let signature = upload_signature(&headers)?;
    let mut sig_digest = match &signature {
        Some(sig) => Some(MessageDigest::new(sig.hash_alg()).ok_or_else(|| {
            ApiError::Invalid(format!(
                "the signature uses hash {}, expected sha256 or sha512",
                sig.hash_alg()
            ))
        })?),
        None => None,
    };
    // Stored by sha256 as it streams in ([`crate::bundles`]: a file, or chunks in PostgreSQL); what fails below is
    // removed again, so nothing half-written is ever served.
    let mut upload = st.bundles.upload(st.clone()).await?;
    let mut body = body;
    let result: Result<(), ApiError> = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::Invalid(format!("reading the upload body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if upload.size() + data.len() as u64 > MAX_BUNDLE_BYTES {
                    return Err(ApiError::Invalid(format!(
                        "archive larger than {MAX_BUNDLE_BYTES} bytes"
                    )));
                }
                if let Some(d) = &mut sig_digest {
                    d.update(data);
                }
                upload.write(data).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        upload.abort().await;
        return Err(e);
    }
    if upload.size() == 0 {
        upload.abort().await;
        return Err(ApiError::Invalid(
            "empty upload: the body must be the archive".into(),
        ));
    }
    let stored = match (&signature, sig_digest) {
        (Some(sig), Some(digest)) => {
            if !sig.verify_digest(&digest.finalize()) {
                upload.abort().await;
                return Err(ApiError::Invalid(format!(
                    "bad signature: the signature by {} does not verify over the uploaded archive (it signs other \
                     bytes)",
                    sig.signer()
                )));
            }
            Some(stored_signature(sig)?)
        }
        _ => None,
    };
    let crate::bundles::Stored { sha256: sha, size } = upload.finish().await?;
    let now = now_ms();
    let registered = st.store.write(|tx| {
        revisions::register(tx, &app, &sha, None, size, now, stored.as_ref())
            .map_err(ApiError::from)
    })?;
    let answer = answer_registration(registered)?;
    tracing::info!(application = %app, revision = %answer.1.0.id, size, status = %answer.0, "revision uploaded");
    Ok(answer)
}

/// The answer to a registration: 201 with a new revision; 200 with the revision when it existed (unchanged, or
/// now served by the coordinator: the body shows its source); 409 when refused (one source per revision).
fn answer_registration(r: revisions::Registered) -> Result<(StatusCode, Json<Revision>), ApiError> {
    match r {
        revisions::Registered::Created(rev) => Ok((StatusCode::CREATED, Json(rev))),
        revisions::Registered::Unchanged(rev) | revisions::Registered::BecameUploaded(rev) => {
            Ok((StatusCode::OK, Json(rev)))
        }
        revisions::Registered::Refused(message) => Err(ApiError::Conflict(message)),
    }
}

/// `POST /v1/applications/{app}/revisions/url`.
pub async fn register_url_revision(
    AxState(st): AxState<State>,
    Path(app): Path<String>,
    Json(req): Json<RegisterUrlRevision>,
) -> Result<(StatusCode, Json<Revision>), ApiError> {
    let sha = req.sha256.to_ascii_lowercase();
    if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::Invalid(format!(
            "invalid sha256 `{}`: expected 64 hex digits",
            req.sha256
        )));
    }
    if !(req.url.starts_with("http://")
        || req.url.starts_with("https://")
        || req.url.starts_with("file://"))
    {
        return Err(ApiError::Invalid(format!(
            "invalid url `{}`: expected http://, https:// or file://",
            req.url
        )));
    }
    // No archive here to check the signature against: only that it is one, for rollcage.
    let stored = match &req.signature {
        Some(text) => Some(stored_signature(&parse_signature(
            "field `signature`",
            text,
        )?)?),
        None => None,
    };
    let now = now_ms();
    let registered = st.store.write(|tx| {
        app_exists(tx, &app)?;
        Ok::<_, ApiError>(revisions::register(
            tx,
            &app,
            &sha,
            Some(&req.url),
            0,
            now,
            stored.as_ref(),
        )?)
    })?;
    answer_registration(registered)
}

/// `GET /v1/applications/{app}/revisions/{id}`.
pub async fn get_revision(
    AxState(st): AxState<State>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Revision>, ApiError> {
    st.store.read(|c| {
        revisions::get(c, &app, &id)?
            .map(Json)
            .ok_or_else(|| ApiError::NotFound(format!("revision `{app}/{id}` not found")))
    })
}

/// `DELETE /v1/applications/{app}/revisions/{id}`: refused while a deployment that has not ended deploys it, and
/// while it is a group's last successful revision (what that group's rollbacks and catch-ups deploy).
pub async fn delete_revision(
    AxState(st): AxState<State>,
    Path((app, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    st.store.write(|tx| {
        if revisions::get(tx, &app, &id)?.is_none() {
            return Err(ApiError::NotFound(format!("revision `{app}/{id}` not found")));
        }
        let (active, last_of) = revisions::users(tx, &app, &id)?;
        if !active.is_empty() {
            return Err(ApiError::Conflict(format!(
                "revision `{app}/{id}` is being deployed by {}; it can be deleted once they end",
                NameList(&active)
            )));
        }
        if !last_of.is_empty() {
            return Err(ApiError::Conflict(format!(
                "revision `{app}/{id}` is the last successful revision of group(s) {}: their rollbacks and \
                 catch-ups deploy it; it can be deleted once a newer revision succeeded there",
                NameList(&last_of)
            )));
        }
        revisions::delete(tx, &app, &id)?;
        Ok(())
    })?;
    tracing::info!(application = %app, revision = %id, "revision deleted");
    // The archive's bytes go too when no other revision names them. The revision is gone either way: a failure
    // here leaves bytes that the next delete reclaims, so it is logged, not answered.
    match st
        .bundles
        .reclaim(st.clone(), rollcage_proto::wire::now_ms())
        .await
    {
        Ok(r) if r.bundles > 0 => {
            tracing::info!(
                bundles = r.bundles,
                bytes = r.bytes,
                "reclaimed the bytes of bundles no revision names"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reclaiming the bytes of deleted revisions"),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A deployment of a group is refused while the group names an instance that is not enrolled (it would only fail
/// later, on that instance; a group that selects by tags names none), listing those names; and when its stored list repeats a name (a group created before
/// lists were checked). The names checked are the group's `instances` and, for a load-balanced group, its
/// `lb.targets` (a blue/green deployment runs on the idle server group's targets). An unknown group is left to
/// the engine's 404.
fn check_group_instances(
    c: &crate::store::Conn<'_>,
    app: &str,
    group: &str,
) -> Result<(), ApiError> {
    let Some(g) = apps::group(c, app, group)? else {
        return Ok(());
    };
    rollcage_proto::wire::check_instance_list(&g.instances)
        .map_err(|e| ApiError::Invalid(format!("deployment group `{app}/{group}`: {e}")))?;
    // A group that selects by tags deploys to the enrolled instances its tags match; its `lb.targets` may name
    // hosts that have not joined yet (they catch up when they do).
    if !g.tags.is_empty() {
        return Ok(());
    }
    let mut named: Vec<String> = g.instances.clone();
    if let Some(lb) = &g.lb {
        named.extend(
            lb.targets
                .keys()
                .filter(|t| !g.instances.contains(t))
                .cloned(),
        );
    }
    let enrolled = instances::enrolled_among(c, &named)?;
    let unknown: Vec<String> = named
        .into_iter()
        .filter(|n| !enrolled.contains(n))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "deployment group `{app}/{group}` names instances that are not enrolled: {}; start their agents (or \
         create a group without them) and deploy again",
        NameList(&unknown)
    )))
}

/// `DELETE /v1/instances/{name}?force=true`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Remove it even from deployments that have not ended.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/deployments`.
pub async fn create_deployment(
    Caller(caller): Caller,
    AxState(st): AxState<State>,
    Json(req): Json<CreateDeployment>,
) -> Result<(StatusCode, axum::Extension<AuditTarget>, Json<Deployment>), ApiError> {
    let now = now_ms();
    if let Some(form) = &req.form {
        crate::store::forms::check_size(form).map_err(ApiError::Invalid)?;
    }
    if let Some(text) = &req.description {
        rollcage_proto::wire::check_description(text)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
    }
    let d = st.store.write(|tx| {
        check_group_instances(tx, &req.application, &req.group)?;
        // A group that names no instances deploys to every approved one (never to one pending approval).
        let all = instances::approved(tx)?;
        let id = executor::create_deployment(
            tx,
            &NewDeployment {
                application: &req.application,
                group: &req.group,
                revision: &req.revision,
                rollback_of: None,
                concurrency: None,
                catch_up: None,
                overrides: AgentOverrides {
                    ignore_application_stop_failures: req.ignore_application_stop_failures,
                    file_exists_behavior: req.file_exists_behavior,
                },
                description: req.description.clone(),
            },
            &all,
            now,
        )?;
        if let Some(form) = &req.form {
            // The deployment's own form overrides the group's default set by `create_deployment`.
            crate::store::forms::set_deployment_form(tx, &id, Some(form))?;
        }
        actors::set(tx, &id, Act::Created, &caller.name)?;
        deployments::full(tx, &id)?
            .ok_or_else(|| ApiError::Internal(format!("deployment {id} vanished")))
    })?;
    let target = AuditTarget(d.id.clone());
    Ok((StatusCode::CREATED, axum::Extension(target), Json(d)))
}

/// `GET /v1/deployments/{id}`.
pub async fn get_deployment(
    AxState(st): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    st.store.read(|c| {
        deployments::full(c, &id)?
            .map(Json)
            .ok_or_else(|| ApiError::NotFound(format!("deployment `{id}` not found")))
    })
}

/// Largest body of a stop (`{"force": true}` is 15 bytes).
const STOP_BODY_LIMIT: usize = 4 << 10;

/// `POST /v1/deployments/{id}/stop`. The body is optional: none, or an empty one, is a plain stop (`{}`).
pub async fn stop_deployment(
    Caller(caller): Caller,
    AxState(st): AxState<State>,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Json<Deployment>, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, STOP_BODY_LIMIT)
        .await
        .map_err(|e| ApiError::Invalid(format!("reading the request body: {e}")))?;
    let req = if bytes.iter().all(u8::is_ascii_whitespace) {
        StopDeployment::default()
    } else {
        let req = axum::extract::Request::from_parts(parts, Body::from(bytes));
        <Json<StopDeployment> as axum::extract::FromRequest<()>>::from_request(req, &())
            .await?
            .0
    };
    let now = now_ms();
    let d = st.store.write(|tx| {
        executor::stop(tx, &id, req.force, now)?;
        actors::set(tx, &id, Act::Stopped, &caller.name)?;
        deployments::full(tx, &id)?
            .ok_or_else(|| ApiError::NotFound(format!("deployment `{id}` not found")))
    })?;
    Ok(Json(d))
}

/// `POST /v1/deployments/{id}/continue`: a blue/green deployment waiting in `ready` switches traffic.
pub async fn continue_deployment(
    Caller(caller): Caller,
    AxState(st): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    let now = now_ms();
    let d = st.store.write(|tx| {
        executor::continue_deployment(tx, &id, now)?;
        actors::set(tx, &id, Act::Continued, &caller.name)?;
        deployments::full(tx, &id)?
            .ok_or_else(|| ApiError::NotFound(format!("deployment `{id}` not found")))
    })?;
    Ok(Json(d))
}

/// `POST /v1/deployments/{id}/rollback`: start a rollback deployment; answers with it.
pub async fn rollback_deployment(
    Caller(caller): Caller,
    AxState(st): AxState<State>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let now = now_ms();
    let d = st.store.write(|tx| {
        let rb = executor::rollback(tx, &id, now)?;
        actors::set(tx, &rb, Act::Created, &caller.name)?;
        actors::set(tx, &id, Act::RolledBack, &caller.name)?;
        deployments::full(tx, &rb)?
            .ok_or_else(|| ApiError::Internal(format!("deployment {rb} vanished")))
    })?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// `DELETE /v1/instances/{name}`: forget an instance; its token stops working at once and its name may be
/// enrolled again (how a host whose token was lost enrolls again). Refused (409) while a deployment that has not
/// ended includes it: stop that deployment first.
pub async fn remove_instance(
    AxState(st): AxState<State>,
    Path(name): Path<String>,
    super::query::Query(q): super::query::Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let now = now_ms();
    st.store.write(|tx| {
        if instances::get(tx, &name)?.is_none() {
            return Err(ApiError::NotFound(format!(
                "instance `{}` is not enrolled",
                rollcage_proto::clip::clip_head(&name, 160)
            )));
        }
        let active = instances::active_deployments(tx, &name)?;
        if !active.is_empty() && !q.force {
            return Err(ApiError::Conflict(format!(
                "instance `{name}` is part of deployments that have not ended: {}; stop them first, or remove it \
                 anyway with `force` (its steps there are cancelled and the deployments go on without it)",
                NameList(&active)
            )));
        }
        for id in &active {
            executor::drop_instance(tx, id, &name, now)?;
        }
        // Groups stop naming it: not in their next deployment, not a load-balancer target any more.
        for mut g in apps::all_groups(tx)? {
            let named = g.instances.contains(&name);
            let targeted = g.lb.as_ref().is_some_and(|lb| lb.targets.contains_key(&name));
            if named || targeted {
                g.instances.retain(|i| *i != name);
                if let Some(lb) = g.lb.as_mut() {
                    lb.targets.remove(&name);
                }
                apps::update_group(tx, &g)?;
            }
        }
        instances::remove(tx, &name, now)?;
        Ok(())
    })?;
    st.tokens.remove_agent(&name);
    tracing::info!(instance = %name, "instance removed");
    Ok(StatusCode::NO_CONTENT)
}
