//! The wasm hook runner against real guests (built from `hooks-examples/guests/test-programs` by
//! `rollcage-hooks-artifacts`): one module per test program, each asserting the outcome and its message.

#![allow(
    clippy::unwrap_used,
    reason = "test setup; a failure is the test failing"
)]

use rollcage_hooks_artifacts as artifacts;
use rollcage_proto::{DirAccess, DirGrant, HookStatus, LifecycleEvent, SandboxSpec};
use rollcage_runtime::appspec::HookSpec;
use rollcage_runtime::hooks::{HookRun, WasmConfig, WasmHooks, run_hook};
use std::time::{Duration, Instant};

mod wasm_support;

use wasm_support::checks::{self, MODULES};
use wasm_support::*;

// Every test program must have a test module of the same name.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports, reason = "only checks that the module exists")]
        use self::$name as _;
    };
}
artifacts::foreach_test!(assert_test_exists);

mod spin {
    use super::*;

    #[tokio::test]
    async fn an_infinite_loop_ends_at_the_timeout() -> TestResult {
        checks::an_infinite_loop_ends_at_the_timeout(&MODULES).await
    }
}

mod sleep {
    use super::*;

    #[tokio::test]
    async fn a_guest_blocked_in_a_host_call_ends_at_the_timeout() -> TestResult {
        checks::a_guest_blocked_in_a_host_call_ends_at_the_timeout(&MODULES).await
    }
}

mod alloc {
    use super::*;

    #[tokio::test]
    async fn allocation_past_memory_mb_is_the_memory_limit_outcome_and_rss_stays_bounded()
    -> TestResult {
        checks::allocation_past_memory_mb_is_the_memory_limit_outcome_and_rss_stays_bounded(
            &MODULES,
        )
        .await
    }
}

mod fs {
    use super::*;

    #[tokio::test]
    async fn a_host_file_outside_the_preopens_cannot_be_read() -> TestResult {
        checks::a_host_file_outside_the_preopens_cannot_be_read(&MODULES).await
    }

    #[tokio::test]
    async fn dot_dot_out_of_the_revision_is_denied() -> TestResult {
        checks::dot_dot_out_of_the_revision_is_denied(&MODULES).await
    }

    #[tokio::test]
    async fn writing_into_the_revision_is_denied() -> TestResult {
        checks::writing_into_the_revision_is_denied(&MODULES).await
    }

    #[tokio::test]
    async fn the_revision_is_readable_by_absolute_and_relative_path() -> TestResult {
        checks::the_revision_is_readable_by_absolute_and_relative_path(&MODULES).await
    }

    #[tokio::test]
    async fn a_missing_granted_directory_is_reported_with_its_index() -> TestResult {
        let h = Harness::new()?;
        let sandbox = SandboxSpec {
            dirs: vec![DirGrant {
                host: "/nonexistent/rollcage".to_owned(),
                guest: None,
                access: DirAccess::ReadOnly,
                max_mb: None,
            }],
            ..args(&["read", "/revision/data.txt"])
        };
        let out = h.run(artifacts::TEST_FS, 10, sandbox).await?;
        let HookStatus::Unknown { reason } = &out.status else {
            panic!("{:?}", out.status)
        };
        assert!(
            reason.contains("sandbox.dirs[0]") && reason.contains("/nonexistent/rollcage"),
            "{reason}"
        );
        Ok(())
    }
}

/// What a hook may leave in a read-write grant (the cases are shared with the component suite:
/// `wasm_support::grant`).
mod grant {
    crate::grant_cases!(grant: rollcage_hooks_artifacts::TEST_GRANT, fs: rollcage_hooks_artifacts::TEST_FS);
}

mod env {
    use super::*;

    #[tokio::test]
    async fn only_lifecycle_and_granted_variables_are_visible() -> TestResult {
        checks::only_lifecycle_and_granted_variables_are_visible(&MODULES).await
    }
}

mod http {
    use super::*;

    #[tokio::test]
    async fn a_granted_url_is_fetched_and_audited() -> TestResult {
        checks::a_granted_url_is_fetched_and_audited(&MODULES).await
    }

    #[tokio::test]
    async fn any_other_url_is_refused_naming_the_url_and_the_grant_and_nothing_is_sent()
    -> TestResult {
        checks::any_other_url_is_refused_naming_the_url_and_the_grant_and_nothing_is_sent(&MODULES)
            .await
    }

    #[tokio::test]
    async fn large_bodies_arrive_whole_and_oversized_ones_are_refused() -> TestResult {
        checks::large_bodies_arrive_whole_and_oversized_ones_are_refused(&MODULES).await
    }

    #[tokio::test]
    async fn a_guest_waiting_on_a_silent_server_ends_at_the_timeout() -> TestResult {
        checks::a_guest_waiting_on_a_silent_server_ends_at_the_timeout(&MODULES).await
    }
}

mod flood {
    use super::*;

    #[tokio::test]
    async fn a_100_mib_stdout_flood_is_capped_and_memory_stays_bounded() -> TestResult {
        let h = Harness::new()?;
        h.hooks
            .precompile_file(&h.revision.join(h.install(artifacts::TEST_FLOOD)?))
            .await?;
        let (before, _) = rss();
        reset_peak_rss()?;
        let out = h.run(artifacts::TEST_FLOOD, 60, args(&["100"])).await?;
        let (_, peak) = rss();
        assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
        let cap = rollcage_runtime::hooks::wasm::DEFAULT_OUTPUT_CAP_BYTES as u64;
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains(&format!("output truncated after {cap} bytes"))),
            "{:?}",
            out.warnings
        );
        let log_len = std::fs::metadata(h.dir.path().join("logs/scripts.log"))?.len();
        // Each 1 KiB line gains a ~70-byte prefix in scripts.log.
        assert!(
            log_len > cap / 2 && log_len < cap + cap / 10 + 64 * 1024,
            "scripts.log is {log_len} bytes"
        );
        assert!(
            !h.log_text().contains("flood done"),
            "the end of the output should have been dropped"
        );
        assert!(
            out.log_tail.contains("output truncated"),
            "{}",
            out.log_tail
        );
        let grown = peak.saturating_sub(before);
        assert!(grown < cap + 32 * MIB, "RSS grew by {} MiB", grown / MIB);
        Ok(())
    }
}

mod net {
    use super::*;

    #[tokio::test]
    async fn a_raw_tcp_connect_and_name_lookups_fail_and_the_listener_sees_nothing() -> TestResult {
        checks::a_raw_tcp_connect_and_name_lookups_fail_and_the_listener_sees_nothing(&MODULES)
            .await
    }
}

mod exit {
    use super::*;

    #[tokio::test]
    async fn proc_exit_3_is_failed_with_code_3() -> TestResult {
        let h = Harness::new()?;
        let out = h.run(artifacts::TEST_EXIT, 10, args(&["3"])).await?;
        assert_eq!(out.status, HookStatus::Failed { exit_code: 3 });
        assert_eq!(out.status.code(), 4);
        assert!(out.log_tail.contains("exiting with 3"), "{}", out.log_tail);
        let out = h.run(artifacts::TEST_EXIT, 10, args(&["0"])).await?;
        assert_eq!(out.status, HookStatus::Succeeded);
        // WASI preview 1 reserves 126 and up.
        let out = h.run(artifacts::TEST_EXIT, 10, args(&["200"])).await?;
        let HookStatus::Unknown { reason } = &out.status else {
            panic!("{:?}", out.status)
        };
        assert!(reason.contains("invalid exit code"), "{reason}");
        Ok(())
    }
}

mod trap {
    use super::*;

    #[tokio::test]
    async fn a_trap_reports_its_kind_and_the_guest_functions() -> TestResult {
        checks::a_trap_reports_its_kind_and_the_guest_functions(&MODULES).await
    }
}

mod noop {
    use super::*;

    #[tokio::test]
    async fn the_hook_future_is_send_so_the_agent_can_spawn_it() -> TestResult {
        fn assert_send<T: Send>(t: T) -> T {
            t
        }
        let h = Harness::new()?;
        let location = h.install(artifacts::TEST_NOOP)?;
        let hook = HookSpec {
            location,
            timeout_secs: 10,
            runas: None,
            sudo: false,
            sandbox: None,
        };
        let run = HookRun {
            event: LifecycleEvent::AfterInstall,
            hook: &hook,
            revision_dir: &h.revision,
            script_root: None,
            deploy_dir: None,
            env: &h.env,
            log: &h.log,
            wasm: Some(&h.hooks),
        };
        assert_eq!(
            assert_send(run_hook(run)).await.status,
            HookStatus::Succeeded
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_module_is_compiled_once_and_later_runs_and_agents_reuse_the_artifact() -> TestResult
    {
        let h = Harness::new()?;
        let location = h.install(artifacts::TEST_NOOP)?;
        assert_eq!(
            h.run_location(&location, 10, SandboxSpec::default())
                .await
                .status,
            HookStatus::Succeeded
        );
        assert_eq!(h.hooks.compile_count(), 1);
        let artifacts_dir = h.dir.path().join("cache");
        let cached: Vec<_> = std::fs::read_dir(&artifacts_dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        assert_eq!(cached.len(), 1, "{cached:?}");
        let mtime = std::fs::metadata(&cached[0])?.modified()?;
        assert_eq!(
            h.run_location(&location, 10, SandboxSpec::default())
                .await
                .status,
            HookStatus::Succeeded
        );
        assert_eq!(h.hooks.compile_count(), 1);
        // A restarted agent (new runner, same cache dir) loads the artifact instead of compiling.
        let restarted = WasmHooks::new(WasmConfig::new(&artifacts_dir))?;
        restarted
            .precompile_file(&h.revision.join(&location))
            .await?;
        assert_eq!(restarted.compile_count(), 0);
        assert_eq!(std::fs::metadata(&cached[0])?.modified()?, mtime);
        Ok(())
    }

    #[tokio::test]
    async fn precompiling_a_revision_warms_every_wasm_hook_and_skips_scripts() -> TestResult {
        let h = Harness::new()?;
        let wasm = h.install(artifacts::TEST_NOOP)?;
        std::fs::write(h.revision.join("hooks/stop.sh"), "#!/bin/sh\nexit 0\n")?;
        let hook = |location: &str| HookSpec {
            location: location.to_owned(),
            timeout_secs: 10,
            runas: None,
            sudo: false,
            sandbox: None,
        };
        let mut spec = rollcage_runtime::appspec::AppSpec::default();
        spec.hooks
            .insert(LifecycleEvent::ApplicationStop, vec![hook("hooks/stop.sh")]);
        spec.hooks
            .insert(LifecycleEvent::ValidateService, vec![hook(&wasm)]);
        spec.hooks
            .insert(LifecycleEvent::AfterInstall, vec![hook(&wasm)]);
        let done = h.hooks.precompile_revision(&spec, &h.revision).await;
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(
            done[0].result.is_ok() && done[0].location == wasm,
            "{done:?}"
        );
        assert_eq!(h.hooks.compile_count(), 1);
        assert_eq!(
            h.run_location(&wasm, 10, SandboxSpec::default())
                .await
                .status,
            HookStatus::Succeeded
        );
        assert_eq!(h.hooks.compile_count(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn an_invalid_module_or_a_precompiled_artifact_is_refused() -> TestResult {
        let h = Harness::new()?;
        let mut broken = b"\0asm\x01\0\0\0".to_vec();
        broken.extend_from_slice(b"garbage section");
        std::fs::write(h.revision.join("hooks/broken.wasm"), &broken)?;
        let out = h
            .run_location("hooks/broken.wasm", 10, SandboxSpec::default())
            .await;
        assert!(
            matches!(out.status, HookStatus::InvalidModule { .. }),
            "{:?}",
            out.status
        );
        // An unknown version/layer after the magic is refused naming what was expected.
        std::fs::write(h.revision.join("hooks/v2.wasm"), b"\0asm\x02\0\0\0")?;
        let out = h
            .run_location("hooks/v2.wasm", 10, SandboxSpec::default())
            .await;
        let HookStatus::InvalidModule { reason } = &out.status else {
            panic!("{:?}", out.status)
        };
        assert!(
            reason.contains("version 0x2") && reason.contains("component (version 0xd, layer 1)"),
            "{reason}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_module_over_the_size_cap_fails_precompile_with_a_bound_error() -> TestResult {
        let h = Harness::new()?;
        let big = h.revision.join("hooks/big.wasm");
        let f = std::fs::File::create(&big)?;
        std::io::Write::write_all(&mut &f, b"\0asm\x01\0\0\0")?;
        f.set_len(rollcage_runtime::hooks::wasm::MAX_MODULE_BYTES + 1)?;
        let err = h
            .hooks
            .precompile_file(&big)
            .await
            .err()
            .ok_or("a 16 MiB + 1 module compiled")?;
        assert!(err.is_bound(), "{err}");
        assert!(
            err.to_string().contains("-byte limit on a wasm module"),
            "{err}"
        );
        assert_eq!(h.hooks.compile_count(), 0, "refused before compiling");
        Ok(())
    }

    #[tokio::test]
    async fn a_compile_past_its_deadline_fails_instead_of_holding_the_caller() -> TestResult {
        let h = Harness::new()?;
        let config = WasmConfig {
            compile_timeout: Duration::from_millis(1),
            ..WasmConfig::new(h.dir.path().join("cache2"))
        };
        let hooks = WasmHooks::new(config)?;
        let module = h.revision.join(h.install(artifacts::TEST_NOOP)?);
        let started = Instant::now();
        let err = hooks
            .precompile_file(&module)
            .await
            .err()
            .ok_or("compiled within 1 ms")?;
        assert!(
            err.is_bound() && err.to_string().contains("did not compile within"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_symlink_out_of_the_revision_is_not_run() -> TestResult {
        let h = Harness::new()?;
        let outside = h.dir.path().join("outside.wasm");
        std::fs::copy(artifacts::TEST_NOOP, &outside)?;
        std::os::unix::fs::symlink(&outside, h.revision.join("hooks/link.wasm"))?;
        let out = h
            .run_location("hooks/link.wasm", 10, SandboxSpec::default())
            .await;
        assert!(
            matches!(out.status, HookStatus::NotExecutable { .. }),
            "{:?}",
            out.status
        );
        Ok(())
    }
}

/// The compile bound at DownloadBundle, through the host lifecycle.
mod download_bundle {
    use super::*;
    use rollcage_proto::wire::StepOutcome;
    use rollcage_runtime::appspec::FileExistsBehavior;
    use rollcage_runtime::lifecycle::{DeploymentSpec, HostConfig, HostDeployment};
    use rollcage_runtime::package::{Source, UnpackLimits};

    #[tokio::test]
    async fn a_module_over_the_compile_bound_fails_the_step_naming_the_hook() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let rev = tmp.path().join("src");
        std::fs::create_dir_all(rev.join("hooks"))?;
        std::fs::write(
            rev.join("appspec.yml"),
            "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: hooks/big.wasm\n",
        )?;
        let f = std::fs::File::create(rev.join("hooks/big.wasm"))?;
        std::io::Write::write_all(&mut &f, b"\0asm\x01\0\0\0")?;
        f.set_len(rollcage_runtime::hooks::wasm::MAX_MODULE_BYTES + 1)?;
        let mut config = HostConfig::new(tmp.path().join("root"));
        config.wasm = Some(std::sync::Arc::new(
            WasmHooks::new(WasmConfig::in_memory())?,
        ));
        let spec = DeploymentSpec {
            application: "web".into(),
            group: "prod".into(),
            group_id: "prod".into(),
            deployment_id: "d1".into(),
            source: Source::Directory(rev),
            expected_sha256: None,
            file_exists_behavior: FileExistsBehavior::default(),
            limits: UnpackLimits::default(),
            form: None,
            signature: None,
            overrides: Default::default(),
        };
        let started = Instant::now();
        let report = HostDeployment::new(&config, spec)?
            .run_step(LifecycleEvent::DownloadBundle)
            .await;
        assert_eq!(report.status, StepOutcome::Failed, "{}", report.message);
        assert!(
            report.message.contains("hooks/big.wasm")
                && report.message.contains("-byte limit on a wasm module"),
            "{}",
            report.message
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        Ok(())
    }
}

/// The capability audit: what the hook used under its grant and what was denied, as `[capability]` lines in
/// `scripts.log` and the report tail.
mod audit {
    use super::*;

    #[tokio::test]
    async fn opens_denials_env_and_http_are_listed_with_a_summary() -> TestResult {
        // SAFETY: set before any thread of this test reads the environment; nextest runs each test in its own
        // process.
        unsafe { std::env::set_var("ROLLCAGE_TEST_AUDITED", "1") };
        let h = Harness::new()?;
        std::fs::write(h.dir.path().join("beside.txt"), "beside")?;
        let out = h
            .run(
                artifacts::TEST_FS,
                10,
                args(&["read", "/revision/data.txt"]),
            )
            .await?;
        assert_eq!(out.status, HookStatus::Succeeded, "{}", out.log_tail);
        assert!(
            out.log_tail
                .contains("[capability] file read /revision/data.txt allowed"),
            "{}",
            out.log_tail
        );
        assert!(
            out.log_tail
                .contains("[capability] summary: file allowed=1"),
            "{}",
            out.log_tail
        );
        let out = h
            .run(
                artifacts::TEST_FS,
                10,
                args(&["read", "/revision/../beside.txt"]),
            )
            .await?;
        assert!(
            out.log_tail
                .contains("[capability] file read /revision/../beside.txt (errno 63) denied"),
            "{}",
            out.log_tail
        );
        let sandbox = SandboxSpec {
            env: vec!["ROLLCAGE_TEST_AUDITED".to_owned()],
            ..args(&["ROLLCAGE_TEST_AUDITED"])
        };
        let out = h.run(artifacts::TEST_ENV, 10, sandbox).await?;
        assert!(
            out.log_tail
                .contains("[capability] env read ROLLCAGE_TEST_AUDITED allowed"),
            "{}",
            out.log_tail
        );
        let sandbox = SandboxSpec {
            http: vec!["http://127.0.0.1:9/allowed/".to_owned()],
            ..args(&["http://127.0.0.1:9/other"])
        };
        let out = h.run(artifacts::TEST_HTTP, 10, sandbox).await?;
        assert!(
            out.log_tail
                .contains("[capability] http GET http://127.0.0.1:9/other (not granted) denied"),
            "{}",
            out.log_tail
        );
        // The same lines are in scripts.log, tagged `[capability]`.
        let log = h.log_text();
        assert!(
            log.contains(
                "[capability] ValidateService hooks/fs.wasm: file read /revision/data.txt allowed"
            ),
            "{log}"
        );
        Ok(())
    }
}
