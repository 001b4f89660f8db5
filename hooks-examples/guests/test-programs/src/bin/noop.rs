//! The trivial hook of the benchmark: does nothing, exits 0.
fn main() {}
