//! Errors of the load balancer: `ControlError` for operations on groups, servers and services (each maps to
//! one admin API code and status), `LbError` for starting the load balancer.

use hyper::StatusCode;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A refused or failed control operation (admin API request).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Missing or wrong bearer token.
    #[error("missing or wrong admin token (expected `Authorization: Bearer <token>`)")]
    Unauthorized,
    /// No such route.
    #[error("no admin route {method} {path}")]
    NoRoute {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// Malformed request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A group or service name that is not acceptable.
    #[error("invalid {kind} name `{name}`: {reason}")]
    InvalidName {
        /// `group` or `service`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A server address that is not `host:port`.
    #[error("invalid server address `{address}` for group `{group}`: {reason}")]
    InvalidAddress {
        /// Group it was meant for.
        group: String,
        /// The address given.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// Unknown group.
    #[error("server group `{group}` does not exist")]
    GroupNotFound {
        /// The group.
        group: String,
    },
    /// The server is not (or no longer) in the group.
    #[error("server `{address}` is not in server group `{group}`")]
    ServerNotFound {
        /// The group.
        group: String,
        /// The server address.
        address: String,
    },
    /// Unknown service.
    #[error("backend service `{service}` does not exist")]
    ServiceNotFound {
        /// The service.
        service: String,
    },
    /// The group exists with other settings.
    #[error("server group `{group}` already exists with a different health check")]
    GroupConflict {
        /// The group.
        group: String,
    },
    /// The service exists with another listen address, or a new service lacks one.
    #[error("backend service `{service}`: {reason}")]
    ServiceConflict {
        /// The service.
        service: String,
        /// What conflicts.
        reason: String,
    },
    /// The listener of a new service could not be bound.
    #[error("backend service `{service}`: cannot listen on {listen}: {reason}")]
    Listen {
        /// The service.
        service: String,
        /// The address asked for.
        listen: String,
        /// The OS error.
        reason: String,
    },
    /// A traffic window that was never cut (`0` or beyond the last one).
    #[error("traffic window {id} does not exist (last cut: {last}; cut one with POST /v1/windows)")]
    WindowNotFound {
        /// The window asked for.
        id: u64,
        /// The last window cut (0: none yet).
        last: u64,
    },
    /// A split whose new group is the service's active group.
    #[error(
        "backend service `{service}`: the split's new group `{group}` is the group the service points at; expected another group"
    )]
    SplitOnActiveGroup {
        /// The service.
        service: String,
        /// The group given.
        group: String,
    },
    /// The load balancer is stopping.
    #[error("the load balancer is shutting down")]
    ShuttingDown,
}

impl ControlError {
    /// Stable machine-readable code for the admin API error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NoRoute { .. } => "no_route",
            Self::BadRequest(_) => "bad_request",
            Self::InvalidName { .. } => "invalid_name",
            Self::InvalidAddress { .. } => "invalid_address",
            Self::GroupNotFound { .. } => "group_not_found",
            Self::ServerNotFound { .. } => "server_not_found",
            Self::ServiceNotFound { .. } => "service_not_found",
            Self::GroupConflict { .. } => "group_conflict",
            Self::ServiceConflict { .. } => "service_conflict",
            Self::Listen { .. } => "listen_failed",
            Self::WindowNotFound { .. } => "window_not_found",
            Self::SplitOnActiveGroup { .. } => "split_on_active_group",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// HTTP status of the admin API answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NoRoute { .. }
            | Self::GroupNotFound { .. }
            | Self::ServerNotFound { .. }
            | Self::ServiceNotFound { .. }
            | Self::WindowNotFound { .. } => StatusCode::NOT_FOUND,
            Self::BadRequest(_) | Self::InvalidName { .. } | Self::InvalidAddress { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::GroupConflict { .. }
            | Self::ServiceConflict { .. }
            | Self::SplitOnActiveGroup { .. } => StatusCode::CONFLICT,
            Self::Listen { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The load balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// `admin API` or `service <name>`.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The admin token file is unusable.
    #[error("admin token file {}: {problem}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The configuration file is unusable.
    #[error("config file {}: {problem}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the entry's path).
        problem: String,
    },
    /// The initial groups/services of the configuration were refused.
    #[error("initial configuration: {0}")]
    Setup(#[from] ControlError),
}

/// An error and its chain of sources on one line (hyper's errors say little without their sources).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
