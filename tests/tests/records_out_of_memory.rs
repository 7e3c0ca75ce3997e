//! A case larger than what a node or a verifier keeps of it in memory: the
//! older records go to unnamed files in the store's folder (SPEC.md §8.7;
//! `CUSTODIA_RECORD_WINDOW`). A receiver that keeps 16 to 32 records in
//! memory is killed in the middle of a sync and restarted; it converges,
//! its files are unnamed (nothing left in its folder), its store check
//! passes, and the court bundle of the case verifies to the same report
//! whether the verifier keeps 4 records in memory or all of them.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use custodia_node::{Draft, Store, RECORD_WINDOW_VAR};
use custodia_protocol::{Body, CaseId, Note, Retracted, Role, Tlp};
use custodia_tests::{eventually, link, open_shared, Agency};

/// Records the receiver keeps in memory (one to two windows).
const WINDOW: &str = "16";

/// A case at `a`, shared with `b`: `n` notes, then a retraction of the
/// third and of the 100th, which a receiver checks against records long
/// out of its memory.
fn big_case(a: &Agency, b: &Agency, n: usize) -> CaseId {
    let case = open_shared(a, &[(b, Role::Investigator)]);
    let me = a.identity();
    let mut store = a.store();
    let drafts = (0..n)
        .map(|i| {
            Draft::new(
                Tlp::Amber,
                Body::Note(Note {
                    text: format!("observation {i} of the live stream"),
                    item: None,
                }),
            )
        })
        .collect();
    let notes = store
        .author_many(&me, Some(case), drafts, custodia_node::now_ms())
        .expect("append");
    let retract = |i: usize| {
        Draft::new(
            Tlp::Amber,
            Body::Retracted(Retracted {
                entry: notes[i].id(),
                reason: format!("observation {i} was of another stream"),
            }),
        )
    };
    store
        .author_many(
            &me,
            Some(case),
            vec![retract(2), retract(100)],
            custodia_node::now_ms(),
        )
        .expect("retract");
    case
}

fn custodia(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(custodia_tests::custodia_binary())
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("CUSTODIA_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("custodia runs")
}

/// The open files of a process that have no name left (Linux).
#[cfg(target_os = "linux")]
fn unnamed_files_in(pid: u32, dir: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let dir = dir.canonicalize().expect("dir");
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| {
            let t = target.to_string_lossy();
            t.starts_with(&*dir.to_string_lossy()) && t.ends_with("(deleted)")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_beyond_the_window_syncs_survives_a_kill_and_verifies_the_same() {
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    link(&a, &b);
    let case = big_case(&a, &b, 4_000);
    let total = a.count();
    let db = b.dir.join("store.sqlite");
    let peek = || Store::peek_count(&db).unwrap_or(0);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let env = [(RECORD_WINDOW_VAR, WINDOW)];

    // Killed once it has taken more than a few windows, then restarted:
    // it loads what it committed through new files and fetches the rest.
    let mut child = b.spawn_with(&env);
    let receiving = eventually(Duration::from_secs(60), || peek() > 200).await;
    assert!(receiving, "bravo receives ({} rows)", peek());
    #[cfg(target_os = "linux")]
    {
        // Its older records are in two unnamed files in its own folder.
        let spilled = eventually(Duration::from_secs(60), || {
            unnamed_files_in(child.id(), &b.dir) >= 2
        })
        .await;
        assert!(spilled, "no unnamed record files in {}", b.dir.display());
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let committed = peek();
    let mut child = b.spawn_with(&env);
    let t = Instant::now();
    let peek_a = || Store::peek_count(&a.dir.join("store.sqlite")).unwrap_or(0);
    let done = eventually(Duration::from_secs(120), || {
        let n = peek();
        n >= total && n == peek_a()
    })
    .await;
    eprintln!(
        "rows after the kill: {committed}; the rest took {:?}",
        t.elapsed()
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    assert!(done, "bravo converged: {} of {}", peek(), peek_a());
    let (mut x, mut y) = (a.case_bytes(&case), b.case_bytes(&case));
    x.sort();
    y.sort();
    assert_eq!(x, y, "byte-identical sets");
    ra.shutdown().await;
    // Nothing left behind: the files had no names.
    let mut names: Vec<String> = std::fs::read_dir(&b.dir)
        .expect("dir")
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert!(
        names.iter().all(|n| !n.starts_with(".tmp")),
        "temporary files left in the node's folder: {names:?}"
    );

    // The store check, keeping 16 records in memory, finds nothing wrong;
    // the retractions of long-gone records are in the case's state.
    let check = custodia(&b.dir, &env, &["--json", "store", "check"]);
    assert!(check.status.success(), "{check:?}");
    let log = custodia(&b.dir, &env, &["--json", "case", "log", &case.to_hex()]);
    assert!(log.status.success(), "{log:?}");
    let log: serde_json::Value = serde_json::from_slice(&log.stdout).expect("json");
    let retracted: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| !e["retracted"].is_null())
        .collect();
    assert_eq!(retracted.len(), 2, "two notes shown retracted");

    // The bundle verifies to the same report out of memory and in it.
    let file = b.dir.join("overflow.custodia");
    let out = custodia(
        &b.dir,
        &env,
        &[
            "export",
            &case.to_hex(),
            "--out",
            file.to_str().expect("path"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let verify = |window: &str| {
        let out = custodia(
            &b.dir,
            &[(RECORD_WINDOW_VAR, window)],
            &["--json", "verify", file.to_str().expect("path")],
        );
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let (spilled, in_memory) = (verify("4"), verify("all"));
    assert_eq!(spilled["verdict"], "valid", "{spilled}");
    assert_eq!(
        spilled, in_memory,
        "the report depends on where the records were kept"
    );
    let retracted = spilled.to_string();
    assert!(retracted.contains("observation 100 was of another stream"));
}
