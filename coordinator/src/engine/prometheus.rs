//! The external judge of a bake (issue 16 item 5): each `[[canary.prometheus]]` entry is one instant query
//! (`GET {url}/api/v1/query?query=…`) per interval, its one number handed to the pure judge
//! (`analysis::judge`) alongside the LB's figures. Only the reading is here; what a value means is the judge's.
//!
//! A result must be one number: a `scalar`, or a `vector` of exactly one sample. Anything else — unreachable,
//! an HTTP or Prometheus error, an empty or several-sample vector, a body over [`MAX_BODY_BYTES`], no answer
//! within the timeout — is an `Err` the judge counts as a failing check. Plain `http://` only for now: an
//! `https://` URL is read as an error that says so (the settings accept it for when TLS lands).

use super::analysis::PromReading;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcage_proto::canary::PrometheusCheck;
use std::time::Duration;

/// A query answer larger than this is refused (one number fits in far less).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The longest a query may take: past this it counts as unavailable (the interval must not stall on it).
pub const MAX_QUERY_TIME: Duration = Duration::from_secs(5);

/// Evaluate every check (in order, concurrently), each within `timeout`.
pub async fn evaluate(checks: &[PrometheusCheck], timeout: Duration) -> Vec<PromReading> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let timeout = timeout.min(MAX_QUERY_TIME);
    let queries = checks.iter().map(|c| {
        let client = client.clone();
        async move {
            match tokio::time::timeout(timeout, query(&client, c)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            }
        }
    });
    futures_util::future::join_all(queries).await
}

async fn query(
    client: &Client<HttpConnector, Empty<Bytes>>,
    check: &PrometheusCheck,
) -> PromReading {
    let mut url = url::Url::parse(&check.url).map_err(|e| format!("url `{}`: {e}", check.url))?;
    if url.scheme() != "http" {
        return Err(format!(
            "`{}`: only http:// Prometheus URLs are read for now",
            check.url
        ));
    }
    url.path_segments_mut()
        .map_err(|()| format!("url `{}` cannot take a path", check.url))?
        .pop_if_empty()
        .extend(["api", "v1", "query"]);
    url.query_pairs_mut().append_pair("query", &check.query);
    let uri: hyper::Uri = url
        .as_str()
        .parse()
        .map_err(|e| format!("url `{url}`: {e}"))?;
    let resp = client
        .get(uri)
        .await
        .map_err(|e| format!("GET {}: {e}", check.url))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("HTTP {status}: not a Prometheus answer: {e}"))?;
    parse_answer(&value)
}

/// The one number of a Prometheus `/api/v1/query` answer.
pub fn parse_answer(v: &serde_json::Value) -> PromReading {
    if v["status"] != "success" {
        return Err(format!(
            "prometheus error: {} {}",
            v["errorType"].as_str().unwrap_or("?"),
            v["error"].as_str().unwrap_or("")
        ));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some(many) => {
                return Err(format!(
                    "the query gave {} samples: expected exactly one number",
                    many.len()
                ));
            }
            None => return Err("a vector without samples".to_owned()),
        },
        other => {
            return Err(format!(
                "result type {}: expected a scalar or a one-sample vector",
                other.unwrap_or("missing")
            ));
        }
    };
    let text = sample[1]
        .as_str()
        .ok_or_else(|| "a sample without a value".to_owned())?;
    // Prometheus writes NaN and ±Inf as strings too; the judge refuses non-finite values itself.
    text.parse::<f64>()
        .map_err(|e| format!("sample value `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_number_is_read_from_a_scalar_or_a_one_sample_vector() {
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.25"]}});
        assert_eq!(parse_answer(&scalar), Ok(0.25));
        let vector = json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {"job": "app"}, "value": [1.0, "3"]}]}});
        assert_eq!(parse_answer(&vector), Ok(3.0));
        let empty = json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        assert!(parse_answer(&empty).is_err_and(|e| e.contains("0 samples")));
        let two = json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"value": [1.0, "3"]}, {"value": [1.0, "4"]}]}});
        assert!(parse_answer(&two).is_err_and(|e| e.contains("2 samples")));
        let error = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        assert!(parse_answer(&error).is_err_and(|e| e.contains("bad_data parse error")));
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(parse_answer(&matrix).is_err_and(|e| e.contains("matrix")));
    }

    #[tokio::test]
    async fn an_unreachable_or_https_prometheus_is_an_error_not_a_pass() {
        let check = |url: &str| PrometheusCheck {
            url: url.to_owned(),
            query: "up".to_owned(),
            max: 1.0,
        };
        // Port 9 (discard) on loopback: nothing listens.
        let got = evaluate(
            &[check("http://127.0.0.1:9"), check("https://127.0.0.1:9")],
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err(), "{got:?}");
        assert!(
            got[1].as_ref().is_err_and(|e| e.contains("only http://")),
            "{got:?}"
        );
    }
}
