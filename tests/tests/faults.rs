//! Fault injection on loopback: partitions, damaged store files, a peer that
//! stops reading, clocks minutes apart. Every test is bounded in time.

use std::time::Duration;

use custodia_node::Store;
use custodia_protocol::{CaseId, Role, SyncItem, Tlp, SKEW_MS};
use custodia_tests::{eventually, link, note, open_shared, Agency};

const WAIT: Duration = Duration::from_secs(20);

fn sorted(x: &Agency, case: &CaseId) -> Vec<Vec<u8>> {
    let mut v = x.case_bytes(case);
    v.sort();
    v
}

fn unpin(x: &Agency, other: &Agency) {
    x.local().remove_peer(&other.name).expect("remove peer");
}

/// A network partition between two of three nodes, appends on both sides,
/// then healing: all converge. First A|B with C still linked to both (C
/// relays), then A cut off from everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_converges() {
    let (a, b, c) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("charlie", "FR"),
    );
    link(&a, &b);
    link(&b, &c);
    link(&a, &c);
    let case = open_shared(&a, &[(&b, Role::Investigator), (&c, Role::Investigator)]);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    let rc = custodia_node::start(&c.dir).await.expect("c");
    assert!(
        eventually(WAIT, || b.case_count(&case) >= 3
            && c.case_count(&case) >= 3)
        .await
    );

    // Cut A–B: C still links both.
    unpin(&a, &b);
    unpin(&b, &a);
    assert!(
        eventually(WAIT, || !ra.connected().contains(&b.id)
            && !rb.connected().contains(&a.id))
        .await
    );
    let ea = a
        .local()
        .write(&case, note("alpha while cut from bravo"))
        .expect("a");
    let eb = b
        .local()
        .write(&case, note("bravo while cut from alpha"))
        .expect("b");
    assert!(
        eventually(WAIT, || {
            a.case_bytes(&case).contains(&eb.bytes().to_vec())
                && b.case_bytes(&case).contains(&ea.bytes().to_vec())
        })
        .await,
        "charlie relays across the cut"
    );
    assert!(!ra.connected().contains(&b.id));

    // Isolate A entirely; both sides keep writing.
    unpin(&a, &c);
    unpin(&c, &a);
    assert!(eventually(WAIT, || ra.connected().is_empty()).await);
    for i in 0..10 {
        a.local()
            .write(&case, note(&format!("alpha alone {i}")))
            .expect("a");
        b.local()
            .write(&case, note(&format!("bravo {i}")))
            .expect("b");
        c.local()
            .write(&case, note(&format!("charlie {i}")))
            .expect("c");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(sorted(&a, &case), sorted(&b, &case), "the partition holds");

    // Heal.
    link(&a, &b);
    link(&a, &c);
    assert!(
        eventually(Duration::from_secs(40), || {
            let sa = sorted(&a, &case);
            sa == sorted(&b, &case) && sa == sorted(&c, &case)
        })
        .await,
        "all converge after healing: {} {} {}",
        a.case_count(&case),
        b.case_count(&case),
        c.case_count(&case)
    );
    for x in [&a, &b, &c] {
        assert!(x.local().store().check().expect("check").is_empty());
    }
    for r in [ra, rb, rc] {
        r.shutdown().await;
    }
}

fn checkpoint(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
}

/// A flipped byte inside a stored entry: the store check names the entry,
/// and the node keeps running and serving, but never serves the damaged
/// entry (nor what depends on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_store_is_named_and_never_served() {
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    link(&a, &b);
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    let target = a
        .local()
        .write(&case, note("this record will be damaged on disk"))
        .expect("w");
    let after = a.local().write(&case, note("written after it")).expect("w");
    let db = a.dir.join("store.sqlite");
    checkpoint(&db);
    // Flip one byte of the target entry where it lies in the file.
    let mut file = std::fs::read(&db).expect("read db");
    let needle = target.bytes();
    let at = file
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the entry's bytes are in the file");
    file[at + needle.len() / 2] ^= 0x40;
    std::fs::write(&db, &file).expect("write db");

    let problems = a.local().store().check().expect("check runs");
    assert!(
        problems
            .iter()
            .any(|p| p.id == Some(target.id()) && p.what.contains("hash")),
        "the check names the damaged entry: {problems:?}"
    );

    let ra = custodia_node::start(&a.dir)
        .await
        .expect("the node starts on a damaged store");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    assert!(
        eventually(WAIT, || b.case_count(&case) >= 2).await,
        "the undamaged entries are served"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = b.case_bytes(&case);
    assert!(!got.contains(&target.bytes().to_vec()));
    assert!(!got.contains(&after.bytes().to_vec()));
    assert!(
        got.iter()
            .all(|e| custodia_protocol::Entry::decode(e).is_ok()),
        "nothing corrupt reached bravo"
    );
    assert!(b.local().store().check().expect("check").is_empty());
    // The node still serves new work for other cases.
    let other = a
        .local()
        .open_case("Second case", "P-2", None, Tlp::Amber)
        .expect("open")
        .id();
    a.local()
        .share(&other, &b.id.to_hex(), Role::Investigator)
        .expect("share");
    // Both of alpha's entries of the new case arrive (bravo may add its own
    // witness, so compare the entries, not a count).
    let sent = a.case_bytes(&other);
    assert_eq!(sent.len(), 2);
    assert!(
        eventually(WAIT, || {
            let got = b.case_bytes(&other);
            sent.iter().all(|e| got.contains(e))
        })
        .await
    );
    ra.shutdown().await;
    rb.shutdown().await;
}

/// A store file truncated in the middle of a page: the check reports the
/// damage, and the node refuses to start with a clear error instead of
/// crashing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_store_is_reported_not_a_crash() {
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    for i in 0..300 {
        a.local()
            .write(&case, note(&format!("entry {i} {}", "x".repeat(200))))
            .expect("w");
    }
    let db = a.dir.join("store.sqlite");
    checkpoint(&db);
    let len = std::fs::metadata(&db).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open");
    f.set_len(len / 2 + 1000).expect("truncate mid-page");
    drop(f);

    let outcome = Store::open(&db).and_then(|s| s.check());
    match outcome {
        Ok(problems) => assert!(!problems.is_empty(), "the check reports the truncation"),
        Err(e) => assert!(
            e.to_string().contains("store.sqlite"),
            "the error names the file: {e}"
        ),
    }
    match custodia_node::start(&a.dir).await {
        Ok(r) => {
            // If it starts, it serves only what verifies.
            r.shutdown().await;
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // The CLI's check reports it with exit code 1 or 2, never a panic (101).
    let out = std::process::Command::new(custodia_tests::custodia_binary())
        .arg("--dir")
        .arg(&a.dir)
        .args(["store", "check"])
        .output()
        .expect("run");
    let code = out.status.code();
    assert!(
        code == Some(1) || code == Some(2),
        "store check exits 1 or 2, got {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clocks minutes apart: an entry up to 5 minutes ahead of the receiver's
/// clock is accepted, one further ahead is refused as from-the-future (and
/// nothing after it in that chain is accepted until it is due).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_is_judged_by_the_spec_time_rules() {
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    link(&a, &b);
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    let me = a.identity();
    let mut store = a.store();
    let now = custodia_node::now_ms();
    // Alpha's clock runs 4 minutes fast: within the allowance.
    let ahead = store
        .author(&me, Some(case), note("4 minutes ahead"), now + 4 * 60_000)
        .expect("a");
    // Then 10 minutes fast: beyond it.
    let far = store
        .author(&me, Some(case), note("10 minutes ahead"), now + 10 * 60_000)
        .expect("a");
    drop(store);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    assert!(
        eventually(WAIT, || b
            .case_bytes(&case)
            .contains(&ahead.bytes().to_vec()))
        .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !b.case_bytes(&case).contains(&far.bytes().to_vec()),
        "an entry beyond the {SKEW_MS} ms allowance is not accepted"
    );
    // The same entry, judged by a receiver whose clock has caught up, is
    // accepted (the refusal was transient).
    let out = b
        .store()
        .receive(
            &case,
            vec![SyncItem::Entry(far.bytes().to_vec())],
            now + 6 * 60_000,
        )
        .expect("receive");
    assert_eq!(out.stored, vec![far.id()]);
    ra.shutdown().await;
    rb.shutdown().await;
}
