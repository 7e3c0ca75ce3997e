//! The operator documentation keeps up with the code: every key of a
//! real `custodia.toml` (as `init` and `peer add` write it) has a row in
//! docs/configuration.md, every row there is a key the program reads, its
//! example parses, and every `CUSTODIA_…` environment variable named
//! anywhere in the workspace's code and scripts is documented there.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{at, init};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn configuration_md() -> String {
    std::fs::read_to_string(root().join("docs/configuration.md")).expect("docs/configuration.md")
}

/// The keys documented in the table under the heading that names
/// `[section]` (or `[[section]]`): the first column of each row.
fn documented_keys(doc: &str, section: &str) -> BTreeSet<String> {
    let heading = doc
        .lines()
        .position(|l| {
            l.starts_with("### ")
                && (l.contains(&format!("`[{section}]`"))
                    || l.contains(&format!("`[[{section}]]`")))
        })
        .unwrap_or_else(|| panic!("docs/configuration.md has no heading for [{section}]"));
    doc.lines()
        .skip(heading + 1)
        .take_while(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_configuration_key_is_documented_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path().join("node");
    init(&dir, "Unit", "PH");
    let other = tmp.path().join("other");
    let key = init(&other, "Other", "DE");
    at(
        &dir,
        &[
            "peer",
            "add",
            "other",
            "--addr",
            "127.0.0.1:7401",
            "--key",
            &key,
            "--country",
            "DE",
        ],
    )
    .code(0);
    let text = std::fs::read_to_string(dir.join("custodia.toml")).expect("custodia.toml");
    let written: toml::Table = toml::from_str(&text).expect("TOML");
    let doc = configuration_md();
    let mut sections = 0;
    for (section, value) in &written {
        let table = match value {
            toml::Value::Table(t) => t.clone(),
            toml::Value::Array(a) => a[0].as_table().expect("a table").clone(),
            other => panic!("a top-level key {section} = {other}"),
        };
        let have: BTreeSet<String> = table.keys().cloned().collect();
        let documented = documented_keys(&doc, section);
        assert_eq!(
            documented, have,
            "[{section}]: documented keys (left) and the keys a node writes (right) differ"
        );
        sections += 1;
    }
    assert_eq!(sections, 3, "agency, node and peer: {written:?}");
}

#[test]
fn the_documented_example_is_a_valid_configuration() {
    let doc = configuration_md();
    let start = doc.find("```toml\n").expect("an example") + "```toml\n".len();
    let example = &doc[start..start + doc[start..].find("```").expect("its end")];
    let c = custodia_node::Config::parse(example, Path::new("docs/configuration.md"))
        .unwrap_or_else(|e| panic!("the example does not parse: {e}"));
    assert_eq!(c.peers.len(), 1);
}

/// `CUSTODIA_…` names in a text.
fn variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("CUSTODIA_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.len() > "CUSTODIA_".len() {
            out.insert(name.trim_end_matches('_').to_owned());
        }
        rest = &rest[i + "CUSTODIA_".len()..];
    }
    out
}

/// The workspace's code and scripts: Rust sources, shell scripts and the
/// CI script, outside `target/`, fuzz corpora and hidden folders other
/// than `.ci`.
fn sources(dir: &Path, into: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("a folder").flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if name == "target" || name == "corpus" || (name.starts_with('.') && name != ".ci") {
                continue;
            }
            sources(&p, into);
        } else if kind.is_file() {
            let mut head = [0u8; 2];
            let script = std::fs::File::open(&p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok_and(|()| &head == b"#!");
            if name.ends_with(".rs") || name.ends_with(".sh") || script {
                into.push(p);
            }
        }
    }
}

#[test]
fn every_environment_variable_is_documented() {
    let mut files = Vec::new();
    sources(&root(), &mut files);
    let doc = configuration_md();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `CUSTODIA_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("CUSTODIA_{n}"))
        .collect();
    let mut used = BTreeSet::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for v in variables(&text) {
            used.insert((v, f.strip_prefix(root()).unwrap_or(f).display().to_string()));
        }
    }
    assert!(
        used.iter().any(|(v, _)| v == "CUSTODIA_DIR")
            && used.iter().any(|(v, _)| v == "CUSTODIA_LOG"),
        "the scan found too little: {used:?}"
    );
    let missing: Vec<String> = used
        .iter()
        .filter(|(v, _)| !documented.contains(v))
        .map(|(v, f)| format!("{v} (in {f})"))
        .collect();
    assert!(
        missing.is_empty(),
        "environment variables not documented in docs/configuration.md (a row `| `NAME` | …`): {missing:?}"
    );
    let names: BTreeSet<&String> = used.iter().map(|(v, _)| v).collect();
    let stale: Vec<&String> = documented.iter().filter(|d| !names.contains(d)).collect();
    assert!(stale.is_empty(), "documented but used nowhere: {stale:?}");
}

#[test]
fn the_operator_docs_are_linked() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(readme.contains("docs/configuration.md"), "README.md");
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).expect("operations.md");
    assert!(ops.contains("configuration.md"), "docs/operations.md");
}
