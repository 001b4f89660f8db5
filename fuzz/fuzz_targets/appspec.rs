//! Fuzz target `appspec`: see `rollcage_fuzzing::appspec` for what it runs and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rollcage_fuzzing::appspec::check(data);
});
