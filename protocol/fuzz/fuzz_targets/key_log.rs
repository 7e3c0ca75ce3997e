//! Fuzz target `key_log`: see `protocol/tests/fuzz_checks/mod.rs` for the
//! property checked.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = checks::key_log(data);
});
