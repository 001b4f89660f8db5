//! `rollcage logs ID [--instance I] [--event E] [--follow]`: print the full hook output of a deployment's steps,
//! each line prefixed with `[instance Event]`, from `GET /v1/deployments/{id}/logs`.
//!
//! Without `--follow` every stored entry is printed (page after page) and the command exits. With `--follow` it
//! long-polls with `after=next` until the deployment has ended and a page brings nothing new.

use anyhow::bail;
use rollcage_client::Client;
use rollcage_proto::wire::{LogQuery, StepLogEntry};
use std::fmt::Write as _;
use std::time::Duration;

/// How long one follow request waits at the coordinator (it caps this at 30 s; below the client's 60 s timeout).
const FOLLOW_WAIT_MS: u64 = 20_000;

/// Transport errors tolerated in a row while following (a coordinator restart), one second apart.
const FOLLOW_RETRIES: u32 = 60;

/// What to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsRequest {
    /// Deployment id.
    pub id: String,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only this event (its name).
    pub event: Option<String>,
    /// Keep waiting for new output until the deployment ends.
    pub follow: bool,
}

/// The query of one page.
fn page_query(req: &LogsRequest, after: i64, wait_ms: u64) -> LogQuery {
    LogQuery {
        instance: req.instance.clone(),
        event: req.event.clone(),
        after: Some(after),
        wait_ms: Some(wait_ms),
    }
}

/// One entry as printed: a note when older bytes were cut, then every line prefixed with `[instance Event]`.
pub fn render_entry(e: &StepLogEntry) -> String {
    let prefix = format!("[{} {}]", e.instance, e.event);
    let mut out = String::new();
    if e.truncated_bytes > 0 {
        let _ = writeln!(
            out,
            "{prefix} ({} earlier bytes of this step's output were cut; the newest are shown)",
            e.truncated_bytes
        );
    }
    for line in e.text.lines() {
        let _ = writeln!(out, "{prefix} {line}");
    }
    out
}

/// Print the logs; `Ok` once everything asked for was printed.
pub async fn run(client: &Client, req: &LogsRequest) -> anyhow::Result<()> {
    let mut after = 0;
    let mut errors = 0;
    loop {
        let wait = if req.follow { FOLLOW_WAIT_MS } else { 0 };
        let page = match client
            .deployment_logs(&req.id, &page_query(req, after, wait))
            .await
        {
            Ok(p) => {
                errors = 0;
                p
            }
            Err(e) if req.follow && e.is_retryable() && errors < FOLLOW_RETRIES => {
                errors += 1;
                tracing::warn!(error = %e, "following logs: retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => bail!("logs of deployment {}: {e}", req.id),
        };
        for e in &page.entries {
            print!("{}", render_entry(e));
        }
        if page.next < after {
            bail!(
                "logs of deployment {}: the coordinator moved the cursor back from {after} to {}",
                req.id,
                page.next
            );
        }
        after = page.next;
        let drained = page.entries.is_empty();
        if drained && (!req.follow || page.deployment_ended) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::LifecycleEvent;

    #[test]
    fn lines_get_instance_and_event_prefixes_and_cuts_a_note() {
        let mut e = StepLogEntry {
            seq: 3,
            instance: "web-1".into(),
            event: LifecycleEvent::AfterInstall,
            text: "one\ntwo\n".into(),
            truncated_bytes: 0,
            recorded_at_ms: 0,
        };
        assert_eq!(
            render_entry(&e),
            "[web-1 AfterInstall] one\n[web-1 AfterInstall] two\n"
        );
        e.truncated_bytes = 42;
        let out = render_entry(&e);
        assert!(
            out.starts_with("[web-1 AfterInstall] (42 earlier bytes"),
            "{out}"
        );
        assert!(out.ends_with("[web-1 AfterInstall] two\n"), "{out}");
    }

    #[test]
    fn a_page_asks_for_the_filters_the_cursor_and_the_wait() {
        let req = LogsRequest {
            id: "d-1".into(),
            instance: Some("a b&c".into()),
            event: Some("Install".into()),
            follow: true,
        };
        // Encoding the query into the path is the client's (`rollcage-client`'s routes tests).
        assert_eq!(
            page_query(&req, 7, 20_000),
            LogQuery {
                instance: Some("a b&c".into()),
                event: Some("Install".into()),
                after: Some(7),
                wait_ms: Some(20_000),
            }
        );
    }

    /// The agent side of this feature: `--max-log-bytes` and the config file's `max_log_bytes` (flag wins), bounded.
    #[test]
    fn agent_max_log_bytes_comes_from_flag_or_config_and_is_bounded() -> anyhow::Result<()> {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: super::super::FleetCommand,
        }
        let config = |args: &[&str]| -> anyhow::Result<rollcage_agent::AgentConfig> {
            let base = [
                "x",
                "agent",
                "--coordinator",
                "http://c",
                "--root",
                "/r",
                "--name",
                "n",
            ];
            let cli = Cli::try_parse_from(base.iter().chain(args))?;
            match cli.cmd {
                super::super::FleetCommand::Agent(a) => super::super::agent_config(a),
                other => anyhow::bail!("parsed as {other:?}"),
            }
        };
        let default = config(&[])?;
        assert_eq!(
            default.loop_config.max_log_bytes,
            rollcage_agent::steplog::DEFAULT_MAX_LOG_BYTES
        );
        assert_eq!(
            config(&["--max-log-bytes", "4096"])?
                .loop_config
                .max_log_bytes,
            4096
        );
        assert!(config(&["--max-log-bytes", "2000000"]).is_err());
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "coordinator = \"http://c\"\nname = \"n\"\nroot = \"/r\"\nmax_log_bytes = 1000\n",
        )?;
        let path = file.display().to_string();
        assert_eq!(
            config(&["--config", &path])?.loop_config.max_log_bytes,
            1000
        );
        assert_eq!(
            config(&["--config", &path, "--max-log-bytes", "2000"])?
                .loop_config
                .max_log_bytes,
            2000
        );
        Ok(())
    }
}
