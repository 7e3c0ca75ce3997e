//! The files a newcomer, a lawyer or a security researcher looks for first
//! are there and say what the workspace declares.

use std::path::{Path, PathBuf};

use custodia_node::{hash_reader, Wanted};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The SHA-256 of the Apache License 2.0 text (with its appendix) as the
/// Rust ecosystem ships it: the `LICENSE-APACHE` of rust-lang's crates,
/// `log`, `regex`, `tempfile` and most of this workspace's dependencies.
const APACHE_2_0_SHA256: &str = "a60eea817514531668d7e00765731449fe14d059d3249e0bc93b36de45f759f2";

#[test]
fn the_license_file_is_the_apache_license_the_workspace_declares() {
    assert!(
        read("Cargo.toml").contains("license = \"Apache-2.0\""),
        "the workspace declares Apache-2.0"
    );
    let text = read("LICENSE");
    assert!(
        text.trim_start()
            .starts_with("Apache License\n                        Version 2.0, January 2004"),
        "{}",
        &text[..200.min(text.len())]
    );
    let digest = hash_reader(text.as_bytes(), Wanted::default(), &mut |_| {})
        .expect("hashing")
        .digests
        .sha256;
    assert_eq!(
        hex::encode(digest),
        APACHE_2_0_SHA256,
        "the standard text, unchanged"
    );
    assert!(read("README.md").contains("[`LICENSE`](LICENSE)"));
}

#[test]
fn the_security_policy_says_how_to_report_and_what_is_in_scope() {
    let text = read("SECURITY.md");
    for heading in [
        "## Reporting a vulnerability",
        "## In scope",
        "## Out of scope",
    ] {
        assert!(text.contains(heading), "SECURITY.md lacks {heading}");
    }
    let scope = &text[text.find("## In scope").expect("scope")..];
    for part in [
        "**Protocol**",
        "**Node**",
        "**CLI**",
        "**Bundle verification**",
    ] {
        assert!(scope.contains(part), "scope lacks {part}");
    }
    assert!(read("README.md").contains("[`SECURITY.md`](SECURITY.md)"));
}
