//! Thirty real nodes (QUIC on loopback, SQLite stores, the daemon in this
//! process) in one case, connected through three liaison desks: every
//! member ends with every note, and what each member receives stays within
//! a constant number of bytes per entry (counted, not timed; the timings
//! are `custodia-bench`'s `federation` figure).

use std::collections::BTreeSet;
use std::time::Duration;

use custodia_protocol::EntryId;
use custodia_tests::{desk_federation, eventually, note};

const NODES: usize = 30;
const DESKS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_real_nodes_converge_through_liaison_desks() {
    let (agencies, case) = desk_federation(NODES, DESKS);
    let mut running = Vec::new();
    for a in &agencies {
        running.push(custodia_node::start(&a.dir).await.expect("node starts"));
    }
    // The case reaches every member through the desks: its genesis and
    // the 29 member-added entries.
    let setup = NODES as u64;
    let opened = eventually(Duration::from_secs(120), || {
        agencies.iter().all(|a| a.case_count(&case) >= setup)
    })
    .await;
    assert!(opened, "the case did not reach every member");
    // Ten agencies write a note each, none of them a desk.
    let mut notes = BTreeSet::new();
    for a in agencies.iter().skip(DESKS).step_by(3) {
        let e = a
            .local()
            .write(&case, note(&format!("note of {}", a.name)))
            .expect("note");
        notes.insert(e.id());
    }
    let holds_all = |a: &custodia_tests::Agency| {
        let held: BTreeSet<EntryId> = a.case_bytes(&case).iter().map(|b| EntryId::of(b)).collect();
        notes.is_subset(&held)
    };
    let converged = eventually(Duration::from_secs(120), || agencies.iter().all(holds_all)).await;
    let missing: Vec<&str> = agencies
        .iter()
        .filter(|a| !holds_all(a))
        .map(|a| a.name.as_str())
        .collect();
    assert!(converged, "these members lack notes: {missing:?}");
    // Every member received each row a bounded number of times: the case
    // bytes received over all connections, per row held, per member.
    let rows = agencies[0].case_count(&case);
    let received: u64 = running
        .iter()
        .map(|r| {
            agencies
                .iter()
                .map(|a| r.peer_stats(&a.id).case_bytes)
                .sum::<u64>()
        })
        .sum();
    let per = received as f64 / (rows as f64 * NODES as f64);
    eprintln!("{rows} rows; {received} case bytes received; {per:.0} bytes per row per member");
    assert!(per < 4096.0, "{per:.0} bytes per row per member");
    for r in running {
        r.shutdown().await;
    }
}
