//! The fuzz oracles: for each cargo-fuzz target in `fuzz/`, the function that runs one input through the real
//! parser or unpacker and asserts what must hold whatever the input (no panic, round trips, documented bounds).
//!
//! The oracles live in this ordinary workspace crate, not in `fuzz/` (a nightly-only workspace of its own), so that
//! the committed regression inputs (`fuzz/regressions/<target>/`) run through the very same function in the
//! normal test suite (`tests/regressions.rs`), on stable. An invariant that does not hold is a panic: that is what
//! libFuzzer records as a crash.
//!
//! Targets ([`TARGETS`]): `appspec` (the AppSpec loader), `form` (the form loader, TOML and YAML), `archive` (the
//! unpacker: tar, tar.gz and zip), `lb` (a group's load-balancer settings as the CLI and coordinator read them)
//! and `wire` (the agent protocol's JSON: commands, poll answers, step reports and their bounds).

#[cfg(feature = "runtime")]
pub mod appspec;
#[cfg(feature = "runtime")]
pub mod archive;
#[cfg(feature = "runtime")]
pub mod form;
pub mod lb;
pub mod wire;

/// What the code under test made of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (parsed and valid, or unpacked).
    Accepted,
    /// Refused with an error (the expected answer to most hostile inputs).
    Refused,
}

impl Verdict {
    /// `Accepted` when any of `results` is.
    pub fn any(results: impl IntoIterator<Item = bool>) -> Self {
        if results.into_iter().any(|ok| ok) {
            Self::Accepted
        } else {
            Self::Refused
        }
    }
}

/// One fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and `fuzz/regressions/<name>/` directory)
/// and its oracle.
pub type Target = (&'static str, fn(&[u8]) -> Verdict);

/// Every target, by name (those of the runtime crate with feature `runtime`, on by default).
pub const TARGETS: &[Target] = &[
    #[cfg(feature = "runtime")]
    ("appspec", appspec::check),
    #[cfg(feature = "runtime")]
    ("form", form::check),
    #[cfg(feature = "runtime")]
    ("archive", archive::check),
    ("lb", lb::check),
    ("wire", wire::check),
];
