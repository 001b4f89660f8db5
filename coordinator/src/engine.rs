//! The deployment engine: the pure rolling strategy ([`strategy`]) over the plans of `rollcage_proto::plan`, and the one
//! executor that applies its decisions to the database ([`executor`]); the pure judge and bake state machine of
//! progressive delivery ([`analysis`]); the coordinator's own traffic steps
//! ([`traffic`]) and the LB counters behind `/metrics` ([`lb_counters`]). A group's load-balancer settings are the
//! typed `rollcage_proto::lb::GroupLb`, validated when the group is created and read from the store as they are.

pub mod analysis;
pub mod bake;
pub mod catchup;
pub mod executor;
pub mod lb_counters;
pub mod prometheus;
pub mod strategy;
pub mod traffic;
