//! Throwaway PostgreSQL servers for tests: real servers, nothing mocked.
//!
//! Two ways in:
//! - [`Server::start`]: a private server for one test (`initdb` into a fresh temp dir, `postgres` on a free loopback
//!   port and a unix socket in that dir), stopped and removed on drop; [`Server::kill`] crashes it on purpose.
//! - [`shared_database`]: a fresh, uniquely named database on one server shared by every test process of the machine
//!   (cargo nextest runs each test in its own process, and an `initdb` per test would cost seconds). The first
//!   process to ask starts it, detached, so it outlives that process; [`stop_shared`] (`rollcage-testpg stop`, run
//!   by `scripts/test.sh` at the end) stops it.
//!
//! The binaries are Debian's (`/usr/lib/postgresql/VERSION/bin`, installed by `scripts/setup.sh`); without them
//! every entry point fails with [`Error::NotInstalled`], never skips. As root, the servers run as the `postgres`
//! user (PostgreSQL refuses to run as root); otherwise as the caller.
//!
//! This crate is for tests and benchmarks only: the servers trust every local connection and are tuned to lose
//! data on a crash (no fsync), see [`cluster`].

pub mod cluster;
mod error;
pub mod install;
mod server;
mod shared;

pub use error::{Error, Result};
pub use server::Server;
pub use shared::{DIR_ENV, Database, Shared, shared_database, stop_shared};

/// The superuser every test server is created with (`initdb --username`); URLs connect as it.
pub const SUPERUSER: &str = "postgres";
