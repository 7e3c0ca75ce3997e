//! Fuzz target `keyfile`: see `node/tests/fuzz_checks/mod.rs`.
#![no_main]

#[path = "../../../node/tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = checks::scratch_key_path();
    let _ = checks::keyfile(data, &path);
});
