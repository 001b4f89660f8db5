//! Fuzz target `wire`: see `rollcage_fuzzing::wire` for what it runs and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rollcage_fuzzing::wire::check(data);
});
