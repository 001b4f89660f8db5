//! AppSpec validation: one test per CodeDeploy rule (notes/codedeploy.md §1.6) and per stricter rollcage rule,
//! each asserting the problem kind and field path (and the position where it matters), plus a full round trip.
//! One test binary with a module per section, so the runtime links once.

mod appspec_rules {
    pub mod files;
    pub mod hooks;
    pub mod permissions;
    pub mod roundtrip;
    pub mod sandbox;
    pub mod support;
    pub mod toplevel;
}
