//! Fuzz target `form`: see `rollcage_fuzzing::form` for what it runs and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rollcage_fuzzing::form::check(data);
});
