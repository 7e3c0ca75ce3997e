//! Fuzz target `config`: see `node/tests/fuzz_checks/mod.rs`.
#![no_main]

#[path = "../../../node/tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = checks::config(data);
});
