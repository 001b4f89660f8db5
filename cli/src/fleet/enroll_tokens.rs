//! `rollcage enroll-token create|list|revoke`: per-use enrollment tokens.
//!
//! `create` prints the new token alone on stdout (so `rollcage enroll-token create > FILE` leaves nothing else in
//! the file) and what it allows on stderr; the token is never shown again (the coordinator keeps its hash).
//! `list` shows every token's id, label, uses, expiry and status, never a secret.

use super::{Output, Remote, print_json, progress::timestamp};
use clap::Subcommand;
use rollcage_proto::enroll::{self, CreateEnrollToken, EnrollTokenInfo};
use std::fmt::Write as _;
use std::process::ExitCode;

/// `rollcage enroll-token …`.
#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create a per-use enrollment token; prints the token alone on stdout (pass it to agents through a file:
    /// `rollcage agent --enroll-token-file FILE`).
    Create {
        /// Enrollments it allows (default 1, at most 10000).
        #[arg(long)]
        uses: Option<u32>,
        /// How long it is valid: a whole number and a unit, s, m, h or d (default 1h, at most 30d).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
        /// A label for people (shown by `list`).
        #[arg(long)]
        name: Option<String>,
        /// Output format (`json`: the token and its record).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the per-use enrollment tokens (never their secrets).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a per-use enrollment token: it enrolls no more (instances it enrolled keep working; remove them with
    /// `rollcage instances remove NAME`).
    Revoke {
        /// The token's id (`et-…`, from `list`).
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    enroll::parse_ttl(s).map_err(|e| e.to_string())
}

/// Run an `enroll-token` command.
pub async fn run(cmd: EnrollTokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EnrollTokenCommand::Create {
            uses,
            ttl,
            name,
            output,
            remote,
        } => {
            let created = remote
                .client()?
                .create_enroll_token(&CreateEnrollToken {
                    uses,
                    ttl_secs: ttl,
                    label: name,
                })
                .await?;
            match output {
                Output::Json => print_json(&created)?,
                Output::Text => {
                    let i = &created.info;
                    eprintln!(
                        "enrollment token {}: {} use(s), expires at {}",
                        i.id,
                        i.uses_allowed,
                        timestamp(i.expires_at_ms)
                    );
                    println!("{}", created.token);
                }
            }
        }
        EnrollTokenCommand::List { output, remote } => {
            let list = remote.client()?.list_enroll_tokens().await?;
            match output {
                Output::Json => print_json(&list)?,
                Output::Text => print!("{}", table(&list)),
            }
        }
        EnrollTokenCommand::Revoke { id, output, remote } => {
            let info = remote.client()?.revoke_enroll_token(&id).await?;
            match output {
                Output::Json => print_json(&info)?,
                Output::Text => println!("enrollment token {} revoked", info.id),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The token list for people: one line per token.
fn table(list: &[EnrollTokenInfo]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<8} {:<9} {:<20} {:<20} LABEL",
        "ID", "STATUS", "USES", "EXPIRES", "LAST USED"
    );
    for t in list {
        let _ = writeln!(
            s,
            "{:<20} {:<8} {:<9} {:<20} {:<20} {}",
            t.id,
            t.status,
            format!("{}/{}", t.uses, t.uses_allowed),
            timestamp(t.expires_at_ms),
            t.last_used_at_ms.map_or_else(|| "-".to_owned(), timestamp),
            t.label
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rollcage_proto::enroll::EnrollTokenStatus;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: EnrollTokenCommand,
    }

    #[test]
    fn create_takes_uses_a_lifetime_and_a_label() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "x", "create", "--uses", "3", "--ttl", "30m", "--name", "batch-7",
        ])?;
        match cli.cmd {
            EnrollTokenCommand::Create {
                uses, ttl, name, ..
            } => {
                assert_eq!(
                    (uses, ttl, name.as_deref()),
                    (Some(3), Some(1800), Some("batch-7"))
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["x", "create"])?;
        assert!(matches!(
            cli.cmd,
            EnrollTokenCommand::Create {
                uses: None,
                ttl: None,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["x", "create", "--ttl", "1w"]).is_err());
        assert!(Cli::try_parse_from(["x", "revoke"]).is_err());
        Ok(())
    }

    #[test]
    fn the_list_shows_no_secret_only_what_each_token_allows() {
        let t = EnrollTokenInfo {
            id: "et-00ff".into(),
            label: "rack 4".into(),
            uses_allowed: 3,
            uses: 3,
            expires_at_ms: 1_800_000_000_000,
            created_at_ms: 0,
            last_used_at_ms: Some(1_700_000_000_000),
            revoked_at_ms: None,
            status: EnrollTokenStatus::UsedUp,
        };
        let text = table(&[t]);
        let line = text.lines().nth(1).unwrap_or_default();
        for part in [
            "et-00ff",
            "used_up",
            "3/3",
            "2027-01-15T08:00:00Z",
            "2023-11-14T22:13:20Z",
            "rack 4",
        ] {
            assert!(line.contains(part), "{part}: {text}");
        }
    }
}
