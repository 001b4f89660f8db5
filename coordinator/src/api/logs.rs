//! `GET /v1/deployments/{id}/logs` (admin): the full hook output of a deployment's steps, paged by a cursor, with
//! an optional long poll for followers (`rollcage logs --follow`, the dashboard).
//!
//! Reports store their logs in the report's own transaction (`api/agent.rs`); the store records the deployment as
//! touched and, after the commit, bumps it in [`crate::notify::Changes`], as every change of a deployment does. A
//! waiting request re-reads on every bump (no timer: the notification cannot be forgotten, a test checks every
//! write path).

use super::query::Query;
use super::{ApiError, Json, Path};
use crate::state::State;
use crate::store::{deployments, logs};
use axum::extract::State as AxState;
use rollcage_proto::LifecycleEvent;
use rollcage_proto::wire::{LogQuery, StepLogPage};
use std::time::Duration;

/// Longest a request may wait for new entries: below the clients' 60 s request timeout, long enough that a
/// follower costs little.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// `GET /v1/deployments/{id}/logs`.
pub async fn deployment_logs(
    AxState(st): AxState<State>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<StepLogPage>, ApiError> {
    let event = q
        .event
        .as_deref()
        .map(|e| {
            e.parse::<LifecycleEvent>().map_err(|_| {
                ApiError::Invalid(format!(
                    "unknown event `{e}`: expected a lifecycle event name such as `BeforeInstall`"
                ))
            })
        })
        .transpose()?;
    let filter = logs::Filter {
        instance: q.instance.as_deref(),
        event,
    };
    // A seq is never negative: a negative cursor is a client's mistake, not "from the start".
    let after = match q.after {
        Some(a) if a < 0 => {
            return Err(ApiError::Invalid(format!(
                "query parameter `after`: {a} is out of range: expected a seq (0 or more), the `next` of the \
                 previous page"
            )));
        }
        a => a.unwrap_or(0),
    };
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before reading, so an entry committed between the read and the wait still wakes us.
    let mut changes = st.changes().subscribe(&id);
    loop {
        let (entries, ended) = st.store.read(|c| {
            let d = deployments::get(c, &id)?
                .ok_or_else(|| ApiError::NotFound(format!("deployment `{id}` not found")))?;
            // One read under the store's lock: status and entries are of the same moment.
            let ended = d.status.is_terminal();
            Ok::<_, ApiError>((logs::page(c, &id, filter, after)?, ended))
        })?;
        let now = tokio::time::Instant::now();
        if !entries.is_empty() || ended || now >= deadline {
            let next = entries.last().map_or(after, |e| e.seq);
            return Ok(Json(StepLogPage {
                entries,
                next,
                deployment_ended: ended,
            }));
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // The channel is gone (cannot happen while we hold a receiver): answer at the deadline.
                    tokio::time::sleep_until(deadline).await;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testkit::{ADMIN, TestResult};
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    use rollcage_proto::wire::{
        ErrorBody, PollResponse, StepCommand, StepLog, StepOutcome, StepReport,
    };

    /// One instance `i0` in group `app/web` with a deployment started; returns the state, the agent's token, the
    /// deployment id and the agent's first command.
    async fn deployment() -> TestResult<(State, String, String, StepCommand)> {
        let (st, token, id) = crate::api::testkit::deployment().await?;
        let (_, v) = call(
            &st,
            Method::POST,
            "/v1/agent/poll",
            Some(&token),
            Some(serde_json::json!({})),
        )
        .await?;
        let p: PollResponse = serde_json::from_value(v)?;
        let cmd = p.command.ok_or("i0 has a command")?;
        Ok((st, token, id, cmd))
    }

    /// A request with an optional JSON body: the status and the JSON answer.
    async fn call(
        st: &State,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> TestResult<(StatusCode, serde_json::Value)> {
        let json = body.is_some();
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        crate::api::testkit::call(st, method, uri, token, body, json).await
    }

    async fn report(st: &State, token: &str, cmd: &StepCommand, text: &str) -> TestResult {
        let r = StepReport {
            command_id: cmd.command_id,
            outcome: StepOutcome::Succeeded,
            message: "ok".into(),
            hooks: vec![],
            duration_ms: 1,
            log: Some(StepLog {
                text: text.into(),
                truncated_bytes: 5,
            }),
        };
        let (s, v) = call(
            st,
            Method::POST,
            "/v1/agent/reports",
            Some(token),
            Some(serde_json::to_value(&r)?),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        Ok(())
    }

    fn error_code(v: &serde_json::Value) -> TestResult<String> {
        Ok(serde_json::from_value::<ErrorBody>(v.clone())?.error.code)
    }

    #[tokio::test]
    async fn admin_token_required_unknown_deployment_404_unknown_event_400() -> TestResult {
        let (st, agent, id, _) = deployment().await?;
        let uri = format!("/v1/deployments/{id}/logs");
        for token in [None, Some("wrong"), Some(agent.as_str())] {
            let (s, v) = call(&st, Method::GET, &uri, token, None).await?;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(error_code(&v)?, "unauthorized");
        }
        let (s, v) = call(
            &st,
            Method::GET,
            "/v1/deployments/d-nope/logs",
            Some(ADMIN),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&v)?, "not_found");
        let (s, v) = call(
            &st,
            Method::GET,
            &format!("{uri}?event=Nope"),
            Some(ADMIN),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&v)?, "invalid_request");
        let (s, v) = call(
            &st,
            Method::GET,
            &format!("{uri}?after=x"),
            Some(ADMIN),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(error_code(&v)?, "invalid_request");
        let (s, v) = call(&st, Method::GET, &uri, Some(ADMIN), None).await?;
        assert_eq!(s, StatusCode::OK);
        let page: StepLogPage = serde_json::from_value(v)?;
        assert!(page.entries.is_empty());
        assert_eq!(page.next, 0);
        assert!(!page.deployment_ended);
        Ok(())
    }

    #[tokio::test]
    async fn a_reported_log_is_served_once_and_filtered() -> TestResult {
        let (st, agent, id, cmd) = deployment().await?;
        report(&st, &agent, &cmd, "[t] [stdout] DownloadBundle x: hello\n").await?;
        // The agent re-sends the same report (it lost the answer): stored once.
        report(&st, &agent, &cmd, "[t] [stdout] DownloadBundle x: hello\n").await?;
        let uri = format!("/v1/deployments/{id}/logs");
        let (_, v) = call(&st, Method::GET, &uri, Some(ADMIN), None).await?;
        let page: StepLogPage = serde_json::from_value(v)?;
        assert_eq!(page.entries.len(), 1, "{page:?}");
        let e = &page.entries[0];
        assert_eq!(
            (
                e.instance.as_str(),
                e.event,
                e.text.as_str(),
                e.truncated_bytes
            ),
            ("i0", cmd.event, "[t] [stdout] DownloadBundle x: hello\n", 5)
        );
        assert_eq!(page.next, e.seq);
        for (query, n) in [
            ("instance=i0", 1),
            ("instance=i1", 0),
            ("event=DownloadBundle", 1),
            ("event=AfterInstall", 0),
        ] {
            let (_, v) = call(
                &st,
                Method::GET,
                &format!("{uri}?{query}"),
                Some(ADMIN),
                None,
            )
            .await?;
            let p: StepLogPage = serde_json::from_value(v)?;
            assert_eq!(p.entries.len(), n, "{query}");
        }
        let (_, v) = call(
            &st,
            Method::GET,
            &format!("{uri}?after={}", e.seq),
            Some(ADMIN),
            None,
        )
        .await?;
        let p: StepLogPage = serde_json::from_value(v)?;
        assert!(p.entries.is_empty());
        assert_eq!(p.next, e.seq);
        Ok(())
    }

    #[tokio::test]
    async fn a_long_poll_returns_when_an_entry_arrives() -> TestResult {
        let (st, agent, id, cmd) = deployment().await?;
        let waiting = {
            let st = st.clone();
            let uri = format!("/v1/deployments/{id}/logs?wait_ms=20000");
            tokio::spawn(async move { call(&st, Method::GET, &uri, Some(ADMIN), None).await })
        };
        // Let the request start waiting, then report.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the request did not wait");
        report(&st, &agent, &cmd, "[t] [stdout] DownloadBundle x: late\n").await?;
        let (s, v) = tokio::time::timeout(Duration::from_secs(10), waiting).await???;
        assert_eq!(s, StatusCode::OK);
        let page: StepLogPage = serde_json::from_value(v)?;
        assert_eq!(page.entries.len(), 1, "{page:?}");
        assert_eq!(
            page.entries[0].text,
            "[t] [stdout] DownloadBundle x: late\n"
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_ended_deployment_is_reported_and_not_waited_on() -> TestResult {
        let (st, agent, id, cmd) = deployment().await?;
        report(
            &st,
            &agent,
            &cmd,
            "[t] [stdout] DownloadBundle x: before the stop\n",
        )
        .await?;
        let (s, v) = call(
            &st,
            Method::POST,
            &format!("/v1/deployments/{id}/stop"),
            Some(ADMIN),
            Some(serde_json::json!({"force": true})),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "stopped", "{v}");
        // The stored entry is still served, with the end flagged; a long poll past it returns at once (the
        // timeout below is far shorter than the 20 s asked for).
        let uri = format!("/v1/deployments/{id}/logs");
        let (_, v) = call(&st, Method::GET, &uri, Some(ADMIN), None).await?;
        let page: StepLogPage = serde_json::from_value(v)?;
        assert_eq!(page.entries.len(), 1);
        assert!(page.deployment_ended);
        let follow = format!("{uri}?after={}&wait_ms=20000", page.next);
        let (_, v) = tokio::time::timeout(
            Duration::from_secs(10),
            call(&st, Method::GET, &follow, Some(ADMIN), None),
        )
        .await??;
        let page: StepLogPage = serde_json::from_value(v)?;
        assert!(page.entries.is_empty());
        assert!(page.deployment_ended);
        Ok(())
    }
}
