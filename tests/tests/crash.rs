//! Crash safety: a receiving node is killed hard (SIGKILL, no clean
//! shutdown) in the middle of a large sync and restarted. Nothing it had
//! committed is lost, nothing is stored twice, the stores converge and the
//! store check passes.

use std::time::{Duration, Instant};

use custodia_node::{Draft, Store};
use custodia_protocol::{Body, CaseId, Note, Role, Tlp};
use custodia_tests::{eventually, link, Agency};

/// A case at `a`, shared with `b`, holding `n` notes.
fn big_case(a: &Agency, b: &Agency, n: usize) -> CaseId {
    let mut l = a.local();
    let case = l
        .open_case("Operation Bulk", "BULK-1", None, Tlp::Amber)
        .expect("open")
        .id();
    l.share(&case, &b.id.to_hex(), Role::Investigator)
        .expect("share");
    drop(l);
    let me = a.identity();
    let mut store = a.store();
    for chunk in 0..n / 1000 {
        let drafts = (0..1000)
            .map(|i| {
                Draft::new(
                    Tlp::Amber,
                    Body::Note(Note {
                        text: format!("observation {} of the live stream", chunk * 1000 + i),
                        item: None,
                    }),
                )
            })
            .collect();
        store
            .author_many(&me, Some(case), drafts, custodia_node::now_ms())
            .expect("append");
    }
    case
}

/// Kills the receiver `kills` times at varying moments of the sync, then
/// lets it finish. Returns the counts seen after each kill.
pub async fn kill_during_sync(kills: usize, entries: usize) -> Vec<u64> {
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    link(&a, &b);
    let t = Instant::now();
    let case = big_case(&a, &b, entries);
    eprintln!("authored {entries} entries in {:?}", t.elapsed());
    let total = a.count();
    let db = b.dir.join("store.sqlite");
    let peek = || Store::peek_count(&db).unwrap_or(0);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let mut seen = Vec::new();
    let mut committed = 0;
    // A deterministic spread of kill moments (no RNG dependency).
    let delays = [150u64, 420, 90, 600, 260, 330, 180, 510, 70, 380];
    for k in 0..kills {
        let mut child = b.spawn();
        let started = Instant::now();
        // Wait until the node is receiving (or a bounded time).
        let _ = eventually(Duration::from_secs(10), || peek() > committed).await;
        tokio::time::sleep(Duration::from_millis(delays[k % delays.len()])).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let now = peek();
        assert!(
            now >= committed,
            "kill {k}: {now} rows after restart, {committed} were committed before"
        );
        committed = now;
        seen.push(now);
        assert!(started.elapsed() < Duration::from_secs(30));
        // Bravo's own witnesses count too, so a finished sync can hold
        // more rows than alpha authored.
        if now >= total {
            break;
        }
    }
    // Frames alpha has had from bravo: they grow once the new process is
    // up and has said hello.
    let frames_before = ra.peer_stats(&b.id).frames;
    let mut child = b.spawn();
    let t = Instant::now();
    // B also writes witnesses, which A receives: converged means both hold
    // the same number of rows, at least everything A wrote.
    let peek_a = || Store::peek_count(&a.dir.join("store.sqlite")).unwrap_or(0);
    let done = eventually(Duration::from_secs(120), || {
        let n = peek();
        n >= total && n == peek_a()
    })
    .await;
    eprintln!(
        "final sync of {} rows took {:?}",
        total.saturating_sub(committed),
        t.elapsed()
    );
    // A clean stop this time, once the node is up (its stop signals are
    // caught from before it starts serving): when the sync had already
    // finished before this start, `done` holds at once, and a SIGTERM then
    // could reach the process before it runs at all.
    let up = eventually(Duration::from_secs(120), || {
        ra.peer_stats(&b.id).frames > frames_before
    })
    .await;
    assert!(up, "the restarted bravo connected to alpha");
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().expect("wait");
    assert!(done, "bravo converged: {} of {}", peek(), peek_a());
    assert!(status.success(), "clean shutdown exits 0: {status:?}");
    let lb = b.local();
    assert_eq!(
        lb.store().count().expect("count"),
        peek_a(),
        "nothing duplicated"
    );
    assert!(
        lb.store().check().expect("check").is_empty(),
        "store check passes"
    );
    let (mut x, mut y) = (a.case_bytes(&case), b.case_bytes(&case));
    x.sort();
    y.sort();
    assert_eq!(x, y, "byte-identical sets");
    ra.shutdown().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_hard_mid_sync_converges_after_restart() {
    let seen = kill_during_sync(1, 20_000).await;
    assert!(!seen.is_empty());
}

/// Fault injection: the receiver is killed hard at different moments of a
/// large sync, twenty times in a row, restarted each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_twenty_times_loses_nothing() {
    let seen = kill_during_sync(20, 30_000).await;
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "committed rows never shrink across kills: {seen:?}"
    );
}
