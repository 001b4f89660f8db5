//! `rollcage token create|list|revoke` (named operator tokens with roles) and `rollcage audit` (the audit trail).
//!
//! `token create` prints the new token alone on stdout, once (the coordinator keeps only its sha256), so that
//! `rollcage token create ci --role deployer --app web > ci.token` is all a script needs; `token list` never
//! prints a secret (the coordinator never sends one).

use super::{Output, Remote};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rollcage_client::Client;
use rollcage_proto::access::{AuditEntry, AuditQuery, CreateToken, Role, TokenInfo};
use std::io::Write;

/// `rollcage token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a named token; prints it alone on stdout (shown once: keep it in a file).
    Create {
        /// The token's name (it names the holder in the audit trail).
        name: String,
        /// admin, deployer or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// An application a deployer may deploy (repeat for more; a deployer with none deploys nothing).
        #[arg(long = "app")]
        apps: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the named tokens: name, role, applications, created, last used (never a secret).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a named token: refused from its next request on. (The bootstrap admin token, DATA/admin-token,
    /// cannot be revoked this way: replace the file and restart the coordinator.)
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `rollcage audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries since this time: RFC 3339 (`2026-01-31T12:00:00Z`) or a duration ago (`90s`, `15m`, `2h`,
    /// `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Only this actor's entries (a token name, `anonymous`, `unknown token`).
    #[arg(long)]
    actor: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    remote: Remote,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: rollcage_proto::access::UnknownRole| e.to_string())
}

/// `--since`: RFC 3339, or a duration before `now_ms` (`N` followed by `s`, `m`, `h` or `d`); ms since the epoch.
pub fn parse_since(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .context("--since: out of range");
    }
    let unit = |c: char| match c {
        's' => Some(1_000),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    };
    let (n, u) = s.split_at(s.len().saturating_sub(1));
    match (n.parse::<i64>(), u.chars().next().and_then(unit)) {
        (Ok(n), Some(ms)) if n >= 0 => Ok(now_ms.saturating_sub(n.saturating_mul(ms))),
        _ => bail!(
            "--since `{s}`: expected an RFC 3339 time (2026-01-31T12:00:00Z) or a duration ago (90s, 15m, 2h, 7d)"
        ),
    }
}

/// A time for people: RFC 3339, UTC, to the second.
fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Run a token command, writing to `out`.
pub async fn token(client: &Client, cmd: TokenCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name, role, apps, ..
        } => {
            let created = client
                .create_token(&CreateToken { name, role, apps })
                .await?;
            // Alone on stdout: what a script redirects to a file.
            writeln!(out, "{}", created.token)?;
        }
        TokenCommand::List { output, .. } => {
            let list = client.list_tokens().await?;
            match output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
                Output::Text => out.write_all(tokens_text(&list).as_bytes())?,
            }
        }
        TokenCommand::Revoke { name, .. } => {
            client.revoke_token(&name).await?;
            writeln!(out, "token {name} revoked")?;
        }
    }
    Ok(())
}

/// The remote a token command talks to.
pub fn token_remote(cmd: &TokenCommand) -> &Remote {
    match cmd {
        TokenCommand::Create { remote, .. }
        | TokenCommand::List { remote, .. }
        | TokenCommand::Revoke { remote, .. } => remote,
    }
}

fn tokens_text(list: &[TokenInfo]) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "{:<24} {:<9} {:<21} {:<21} APPS\n",
        "NAME", "ROLE", "CREATED", "LAST USED"
    );
    for t in list {
        let _ = writeln!(
            s,
            "{:<24} {:<9} {:<21} {:<21} {}",
            t.name,
            t.role,
            when(t.created_at_ms),
            t.last_used_ms.map_or_else(|| "never".to_owned(), when),
            if t.apps.is_empty() {
                "-".to_owned()
            } else {
                t.apps.join(",")
            }
        );
    }
    s
}

/// Run `rollcage audit`, writing to `out`.
pub async fn audit(
    client: &Client,
    args: &AuditArgs,
    now_ms: i64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let q = AuditQuery {
        since_ms: args
            .since
            .as_deref()
            .map(|s| parse_since(s, now_ms))
            .transpose()?,
        actor: args.actor.clone(),
        limit: Some(args.limit),
        cursor: None,
    };
    let page = client.audit(&q).await?;
    match args.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&page.items)?)?,
        Output::Text => out.write_all(audit_text(&page.items).as_bytes())?,
    }
    Ok(())
}

/// The remote `rollcage audit` talks to.
pub fn audit_remote(args: &AuditArgs) -> &Remote {
    &args.remote
}

fn audit_text(list: &[AuditEntry]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for e in list {
        let _ = writeln!(
            s,
            "{} {} {}{} {} {} {} {} from {}",
            when(e.at_ms),
            e.actor,
            e.role.as_deref().map_or("", |_| "("),
            e.role.as_deref().map_or(String::new(), |r| format!("{r})")),
            e.action,
            if e.target.is_empty() { "-" } else { &e.target },
            e.status,
            e.outcome,
            e.remote_addr
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn since_takes_rfc3339_or_a_duration_ago() -> anyhow::Result<()> {
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 0)?, 1000);
        assert_eq!(parse_since("2h", 10_000_000)?, 10_000_000 - 7_200_000);
        assert_eq!(parse_since("7d", 0)?, -7 * 86_400_000);
        for bad in ["", "h", "-1h", "3w", "yesterday"] {
            assert!(parse_since(bad, 0).is_err(), "{bad}");
        }
        Ok(())
    }

    #[derive(Debug, clap::Parser)]
    struct TokenCli {
        #[command(subcommand)]
        cmd: TokenCommand,
    }

    #[derive(Debug, clap::Parser)]
    struct AuditCli {
        #[command(flatten)]
        args: AuditArgs,
    }

    fn parse(args: &[&str]) -> Result<TokenCommand, clap::Error> {
        TokenCli::try_parse_from(std::iter::once("token").chain(args.iter().copied()))
            .map(|c| c.cmd)
    }

    /// `token create` prints the token alone; `token list` never prints it (a coordinator in-process, the real
    /// client).
    #[tokio::test]
    async fn token_create_prints_only_the_token_and_list_never_shows_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cfg = rollcage_coordinator::ServerConfig::loopback(dir.path().to_owned());
        let addr = rollcage_coordinator::spawn(cfg).await?;
        let admin = std::fs::read_to_string(dir.path().join("admin-token"))?;
        let client = Client::new(
            &format!("http://{addr}"),
            Some(admin.trim().to_owned()),
            None,
        )?;
        let url = format!("http://{addr}");
        let mut out = Vec::new();
        let create = parse(&[
            "create",
            "ci",
            "--role",
            "deployer",
            "--app",
            "web",
            "--coordinator",
            &url,
        ])?;
        token(&client, create, &mut out).await?;
        let printed = String::from_utf8(out)?;
        let secret = printed.strip_suffix('\n').context("one line")?;
        assert!(
            secret.len() == 64 && secret.chars().all(|c| c.is_ascii_hexdigit()),
            "only the token on stdout: {printed:?}"
        );
        // The printed token works, as the deployer it was made.
        let as_ci = Client::new(&format!("http://{addr}"), Some(secret.to_owned()), None)?;
        let who = as_ci.whoami().await?;
        assert_eq!(
            (who.name.as_str(), who.role, who.apps),
            ("ci", Role::Deployer, vec!["web".to_owned()])
        );
        for output in [Output::Text, Output::Json] {
            let mut out = Vec::new();
            let list = match output {
                Output::Text => parse(&["list", "--coordinator", &url])?,
                Output::Json => parse(&["list", "--output", "json", "--coordinator", &url])?,
            };
            token(&client, list, &mut out).await?;
            let listed = String::from_utf8(out)?;
            assert!(
                listed.contains("ci") && listed.contains("deployer"),
                "{listed}"
            );
            assert!(
                !listed.contains(secret),
                "token list printed the secret: {listed}"
            );
        }
        let mut out = Vec::new();
        token(
            &client,
            parse(&["revoke", "ci", "--coordinator", &url])?,
            &mut out,
        )
        .await?;
        assert!(as_ci.whoami().await.is_err(), "revoked at once");
        // The audit trail names the creation and the revocation.
        let args = AuditCli::try_parse_from([
            "audit",
            "--since",
            "1h",
            "--actor",
            "bootstrap",
            "--output",
            "json",
            "--coordinator",
            &url,
        ])?
        .args;
        let mut out = Vec::new();
        audit(&client, &args, rollcage_proto::wire::now_ms(), &mut out).await?;
        let entries: Vec<AuditEntry> = serde_json::from_slice(&out)?;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["token.revoke", "token.create"]);
        assert!(
            entries
                .iter()
                .all(|e| e.remote_addr.starts_with("127.0.0.1:")),
            "{entries:?}"
        );
        Ok(())
    }
}
