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
    // --json gives scripts a document too, on standard error: standard
    // output carries data only.
    let r = at(&nowhere, &["--json", "case", "list"]).code(2);
    assert_eq!(r.stdout, "");
    let v: serde_json::Value = serde_json::from_str(&r.stderr).expect("JSON on stderr");
    assert!(v["error"]
        .as_str()
        .is_some_and(|e| e.contains("not a Custodia node directory")));
    assert_eq!(v["schema_version"], 1, "every JSON document says its shape");
}

#[test]
fn a_mistyped_command_line_with_json_is_a_json_error_on_stderr() {
    // A script that asked for --json parses standard error as JSON: a
    // usage error found while parsing the command line is one too.
    for args in [
        &["--json", "case", "open", "--title", "T"][..],
        &["case", "list", "--json", "--no-such-option"],
        &[
            "--json",
            "custody",
            "record",
            "abc",
            "--action",
            "misplaced",
        ],
    ] {
        let r = custodia(args).code(2);
        assert_eq!(r.stdout, "", "{args:?}");
        let v: serde_json::Value = serde_json::from_str(&r.stderr)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON on stderr ({e}): {}", r.stderr));
        assert_eq!(v["schema_version"], 1, "{v}");
        let error = v["error"].as_str().expect("the error");
        assert!(!error.starts_with("error:"), "{error}");
        assert!(error.contains("try '--help'"), "{error}");
    }
    // Without --json it stays clap's text, and --help is no error.
    let r = custodia(&["case", "open", "--title", "T"]).code(2);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    custodia(&["--json", "case", "open", "--help"]).code(0);
    // A value "--json" after `--` is an argument, not the flag.
    let r = custodia(&["case", "show", "--", "--json"]).code(2);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
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
fn a_peer_key_that_is_not_64_hex_characters_is_a_usage_error() {
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
        .code(2);
        assert!(
            r.stderr.starts_with(&format!(
                "error: invalid value '{key}' for '--key <KEY>': must be the peer's agency id: 64 hex characters (got {} characters)\n",
                key.len()
            )),
            "{}",
            r.stderr
        );
    }
    let r = at(tmp.path(), &["peer", "list"]).code(0);
    assert!(r.stdout.starts_with("No peers pinned."), "{}", r.stdout);
}

/// Every malformed flag is a usage error (exit 2) that names the flag,
/// never a configuration file (which `init` has not written yet); a failed
/// `init` leaves no folder behind; country codes are accepted in lower
/// case; a case prefix that is too short says so.
#[test]
fn malformed_flags_are_exit_2_and_name_the_flag() {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let flag_error = |r: &common::Run, flag: &str| {
        assert!(r.stderr.contains(flag), "{flag}: {}", r.stderr);
        assert!(!r.stderr.contains("custodia.toml"), "{flag}: {}", r.stderr);
        assert_eq!(r.stdout, "");
    };

    // init: nothing is left behind, not even missing parents.
    for (flag, args) in [
        ("--listen", &["--country", "PH", "--listen", "bogus"][..]),
        (
            "--listen",
            &["--country", "PH", "--listen", "127.0.0.1:99999"],
        ),
        ("--country", &["--country", "PHL"]),
        ("--country", &["--country", "P1"]),
    ] {
        let dir = t.join("new").join("manila");
        let mut all = vec![
            "init",
            "--no-passphrase",
            "--agency",
            "Manila Cybercrime Unit",
        ];
        all.extend_from_slice(args);
        let r = at(&dir, &all).code(2);
        flag_error(&r, flag);
        assert!(!t.join("new").exists(), "{args:?} left {}", dir.display());
    }

    // Lowercase country codes are the same codes.
    let manila = t.join("manila");
    at(
        &manila,
        &[
            "init",
            "--no-passphrase",
            "--agency",
            "Manila Cybercrime Unit",
            "--country",
            "ph",
        ],
    )
    .code(0);
    let id = at(&manila, &["--json", "id"]).json();
    assert_eq!(id["country"], "PH");
    assert_eq!(id["schema_version"], 1);
    let berlin = init(&t.join("berlin"), "Berlin Partner Unit", "DE");

    // peer add: every flag checked before the configuration is touched.
    let zero = "0".repeat(64);
    for (flag, addr, key, country) in [
        ("--key", "127.0.0.1:7401", zero.as_str(), "DE"),
        ("--addr", "127.0.0.1", berlin.as_str(), "DE"),
        ("--addr", "no port here", berlin.as_str(), "DE"),
        ("--country", "127.0.0.1:7401", berlin.as_str(), "DEU"),
    ] {
        let r = at(
            &manila,
            &[
                "peer",
                "add",
                "berlin",
                "--addr",
                addr,
                "--key",
                key,
                "--country",
                country,
            ],
        )
        .code(2);
        flag_error(&r, flag);
    }
    // This node's own id is not a peer.
    let own = id["agency"].as_str().expect("own id").to_owned();
    let r = at(
        &manila,
        &[
            "peer",
            "add",
            "self",
            "--addr",
            "127.0.0.1:7401",
            "--key",
            &own,
        ],
    )
    .code(2);
    assert!(
        r.stderr.contains("this node's own agency id"),
        "{}",
        r.stderr
    );
    let r = at(&manila, &["peer", "list"]).code(0);
    assert!(r.stdout.starts_with("No peers pinned."), "{}", r.stdout);
    let v = at(
        &manila,
        &[
            "--json",
            "peer",
            "add",
            "berlin",
            "--addr",
            "127.0.0.1:7401",
            "--key",
            &berlin,
            "--country",
            "de",
        ],
    )
    .json();
    assert_eq!(v["country"], "DE");

    // case open and share: lowercase accepted, malformed a usage error.
    let r = at(
        &manila,
        &[
            "case",
            "open",
            "--title",
            "T",
            "--reference",
            "R",
            "--jurisdiction",
            "PHL",
        ],
    )
    .code(2);
    flag_error(&r, "--jurisdiction");
    let v = at(
        &manila,
        &[
            "--json",
            "case",
            "open",
            "--title",
            "T",
            "--reference",
            "R",
            "--jurisdiction",
            "ph",
        ],
    )
    .json();
    let case = v["case"].as_str().expect("case").to_owned();
    let r = at(
        &manila,
        &["case", "share", &case, "--with", "berlin", "--country", "D"],
    )
    .code(2);
    flag_error(&r, "--country");
    at(
        &manila,
        &[
            "case",
            "share",
            &case,
            "--with",
            "berlin",
            "--country",
            "de",
        ],
    )
    .code(0);
    let r = at(&manila, &["case", "share", &case, "--with", &zero]).code(2);
    assert!(
        r.stderr.contains("not a usable Ed25519 public key"),
        "{}",
        r.stderr
    );
    let r = at(&manila, &["case", "release-hold", &case, "--reason", " "]).code(2);
    flag_error(&r, "--reason");

    // A case prefix needs 6 characters.
    let r = at(&manila, &["case", "show", &case[..4]]).code(2);
    assert_eq!(
        r.stderr,
        format!(
            "error: no case {:?}: a case id prefix needs at least 6 hex characters (or give the case's reference; see `custodia case list`)\n",
            &case[..4]
        )
    );

    // custody: misuse of --copy is a usage error.
    let file = t.join("phone.img");
    std::fs::write(&file, b"image").expect("write");
    let v = at(
        &manila,
        &[
            "--json",
            "evidence",
            "add",
            &case,
            file.to_str().expect("UTF-8"),
        ],
    )
    .json();
    let item = v["registered"][0]["item"]
        .as_str()
        .expect("item")
        .to_owned();
    at(&manila, &["custody", "record", &item, "--action", "copied"]).code(2);
    at(
        &manila,
        &[
            "custody", "record", &item, "--action", "sealed", "--copy", &item,
        ],
    )
    .code(2);
}

/// `custody receive` names its argument for what it accepts.
#[test]
fn custody_receive_names_its_argument() {
    let r = custodia(&["custody", "receive", "--help"]).code(0);
    assert!(
        r.stdout
            .contains("custody receive [OPTIONS] <TRANSFER_OR_ITEM>"),
        "{}",
        r.stdout
    );
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
