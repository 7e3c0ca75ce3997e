//! The hostile-peer suite: a peer that speaks `custodia/1` with its own
//! pinned key and tries what a hostile agency (or a removed one) would.
//! Each test asserts what the honest node, its honest peers and a court
//! see. Real nodes on 127.0.0.1, real QUIC, real SQLite files.

use std::time::Duration;

use custodia_protocol::{
    Body, CaseId, Entry, EntryId, EquivocationNotice, EquivocationProof, Heads, Hello, Identity,
    Message, Note, Payload, Role, Tlp, SYNC_VERSIONS,
};
use custodia_tests::{carries, eventually, link, note, open_shared, raw_client, Agency, Wire};

const WAIT: Duration = Duration::from_secs(20);

async fn connect(who: &Agency, to: &Agency) -> quinn::Connection {
    raw_client(who, to)
        .connect(to.addr, custodia_node::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake with a pinned key")
}

async fn hello(w: &mut Wire, who: &Agency) {
    assert!(
        w.send(&Message::Hello(Hello {
            versions: SYNC_VERSIONS.to_vec(),
            agency: who.id,
        }))
        .await
    );
}

async fn ask(w: &mut Wire, case: CaseId) {
    w.send(&Message::Heads(Heads {
        case,
        heads: Vec::new(),
    }))
    .await;
}

/// A note by `who` in `case` at `seq`, chained on `prev`, referencing `refs`.
fn signed_note(
    who: &Identity,
    case: CaseId,
    seq: u64,
    prev: Option<EntryId>,
    refs: Vec<EntryId>,
    text: &str,
) -> Entry {
    Entry::sign(
        who,
        &Payload {
            v: 1,
            keys: None,
            case: Some(case),
            author: who.agency(),
            seq,
            prev,
            refs,
            time: custodia_node::now_ms(),
            tlp: Tlp::Amber,
            to: None,
            body: Body::Note(Note {
                text: text.into(),
                item: None,
            }),
        },
    )
}

/// The exact race: the TLS handshake completes while the peer is pinned,
/// the operator removes the peer, an entry is written, and only then does
/// the removed peer open its stream. It gets no session, nothing written
/// after its removal, and its connection is closed (keep-alive does not
/// hold it open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_removed_between_handshake_and_stream_gets_nothing() {
    let (a, m) = (Agency::new("alpha", "PH"), Agency::new("mallory", "ZZ"));
    link(&a, &m);
    let case = open_shared(&a, &[(&m, Role::Investigator)]);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let conn = connect(&m, &a).await;
    a.local().remove_peer("mallory").expect("peer remove");
    let secret = a
        .local()
        .write(&case, note("written after mallory was removed"))
        .expect("write");
    // The node notices the configuration change on its own schedule; give
    // it ample time before the removed peer opens its stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = match Wire::open(conn.clone()).await {
        Some(mut w) => {
            hello(&mut w, &m).await;
            ask(&mut w, case).await;
            w.drain(Duration::from_secs(3)).await
        }
        None => Vec::new(),
    };
    assert!(
        !carries(&got, secret.bytes()),
        "the removed peer received an entry written after its removal"
    );
    assert!(
        !got.iter().any(|m| matches!(m, Message::Entries(_))),
        "the removed peer received entries: {got:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
    assert!(closed.is_ok(), "the removed peer's connection stays open");
    assert!(!ra.connected().contains(&m.id));
    ra.shutdown().await;
}

/// A peer with an open session is removed and an entry is written at once
/// (no pause): the removed peer never receives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_peer_receives_nothing_written_after_its_removal() {
    let (a, m) = (Agency::new("alpha", "PH"), Agency::new("mallory", "ZZ"));
    link(&a, &m);
    let case = open_shared(&a, &[(&m, Role::Investigator)]);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    for round in 0..5 {
        let conn = connect(&m, &a).await;
        let mut w = Wire::open(conn.clone()).await.expect("stream");
        hello(&mut w, &m).await;
        ask(&mut w, case).await;
        // The session is live: the case so far arrives.
        let before = w.drain(Duration::from_millis(700)).await;
        assert!(
            before.iter().any(|m| matches!(m, Message::Entries(_))),
            "round {round}: the pinned member was served"
        );
        // Keep the node busy serving this peer (each `heads` makes it look
        // for new rows) while the operator removes it and writes.
        let heads = a.local().store().heads(&case);
        for _ in 0..300 {
            w.send(&Message::Heads(Heads {
                case,
                heads: heads.clone(),
            }))
            .await;
        }
        let mut l = a.local();
        l.remove_peer("mallory").expect("peer remove");
        let secret = l
            .write(&case, note(&format!("after the removal, round {round}")))
            .expect("write");
        drop(l);
        let after = w.drain(Duration::from_secs(2)).await;
        assert!(
            !carries(&after, secret.bytes()),
            "round {round}: the removed peer received an entry written after its removal"
        );
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        assert!(closed.is_ok(), "round {round}: the connection stays open");
        a.pin(&m, "ZZ");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ra.shutdown().await;
}

fn fork_proof(who: &Identity, case: CaseId, seq: u64, refs: Vec<EntryId>) -> EquivocationProof {
    // A well-formed fork: after position 0 each version names a previous
    // entry (which the receiver need not hold: a proof stands alone).
    let prev = (seq > 0).then_some(EntryId([seq as u8; 32]));
    let x = signed_note(who, case, seq, prev, refs.clone(), "version one");
    let y = signed_note(who, case, seq, prev, refs, "version two");
    let proof = EquivocationProof::new(&x, &y);
    proof.check().expect("the forged fork is a valid proof");
    proof
}

/// Equivocation proofs from a pinned non-member, about a non-member, or
/// for a case the node does not hold are refused and never stored,
/// forwarded or exported; a member cannot flood the store with proofs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_are_taken_only_from_members_about_members_within_bounds() {
    let (a, b, m) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("mallory", "ZZ"),
    );
    link(&a, &b);
    link(&a, &m);
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    let genesis = case;
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    assert!(eventually(WAIT, || b.case_count(&case) >= 2).await);
    let proofs = |x: &Agency| x.local().store().proofs(&case).expect("proofs").len();

    // Mallory, pinned but not a member, sends proofs of its own forks in
    // the case, and proofs for a case id nobody holds.
    let mallory = m.identity();
    let conn = connect(&m, &a).await;
    let mut w = Wire::open(conn.clone()).await.expect("stream");
    hello(&mut w, &m).await;
    let unknown = EntryId([0x5a; 32]);
    for seq in 0..20 {
        let _ = w
            .send(&Message::Equivocation(EquivocationNotice {
                case,
                proof: fork_proof(&mallory, case, seq, vec![genesis]),
            }))
            .await;
        let _ = w
            .send(&Message::Equivocation(EquivocationNotice {
                case: unknown,
                proof: fork_proof(&mallory, unknown, seq, Vec::new()),
            }))
            .await;
    }
    let _ = w.drain(Duration::from_secs(2)).await;
    assert_eq!(proofs(&a), 0, "a non-member's proof was stored");
    assert_eq!(
        a.local().store().proofs(&unknown).expect("proofs").len(),
        0,
        "a proof for a case the node does not hold was stored"
    );

    // Bravo, a member, is hostile too: proofs about Mallory (no member),
    // then a flood of proofs of its own forks.
    let bravo = b.identity();
    rb.shutdown().await;
    let conn = connect(&b, &a).await;
    let mut w = Wire::open(conn.clone()).await.expect("stream");
    hello(&mut w, &b).await;
    for seq in 0..5 {
        let _ = w
            .send(&Message::Equivocation(EquivocationNotice {
                case,
                proof: fork_proof(&mallory, case, seq, vec![genesis]),
            }))
            .await;
    }
    let _ = w.drain(Duration::from_secs(1)).await;
    assert_eq!(proofs(&a), 0, "a proof about a non-member was stored");
    let conn = connect(&b, &a).await;
    let mut w = Wire::open(conn.clone()).await.expect("stream");
    hello(&mut w, &b).await;
    for seq in 0..200 {
        if !w
            .send(&Message::Equivocation(EquivocationNotice {
                case,
                proof: fork_proof(&bravo, case, 100 + seq, vec![genesis]),
            }))
            .await
        {
            break;
        }
    }
    let _ = w.drain(Duration::from_secs(2)).await;
    let held = proofs(&a);
    assert!(held >= 1, "a member's genuine proof about itself is kept");
    assert!(
        held <= custodia_protocol::MAX_PROOFS_PER_AUTHOR,
        "{held} proofs of one author stored (bound {})",
        custodia_protocol::MAX_PROOFS_PER_AUTHOR
    );
    // A court bundle carries no proof planted by the non-member.
    let bundle = a.local().export_bundle(&case, &[]).expect("export");
    let decoded = custodia_protocol::bundle::Bundle::decode(&bundle).expect("bundle");
    for p in &decoded.proofs() {
        let eq = p.check().expect("proof checks");
        assert_ne!(eq.author, m.id, "the non-member's proof reached the bundle");
    }
    ra.shutdown().await;
}

/// After `case unshare`, the removed agency's entries that have the
/// removal in their causal past are refused; those written without
/// knowing of it are kept but reported as concurrent with the removal.
#[test]
fn a_removed_members_later_entries_are_refused_or_reported() {
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    let now = custodia_node::now_ms();
    // Bravo holds the case as shared (it never hears of its removal).
    let shared: Vec<custodia_protocol::SyncItem> = a
        .case_bytes(&case)
        .into_iter()
        .map(custodia_protocol::SyncItem::Entry)
        .collect();
    b.store()
        .receive(&case, shared, now)
        .expect("bravo stores the case");
    let removal = a
        .local()
        .unshare(&case, &b.id.to_hex(), Some("left the operation"))
        .expect("unshare");
    // Bravo writes on, unaware of the removal.
    let unaware = b
        .local()
        .write(&case, note("written without knowing of the removal"))
        .expect("bravo writes");
    // And an entry that names the removal in its causal past.
    let bravo = b.identity();
    let knowing = signed_note(
        &bravo,
        case,
        unaware.seq() + 1,
        Some(unaware.id()),
        vec![removal.id()],
        "written after seeing the removal",
    );
    let out = a
        .store()
        .receive(
            &case,
            vec![
                custodia_protocol::SyncItem::Entry(unaware.bytes().to_vec()),
                custodia_protocol::SyncItem::Entry(knowing.bytes().to_vec()),
            ],
            custodia_node::now_ms(),
        )
        .expect("receive");
    assert_eq!(out.stored, vec![unaware.id()], "{:?}", out.refused);
    assert_eq!(out.refused.len(), 1);
    assert_eq!(out.refused[0].rule(), 14, "{}", out.refused[0]);
    let l = a.local();
    let v = l.store().case(&case).expect("case");
    let reported = v.after_removal();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].entry, unaware.id());
    assert_eq!(reported[0].removal, removal.id());
    assert_eq!(reported[0].agency, b.id);
    // A court sees it too.
    let bundle = l.export_bundle(&case, &[]).expect("export");
    let decoded = custodia_protocol::bundle::Bundle::decode(&bundle).expect("bundle");
    let report = custodia_protocol::bundle::verify(&decoded, None);
    let member = report
        .members
        .iter()
        .find(|m| m.agency == b.id)
        .expect("bravo listed");
    assert_eq!(
        member
            .after_removal
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![unaware.id()]
    );
    drop(l);
    // And so do the operator's and the court's commands.
    let run = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(custodia_tests::custodia_binary())
            .arg("--dir")
            .arg(&a.dir)
            .args(args)
            .arg("--json")
            .output()
            .expect("run custodia");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let hex = case.to_hex();
    let show = run(&["case", "show", &hex]);
    assert_eq!(
        show["after_removal"][0]["entry"],
        unaware.id().to_hex(),
        "{show}"
    );
    let log = run(&["case", "log", &hex]);
    let flagged: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .expect("log rows")
        .iter()
        .filter(|r| r["after_removal"] == true)
        .collect();
    assert_eq!(flagged.len(), 1, "{log}");
    assert_eq!(flagged[0]["entry"], unaware.id().to_hex());
    let file = a.dir.join("lantern.custodia");
    let out = std::process::Command::new(custodia_tests::custodia_binary())
        .arg("--dir")
        .arg(&a.dir)
        .args(["export", &hex, "--out"])
        .arg(&file)
        .output()
        .expect("export");
    assert!(out.status.success(), "{out:?}");
    let verdict = run(&["verify", file.to_str().expect("path")]);
    let bravo_row = verdict["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["agency"] == b.id.to_hex())
        .expect("bravo in the report")
        .clone();
    assert_eq!(
        bravo_row["after_removal"][0]["entry"],
        unaware.id().to_hex(),
        "{verdict}"
    );
}

/// `peer add` refuses the node's own key: a node never pins itself.
#[test]
fn peer_add_refuses_the_nodes_own_key() {
    let a = Agency::new("alpha", "PH");
    let mut l = a.local();
    let err = l
        .add_peer(custodia_node::Peer {
            name: "myself".into(),
            addr: a.addr.to_string(),
            key: a.id.to_hex(),
            country: "PH".into(),
        })
        .expect_err("own key refused");
    assert!(err.to_string().contains("own"), "{err}");
    assert!(l.agencies().iter().all(|k| k.name != "myself"));
}

/// Stops a node process cleanly (SIGTERM) and waits for it.
fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until the node process listens (a pinned client completes a
/// handshake).
async fn wait_listening(who: &Agency, node: &Agency) {
    let up = eventually(WAIT, || std::net::UdpSocket::bind(node.addr).is_err()).await;
    assert!(up, "the node started");
    let _ = who;
}

/// A stranger retrying a refused handshake hundreds of times leaves a few
/// log lines, even at the debug level, not kilobytes per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_do_not_fill_the_log() {
    let (a, stranger) = (Agency::new("alpha", "PH"), Agency::new("stranger", "ZZ"));
    let _case = open_shared(&a, &[]);
    let log = a.dir.join("node.log");
    let node = a.spawn_logging("debug", &log);
    wait_listening(&stranger, &a).await;
    let endpoint = raw_client(&stranger, &a);
    const ATTEMPTS: usize = 300;
    for _ in 0..ATTEMPTS {
        let attempt = async {
            let conn = endpoint
                .connect(a.addr, custodia_node::SERVER_NAME)
                .ok()?
                .await
                .ok()?;
            let (mut send, _) = conn.open_bi().await.ok()?;
            send.write_all(b"\0\0\0\0").await.ok()?;
            let _ = conn.closed().await;
            Some(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), attempt).await;
    }
    stop(node);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines = text.lines().count();
    let refused = text.lines().filter(|l| l.contains("handshake")).count();
    assert!(
        refused <= 2,
        "{refused} lines about refused handshakes for {ATTEMPTS} attempts:\n{}",
        &text[..text.len().min(4000)]
    );
    assert!(
        text.len() < 100 * ATTEMPTS,
        "{} bytes ({lines} lines) of log for {ATTEMPTS} refused handshakes:\n{}",
        text.len(),
        &text[..text.len().min(4000)]
    );
}

/// A peer's error message is its own text: a newline in it cannot start
/// a forged line in the node's log, and escape sequences reach the log
/// escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_error_text_cannot_forge_log_lines() {
    let (a, m) = (Agency::new("alpha", "PH"), Agency::new("mallory", "ZZ"));
    link(&a, &m);
    let _case = open_shared(&a, &[(&m, Role::Investigator)]);
    let log = a.dir.join("node.log");
    let node = a.spawn_logging("info", &log);
    wait_listening(&m, &a).await;
    let forged = "2026-12-02T12:00:00.000000Z  INFO custodia_node::daemon: FORGED entry accepted";
    let sent = async {
        let conn = connect(&m, &a).await;
        let mut w = Wire::open(conn).await?;
        hello(&mut w, &m).await;
        w.send(&Message::Error(custodia_protocol::ErrorMessage {
            code: 6,
            message: format!("disk full\n{forged}\n\u{1b}[2J\u{1b}]52;c;aGVsbG8=\u{7}"),
        }))
        .await;
        let _ = w.drain(Duration::from_secs(1)).await;
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(20), sent)
        .await
        .expect("bounded");
    stop(node);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("peer reported an error"),
        "the error was logged:\n{text}"
    );
    for line in text.lines() {
        assert!(
            !line.contains("FORGED") || line.contains("peer reported an error"),
            "a forged log line: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "a raw escape in the log: {line:?}"
        );
        assert!(!line.contains('\u{7}'), "a raw BEL in the log: {line:?}");
    }
}

/// When the peer's storage fails, every session ends at once with
/// `internal`: the dialer backs off instead of reconnecting at full speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_peer_is_not_redialled_at_full_speed() {
    let (x, y) = (Agency::new("xray", "PH"), Agency::new("yankee", "DE"));
    // The dialer is the agency with the lower key; its peer's store fails.
    let (dialer, failing) = if x.id < y.id { (&x, &y) } else { (&y, &x) };
    link(dialer, failing);
    let _case = open_shared(dialer, &[(failing, Role::Investigator)]);
    {
        let db = rusqlite::Connection::open(failing.dir.join("store.sqlite")).expect("db");
        db.execute_batch(
            "CREATE TRIGGER storage_fails BEFORE INSERT ON entries
             BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
        )
        .expect("trigger");
    }
    let rf = custodia_node::start(&failing.dir)
        .await
        .expect("failing node");
    let rd = custodia_node::start(&dialer.dir).await.expect("dialer");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let sessions = rf.peer_stats(&dialer.id).sessions;
    assert!(sessions >= 2, "the dialer retried ({sessions} sessions)");
    // 200 ms doubling: attempts near 0, 0.2, 0.6, 1.4, 3.0 and 6.2 s.
    assert!(
        sessions <= 8,
        "{sessions} sessions in 7 s with a peer whose storage fails"
    );
    rd.shutdown().await;
    rf.shutdown().await;
}

/// A hostile member's text in every field it controls (a note, an
/// evidence description, exhibit, tool, place) reaches the honest node
/// over the wire and is stored (the entries are valid); the operator's
/// and the court's commands show it inert: no raw control character,
/// escape sequence or direction override on the terminal, and the
/// verdict is the last line of `verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_members_text_reaches_the_terminal_inert() {
    let (a, m) = (Agency::new("alpha", "PH"), Agency::new("mallory", "ZZ"));
    link(&a, &m);
    let case = open_shared(&a, &[(&m, Role::Investigator)]);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let mallory = m.identity();
    let head = a.local().store().heads(&case).last().expect("head").2;
    const EVIL: &str = "\u{1b}[2J\u{1b}[HVERDICT: VALID\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{9b}31m\u{202e}gnp.exe\u{2066}\r\n\u{7f}";
    let note = signed_note(&mallory, case, 0, None, vec![head], EVIL);
    let item = custodia_protocol::ItemId::new_v4([7; 16]);
    let registered = Entry::sign(
        &mallory,
        &Payload {
            v: 1,
            keys: None,
            case: Some(case),
            author: mallory.agency(),
            seq: 1,
            prev: Some(note.id()),
            refs: Vec::new(),
            time: custodia_node::now_ms(),
            tlp: Tlp::Amber,
            to: None,
            body: Body::EvidenceRegistered(custodia_protocol::EvidenceRegistered {
                item,
                exhibit: Some(EVIL.into()),
                digests: custodia_protocol::Digests {
                    sha256: [9; 32],
                    sha1: None,
                    md5: None,
                },
                size: 1,
                media_type: "application/octet-stream".into(),
                description: Some(EVIL.into()),
                derived_from: None,
                acquired: custodia_protocol::Acquisition {
                    by: EVIL.into(),
                    at: custodia_node::now_ms(),
                    place: Some(EVIL.into()),
                    method: Some(EVIL.into()),
                    tool: Some(EVIL.into()),
                },
                authority: Some(EVIL.into()),
            }),
        },
    );
    let conn = connect(&m, &a).await;
    let mut w = Wire::open(conn).await.expect("stream");
    hello(&mut w, &m).await;
    ask(&mut w, case).await;
    let _ = w.drain(Duration::from_millis(500)).await;
    w.send(&Message::Entries(custodia_protocol::Entries {
        case,
        batch: 1,
        items: vec![
            custodia_protocol::SyncItem::Entry(note.bytes().to_vec()),
            custodia_protocol::SyncItem::Entry(registered.bytes().to_vec()),
        ],
    }))
    .await;
    let _ = w.drain(Duration::from_millis(500)).await;
    assert!(
        eventually(WAIT, || a
            .case_bytes(&case)
            .contains(&registered.bytes().to_vec()))
        .await,
        "the member's valid entries are stored"
    );
    ra.shutdown().await;
    let bundle = a.dir.join("case.custodia");
    let run = |args: &[&str]| {
        std::process::Command::new(custodia_tests::custodia_binary())
            .arg("--dir")
            .arg(&a.dir)
            .args(args)
            .output()
            .expect("custodia")
    };
    let hex = case.to_hex();
    assert!(
        run(&["export", &hex, "--out", bundle.to_str().expect("path")])
            .status
            .success()
    );
    for args in [
        vec!["case", "show", hex.as_str()],
        vec!["case", "log", hex.as_str()],
        vec!["case", "list"],
        vec!["agency", "list"],
        vec!["verify", bundle.to_str().expect("path")],
    ] {
        let out = run(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        for c in text.chars() {
            let control = c.is_control() && c != '\n';
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            assert!(!control && !bidi, "{args:?}: raw {c:?} in:\n{text}");
        }
        if args[0] == "verify" {
            let last = text.trim_end().lines().last().unwrap_or_default();
            assert!(
                last.contains("VALID") && !last.contains("VERDICT: VALID"),
                "the verdict closes the report: {last:?}"
            );
        }
    }
}
