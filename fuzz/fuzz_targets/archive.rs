//! Fuzz target `archive`: see `rollcage_fuzzing::archive` for what it runs and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rollcage_fuzzing::archive::check(data);
});
