//! `GET /v1/deployments/{id}/events`: a deployment's live progress as server-sent events.
//!
//! Each message is `event: deployment` with the same JSON as `GET /v1/deployments/{id}` on one `data:` line. The
//! first comes at once; then one after every change (the store bumps [`crate::notify::Changes`] after each commit);
//! a change that leaves the JSON identical sends nothing. Once the deployment is terminal its last snapshot is
//! sent and the stream ends. A slow client coalesces: it gets the latest snapshot, never a backlog.

use super::{ApiError, Path};
use crate::notify::Subscription;
use crate::state::State;
use crate::store::deployments;
use axum::extract::State as AxState;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use std::convert::Infallible;
use std::time::Duration;

/// Proxies commonly cut idle connections after 30–60 s; a comment every 15 s keeps the stream open through them.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The SSE event name of a snapshot.
pub const EVENT_NAME: &str = "deployment";

/// One follower of one deployment.
struct Follow {
    st: State,
    id: String,
    changes: Subscription,
    last: Option<String>,
    done: bool,
}

/// What to do after a read of the deployment.
enum Next {
    Send(Event),
    End,
    Wait,
}

impl Follow {
    fn read(&mut self) -> Next {
        let d = match self.st.store.read(|c| deployments::full(c, &self.id)) {
            Ok(Some(d)) => d,
            Ok(None) => return Next::End,
            Err(e) => {
                tracing::error!(deployment = %self.id, error = %e, "reading a followed deployment failed");
                return Next::End;
            }
        };
        let json = match serde_json::to_string(&d) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(deployment = %self.id, error = %e, "encoding a deployment failed");
                return Next::End;
            }
        };
        let terminal = d.status.is_terminal();
        if self.last.as_deref() != Some(json.as_str()) {
            let event = Event::default().event(EVENT_NAME).data(&json);
            self.last = Some(json);
            self.done = terminal;
            return Next::Send(event);
        }
        if terminal { Next::End } else { Next::Wait }
    }
}

fn snapshots(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(follow, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            match f.read() {
                Next::Send(event) => return Some((Ok(event), f)),
                Next::End => return None,
                // A closed channel cannot happen while the state lives; end rather than spin.
                Next::Wait => f.changes.changed().await.ok()?,
            }
        }
    })
}

/// `GET /v1/deployments/{id}/events`.
pub async fn deployment_events(
    AxState(st): AxState<State>,
    Path(id): Path<String>,
) -> Result<
    (
        [(axum::http::HeaderName, &'static str); 1],
        Sse<impl Stream<Item = Result<Event, Infallible>>>,
    ),
    ApiError,
> {
    // Subscribe before the first read: a change committed in between still wakes the stream.
    let changes = st.changes().subscribe(&id);
    let exists = st.store.read(|c| deployments::get(c, &id))?.is_some();
    if !exists {
        return Err(ApiError::NotFound(format!("deployment `{id}` not found")));
    }
    tracing::debug!(deployment = %id, "progress stream opened");
    let follow = Follow {
        st,
        id,
        changes,
        last: None,
        done: false,
    };
    // `no-store` like every API answer (see `headers.rs`), in place of the `no-cache` axum gives a stream.
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Sse::new(snapshots(follow))
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")),
    ))
}

#[cfg(test)]
mod tests {
    use crate::api::testkit::{ADMIN, TestResult, deployment, post_ok as post, send};
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    use http_body_util::BodyExt;
    use rollcage_proto::wire::{
        Deployment, DeploymentStatus, ErrorBody, PollResponse, ReportResponse, StepCommand,
        StepOutcome, StepReport, StepState,
    };
    use std::time::Duration;

    /// Reads whole SSE messages off a response body.
    struct Reader {
        body: axum::body::Body,
        buf: String,
    }

    impl Reader {
        /// The next message's (event, data), `None` at the end of the stream; an error if nothing comes in 2 s.
        async fn next(&mut self) -> TestResult<Option<(String, String)>> {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let msg: String = self.buf.drain(..end + 2).collect();
                    let (mut event, mut data) = (String::new(), String::new());
                    for line in msg.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            event = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data = v.to_owned();
                        }
                    }
                    if event.is_empty() && data.is_empty() {
                        continue; // a comment (keep-alive)
                    }
                    return Ok(Some((event, data)));
                }
                let frame = tokio::time::timeout(Duration::from_secs(2), self.body.frame())
                    .await
                    .map_err(|_| "no SSE message within 2 s")?;
                match frame {
                    None => return Ok(None),
                    Some(f) => {
                        if let Some(d) = f?.data_ref() {
                            self.buf.push_str(std::str::from_utf8(d)?);
                        }
                    }
                }
            }
        }

        async fn snapshot(&mut self) -> TestResult<Deployment> {
            let (event, data) = self.next().await?.ok_or("stream ended early")?;
            assert_eq!(event, "deployment");
            assert!(!data.contains('\n'));
            Ok(serde_json::from_str(&data)?)
        }
    }

    async fn open(st: &super::State, id: &str) -> TestResult<Reader> {
        let resp = send(
            st,
            Method::GET,
            &format!("/v1/deployments/{id}/events"),
            Some(ADMIN),
            Body::empty(),
            true,
        )
        .await?;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Ok(Reader {
            body: resp.into_body(),
            buf: String::new(),
        })
    }

    fn running(d: &Deployment) -> Vec<String> {
        d.instances[0]
            .steps
            .iter()
            .filter(|s| s.state == StepState::Running)
            .map(|s| s.event.name().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn each_report_sends_a_new_snapshot_and_the_stream_ends_after_the_terminal_one()
    -> TestResult {
        let (st, agent, id) = deployment().await?;
        let mut stream = open(&st, &id).await?;
        let first = stream.snapshot().await?;
        assert_eq!(first.id, id);
        assert_eq!(running(&first), ["DownloadBundle"]);
        // The same JSON as `GET /v1/deployments/{id}`.
        let resp = send(
            &st,
            Method::GET,
            &format!("/v1/deployments/{id}"),
            Some(ADMIN),
            Body::empty(),
            true,
        )
        .await?;
        let got: Deployment =
            serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
        assert_eq!(got, first);

        let poll: PollResponse = serde_json::from_value(
            post(&st, "/v1/agent/poll", &agent, serde_json::json!({})).await?,
        )?;
        let mut cmd: StepCommand = poll.command.ok_or("i0 has a command")?;
        let mut snapshots = 1;
        let last = loop {
            let report = StepReport {
                command_id: cmd.command_id,
                outcome: StepOutcome::Succeeded,
                message: "ok".into(),
                hooks: vec![],
                duration_ms: 1,
                log: None,
            };
            // The stream is already waiting for a change when the report lands (so only a bump can wake it).
            let body = serde_json::to_value(&report)?;
            let reported = async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                post(&st, "/v1/agent/reports", &agent, body).await
            };
            let (d, r) = tokio::join!(stream.snapshot(), reported);
            let (d, r): (Deployment, ReportResponse) = (d?, serde_json::from_value(r?)?);
            snapshots += 1;
            let step = d.instances[0]
                .steps
                .iter()
                .find(|s| s.event == cmd.event)
                .ok_or("the reported step is in the snapshot")?;
            assert_eq!(
                step.state,
                StepState::Succeeded,
                "{:?} after its report",
                cmd.event
            );
            match r.command {
                Some(next) => {
                    assert_eq!(running(&d), [next.event.name()]);
                    cmd = next;
                }
                None => break d,
            }
        };
        assert_eq!(last.status, DeploymentStatus::Succeeded);
        assert_eq!(
            snapshots, 8,
            "the first snapshot and one per report of the 7 steps"
        );
        assert!(
            stream.next().await?.is_none(),
            "the stream ends after the terminal snapshot"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_stop_sends_a_snapshot() -> TestResult {
        let (st, _, id) = deployment().await?;
        let mut stream = open(&st, &id).await?;
        stream.snapshot().await?;
        let stop = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let uri = format!("/v1/deployments/{id}/stop");
            post(&st, &uri, ADMIN, serde_json::json!({"force": true})).await
        };
        let (d, stopped) = tokio::join!(stream.snapshot(), stop);
        stopped?;
        let d = d?;
        assert_eq!(d.status, DeploymentStatus::Stopped);
        assert!(stream.next().await?.is_none());
        // A terminal deployment: its snapshot at once, then the end.
        let mut again = open(&st, &id).await?;
        assert_eq!(again.snapshot().await?.status, DeploymentStatus::Stopped);
        assert!(again.next().await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn a_step_failed_by_the_lost_agent_sweeper_sends_a_snapshot() -> TestResult {
        let (st, _, id) = deployment().await?;
        let mut stream = open(&st, &id).await?;
        assert_eq!(running(&stream.snapshot().await?), ["DownloadBundle"]);
        let sweep = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            // Far past the heartbeat deadline: the agent is lost.
            crate::server::sweep_lost(&st, rollcage_proto::wire::now_ms() + 3_600_000)
        };
        let (d, swept) = tokio::join!(stream.snapshot(), sweep);
        assert_eq!(swept?, 1);
        let d = d?;
        assert_eq!(d.instances[0].steps[0].state, StepState::Failed);
        assert!(
            d.instances[0].steps[0].message.contains("lost"),
            "{:?}",
            d.instances[0].steps[0]
        );
        assert_eq!(d.status, DeploymentStatus::Failed);
        assert!(stream.next().await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn unknown_deployment_is_404_and_the_admin_token_is_required() -> TestResult {
        let (st, agent, id) = deployment().await?;
        let resp = send(
            &st,
            Method::GET,
            "/v1/deployments/nope/events",
            Some(ADMIN),
            Body::empty(),
            true,
        )
        .await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body: ErrorBody =
            serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
        assert_eq!(body.error.code, "not_found");
        assert!(
            body.error.message.contains("nope"),
            "{}",
            body.error.message
        );
        for token in [None, Some("wrong"), Some(agent.as_str())] {
            let resp = send(
                &st,
                Method::GET,
                &format!("/v1/deployments/{id}/events"),
                token,
                Body::empty(),
                true,
            )
            .await?;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{token:?}");
            let body: ErrorBody =
                serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
            assert_eq!(body.error.code, "unauthorized");
        }
        assert_eq!(
            st.changes().followed(),
            0,
            "refused requests leave no follower behind"
        );
        Ok(())
    }
}
