//! The wasm hook runner against WASI 0.2 command components: the test programs of `wasm_hooks.rs`, built from the
//! same source for `wasm32-wasip2` (`P2_TEST_*`), under the same grants and limits, plus what only a component
//! has: `wasi:sockets` (linked, and denied). One module per test program; the read-write grant cases are shared
//! with `wasm_hooks.rs` (`wasm_support::grant`).

#![allow(
    clippy::unwrap_used,
    reason = "test setup; a failure is the test failing"
)]

use rollcage_hooks_artifacts as artifacts;
use rollcage_proto::{DirAccess, DirGrant, HookStatus, LifecycleEvent, SandboxSpec};
use rollcage_runtime::appspec::HookSpec;
use rollcage_runtime::hooks::wasm::{WasmKind, cache::check_header};
use rollcage_runtime::hooks::{WasmConfig, WasmHooks};

mod wasm_support;

use wasm_support::checks::{self, COMPONENTS};
use wasm_support::*;

// Every component test program must have a test module of the same name.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports, reason = "only checks that the module exists")]
        use self::$name as _;
    };
}
artifacts::foreach_p2_test!(assert_test_exists);

/// The programs are components (their header says so), not modules.
#[test]
fn the_p2_builds_are_components_and_the_p1_builds_modules() -> TestResult {
    let head = |p: &str| -> Result<Vec<u8>, std::io::Error> {
        Ok(std::fs::read(p)?.into_iter().take(8).collect())
    };
    for p in [
        artifacts::P2_TEST_NOOP,
        artifacts::P2_EXAMPLE_VALIDATE_HEALTH,
        artifacts::P2_EXAMPLE_RENDER_CONFIG,
    ] {
        assert_eq!(check_header(&head(p)?), Ok(WasmKind::Component), "{p}");
    }
    assert_eq!(
        check_header(&head(artifacts::TEST_NOOP)?),
        Ok(WasmKind::Module)
    );
    Ok(())
}

/// The SDK in a component reads its context through `rollcage:hook/context` and writes log lines through
/// `rollcage:hook/log` (the agent formats them); a preview-1 module reads the environment and prints them itself.
#[test]
fn sdk_components_import_rollcage_hook() -> TestResult {
    let has = |p: &str, import: &[u8]| -> Result<bool, std::io::Error> {
        Ok(std::fs::read(p)?.windows(import.len()).any(|w| w == import))
    };
    for import in [
        &b"rollcage:hook/log@0.1.0"[..],
        b"rollcage:hook/context@0.1.0",
    ] {
        let name = String::from_utf8_lossy(import);
        assert!(
            has(artifacts::P2_EXAMPLE_VALIDATE_HEALTH, import)?,
            "{name}"
        );
        assert!(!has(artifacts::EXAMPLE_VALIDATE_HEALTH, import)?, "{name}");
    }
    Ok(())
}

mod spin {
    use super::*;

    #[tokio::test]
    async fn an_infinite_loop_ends_at_the_timeout() -> TestResult {
        checks::an_infinite_loop_ends_at_the_timeout(&COMPONENTS).await
    }
}

mod sleep {
    use super::*;

    #[tokio::test]
    async fn a_guest_blocked_in_a_host_call_ends_at_the_timeout() -> TestResult {
        checks::a_guest_blocked_in_a_host_call_ends_at_the_timeout(&COMPONENTS).await
    }
}

mod alloc {
    use super::*;

    #[tokio::test]
    async fn allocation_past_memory_mb_is_the_memory_limit_outcome_and_rss_stays_bounded()
    -> TestResult {
        checks::allocation_past_memory_mb_is_the_memory_limit_outcome_and_rss_stays_bounded(
            &COMPONENTS,
        )
        .await
    }
}

mod fs {
    use super::*;

    #[tokio::test]
    async fn a_host_file_outside_the_preopens_cannot_be_read() -> TestResult {
        checks::a_host_file_outside_the_preopens_cannot_be_read(&COMPONENTS).await
    }

    #[tokio::test]
    async fn dot_dot_out_of_the_revision_is_denied() -> TestResult {
        checks::dot_dot_out_of_the_revision_is_denied(&COMPONENTS).await
    }

    #[tokio::test]
    async fn writing_into_the_revision_is_denied() -> TestResult {
        checks::writing_into_the_revision_is_denied(&COMPONENTS).await
    }

    #[tokio::test]
    async fn the_revision_is_readable_by_absolute_and_relative_path() -> TestResult {
        checks::the_revision_is_readable_by_absolute_and_relative_path(&COMPONENTS).await
    }

    #[tokio::test]
    async fn a_read_only_grant_is_readable_and_stays_read_only() -> TestResult {
        let h = Harness::new()?;
        let ro = h.dir.path().join("ro");
        std::fs::create_dir_all(&ro)?;
        std::fs::write(ro.join("in.txt"), "granted input")?;
        let sandbox = |a: &[&str]| SandboxSpec {
            dirs: vec![DirGrant {
                host: ro.display().to_string(),
                guest: Some("/in".to_owned()),
                access: DirAccess::ReadOnly,
                max_mb: None,
            }],
            ..args(a)
        };
        let out = h
            .run(artifacts::P2_TEST_FS, 10, sandbox(&["read", "/in/in.txt"]))
            .await?;
        assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
        assert!(out.log_tail.contains("granted input"), "{}", out.log_tail);
        for path in ["/in/result.txt", "/in/in.txt"] {
            let out = h
                .run(artifacts::P2_TEST_FS, 10, sandbox(&["write", path, "nope"]))
                .await?;
            checks::assert_denied(&out, path);
        }
        assert!(!ro.join("result.txt").exists());
        assert_eq!(std::fs::read_to_string(ro.join("in.txt"))?, "granted input");
        Ok(())
    }
}

/// Read-write grants under the same filesystem guard as preview-1 modules: the cases of `wasm_hooks.rs`
/// (`wasm_support::grant`) run against the component builds.
mod grant {
    crate::grant_cases!(grant: rollcage_hooks_artifacts::P2_TEST_GRANT, fs: rollcage_hooks_artifacts::P2_TEST_FS);

    use super::*;
    use wasm_support::grant::{Grant, violation};

    /// Each `wasi:io/streams` way of writing a file (std uses some; Python, JavaScript or hand-written guests may
    /// use the others) is under the quota: exactly the quota lands and is charged once, one quota and a bit more
    /// is refused with `insufficient-space`, fails the hook naming the grant, and leaves no more than the quota.
    #[tokio::test]
    async fn every_stream_write_method_is_under_the_quota() -> TestResult {
        let g = Grant::new(artifacts::P2_TEST_GRANT)?;
        std::fs::write(g.h.dir.path().join("ro/src"), vec![b's'; 2 << 20])?;
        let (quota, over) = ((1u64 << 20).to_string(), ((1u64 << 20) + 4096).to_string());
        for method in [
            "write",
            "blocking-write",
            "zeroes",
            "blocking-zeroes",
            "append",
            "splice",
            "blocking-splice",
        ] {
            let ok = format!("/data/{method}-ok");
            let out = g
                .run(Some(1), &["stream", method, &ok, &quota, "/ro/src"])
                .await?;
            assert_eq!(
                out.status,
                HookStatus::Succeeded,
                "{method}: {}",
                out.log_tail
            );
            assert_eq!(g.size(&format!("{method}-ok"))?, 1 << 20, "{method}");
            let big = format!("/data/{method}-big");
            let out = g
                .run(Some(1), &["stream", method, &big, &over, "/ro/src"])
                .await?;
            let reason = violation(&out);
            assert!(
                reason.contains("sandbox.dirs[1] (`/data`)")
                    && reason.contains("write quota of 1 MiB (max_mb)"),
                "{method}: {reason}"
            );
            assert!(
                out.log_tail.contains("name: \"insufficient-space\""),
                "{method}: {}",
                out.log_tail
            );
            let size = g.size(&format!("{method}-big"))?;
            assert!(
                size <= 1 << 20,
                "{method}: the file grew past the quota: {size}"
            );
        }
        Ok(())
    }

    /// A stream the guest dropped is forgotten: its handle, given next to a stdout stream, is not the file's, so
    /// output after a write that used the whole quota is not charged to the grant.
    #[tokio::test]
    async fn a_dropped_stream_handle_reused_for_stdout_is_not_charged() -> TestResult {
        let g = Grant::new(artifacts::P2_TEST_GRANT)?;
        let quota = (1u64 << 20).to_string();
        let out = g
            .run(Some(1), &["stream", "reuse", "/data/f", &quota])
            .await?;
        assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
        assert!(
            out.log_tail
                .contains("printed through the dropped stream's handle"),
            "{}",
            out.log_tail
        );
        assert_eq!(g.size("f")?, 1 << 20);
        Ok(())
    }
}

mod env {
    use super::*;

    #[tokio::test]
    async fn only_lifecycle_and_granted_variables_are_visible() -> TestResult {
        checks::only_lifecycle_and_granted_variables_are_visible(&COMPONENTS).await
    }
}

mod net {
    use super::*;

    #[tokio::test]
    async fn a_raw_tcp_connect_and_name_lookups_fail_and_the_listener_sees_nothing() -> TestResult {
        checks::a_raw_tcp_connect_and_name_lookups_fail_and_the_listener_sees_nothing(&COMPONENTS)
            .await
    }
}

/// `wasi:http/outgoing-handler` (the SDK's `http::get` in a component) under the `sandbox.http` grant: the same
/// check as the preview-1 `http_get`, made before anything leaves.
mod http {
    use super::*;

    #[tokio::test]
    async fn a_granted_url_is_fetched_and_audited() -> TestResult {
        checks::a_granted_url_is_fetched_and_audited(&COMPONENTS).await
    }

    #[tokio::test]
    async fn any_other_url_is_refused_naming_the_url_and_the_grant_and_nothing_is_sent()
    -> TestResult {
        checks::any_other_url_is_refused_naming_the_url_and_the_grant_and_nothing_is_sent(
            &COMPONENTS,
        )
        .await
    }

    #[tokio::test]
    async fn large_bodies_arrive_whole_and_oversized_ones_are_refused() -> TestResult {
        checks::large_bodies_arrive_whole_and_oversized_ones_are_refused(&COMPONENTS).await
    }

    #[tokio::test]
    async fn a_guest_waiting_on_a_silent_server_ends_at_the_timeout() -> TestResult {
        checks::a_guest_waiting_on_a_silent_server_ends_at_the_timeout(&COMPONENTS).await
    }
}

mod flood {
    use super::*;

    #[tokio::test]
    async fn a_stdout_flood_is_capped_and_the_hook_keeps_running() -> TestResult {
        let h = Harness::new()?;
        let out = h.run(artifacts::P2_TEST_FLOOD, 60, args(&["40"])).await?;
        assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
        assert!(
            out.warnings.iter().any(|w| w.contains("output truncated")),
            "{:?}",
            out.warnings
        );
        let logged = std::fs::metadata(h.dir.path().join("logs/scripts.log"))?.len();
        assert!(logged < 20 * MIB, "scripts.log holds {logged} bytes");
        Ok(())
    }
}

mod exit {
    use super::*;

    #[tokio::test]
    async fn exit_codes_come_through_exit_with_code_and_std_exit_reports_ok_or_error() -> TestResult
    {
        let h = Harness::new()?;
        for (a, expected) in [
            (&["0"][..], HookStatus::Succeeded),
            (&["1"], HookStatus::Failed { exit_code: 1 }),
            (&["3"], HookStatus::Failed { exit_code: 3 }),
            (&["0", "std"], HookStatus::Succeeded),
            // Rust's std on wasm32-wasip2 reports only error (`wasi:cli/exit.exit(err)`): code 1.
            (&["3", "std"], HookStatus::Failed { exit_code: 1 }),
        ] {
            let out = h.run(artifacts::P2_TEST_EXIT, 10, args(a)).await?;
            assert_eq!(out.status, expected, "{a:?}: {}", out.log_tail);
            assert!(
                out.log_tail.contains(&format!("exiting with {}", a[0])),
                "{}",
                out.log_tail
            );
        }
        Ok(())
    }
}

mod trap {
    use super::*;

    #[tokio::test]
    async fn a_trap_reports_its_kind_and_the_guest_functions() -> TestResult {
        checks::a_trap_reports_its_kind_and_the_guest_functions(&COMPONENTS).await
    }
}

mod noop {
    use super::*;

    #[tokio::test]
    async fn a_component_is_compiled_once_and_a_restarted_agent_reuses_the_artifact() -> TestResult
    {
        let h = Harness::new()?;
        let location = h.install(artifacts::P2_TEST_NOOP)?;
        for _ in 0..2 {
            let out = h.run_location(&location, 10, SandboxSpec::default()).await;
            assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
        }
        assert_eq!(h.hooks.compile_count(), 1);
        let artifacts_dir = h.dir.path().join("cache");
        let cached: Vec<_> = std::fs::read_dir(&artifacts_dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        assert_eq!(cached.len(), 1, "{cached:?}");
        // The same bytes under another name are the same hook: no second compile.
        std::fs::copy(artifacts::P2_TEST_NOOP, h.revision.join("hooks/again.wasm"))?;
        let out = h
            .run_location("hooks/again.wasm", 10, SandboxSpec::default())
            .await;
        assert_eq!(out.status, HookStatus::Succeeded);
        assert_eq!(h.hooks.compile_count(), 1);
        let restarted = WasmHooks::new(WasmConfig::new(&artifacts_dir))?;
        let kind = restarted
            .precompile_file(&h.revision.join(&location))
            .await?;
        assert_eq!(kind, WasmKind::Component);
        assert_eq!(restarted.compile_count(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn precompiling_a_revision_warms_components_and_modules() -> TestResult {
        let h = Harness::new()?;
        let component = h.install(artifacts::P2_TEST_NOOP)?;
        std::fs::copy(artifacts::TEST_NOOP, h.revision.join("hooks/module.wasm"))?;
        let hook = |location: &str| HookSpec {
            location: location.to_owned(),
            timeout_secs: 10,
            runas: None,
            sudo: false,
            sandbox: None,
        };
        let mut spec = rollcage_runtime::appspec::AppSpec::default();
        spec.hooks
            .insert(LifecycleEvent::ValidateService, vec![hook(&component)]);
        spec.hooks.insert(
            LifecycleEvent::AfterInstall,
            vec![hook("hooks/module.wasm")],
        );
        let done = h.hooks.precompile_revision(&spec, &h.revision).await;
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(done.iter().all(|d| d.result.is_ok()), "{done:?}");
        assert_eq!(h.hooks.compile_count(), 2);
        for location in [component.as_str(), "hooks/module.wasm"] {
            let out = h.run_location(location, 10, SandboxSpec::default()).await;
            assert_eq!(out.status, HookStatus::Succeeded, "{location}");
        }
        assert_eq!(h.hooks.compile_count(), 2, "both runs were warm");
        Ok(())
    }

    #[tokio::test]
    async fn a_broken_component_or_a_precompiled_one_is_refused() -> TestResult {
        let h = Harness::new()?;
        std::fs::write(
            h.revision.join("hooks/empty.wasm"),
            b"\0asm\x0d\0\x01\0garbage",
        )?;
        let out = h
            .run_location("hooks/empty.wasm", 10, SandboxSpec::default())
            .await;
        assert!(
            matches!(out.status, HookStatus::InvalidModule { .. }),
            "{:?}",
            out.status
        );
        let compiles = h.hooks.compile_count();
        // A `.cwasm` of a real component, made by the same engine, is still not accepted from a bundle.
        let engine = wasmtime::Engine::default();
        let cwasm = engine.precompile_component(&std::fs::read(artifacts::P2_TEST_NOOP)?)?;
        std::fs::write(h.revision.join("hooks/pre.wasm"), &cwasm)?;
        let out = h
            .run_location("hooks/pre.wasm", 10, SandboxSpec::default())
            .await;
        // (It is not even taken for wasm: no `\0asm` header, so it goes to the shell runner, which cannot run it.)
        assert_ne!(out.status, HookStatus::Succeeded);
        assert_eq!(
            h.hooks.compile_count(),
            compiles,
            "nothing was loaded or compiled"
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_hook_future_is_send_with_a_component() -> TestResult {
        fn assert_send<T: Send>(t: T) -> T {
            t
        }
        let h = Harness::new()?;
        let location = h.install(artifacts::P2_TEST_NOOP)?;
        let out = assert_send(h.run_location(&location, 10, SandboxSpec::default())).await;
        assert_eq!(out.status, HookStatus::Succeeded);
        Ok(())
    }
}

/// The capability audit of a component: opens, denials, env, sockets and name lookups.
mod audit {
    use super::*;

    #[tokio::test]
    async fn opens_denials_env_and_network_attempts_are_listed() -> TestResult {
        // SAFETY: set before any thread of this test reads the environment; nextest runs each test in its own
        // process.
        unsafe { std::env::set_var("ROLLCAGE_TEST_AUDITED", "1") };
        let h = Harness::new()?;
        std::fs::write(h.dir.path().join("beside.txt"), "beside")?;
        let out = h
            .run(
                artifacts::P2_TEST_FS,
                10,
                args(&["read", "/revision/data.txt"]),
            )
            .await?;
        assert!(
            out.log_tail
                .contains("[capability] file read /revision/data.txt allowed"),
            "{}",
            out.log_tail
        );
        let out = h
            .run(
                artifacts::P2_TEST_FS,
                10,
                args(&["read", "/revision/../beside.txt"]),
            )
            .await?;
        assert!(
            out.log_tail.lines().any(|l| l
                .starts_with("[capability] file read /revision/../beside.txt")
                && l.ends_with(" denied")),
            "{}",
            out.log_tail
        );
        let sandbox = SandboxSpec {
            env: vec!["ROLLCAGE_TEST_AUDITED".to_owned()],
            ..args(&["ROLLCAGE_TEST_AUDITED"])
        };
        let out = h.run(artifacts::P2_TEST_ENV, 10, sandbox).await?;
        assert!(
            out.log_tail
                .contains("[capability] env read ROLLCAGE_TEST_AUDITED allowed"),
            "{}",
            out.log_tail
        );
        let out = h
            .run(
                artifacts::P2_TEST_NET,
                10,
                args(&["connect", "127.0.0.1:9"]),
            )
            .await?;
        assert!(
            out.log_tail
                .contains("[capability] net tcp socket (ipv4) denied"),
            "{}",
            out.log_tail
        );
        let out = h
            .run(artifacts::P2_TEST_NET, 10, args(&["lookup", "localhost"]))
            .await?;
        assert!(
            out.log_tail
                .contains("[capability] net name lookup localhost denied"),
            "{}",
            out.log_tail
        );
        assert!(
            h.log_text().contains(
                "[capability] ValidateService hooks/net.wasm: net name lookup localhost denied"
            ),
            "{}",
            h.log_text()
        );
        Ok(())
    }
}

/// A Python hook (componentize-py, `hooks-examples/probes/python/probe.py`) under the same sandbox: what its own
/// `open`, `os.listdir` and `os.environ` reach is what the grant says, its buffered writes are under the quota, and
/// the audit lists what it did. (It has no `socket` module; `wasi:sockets` is denied as for the `net` program.)
mod python {
    use super::*;
    use wasm_support::grant::{Grant, violation};

    #[tokio::test]
    async fn a_python_hook_gets_exactly_its_grant() -> TestResult {
        // SAFETY: set before any thread of this test reads the environment; nextest runs each test in its own
        // process.
        unsafe {
            std::env::set_var("PROBE_GRANTED", "yes");
            std::env::set_var("PROBE_SECRET", "agent-only");
        }
        let g = Grant::new(artifacts::PY_TEST_PROBE)?;
        let secret = g.h.dir.path().join("secret.txt");
        std::fs::write(&secret, "top secret")?;
        std::fs::write(g.h.dir.path().join("beside.txt"), "beside the revision")?;
        let secret = secret.display().to_string();
        let sandbox = SandboxSpec {
            dirs: vec![DirGrant {
                host: g.data.display().to_string(),
                guest: Some("/data".to_owned()),
                access: DirAccess::ReadWrite,
                max_mb: Some(1),
            }],
            env: vec!["PROBE_GRANTED".to_owned()],
            ..args(&[
                "read",
                &secret,
                "read",
                "/revision/../beside.txt",
                "read",
                "/revision/data.txt",
                "read",
                "sub/data.txt",
                "write",
                "/revision/new.txt",
                "write",
                "/data/out.txt",
                "list",
                "/revision",
                "env",
                "PROBE_GRANTED",
                "env",
                "PROBE_SECRET",
                "env",
                "PATH",
            ])
        };
        let out = g.h.run(artifacts::PY_TEST_PROBE, 120, sandbox).await?;
        assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
        for expected in [
            format!("read {secret}: denied "),
            "read /revision/../beside.txt: denied PermissionError".to_owned(),
            "read /revision/data.txt: ok 14 bytes".to_owned(),
            "read sub/data.txt: ok 14 bytes".to_owned(),
            "write /revision/new.txt: denied PermissionError".to_owned(),
            "write /data/out.txt: ok written".to_owned(),
            "list /revision: ok data.txt,hooks,sub".to_owned(),
            "env PROBE_GRANTED: ok =yes".to_owned(),
            "env PROBE_SECRET: ok unset".to_owned(),
            "env PATH: ok unset".to_owned(),
            "[capability] file read /revision/../beside.txt".to_owned(),
            "[capability] file write /revision/new.txt".to_owned(),
            "[capability] file write /data/out.txt allowed".to_owned(),
            "[capability] env read PROBE_GRANTED allowed".to_owned(),
        ] {
            assert!(
                out.log_tail.contains(&expected),
                "missing `{expected}` in:\n{}",
                out.log_tail
            );
        }
        for denied in ["/revision/../beside.txt", "/revision/new.txt"] {
            assert!(
                out.log_tail
                    .lines()
                    .any(|l| l.starts_with("[capability] file ")
                        && l.contains(denied)
                        && l.ends_with(" denied")),
                "{denied} not audited as denied:\n{}",
                out.log_tail
            );
        }
        assert!(!out.log_tail.contains("top secret"));
        assert!(!g.h.revision.join("new.txt").exists());
        assert_eq!(g.size("out.txt")?, "written by the probe".len() as u64);

        // 2 MiB of buffered writes into a 1 MiB grant: refused past the quota, the hook fails naming the grant.
        let out = g.run(Some(1), &["fill", "/data/big.bin"]).await?;
        let reason = violation(&out);
        assert!(
            reason.starts_with("sandbox.dirs[1] (`/data`): write quota of 1 MiB (max_mb) exceeded"),
            "{reason}"
        );
        assert!(
            out.log_tail.contains("fill /data/big.bin: denied OSError"),
            "{}",
            out.log_tail
        );
        assert!(g.size("big.bin")? <= MIB, "{} bytes", g.size("big.bin")?);
        assert_eq!(g.h.hooks.compile_count(), 1, "the second run was warm");
        Ok(())
    }
}
