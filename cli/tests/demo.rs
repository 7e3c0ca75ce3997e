//! `custodia demo` runs three real nodes on loopback and exits 0.

mod common;

use std::time::{Duration, Instant};

use common::custodia;

#[test]
fn demo_runs_three_agencies_and_exits_0() {
    let start = Instant::now();
    let r = custodia(&["demo"]).code(0);
    assert!(
        start.elapsed() < Duration::from_secs(45),
        "the demo took {:?}",
        start.elapsed()
    );
    let out = &r.stdout;
    for want in [
        "1. Three agencies set up their own nodes",
        "Manila Cybercrime Unit (PH)",
        "Lyon Liaison Desk (FR)",
        "Berlin Partner Unit (DE)",
        "it never connected to Manila.",
        "chat-export.txt: MATCH",
        "--- as Manila Cybercrime Unit sees it ---",
        "--- as Lyon Liaison Desk sees it ---",
        "--- as Berlin Partner Unit sees it ---",
        "received transfer",
        "case.custodia (",
        "VALID: every signature and every link of the record checks",
        "What this proved.",
        "The temporary folder was removed",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Every agency sees EX-1 held by Berlin.
    assert_eq!(
        out.matches("Seized phone, full physical image        held by Berlin Partner Unit")
            .count(),
        3,
        "{out}"
    );
}

#[test]
fn demo_keeps_its_nodes_where_asked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("demo");
    let v = custodia(&["--json", "--dir", root.to_str().expect("UTF-8"), "demo"]).json();
    assert_eq!(v["kept"], root.to_str().expect("UTF-8"));
    assert!(v["steps"].as_array().is_some_and(|s| s.len() > 8));
    for n in ["manila", "lyon", "berlin"] {
        assert!(root.join(n).join("custodia.toml").exists(), "{n}");
    }
    // The kept nodes are ordinary node directories.
    let case = v["case"].as_str().expect("case");
    let r = custodia(&[
        "--dir",
        root.join("berlin").to_str().expect("UTF-8"),
        "case",
        "show",
        case,
    ])
    .code(0);
    assert!(
        r.stdout.contains("held by Berlin Partner Unit"),
        "{}",
        r.stdout
    );
}
