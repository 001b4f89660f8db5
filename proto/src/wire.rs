//! The JSON of the coordinator's HTTP API (`/v1/...`) and of the agent protocol.
//!
//! Operators' resources (applications, deployment groups, revisions, deployments, instances) and the agent's
//! messages (enroll, poll, step command, step report) are plain serde structs here so the coordinator, the agent and
//! the CLI agree on one shape. Timestamps are Unix milliseconds (UTC). Every failure answers with [`ErrorBody`].
//!
//! Compatibility rule: add optional fields (`#[serde(default)]`) and new variants at the end; never rename.

use crate::healthy::{MinHealthy, TooFewInstances};
use crate::lb::GroupLb;
use crate::tags::{TagFilter, Tags};
use crate::{Form, HookOutcome, LifecycleEvent};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Path prefix of every API route.
pub const API_PREFIX: &str = "/v1";

/// How long the coordinator holds a poll open when it has no command (the agent's read timeout must be longer).
pub const DEFAULT_POLL_WAIT_MS: u64 = 20_000;

/// Now, in the wire's timestamp unit: milliseconds since the Unix epoch (UTC). A clock before 1970 reads 0; one
/// past the year 292 million reads `i64::MAX`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------------------
// Names of wire enums

/// A string is none of an enum's wire names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being named (`deployment status`, …).
    pub what: &'static str,
    /// The string given.
    pub name: String,
    /// Every valid name.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`: expected ", self.what, self.name)?;
        let last = self.expected.len().saturating_sub(1);
        for (i, n) in self.expected.iter().enumerate() {
            let sep = match i {
                0 => "",
                i if i == last => " or ",
                _ => ", ",
            };
            write!(f, "{sep}`{n}`")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownName {}

/// The one table of a unit-only wire enum's names: `name()`, `ALL`, `Display` and `FromStr` from one list. The
/// names are the serde names (`rename_all`); a test checks the two agree for every variant.
macro_rules! wire_names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name in the API, the CLI and the coordinator's store (the serde name).
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so that widths (`{:<12}`) apply.
                f.pad(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    other => Err(UnknownName {
                        what: $what,
                        name: other.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}
// Other modules of the crate name their enums through the same table.
pub(crate) use wire_names;

// ---------------------------------------------------------------------------------------------------------------
// Errors

/// The one error shape: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code (`unauthorized`, `forbidden`, `not_found`, `conflict`, `invalid_request`,
/// `unsupported`, `internal`) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, snake_case.
    pub code: String,
    /// What went wrong, where, and what was expected.
    pub message: String,
}

// ---------------------------------------------------------------------------------------------------------------
// Names

/// The rule every application, group and instance name follows, for messages: names become path components on
/// every host (the agent's directories, its journal), so they are what a file name can safely be.
pub const NAME_RULE: &str =
    "1–128 characters of letters, digits, `.`, `_` or `-`, not starting with `.`";

/// Whether `s` follows [`NAME_RULE`].
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Most instances one deployment group may list. CodeDeploy caps a deployment at 1,000 instances; ten times that
/// is beyond any fleet one coordinator serves, and it bounds what one group row, one deployment's rows and one
/// `GET /deployments/{id}` answer can grow to (a 20,000-name list made that answer 19.5 MB).
pub const MAX_GROUP_INSTANCES: usize = 10_000;

/// Names listed in one message before the rest are only counted (a message stays readable and bounded).
const NAMES_SHOWN: usize = 20;

/// Names for a message: the first few quoted (each cut to a readable length), then how many more.
#[derive(Debug, Clone, Copy)]
pub struct NameList<'a>(pub &'a [String]);

impl fmt::Display for NameList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().take(NAMES_SHOWN).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}`{}`", crate::clip::clip_head(n, 160))?;
        }
        if self.0.len() > NAMES_SHOWN {
            write!(f, " and {} more", self.0.len() - NAMES_SHOWN)?;
        }
        Ok(())
    }
}

/// What is wrong with a group's instance list (field `instances`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceListError {
    /// More names than [`MAX_GROUP_INSTANCES`].
    TooMany(usize),
    /// Names that do not follow [`NAME_RULE`].
    InvalidNames(Vec<String>),
    /// Names listed more than once (each once here).
    Duplicates(Vec<String>),
}

impl fmt::Display for InstanceListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany(n) => write!(
                f,
                "field `instances`: {n} names, more than the {MAX_GROUP_INSTANCES} a group may list"
            ),
            Self::InvalidNames(names) => write!(
                f,
                "field `instances`: invalid instance names {}: expected {NAME_RULE}",
                NameList(names)
            ),
            Self::Duplicates(names) => write!(
                f,
                "field `instances`: names listed more than once: {}",
                NameList(names)
            ),
        }
    }
}

impl std::error::Error for InstanceListError {}

/// Check a group's instance list: at most [`MAX_GROUP_INSTANCES`] names, each valid, none twice. (Whether each is
/// enrolled is the coordinator's question, asked when a deployment is requested.)
pub fn check_instance_list(names: &[String]) -> Result<(), InstanceListError> {
    if names.len() > MAX_GROUP_INSTANCES {
        return Err(InstanceListError::TooMany(names.len()));
    }
    let invalid: Vec<String> = names
        .iter()
        .filter(|n| !is_valid_name(n))
        .cloned()
        .collect();
    if !invalid.is_empty() {
        return Err(InstanceListError::InvalidNames(invalid));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut twice = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n.as_str()) {
            twice.insert(n.as_str());
        }
    }
    if twice.is_empty() {
        Ok(())
    } else {
        Err(InstanceListError::Duplicates(
            twice.into_iter().map(str::to_owned).collect(),
        ))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Group settings

/// How many instances of a group may be deploying at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Concurrency {
    /// At most this many (at least 1).
    Count(u32),
    /// This percentage of the group's instances, rounded down, at least 1 (1–100).
    Percent(u8),
    /// Every instance at once.
    All,
    /// CodeDeploy's minimum healthy hosts: every instance but the minimum at once (`min-healthy:N`,
    /// `min-healthy:P%`); see [`crate::healthy`].
    MinHealthy(MinHealthy),
}

impl Concurrency {
    /// The number of instances that may be in flight at once in a group of `total` instances (≥ 1 unless the group
    /// is empty). A minimum healthy that leaves none gives 1 here; [`Concurrency::check`] refuses it first.
    pub fn limit(self, total: usize) -> usize {
        let n = match self {
            Self::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Self::Percent(p) => total.saturating_mul(usize::from(p)) / 100,
            Self::All => total,
            Self::MinHealthy(m) => m.batch(total).unwrap_or(1),
        };
        n.clamp(1, total.max(1))
    }

    /// How many instances may be in flight once `failed` of `total` have failed: [`Concurrency::limit`], except
    /// that a minimum healthy narrows by one per failure ([`MinHealthy::window`]), down to 0 (no more starts).
    pub fn window(self, total: usize, failed: usize) -> usize {
        match self {
            Self::MinHealthy(m) => m.window(total, failed),
            other => other.limit(total),
        }
    }

    /// Whether a deployment of `total` instances can run under this concurrency: a minimum healthy that leaves no
    /// instance to deploy to is refused (the error has the arithmetic); the other forms always can.
    pub fn check(self, total: usize) -> Result<(), TooFewInstances> {
        match self {
            Self::MinHealthy(m) => m.batch(total).map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// The accepted spellings of a concurrency, for messages (one home: the error below and the docs quote it).
pub const CONCURRENCY_FORMS: &str = "a count ≥ 1 (`2`), a percentage 1–100 (`50%`), `all`, or a minimum of healthy \
     instances `min-healthy:N` (N ≥ 0) / `min-healthy:P%` (0–99, rounded up) (lowercase, no spaces or signs)";

/// How a minimum healthy is spelled as a concurrency: `min-healthy:` then the minimum.
pub const MIN_HEALTHY_PREFIX: &str = "min-healthy:";

/// A concurrency string is not exactly `N`, `P%` or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConcurrency(pub String);

impl fmt::Display for InvalidConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid concurrency `{}`: expected {CONCURRENCY_FORMS}",
            self.0
        )?;
        // A near miss (`ALL`, ` 1`, `50 %`) gets the exact spelling it was probably meant as.
        let squeezed: String = self.0.chars().filter(|c| !c.is_whitespace()).collect();
        let lower = squeezed.to_ascii_lowercase();
        if lower != self.0
            && let Ok(c) = lower.parse::<Concurrency>()
        {
            write!(f, " (did you mean `{c}`?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidConcurrency {}

/// `s` is a plain decimal: ASCII digits only, no sign, no leading zero (so each value has one spelling).
fn plain_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

/// The grammar is exact, like CodeDeploy's enum and number fields: `all` in lowercase (the spelling the CLI, the
/// README and the API document use), `N` with N ≥ 1, `P%` with 1 ≤ P ≤ 100; nothing around them. Each value has
/// exactly one spelling, which is also how it prints, so what is stored reads back the same.
impl FromStr for Concurrency {
    type Err = InvalidConcurrency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidConcurrency(s.to_owned());
        if s == "all" {
            return Ok(Self::All);
        }
        if let Some(m) = s.strip_prefix(MIN_HEALTHY_PREFIX) {
            return m.parse().map(Self::MinHealthy).map_err(|_| bad());
        }
        if let Some(p) = s.strip_suffix('%') {
            if !plain_decimal(p) {
                return Err(bad());
            }
            return match p.parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Self::Percent(p)),
                _ => Err(bad()),
            };
        }
        if !plain_decimal(s) {
            return Err(bad());
        }
        match s.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Self::Count(n)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
            Self::All => f.write_str("all"),
            Self::MinHealthy(m) => write!(f, "{MIN_HEALTHY_PREFIX}{m}"),
        }
    }
}

impl TryFrom<String> for Concurrency {
    type Error = InvalidConcurrency;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Concurrency> for String {
    fn from(c: Concurrency) -> Self {
        c.to_string()
    }
}

/// How a deployment group rolls a revision out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentStyle {
    /// Rolling, in place, no load balancer.
    InPlace,
    /// Rolling, in place, each instance taken out of a load balancer while it is updated.
    InPlaceLb,
    /// Blue/green: deploy to the idle server group, then switch traffic.
    BlueGreen,
}

wire_names!(DeploymentStyle, "deployment style", {
    InPlace => "in-place",
    InPlaceLb => "in-place-lb",
    BlueGreen => "blue-green",
});

// ---------------------------------------------------------------------------------------------------------------
// Operator resources

/// `POST /v1/applications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApplication {
    /// Application name (letters, digits, `.`, `_`, `-`).
    pub name: String,
}

/// An application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at_ms: i64,
}

/// `POST /v1/applications/{app}/groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Group name.
    pub name: String,
    /// Deployment style.
    pub style: DeploymentStyle,
    /// Instances in flight at once (also used by its rollbacks).
    pub concurrency: Concurrency,
    /// Failed instances tolerated before the deployment stops and fails (default 0).
    #[serde(default)]
    pub failure_tolerance: u32,
    /// Start a rollback to the last successful revision when a deployment fails.
    #[serde(default)]
    pub auto_rollback: bool,
    /// Names of the instances (agents) in the group; empty (and no `tags`) = every enrolled instance at deployment
    /// time.
    #[serde(default)]
    pub instances: Vec<String>,
    /// Select the instances by tags instead of by name: an instance is in the group when it has every pair of
    /// one of these sets ([`TagFilter`]). Not together with `instances`.
    #[serde(default, skip_serializing_if = "TagFilter::is_empty")]
    pub tags: TagFilter,
    /// The group's deployment form: the default of its deployments, used instead of the package's appspec.yml.
    /// On the wire: the form's canonical JSON as a string ([`crate::form::json_text`]); validated on the way in.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::form::json_text"
    )]
    pub form: Option<Form>,
    /// Load-balancer settings, required by the `in-place-lb` and `blue-green` styles (`lb` = the driver's
    /// [`crate::lb::LbConfig`], `targets` = instance → `host:port`, …); checked against the style and the
    /// instances by [`GroupLb::check`] when the group is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<GroupLb>,
    /// Where the group's deployment and instance events are posted ([`crate::webhook`]; checked by
    /// [`crate::webhook::check`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<String>,
    /// The key the posts are signed with (HMAC-SHA256); stored, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<crate::webhook::WebhookSecret>,
}

/// `PATCH /v1/applications/{app}/groups/{group}`: the settings to change (absent = unchanged). Giving `instances`
/// selects by name from then on (and drops the tags), giving `tags` selects by tags (and drops the names). The
/// style, name and id of a group never change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    /// Instances in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Failed instances tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_tolerance: Option<u32>,
    /// Automatic rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<bool>,
    /// Select these instances by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<String>>,
    /// Select instances by these tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TagFilter>,
    /// The group's deployment form (as at creation: the form's JSON text).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::form::json_text"
    )]
    pub form: Option<Form>,
    /// Load-balancer settings (replacing the group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<GroupLb>,
    /// Webhooks (replacing the group's; `[]` removes them all, and the secret with them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<String>>,
    /// A new signing secret (replacing the group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<crate::webhook::WebhookSecret>,
}

impl UpdateGroup {
    /// `g` with the changes (the form is the caller's: it is stored apart).
    pub fn apply_to(&self, g: &mut Group) {
        if let Some(c) = self.concurrency {
            g.concurrency = c;
        }
        if let Some(t) = self.failure_tolerance {
            g.failure_tolerance = t;
        }
        if let Some(a) = self.auto_rollback {
            g.auto_rollback = a;
        }
        if let Some(names) = &self.instances {
            g.instances = names.clone();
            g.tags = TagFilter::default();
        }
        if let Some(tags) = &self.tags {
            g.tags = tags.clone();
            if self.instances.is_none() {
                g.instances.clear();
            }
        }
        if let Some(lb) = &self.lb {
            g.lb = Some(lb.clone());
        }
        if let Some(urls) = &self.webhooks {
            g.webhooks.urls = urls.clone();
            if urls.is_empty() {
                g.webhooks.has_secret = false;
            }
        }
        if self.webhook_secret.is_some() {
            g.webhooks.has_secret = true;
        }
    }
}

/// A deployment group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Stable id (`DEPLOYMENT_GROUP_ID` for hooks).
    pub id: String,
    /// Application.
    pub application: String,
    /// Group name.
    pub name: String,
    /// Style.
    pub style: DeploymentStyle,
    /// Concurrency.
    pub concurrency: Concurrency,
    /// Failures tolerated.
    pub failure_tolerance: u32,
    /// Automatic rollback on failure.
    pub auto_rollback: bool,
    /// Instance names (empty, and no `tags` = all enrolled).
    pub instances: Vec<String>,
    /// Selection by tags (see [`CreateGroup::tags`]).
    #[serde(default, skip_serializing_if = "TagFilter::is_empty")]
    pub tags: TagFilter,
    /// Load-balancer settings (see [`CreateGroup::lb`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<GroupLb>,
    /// Webhooks (see [`CreateGroup::webhooks`]); whether a secret is stored, never the secret.
    #[serde(
        default,
        skip_serializing_if = "crate::webhook::GroupWebhooks::is_empty"
    )]
    pub webhooks: crate::webhook::GroupWebhooks,
    /// When it was created.
    pub created_at_ms: i64,
}

/// `POST /v1/applications/{app}/revisions/url`: a revision stored elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterUrlRevision {
    /// `http(s)://` or `file://` URL of the archive.
    pub url: String,
    /// Its sha256, lowercase hex.
    pub sha256: String,
    /// Its signature: the armored SSHSIG `ssh-keygen -Y sign -n rollcage` writes (see [`Revision::signature`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The request header that carries a revision's signature with an upload (`POST
/// /v1/applications/{app}/revisions`, whose body is the archive): the SSHSIG blob in base64 on one line, i.e. the
/// armored signature without its armor lines ([`signature_header_value`]; the coordinator re-armors it with
/// [`signature_from_header`]).
pub const SIGNATURE_HEADER: &str = "x-rollcage-signature";

/// The first and last line of an armored SSH signature.
const ARMOR: (&str, &str) = (
    "-----BEGIN SSH SIGNATURE-----",
    "-----END SSH SIGNATURE-----",
);

/// The [`SIGNATURE_HEADER`] value of an armored signature: its base64 lines joined (no crypto: text only).
pub fn signature_header_value(armored: &str) -> String {
    armored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != ARMOR.0 && *l != ARMOR.1)
        .collect()
}

/// The armored signature of a [`SIGNATURE_HEADER`] value (base64 wrapped at 70 columns, as `ssh-keygen` does).
pub fn signature_from_header(value: &str) -> String {
    let mut out = format!("{}\n", ARMOR.0);
    let chars: Vec<char> = value.trim().chars().collect();
    for line in chars.chunks(70) {
        out.extend(line);
        out.push('\n');
    }
    out.push_str(ARMOR.1);
    out.push('\n');
    out
}

/// Where a revision's archive lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevisionSource {
    /// Uploaded to the coordinator and stored by sha256 under its data dir.
    Uploaded {
        /// Archive size in bytes.
        size: u64,
    },
    /// An external URL.
    Url {
        /// The URL.
        url: String,
    },
}

/// A revision of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Revision id (`r-` and the first 16 hex digits of the sha256).
    pub id: String,
    /// Application.
    pub application: String,
    /// sha256 of the archive.
    pub sha256: String,
    /// Where it lives.
    pub source: RevisionSource,
    /// Times agents downloaded the archive from the coordinator.
    pub downloads: u64,
    /// When it was registered.
    pub created_at_ms: i64,
    /// The signer key the signature names (`ssh-ed25519 SHA256:…`), when the revision is signed. The coordinator
    /// only checked that the signature is one (and, for an upload, that it verifies over the archive with that
    /// key); whether the key is trusted is each agent's decision (`rollcage agent --trusted-signers FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The signature: an armored SSHSIG (`ssh-keygen -Y sign -n rollcage`), at most 16 KiB. Sent to agents with
    /// every command of a deployment of this revision ([`RevisionRef::signature`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `POST /v1/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// Application.
    pub application: String,
    /// Deployment group.
    pub group: String,
    /// Revision id.
    pub revision: String,
    /// A deployment form overriding the group's (on the wire: its JSON text, see [`CreateGroup::form`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::form::json_text"
    )]
    pub form: Option<Form>,
    /// Ignore failures of the previous revision's ApplicationStop, BeforeBlockTraffic and AfterBlockTraffic
    /// ([`AgentOverrides::ignore_application_stop_failures`]).
    #[serde(default)]
    pub ignore_application_stop_failures: bool,
    /// Overrides the AppSpec's `file_exists_behavior` for this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_exists_behavior: Option<crate::FileExistsBehavior>,
    /// For people ([`check_description`]: at most [`MAX_DESCRIPTION_BYTES`], one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The longest deployment description, in bytes (a line or two for people, not a changelog; CodeDeploy's API
/// takes long descriptions, but ours is shown in every list and watch).
pub const MAX_DESCRIPTION_BYTES: usize = 512;

/// A deployment description is too long or has control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDescription(pub String);

impl fmt::Display for InvalidDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidDescription {}

/// Check a deployment's description: at most [`MAX_DESCRIPTION_BYTES`], no control characters (it is printed on
/// terminals and in one-line listings).
pub fn check_description(text: &str) -> Result<(), InvalidDescription> {
    if text.len() > MAX_DESCRIPTION_BYTES {
        return Err(InvalidDescription(format!(
            "field `description`: {} bytes; at most {MAX_DESCRIPTION_BYTES}",
            text.len()
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(InvalidDescription(format!(
            "field `description`: control character {:?}; expected one line of text",
            c
        )));
    }
    Ok(())
}

/// What a deployment asks of every agent beyond its revision: CodeDeploy's `ignoreApplicationStopFailures` and
/// `fileExistsBehavior` (its `AgentActionOverrides.AgentOverrides`). Sent with each step command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOverrides {
    /// A failure of ApplicationStop, BeforeBlockTraffic or AfterBlockTraffic — the hooks of the revision installed
    /// before, which a broken revision would otherwise keep failing — is logged and skipped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_application_stop_failures: bool,
    /// What Install does with existing files, overriding the AppSpec's (or form's) `file_exists_behavior`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_exists_behavior: Option<crate::FileExistsBehavior>,
}

impl AgentOverrides {
    /// Nothing overridden (what an older coordinator sends).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /v1/deployments/{id}/stop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopDeployment {
    /// Cancel in-flight steps instead of letting them finish.
    #[serde(default)]
    pub force: bool,
}

/// Why a deployment exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeploymentKind {
    /// Asked for by an operator.
    Normal,
    /// A rollback of deployment `of` to the group's last successful revision.
    Rollback {
        /// The deployment rolled back.
        of: String,
        /// True when started automatically after a failure.
        automatic: bool,
    },
    /// The group's last successful revision, for one instance that joined the group after it (enrolled, or came
    /// back without it).
    #[serde(rename = "catch-up")]
    CatchUp {
        /// The instance brought up to date.
        instance: String,
    },
}

/// State of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Instances are being deployed.
    InProgress,
    /// A stop was asked; in-flight instances finish.
    Stopping,
    /// Blue/green with `wait_for_continue`: the idle group is validated; waiting for `continue` to switch.
    Ready,
    /// Every instance succeeded (or failures stayed within the tolerance).
    Succeeded,
    /// Too many instances failed.
    Failed,
    /// Stopped by an operator.
    Stopped,
}

impl DeploymentStatus {
    /// One line for people.
    pub fn description(self) -> &'static str {
        match self {
            Self::InProgress => "deployment is running",
            Self::Stopping => "stop requested; in-flight instances are finishing",
            Self::Ready => "new group validated; waiting for `continue` to switch traffic",
            Self::Succeeded => "deployment completed successfully",
            Self::Failed => "deployment failed",
            Self::Stopped => "deployment was stopped by an operator",
        }
    }

    /// True once the deployment can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Stopped)
    }
}

wire_names!(DeploymentStatus, "deployment status", {
    InProgress => "in_progress",
    Stopping => "stopping",
    Ready => "ready",
    Succeeded => "succeeded",
    Failed => "failed",
    Stopped => "stopped",
});

/// State of one instance within a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Not started yet.
    Pending,
    /// Between its first and last step.
    InProgress,
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed.
    Failed,
    /// Never started: the deployment failed or was stopped first.
    Skipped,
    /// Its in-flight step was cancelled by a forced stop.
    Cancelled,
}

impl InstanceStatus {
    /// True once the instance can change no more in this deployment.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }
}

wire_names!(InstanceStatus, "instance status", {
    Pending => "pending",
    InProgress => "in_progress",
    Succeeded => "succeeded",
    Failed => "failed",
    Skipped => "skipped",
    Cancelled => "cancelled",
});

/// State of one step of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not sent yet.
    Pending,
    /// Sent to the agent, no report yet.
    Running,
    /// Done.
    Succeeded,
    /// Nothing to do (no hooks).
    Skipped,
    /// Failed.
    Failed,
    /// Cancelled by a forced stop.
    Cancelled,
}

wire_names!(StepState, "step state", {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Skipped => "skipped",
    Failed => "failed",
    Cancelled => "cancelled",
});

/// One step of one instance, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    /// The event.
    pub event: LifecycleEvent,
    /// Its state.
    pub state: StepState,
    /// When it was sent to the agent.
    pub started_at_ms: Option<i64>,
    /// When its report arrived.
    pub ended_at_ms: Option<i64>,
    /// The report's message.
    pub message: String,
    /// The tail of the failed (or last) hook's output.
    pub log_tail: String,
}

/// One instance of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceProgress {
    /// Instance name.
    pub instance: String,
    /// Its state.
    pub status: InstanceStatus,
    /// Every step of its plan, in order.
    pub steps: Vec<StepProgress>,
}

/// A deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Deployment id.
    pub id: String,
    /// Application.
    pub application: String,
    /// Group.
    pub group: String,
    /// Revision id.
    pub revision: String,
    /// Style.
    pub style: DeploymentStyle,
    /// Concurrency in force.
    pub concurrency: Concurrency,
    /// Failures tolerated.
    pub failure_tolerance: u32,
    /// Why it exists.
    pub kind: DeploymentKind,
    /// State.
    pub status: DeploymentStatus,
    /// Why it ended as it did (empty while running).
    pub message: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it ended.
    pub ended_at_ms: Option<i64>,
    /// The rollback deployment started after this one failed.
    pub rollback_deployment: Option<String>,
    /// Who created, stopped, rolled back and continued it.
    #[serde(default)]
    pub actors: crate::access::DeploymentActors,
    /// Its description, if it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What it asks of the agents ([`CreateDeployment::ignore_application_stop_failures`],
    /// [`CreateDeployment::file_exists_behavior`]).
    #[serde(default)]
    pub ignore_application_stop_failures: bool,
    /// See [`CreateDeployment::file_exists_behavior`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_exists_behavior: Option<crate::FileExistsBehavior>,
    /// Progressive delivery: the canary of a blue/green deployment (no `instance`), or each `in-place-lb`
    /// instance's analysis gate, with step, weight and verdicts (`crate::bake`). Empty without `[canary]` or
    /// `[analysis]` settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bakes: Vec<crate::bake::BakeProgress>,
    /// Per-instance progress.
    pub instances: Vec<InstanceProgress>,
}

/// A deployment as `GET /v1/deployments` lists it: the [`Deployment`] without its per-instance progress, which
/// grows with the fleet (one entry of a 20,000-instance deployment would be megabytes);
/// `GET /v1/deployments/{id}` has the full object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSummary {
    /// Deployment id.
    pub id: String,
    /// Application.
    pub application: String,
    /// Group.
    pub group: String,
    /// Revision id.
    pub revision: String,
    /// Style.
    pub style: DeploymentStyle,
    /// Concurrency in force.
    pub concurrency: Concurrency,
    /// Failures tolerated.
    pub failure_tolerance: u32,
    /// Why it exists.
    pub kind: DeploymentKind,
    /// State.
    pub status: DeploymentStatus,
    /// Why it ended as it did (empty while running).
    pub message: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it ended.
    pub ended_at_ms: Option<i64>,
    /// The rollback deployment started after this one failed.
    pub rollback_deployment: Option<String>,
    /// Its description, if it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// See [`Deployment::ignore_application_stop_failures`].
    #[serde(default)]
    pub ignore_application_stop_failures: bool,
    /// See [`CreateDeployment::file_exists_behavior`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_exists_behavior: Option<crate::FileExistsBehavior>,
}

/// The query of `GET /v1/deployments`: only one application's (or one group's) deployments, and the page
/// ([`crate::page::PageQuery`]'s fields, spelled out: query strings cannot flatten numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentQuery {
    /// Only this application's deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Only this group's deployments (needs `application`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// See [`crate::page::PageQuery::limit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// See [`crate::page::PageQuery::cursor`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl DeploymentQuery {
    /// The paging part.
    pub fn page(&self) -> crate::page::PageQuery {
        crate::page::PageQuery {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

/// Whether an enrolled instance may be given work. A coordinator started with `--enroll-approval` holds each new
/// instance as `pending` until an operator approves it; otherwise instances are approved when they enroll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Enrolled, waiting for an operator's approval: in no deployment, sent no command, served no bundle.
    Pending,
    /// May be deployed to (the default: what an instance enrolled before approvals existed is).
    #[default]
    Approved,
}

wire_names!(InstanceState, "instance state", {
    Pending => "pending",
    Approved => "approved",
});

/// An enrolled instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Its name.
    pub name: String,
    /// When it enrolled.
    pub enrolled_at_ms: i64,
    /// Its last call to the coordinator.
    pub last_seen_ms: i64,
    /// True when it has not been heard from within the heartbeat deadline.
    pub lost: bool,
    /// Pending approval, or approved.
    #[serde(default)]
    pub state: InstanceState,
    /// The enrollment token it enrolled with: a per-use token's id, `standing` for the coordinator's standing
    /// token, absent for an instance enrolled before this was recorded.
    #[serde(default)]
    pub enrolled_with: Option<String>,
    /// Its tags, as its agent last sent them.
    #[serde(default)]
    pub tags: Tags,
    /// Per group, the revision it last installed successfully (its last deployment of the group that succeeded on it).
    #[serde(default)]
    pub installed: Vec<InstalledRevision>,
}

/// One entry of [`InstanceInfo::installed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledRevision {
    /// Application.
    pub application: String,
    /// Deployment group.
    pub group: String,
    /// Revision id.
    pub revision: String,
    /// The deployment that installed it.
    pub deployment: String,
}

// ---------------------------------------------------------------------------------------------------------------
// Agent protocol

/// `POST /v1/agent/enroll` (with the enrollment token as bearer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The instance name the agent runs as.
    pub name: String,
    /// Its tags ([`crate::tags`]); also sent on every start ([`AgentHello`]).
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

/// `POST /v1/agent/hello`, sent by an agent on every start (after enrolling, if it had to): its tags as configured
/// now, and what it has installed, so the coordinator can bring it up to date ("catch-up").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentHello {
    /// Its tags (replacing those recorded before).
    #[serde(default)]
    pub tags: Tags,
    /// Per application and group it has deployed, the deployment whose Install last succeeded on it (none for a
    /// re-imaged host, which has lost its root).
    #[serde(default)]
    pub installed: Vec<InstalledHere>,
}

/// One entry of [`AgentHello::installed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledHere {
    /// Application.
    pub application: String,
    /// Deployment group.
    pub group: String,
    /// The deployment whose Install last succeeded on the host.
    pub deployment: String,
}

/// Most entries in [`AgentHello::installed`]: one per application and group on the host.
pub const MAX_INSTALLED_ENTRIES: usize = 1_000;

/// The answer to [`AgentHello`]: the deployments that will bring the instance up to date (a catch-up deployment
/// started for it, or a running deployment of its group it was added to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloResponse {
    /// Deployment ids.
    #[serde(default)]
    pub deployments: Vec<String>,
}

/// The agent's own token; the coordinator keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// Instance name.
    pub instance: String,
    /// Bearer token for every later call.
    pub token: String,
    /// `pending` when an operator must approve the instance before it is given work.
    #[serde(default)]
    pub state: InstanceState,
}

/// `POST /v1/agent/poll`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// Longest time to hold the poll open without a command (capped by the coordinator).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// Where the agent gets a revision's archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevisionLocation {
    /// From the coordinator (`GET /v1/agent/applications/{app}/revisions/{id}/bundle` with the agent's token; the
    /// agent's client builds that path from the command's application and revision id). Carries no path, so a
    /// command cannot send the agent's token to another route or host.
    Coordinator,
    /// From an external URL.
    Url {
        /// The URL.
        url: String,
    },
}

/// The revision a command deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRef {
    /// Revision id.
    pub id: String,
    /// sha256 of the archive.
    pub sha256: String,
    /// Where to get it.
    pub location: RevisionLocation,
    /// The revision's signature ([`Revision::signature`]), if it has one. An agent with trusted signers refuses,
    /// before unpacking anything, a revision without a valid one; older coordinators send none (absent = `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The archive's size in bytes, when the coordinator stores it: the agent checks it has room for it before
    /// downloading (absent from older coordinators and for URL revisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// One step for one agent to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCommand {
    /// Unique, never reused; the report names it.
    pub command_id: i64,
    /// Deployment id.
    pub deployment_id: String,
    /// Application.
    pub application: String,
    /// Group name.
    pub group: String,
    /// Group id.
    pub group_id: String,
    /// The event to perform.
    pub event: LifecycleEvent,
    /// The revision being deployed.
    pub revision: RevisionRef,
    /// True for a rollback deployment: the revision is expected in the host's cache.
    pub rollback: bool,
    /// The deployment's form, when it is form-defined (on the wire: its JSON text, see [`CreateGroup::form`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::form::json_text"
    )]
    pub form: Option<Form>,
    /// The deployment's overrides (absent from older coordinators: none).
    #[serde(default, skip_serializing_if = "AgentOverrides::is_default")]
    pub overrides: AgentOverrides,
}

/// What the coordinator answers a poll or a report with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponse {
    /// The next step to run, if any.
    pub command: Option<StepCommand>,
}

/// How a step ended, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The step did its work.
    Succeeded,
    /// Nothing to do.
    Skipped,
    /// The step failed; the instance fails.
    Failed,
}

wire_names!(StepOutcome, "step outcome", {
    Succeeded => "succeeded",
    Skipped => "skipped",
    Failed => "failed",
});

/// `POST /v1/agent/reports`: the end of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepReport {
    /// The command this reports on.
    pub command_id: i64,
    /// How it ended.
    pub outcome: StepOutcome,
    /// One line for people.
    pub message: String,
    /// Hooks that ran.
    #[serde(default)]
    pub hooks: Vec<HookOutcome>,
    /// Wall-clock duration.
    #[serde(default)]
    pub duration_ms: u64,
    /// The step's full hook output (absent when no hook wrote anything, e.g. a step without hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<StepLog>,
}

/// Everything one step's hooks wrote, as the agent's `logs/scripts.log` holds it for that step (one
/// `[time] [stream] EVENT location: text` line each). Bounded: when over the bound the newest bytes are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLog {
    /// The kept output (the newest bytes).
    pub text: String,
    /// How many older bytes were cut to stay within the bound.
    #[serde(default)]
    pub truncated_bytes: u64,
}

impl StepLog {
    /// Keep at most `max` bytes: the newest ones, starting at a line start when the cut falls inside a line that
    /// is not the last (else at a character boundary); every byte cut is added to `truncated_bytes`.
    pub fn keep_newest(self, max: usize) -> Self {
        let Self {
            text,
            truncated_bytes,
        } = self;
        if text.len() <= max {
            return Self {
                text,
                truncated_bytes,
            };
        }
        let mut start = text.len() - max;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        if text.as_bytes()[start - 1] != b'\n'
            && let Some(nl) = text[start..].find('\n')
            && start + nl + 1 < text.len()
        {
            start += nl + 1;
        }
        Self {
            text: text[start..].to_owned(),
            truncated_bytes: truncated_bytes.saturating_add(start as u64),
        }
    }
}

/// One step's log as the coordinator stores it (`GET /v1/deployments/{id}/logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLogEntry {
    /// Position in the coordinator's log stream (increasing; use the last one seen as `after`).
    pub seq: i64,
    /// The instance the step ran on.
    pub instance: String,
    /// The step's event.
    pub event: LifecycleEvent,
    /// The output (newest bytes kept).
    pub text: String,
    /// Bytes cut from the start of the output, by the agent and the coordinator together.
    pub truncated_bytes: u64,
    /// When the coordinator stored it.
    pub recorded_at_ms: i64,
}

/// The query of `GET /v1/deployments/{id}/logs`. Unknown parameters are ignored (a browser client may add a cache
/// buster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// Only this instance's entries.
    #[serde(default)]
    pub instance: Option<String>,
    /// Only this event's entries (its name, e.g. `AfterInstall`).
    #[serde(default)]
    pub event: Option<String>,
    /// Only entries with a higher `seq` (the `next` of the previous page).
    #[serde(default)]
    pub after: Option<i64>,
    /// Wait up to this long (capped by the coordinator) for an entry when there is none yet.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// A page of a deployment's step logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLogPage {
    /// Entries with `seq > after`, oldest first.
    pub entries: Vec<StepLogEntry>,
    /// The cursor for the next call: the highest `seq` returned (or the `after` given).
    pub next: i64,
    /// The deployment is in a terminal status: no more entries are expected once this page is drained.
    pub deployment_ended: bool,
}

/// The answer to a report: whether it was new, and the agent's next command at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResponse {
    /// False when this command had already been reported (the report is acknowledged and ignored).
    pub recorded: bool,
    /// The next step to run, if any.
    pub command: Option<StepCommand>,
}

/// `GET /v1/agent/commands/{id}`: whether a sent command is still wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandState {
    /// True when a forced stop cancelled it: the agent should stop the step.
    pub cancelled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_parses_and_prints() {
        assert_eq!("3".parse::<Concurrency>(), Ok(Concurrency::Count(3)));
        assert_eq!("50%".parse::<Concurrency>(), Ok(Concurrency::Percent(50)));
        assert_eq!("all".parse::<Concurrency>(), Ok(Concurrency::All));
        assert_eq!("100%".parse::<Concurrency>(), Ok(Concurrency::Percent(100)));
        assert_eq!(
            "4294967295".parse::<Concurrency>(),
            Ok(Concurrency::Count(u32::MAX))
        );
        for bad in [
            "0",
            "0%",
            "101%",
            "-1",
            "x",
            "",
            " 1",
            "1 ",
            "all ",
            " all",
            "ALL",
            "All",
            "+1",
            "01",
            "050%",
            "50 %",
            " 50%",
            "%",
            "1e3",
            "4294967296",
            "255%",
            "all%",
        ] {
            assert!(bad.parse::<Concurrency>().is_err(), "{bad:?}");
        }
        assert_eq!(Concurrency::Percent(25).to_string(), "25%");
    }

    #[test]
    fn a_near_miss_concurrency_is_refused_with_the_exact_spelling() {
        let msg = |s: &str| s.parse::<Concurrency>().err().map(|e| e.to_string());
        let all = msg("ALL").unwrap_or_default();
        assert!(all.contains(CONCURRENCY_FORMS), "{all}");
        assert!(all.ends_with("(did you mean `all`?)"), "{all}");
        assert!(
            msg(" 1")
                .unwrap_or_default()
                .ends_with("(did you mean `1`?)")
        );
        assert!(
            msg("50 %")
                .unwrap_or_default()
                .ends_with("(did you mean `50%`?)")
        );
        // No suggestion when nothing close is valid.
        assert!(!msg("0").unwrap_or_default().contains("did you mean"));
    }

    #[test]
    fn every_concurrency_prints_as_its_one_spelling() {
        for c in [
            Concurrency::All,
            Concurrency::Count(1),
            Concurrency::Count(u32::MAX),
            Concurrency::Percent(1),
            Concurrency::Percent(100),
            Concurrency::MinHealthy(MinHealthy::HostCount(0)),
            Concurrency::MinHealthy(MinHealthy::HostCount(6)),
            Concurrency::MinHealthy(MinHealthy::FleetPercent(0)),
            Concurrency::MinHealthy(MinHealthy::FleetPercent(99)),
        ] {
            assert_eq!(c.to_string().parse::<Concurrency>(), Ok(c));
        }
    }

    #[test]
    fn a_minimum_healthy_is_a_concurrency_spelled_min_healthy() {
        assert_eq!(
            "min-healthy:6".parse::<Concurrency>(),
            Ok(Concurrency::MinHealthy(MinHealthy::HostCount(6)))
        );
        assert_eq!(
            "min-healthy:40%".parse::<Concurrency>(),
            Ok(Concurrency::MinHealthy(MinHealthy::FleetPercent(40)))
        );
        for bad in [
            "min-healthy:",
            "min-healthy:100%",
            "min-healthy: 6",
            "MIN-HEALTHY:6",
            "min-healthy:all",
        ] {
            assert!(bad.parse::<Concurrency>().is_err(), "{bad:?}");
        }
        // 9 instances, HOST_COUNT 6: 3 at a time, narrowing as instances fail; 10 with 95% is refused.
        let c = Concurrency::MinHealthy(MinHealthy::HostCount(6));
        assert_eq!((c.limit(9), c.window(9, 0), c.window(9, 2)), (3, 3, 1));
        assert!(c.check(9).is_ok());
        let e = Concurrency::MinHealthy(MinHealthy::FleetPercent(95)).check(10);
        assert!(e.is_err_and(|e| e.to_string().contains("10 − 10 = 0")));
        assert!(Concurrency::Count(3).check(1).is_ok());
    }

    #[test]
    fn an_instance_list_is_bounded_valid_and_without_repeats() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(check_instance_list(&[]), Ok(()));
        assert_eq!(check_instance_list(&names(&["a", "b.c", "d_e-1"])), Ok(()));
        assert_eq!(
            check_instance_list(&names(&["a", "b", "a", "c", "b", "a"])),
            Err(InstanceListError::Duplicates(names(&["a", "b"])))
        );
        assert_eq!(
            check_instance_list(&names(&["ok", "", ".hidden", "a/b"])),
            Err(InstanceListError::InvalidNames(names(&[
                "", ".hidden", "a/b"
            ])))
        );
        let many: Vec<String> = (0..=MAX_GROUP_INSTANCES).map(|i| format!("i{i}")).collect();
        assert_eq!(
            check_instance_list(&many),
            Err(InstanceListError::TooMany(MAX_GROUP_INSTANCES + 1))
        );
        assert_eq!(check_instance_list(&many[1..]), Ok(()));
        let msg = InstanceListError::Duplicates(names(&["x", "y"])).to_string();
        assert_eq!(
            msg,
            "field `instances`: names listed more than once: `x`, `y`"
        );
    }

    #[test]
    fn a_name_list_shows_the_first_names_and_counts_the_rest() {
        let many: Vec<String> = (0..25).map(|i| format!("n{i}")).collect();
        let text = NameList(&many).to_string();
        assert!(text.starts_with("`n0`, `n1`"), "{text}");
        assert!(text.ends_with("`n19` and 5 more"), "{text}");
        let long = ["x".repeat(100_000)];
        assert!(NameList(&long).to_string().len() < 200);
    }

    #[test]
    fn concurrency_limit_rounds_down_with_a_floor_of_one() {
        assert_eq!(Concurrency::Percent(50).limit(4), 2);
        assert_eq!(Concurrency::Percent(50).limit(5), 2);
        assert_eq!(Concurrency::Percent(10).limit(4), 1);
        assert_eq!(Concurrency::Count(10).limit(4), 4);
        assert_eq!(Concurrency::Count(1).limit(4), 1);
        assert_eq!(Concurrency::All.limit(4), 4);
        assert_eq!(Concurrency::All.limit(0), 1);
    }

    #[test]
    fn concurrency_serializes_as_a_string() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&Concurrency::Percent(50))?, "\"50%\"");
        let c: Concurrency = serde_json::from_str("\"all\"")?;
        assert_eq!(c, Concurrency::All);
        assert!(serde_json::from_str::<Concurrency>("\"0\"").is_err());
        Ok(())
    }

    #[test]
    fn error_body_has_the_documented_shape() -> Result<(), serde_json::Error> {
        let body = ErrorBody {
            error: ErrorDetail {
                code: "not_found".into(),
                message: "no deployment `d-1`".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&body)?,
            r#"{"error":{"code":"not_found","message":"no deployment `d-1`"}}"#
        );
        Ok(())
    }

    #[test]
    fn style_names_round_trip() {
        for s in [
            DeploymentStyle::InPlace,
            DeploymentStyle::InPlaceLb,
            DeploymentStyle::BlueGreen,
        ] {
            assert_eq!(s.name().parse::<DeploymentStyle>(), Ok(s));
        }
        assert!("rolling".parse::<DeploymentStyle>().is_err());
    }

    /// Every name of the one table is the variant's serde name, parses back, and an unknown name lists them.
    fn names_match_serde<T>(all: &[T]) -> Result<(), serde_json::Error>
    where
        T: Copy + fmt::Display + FromStr<Err = UnknownName> + Serialize + PartialEq + fmt::Debug,
    {
        for v in all {
            assert_eq!(serde_json::to_value(v)?, serde_json::json!(v.to_string()));
            assert_eq!(v.to_string().parse::<T>().as_ref(), Ok(v));
        }
        let err = "nope".parse::<T>().err();
        assert_eq!(err.map(|e| e.expected.len()), Some(all.len()));
        Ok(())
    }

    #[test]
    fn a_coordinator_location_carries_no_path() -> Result<(), serde_json::Error> {
        let json = serde_json::to_value(RevisionLocation::Coordinator)?;
        assert_eq!(json, serde_json::json!({"kind": "coordinator"}));
        // A command journaled by an older agent (with the path the coordinator used to send) still reads.
        let old: RevisionLocation =
            serde_json::from_str(r#"{"kind":"coordinator","path":"/old/bundle/path"}"#)?;
        assert_eq!(old, RevisionLocation::Coordinator);
        Ok(())
    }

    #[test]
    fn wire_enum_names_are_their_serde_names() -> Result<(), serde_json::Error> {
        names_match_serde(DeploymentStyle::ALL)?;
        names_match_serde(DeploymentStatus::ALL)?;
        names_match_serde(InstanceStatus::ALL)?;
        names_match_serde(StepState::ALL)?;
        names_match_serde(StepOutcome::ALL)?;
        names_match_serde(InstanceState::ALL)?;
        assert_eq!(
            "rolling".parse::<DeploymentStyle>().map_err(|e| e.to_string()),
            Err("unknown deployment style `rolling`: expected `in-place`, `in-place-lb` or `blue-green`".into())
        );
        assert_eq!(InstanceStatus::InProgress.name(), "in_progress");
        assert_eq!(StepState::Running.to_string(), "running");
        Ok(())
    }

    fn log(text: &str, cut: u64) -> StepLog {
        StepLog {
            text: text.to_owned(),
            truncated_bytes: cut,
        }
    }

    #[test]
    fn step_log_keeps_the_newest_whole_lines_and_counts_the_cut() {
        // Within the bound: unchanged.
        assert_eq!(log("a\nb\n", 3).keep_newest(4), log("a\nb\n", 3));
        // The cut falls inside "second": the partial line goes too.
        let kept = log("first\nsecond\nthird\n", 1).keep_newest(9);
        assert_eq!(kept, log("third\n", 1 + 13));
        // The cut falls exactly on a line start.
        assert_eq!(log("aa\nbb\n", 0).keep_newest(3), log("bb\n", 3));
        // One long line: its end, at a character boundary.
        let kept = log("ééééé", 0).keep_newest(5);
        assert_eq!(kept, log("éé", 6));
        assert!(kept.text.len() <= 5);
        // The total is preserved: kept + cut = original + earlier cut.
        let text = "x".repeat(1000) + "\n" + &"y".repeat(10);
        let kept = log(&text, 7).keep_newest(100);
        assert_eq!(kept.text.len() as u64 + kept.truncated_bytes, 1011 + 7);
    }
}
