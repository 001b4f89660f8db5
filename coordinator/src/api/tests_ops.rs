//! Operability routes: `/metrics` after a real (simulated-agent) deployment, and the OpenAPI document checked
//! against the router in both directions (the dashboard's non-API page routes excepted).

use super::*;
use crate::api::testkit::{
    ADMIN, ENROLL, TestResult, call_text as call, fleet_on, post_ok as post,
};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use rollcage_proto::wire::{PollResponse, ReportResponse, StepOutcome, StepReport};
use std::collections::BTreeSet;
use std::sync::Arc;

const SCRAPE: &str = "scrape-secret";

/// The shared test state, with a scrape token.
fn state() -> TestResult<State> {
    let st = crate::api::testkit::state()?;
    st.metrics.set_scrape_token(SCRAPE);
    Ok(st)
}

/// The value of the sample `name` (with its labels, exactly as exposed), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `(le, cumulative count)` of the step-duration histogram of `event`.
fn buckets(text: &str, event: &str) -> Vec<(f64, f64)> {
    let label = format!("event=\"{event}\"");
    text.lines()
        .filter(|l| l.starts_with("rollcage_step_duration_seconds_bucket{") && l.contains(&label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect()
}

/// Drive a two-instance deployment to success; i1's ValidateService reports 2.5 s.
async fn deploy(st: &State) -> TestResult {
    let f = fleet_on(st.clone(), 2, "all", "in-place").await?;
    let tokens: Vec<String> = f.agents.into_iter().map(|a| a.token).collect();
    let dep = post(
        st,
        "/v1/deployments",
        ADMIN,
        serde_json::json!({"application": "app", "group": "web", "revision": f.revision.id}),
    )
    .await?;
    for (i, token) in tokens.iter().enumerate() {
        let p: PollResponse = serde_json::from_value(
            post(
                st,
                "/v1/agent/poll",
                token,
                serde_json::json!({"wait_ms": 50}),
            )
            .await?,
        )?;
        let mut next = p.command;
        while let Some(cmd) = next {
            let duration_ms = if i == 1 && cmd.event.name() == "ValidateService" {
                2500
            } else {
                20
            };
            // ValidateService ran a wasm hook whose audit counted file opens, a denied socket and a kind this
            // coordinator does not know.
            let hooks = if cmd.event.name() == "ValidateService" {
                let count = |kind: &str, result: &str, count| rollcage_proto::CapabilityCount {
                    kind: kind.into(),
                    result: result.into(),
                    count,
                };
                vec![rollcage_proto::HookOutcome {
                    location: "hooks/validate.wasm".into(),
                    status: rollcage_proto::HookStatus::Succeeded,
                    duration_ms: 5,
                    log_tail: String::new(),
                    warnings: vec![],
                    capabilities: vec![
                        count("file", "allowed", 3),
                        count("net", "denied", 1),
                        count("teleport", "allowed", 1),
                    ],
                }]
            } else {
                vec![]
            };
            let report = StepReport {
                command_id: cmd.command_id,
                outcome: StepOutcome::Succeeded,
                message: "ok".into(),
                hooks,
                duration_ms,
                log: None,
            };
            let r: ReportResponse = serde_json::from_value(
                post(
                    st,
                    "/v1/agent/reports",
                    token,
                    serde_json::to_value(&report)?,
                )
                .await?,
            )?;
            assert!(r.recorded);
            // A repeat is acknowledged and must not be counted.
            post(
                st,
                "/v1/agent/reports",
                token,
                serde_json::to_value(&report)?,
            )
            .await?;
            next = r.command;
        }
    }
    let (_, body) = call(
        st,
        Method::GET,
        &format!("/v1/deployments/{}", dep["id"].as_str().ok_or("no id")?),
        Some(ADMIN),
        Body::empty(),
    )
    .await?;
    let d: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(d["status"], "succeeded", "{d}");
    Ok(())
}

#[tokio::test]
async fn metrics_after_a_deployment_show_its_status_steps_and_agents() -> TestResult {
    let st = state()?;
    deploy(&st).await?;
    let (s, text) = call(&st, Method::GET, "/metrics", Some(SCRAPE), Body::empty()).await?;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(
        sample(&text, r#"rollcage_deployments{status="succeeded"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"rollcage_deployments{status="in_progress"}"#),
        Some(0.0)
    );
    // 2 instances × 7 steps, repeats not counted.
    assert_eq!(
        sample(&text, r#"rollcage_step_reports_total{outcome="succeeded"}"#),
        Some(14.0),
        "{text}"
    );
    // The wasm hooks' capability audits, summed over the 2 instances (repeats not counted, unknown kinds `other`).
    for (labels, n) in [
        (r#"{kind="file",result="allowed"}"#, 6.0),
        (r#"{kind="net",result="denied"}"#, 2.0),
        (r#"{kind="other",result="allowed"}"#, 2.0),
    ] {
        assert_eq!(
            sample(
                &text,
                &format!("rollcage_hook_capability_calls_total{labels}")
            ),
            Some(n),
            "{text}"
        );
    }
    let validate = r#"{event="ValidateService"}"#;
    assert_eq!(
        sample(
            &text,
            &format!("rollcage_step_duration_seconds_count{validate}")
        ),
        Some(2.0),
        "{text}"
    );
    let sum = sample(
        &text,
        &format!("rollcage_step_duration_seconds_sum{validate}"),
    )
    .ok_or("no ValidateService sum")?;
    assert!((sum - 2.52).abs() < 1e-9, "sum {sum}");
    // Cumulative buckets: the 20 ms report is in every bucket from 0.03 s up, the 2.5 s one only from 2.5 s up.
    let buckets = buckets(&text, "ValidateService");
    assert!(buckets.len() > 5, "{text}");
    for (le, count) in buckets {
        let want = if le < 0.02 {
            0.0
        } else if le < 2.5 {
            1.0
        } else {
            2.0
        };
        assert_eq!(count, want, "bucket le={le}");
    }
    assert_eq!(sample(&text, "rollcage_agents_enrolled"), Some(2.0));
    assert_eq!(sample(&text, "rollcage_agents_connected"), Some(2.0));
    Ok(())
}

#[tokio::test]
async fn metrics_need_the_admin_or_scrape_token() -> TestResult {
    let st = state()?;
    for token in [None, Some("wrong"), Some(ENROLL)] {
        let (s, body) = call(&st, Method::GET, "/metrics", token, Body::empty()).await?;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
    }
    let (s, _) = call(&st, Method::GET, "/metrics", Some(ADMIN), Body::empty()).await?;
    assert_eq!(s, StatusCode::OK);
    Ok(())
}

#[derive(Debug)]
struct FakeLb;

#[async_trait::async_trait]
impl crate::metrics::LbCounterSource for FakeLb {
    async fn lb_counters(&self) -> Vec<crate::metrics::LbGroupCounters> {
        vec![crate::metrics::LbGroupCounters {
            group: "blue".into(),
            requests: 120,
            errors: 3,
        }]
    }
}

#[tokio::test]
async fn lb_counters_come_from_the_registered_source() -> TestResult {
    let st = state()?;
    let (_, text) = call(&st, Method::GET, "/metrics", Some(ADMIN), Body::empty()).await?;
    assert_eq!(
        sample(&text, r#"rollcage_lb_requests_total{group="blue"}"#),
        None
    );
    assert!(st.metrics.set_lb_source(Arc::new(FakeLb)));
    let (_, text) = call(&st, Method::GET, "/metrics", Some(ADMIN), Body::empty()).await?;
    assert_eq!(
        sample(&text, r#"rollcage_lb_requests_total{group="blue"}"#),
        Some(120.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"rollcage_lb_errors_total{group="blue"}"#),
        Some(3.0)
    );
    Ok(())
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (method, path) of every operation in the OpenAPI document.
pub(crate) fn documented()
-> Result<BTreeSet<(String, String)>, Box<dyn std::error::Error + Send + Sync>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(OPENAPI_YAML)?;
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let paths = doc["paths"].as_mapping().ok_or("no paths")?;
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().ok_or("non-string path")?;
        let item = item.as_mapping().ok_or("path item is not a mapping")?;
        for (key, _) in item {
            let key = key.as_str().ok_or("non-string key")?;
            if METHODS.contains(&key) {
                out.insert((key.to_owned(), path.to_owned()));
            }
        }
    }
    Ok(out)
}

/// `{param}` segments filled with a value every extractor accepts.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the router serves `method path`: without a token a served route answers 401 (or 200 for the public
/// ones); an unserved one gets the fallback 404 or 405.
async fn served(
    st: &State,
    method: &str,
    path: &str,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
    let (s, body) = call(st, m, &concrete(path), None, Body::from("{}")).await?;
    Ok(!(s == StatusCode::METHOD_NOT_ALLOWED
        || (s == StatusCode::NOT_FOUND && body.contains("no such route"))))
}

#[tokio::test]
async fn openapi_document_and_router_have_the_same_routes() -> TestResult {
    let st = state()?;
    let doc = documented()?;
    // The router's side: every path it was built with, each probed with every method.
    let mut routed = BTreeSet::new();
    for path in route_paths() {
        // The web dashboard's page and assets are served by the same router but are not API routes: the document
        // leaves them out on purpose, so the comparison skips exactly these (after checking they are served).
        if dashboard::PAGE_PATHS.contains(&path.as_str()) {
            assert!(served(&st, "get", &path).await?, "dashboard route {path}");
            continue;
        }
        for m in METHODS {
            if served(&st, m, &path).await? {
                routed.insert((m.to_owned(), path.clone()));
            }
        }
    }
    let missing_in_doc: Vec<_> = routed.difference(&doc).collect();
    let missing_in_router: Vec<_> = doc.difference(&routed).collect();
    assert!(
        missing_in_doc.is_empty(),
        "routes not in coordinator/openapi.yaml: {missing_in_doc:?}"
    );
    assert!(
        missing_in_router.is_empty(),
        "documented routes the router does not serve: {missing_in_router:?}"
    );
    // The probe itself can tell a route from a non-route.
    assert!(!served(&st, "get", "/v1/no-such-thing").await?);
    assert!(!served(&st, "delete", "/v1/applications").await?);
    assert!(doc.len() >= 20, "{doc:?}");
    Ok(())
}

#[tokio::test]
async fn openapi_document_is_served() -> TestResult {
    let st = state()?;
    let (s, body) = call(&st, Method::GET, "/v1/openapi.yaml", None, Body::empty()).await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, OPENAPI_YAML);
    Ok(())
}

/// The document's `AnalysisSettings` (the `[canary]` / `[analysis]` tables) has proto's fields and defaults.
#[test]
fn documented_canary_settings_are_proto_s() -> TestResult {
    use rollcage_proto::canary::{AnalysisConfig, PrometheusCheck};
    let doc: serde_yaml::Value = serde_yaml::from_str(OPENAPI_YAML)?;
    let schema = &doc["components"]["schemas"]["AnalysisSettings"]["properties"];
    let props = schema
        .as_mapping()
        .ok_or("AnalysisSettings has no properties")?;
    let all = AnalysisConfig {
        prometheus: vec![PrometheusCheck {
            url: "http://p".into(),
            query: "up".into(),
            max: 1.0,
        }],
        ..AnalysisConfig::with_steps(&[100])
    };
    let value = serde_json::to_value(&all)?;
    let fields = value.as_object().ok_or("not an object")?;
    let documented: BTreeSet<&str> = props.keys().filter_map(|k| k.as_str()).collect();
    assert_eq!(
        documented,
        fields.keys().map(String::as_str).collect::<BTreeSet<_>>()
    );
    for (name, v) in fields {
        if matches!(name.as_str(), "steps" | "prometheus") {
            continue;
        }
        let default = serde_json::to_value(&schema[name.as_str()]["default"])?;
        assert_eq!(&default, v, "default of {name}");
    }
    let check = &schema["prometheus"]["items"]["properties"];
    let documented: BTreeSet<&str> = check
        .as_mapping()
        .ok_or("no prometheus items")?
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(documented, BTreeSet::from(["url", "query", "max"]));
    Ok(())
}

/// The `enum` of the document's schema `name`.
fn documented_enum(name: &str) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(OPENAPI_YAML)?;
    let values = doc["components"]["schemas"][name]["enum"]
        .as_sequence()
        .ok_or_else(|| format!("schema {name} has no enum"))?;
    Ok(values
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}

#[test]
fn documented_enums_are_proto_s_tables() -> TestResult {
    use rollcage_proto::LifecycleEvent;
    use rollcage_proto::enroll::EnrollTokenStatus;
    use rollcage_proto::wire::{
        DeploymentStatus, DeploymentStyle, InstanceState, InstanceStatus, StepOutcome, StepState,
    };
    fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<String> {
        all.iter().map(|v| name(*v).to_owned()).collect()
    }
    let cases = [
        (
            "LifecycleEvent",
            names(&LifecycleEvent::ALL, LifecycleEvent::name),
        ),
        (
            "DeploymentStatus",
            names(DeploymentStatus::ALL, DeploymentStatus::name),
        ),
        ("Style", names(DeploymentStyle::ALL, DeploymentStyle::name)),
        (
            "InstanceStatus",
            names(InstanceStatus::ALL, InstanceStatus::name),
        ),
        ("StepState", names(StepState::ALL, StepState::name)),
        ("StepOutcome", names(StepOutcome::ALL, StepOutcome::name)),
        (
            "InstanceState",
            names(InstanceState::ALL, InstanceState::name),
        ),
        (
            "EnrollTokenStatus",
            names(EnrollTokenStatus::ALL, EnrollTokenStatus::name),
        ),
    ];
    for (schema, wire) in cases {
        assert_eq!(
            documented_enum(schema)?,
            wire,
            "schema {schema} of openapi.yaml"
        );
    }
    Ok(())
}

#[test]
fn the_documented_page_bounds_are_proto_s() -> TestResult {
    use rollcage_proto::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
    let doc: serde_yaml::Value = serde_yaml::from_str(OPENAPI_YAML)?;
    let limit = &doc["components"]["parameters"]["limit"]["schema"];
    assert_eq!(
        limit["default"].as_u64(),
        Some(u64::from(DEFAULT_PAGE_SIZE))
    );
    assert_eq!(limit["maximum"].as_u64(), Some(u64::from(MAX_PAGE_SIZE)));
    assert_eq!(limit["minimum"].as_u64(), Some(1));
    Ok(())
}

#[tokio::test]
async fn healthz_answers_ok_to_anyone_while_the_database_answers() -> TestResult {
    let st = state()?;
    for token in [None, Some("not-a-token"), Some(ADMIN)] {
        let (status, body) = call(&st, Method::GET, "/healthz", token, Body::empty()).await?;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"), "{token:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_with_a_reason_when_the_database_does_not_answer() -> TestResult {
    // SQLite, whose one connection a long read can hold (a PostgreSQL pool would serve the check beside it).
    let st = crate::testkit::state_over(
        crate::store::Store::open_in_memory()?,
        crate::testkit::settings(),
    )?;
    // The database held by something else past the check's deadline (a write that does not end).
    let (held, release) = (
        std::sync::mpsc::channel::<()>(),
        std::sync::mpsc::channel::<()>(),
    );
    let (held_tx, held_rx) = held;
    let (release_tx, release_rx) = release;
    let holder = {
        let st = st.clone();
        std::thread::spawn(move || {
            st.store.read(move |_| {
                let _ = held_tx.send(());
                let _ = release_rx.recv_timeout(health::DATABASE_DEADLINE * 3);
                Ok::<_, crate::store::StoreError>(())
            })
        })
    };
    held_rx.recv()?;
    let started = std::time::Instant::now();
    let (status, body) = call(&st, Method::GET, "/healthz", None, Body::empty()).await?;
    let took = started.elapsed();
    let _ = release_tx.send(());
    let _ = holder.join();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("database did not answer"), "{body}");
    assert!(
        took < health::DATABASE_DEADLINE * 2,
        "answered after {took:?}"
    );
    // Once the database answers again, so does the check.
    let (status, _) = call(&st, Method::GET, "/healthz", None, Body::empty()).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}
