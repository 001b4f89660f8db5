//! The example bundles of `hooks-examples/bundles` run through `run_hook`: the wasm flavour (modules built from
//! `hooks-examples/guests/examples`) and its shell twin must both render the config and pass health validation.
//!
//! The hooks are read from each bundle's `appspec.yml` with a minimal loader (location, timeout, `sandbox:`) so
//! the test exercises the committed files, not a copy of them.

#![allow(
    clippy::unwrap_used,
    reason = "test setup; a failure is the test failing"
)]

use rollcage_hooks_artifacts::{BundleParams, Flavour, assemble_bundle};
use rollcage_proto::{HookOutcome, HookStatus, LifecycleEvent, SandboxSpec};
use rollcage_runtime::appspec::HookSpec;
use rollcage_runtime::hooks::{HookEnv, HookRun, ScriptLog, WasmConfig, WasmHooks, run_hook};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The hooks of one event from a bundle's appspec.yml.
fn hooks_of(
    appspec: &Path,
    event: LifecycleEvent,
) -> Result<Vec<HookSpec>, Box<dyn std::error::Error>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(appspec)?)?;
    let entries = doc["hooks"][event.name()]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let mut hooks = Vec::new();
    for e in entries {
        let sandbox = match e.get("sandbox") {
            Some(s) => Some(serde_yaml::from_value::<SandboxSpec>(s.clone())?),
            None => None,
        };
        hooks.push(HookSpec {
            location: e["location"]
                .as_str()
                .ok_or("hook without location")?
                .to_owned(),
            timeout_secs: e["timeout"].as_u64().unwrap_or(3600),
            runas: None,
            sudo: false,
            sandbox,
        });
    }
    Ok(hooks)
}

/// A health endpoint that answers 503 for the first `unhealthy` requests, then 200.
async fn health_server(unhealthy: usize) -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let reply: &[u8] = if n < unhealthy {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\nconnection: close\r\n\r\nstarting"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                };
                let _ = sock.write_all(reply).await;
            });
        }
    });
    Ok((base, hits))
}

async fn deploy(flavour: Flavour) -> TestResult {
    let dir = tempfile::tempdir()?;
    let (base, hits) = health_server(2).await?;
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir)?;
    let revision = dir.path().join("revision");
    assemble_bundle(
        flavour,
        &revision,
        &BundleParams {
            health_base: base,
            config_dir: config_dir.clone(),
        },
    )?;
    let log = ScriptLog::open(&dir.path().join("logs/scripts.log"))?;
    let wasm = WasmHooks::new(WasmConfig::new(dir.path().join("cache")))?;
    let env = HookEnv {
        deployment_id: "d-42".to_owned(),
        application_name: "shop".to_owned(),
        deployment_group_name: "blue".to_owned(),
        deployment_group_id: "g-7".to_owned(),
        extra: Vec::new(),
    };
    let mut outcomes: Vec<HookOutcome> = Vec::new();
    for event in [
        LifecycleEvent::AfterInstall,
        LifecycleEvent::ValidateService,
    ] {
        let hooks = hooks_of(&revision.join("appspec.yml"), event)?;
        assert_eq!(hooks.len(), 1, "{event}");
        for hook in &hooks {
            let run = HookRun {
                event,
                hook,
                revision_dir: &revision,
                script_root: None,
                deploy_dir: None,
                env: &env,
                log: &log,
                wasm: Some(&wasm),
            };
            outcomes.push(run_hook(run).await);
        }
    }
    let log_text = std::fs::read_to_string(dir.path().join("logs/scripts.log"))?;
    for o in &outcomes {
        assert_eq!(
            o.status,
            HookStatus::Succeeded,
            "{}: {}\n{log_text}",
            o.location,
            o.log_tail
        );
    }
    assert_eq!(
        std::fs::read_to_string(config_dir.join("app.conf"))?,
        "# Rendered by the AfterInstall hook.\napplication = shop\ngroup = blue\ndeployment = d-42\n"
    );
    assert!(
        hits.load(Ordering::SeqCst) >= 3,
        "the validator should have polled past two 503s"
    );
    assert!(log_text.contains("healthy"), "{log_text}");
    if flavour != Flavour::Shell {
        // The capability audit of each hook is in scripts.log (what `rollcage logs` prints for the step).
        let audited = |prefix: &str, needle: &str| {
            log_text
                .lines()
                .any(|l| l.contains(prefix) && l.contains(needle) && l.ends_with(" allowed"))
        };
        assert!(
            audited(
                "[capability] AfterInstall hooks/render_config.wasm: file read ",
                "app.conf.tmpl"
            ),
            "{log_text}"
        );
        assert!(
            audited(
                "[capability] AfterInstall hooks/render_config.wasm: file write ",
                "/"
            ),
            "{log_text}"
        );
        assert!(
            audited(
                "[capability] ValidateService hooks/validate_health.wasm: http GET ",
                "/health -> 200, "
            ),
            "{log_text}"
        );
        assert!(
            log_text.contains(
                "[capability] ValidateService hooks/validate_health.wasm: summary: http allowed="
            ),
            "{log_text}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_wasm_bundle_renders_config_and_validates_health() -> TestResult {
    deploy(Flavour::Wasm).await
}

/// The same Rust hooks built as components: the SDK reads the lifecycle context through `rollcage:hook/context`
/// (the rendered config names the application, group and deployment) and the renderer writes under a read-write
/// grant.
#[tokio::test]
async fn the_component_build_of_the_wasm_bundle_renders_config_and_validates_health() -> TestResult
{
    deploy(Flavour::WasmComponent).await
}

#[tokio::test]
async fn the_shell_twin_bundle_renders_config_and_validates_health() -> TestResult {
    deploy(Flavour::Shell).await
}

#[tokio::test]
async fn the_validator_fails_with_code_3_when_health_never_comes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (base, _) = health_server(usize::MAX).await?;
    let revision = dir.path().join("revision");
    let params = BundleParams {
        health_base: base,
        config_dir: dir.path().join("config"),
    };
    assemble_bundle(Flavour::Wasm, &revision, &params)?;
    let mut hook = hooks_of(
        &revision.join("appspec.yml"),
        LifecycleEvent::ValidateService,
    )?
    .remove(0);
    if let Some(s) = hook.sandbox.as_mut() {
        s.args[1] = "1".to_owned(); // 1 s deadline
    }
    let log = ScriptLog::open(&dir.path().join("scripts.log"))?;
    let env = HookEnv {
        deployment_id: "d-1".to_owned(),
        ..HookEnv::default()
    };
    let run = HookRun {
        event: LifecycleEvent::ValidateService,
        hook: &hook,
        revision_dir: &revision,
        script_root: None,
        deploy_dir: None,
        env: &env,
        log: &log,
        wasm: None,
    };
    let out = run_hook(run).await;
    assert_eq!(
        out.status,
        HookStatus::Failed { exit_code: 3 },
        "{}",
        out.log_tail
    );
    assert!(
        out.log_tail.contains("not healthy after 1 s") && out.log_tail.contains("status 503"),
        "{}",
        out.log_tail
    );
    Ok(())
}
