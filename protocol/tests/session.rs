//! Two and three sync sessions driven in memory, every message through its
//! wire frame: convergence, relay, the member and pin rules, the errors
//! of SPEC.md §9.12, and equivocation proofs reaching both sides.

mod fuzz_checks;

use custodia_protocol::session::{Event, MemoryReplica, Replica, Session, SessionError};
use custodia_protocol::*;
use fuzz_checks::{session_replica, test_key, NOW};

/// A node in a test: its replica and its sessions by peer.
struct Node {
    me: AgencyId,
    r: MemoryReplica,
}

/// Moves every queued message between two sessions, as frames, until both
/// are quiet; returns the frames each way (a→b, b→a).
fn exchange(
    a: (&mut Session, &mut MemoryReplica),
    b: (&mut Session, &mut MemoryReplica),
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Option<SessionError>) {
    let (sa, ra) = a;
    let (sb, rb) = b;
    let (mut ab, mut ba) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(m) = sa.poll_transmit() {
            let f = m.to_frame();
            ab.push(f.clone());
            let m = Message::decode(&f[4..]).expect("a frame decodes");
            if let Err(e) = sb.handle(m, rb, NOW) {
                return (ab, ba, Some(e));
            }
            moved = true;
        }
        while let Some(m) = sb.poll_transmit() {
            let f = m.to_frame();
            ba.push(f.clone());
            let m = Message::decode(&f[4..]).expect("a frame decodes");
            if let Err(e) = sa.handle(m, ra, NOW) {
                return (ab, ba, Some(e));
            }
            moved = true;
        }
        if !moved {
            return (ab, ba, None);
        }
    }
    panic!("sessions never went quiet");
}

fn node(label: &str) -> Node {
    let me = test_key(label).agency();
    Node {
        me,
        r: MemoryReplica::of(me),
    }
}

fn sessions(a: &Node, b: &Node) -> (Session, Session) {
    (Session::new(a.me, b.me), Session::new(b.me, a.me))
}

fn alpha() -> (Node, CaseId) {
    let (r, case) = session_replica();
    (
        Node {
            me: test_key("alpha").agency(),
            r,
        },
        case,
    )
}

fn note(n: &mut Node, label: &str, case: &CaseId, text: &str) -> Entry {
    let body = Body::Note(Note {
        text: text.into(),
        item: None,
    });
    n.r.write(&test_key(label), Some(case), body, Tlp::Amber, NOW - 1_000)
        .expect("a note")
}

#[test]
fn two_sessions_converge_frame_for_frame() {
    let run = || {
        let (mut a, case) = alpha();
        let mut b = node("bravo");
        b.r.pin(a.me);
        let (mut sa, mut sb) = sessions(&a, &b);
        let (ab, ba, err) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(err, None);
        (a, b, case, ab, ba)
    };
    let (a, b, case, ab, ba) = run();
    // Bravo holds exactly alpha's entries, byte for byte.
    assert_eq!(b.r.ids(&case), a.r.ids(&case));
    let bytes = |n: &Node| -> Vec<Vec<u8>> {
        n.r.entries(&case)
            .iter()
            .map(|e| e.bytes().to_vec())
            .collect()
    };
    assert_eq!(bytes(&b), bytes(&a));
    // The transcript: hello and summary both ways first (version 2; the
    // digests differ), then alpha's heads, bravo's empty heads, one batch
    // of four entries, its ack.
    let hello = |who: &Node| {
        Message::Hello(Hello {
            versions: SYNC_VERSIONS.to_vec(),
            agency: who.me,
        })
        .to_frame()
    };
    assert_eq!(ab[0], hello(&a));
    assert_eq!(ba[0], hello(&b));
    let kinds = |fs: &[Vec<u8>]| -> Vec<&'static str> {
        fs.iter()
            .map(|f| match Message::decode(&f[4..]).expect("decodes") {
                Message::Hello(_) => "hello",
                Message::Heads(_) => "heads",
                Message::Entries(_) => "entries",
                Message::Ack(_) => "ack",
                Message::Equivocation(_) => "equivocation",
                Message::Summary(_) => "summary",
                _ => "other",
            })
            .collect()
    };
    assert_eq!(kinds(&ab), ["hello", "summary", "heads", "entries"]);
    assert_eq!(kinds(&ba), ["hello", "summary", "heads", "ack"]);
    // The same inputs give the same frames.
    let (_, _, _, ab2, ba2) = run();
    // Bravo's side of this exchange is the `session` fuzz target's seed.
    let seed: Vec<u8> = ba_after_hello(&ba);
    assert_eq!((ab, ba), (ab2, ba2));
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/session/honest-bravo");
    if std::env::var_os("CUSTODIA_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::write(&path, &seed).expect("seed written");
    }
    assert_eq!(
        std::fs::read(&path).expect("the seed exists"),
        seed,
        "the session seed is stale: run with CUSTODIA_WRITE_FUZZ_SEEDS=1"
    );
}

/// Bravo's frames after its hello (the fuzz target says hello itself).
fn ba_after_hello(ba: &[Vec<u8>]) -> Vec<u8> {
    ba[1..].concat()
}

#[test]
fn three_sessions_relay_through_a_member_in_the_middle() {
    // Alpha and bravo are not connected; charlie, a member, connects both.
    let (mut a, case) = alpha();
    let mut b = node("bravo");
    let mut c = node("charlie");
    a.r.pin(c.me);
    c.r.pin(a.me);
    c.r.pin(b.me);
    b.r.pin(c.me);
    let (mut sac, mut sca) = sessions(&a, &c);
    let (mut scb, mut sbc) = sessions(&c, &b);
    let (.., e) = exchange((&mut sac, &mut a.r), (&mut sca, &mut c.r));
    assert_eq!(e, None);
    // Charlie's store changed: its other session looks.
    scb.changed(&mut c.r).expect("changed");
    let (.., e) = exchange((&mut scb, &mut c.r), (&mut sbc, &mut b.r));
    assert_eq!(e, None);
    assert_eq!(b.r.ids(&case), a.r.ids(&case));
    // A new note of alpha's reaches bravo the same way.
    let n = note(&mut a, "alpha", &case, "second image verified");
    sac.changed(&mut a.r).expect("changed");
    exchange((&mut sac, &mut a.r), (&mut sca, &mut c.r));
    scb.changed(&mut c.r).expect("changed");
    exchange((&mut scb, &mut c.r), (&mut sbc, &mut b.r));
    assert!(b.r.ids(&case).contains(&n.id()));
    // Bravo's note goes back to alpha through charlie.
    let m = note(&mut b, "bravo", &case, "received, thank you");
    sbc.changed(&mut b.r).expect("changed");
    exchange((&mut scb, &mut c.r), (&mut sbc, &mut b.r));
    sca.changed(&mut c.r).expect("changed");
    exchange((&mut sac, &mut a.r), (&mut sca, &mut c.r));
    assert!(a.r.ids(&case).contains(&m.id()));
}

#[test]
fn a_non_member_asking_for_a_case_gets_an_empty_answer_and_nothing_else() {
    let (mut a, case) = alpha();
    let mut m = node("mallory");
    a.r.pin(m.me);
    m.r.pin(a.me);
    let (mut sa, mut sm) = sessions(&a, &m);
    // Mallory claims to hold nothing of the case and asks.
    exchange((&mut sa, &mut a.r), (&mut sm, &mut m.r));
    sm.handle(
        Message::Hello(Hello {
            versions: vec![1],
            agency: a.me,
        }),
        &mut m.r,
        NOW,
    )
    .expect_err("a second hello");
    let heads = Message::Heads(Heads {
        case,
        heads: Vec::new(),
    });
    sa.handle(heads, &mut a.r, NOW).expect("heads");
    let mut out = Vec::new();
    while let Some(msg) = sa.poll_transmit() {
        out.push(msg);
    }
    assert_eq!(
        out,
        [Message::Heads(Heads {
            case,
            heads: Vec::new()
        })],
        "the answer for an unknown case, and no entries"
    );
    assert!(m.r.case(&case).is_none());
}

#[test]
fn an_unpinned_peer_gets_nothing_more() {
    let (mut a, case) = alpha();
    let mut b = node("bravo");
    b.r.pin(a.me);
    let (mut sa, mut sb) = sessions(&a, &b);
    exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    // `peer remove bravo` on alpha's node, then a new note.
    a.r.unpin(&b.me);
    note(&mut a, "alpha", &case, "written after bravo was removed");
    sa.changed(&mut a.r).expect("changed");
    assert_eq!(sa.poll_transmit(), None);
    assert_eq!(sa.poll_event(), Some(Event::PeerRemoved));
    assert!(sa.is_closed());
    // Whatever bravo sends now is ignored.
    sa.handle(
        Message::Heads(Heads {
            case,
            heads: Vec::new(),
        }),
        &mut a.r,
        NOW,
    )
    .expect("ignored");
    assert_eq!(sa.poll_transmit(), None);
}

#[test]
fn protocol_errors_have_their_codes() {
    let (mut a, case) = alpha();
    let b = node("bravo");
    let hello = |agency, versions: Vec<u64>| Message::Hello(Hello { versions, agency });
    let cases: Vec<(Vec<Message>, ErrorCode)> = vec![
        (vec![hello(a.me, vec![1])], ErrorCode::ProtocolViolation),
        (vec![hello(b.me, vec![7, 9])], ErrorCode::UnsupportedVersion),
        (
            vec![Message::Heads(Heads {
                case,
                heads: Vec::new(),
            })],
            ErrorCode::ProtocolViolation,
        ),
        (
            vec![hello(b.me, vec![1]), hello(b.me, vec![1])],
            ErrorCode::ProtocolViolation,
        ),
    ];
    for (msgs, code) in cases {
        let mut s = Session::new(a.me, b.me);
        let err = msgs
            .into_iter()
            .find_map(|m| s.handle(m, &mut a.r, NOW).err())
            .expect("an error");
        assert_eq!(err.code(), code, "{err}");
    }
    // More batches than the window at once (a node hands the session the
    // batches queued behind one, unacknowledged so far).
    let mut s = Session::new(a.me, b.me);
    s.handle(hello(b.me, vec![1]), &mut a.r, NOW)
        .expect("hello");
    let group = |n: u64| (1..=n).map(|batch| (case, batch, Vec::new())).collect();
    let err = s
        .receive_entries(group(5), &mut a.r, NOW)
        .expect_err("over the window");
    assert_eq!(err.code(), ErrorCode::FlowControl);
    let mut s = Session::new(a.me, b.me);
    s.handle(hello(b.me, vec![1]), &mut a.r, NOW)
        .expect("hello");
    s.receive_entries(group(4), &mut a.r, NOW)
        .expect("a full window");
    // Unacknowledged batches within the window are fine: the session acks
    // each as it stores it.
    let mut s = Session::new(a.me, b.me);
    s.handle(hello(b.me, vec![1]), &mut a.r, NOW)
        .expect("hello");
    for batch in 1..=8 {
        s.handle(
            Message::Entries(Entries {
                case,
                batch,
                items: Vec::new(),
            }),
            &mut a.r,
            NOW,
        )
        .expect("acked as it goes");
    }
}

#[test]
fn a_fork_seen_by_two_members_becomes_a_proof_both_hold() {
    // Alpha's key signs two different entries at one position (a copied
    // node folder); bravo gets one, charlie the other.
    let (a, case) = alpha();
    let key = test_key("alpha");
    let mut b = node("bravo");
    let mut c = node("charlie");
    let base: Vec<Entry> = a.r.entries(&case).into_iter().cloned().collect();
    for e in &base {
        b.r.author(e, NOW).expect("base");
        c.r.author(e, NOW).expect("base");
    }
    let fork = |text: &str| {
        let body = Body::Note(Note {
            text: text.into(),
            item: None,
        });
        let p =
            a.r.next_payload(a.me, &case, body, Tlp::Amber, NOW - 500)
                .expect("payload");
        Entry::sign(&key, &p)
    };
    let (x, y) = (fork("version one"), fork("version two"));
    assert_eq!(x.seq(), y.seq());
    b.r.author(&x, NOW).expect("x");
    c.r.author(&y, NOW).expect("y");
    b.r.pin(c.me);
    c.r.pin(b.me);
    let (mut sb, mut sc) = sessions(&b, &c);
    let (.., e) = exchange((&mut sb, &mut b.r), (&mut sc, &mut c.r));
    assert_eq!(e, None);
    for n in [&b, &c] {
        let proofs = n.r.proofs_of(&case);
        assert_eq!(proofs.len(), 1, "one proof held");
        let eq = proofs[0].check().expect("the proof checks");
        assert_eq!((eq.author, eq.seq), (a.me, x.seq()));
    }
    // Each side reported it as an event.
    let found = |s: &mut Session| {
        std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Proof { .. }))
    };
    assert!(found(&mut sb) && found(&mut sc));
}

/// Alpha and bravo, both holding the same `n` cases (each opened by alpha
/// with bravo as a member, and a note).
fn synced_pair(n: usize) -> (Node, Node, Vec<CaseId>) {
    let mut a = node("alpha");
    let mut b = node("bravo");
    a.r.pin(b.me);
    b.r.pin(a.me);
    let alpha = test_key("alpha");
    let mut cases = Vec::new();
    for i in 0..n {
        let opened = Body::CaseOpened(CaseOpened {
            title: format!("Case {i}"),
            reference: format!("REF-{i}"),
            jurisdiction: None,
            name: "NBI".into(),
            country: "PH".into(),
        });
        let g =
            a.r.write(&alpha, None, opened, Tlp::Amber, NOW - 10_000)
                .expect("genesis");
        let case = g.case_id();
        let add = Body::MemberAdded(MemberAdded {
            agency: b.me,
            name: "BKA".into(),
            country: "DE".into(),
            role: Role::Investigator,
        });
        let m =
            a.r.write(&alpha, Some(&case), add, Tlp::Amber, NOW - 9_000)
                .expect("member");
        for e in [&g, &m] {
            b.r.author(e, NOW).expect("the same entries at bravo");
        }
        cases.push(case);
    }
    (a, b, cases)
}

fn wire_bytes(frames: &[Vec<u8>]) -> usize {
    frames.iter().map(Vec::len).sum()
}

#[test]
fn a_reconnect_that_finds_nothing_new_costs_one_summary_each_way() {
    const CASES: usize = 1000;
    let (mut a, mut b, _) = synced_pair(CASES);
    // Version 2: hello and summary each way, nothing else.
    let (mut sa, mut sb) = sessions(&a, &b);
    let (ab, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert_eq!(e, None);
    assert_eq!((sa.version(), sb.version()), (2, 2));
    assert_eq!((ab.len(), ba.len()), (2, 2), "hello and summary only");
    let v2 = wire_bytes(&ab) + wire_bytes(&ba);
    assert!(v2 < 512, "{v2} bytes for a no-op resync of {CASES} cases");
    // Version 1 sends one heads message per shared case each way.
    let mut sa1 = Session::with_versions(a.me, b.me, &[1]);
    let mut sb1 = Session::with_versions(b.me, a.me, &[1]);
    let (ab1, ba1, e) = exchange((&mut sa1, &mut a.r), (&mut sb1, &mut b.r));
    assert_eq!(e, None);
    assert_eq!((ab1.len(), ba1.len()), (CASES + 1, CASES + 1));
    let v1 = wire_bytes(&ab1) + wire_bytes(&ba1);
    eprintln!(
        "no-op resync of {CASES} two-member cases: version 2 {v2} bytes, version 1 {v1} bytes"
    );
    assert!(v1 > 64 * 1024, "{v1} bytes");
}

#[test]
fn after_equal_summaries_a_new_entry_still_goes_and_a_difference_falls_back_to_heads() {
    let (mut a, mut b, cases) = synced_pair(3);
    let (mut sa, mut sb) = sessions(&a, &b);
    exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    // Equal: each side took the other's heads as its own; a note written
    // now is sent as in version 1.
    let n = note(&mut a, "alpha", &cases[1], "written after the summaries");
    sa.changed(&mut a.r).expect("changed");
    let (ab, ..) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert!(b.r.ids(&cases[1]).contains(&n.id()));
    assert_eq!(ab.len(), 1, "the entry alone, no heads");
    // Different: bravo lacks a note of case 2 when they reconnect.
    let m = note(&mut a, "alpha", &cases[2], "written while apart");
    let (mut sa, mut sb) = sessions(&a, &b);
    let (ab, ..) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert!(b.r.ids(&cases[2]).contains(&m.id()));
    let heads = ab
        .iter()
        .filter(|f| matches!(Message::decode(&f[4..]), Ok(Message::Heads(_))))
        .count();
    assert_eq!(heads, 3, "version 1's heads for every shared case");
}

#[test]
fn a_version_1_peer_syncs_with_a_version_2_node() {
    let (mut a, case) = alpha();
    let mut b = node("bravo");
    b.r.pin(a.me);
    let mut sa = Session::new(a.me, b.me);
    let mut sb = Session::with_versions(b.me, a.me, &[1]);
    let (ab, _, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert_eq!(e, None);
    assert_eq!((sa.version(), sb.version()), (1, 1));
    assert!(!ab
        .iter()
        .any(|f| matches!(Message::decode(&f[4..]), Ok(Message::Summary(_)))));
    assert_eq!(b.r.ids(&case), a.r.ids(&case));
}

#[test]
fn a_summary_out_of_turn_is_a_protocol_violation() {
    let (mut a, _) = alpha();
    let b = node("bravo");
    let summary = Message::Summary(Summary {
        cases: 0,
        digest: vec![0; 32],
    });
    for versions in [vec![1], vec![1, 2]] {
        let mut s = Session::new(a.me, b.me);
        s.handle(
            Message::Hello(Hello {
                versions: versions.clone(),
                agency: b.me,
            }),
            &mut a.r,
            NOW,
        )
        .expect("hello");
        let first = s.handle(summary.clone(), &mut a.r, NOW);
        let err = if versions == [1] {
            first.expect_err("no summary in version 1")
        } else {
            first.expect("the peer's summary");
            s.handle(summary.clone(), &mut a.r, NOW)
                .expect_err("a second summary")
        };
        assert_eq!(err.code(), ErrorCode::ProtocolViolation);
    }
    // A digest that is not 32 bytes does not decode.
    let bad = Message::Summary(Summary {
        cases: 1,
        digest: vec![0; 31],
    })
    .to_frame();
    assert!(matches!(
        Message::decode(&bad[4..]),
        Err(SyncError::Malformed(_))
    ));
}

#[test]
fn a_note_bravo_wrote_reaches_alpha_and_is_the_second_fuzz_seed() {
    let (mut a, case) = alpha();
    let mut b = node("bravo");
    b.r.pin(a.me);
    for e in a.r.entries(&case).into_iter().cloned().collect::<Vec<_>>() {
        b.r.author(&e, NOW).expect("alpha's entries at bravo");
    }
    let n = note(&mut b, "bravo", &case, "second phone imaged at the BKA lab");
    let (mut sa, mut sb) = sessions(&a, &b);
    let (_, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert_eq!(e, None);
    assert!(a.r.ids(&case).contains(&n.id()));
    // Bravo's side carries a batch with an entry: the `session` fuzz
    // target's second seed, so mutations reach the receiving path.
    let seed = ba_after_hello(&ba);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/session/bravo-sends-a-note");
    if std::env::var_os("CUSTODIA_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::write(&path, &seed).expect("seed written");
    }
    assert_eq!(
        std::fs::read(&path).expect("the seed exists"),
        seed,
        "the session seed is stale: run with CUSTODIA_WRITE_FUZZ_SEEDS=1"
    );
}
