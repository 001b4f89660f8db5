//! Building runtime API command lines and judging their replies. Pure, no I/O.
//!
//! HAProxy reads one line per request and splits it at `;` into commands, so data must never reach a
//! command line unchecked: every backend, server and map key is validated against HAProxy's own identifier
//! alphabet (letters, digits, `-`, `_`, `.`, `:`) and map paths against a conservative path alphabet. A name
//! outside it is refused rather than escaped.

/// The server admin states `set server B/S state` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// In rotation.
    Ready,
    /// No new traffic; in-flight requests and health checks go on.
    Drain,
    /// No traffic and no health checks.
    Maint,
}

impl AdminState {
    fn word(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

/// What identifiers may contain (HAProxy's rule for proxy and server names).
pub const NAME_RULE: &str = "letters, digits, `-`, `_`, `.` and `:` only, at most 128 characters";
/// What map file paths may contain.
pub const PATH_RULE: &str =
    "an absolute path of letters, digits, `/`, `-`, `_`, `.` only, at most 4096 characters";

/// Whether `name` is a valid HAProxy identifier that is safe on a command line.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Whether `path` is safe on a command line as a map file reference.
pub fn valid_map_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 4096
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
}

/// `set server B/S state X`.
pub fn set_state(backend: &str, server: &str, state: AdminState) -> String {
    format!("set server {backend}/{server} state {}", state.word())
}

/// Back into rotation only after fresh health checks pass: `ready` alone would trust the old health
/// ("assumed up", `UP 1/2`) and send traffic at once; `health down` makes HAProxy wait for `rise` good checks
/// (notes §1.4). `ready; health down` leaves a window in which a request can still reach the server on its old
/// health (seen under load, about one run in a hundred), and `health down` does not stick to a server in
/// `maint`; so the server first goes to `drain` (out of maintenance, checks running, no new traffic), is marked
/// down there, and only then made `ready`.
pub fn ready_after_checks(backend: &str, server: &str) -> String {
    format!(
        "{}; set server {backend}/{server} health down; {}",
        set_state(backend, server, AdminState::Drain),
        set_state(backend, server, AdminState::Ready)
    )
}

/// `shutdown sessions server B/S`: cut what is still in flight.
pub fn shutdown_sessions(backend: &str, server: &str) -> String {
    format!("shutdown sessions server {backend}/{server}")
}

/// `set map FILE KEY VALUE`.
pub fn set_map(map: &str, key: &str, value: &str) -> String {
    format!("set map {map} {key} {value}")
}

/// `add map FILE KEY VALUE`.
pub fn add_map(map: &str, key: &str, value: &str) -> String {
    format!("add map {map} {key} {value}")
}

/// `show info`: the worker's `Pid` and `Uptime_sec` (a reload changes the first and restarts the counters).
pub const SHOW_INFO: &str = "show info";

/// The map key whose value names the backend of a service's second ("new") group: `<service>.canary`.
pub fn canary_key(service: &str) -> String {
    format!("{service}.canary")
}

/// The map key whose value is the percentage of a service's requests sent to its new group: `<service>.weight`.
pub fn weight_key(service: &str) -> String {
    format!("{service}.weight")
}

/// `show map FILE`.
pub fn show_map(map: &str) -> String {
    format!("show map {map}")
}

/// The reply of a `set`/`add`/`shutdown` command: success is empty lines only; anything else is the
/// error text HAProxy printed (e.g. `No such server.`), returned trimmed.
pub fn check_set_reply(reply: &str) -> Result<(), String> {
    let text = reply.trim();
    if text.is_empty() {
        Ok(())
    } else {
        Err(text.to_owned())
    }
}

/// Whether a failed `set map` reply means the key is not in the map yet.
pub fn is_entry_not_found(reply: &str) -> bool {
    reply.trim() == "entry not found."
}

/// The value of `key` in the reply of `show map FILE` (lines `<ptr> <key> <value>`).
pub fn map_value<'a>(show_map_reply: &'a str, key: &str) -> Option<&'a str> {
    show_map_reply.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let _ptr = parts.next()?;
        (parts.next()? == key).then_some(())?;
        parts.next()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_inject_commands_are_invalid() {
        assert!(valid_name("bk_app1-blue.v2:1"));
        assert!(valid_name("10.0.0.1:8080"));
        for bad in ["", "a b", "a;shutdown sessions", "a\\", "a/b", "a\nb", "é"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&"x".repeat(129)));
        assert!(valid_map_path("/etc/haproxy/blue-green_1.map"));
        for bad in ["rel.map", "/a b.map", "/a;b", "/a\\b", "/a#b"] {
            assert!(!valid_map_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn commands_are_exactly_the_documented_ones() {
        assert_eq!(
            set_state("bk", "s1", AdminState::Drain),
            "set server bk/s1 state drain"
        );
        assert_eq!(
            ready_after_checks("bk", "s1"),
            "set server bk/s1 state drain; set server bk/s1 health down; set server bk/s1 state ready"
        );
        assert_eq!(
            shutdown_sessions("bk", "s1"),
            "shutdown sessions server bk/s1"
        );
        assert_eq!(
            set_map("/m.map", "app1", "green"),
            "set map /m.map app1 green"
        );
        assert_eq!(
            add_map("/m.map", "app1", "green"),
            "add map /m.map app1 green"
        );
        assert_eq!(canary_key("app1"), "app1.canary");
        assert_eq!(weight_key("app1"), "app1.weight");
        assert!(valid_name(&canary_key("app1")) && valid_name(&weight_key("app1")));
    }

    #[test]
    fn any_non_empty_reply_is_an_error() {
        assert_eq!(check_set_reply("\n"), Ok(()));
        assert_eq!(check_set_reply("\n\n"), Ok(()));
        assert_eq!(
            check_set_reply("No such server.\n\n"),
            Err("No such server.".to_owned())
        );
        assert!(
            check_set_reply("'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n")
                .is_err()
        );
        assert!(is_entry_not_found("entry not found.\n\n"));
        assert!(!is_entry_not_found("No such server.\n"));
    }

    #[test]
    fn reads_a_value_from_show_map() {
        let reply = "0x55e0c3a1b2c0 app1 bk_blue\n0x55e0c3a1b2f0 app2 bk_green\n\n";
        assert_eq!(map_value(reply, "app2"), Some("bk_green"));
        assert_eq!(map_value(reply, "app1"), Some("bk_blue"));
        assert_eq!(map_value(reply, "app"), None);
    }
}
