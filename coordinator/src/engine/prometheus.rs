//! The external judge of a bake (issue 16 item 5): `[[canary.prometheus]]` instant queries, read from
//! Prometheus's HTTP API (`GET {url}/api/v1/query?query=…`, `http://` or `https://`) once per interval, right after
//! the LB's window, and handed to the pure judge ([`super::analysis`]) as one [`PromReading`] per check, in the
//! config's order. Only the reading is here; what a value means is the judge's.
//!
//! A reading is a number or why there is none. The judge fails an interval on either a value above the check's
//! `max` or no value at all: a judge that cannot see must not let a bad revision through. So an answer must be
//! exactly one number: a scalar, or a vector of one sample. An empty vector is not read as 0 — PromQL returns one
//! when the series does not exist yet, which is also what a misspelt metric looks like; queries that may have no
//! series are written `… or vector(0)` (said in the error). NaN and infinities (a rate over nothing, a division by
//! zero) are readings the judge refuses as unreadable.
//!
//! Bounded: each query has [`QUERY_TIMEOUT`] (all of an interval's checks run at once), an answer is read up to
//! [`MAX_ANSWER_BYTES`], and an error quotes at most [`MAX_QUOTE`] bytes of what Prometheus said.

use super::analysis::PromReading;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_proto::canary::PrometheusCheck;
use std::time::Duration;

/// One query's longest limit, connection included; an interval shorter than this bounds it further (a verdict must
/// not wait past its interval). A Prometheus that takes longer is as good as down for a verdict.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read: one number's JSON is under 200 bytes; a query that returns thousands of series is a
/// mistake the error names (it is not an aggregate).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How much of Prometheus's own error text an error quotes.
pub const MAX_QUOTE: usize = 300;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Reads `[[canary.prometheus]]` checks; one per coordinator, sharing its connection pool.
#[derive(Clone, Debug)]
pub struct PromReader {
    http: Client<Connector, Empty<Bytes>>,
}

impl PromReader {
    /// A reader trusting the web PKI's roots for `https://` Prometheus URLs.
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(QUERY_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            http: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    /// Every check's reading, in order, queried at once, each within `timeout` (at most [`QUERY_TIMEOUT`]).
    pub async fn read_all(
        &self,
        checks: &[PrometheusCheck],
        timeout: Duration,
    ) -> Vec<PromReading> {
        futures_util::future::join_all(checks.iter().map(|c| self.read_within(c, timeout))).await
    }

    /// One check's reading within [`QUERY_TIMEOUT`].
    pub async fn read(&self, check: &PrometheusCheck) -> PromReading {
        self.read_within(check, QUERY_TIMEOUT).await
    }

    /// One check's reading within `timeout` (at most [`QUERY_TIMEOUT`]).
    pub async fn read_within(&self, check: &PrometheusCheck, timeout: Duration) -> PromReading {
        let timeout = timeout.min(QUERY_TIMEOUT);
        let url = query_url(&check.url, &check.query)?;
        let ask = async {
            let resp = self
                .http
                .get(url.parse().map_err(|e| format!("{url}: {e}"))?)
                .await
                .map_err(|e| format!("{}: {}", check.url, error_chain(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("{}: reading the answer: {e}", check.url))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| format!("{}: no answer within {} ms", check.url, timeout.as_millis()))??;
        // Prometheus answers 400/422/503 with its JSON error body; its message says more than the status.
        parse_answer(&body).map_err(|e| {
            if status.is_success() {
                e
            } else {
                format!("HTTP {}: {e}", status.as_u16())
            }
        })
    }
}

/// Every check's reading through the coordinator's one reader (its connection pool lives as long as the process).
pub async fn evaluate(checks: &[PrometheusCheck], timeout: Duration) -> Vec<PromReading> {
    static READER: std::sync::OnceLock<PromReader> = std::sync::OnceLock::new();
    READER
        .get_or_init(PromReader::new)
        .read_all(checks, timeout)
        .await
}

impl Default for PromReader {
    fn default() -> Self {
        Self::new()
    }
}

/// `{base}/api/v1/query?query=…`, the query percent-encoded.
fn query_url(base: &str, query: &str) -> Result<String, String> {
    let mut url = url::Url::parse(base).map_err(|e| format!("{base}: {e}"))?;
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| format!("{base}: not a base URL"))?;
        path.pop_if_empty().extend(["api", "v1", "query"]);
    }
    url.query_pairs_mut().clear().append_pair("query", query);
    Ok(url.into())
}

/// The number in an answer of `/api/v1/query` (pure; see the module doc for what counts as one).
pub fn parse_answer(body: &[u8]) -> Result<f64, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| format!("not a Prometheus answer: {}", quote(body)))?;
    if v["status"] != "success" {
        let kind = v["errorType"].as_str().unwrap_or("error");
        let msg = v["error"].as_str().unwrap_or("(no message)");
        return Err(format!(
            "Prometheus refused the query ({kind}): {}",
            quote(msg.as_bytes())
        ));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) => {
                return Err("the query returned no series (a metric that does not exist yet looks the same; \
                     write `… or vector(0)` if none means zero)"
                    .to_owned());
            }
            Some(many) => {
                return Err(format!(
                    "the query returned {} series; expected one number (aggregate it, e.g. with sum or max)",
                    many.len()
                ));
            }
            None => return Err("a vector answer without a result list".to_owned()),
        },
        other => {
            return Err(format!(
                "the query returned a {}; expected a scalar or a one-series vector",
                other.unwrap_or("result of no type")
            ));
        }
    };
    // A sample is `[unix_time, "value"]`; the value is a string so that NaN and ±Inf can be spelt.
    let text = sample[1].as_str().ok_or_else(|| {
        format!(
            "a sample without a value: {}",
            quote(sample.to_string().as_bytes())
        )
    })?;
    let value: f64 = text.parse().map_err(|_| {
        format!(
            "the sample value `{}` is not a number",
            quote(text.as_bytes())
        )
    })?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!(
            "the query's value is {text} (no data in the range, or a division by zero)"
        ))
    }
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTE)]);
    let more = if bytes.len() > MAX_QUOTE { "…" } else { "" };
    format!("{}{more}", text.trim())
}

/// An error with its causes (hyper's own message is only "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "fixed inputs")]
    use super::*;

    #[test]
    fn an_answer_is_one_number_and_anything_else_says_why_not() {
        let ok = |b: &str| parse_answer(b.as_bytes());
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"0.25"]}]}}"#
            ),
            Ok(0.25)
        );
        assert_eq!(
            ok(r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"3"]}}"#),
            Ok(3.0)
        );
        let err = |b: &str| parse_answer(b.as_bytes()).unwrap_err();
        assert!(
            err(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
                .contains("or vector(0)")
        );
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(err(two).contains("returned 2 series"));
        assert!(
            err(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
                .contains("a matrix")
        );
        assert!(
            err(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#)
                .contains("NaN")
        );
        assert!(
            err(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#)
                .contains("+Inf")
        );
        assert!(
            err(r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#)
                .contains("(bad_data): parse error at char 5")
        );
        assert!(err("<html>proxy error</html>").contains("not a Prometheus answer: <html>"));
        let long = "x".repeat(5000);
        assert!(err(&long).len() < MAX_QUOTE + 64, "quotes are bounded");
    }

    #[test]
    fn the_query_goes_to_api_v1_query_under_the_base_path_encoded() {
        assert_eq!(
            query_url("http://127.0.0.1:9090", "sum(rate(x{a=\"b\"}[30s]))").unwrap(),
            "http://127.0.0.1:9090/api/v1/query?query=sum%28rate%28x%7Ba%3D%22b%22%7D%5B30s%5D%29%29"
        );
        assert_eq!(
            query_url("https://mon.example/prom/", "up").unwrap(),
            "https://mon.example/prom/api/v1/query?query=up"
        );
    }
}
