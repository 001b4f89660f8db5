//! Notifications (issue 15): a deployment group's webhooks.
//!
//! The store queues one outbox row per event per endpoint in the transaction that records the transition
//! ([`crate::store::webhooks`]); [`deliver::run`] posts them in order per endpoint, signed ([`sign`]), with the
//! body of [`body`], retried on the schedule of [`backoff`]. Nothing here runs inside the engine's transactions
//! except the queuing, so a slow or dead receiver never holds a deployment up.

pub mod backoff;
pub mod body;
pub mod deliver;
pub mod sign;

pub use backoff::Retry;

#[cfg(test)]
mod tests;
