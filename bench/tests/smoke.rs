//! Smoke test: every figure's code path, tiny (the `--quick` sizes), so a
//! change that breaks what the benchmark uses fails here. No timing is
//! asserted: benchmarks are not tests.

use std::path::PathBuf;

use custodia_bench::measure::sibling_binary;
use custodia_bench::{run, Config, Sizes, FIGURES};

#[test]
fn every_figure_runs_tiny() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_custodia-bench"));
    // `cargo test --workspace` builds the CLI next to this binary.
    let custodia = sibling_binary(&bench, "custodia");
    let cfg = Config {
        sizes: Sizes::quick(),
        mode: "quick".into(),
        only: None,
        custodia_bin: custodia.clone(),
        bench_bin: Some(bench),
        progress: false,
        hypercore: custodia_bench::hypercore::Use::Skip(
            "the smoke test does not install Node.js packages".into(),
        ),
    };
    let report = run(&cfg).expect("the run");
    for (name, why) in &report.failed {
        assert!(
            name == "memory" && custodia.is_none(),
            "figure {name} failed: {why}"
        );
    }
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("catchup")),
        "the opt-in catch-up figure ran in a full run: {names:?}"
    );
    for want in [
        "hashing",
        "hashing_md5_sha1",
        "append_batched",
        "append_single",
        "replication",
        "replication_store_only",
        "latency_median",
        "latency_p99",
        "verify",
        "verify_memory",
        "federation_reach_median",
        "federation_frames",
        "resync_time",
        "resync_bytes",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in &report.rows {
        assert!(
            r.custodia.stat.median.is_finite() && r.custodia.stat.median > 0.0,
            "{}: {:?}",
            r.name,
            r.custodia
        );
        if let Some(q) = &r.reference {
            assert!(
                q.stat.median.is_finite() && q.stat.median > 0.0,
                "{}",
                r.name
            );
        }
    }
    let table = report.table();
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        report.rows.len() + 2
    );
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(
        json["rows"].as_array().map(Vec::len),
        Some(report.rows.len())
    );
}

#[test]
fn catchup_runs_tiny_when_asked() {
    // Opt-in: a full run leaves it out (see every_figure_runs_tiny's
    // names), so it is asked for by name.
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_custodia-bench"));
    let custodia = sibling_binary(&bench, "custodia");
    assert!(
        custodia.is_some(),
        "build the CLI first: cargo build -p custodia-cli"
    );
    let cfg = Config {
        sizes: Sizes::quick(),
        mode: "quick".into(),
        only: Some(vec!["catchup".into()]),
        custodia_bin: custodia,
        bench_bin: Some(bench),
        progress: false,
        hypercore: custodia_bench::hypercore::Use::Skip(
            "the smoke test does not install Node.js packages".into(),
        ),
    };
    // Twice: the second run reuses the serving folder the first left in
    // the cache (the first may too, from an earlier test run).
    let _ = run(&cfg).expect("the first run");
    let report = run(&cfg).expect("the run");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["catchup_time", "catchup_rss", "catchup_resume"]);
    assert!(
        report.rows[0].notes.iter().any(|n| n.contains("reused")),
        "{:?}",
        report.rows[0].notes
    );
    for r in &report.rows {
        let q = r.reference.as_ref().expect("a reference");
        for x in [r.custodia.stat.median, q.stat.median] {
            assert!(x.is_finite() && x > 0.0, "{}: {x}", r.name);
        }
    }
}

#[test]
fn unknown_figures_are_refused() {
    let cfg = Config {
        sizes: Sizes::quick(),
        mode: "quick".into(),
        only: Some(vec!["nonsense".into()]),
        custodia_bin: None,
        bench_bin: None,
        progress: false,
        hypercore: custodia_bench::hypercore::Use::Skip(
            "the smoke test does not install Node.js packages".into(),
        ),
    };
    let err = run(&cfg).expect_err("refused").to_string();
    for (name, _) in FIGURES {
        assert!(err.contains(name), "{err}");
    }
}
