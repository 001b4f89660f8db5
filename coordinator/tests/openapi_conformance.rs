//! The OpenAPI document (`coordinator/openapi.yaml`) against the real server on a loopback socket: schemathesis
//! (pinned, installed by `scripts/setup.sh` into `/opt/rollcage-venv`) generates requests for every operation from
//! the document and checks each answer against it — no 5xx, documented status codes, content types, bodies and
//! headers. Any failing check fails this test, with schemathesis' report (each failure with a `curl` line to
//! reproduce it).
//!
//! Bounded: a fixed number of examples per operation and a fixed seed (reproducible; change [`SEED`] locally to
//! explore more), and a hard time limit after which the run is killed and the test fails. The tokens reach `st`
//! through its environment and `tests/schemathesis.toml`, never its command line.
//!
//! The server is the one the `rollcage coordinator` binary runs (`server::spawn`), with one tunable changed: polls
//! wait at most 1 s, so a fuzzed poll that finds no command answers at once instead of after 20 s.

use rollcage_client::Client;
use rollcage_coordinator::server::{ServerConfig, spawn};
use rollcage_coordinator::state::Settings;
use rollcage_proto::wire::{
    Concurrency, CreateApplication, CreateDeployment, CreateGroup, DeploymentStyle, EnrollRequest,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Where `scripts/setup.sh` installs schemathesis' `st`; `ROLLCAGE_SCHEMATHESIS` names another.
const DEFAULT_ST: &str = "/opt/rollcage-venv/bin/st";

/// Every conformance check of the issue: no server error, and status code, content type, body and headers as
/// documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// Examples per operation and phase: enough to reach every documented response of the 25 operations, few enough
/// that the run stays well under two minutes on two busy cores.
const MAX_EXAMPLES: u32 = 15;

/// The generator's seed: fixed, so a run is reproducible (the server's state still varies with timing).
const SEED: u64 = 20261205;

/// The run is killed past this, and the test fails: the bound is two minutes on two cores.
const TIME_LIMIT: Duration = Duration::from_secs(120);

fn st_binary() -> TestResult<PathBuf> {
    let st = std::env::var_os("ROLLCAGE_SCHEMATHESIS")
        .map_or_else(|| PathBuf::from(DEFAULT_ST), PathBuf::from);
    if st.is_file() {
        Ok(st)
    } else {
        Err(format!(
            "schemathesis not found at {}: run scripts/setup.sh (it installs the pinned version), or set \
             ROLLCAGE_SCHEMATHESIS to an `st` binary",
            st.display()
        )
        .into())
    }
}

fn read_token(data: &Path, file: &str) -> TestResult<String> {
    Ok(std::fs::read_to_string(data.join(file))?.trim().to_owned())
}

/// An application, a group over one enrolled agent and a deployment of an uploaded revision, so that the agent's
/// routes have work to answer with; returns the agent's token.
async fn set_up(base: &str, admin: &str, enroll: &str) -> TestResult<String> {
    let agent = Client::new(base, Some(enroll.to_owned()), None)?
        .enroll(&EnrollRequest {
            name: "st-agent".into(),
            tags: [("env".to_owned(), "st".to_owned())].into(),
        })
        .await?;
    let admin = Client::new(base, Some(admin.to_owned()), None)?;
    admin
        .create_application(&CreateApplication {
            name: "st-app".into(),
        })
        .await?;
    admin
        .create_group(
            "st-app",
            &CreateGroup {
                name: "st-group".into(),
                style: DeploymentStyle::InPlace,
                concurrency: Concurrency::All,
                failure_tolerance: 0,
                auto_rollback: false,
                instances: vec!["st-agent".into()],
                tags: Default::default(),
                form: None,
                lb: None,
                webhooks: Vec::new(),
                webhook_secret: None,
            },
        )
        .await?;
    let rev = admin
        .upload_revision("st-app", b"not really an archive".to_vec())
        .await?;
    admin
        .create_deployment(&CreateDeployment {
            application: "st-app".into(),
            group: "st-group".into(),
            revision: rev.id,
            form: None,
            ignore_application_stop_failures: false,
            file_exists_behavior: None,
            description: None,
        })
        .await?;
    Ok(agent.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_server_true_to_its_openapi_document() -> TestResult {
    let st = st_binary()?;
    let data = tempfile::tempdir()?;
    let mut cfg = ServerConfig::loopback(data.path().to_owned());
    cfg.settings = Settings {
        max_poll_wait: Duration::from_secs(1),
        ..Settings::default()
    };
    let base = format!("http://{}", spawn(cfg).await?);
    let admin = read_token(data.path(), "admin-token")?;
    let enroll = read_token(data.path(), "enroll-token")?;
    let agent = set_up(&base, &admin, &enroll).await?;

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&st);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        // The document as the server serves it; `--url` so requests go to this server, never the document's
        // example `servers` address.
        .arg(format!("{base}/v1/openapi.yaml"))
        .args(["--url", &base])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--workers", "1", "--request-timeout", "10"])
        .env("ROLLCAGE_ADMIN_TOKEN", &admin)
        .env("ROLLCAGE_ENROLL_TOKEN", &enroll)
        .env("ROLLCAGE_AGENT_TOKEN", &agent)
        .env("NO_COLOR", "1")
        .current_dir(data.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(TIME_LIMIT, cmd.output())
        .await
        .map_err(|_| format!("schemathesis ran longer than {TIME_LIMIT:?} and was killed"))??;
    let report = String::from_utf8_lossy(&out.stdout);
    let took = started.elapsed();
    // The whole report is the test's output (shown on failure, or with --no-capture).
    println!(
        "{report}\n{}\nschemathesis took {took:.1?}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!(
            "schemathesis found the server and its OpenAPI document in disagreement ({}): see its report above \
             (each failure has a `curl` line to reproduce it)",
            out.status
        )
        .into());
    }
    Ok(())
}
