//! Golden tests of usage and configuration errors, and of every command's
//! help.

mod common;

use common::{at, custodia, init};

#[test]
fn a_store_directory_that_does_not_exist_is_exit_2() {
    let tmp = tempfile::tempdir().expect("tmp");
    let nowhere = tmp.path().join("nowhere");
    for args in [
        &["case", "list"][..],
        &["agency", "list"],
        &["evidence", "check", "abcdef", "x"],
        &["custody", "receive", "abcdef"],
    ] {
        let r = at(&nowhere, args).code(2);
        assert_eq!(r.stdout, "");
        assert_eq!(
            r.stderr,
            format!(
                "error: {0} is not a Custodia node directory (no custodia.toml); create one with `custodia --dir {0} init`\n",
                nowhere.display()
            )
        );
    }
    // --json gives scripts a document too.
    let r = at(&nowhere, &["--json", "case", "list"]).code(2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert!(v["error"]
        .as_str()
        .is_some_and(|e| e.contains("not a Custodia node directory")));
}

#[test]
fn no_directory_at_all_is_exit_2() {
    let r = custodia(&["case", "list"]).code(2);
    assert_eq!(
        r.stderr,
        "error: no node directory: pass --dir DIR or set CUSTODIA_DIR\n"
    );
}

#[test]
fn a_malformed_tlp_is_exit_2_and_lists_the_labels() {
    let tmp = tempfile::tempdir().expect("tmp");
    init(tmp.path(), "Manila Cybercrime Unit", "PH");
    let r = at(
        tmp.path(),
        &[
            "case",
            "open",
            "--title",
            "T",
            "--reference",
            "R",
            "--tlp",
            "orange",
        ],
    )
    .code(2);
    assert!(
        r.stderr.contains(
            "\"orange\" is not a TLP 2.0 label: use clear, green, amber, amber+strict or red"
        ),
        "{}",
        r.stderr
    );
    let r = at(tmp.path(), &["case", "list"]).code(0);
    assert!(r.stdout.starts_with("No cases yet."), "{}", r.stdout);
}

#[test]
fn a_peer_key_that_is_not_64_hex_characters_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    init(tmp.path(), "Manila Cybercrime Unit", "PH");
    for key in ["abcd", &"z".repeat(64), &"a".repeat(66)] {
        let r = at(
            tmp.path(),
            &[
                "peer",
                "add",
                "bka",
                "--addr",
                "127.0.0.1:7401",
                "--key",
                key,
            ],
        )
        .code(1);
        assert_eq!(
            r.stderr,
            format!(
                "error: --key must be the peer's agency id: 64 hex characters (got {} characters)\n",
                key.len()
            )
        );
    }
    let r = at(tmp.path(), &["peer", "list"]).code(0);
    assert!(r.stdout.starts_with("No peers pinned."), "{}", r.stdout);
}

/// The subcommands a help text lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every subcommand's --help says what it does and gives an example
/// (subcommands are discovered from the help itself, so new ones are
/// covered too).
#[test]
fn every_command_has_help_with_an_example() {
    let top = custodia(&["--help"]).code(0);
    assert!(
        top.stdout.contains("Exit codes: 0 success"),
        "{}",
        top.stdout
    );
    assert!(top.stdout.contains("custodia demo"), "{}", top.stdout);
    let mut todo: Vec<Vec<String>> = subcommands(&top.stdout)
        .into_iter()
        .map(|c| vec![c])
        .collect();
    let mut leaves = Vec::new();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let r = custodia(&args).code(0);
        let children = subcommands(&r.stdout);
        if children.is_empty() {
            let first = r.stdout.lines().next().unwrap_or_default();
            assert!(first.len() > 10, "{path:?}: no description: {}", r.stdout);
            assert!(
                r.stdout.contains("Example: custodia "),
                "{path:?}: no example: {}",
                r.stdout
            );
            leaves.push(path.join(" "));
        } else {
            for c in children {
                let mut p = path.clone();
                p.push(c);
                todo.push(p);
            }
        }
    }
    for want in [
        "init",
        "evidence add",
        "evidence check",
        "custody transfer",
        "custody receive",
        "custody record",
        "case log",
        "agency list",
        "demo",
    ] {
        assert!(leaves.iter().any(|l| l == want), "{want} in {leaves:?}");
    }
}
