//! Progressive delivery settings of a group's load balancer: the `[canary]` table of a `blue-green` group
//! (weighted steps of traffic on the new server group, each baked and judged) and the `[analysis]` table of an
//! `in-place-lb` group (each instance's server judged against the group's other servers before the next instance
//! starts). Both are one type, [`AnalysisConfig`]; only `[canary]` has `steps`.
//!
//! ```toml
//! [canary]
//! steps = [10, 50, 100]     # percent of traffic on the new server group, in order; the last must be 100
//! bake_secs = 30            # how long each step lasts before the next
//! interval_secs = 5         # one analysis per interval during a bake
//! min_requests = 50         # fewer requests of the new group in an interval: no verdict for it
//! max_error_rate = 0.01     # 5xx / requests of the new group in the interval
//! max_p99_ratio = 1.5       # new group's p99 / old group's p99 in the same interval (HAProxy: average)
//! failure_limit = 1         # failing intervals tolerated before the abort
//! [[canary.prometheus]]     # optional: evaluated each interval alongside the LB's figures
//! url = "http://127.0.0.1:9090"
//! query = 'sum(rate(http_errors_total{job="app"}[30s]))'
//! max = 0.5                 # the query's value above this fails the interval
//! ```
//!
//! Every field but `steps` has a default (the values above, the issue's example); a group stored before these
//! tables existed has neither and deploys as before. Validation ([`AnalysisConfig::check_into`], called by
//! [`crate::lb::GroupLb::check`]) reports every problem with its path from the group (`lb.canary.steps[2]`).
//! What a verdict and a bake are: [`crate::bake`].

use crate::problem::FieldProblems;
use crate::traffic::Weight;
use serde::{Deserialize, Deserializer, Serialize};

/// Default bake of a step (or of an instance): 30 s, long enough for 6 intervals of the default 5 s.
pub const DEFAULT_BAKE_SECS: u64 = 30;
/// Default interval: 5 s, so an abort lands within about `interval_secs` + 1 s of the first bad answers.
pub const DEFAULT_INTERVAL_SECS: u64 = 5;
/// Default request floor for a verdict: 50, below which one 5xx is already a 2 % error rate.
pub const DEFAULT_MIN_REQUESTS: u64 = 50;
/// Default error-rate ceiling: 1 % of the new group's requests.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;
/// Default latency ceiling: the new group's p99 at most 1.5 × the old group's.
pub const DEFAULT_MAX_P99_RATIO: f64 = 1.5;
/// Default tolerance: one failing interval is forgiven, the second aborts.
pub const DEFAULT_FAILURE_LIMIT: u32 = 1;

/// At most 20 steps: a 5 % staircase to 100.
pub const MAX_STEPS: usize = 20;
/// A bake lasts at most a day: a deployment that holds a split longer is a forgotten one.
pub const MAX_BAKE_SECS: u64 = 86_400;
/// An interval lasts at most an hour (HAProxy's averages cover only its last 1024 requests anyway).
pub const MAX_INTERVAL_SECS: u64 = 3_600;
/// At most 10 million requests per interval asked for before a verdict (more would never be reached).
pub const MAX_MIN_REQUESTS: u64 = 10_000_000;
/// A latency ratio ceiling above 1000 would never fail: refused as a mistake.
pub const MAX_P99_RATIO: f64 = 1_000.0;
/// At most 1000 failing intervals tolerated.
pub const MAX_FAILURE_LIMIT: u32 = 1_000;
/// At most 8 Prometheus checks per interval (each is one HTTP query per interval).
pub const MAX_PROMETHEUS_CHECKS: usize = 8;
/// Longest Prometheus URL accepted.
pub const MAX_PROMETHEUS_URL_LEN: usize = 2_048;
/// Longest PromQL query accepted.
pub const MAX_PROMETHEUS_QUERY_LEN: usize = 4_096;

/// The `[canary]` (with `steps`) or `[analysis]` (without) table of a group's LB settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// `[canary]` only: percent of traffic on the new server group at each step, strictly increasing, ending at
    /// 100. Required there (no default: the staircase is the point of a canary); refused in `[analysis]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<u64>,
    /// How long each step (canary) or each instance (analysis) is judged before moving on.
    #[serde(default = "default_bake")]
    pub bake_secs: u64,
    /// One verdict per interval; a bake is `ceil(bake_secs / interval_secs)` intervals.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Fewer requests of the new group (server) in an interval: no verdict for it.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Highest `5xx / requests` of the new group (server) in an interval that passes.
    #[serde(default = "default_max_error_rate", deserialize_with = "finite")]
    pub max_error_rate: f64,
    /// Highest new/old latency ratio in the same interval that passes (p99; HAProxy: average response time).
    #[serde(default = "default_max_p99_ratio", deserialize_with = "finite")]
    pub max_p99_ratio: f64,
    /// Failing intervals tolerated: the one after the `failure_limit`-th aborts.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
    /// External checks evaluated each interval alongside the LB's figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prometheus: Vec<PrometheusCheck>,
}

/// One `[[canary.prometheus]]` entry: an instant query whose value must stay at or below `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusCheck {
    /// Prometheus base URL, `http(s)://HOST[:PORT][/PATH]` (the query goes to `{url}/api/v1/query`).
    pub url: String,
    /// PromQL query; its result must be one number (a scalar or a one-element vector).
    pub query: String,
    /// Highest value that passes.
    #[serde(deserialize_with = "finite")]
    pub max: f64,
}

/// A float that JSON can hold: TOML and YAML spell `nan` and `inf`, which the coordinator could not store (JSON has
/// no such numbers), so they are refused where they are read, with the reader's location.
fn finite<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v}: expected a finite number"
        )))
    }
}

fn default_bake() -> u64 {
    DEFAULT_BAKE_SECS
}
fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SECS
}
fn default_min_requests() -> u64 {
    DEFAULT_MIN_REQUESTS
}
fn default_max_error_rate() -> f64 {
    DEFAULT_MAX_ERROR_RATE
}
fn default_max_p99_ratio() -> f64 {
    DEFAULT_MAX_P99_RATIO
}
fn default_failure_limit() -> u32 {
    DEFAULT_FAILURE_LIMIT
}

/// Which table is checked: the steps rule differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `[canary]` of a blue-green group: `steps` required.
    Canary,
    /// `[analysis]` of an in-place-lb group: no `steps`.
    Analysis,
}

impl AnalysisConfig {
    /// The thresholds with every default and the given steps (for code that builds settings, and tests).
    pub fn with_steps(steps: &[u64]) -> Self {
        Self {
            steps: steps.to_vec(),
            bake_secs: DEFAULT_BAKE_SECS,
            interval_secs: DEFAULT_INTERVAL_SECS,
            min_requests: DEFAULT_MIN_REQUESTS,
            max_error_rate: DEFAULT_MAX_ERROR_RATE,
            max_p99_ratio: DEFAULT_MAX_P99_RATIO,
            failure_limit: DEFAULT_FAILURE_LIMIT,
            prometheus: Vec::new(),
        }
    }

    /// Intervals in one bake: `ceil(bake_secs / interval_secs)`, at least 1. A bake is counted in judged
    /// intervals, not wall time, so a restarted coordinator resumes it exactly (the window marks it persists
    /// make the intervals gapless).
    pub fn intervals_per_bake(&self) -> u32 {
        let per = self.bake_secs.div_ceil(self.interval_secs.max(1)).max(1);
        u32::try_from(per).unwrap_or(u32::MAX)
    }

    /// The steps as weights (valid settings only: a step above 100 is left out).
    pub fn step_weights(&self) -> Vec<Weight> {
        self.steps
            .iter()
            .filter_map(|s| Weight::new(*s).ok())
            .collect()
    }

    /// Record every problem of the table at `prefix` (`lb.canary`, `lb.analysis`).
    pub fn check_into(&self, table: Table, prefix: &str, p: &mut FieldProblems) {
        let at = |field: &str| format!("{prefix}.{field}");
        match table {
            Table::Canary => self.check_steps(prefix, p),
            Table::Analysis => {
                if !self.steps.is_empty() {
                    p.add(
                        at("steps"),
                        "only `[canary]` has steps: `[analysis]` judges each instance once, for `bake_secs`",
                    );
                }
            }
        }
        if self.interval_secs == 0 || self.interval_secs > MAX_INTERVAL_SECS {
            p.add(
                at("interval_secs"),
                format!(
                    "{}: expected 1 to {MAX_INTERVAL_SECS} seconds",
                    self.interval_secs
                ),
            );
        }
        if self.bake_secs > MAX_BAKE_SECS {
            p.add(
                at("bake_secs"),
                format!(
                    "{}: expected at most {MAX_BAKE_SECS} seconds",
                    self.bake_secs
                ),
            );
        } else if self.bake_secs < self.interval_secs || self.bake_secs == 0 {
            p.add(
                at("bake_secs"),
                format!(
                    "{}: expected at least `interval_secs` ({}): a bake holds one interval or more",
                    self.bake_secs, self.interval_secs
                ),
            );
        }
        if self.min_requests == 0 || self.min_requests > MAX_MIN_REQUESTS {
            p.add(
                at("min_requests"),
                format!(
                    "{}: expected 1 to {MAX_MIN_REQUESTS} requests",
                    self.min_requests
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            p.add(
                at("max_error_rate"),
                format!(
                    "{}: expected a fraction from 0 to 1 (0.01 = 1 %)",
                    self.max_error_rate
                ),
            );
        }
        if !(self.max_p99_ratio > 0.0 && self.max_p99_ratio <= MAX_P99_RATIO) {
            p.add(
                at("max_p99_ratio"),
                format!(
                    "{}: expected a ratio above 0 and at most {MAX_P99_RATIO}",
                    self.max_p99_ratio
                ),
            );
        }
        if self.failure_limit > MAX_FAILURE_LIMIT {
            p.add(
                at("failure_limit"),
                format!(
                    "{}: expected 0 to {MAX_FAILURE_LIMIT} failing intervals",
                    self.failure_limit
                ),
            );
        }
        if self.prometheus.len() > MAX_PROMETHEUS_CHECKS {
            p.add(
                at("prometheus"),
                format!(
                    "{} checks: expected at most {MAX_PROMETHEUS_CHECKS}",
                    self.prometheus.len()
                ),
            );
        }
        for (i, c) in self.prometheus.iter().enumerate() {
            c.check_into(&format!("{prefix}.prometheus[{i}]"), p);
        }
    }

    fn check_steps(&self, prefix: &str, p: &mut FieldProblems) {
        let at = format!("{prefix}.steps");
        if self.steps.is_empty() {
            p.add(
                at,
                "expected the percentages of traffic on the new group, in order, ending at 100 (e.g. [10, 50, 100])",
            );
            return;
        }
        if self.steps.len() > MAX_STEPS {
            p.add(
                at,
                format!("{} steps: expected at most {MAX_STEPS}", self.steps.len()),
            );
            return;
        }
        let mut previous = 0;
        for (i, &s) in self.steps.iter().enumerate() {
            let path = format!("{at}[{i}]");
            if !(1..=100).contains(&s) {
                p.add(path, format!("{s}: expected a percentage from 1 to 100"));
            } else if s <= previous {
                p.add(
                    path,
                    format!(
                        "{s}: expected more than the step before ({previous}): steps only go up"
                    ),
                );
            } else if i + 1 == self.steps.len() && s != 100 {
                p.add(
                    path,
                    format!("{s}: the last step must be 100 (all traffic on the new group)"),
                );
            }
            if s <= 100 {
                // An out-of-range step is reported once, not again as the one the next step must exceed.
                previous = previous.max(s);
            }
        }
    }
}

impl PrometheusCheck {
    fn check_into(&self, prefix: &str, p: &mut FieldProblems) {
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
        if self.url.len() > MAX_PROMETHEUS_URL_LEN {
            p.add(
                format!("{prefix}.url"),
                format!(
                    "{} bytes: expected at most {MAX_PROMETHEUS_URL_LEN}",
                    self.url.len()
                ),
            );
        } else if host.is_none_or(str::is_empty)
            || self
                .url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            p.add(
                format!("{prefix}.url"),
                format!("`{}`: expected `http(s)://HOST[:PORT][/PATH]`", self.url),
            );
        }
        if self.query.trim().is_empty() || self.query.len() > MAX_PROMETHEUS_QUERY_LEN {
            p.add(
                format!("{prefix}.query"),
                format!("expected a PromQL query of 1 to {MAX_PROMETHEUS_QUERY_LEN} bytes"),
            );
        }
        if !self.max.is_finite() {
            p.add(
                format!("{prefix}.max"),
                format!("{}: expected a finite number", self.max),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::GroupLb;
    use crate::wire::DeploymentStyle::{self, BlueGreen, InPlaceLb};
    use serde_json::{Value, json};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Blue/green settings with `table` as `canary` (or `analysis` for in-place-lb).
    fn group(key: &str, table: Value) -> Value {
        let mut v = json!({
            "active_group": "blue",
            "targets": { "a": "127.0.0.1:8081", "b": "127.0.0.1:8082" },
            "lb": {
                "service": "app1",
                "driver": { "kind": "builtin", "admin_url": "http://127.0.0.1:9000", "token_file": "/tmp/t" },
                "server_groups": { "blue": ["127.0.0.1:8081"], "green": ["127.0.0.1:8082"] }
            }
        });
        v[key] = table;
        v
    }

    /// The problems' paths (`["ok"]` when none) of `table` under `key` for `style`.
    fn paths(style: DeploymentStyle, key: &str, table: Value) -> Vec<String> {
        match serde_json::from_value::<GroupLb>(group(key, table)) {
            Ok(s) => match GroupLb::check(style, &[], Some(&s)) {
                Ok(()) => vec!["ok".into()],
                Err(p) => p.paths().into_iter().map(str::to_owned).collect(),
            },
            Err(e) => vec![format!("does not parse: {e}")],
        }
    }

    fn message(style: DeploymentStyle, key: &str, table: Value) -> String {
        serde_json::from_value::<GroupLb>(group(key, table))
            .map_err(|e| e.to_string())
            .and_then(|s| GroupLb::check(style, &[], Some(&s)).map_err(|p| p.to_string()))
            .err()
            .unwrap_or_default()
    }

    fn canary(change: Value) -> Value {
        let mut v = json!({"steps": [10, 50, 100]});
        if let (Some(m), Value::Object(c)) = (v.as_object_mut(), change) {
            m.extend(c);
        }
        v
    }

    #[test]
    fn the_issues_example_parses_from_toml_with_every_field() -> TestResult {
        let text = r#"
active_group = "blue"
[targets]
a = "127.0.0.1:8081"
[lb]
service = "app1"
[lb.driver]
kind = "builtin"
admin_url = "http://127.0.0.1:9000"
token_file = "/tmp/t"
[lb.server_groups]
blue = ["127.0.0.1:8081"]
green = ["127.0.0.1:8082"]
[canary]
steps = [10, 50, 100]
bake_secs = 30
interval_secs = 5
min_requests = 50
max_error_rate = 0.01
max_p99_ratio = 1.5
failure_limit = 1
[[canary.prometheus]]
url = "http://127.0.0.1:9090"
query = 'sum(rate(http_errors_total{job="app"}[30s]))'
max = 0.5
"#;
        let s: GroupLb = toml::from_str(text)?;
        s.validate(BlueGreen, &[])?;
        let c = s.canary.as_ref().ok_or("no canary")?;
        let expected = AnalysisConfig {
            prometheus: vec![PrometheusCheck {
                url: "http://127.0.0.1:9090".into(),
                query: r#"sum(rate(http_errors_total{job="app"}[30s]))"#.into(),
                max: 0.5,
            }],
            ..AnalysisConfig::with_steps(&[10, 50, 100])
        };
        assert_eq!(c, &expected);
        assert_eq!(c.intervals_per_bake(), 6);
        assert_eq!(
            c.step_weights()
                .iter()
                .map(|w| w.percent())
                .collect::<Vec<_>>(),
            [10, 50, 100]
        );
        // Stored as JSON and read back the same.
        let back: GroupLb = serde_json::from_str(&serde_json::to_string(&s)?)?;
        assert_eq!(back, s);
        Ok(())
    }

    #[test]
    fn left_out_fields_take_the_documented_defaults() -> TestResult {
        let s: GroupLb = serde_json::from_value(group("canary", json!({"steps": [100]})))?;
        assert_eq!(s.canary, Some(AnalysisConfig::with_steps(&[100])));
        let s: GroupLb = serde_json::from_value(group("analysis", json!({})))?;
        let a = s.analysis.ok_or("no analysis")?;
        assert_eq!(
            (
                a.bake_secs,
                a.interval_secs,
                a.min_requests,
                a.max_error_rate,
                a.max_p99_ratio,
                a.failure_limit
            ),
            (30, 5, 50, 0.01, 1.5, 1)
        );
        // 7 s in 5 s intervals: two intervals (the bake is never shorter than asked).
        let c = AnalysisConfig {
            bake_secs: 7,
            ..AnalysisConfig::with_steps(&[100])
        };
        assert_eq!(c.intervals_per_bake(), 2);
        Ok(())
    }

    #[test]
    fn groups_stored_without_the_tables_still_load_and_keep_their_shape() -> TestResult {
        let old = group("wait_for_continue", json!(true));
        let s: GroupLb = serde_json::from_value(old.clone())?;
        assert_eq!((&s.canary, &s.analysis), (&None, &None));
        assert_eq!(serde_json::to_value(&s)?, old);
        Ok(())
    }

    #[test]
    fn each_table_belongs_to_its_style() {
        assert_eq!(paths(BlueGreen, "canary", canary(json!({}))), ["ok"]);
        assert_eq!(paths(InPlaceLb, "analysis", json!({})), ["ok"]);
        assert_eq!(paths(InPlaceLb, "canary", canary(json!({}))), ["lb.canary"]);
        assert_eq!(paths(BlueGreen, "analysis", json!({})), ["lb.analysis"]);
        assert!(
            message(InPlaceLb, "canary", canary(json!({}))).contains("use `[analysis]`"),
            "{}",
            message(InPlaceLb, "canary", canary(json!({})))
        );
        assert_eq!(
            paths(InPlaceLb, "analysis", json!({"steps": [100]})),
            ["lb.analysis.steps"]
        );
    }

    #[test]
    fn steps_go_up_from_1_and_end_at_100() {
        let steps = |s: Value| paths(BlueGreen, "canary", json!({ "steps": s }));
        assert_eq!(steps(json!([100])), ["ok"]);
        assert_eq!(steps(json!([1, 2, 100])), ["ok"]);
        assert_eq!(steps(json!([])), ["lb.canary.steps"]);
        assert_eq!(paths(BlueGreen, "canary", json!({})), ["lb.canary.steps"]);
        assert_eq!(steps(json!([10, 50, 90])), ["lb.canary.steps[2]"]);
        assert_eq!(
            message(BlueGreen, "canary", json!({"steps": [10, 50, 90]})),
            "lb.canary.steps[2]: 90: the last step must be 100 (all traffic on the new group)"
        );
        assert_eq!(steps(json!([0, 50, 100])), ["lb.canary.steps[0]"]);
        assert_eq!(steps(json!([10, 150, 100])), ["lb.canary.steps[1]"]);
        assert_eq!(steps(json!([50, 10, 100])), ["lb.canary.steps[1]"]);
        assert_eq!(steps(json!([10, 10, 100])), ["lb.canary.steps[1]"]);
        assert_eq!(
            steps(json!([10, 100, 100])),
            ["lb.canary.steps[2]"],
            "a repeated 100 is not an increase"
        );
        let many: Vec<u64> = (1..=21).map(|i| i * 4).chain([100]).collect();
        assert_eq!(steps(json!(many)), ["lb.canary.steps"]);
        let twenty: Vec<u64> = (1..=20).map(|i| i * 5).collect();
        assert_eq!(steps(json!(twenty)), ["ok"]);
        assert!(steps(json!([-10, 100]))[0].starts_with("does not parse"));
    }

    #[test]
    fn every_threshold_is_bounded_and_named() {
        let field = |change: Value| paths(BlueGreen, "canary", canary(change));
        let cases = [
            (json!({"interval_secs": 0}), "lb.canary.interval_secs"),
            (
                json!({"interval_secs": 3601, "bake_secs": 7200}),
                "lb.canary.interval_secs",
            ),
            (json!({"bake_secs": 4}), "lb.canary.bake_secs"),
            (json!({"bake_secs": 86_401}), "lb.canary.bake_secs"),
            (json!({"min_requests": 0}), "lb.canary.min_requests"),
            (
                json!({"min_requests": 10_000_001}),
                "lb.canary.min_requests",
            ),
            (json!({"max_error_rate": -0.01}), "lb.canary.max_error_rate"),
            (json!({"max_error_rate": 1.5}), "lb.canary.max_error_rate"),
            (json!({"max_p99_ratio": 0}), "lb.canary.max_p99_ratio"),
            (json!({"max_p99_ratio": -1}), "lb.canary.max_p99_ratio"),
            (json!({"max_p99_ratio": 1001}), "lb.canary.max_p99_ratio"),
            (json!({"failure_limit": 1001}), "lb.canary.failure_limit"),
        ];
        for (change, path) in cases {
            assert_eq!(field(change.clone()), [path], "{change}");
        }
        let fine = [
            json!({"interval_secs": 1, "bake_secs": 1}),
            json!({"interval_secs": 3600, "bake_secs": 86_400}),
            json!({"max_error_rate": 0, "failure_limit": 0, "min_requests": 1}),
            json!({"max_error_rate": 1, "max_p99_ratio": 1000, "failure_limit": 1000}),
        ];
        for change in fine {
            assert_eq!(field(change.clone()), ["ok"], "{change}");
        }
        assert_eq!(
            message(BlueGreen, "canary", canary(json!({"bake_secs": 4}))),
            "lb.canary.bake_secs: 4: expected at least `interval_secs` (5): a bake holds one interval or more"
        );
        // Every problem at once, with the analysis prefix on an in-place-lb group.
        assert_eq!(
            paths(
                InPlaceLb,
                "analysis",
                json!({"interval_secs": 0, "max_error_rate": 2, "max_p99_ratio": 0})
            ),
            [
                "lb.analysis.interval_secs",
                "lb.analysis.max_error_rate",
                "lb.analysis.max_p99_ratio"
            ]
        );
        // A typo is refused, not ignored.
        assert!(field(json!({"max_eror_rate": 0.1}))[0].starts_with("does not parse"));
    }

    #[test]
    fn non_finite_thresholds_are_refused() {
        for text in [
            "steps = [100]\nmax_error_rate = nan",
            "steps = [100]\nmax_p99_ratio = inf",
            "steps = [100]\n[[prometheus]]\nurl = \"http://p\"\nquery = \"up\"\nmax = -inf",
        ] {
            let e = toml::from_str::<AnalysisConfig>(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("expected a finite number"), "{text}: {e}");
        }
        // Built in code rather than read: the check still names them.
        let c = AnalysisConfig {
            max_error_rate: f64::NAN,
            max_p99_ratio: f64::INFINITY,
            ..AnalysisConfig::with_steps(&[100])
        };
        let mut p = FieldProblems::default();
        c.check_into(Table::Canary, "lb.canary", &mut p);
        assert_eq!(
            p.paths(),
            ["lb.canary.max_error_rate", "lb.canary.max_p99_ratio"]
        );
    }

    #[test]
    fn thresholds_survive_the_json_the_coordinator_stores_them_in() -> TestResult {
        // 17 significant digits: the default JSON float parser may miss such values by one unit in the last
        // place; the settings are stored as JSON, so what is read back must be what was checked.
        for v in [
            0.1 + 0.2,
            0.123_456_789_012_345_68,
            1.0 / 3.0,
            5e-324,
            999.999_999_999_999_9,
        ] {
            let c = AnalysisConfig {
                max_error_rate: v / 1000.0,
                max_p99_ratio: v,
                ..AnalysisConfig::with_steps(&[100])
            };
            let back: AnalysisConfig = serde_json::from_str(&serde_json::to_string(&c)?)?;
            assert_eq!(back, c, "{v}");
        }
        Ok(())
    }

    #[test]
    fn prometheus_checks_are_http_urls_queries_and_numbers() {
        let prom =
            |checks: Value| paths(BlueGreen, "canary", canary(json!({ "prometheus": checks })));
        let ok = json!({"url": "https://prom.example:9090/sub", "query": "up", "max": 0});
        assert_eq!(prom(json!([ok])), ["ok"]);
        for bad_url in ["ftp://p:9090", "http://", "prom:9090", "http://p 9090", ""] {
            let mut c = ok.clone();
            c["url"] = bad_url.into();
            assert_eq!(
                prom(json!([ok, c])),
                ["lb.canary.prometheus[1].url"],
                "{bad_url}"
            );
        }
        let mut c = ok.clone();
        c["url"] = format!("http://p/{}", "x".repeat(MAX_PROMETHEUS_URL_LEN)).into();
        assert_eq!(prom(json!([c])), ["lb.canary.prometheus[0].url"]);
        for bad_query in [" ".to_owned(), "q".repeat(MAX_PROMETHEUS_QUERY_LEN + 1)] {
            let mut c = ok.clone();
            c["query"] = bad_query.into();
            assert_eq!(prom(json!([c])), ["lb.canary.prometheus[0].query"]);
        }
        let nine: Vec<Value> = (0..9).map(|_| ok.clone()).collect();
        assert_eq!(prom(json!(nine)), ["lb.canary.prometheus"]);
        let mut c = ok.clone();
        c.as_object_mut().map(|m| m.remove("max"));
        assert!(prom(json!([c]))[0].starts_with("does not parse"));
        let mut p = FieldProblems::default();
        PrometheusCheck {
            url: "http://p".into(),
            query: "up".into(),
            max: f64::INFINITY,
        }
        .check_into("x", &mut p);
        assert_eq!(p.paths(), ["x.max"]);
    }
}
