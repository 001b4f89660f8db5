//! `rollcage`: the one binary of the project.

fn main() {}
