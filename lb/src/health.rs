//! Active health checks: one task per server sends `GET <path>` every interval on a fresh connection and feeds
//! the result to the server's `HealthTracker`; a change of health rebuilds the group's eligible list.

use crate::group::{Group, Server, lock};
use crate::policy::Thresholds;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{HeaderValue, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// HTTP client of the health checker.
pub(crate) type HealthClient = Client<HttpConnector, Empty<Bytes>>;

/// A client that opens a new connection per check: a check must prove the server still accepts
/// connections, which a pooled connection would not.
pub(crate) fn client() -> HealthClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Starts checking `server` until it leaves the group or the load balancer stops. The first check runs at once.
pub(crate) fn spawn(
    tasks: &TaskTracker,
    client: HealthClient,
    group: Arc<Group>,
    server: Arc<Server>,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let spec = group.health.clone();
        let thresholds = Thresholds {
            healthy: spec.healthy_threshold,
            unhealthy: spec.unhealthy_threshold,
        };
        let interval = Duration::from_millis(spec.interval_ms.max(10));
        let timeout = Duration::from_millis(spec.timeout_ms.max(10));
        let uri = format!("http://{}{}", server.authority, spec.path);
        loop {
            let result = tokio::select! {
                r = check(&client, &uri, timeout) => r,
                () = server.removed.cancelled() => return,
                () = shutdown.cancelled() => return,
            };
            let changed = {
                let mut st = lock(&server.state);
                st.last_check_error = result.as_ref().err().cloned();
                st.health.observe(result.is_ok(), thresholds)
            };
            if let Some(healthy) = changed {
                tracing::info!(group = %group.name, server = %server.address, healthy,
                    error = ?result.err(), "server health changed");
                group.refresh();
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = server.removed.cancelled() => return,
                () = shutdown.cancelled() => return,
            }
        }
    });
}

/// One check: passes on a 2xx or 3xx answer within `timeout`.
async fn check(client: &HealthClient, uri: &str, timeout: Duration) -> Result<(), String> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = uri
        .parse()
        .map_err(|e| format!("bad check URI {uri}: {e}"))?;
    req.headers_mut()
        .insert(USER_AGENT, HeaderValue::from_static("rollcage-lb-health"));
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(e)) => Err(format!("GET {uri}: {}", crate::error::chain(&e))),
        Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection() => Ok(()),
        Ok(Ok(resp)) => Err(format!("GET {uri}: status {}", resp.status())),
    }
}
