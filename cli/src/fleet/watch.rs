//! `rollcage watch ID` and `deploy --wait`: follow a deployment live over the coordinator's server-sent events
//! (`GET /v1/deployments/{id}/events`, no polling), show it, and map its end to the exit code.
//!
//! On a terminal (stdout is a TTY) each instance gets an indicatif row `i-1  Install  12.3s  running`, redrawn
//! as snapshots arrive and as time passes; otherwise one plain timestamped line per change (see [`super::progress`]).
//! With `--output json` nothing is shown while it runs and the final deployment is printed as JSON. When the
//! deployment fails and the coordinator started its automatic rollback, the rollback is followed too (the exit
//! code stays the watched deployment's). A broken stream (coordinator restarting) is reopened with backoff.

use super::progress::{self, Tracker};
use super::{EXIT_DEPLOYMENT_FAILED, EXIT_DEPLOYMENT_STOPPED, Output, print_json, render};
use anyhow::{Context, bail};
use http_body_util::BodyExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rollcage_client::Client;
use rollcage_proto::wire::now_ms;
use rollcage_proto::wire::{Deployment, DeploymentStatus};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// The server sends a keep-alive comment every 15 s; three missed in a row mean the connection is dead.
const IDLE: Duration = Duration::from_secs(45);
/// First and longest pause before reopening a broken stream.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Give up when the coordinator stays unreachable this long (a restart takes seconds).
const GIVE_UP: Duration = Duration::from_secs(120);
/// How often a terminal's rows are redrawn for their elapsed times.
const REDRAW: Duration = Duration::from_millis(200);

/// One server-sent event: its name (`message` unless given) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field.
    pub event: String,
    /// `data:` fields.
    pub data: String,
}

/// An incremental `text/event-stream` parser (the WHATWG format: `field: value` lines, `:` comments, a blank line
/// ends an event; lines end with `\n` or `\r\n`). Feed it the body's chunks as they come, split anywhere.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// The events completed by `chunk`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(SseEvent {
                        event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                        data,
                    });
                }
                self.event = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                // `id` and `retry` do not matter here: every snapshot is the whole state.
                _ => {}
            }
        }
        out
    }
}

/// Where progress goes.
enum Display {
    /// Plain timestamped lines on stdout.
    Lines,
    /// One indicatif row per instance (stdout is a terminal).
    Rows {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
        last: Option<Box<Deployment>>,
    },
    /// Nothing while it runs (`--output json`).
    Quiet,
}

impl Display {
    fn new(output: Output) -> Self {
        match output {
            Output::Json => Self::Quiet,
            Output::Text if std::io::stdout().is_terminal() => Self::Rows {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: HashMap::new(),
                last: None,
            },
            Output::Text => Self::Lines,
        }
    }

    /// A note that is not about one step (rollback followed, connection lost).
    fn note(&self, text: &str) {
        let line = progress::Line {
            at_ms: now_ms(),
            text: text.to_owned(),
            bake: false,
        };
        match self {
            Self::Lines => println!("{}", line.render()),
            Self::Rows { multi, .. } => {
                let _ = multi.println(text);
            }
            Self::Quiet => eprintln!("{}", line.render()),
        }
    }

    fn snapshot(&mut self, d: &Deployment, lines: &[progress::Line]) {
        match self {
            Self::Lines => {
                for l in lines {
                    println!("{}", l.render());
                }
            }
            Self::Rows { last, multi, .. } => {
                // Steps, weights and verdicts scroll above the rows: they are the canary's history.
                for l in lines.iter().filter(|l| l.bake) {
                    let _ = multi.println(l.render());
                }
                *last = Some(Box::new(d.clone()));
                self.redraw();
            }
            Self::Quiet => {}
        }
    }

    fn redraw(&mut self) {
        let Self::Rows { multi, bars, last } = self else {
            return;
        };
        let Some(d) = last else { return };
        let rows = progress::rows(d, now_ms());
        let width = rows.iter().map(|r| r.instance.len()).max().unwrap_or(0);
        for row in rows {
            let bar = bars.entry(row.instance.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_message(row.text(width));
            if row.ended && !bar.is_finished() {
                bar.finish();
            }
        }
    }

    /// Stop the rows of a followed deployment (the next one gets its own).
    fn end_deployment(&mut self) {
        self.redraw();
        if let Self::Rows { bars, last, .. } = self {
            for bar in bars.values() {
                bar.finish();
            }
            bars.clear();
            *last = None;
        }
    }
}

/// Reconnection pacing: doubling pauses, and a deadline counted from the last time the stream worked.
struct Backoff {
    next: Duration,
    since: std::time::Instant,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_MIN,
            since: std::time::Instant::now(),
        }
    }

    fn reset(&mut self) {
        *self = Self::new();
    }

    async fn wait(&mut self, id: &str, why: &str) -> anyhow::Result<()> {
        if self.since.elapsed() > GIVE_UP {
            bail!(
                "following deployment {id}: the coordinator has been unreachable for {} s: {why}",
                GIVE_UP.as_secs()
            );
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        Ok(())
    }
}

/// Follow deployment `id` until it is [`progress::settled`]; returns its last snapshot.
async fn follow(client: &Client, id: &str, display: &mut Display) -> anyhow::Result<Deployment> {
    let mut tracker = Tracker::new();
    let mut backoff = Backoff::new();
    let mut broken = false;
    loop {
        let why = match client.deployment_events(id).await {
            Ok(mut body) => {
                if broken {
                    display.note(&format!("reconnected; following deployment {id}"));
                    broken = false;
                }
                let mut parser = SseParser::default();
                let mut redraw = tokio::time::interval(REDRAW);
                let mut idle = Box::pin(tokio::time::sleep(IDLE));
                loop {
                    let frame = tokio::select! {
                        f = body.frame() => f,
                        _ = redraw.tick() => {
                            display.redraw();
                            continue;
                        }
                        _ = &mut idle => break format!("no data for {} s", IDLE.as_secs()),
                    };
                    idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                    let data = match frame {
                        None => break "the coordinator ended the stream".to_owned(),
                        Some(Err(e)) => break format!("reading the stream: {e}"),
                        Some(Ok(f)) => match f.into_data() {
                            Ok(data) => data,
                            Err(_) => continue,
                        },
                    };
                    for ev in parser.push(&data) {
                        if ev.event != "deployment" {
                            continue;
                        }
                        let d: Deployment = serde_json::from_str(&ev.data).with_context(|| {
                            format!(
                                "events of deployment {id}: expected a deployment in the event data"
                            )
                        })?;
                        backoff.reset();
                        let lines = tracker.update(&d, now_ms());
                        display.snapshot(&d, &lines);
                        if progress::settled(&d) {
                            display.end_deployment();
                            return Ok(d);
                        }
                    }
                }
            }
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => bail!("following deployment {id}: {e}"),
        };
        if !broken {
            display.note(&format!(
                "lost the progress stream of {id} ({why}); reconnecting"
            ));
            broken = true;
        }
        tracing::debug!(deployment = %id, %why, "progress stream broke");
        backoff.wait(id, &why).await?;
    }
}

/// Follow deployment `id` to its end (and its automatic rollback, if it failed and one started), print the final
/// table (or JSON), and map the watched deployment's end to the exit code: 0 succeeded (or `ready`), 2 failed,
/// 3 stopped.
pub async fn watch(client: &Client, id: &str, output: Output) -> anyhow::Result<ExitCode> {
    let mut display = Display::new(output);
    let watched = follow(client, id, &mut display).await?;
    let mut ended = vec![watched.clone()];
    if let Some(rb) = progress::rollback_to_follow(&watched) {
        display.note(&format!(
            "deployment {} failed; following its rollback {rb}",
            watched.id
        ));
        ended.push(follow(client, rb, &mut display).await?);
    }
    match output {
        Output::Json => print_json(&watched)?,
        Output::Text => {
            println!();
            for d in &ended {
                print!("{}", render::deployment(d));
            }
        }
    }
    Ok(exit_code(watched.status))
}

/// The exit code for a deployment that ended (or waits in `ready`) in `status`.
pub fn exit_code(status: DeploymentStatus) -> ExitCode {
    ExitCode::from(exit_status(status))
}

fn exit_status(status: DeploymentStatus) -> u8 {
    match status {
        DeploymentStatus::Succeeded | DeploymentStatus::Ready => 0,
        DeploymentStatus::Stopped => EXIT_DEPLOYMENT_STOPPED,
        _ => EXIT_DEPLOYMENT_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_anywhere_are_put_back_together() {
        let stream = b"event: deployment\ndata: {\"id\":\"d-1\"}\n\n: keep-alive\n\nevent: deployment\r\ndata: {\"id\":\"d-2\"}\r\n\r\n";
        let whole = SseParser::default().push(stream);
        assert_eq!(
            whole,
            [
                ev("deployment", "{\"id\":\"d-1\"}"),
                ev("deployment", "{\"id\":\"d-2\"}")
            ]
        );
        for chunk in [1, 2, 3, 7, 16] {
            let mut p = SseParser::default();
            let got: Vec<SseEvent> = stream.chunks(chunk).flat_map(|c| p.push(c)).collect();
            assert_eq!(got, whole, "chunks of {chunk} bytes");
        }
    }

    #[test]
    fn comments_alone_make_no_event_and_fields_follow_the_format() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\n:\n\n").is_empty());
        // No space after the colon, several data lines, the default event name, unknown fields ignored.
        assert_eq!(
            p.push(b"id: 7\ndata:a\ndata: b\nretry: 10\n\n"),
            [ev("message", "a\nb")]
        );
        // An event name without data dispatches nothing, and does not leak into the next event.
        assert!(p.push(b"event: deployment\n\n").is_empty());
        assert_eq!(p.push(b"data: x\n\n"), [ev("message", "x")]);
        // Incomplete: nothing until the blank line.
        assert!(p.push(b"event: deployment\ndata: {}\n").is_empty());
        assert_eq!(p.push(b"\n"), [ev("deployment", "{}")]);
    }

    #[test]
    fn exit_codes_follow_the_deployment_s_end() {
        assert_eq!(exit_status(DeploymentStatus::Succeeded), 0);
        assert_eq!(exit_status(DeploymentStatus::Ready), 0);
        assert_eq!(exit_status(DeploymentStatus::Failed), 2);
        assert_eq!(exit_status(DeploymentStatus::Stopped), 3);
    }
}
