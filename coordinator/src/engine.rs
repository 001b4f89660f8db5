//! The deployment engine: the pure rolling strategy ([`strategy`]) over the plans of `rollcage_proto::plan`, and the one
//! executor that applies its decisions to the database ([`executor`]); load-balancer settings ([`lb`]) and the
//! coordinator's own traffic steps ([`traffic`]).

pub mod executor;
pub mod lb;
pub mod lb_counters;
pub mod strategy;
pub mod traffic;
