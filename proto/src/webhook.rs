//! Notifications: a deployment group's webhooks (issue 15). What a group's webhook settings are and how they are
//! checked, the events the coordinator posts, the JSON body of one post, its headers, and a delivery as the API
//! lists it. The coordinator signs and delivers (`coordinator/src/webhooks.rs`); a receiver reads this contract
//! (documented with a verification snippet in `coordinator/README.md`).

use crate::problem::FieldProblems;
use serde::{Deserialize, Serialize};

/// At most this many webhooks per group: each event is one outbox row per endpoint.
pub const MAX_WEBHOOKS: usize = 8;
/// Longest webhook URL, in bytes (as a Prometheus URL of a canary).
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Shortest signing secret, in bytes: HMAC-SHA256 with a guessable key proves nothing.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest signing secret, in bytes (HMAC hashes a longer key down anyway).
pub const MAX_SECRET_LEN: usize = 1024;

/// Header with the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (only when the group has a
/// secret).
pub const SIGNATURE_HEADER: &str = "rollcage-signature";
/// Header with the delivery id: the same on every retry of one event to one endpoint (the idempotency key).
pub const DELIVERY_HEADER: &str = "rollcage-delivery";
/// Header with the event name (also in the body).
pub const EVENT_HEADER: &str = "rollcage-event";

/// A group's signing secret, as a request carries it (the CLI reads it from a file). Its `Debug` never shows it,
/// so no log line can.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// A deployment was created (also a rollback or a catch-up: see `kind`).
    #[serde(rename = "deployment.created")]
    DeploymentCreated,
    /// A deployment succeeded.
    #[serde(rename = "deployment.succeeded")]
    DeploymentSucceeded,
    /// A deployment failed.
    #[serde(rename = "deployment.failed")]
    DeploymentFailed,
    /// A deployment was stopped.
    #[serde(rename = "deployment.stopped")]
    DeploymentStopped,
    /// A rollback of this deployment started (`rollback_deployment` names it).
    #[serde(rename = "deployment.rolled_back")]
    DeploymentRolledBack,
    /// A blue/green deployment validated its new group and waits for `continue`.
    #[serde(rename = "deployment.ready")]
    DeploymentReady,
    /// An instance got its first step.
    #[serde(rename = "instance.started")]
    InstanceStarted,
    /// An instance ran every step.
    #[serde(rename = "instance.succeeded")]
    InstanceSucceeded,
    /// An instance failed a step.
    #[serde(rename = "instance.failed")]
    InstanceFailed,
}

impl WebhookEvent {
    /// Every event.
    pub const ALL: [WebhookEvent; 9] = [
        WebhookEvent::DeploymentCreated,
        WebhookEvent::DeploymentSucceeded,
        WebhookEvent::DeploymentFailed,
        WebhookEvent::DeploymentStopped,
        WebhookEvent::DeploymentRolledBack,
        WebhookEvent::DeploymentReady,
        WebhookEvent::InstanceStarted,
        WebhookEvent::InstanceSucceeded,
        WebhookEvent::InstanceFailed,
    ];

    /// The event's name (`deployment.failed`), as on the wire and in the database.
    pub fn name(self) -> &'static str {
        match self {
            WebhookEvent::DeploymentCreated => "deployment.created",
            WebhookEvent::DeploymentSucceeded => "deployment.succeeded",
            WebhookEvent::DeploymentFailed => "deployment.failed",
            WebhookEvent::DeploymentStopped => "deployment.stopped",
            WebhookEvent::DeploymentRolledBack => "deployment.rolled_back",
            WebhookEvent::DeploymentReady => "deployment.ready",
            WebhookEvent::InstanceStarted => "instance.started",
            WebhookEvent::InstanceSucceeded => "instance.succeeded",
            WebhookEvent::InstanceFailed => "instance.failed",
        }
    }

    /// The event named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Whether it is about one instance.
    pub fn is_instance(self) -> bool {
        matches!(
            self,
            WebhookEvent::InstanceStarted
                | WebhookEvent::InstanceSucceeded
                | WebhookEvent::InstanceFailed
        )
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The step that failed: which instance, which lifecycle event, and what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookFailure {
    /// The instance (empty for a deployment-wide step such as SwitchTraffic).
    pub instance: String,
    /// The lifecycle event (`ValidateService`).
    pub event: String,
    /// The step's message.
    pub message: String,
    /// The tail of the failed hook's output (at most 2 KiB).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
}

/// The JSON body of one webhook post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// The delivery id (= the [`DELIVERY_HEADER`]): the same on every retry; a receiver drops one it has seen.
    pub delivery_id: String,
    /// What happened.
    pub event: WebhookEvent,
    /// When it happened (ms since the epoch).
    pub occurred_at_ms: i64,
    /// Application.
    pub application: String,
    /// Deployment group.
    pub group: String,
    /// Deployment id.
    pub deployment_id: String,
    /// `normal`, `rollback` or `catch-up`.
    pub kind: String,
    /// For a rollback: the deployment it rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// For a deployment rolled back: the rollback deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_deployment: Option<String>,
    /// The revision deployed.
    pub revision: String,
    /// Who started it: an operator token's name, or `system` (an automatic rollback, a catch-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who stopped it (`deployment.stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// The deployment's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The deployment's status when the event was sent out.
    pub status: String,
    /// The deployment's message (why it ended).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Instance events: the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `instance.failed`, `deployment.failed`: the step that failed (for a deployment, its first failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<WebhookFailure>,
    /// When the deployment was created (ms).
    pub created_at_ms: i64,
    /// When it ended (ms), once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
}

/// A group's webhooks as the API shows them: the secret itself is never returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupWebhooks {
    /// Endpoints, in the order given.
    pub urls: Vec<String>,
    /// Whether deliveries are signed (a secret is stored).
    pub has_secret: bool,
}

impl GroupWebhooks {
    /// No webhook and no secret.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty() && !self.has_secret
    }
}

/// Check a group's webhook settings: at most [`MAX_WEBHOOKS`] distinct `http(s)://HOST…` URLs of at most
/// [`MAX_WEBHOOK_URL_LEN`] bytes, and a secret of [`MIN_SECRET_LEN`]–[`MAX_SECRET_LEN`] bytes without control
/// characters. Every problem with its field path (`webhooks[1]`, `webhook_secret`).
pub fn check(urls: &[String], secret: Option<&str>) -> Result<(), FieldProblems> {
    let mut p = FieldProblems::default();
    if urls.len() > MAX_WEBHOOKS {
        p.add(
            "webhooks",
            format!("{} webhooks: expected at most {MAX_WEBHOOKS}", urls.len()),
        );
    }
    for (i, url) in urls.iter().enumerate() {
        let path = format!("webhooks[{i}]");
        if url.len() > MAX_WEBHOOK_URL_LEN {
            p.add(
                path,
                format!(
                    "{} bytes: expected at most {MAX_WEBHOOK_URL_LEN}",
                    url.len()
                ),
            );
            continue;
        }
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
        if host.is_none_or(|h| h.is_empty() || h.contains('@'))
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            p.add(
                path,
                format!(
                    "`{}`: expected `http(s)://HOST[:PORT][/PATH]` (no user info, no spaces)",
                    crate::clip::clip_head(url, 160)
                ),
            );
        } else if urls[..i].contains(url) {
            p.add(path, format!("`{url}` is given twice"));
        }
    }
    if let Some(s) = secret {
        if s.len() < MIN_SECRET_LEN || s.len() > MAX_SECRET_LEN {
            p.add(
                "webhook_secret",
                format!(
                    "{} bytes: expected {MIN_SECRET_LEN} to {MAX_SECRET_LEN}",
                    s.len()
                ),
            );
        } else if s.chars().any(char::is_control) {
            p.add(
                "webhook_secret",
                "holds a control character (a secret file's trailing newline is dropped, no other)",
            );
        }
        if urls.is_empty() {
            p.add(
                "webhook_secret",
                "given without any webhook: give `webhooks` too",
            );
        }
    }
    p.into_result(())
}

/// How far a delivery got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: waiting for its turn or for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up after the last attempt.
    Failed,
}

impl DeliveryState {
    /// The stored and wire name.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    /// The state named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// One delivery (one event to one endpoint), as `GET …/deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// Delivery id (the [`DELIVERY_HEADER`]).
    pub id: String,
    /// Endpoint.
    pub url: String,
    /// Event.
    pub event: WebhookEvent,
    /// Deployment.
    pub deployment_id: String,
    /// Instance events: the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// When the event happened (ms).
    pub occurred_at_ms: i64,
    /// How far it got.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// The HTTP status of the last attempt, if it got one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed (no answer, or the status and the start of the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Pending: not before this time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<i64>,
    /// Delivered or given up: when (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_through_serde_and_name() {
        for e in WebhookEvent::ALL {
            let json = serde_json::to_string(&e).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", e.name()));
            assert_eq!(WebhookEvent::from_name(e.name()), Some(e));
        }
        assert_eq!(WebhookEvent::from_name("deployment.exploded"), None);
    }

    #[test]
    fn webhook_settings_are_checked_with_field_paths() {
        let ok = vec!["https://hooks.example.com/rollcage".to_owned()];
        assert_eq!(check(&ok, Some("0123456789abcdef")), Ok(()));
        assert_eq!(check(&ok, None), Ok(()));
        let bad = vec![
            "https://a.example/x".to_owned(),
            "ftp://a.example/x".to_owned(),
            "https://a.example/x".to_owned(),
            "https://user:pw@a.example/".to_owned(),
            format!("https://a.example/{}", "x".repeat(MAX_WEBHOOK_URL_LEN)),
        ];
        let e = check(&bad, Some("short")).err().unwrap_or_default();
        assert_eq!(
            e.paths(),
            [
                "webhooks[1]",
                "webhooks[2]",
                "webhooks[3]",
                "webhooks[4]",
                "webhook_secret"
            ]
        );
        let many: Vec<String> = (0..=MAX_WEBHOOKS)
            .map(|i| format!("http://h{i}.example/"))
            .collect();
        assert_eq!(
            check(&many, None).err().unwrap_or_default().paths(),
            ["webhooks"]
        );
        let e = check(&[], Some("0123456789abcdef"))
            .err()
            .unwrap_or_default();
        assert_eq!(e.paths(), ["webhook_secret"]);
        assert!(
            check(&ok, Some("0123456789abcdef\n"))
                .err()
                .unwrap_or_default()
                .to_string()
                .contains("control character")
        );
    }
}
