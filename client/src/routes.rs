//! Every path of the coordinator API the client calls, in one place (the coordinator's router is the other end:
//! `coordinator/src/api.rs`). Path segments come from operators, config files and the coordinator's own answers:
//! each is percent-encoded here, never spliced in raw, so a name cannot change which route is called.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rollcage_proto::access::AuditQuery;
use rollcage_proto::page::PageQuery;
use rollcage_proto::wire::{API_PREFIX, DeploymentQuery, LogQuery};
use std::fmt::{self, Write as _};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded, in segments and in query
/// values alike.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment or query value, percent-encoded when displayed.
struct Seg<'a>(&'a str);

impl fmt::Display for Seg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `.` and `..` are unreserved but mean "this" and "parent" to anything that normalises paths on the way:
        // as whole segments they are encoded too.
        if !self.0.is_empty() && self.0.bytes().all(|b| b == b'.') {
            return self.0.bytes().try_for_each(|_| f.write_str("%2E"));
        }
        write!(f, "{}", utf8_percent_encode(self.0, ENCODED))
    }
}

pub(crate) fn applications() -> String {
    format!("{API_PREFIX}/applications")
}

pub(crate) fn application(app: &str) -> String {
    format!("{API_PREFIX}/applications/{}", Seg(app))
}

pub(crate) fn groups(app: &str) -> String {
    format!("{}/groups", application(app))
}

pub(crate) fn group(app: &str, group: &str) -> String {
    format!("{}/{}", groups(app), Seg(group))
}

pub(crate) fn group_deliveries(app: &str, name: &str) -> String {
    format!("{}/deliveries", group(app, name))
}

pub(crate) fn revisions(app: &str) -> String {
    format!("{API_PREFIX}/applications/{}/revisions", Seg(app))
}

pub(crate) fn url_revisions(app: &str) -> String {
    format!("{}/url", revisions(app))
}

pub(crate) fn revision(app: &str, id: &str) -> String {
    format!("{}/{}", revisions(app), Seg(id))
}

pub(crate) fn deployments() -> String {
    format!("{API_PREFIX}/deployments")
}

pub(crate) fn deployment(id: &str) -> String {
    format!("{}/{}", deployments(), Seg(id))
}

/// The sub-resources and actions of a deployment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sub {
    Events,
    Stop,
    Continue,
    Rollback,
    Deliveries,
}

pub(crate) fn deployment_sub(id: &str, sub: Sub) -> String {
    let sub = match sub {
        Sub::Events => "events",
        Sub::Stop => "stop",
        Sub::Continue => "continue",
        Sub::Rollback => "rollback",
        Sub::Deliveries => "deliveries",
    };
    format!("{}/{sub}", deployment(id))
}

/// `…/logs?after=…&instance=…&event=…&wait_ms=…` (absent filters and a zero wait are left out).
pub(crate) fn deployment_logs(id: &str, q: &LogQuery) -> String {
    let mut path = format!("{}/logs", deployment(id));
    let mut sep = '?';
    let mut param = |name: &str, value: &dyn fmt::Display| {
        let _ = write!(path, "{sep}{name}={value}");
        sep = '&';
    };
    if let Some(after) = q.after {
        param("after", &after);
    }
    if let Some(i) = &q.instance {
        param("instance", &Seg(i));
    }
    if let Some(e) = &q.event {
        param("event", &Seg(e));
    }
    if let Some(w) = q.wait_ms.filter(|w| *w > 0) {
        param("wait_ms", &w);
    }
    path
}

pub(crate) fn instances() -> String {
    format!("{API_PREFIX}/instances")
}

/// A query string from `(name, value)` pairs whose value is given, each value encoded (`""` for none).
fn query(pairs: &[(&str, Option<&dyn fmt::Display>)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if let Some(v) = value {
            let sep = if out.is_empty() { '?' } else { '&' };
            let _ = write!(out, "{sep}{name}={}", Seg(&v.to_string()));
        }
    }
    out
}

/// A list route's path with its page query (`?limit=…&cursor=…`).
pub(crate) fn paged(path: &str, q: &PageQuery) -> String {
    let limit = q.limit.as_ref().map(|l| l as &dyn fmt::Display);
    let cursor = q.cursor.as_ref().map(|c| c as &dyn fmt::Display);
    format!("{path}{}", query(&[("limit", limit), ("cursor", cursor)]))
}

/// `/v1/deployments?application=…&group=…&limit=…&cursor=…` (absent ones left out).
pub(crate) fn deployments_page(q: &DeploymentQuery) -> String {
    fn shown(v: &Option<String>) -> Option<&dyn fmt::Display> {
        v.as_ref().map(|v| v as &dyn fmt::Display)
    }
    let limit = q.limit.as_ref().map(|l| l as &dyn fmt::Display);
    format!(
        "{}{}",
        deployments(),
        query(&[
            ("application", shown(&q.application)),
            ("group", shown(&q.group)),
            ("limit", limit),
            ("cursor", shown(&q.cursor)),
        ])
    )
}

pub(crate) fn tokens() -> String {
    format!("{API_PREFIX}/tokens")
}

pub(crate) fn token(name: &str) -> String {
    format!("{}/{}", tokens(), Seg(name))
}

pub(crate) fn whoami() -> String {
    format!("{API_PREFIX}/whoami")
}

/// `GET /v1/audit` with its filters and page query.
pub(crate) fn audit(q: &AuditQuery) -> String {
    let since = q.since_ms.as_ref().map(|v| v as &dyn fmt::Display);
    let actor = q.actor.as_ref().map(|v| v as &dyn fmt::Display);
    let limit = q.limit.as_ref().map(|v| v as &dyn fmt::Display);
    let cursor = q.cursor.as_ref().map(|v| v as &dyn fmt::Display);
    format!(
        "{API_PREFIX}/audit{}",
        query(&[
            ("since_ms", since),
            ("actor", actor),
            ("limit", limit),
            ("cursor", cursor)
        ])
    )
}

pub(crate) fn instance(name: &str) -> String {
    format!("{API_PREFIX}/instances/{}", Seg(name))
}

pub(crate) fn approve_instance(name: &str) -> String {
    format!("{}/approve", instance(name))
}

pub(crate) fn enroll_tokens() -> String {
    format!("{API_PREFIX}/enroll-tokens")
}

pub(crate) fn revoke_enroll_token(id: &str) -> String {
    format!("{}/{}/revoke", enroll_tokens(), Seg(id))
}

pub(crate) fn enroll() -> String {
    format!("{API_PREFIX}/agent/enroll")
}

pub(crate) fn hello() -> String {
    format!("{API_PREFIX}/agent/hello")
}

pub(crate) fn poll() -> String {
    format!("{API_PREFIX}/agent/poll")
}

pub(crate) fn reports() -> String {
    format!("{API_PREFIX}/agent/reports")
}

pub(crate) fn command(id: i64) -> String {
    format!("{API_PREFIX}/agent/commands/{id}")
}

pub(crate) fn bundle(app: &str, revision: &str) -> String {
    format!(
        "{API_PREFIX}/agent/applications/{}/revisions/{}/bundle",
        Seg(app),
        Seg(revision)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_names_are_encoded_and_cannot_change_the_route() {
        assert_eq!(
            group("a/b", "c d?e#f"),
            "/v1/applications/a%2Fb/groups/c%20d%3Fe%23f"
        );
        assert_eq!(
            revision("my.app_1-x~", "r-1"),
            "/v1/applications/my.app_1-x~/revisions/r-1"
        );
        assert_eq!(
            bundle("..", "."),
            "/v1/agent/applications/%2E%2E/revisions/%2E/bundle"
        );
        assert_eq!(
            deployment_sub("d%1", Sub::Stop),
            "/v1/deployments/d%251/stop"
        );
        assert_eq!(
            revoke_enroll_token("et-1/../x"),
            "/v1/enroll-tokens/et-1%2F..%2Fx/revoke"
        );
        assert_eq!(approve_instance("web 1"), "/v1/instances/web%201/approve");
        assert_eq!(
            revision("é", "@evil.example"),
            "/v1/applications/%C3%A9/revisions/%40evil.example"
        );
    }

    #[test]
    fn list_paths_carry_their_page_and_filters_encoded() {
        assert_eq!(paged(&instances(), &PageQuery::default()), "/v1/instances");
        let q = PageQuery {
            limit: Some(5),
            cursor: Some("a b".into()),
        };
        assert_eq!(
            paged(&groups("x"), &q),
            "/v1/applications/x/groups?limit=5&cursor=a%20b"
        );
        let d = DeploymentQuery {
            application: Some("shop&x".into()),
            group: None,
            limit: None,
            cursor: Some("42".into()),
        };
        assert_eq!(
            deployments_page(&d),
            "/v1/deployments?application=shop%26x&cursor=42"
        );
    }

    #[test]
    fn the_logs_path_carries_filters_cursor_and_wait_encoded() {
        let q = LogQuery {
            after: Some(7),
            instance: Some("a b&c".into()),
            event: Some("Install".into()),
            wait_ms: Some(20_000),
        };
        assert_eq!(
            deployment_logs("d-1", &q),
            "/v1/deployments/d-1/logs?after=7&instance=a%20b%26c&event=Install&wait_ms=20000"
        );
        let plain = LogQuery {
            after: Some(0),
            wait_ms: Some(0),
            ..Default::default()
        };
        assert_eq!(
            deployment_logs("d-1", &plain),
            "/v1/deployments/d-1/logs?after=0"
        );
        assert_eq!(
            deployment_logs("d 1", &LogQuery::default()),
            "/v1/deployments/d%201/logs"
        );
    }
}
