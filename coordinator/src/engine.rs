//! The deployment engine: step plans per style ([`plan`]), the pure rolling strategy ([`strategy`]) and the one
//! executor that applies its decisions to the database ([`executor`]).

pub mod executor;
pub mod plan;
pub mod strategy;
