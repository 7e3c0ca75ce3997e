//! One CBOR layer: the CBOR library is named in `src/codec.rs` only, and
//! in no public signature, so it can be swapped without touching the API
//! or any other module (the wire format is fixed by SPEC.md, not by it).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_cbor_library_is_named_in_the_codec_module_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 10, "{files:?}");
    let codec = src.join("codec.rs");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        if *f != codec {
            assert!(
                !text.contains("serde_cbor"),
                "{} uses serde_cbor: go through codec.rs",
                f.display()
            );
        }
    }
}

#[test]
fn no_public_item_of_the_codec_module_takes_or_gives_a_cbor_tree() {
    let codec = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/codec.rs");
    let text = std::fs::read_to_string(codec).expect("read");
    for line in text.lines().map(str::trim_start) {
        if line.starts_with("pub fn") || line.starts_with("pub use") {
            assert!(
                !line.contains("Value") && !line.contains("serde_cbor"),
                "a public item shows the CBOR library: {line}"
            );
        }
    }
}
