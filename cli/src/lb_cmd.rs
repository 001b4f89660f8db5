//! `rollcage lb`: runs the built-in load balancer until SIGINT or SIGTERM, then stops gracefully (open
//! requests may finish within the shutdown grace time).
//!
//! `--listen ADDR` creates the backend service `default`, sending its traffic to the server group `default`
//! (created empty unless the configuration file defines it); servers are registered through the admin API.

use anyhow::Context as _;
use clap::Args;
use rollcage_lb::{ConfigFile, GroupSeed, LbConfig, ServiceSeed};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Name of the service and group that `--listen` creates.
const DEFAULT_NAME: &str = "default";

/// Arguments of `rollcage lb`.
#[derive(Debug, Args)]
pub struct LbArgs {
    /// Listen address of the default backend service (traffic goes to server group `default`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Listen address of the admin API.
    #[arg(long)]
    admin: SocketAddr,
    /// File holding the admin API's bearer token; created (mode 0600) with a random token if absent.
    #[arg(long, default_value = "/var/lib/rollcage/lb/admin.token")]
    admin_token_file: PathBuf,
    /// TOML file with settings, server groups and services to create at start.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs `rollcage lb`.
pub async fn run(args: LbArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let token = rollcage_lb::token::load_or_create(&args.admin_token_file)?;
    let config = build_config(args.listen, args.admin, token, file)?;
    let lb = rollcage_lb::start(config).await?;
    eprintln!(
        "rollcage lb: admin API on http://{} (token in {})",
        lb.admin_addr(),
        args.admin_token_file.display()
    );
    if let Some(addr) = lb.service_addr(DEFAULT_NAME) {
        eprintln!("rollcage lb: service `{DEFAULT_NAME}` on {addr} -> group `{DEFAULT_NAME}`");
    }
    wait_for_signal().await?;
    eprintln!("rollcage lb: stopping; open requests may finish");
    lb.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Merges the command line into the configuration file's contents.
fn build_config(
    listen: Option<SocketAddr>,
    admin: SocketAddr,
    admin_token: String,
    mut file: ConfigFile,
) -> anyhow::Result<LbConfig> {
    if let Some(addr) = listen {
        if file.services.iter().any(|s| s.name == DEFAULT_NAME) {
            anyhow::bail!(
                "--listen creates service `{DEFAULT_NAME}`, which the configuration file also defines"
            );
        }
        if !file.groups.iter().any(|g| g.name == DEFAULT_NAME) {
            file.groups.push(GroupSeed {
                name: DEFAULT_NAME.to_owned(),
                health_check: None,
                servers: Vec::new(),
            });
        }
        file.services.push(ServiceSeed {
            name: DEFAULT_NAME.to_owned(),
            listen: addr.to_string(),
            group: DEFAULT_NAME.to_owned(),
        });
    }
    if file.services.is_empty() {
        anyhow::bail!("nothing to serve: give --listen or define services in --config");
    }
    Ok(LbConfig {
        admin,
        admin_token,
        settings: file.settings,
        groups: file.groups,
        services: file.services,
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000))
    }

    #[test]
    fn listen_adds_default_group_and_service() -> anyhow::Result<()> {
        let listen = SocketAddr::from(([0, 0, 0, 0], 8080));
        let c = build_config(Some(listen), admin(), "t".repeat(20), ConfigFile::default())?;
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.groups[0].name, "default");
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.services[0].listen, "0.0.0.0:8080");
        assert_eq!(c.services[0].group, "default");
        Ok(())
    }

    #[test]
    fn nothing_to_serve_is_refused() {
        let err = build_config(None, admin(), "t".repeat(20), ConfigFile::default()).err();
        assert!(err.is_some_and(|e| e.to_string().contains("--listen")));
    }
}
