//! An honest agency never looks like a forger: a restored backup, a lost
//! WAL, a cloned folder. Real nodes, real store files, the real `custodia`
//! binary; every test bounded in time. Each asserts that the agency never
//! signs two entries at one position, that what its peers acknowledged
//! comes back, and that its store checks clean afterwards.

use std::process::{Command, Output};
use std::time::Duration;

use custodia_protocol::{CaseId, Role};
use custodia_tests::{copy_dir, custodia_binary, eventually, link, open_shared, Agency};

const WAIT: Duration = Duration::from_secs(30);

fn cli(a: &Agency, args: &[&str]) -> Output {
    Command::new(custodia_binary())
        .arg("--dir")
        .arg(&a.dir)
        .args(args)
        .output()
        .expect("run custodia")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers an evidence file with the CLI; returns the item id.
fn register(a: &Agency, case: &CaseId) -> String {
    let file = a.dir.join("phone.img");
    std::fs::write(&file, b"a seized phone image").expect("evidence file");
    let out = ok(&cli(
        a,
        &[
            "--json",
            "evidence",
            "add",
            &case.to_hex(),
            file.to_str().expect("path"),
            "--exhibit",
            "EX-1",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let item = v["registered"][0]["item"]
        .as_str()
        .unwrap_or_else(|| panic!("item id in {v}"));
    item.to_string()
}

/// What the two stores hold of `who`'s chain: no position with two ids,
/// no proof against `who`.
fn assert_no_equivocation(case: &CaseId, who: &Agency, stores: &[&Agency]) {
    for s in stores {
        let l = s.local();
        let proofs = l.store().proofs(case).expect("proofs");
        assert!(
            proofs
                .iter()
                .all(|p| p.check().map(|e| e.author != who.id).unwrap_or(true)),
            "{} holds a proof that {} equivocated",
            s.name,
            who.name
        );
        assert!(
            l.store().self_equivocation(&who.id, case).is_none(),
            "{} records an equivocation by {}",
            s.name,
            who.name
        );
        assert!(
            l.store().check().expect("check").is_empty(),
            "{}'s store checks clean",
            s.name
        );
    }
}

/// The operator's mistake, exactly: stop Manila's node, copy its folder
/// (a backup), add an entry (it reaches Berlin), restore the copy, run
/// `custody record`. The write is refused with exit 1 and the reason;
/// once the node has recovered its entry from Berlin, writing works and
/// no position is ever signed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_a_stale_backup_then_writing_never_equivocates() {
    let (m, b) = (Agency::new("manila", "PH"), Agency::new("berlin", "DE"));
    link(&m, &b);
    let case = open_shared(&m, &[(&b, Role::Investigator)]);
    let item = register(&m, &case);
    let rb = custodia_node::start(&b.dir).await.expect("berlin");
    let rm = custodia_node::start(&m.dir).await.expect("manila");
    assert!(eventually(WAIT, || b.case_count(&case) == m.case_count(&case)).await);
    rm.shutdown().await;

    let backup = m.dir.with_file_name("manila-backup");
    copy_dir(&m.dir, &backup);

    let rm = custodia_node::start(&m.dir).await.expect("manila again");
    ok(&cli(
        &m,
        &["custody", "record", &item, "--action", "examined"],
    ));
    let acked = m.case_count(&case);
    assert!(
        eventually(WAIT, || b.case_count(&case) >= acked).await,
        "the entry reached Berlin"
    );
    rm.shutdown().await;

    std::fs::remove_dir_all(&m.dir).expect("remove");
    copy_dir(&backup, &m.dir);
    let before = m.case_count(&case);
    assert!(before < acked, "the restored copy is stale");

    let refused = cli(&m, &["custody", "record", &item, "--action", "sealed"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let log = ok(&cli(&m, &["case", "log", &case.to_hex()]));
    assert!(
        log.starts_with("!! ON HOLD"),
        "case log says so first: {log}"
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("behind") && why.contains("custodia status"),
        "the refusal says why and what to do: {why}"
    );
    assert_eq!(m.case_count(&case), before, "nothing was written");

    // The node recovers its own entry from Berlin, then writes again.
    let rm = custodia_node::start(&m.dir).await.expect("manila restored");
    assert!(
        eventually(WAIT, || m
            .local()
            .store()
            .holds(Some(&case))
            .expect("holds")
            .is_empty())
        .await,
        "the hold is released once Manila holds what Berlin holds: {:?}",
        m.local().store().hold_log(&case)
    );
    assert!(
        m.case_count(&case) >= acked,
        "the acknowledged entry is back"
    );
    ok(&cli(
        &m,
        &["custody", "record", &item, "--action", "sealed"],
    ));
    let total = m.case_count(&case);
    assert!(
        eventually(WAIT, || b.case_count(&case) >= total).await,
        "Berlin accepts Manila's next entry"
    );
    // `custodia status` shows what Berlin acknowledged of Manila's chain.
    let hex = case.to_hex();
    let acknowledged = || {
        let out = cli(&m, &["--json", "status", &hex]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let case = &v["cases"][0];
        out.status.success()
            && case["ready"] == true
            && case["peers"][0]["agency"] == b.id.to_hex()
            && case["peers"][0]["holds_up_to"] == case["own_head"]
    };
    assert!(
        eventually(WAIT, acknowledged).await,
        "status shows Berlin holding Manila's head: {}",
        String::from_utf8_lossy(&cli(&m, &["--json", "status", &hex]).stdout)
    );
    rm.shutdown().await;
    rb.shutdown().await;
    assert_no_equivocation(&case, &m, &[&m, &b]);
}

fn kill9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `kill -9`, then the WAL deleted or truncated at three points: the lost
/// writes are detected at the next open, writes are refused until the
/// node has them back from its peer, and nothing is signed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_truncated_wal_is_detected_and_repaired_from_peers() {
    for damage in ["delete", "truncate 1/3", "truncate 1/2", "truncate 2/3"] {
        let (m, b) = (Agency::new("manila", "PH"), Agency::new("berlin", "DE"));
        link(&m, &b);
        let case = open_shared(&m, &[(&b, Role::Investigator)]);
        let item = register(&m, &case);
        let mut rb = custodia_node::start(&b.dir).await.expect("berlin");
        let mut node = m.spawn();
        for action in ["examined", "sealed", "unsealed", "examined"] {
            ok(&cli(&m, &["custody", "record", &item, "--action", action]));
        }
        let acked = m.case_count(&case);
        assert!(
            eventually(WAIT, || b.case_count(&case) >= acked).await,
            "{damage}: Berlin has everything"
        );
        kill9(&mut node);
        // Berlin would keep the dead connection until Manila's restarted
        // node resets it (at Berlin's next keep-alive, up to 5 s);
        // restarting Berlin makes the reconnection immediate.
        rb.shutdown().await;
        rb = custodia_node::start(&b.dir).await.expect("berlin again");
        let wal = m.dir.join("store.sqlite-wal");
        let len = std::fs::metadata(&wal).map(|x| x.len()).unwrap_or(0);
        match damage {
            "delete" => std::fs::remove_file(&wal).expect("delete the WAL"),
            t => {
                let (n, d) = match t {
                    "truncate 1/3" => (1, 3),
                    "truncate 1/2" => (1, 2),
                    _ => (2, 3),
                };
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&wal)
                    .expect("open the WAL");
                f.set_len(len * n / d).expect("truncate");
            }
        }
        let after = m.case_count(&case);
        let lost = after < acked;
        if damage == "delete" {
            assert!(lost, "deleting the WAL loses the last writes");
        }
        let write = cli(&m, &["custody", "record", &item, "--action", "sealed"]);
        if lost {
            assert_eq!(
                write.status.code(),
                Some(1),
                "{damage}: writing over lost positions is refused: {write:?}"
            );
        } else {
            ok(&write);
        }
        let mut node = m.spawn_logging("info", &m.dir.with_file_name("after.log"));
        assert!(
            eventually(WAIT, || {
                m.case_count(&case) >= acked
                    && m.local()
                        .store()
                        .holds(Some(&case))
                        .expect("holds")
                        .is_empty()
            })
            .await,
            "{damage}: every acknowledged entry is back and the case is writable: {:?}\n{}",
            m.local().store().hold_log(&case),
            std::fs::read_to_string(m.dir.with_file_name("after.log")).unwrap_or_default()
        );
        ok(&cli(
            &m,
            &["custody", "record", &item, "--action", "unsealed"],
        ));
        let total = m.case_count(&case);
        assert!(
            eventually(WAIT, || b.case_count(&case) >= total).await,
            "{damage}: Berlin accepts Manila's next entries"
        );
        kill9(&mut node);
        rb.shutdown().await;
        assert_no_equivocation(&case, &m, &[&m, &b]);
    }
}

/// `custodia backup` of a running node while a writer appends without a
/// pause: the backup restores to a store that checks clean, is on hold
/// until Berlin confirms it, then catches up with everything written
/// after the backup and writes on without a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_checks_clean_and_catches_up() {
    let (m, b) = (Agency::new("manila", "PH"), Agency::new("berlin", "DE"));
    link(&m, &b);
    let case = open_shared(&m, &[(&b, Role::Investigator)]);
    let rb = custodia_node::start(&b.dir).await.expect("berlin");
    let rm = custodia_node::start(&m.dir).await.expect("manila");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (m.dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut l = custodia_node::Local::open(&dir).expect("open");
                l.write(&case, custodia_tests::note(&format!("observation {n}")))
                    .expect("write");
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let file = m.dir.with_file_name("manila.custodia-backup");
    ok(&cli(&m, &["backup", "--out", file.to_str().expect("path")]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 2, "the writer kept writing ({written})");
    let all = m.case_count(&case);
    assert!(eventually(WAIT, || b.case_count(&case) >= all).await);
    rm.shutdown().await;

    // The restored node takes the original's place (its address, its key).
    let restored = m.dir.with_file_name("manila-restored");
    let out = Command::new(custodia_binary())
        .arg("--dir")
        .arg(&restored)
        .args(["restore", file.to_str().expect("path"), "--key"])
        .arg(m.dir.join("identity.key"))
        .output()
        .expect("restore");
    ok(&out);
    let r = Agency::at(&restored, &m);
    ok(&cli(&r, &["store", "check"]));
    assert!(
        r.case_count(&case) < all,
        "the backup is older than the record"
    );
    let st = cli(&r, &["status", "--json"]);
    assert_eq!(st.status.code(), Some(1), "on hold after restore: {st:?}");
    let refused = cli(&r, &["custody", "record", "00", "--action", "examined"]);
    assert_ne!(refused.status.code(), Some(0));
    let held = r.local().write(&case, custodia_tests::note("too early"));
    assert!(
        matches!(
            held,
            Err(custodia_node::LocalError::Store(
                custodia_node::StoreError::OnHold(_)
            ))
        ),
        "no entry is written in a held case: {held:?}"
    );
    let rr = custodia_node::start(&restored)
        .await
        .expect("restored manila");
    assert!(
        eventually(WAIT, || {
            r.case_count(&case) >= all
                && r.local()
                    .store()
                    .holds(Some(&case))
                    .expect("holds")
                    .is_empty()
        })
        .await,
        "the restored node caught up and the hold was released: {:?}",
        r.local().store().hold_log(&case)
    );
    ok(&cli(&r, &["status"]));
    let e = r
        .local()
        .write(&case, custodia_tests::note("after the restore"))
        .expect("writes again");
    assert!(
        eventually(WAIT, || b.case_bytes(&case).contains(&e.bytes().to_vec())).await,
        "Berlin accepts the restored node's entry"
    );
    rr.shutdown().await;
    rb.shutdown().await;
    assert_no_equivocation(&case, &m, &[&r, &b]);
}

/// A node folder cloned to a second machine and both run (one key, two
/// nodes): the clone writes nothing until a peer confirms its head; if
/// both then write, the equivocation is reported loudly at both and each
/// refuses further writes in the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloned_node_folder_never_writes_silently_over_the_original() {
    let (m, b) = (Agency::new("manila", "PH"), Agency::new("berlin", "DE"));
    link(&m, &b);
    let case = open_shared(&m, &[(&b, Role::Investigator)]);
    let rb = custodia_node::start(&b.dir).await.expect("berlin");
    let rm = custodia_node::start(&m.dir).await.expect("manila");
    assert!(eventually(WAIT, || b.case_count(&case) >= m.case_count(&case)).await);
    rm.shutdown().await;
    // The clone: the same folder on "another machine" (its own address).
    let clone_dir = m.dir.with_file_name("manila-clone");
    copy_dir(&m.dir, &clone_dir);
    let port = custodia_tests::free_port();
    let toml = clone_dir.join("custodia.toml");
    let text = std::fs::read_to_string(&toml).expect("config");
    let text = text.replace(&m.addr.to_string(), &format!("127.0.0.1:{port}"));
    std::fs::write(&toml, text).expect("config");
    let c = Agency::at(&clone_dir, &m);
    let write = |a: &Agency, what: &str| a.local().write(&case, custodia_tests::note(what));
    // Opened as a copy, the clone holds every shared case.
    assert!(
        matches!(
            write(&c, "from the clone, at once"),
            Err(custodia_node::LocalError::Store(
                custodia_node::StoreError::OnHold(_)
            ))
        ),
        "a copied folder writes nothing before a peer confirms it"
    );
    let rm = custodia_node::start(&m.dir).await.expect("manila");
    let rc = custodia_node::start(&clone_dir).await.expect("clone");
    // Both write. Whatever the clone managed to write (after Berlin
    // confirmed its head) collides with the original's entry.
    let original = write(&m, "from the original").expect("the original writes");
    tokio::time::sleep(Duration::from_secs(2)).await;
    match write(&c, "from the clone") {
        Err(e) => assert!(
            matches!(
                e,
                custodia_node::LocalError::Store(
                    custodia_node::StoreError::OnHold(_)
                        | custodia_node::StoreError::Equivocated { .. }
                )
            ),
            "the clone is refused for the guard's reasons: {e}"
        ),
        Ok(cloned) if cloned.seq() == original.seq() => {
            // Two entries at one position: both nodes must come to know it
            // and refuse to write on.
            assert!(
                eventually(WAIT, || {
                    [&m, &c]
                        .iter()
                        .all(|x| x.local().store().self_equivocation(&m.id, &case).is_some())
                })
                .await,
                "the equivocation is known at both nodes"
            );
            for x in [&m, &c] {
                let out = cli(
                    x,
                    &["custody", "record", "00000000", "--action", "examined"],
                );
                assert_ne!(out.status.code(), Some(0));
                let err = write(x, "and on").expect_err("refused after equivocating");
                assert!(err.to_string().contains("two different entries"), "{err}");
                let show = ok(&cli(x, &["case", "show", &case.to_hex()]));
                assert!(show.contains("EQUIVOCATED"), "{show}");
                let log = ok(&cli(x, &["case", "log", &case.to_hex()]));
                assert!(log.starts_with("!! THIS AGENCY HAS EQUIVOCATED"), "{log}");
            }
        }
        Ok(cloned) => {
            // The clone had received the original's entry first: no
            // collision, one chain.
            assert!(cloned.seq() > original.seq());
            assert_no_equivocation(&case, &m, &[&m, &c, &b]);
        }
    }
    rc.shutdown().await;
    rm.shutdown().await;
    rb.shutdown().await;
}

/// The accepting node (the higher key, which never dials) is killed with
/// `kill -9` and restarted. Its peer still holds the dead connection; the
/// restarted node answers the peer's next packet with a stateless reset
/// the peer recognises (its reset key comes from the agency's identity),
/// so the peer redials at once instead of waiting out its 30 s idle
/// timeout, and an entry written at the restarted node arrives promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_reconnected_without_waiting_for_the_idle_timeout() {
    let (x, y) = (Agency::new("xray", "PH"), Agency::new("yankee", "DE"));
    let (dialer, acceptor) = if x.id < y.id { (&x, &y) } else { (&y, &x) };
    link(dialer, acceptor);
    let case = open_shared(acceptor, &[(dialer, Role::Investigator)]);
    let rd = custodia_node::start(&dialer.dir).await.expect("dialer");
    let mut node = acceptor.spawn();
    assert!(
        eventually(WAIT, || dialer.case_count(&case)
            >= acceptor.case_count(&case))
        .await,
        "connected and synced"
    );
    kill9(&mut node);
    let mut node = acceptor.spawn();
    let e = acceptor
        .local()
        .write(&case, custodia_tests::note("after the restart"))
        .expect("write");
    // Keep-alives go every 5 s; the idle timeout is 30 s.
    assert!(
        eventually(Duration::from_secs(15), || dialer
            .case_bytes(&case)
            .contains(&e.bytes().to_vec()))
        .await,
        "the entry written after the restart arrived before the old connection's idle timeout"
    );
    kill9(&mut node);
    rd.shutdown().await;
}

/// The operator loses a node's store (a disk replaced, the file deleted)
/// but keeps its key, and starts the node again on an empty store. Its
/// partner sends the case back, the agency's own entries last (they
/// arrived at the partner after the partner's own). The node must not
/// sign anything in the case before its own chain is back: a witness
/// written after the first batch would take a position the agency
/// already signed, and the agency would be an equivocator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_store_was_lost_recovers_its_chain_before_it_signs() {
    let (m, b) = (Agency::new("manila", "PH"), Agency::new("berlin", "DE"));
    link(&m, &b);
    let case = open_shared(&m, &[(&b, Role::Investigator)]);
    {
        let mut l = m.local();
        for chunk in 0..6 {
            let drafts = (0..500)
                .map(|i| custodia_tests::note(&format!("observation {}", chunk * 500 + i)))
                .collect();
            l.write_many(&case, drafts).expect("notes");
        }
    }
    let rm = custodia_node::start(&m.dir).await.expect("manila");
    let rb = custodia_node::start(&b.dir).await.expect("berlin");
    // Berlin receives the case and witnesses it: its chain exists at
    // Manila.
    let berlin_at_manila = || {
        m.local()
            .store()
            .case(&case)
            .map_or(0, |v| v.next_seq(&b.id))
    };
    assert!(
        eventually(WAIT, || berlin_at_manila() >= 1).await,
        "Berlin's witness reached Manila"
    );
    rb.shutdown().await;
    let signed = berlin_at_manila();

    // The store is lost; the key and configuration remain.
    for suffix in ["", "-wal", "-shm", ".seal", ".wake"] {
        let _ = std::fs::remove_file(b.dir.join(format!("store.sqlite{suffix}")));
    }
    let rb = custodia_node::start(&b.dir)
        .await
        .expect("berlin, empty store");
    assert!(
        eventually(WAIT, || b.case_count(&case) >= m.case_count(&case)
            && b.local()
                .store()
                .holds(Some(&case))
                .is_ok_and(|h| h.is_empty()))
        .await,
        "Berlin holds the case again and may write: {} of {} rows, holds {:?}",
        b.case_count(&case),
        m.case_count(&case),
        b.local().store().hold_log(&case)
    );
    assert!(
        b.local()
            .store()
            .case(&case)
            .is_some_and(|v| v.next_seq(&b.id) >= signed),
        "Berlin's own chain is back"
    );
    rb.shutdown().await;
    rm.shutdown().await;
    assert_no_equivocation(&case, &b, &[&m, &b]);
}
