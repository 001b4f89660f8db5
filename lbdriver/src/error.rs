//! The one error type of every driver. Each message names the load balancer (driver kind and address) and,
//! where it applies, the server group, the instance or the backend service.

use std::path::PathBuf;

/// A failed load-balancer operation.
#[derive(Debug, thiserror::Error)]
pub enum LbDriverError {
    /// The LB could not be reached or its answer not read.
    #[error("{lb}: {what}: cannot talk to the load balancer: {message}")]
    Unreachable {
        /// Driver kind and address.
        lb: String,
        /// The operation or command.
        what: String,
        /// The I/O or transport error.
        message: String,
    },
    /// The LB refused a command (HAProxy: any non-empty reply to a `set`).
    #[error("{lb}: group `{group}`, instance `{instance}`: `{command}` was refused: {reply}")]
    Rejected {
        /// Driver kind and address.
        lb: String,
        /// Server group (or `-`).
        group: String,
        /// Instance or service (or `-`).
        instance: String,
        /// The command sent.
        command: String,
        /// The LB's reply.
        reply: String,
    },
    /// The group does not exist on the LB.
    #[error("{lb}: server group `{group}` does not exist (expected {expected})")]
    UnknownGroup {
        /// Driver kind and address.
        lb: String,
        /// The group.
        group: String,
        /// What the LB should have (e.g. `a backend named \`blue\``).
        expected: String,
    },
    /// The instance is not a server of the group, and this driver cannot add servers.
    #[error(
        "{lb}: group `{group}` has no server for instance `{instance}` (expected a server with that \
         name or address; servers: {known})"
    )]
    UnknownInstance {
        /// Driver kind and address.
        lb: String,
        /// The group.
        group: String,
        /// The instance.
        instance: String,
        /// The servers the group has.
        known: String,
    },
    /// The backend service does not exist.
    #[error("{lb}: backend service `{service}` does not exist ({detail})")]
    UnknownService {
        /// Driver kind and address.
        lb: String,
        /// The service.
        service: String,
        /// Where it was looked up.
        detail: String,
    },
    /// A registered instance did not become healthy in time.
    #[error(
        "{lb}: group `{group}`, instance `{instance}`: not healthy after {waited_ms} ms (last state: {last})"
    )]
    NotHealthy {
        /// Driver kind and address.
        lb: String,
        /// The group.
        group: String,
        /// The instance.
        instance: String,
        /// How long it waited.
        waited_ms: u64,
        /// The last state seen.
        last: String,
    },
    /// A deregistered instance did not leave the group even after the drain timeout.
    #[error(
        "{lb}: group `{group}`, instance `{instance}`: still in the group {waited_ms} ms after \
         deregistration (last state: {last})"
    )]
    NotDrained {
        /// Driver kind and address.
        lb: String,
        /// The group.
        group: String,
        /// The instance.
        instance: String,
        /// How long it waited.
        waited_ms: u64,
        /// The last state seen.
        last: String,
    },
    /// The LB answered something this driver does not understand.
    #[error("{lb}: {what}: unexpected answer: {message}")]
    Protocol {
        /// Driver kind and address.
        lb: String,
        /// The operation or command.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// The LB's admin API returned an error.
    #[error("{lb}: group `{group}`, instance `{instance}`: {message}")]
    Api {
        /// Driver kind and address.
        lb: String,
        /// Server group or service (or `-`).
        group: String,
        /// Instance (or `-`).
        instance: String,
        /// The API's error.
        message: String,
    },
    /// A name cannot be used in a command (it would change the command's meaning).
    #[error("{lb}: {what} `{name}` is not a valid name: {expected}")]
    InvalidName {
        /// Driver kind and address.
        lb: String,
        /// `group`, `instance`, `service`…
        what: &'static str,
        /// The name.
        name: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// The map file that keeps a blue/green switch across reloads could not be read or written.
    #[error("{lb}: map file {}: {message}", path.display())]
    MapFile {
        /// Driver kind and address.
        lb: String,
        /// The map file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The driver configuration is invalid.
    #[error("load balancer configuration, field `{field}`: {message}")]
    Config {
        /// Field path, e.g. `driver.admin_url`.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
}
