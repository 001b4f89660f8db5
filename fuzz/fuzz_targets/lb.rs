//! Fuzz target `lb`: see `rollcage_fuzzing::lb` for what it runs and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rollcage_fuzzing::lb::check(data);
});
