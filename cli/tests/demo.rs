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

/// The numbered steps of the demo's text output: (heading, detail lines).
fn steps(out: &str) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        let numbered = line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            steps.push((line.to_owned(), Vec::new()));
        } else if let Some((_, details)) = steps.last_mut() {
            details.push(line.to_owned());
        }
    }
    steps
}

/// Asserts that `custodia ARGS` names a real command and options it
/// takes: `--help` after the command's words makes clap check them.
#[track_caller]
fn real_command(line: &str) {
    // A comment ends the command.
    let line = line.split(" #").next().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut path: Vec<&str> = Vec::new();
    let mut it = words.iter().copied();
    while let Some(w) = it.next() {
        match w {
            "--json" => {}
            "--dir" => {
                it.next();
            }
            w if w.starts_with('-') || w.contains(['.', '/', '"']) => break,
            w if w.len() >= 6 && w.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') => break,
            w if w.contains("MCU-") => break,
            w => path.push(w),
        }
    }
    let mut args = path.clone();
    args.push("--help");
    let help = custodia(&args);
    assert_eq!(
        help.code,
        0,
        "`{line}`: `custodia {}` is no command",
        path.join(" ")
    );
    for o in words.iter().filter(|w| w.starts_with("--")) {
        assert!(
            help.stdout.contains(&format!("{o} ")) || help.stdout.contains(&format!("{o}\n")),
            "`{line}`: {o} is not an option of `custodia {}`",
            path.join(" ")
        );
    }
}

#[test]
fn demo_shows_the_real_command_behind_each_step() {
    let r = custodia(&["demo"]).code(0);
    let steps = steps(&r.stdout);
    assert!(steps.len() >= 14, "{} steps:\n{}", steps.len(), r.stdout);
    let mut commands = 0;
    for (heading, details) in &steps {
        let shown: Vec<&str> = details
            .iter()
            .filter_map(|d| d.trim_start().strip_prefix("$ custodia "))
            .collect();
        let narrative = heading.contains("What this proved") || heading.contains("Words used");
        assert!(
            narrative || !shown.is_empty(),
            "no command shown for step {heading:?}"
        );
        for c in shown {
            real_command(c);
            commands += 1;
        }
    }
    assert!(commands >= 20, "{commands} commands shown");
    // In JSON, each step carries its commands.
    let v = custodia(&["--json", "demo"]).json();
    let with_commands = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["commands"].as_array().is_some_and(|c| !c.is_empty()))
        .count();
    assert!(with_commands >= 12, "{with_commands} steps with commands");
}

#[test]
fn demo_explains_its_words_and_catches_a_tampered_copy() {
    let r = custodia(&["demo"]).code(0);
    let out = &r.stdout;
    // The words an investigator meets in the output, explained.
    for word in [
        "position",
        "countersigned",
        "witness",
        "equivocation",
        "withheld",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{word}: "))),
            "no explanation of {word:?} in:\n{out}"
        );
    }
    // A copy of the bundle with one letter changed is caught: INVALID,
    // which entry (the item's registration), which rule.
    let steps = steps(out);
    let (_, tamper) = steps
        .iter()
        .find(|(h, _)| h.contains("tampered") || h.contains("changes one letter"))
        .unwrap_or_else(|| panic!("no step with a tampered copy in:\n{out}"));
    let text = tamper.join("\n");
    assert!(text.contains("INVALID: "), "{text}");
    assert!(text.contains("V8 bad-signature"), "{text}");
    assert!(text.contains("EX-1"), "the entry is named: {text}");
    assert!(text.contains("B1 bundle-signature"), "{text}");
}

#[test]
fn demo_names_only_bundle_paths_that_exist() {
    // Removed at the end: the output says so where it names the file.
    let r = custodia(&["demo"]).code(0);
    for line in r.stdout.lines().filter(|l| l.contains("case.custodia")) {
        if let Some(path) = line
            .split_whitespace()
            .find(|w| w.ends_with("case.custodia"))
        {
            let p = std::path::Path::new(path.trim_start_matches('$'));
            assert!(
                p.exists() || line.contains("removed") || !p.is_absolute(),
                "{path} is gone but the demo names it: {line}"
            );
        }
    }
    assert!(r.stdout.contains("removed"), "{}", r.stdout);
    // Kept: the bundle it names is there.
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("demo");
    let r = custodia(&["--dir", root.to_str().expect("UTF-8"), "demo"]).code(0);
    let bundle = root.join("berlin").join("case.custodia");
    assert!(bundle.exists());
    assert!(
        r.stdout
            .contains(&format!("custodia verify {}", bundle.display())),
        "the closing lines show how to verify the kept bundle:\n{}",
        r.stdout
    );
}
