//! Several coordinators behind one [`crate::Client`]: the list of base URLs, the one the client stays on, and when
//! a failed call moves on to the next.
//!
//! A client is given one coordinator URL or several (`http://a:7700,http://b:7700`, the one syntax:
//! [`parse_bases`]). Every call starts at the coordinator that answered last (sticky, shared by every clone of the
//! client, so the agent's poll, reports and downloads stay together) and, when that one fails in a way another
//! coordinator can help with, sends the same request to the next, at most once round the list; the first success
//! becomes the sticky one. Every URL is reached through the same connection pool and the same TLS trust (CA file or
//! pinned fingerprint), so adding URLs never widens what is trusted.
//!
//! When a call moves on is [`moves_on`] (pure):
//! - no connection could be made (refused, unreachable, the connect timed out, the TLS handshake failed): always,
//!   whatever the call, since nothing reached the coordinator;
//! - the connection broke or timed out before the whole answer came, or the answer was a 5xx: only calls that are
//!   safe to send twice ([`Resend::Idempotent`]), since the first coordinator may have done the work;
//! - any other answer (2xx, 4xx) is the coordinator's word and is returned as it is.

use crate::error::ClientError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether a call may be sent again to another coordinator once one may have received it. Each route picks one
/// in the typed methods, with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Safe to send twice: GETs, and the agent's calls the coordinator deduplicates (polls only read, reports
    /// carry their command id).
    Idempotent,
    /// Sent again elsewhere only when it reached no coordinator at all (creations, enrollment, uploads).
    OnlyIfUnsent,
}

/// How one attempt failed, as far as moving on is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection was made: the request reached nobody.
    Unreached,
    /// The connection was made but broke, or no whole answer came in time: the request may have been handled.
    Broken,
    /// The coordinator answered 5xx.
    Server,
    /// The coordinator answered (a 4xx), or the call cannot be made at all (a bad header): its answer stands, and
    /// another coordinator would not change it.
    Final,
}

/// One attempt's error and how it failed.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: ClientError,
    pub(crate) how: Failure,
}

impl Failed {
    pub(crate) fn new(how: Failure, error: ClientError) -> Self {
        Self { error, how }
    }
}

/// Whether a call that failed `how` is sent to the next coordinator. Pure.
pub(crate) fn moves_on(how: Failure, resend: Resend) -> bool {
    match how {
        Failure::Unreached => true,
        Failure::Broken | Failure::Server => resend == Resend::Idempotent,
        Failure::Final => false,
    }
}

/// Split a `--coordinator` value into base URLs: one URL, or several separated by commas (spaces around them
/// are ignored). Each must be `http://` or `https://`; a trailing `/` is dropped. The one home of this syntax
/// (flags, `ROLLCAGE_COORDINATOR`, config files).
pub fn parse_bases(value: &str) -> Result<Vec<String>, ClientError> {
    let mut bases = Vec::new();
    for (i, part) in value.split(',').enumerate() {
        let base = part.trim().trim_end_matches('/');
        if base.is_empty() {
            return Err(ClientError::Config(format!(
                "coordinator list `{value}`: entry {} is empty: expected URLs separated by commas",
                i + 1
            )));
        }
        let host = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        if host.is_none_or(str::is_empty) {
            return Err(ClientError::Config(format!(
                "invalid coordinator URL `{base}`: expected http://HOST:PORT or https://HOST:PORT"
            )));
        }
        bases.push(base.to_owned());
    }
    Ok(bases)
}

/// The coordinators of a client, and the index of the one it stays on (shared by its clones).
#[derive(Debug, Clone)]
pub(crate) struct Bases {
    urls: Arc<[String]>,
    current: Arc<AtomicUsize>,
}

impl Bases {
    /// Every entry of `values` through [`parse_bases`] (so each may itself be a comma-separated list); at least one.
    pub(crate) fn new<S: AsRef<str>>(values: &[S]) -> Result<Self, ClientError> {
        let mut urls = Vec::new();
        for v in values {
            urls.extend(parse_bases(v.as_ref())?);
        }
        if urls.is_empty() {
            return Err(ClientError::Config(
                "no coordinator URL given: expected at least one".into(),
            ));
        }
        Ok(Self {
            urls: urls.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Every base URL, in the order they are tried.
    pub(crate) fn all(&self) -> &[String] {
        &self.urls
    }

    /// The base URL calls start at: the one that answered last (the first until then).
    pub(crate) fn current(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.urls.len();
        &self.urls[i]
    }

    /// Run `attempt` against the sticky coordinator and, while [`moves_on`] says so, against the next ones, at
    /// most once round the list. The coordinator that succeeds becomes the sticky one; one that failed a call
    /// that could not move on (a 5xx to a creation) gives its place to the next. When the call ends on a
    /// failure after more than one coordinator was tried, the error lists every attempt
    /// ([`ClientError::Failover`]); a coordinator's own answer (a 4xx) is returned as it is.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        resend: Resend,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failed>>,
    {
        let n = self.urls.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut tried: Vec<ClientError> = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let failed = match attempt(self.urls[i].clone()).await {
                Ok(v) => {
                    if i != start {
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(f) => f,
            };
            let next = (k + 1 < n && moves_on(failed.how, resend)).then(|| &self.urls[(i + 1) % n]);
            if next.is_none() && k == 0 && n > 1 && failed.how != Failure::Final {
                // Not sent on (it may have been done), but this coordinator is in trouble: when the caller decides
                // to send the call again, it goes to the next one, not back into the same trouble.
                self.current.store((i + 1) % n, Ordering::Relaxed);
            }
            if let Some(next) = next {
                // The error names method, URL and what happened; never a token (that is a header).
                tracing::warn!(from = %self.urls[i], to = %next, error = %failed.error,
                    "coordinator failed; moving on to the next");
            }
            if next.is_none() && (tried.is_empty() || failed.how == Failure::Final) {
                return Err(failed.error);
            }
            tried.push(failed.error);
            if next.is_none() {
                break;
            }
        }
        Err(ClientError::Failover { tried })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_safe_to_repeat_move_on_once_a_coordinator_may_have_had_them() {
        use Failure::*;
        use Resend::*;
        for (how, resend, want) in [
            (Unreached, Idempotent, true),
            (Unreached, OnlyIfUnsent, true),
            (Broken, Idempotent, true),
            (Broken, OnlyIfUnsent, false),
            (Server, Idempotent, true),
            (Server, OnlyIfUnsent, false),
            (Final, Idempotent, false),
            (Final, OnlyIfUnsent, false),
        ] {
            assert_eq!(moves_on(how, resend), want, "{how:?} {resend:?}");
        }
    }

    #[test]
    fn a_list_is_split_on_commas_and_each_url_checked() -> Result<(), ClientError> {
        assert_eq!(parse_bases("http://a:1")?, ["http://a:1"]);
        assert_eq!(
            parse_bases(" http://a:1/ , https://b:2")?,
            ["http://a:1", "https://b:2"]
        );
        for bad in [
            "",
            "http://a:1,",
            "http://a:1,,http://b",
            "ftp://a",
            "http://",
            "a:1",
        ] {
            let e = parse_bases(bad).err();
            assert!(
                matches!(e, Some(ClientError::Config(_))),
                "`{bad}` accepted: {e:?}"
            );
        }
        let e = parse_bases("http://a:1,b:2").err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("`b:2`")), "{e:?}");
        Ok(())
    }
}
