//! The properties behind the node's fuzz targets (`protocol/fuzz`, targets
//! `config` and `keyfile`), shared with the property tests and the
//! regression corpus runner in `tests/fuzz_regressions.rs`.
//!
//! Each function takes arbitrary bytes and returns `Ok` when the input was
//! accepted or `Err` with the typed error's message. A panic is a finding.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use custodia_node::{Config, ConfigError};

/// `config`: [`Config::parse`] on arbitrary text (invalid UTF-8 is
/// replaced, as the node only ever parses a `String`). An accepted
/// configuration written back out the way `Config::save` writes it parses
/// to the same configuration; a refusal names the file.
pub fn config(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/custodia.toml");
    match Config::parse(&text, path) {
        Ok(c) => {
            let again = toml::to_string_pretty(&c).expect("a parsed config serializes");
            let back = Config::parse(&again, path)
                .unwrap_or_else(|e| panic!("saved config does not parse: {e}\n{again}"));
            assert_eq!(back, c, "save/load round trip");
            let _ = (
                c.pinned(),
                c.store_path(Path::new("d")),
                c.key_path(Path::new("d")),
            );
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz/custodia.toml"), "{msg}");
            match &e {
                ConfigError::Invalid { line: Some(l), .. } => {
                    assert!(*l >= 1 && *l <= text.lines().count().max(1) + 1, "line {l}")
                }
                ConfigError::Invalid { .. } => {}
                other => panic!("parse returned an I/O error: {other}"),
            }
            Err(msg)
        }
    }
}

/// A scratch file for [`keyfile`], one per process.
pub fn scratch_key_path() -> PathBuf {
    std::env::temp_dir().join(format!("custodia-fuzz-key-{}.pem", std::process::id()))
}

/// `keyfile`: [`custodia_node::read_key_file`] of a file (mode 0600, as a key file must
/// be) holding the bytes. A key read from a file is written back and read
/// again as the same identity. An encrypted file's structure is checked
/// before a passphrase is asked for (none is given here, so no input makes
/// the check spend seconds deriving keys).
pub fn keyfile(data: &[u8], path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    {
        use std::io::Write as _;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        opts.open(path)
            .and_then(|mut f| f.write_all(data))
            .expect("write scratch key file");
    }
    let r = custodia_node::read_key_file(path);
    let _ = std::fs::remove_file(path);
    match r {
        Ok(id) => {
            custodia_node::write_key_file(path, &id).expect("write key");
            let again = custodia_node::read_key_file(path).expect("read written key");
            let _ = std::fs::remove_file(path);
            assert_eq!(again.agency(), id.agency());
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            Err(msg)
        }
    }
}
