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
    // Bounded, valid, no repeats. Names not enrolled yet are accepted here (a group may be set up before its hosts
    // enroll); a deployment of the group is refused while any is not enrolled (see `create_deployment`).
    rollcage_proto::wire::check_instance_list(&req.instances)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    // The form's own rules ran when the body was decoded (a bad one is a 400 naming its field there); the LB
    // settings depend on the style and the instances, so they are checked here, once: the store keeps them typed.
    if let Some(form) = &req.form {
        crate::store::forms::check_size(form).map_err(ApiError::Invalid)?;
    }
    // A minimum healthy that leaves no instance to deploy to, on a group that lists its instances, is refused now
    // rather than at its first deployment (a group of every enrolled instance is checked at each deployment).
    if !req.instances.is_empty() {
        req.concurrency
            .check(req.instances.len())
            .map_err(|e| ApiError::Invalid(format!("field `concurrency`: {e}")))?;
    }
    let form = req.form;
    GroupLb::check(req.style, &req.instances, req.lb.as_ref()).map_err(|problems| {
        let each: Vec<String> = problems
            .0
            .iter()
            .map(|p| format!("deployment group field `{}`: {}", p.path, p.message))
            .collect();
        ApiError::Invalid(each.join("; "))
    })?;
    let group = Group {
        id: format!("g-{}", crate::auth::random_hex(6)),
        application: app.clone(),
        name: req.name,
        style: req.style,
        concurrency: req.concurrency,
        failure_tolerance: req.failure_tolerance,
        auto_rollback: req.auto_rollback,
        instances: req.instances,
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

/// A deployment of a group is refused while the group names an instance that is not enrolled (it would only fail
/// later, on that instance), listing those names; and when its stored list repeats a name (a group created before
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
) -> Result<StatusCode, ApiError> {
    st.store.write(|tx| {
        let active = instances::active_deployments(tx, &name)?;
        if !active.is_empty() {
            return Err(ApiError::Conflict(format!(
                "instance `{name}` is part of deployments that have not ended: {}; stop them first",
                NameList(&active)
            )));
        }
        if instances::remove(tx, &name)? {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "instance `{}` is not enrolled",
                rollcage_proto::clip::clip_head(&name, 160)
            )))
        }
    })?;
    st.tokens.remove_agent(&name);
    tracing::info!(instance = %name, "instance removed");
    Ok(StatusCode::NO_CONTENT)
}
