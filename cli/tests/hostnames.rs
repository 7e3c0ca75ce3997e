//! Peers and `--listen` given as host names (agencies publish host names,
//! not addresses): the configuration keeps the name, the node resolves it
//! when it starts listening and each time it dials.

mod common;

use common::{at, free_port, init, open_case, spawn_node, wait_until};

#[test]
fn two_nodes_named_by_host_name_replicate_a_case() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (manila, berlin) = (tmp.path().join("manila"), tmp.path().join("berlin"));
    let (pm, pb) = (free_port(), free_port());
    let (listen_m, listen_b) = (format!("localhost:{pm}"), format!("localhost:{pb}"));
    let node = |dir: &std::path::Path, name: &str, country: &str, listen: &str| {
        let v = at(
            dir,
            &[
                "--json",
                "init",
                "--no-passphrase",
                "--agency",
                name,
                "--country",
                country,
                "--listen",
                listen,
            ],
        )
        .json();
        v["agency"].as_str().expect("agency").to_owned()
    };
    let m = node(&manila, "Manila Cybercrime Unit", "PH", &listen_m);
    let b = node(&berlin, "Berlin Partner Unit", "DE", &listen_b);
    assert_eq!(at(&berlin, &["--json", "id"]).json()["listen"], listen_b);

    at(
        &manila,
        &[
            "peer",
            "add",
            "berlin",
            "--addr",
            &listen_b,
            "--key",
            &b,
            "--country",
            "DE",
        ],
    )
    .code(0);
    at(
        &berlin,
        &[
            "peer",
            "add",
            "manila",
            "--addr",
            &listen_m,
            "--key",
            &m,
            "--country",
            "PH",
        ],
    )
    .code(0);
    let list = at(&manila, &["--json", "peer", "list"]).json();
    assert_eq!(list["peers"][0]["addr"], listen_b.as_str());

    let case = open_case(&manila, "Operation Lantern", "MCU-2026-0042");
    at(
        &manila,
        &[
            "case",
            "share",
            &case,
            "--with",
            "berlin",
            "--role",
            "investigator",
        ],
    )
    .code(0);

    let _m = spawn_node(&manila);
    let _b = spawn_node(&berlin);
    wait_until("Berlin to hold the case shared by Manila", || {
        let r = at(&berlin, &["--json", "case", "list"]);
        r.code == 0 && r.stdout.contains(&case)
    });
    let show = at(&berlin, &["--json", "case", "show", &case]).json();
    assert_eq!(show["reference"], "MCU-2026-0042", "{show}");
}

/// A host name that is not a name, or no port: a usage error naming the
/// flag.
#[test]
fn malformed_host_names_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let manila = tmp.path().join("manila");
    init(&manila, "Manila Cybercrime Unit", "PH");
    let key = init(&tmp.path().join("bka"), "BKA", "DE");
    let key = key.as_str();
    for addr in [
        "localhost",
        "localhost:",
        "localhost:http",
        "localhost:70000",
        "bad_name.example:7401",
        "-bad.example:7401",
        "a..b:7401",
        ":7401",
        "host name:7401",
    ] {
        let r = at(
            &manila,
            &["peer", "add", "bka", "--addr", addr, "--key", key],
        )
        .code(2);
        assert!(r.stderr.contains("--addr"), "{addr}: {}", r.stderr);
    }
    for addr in ["bka.example.de:7401", "node-1.bka.de:7401", "[::1]:7401"] {
        at(
            &manila,
            &["peer", "add", "bka", "--addr", addr, "--key", key],
        )
        .code(0);
    }
}
