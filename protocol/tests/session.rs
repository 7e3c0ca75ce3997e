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
    // The transcript: hello, key heads (none held) and summary both ways
    // first (version 3; the digests differ), then alpha's heads, bravo's
    // empty heads, one batch of four entries, its ack.
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
                Message::KeyHeads(_) => "key-heads",
                _ => "other",
            })
            .collect()
    };
    assert_eq!(
        kinds(&ab),
        ["hello", "key-heads", "summary", "heads", "entries"]
    );
    // Bravo now holds a case whose members' key logs it lacks: it sends
    // its key heads again, so alpha sends any it holds (none here).
    assert_eq!(
        kinds(&ba),
        ["hello", "key-heads", "summary", "heads", "ack", "key-heads"]
    );
    // The same inputs give the same frames.
    let (_, _, _, ab2, ba2) = run();
    // Bravo's side of this exchange is the `session` fuzz target's seed.
    let seed: Vec<u8> = ba_after_hello(&ba);
    assert_eq!((ab, ba), (ab2, ba2));
    check_seed("honest-bravo", &seed);
}

/// Checks a committed seed of the `session` fuzz target against what the
/// test produced (written anew with `CUSTODIA_WRITE_FUZZ_SEEDS=1`).
fn check_seed(name: &str, seed: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/session")
        .join(name);
    if std::env::var_os("CUSTODIA_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::write(&path, seed).expect("seed written");
    }
    assert_eq!(
        std::fs::read(&path).expect("the seed exists"),
        seed,
        "the session seed {name} is stale: run with CUSTODIA_WRITE_FUZZ_SEEDS=1"
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
    // Version 3: hello, key heads and summary each way, nothing else.
    let (mut sa, mut sb) = sessions(&a, &b);
    let (ab, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert_eq!(e, None);
    assert_eq!((sa.version(), sb.version()), (3, 3));
    assert_eq!(
        (ab.len(), ba.len()),
        (3, 3),
        "hello, key heads and summary only"
    );
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
    check_seed("bravo-sends-a-note", &seed);
}

// Key logs in sync version 3 (SPEC.md §9.15).

mod keys {
    use super::*;
    use custodia_protocol::keylog::{
        key_of, Certify, KeyLog, KeyRole, KeyStatement, Officer, Profile, PublicKey, Root,
        Statement, StatementPayload,
    };
    use custodia_protocol::session::MAX_REFUSED_KEY_MESSAGES;

    /// The next root of a test agency (kept offline by the agency).
    fn next_of(label: &str) -> Identity {
        test_key(&format!("{label} next root"))
    }

    /// Starts `label`'s key log in its replica: inception and profile.
    fn start(n: &mut Node, label: &str) -> KeyLog {
        let root = test_key(label);
        let next = next_of(label);
        let inception = KeyStatement::sign(
            &root,
            &StatementPayload::inception(&root, &next, NOW - 5_000),
        );
        n.r.add_own_statement(inception).expect("inception");
        let profile = Statement::Profile(Profile {
            name: format!("{label} cybercrime unit"),
            country: "PH".into(),
        });
        sign_next(n, &root, profile).expect("profile");
        n.r.key_log_of(&n.me).expect("held").clone()
    }

    fn officer(n: u8) -> Statement {
        Statement::Certify(Certify {
            key: PublicKey::ed25519(key_of(&Identity::from_seed([n; 32]))),
            role: KeyRole::Officer,
            officer: Some(Officer {
                name: format!("Officer {n}"),
                number: format!("PNP-{n:04}"),
            }),
            not_before: NOW - 1_000,
            not_after: None,
        })
    }

    /// Signs the statement after the replica's own log and appends it.
    fn sign_next(n: &mut Node, signer: &Identity, st: Statement) -> Result<KeyStatement, String> {
        let log = n.r.key_log_of(&n.me).expect("a log").clone();
        let s = KeyStatement::sign(
            signer,
            &StatementPayload::after(&log, NOW - 4_000 + log.len(), st),
        );
        n.r.add_own_statement(s.clone())?;
        Ok(s)
    }

    fn ids(log: Option<&KeyLog>) -> Vec<StatementId> {
        log.map(|l| l.statements().iter().map(|s| s.id()).collect())
            .unwrap_or_default()
    }

    fn key_frames(frames: &[Vec<u8>]) -> Vec<KeyStatements> {
        frames
            .iter()
            .filter_map(|f| match Message::decode(&f[4..]) {
                Ok(Message::KeyStatements(k)) => Some(k),
                _ => None,
            })
            .collect()
    }

    fn events(s: &mut Session) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn pinned_peers_exchange_their_key_logs_and_then_only_what_is_new() {
        let (mut a, mut b, _) = synced_pair(1);
        let la = start(&mut a, "alpha");
        let lb = start(&mut b, "bravo");
        let (mut sa, mut sb) = sessions(&a, &b);
        let (ab, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(e, None);
        assert_eq!(ids(b.r.key_log_of(&a.me)), ids(Some(&la)));
        assert_eq!(ids(a.r.key_log_of(&b.me)), ids(Some(&lb)));
        assert_eq!(key_frames(&ab).len(), 1, "alpha's log in one message");
        assert_eq!(key_frames(&ba).len(), 1, "bravo's log in one message");
        // A certification made now goes alone, once.
        let s = sign_next(&mut a, &test_key("alpha"), officer(7)).expect("certify");
        sa.changed(&mut a.r).expect("changed");
        let (ab, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(e, None);
        assert_eq!(
            key_frames(&ab),
            [KeyStatements {
                agency: a.me,
                items: vec![s.bytes().to_vec()],
            }]
        );
        assert!(key_frames(&ba).is_empty(), "nothing echoed back");
        assert_eq!(b.r.key_log_of(&a.me).map(KeyLog::len), Some(3));
        // A reconnection that finds both logs equal sends no statement.
        let (mut sa, mut sb) = sessions(&a, &b);
        let (ab, ba, _) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert!(key_frames(&ab).is_empty() && key_frames(&ba).is_empty());
    }

    #[test]
    fn a_log_is_relayed_to_the_members_of_shared_cases_and_to_no_one_else() {
        // Alpha's case has bravo and charlie as members (session_replica);
        // charlie hears of alpha's log from bravo, delta (pinned by bravo,
        // in no case with alpha) does not.
        let (mut a, case) = alpha();
        let la = start(&mut a, "alpha");
        let mut b = node("bravo");
        b.r.pin(a.me);
        let (mut sa, mut sb) = sessions(&a, &b);
        exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert!(b.r.ids(&case).len() >= 4, "bravo holds the case");
        assert_eq!(ids(b.r.key_log_of(&a.me)), ids(Some(&la)));
        let mut c = node("charlie");
        c.r.pin(b.me);
        b.r.pin(c.me);
        let (mut sb2, mut sc) = sessions(&b, &c);
        exchange((&mut sb2, &mut b.r), (&mut sc, &mut c.r));
        assert_eq!(ids(c.r.key_log_of(&a.me)), ids(Some(&la)), "relayed");
        let mut d = node("delta");
        d.r.pin(b.me);
        b.r.pin(d.me);
        let (mut sb3, mut sd) = sessions(&b, &d);
        let (bd, ..) = exchange((&mut sb3, &mut b.r), (&mut sd, &mut d.r));
        assert!(d.r.key_log_of(&a.me).is_none());
        assert!(
            key_frames(&bd).is_empty(),
            "alpha's log never sent to delta"
        );
    }

    #[test]
    fn a_peer_cannot_plant_logs_of_strangers_or_forged_statements() {
        let (mut a, mut b, _) = synced_pair(1);
        start(&mut b, "bravo");
        let (mut sa, _) = sessions(&a, &b);
        let hello = Message::Hello(Hello {
            versions: SYNC_VERSIONS.to_vec(),
            agency: b.me,
        });
        sa.handle(hello, &mut a.r, NOW).expect("hello");
        // A log of an agency alpha has never heard of: ignored.
        let mut m = node("mallory's puppet");
        let lm = start(&mut m, "mallory's puppet");
        let planted = KeyStatements {
            agency: m.me,
            items: lm.statements().iter().map(|s| s.bytes().to_vec()).collect(),
        };
        sa.handle(Message::KeyStatements(planted.clone()), &mut a.r, NOW)
            .expect("not a protocol error");
        assert!(a.r.key_log_of(&m.me).is_none());
        assert!(events(&mut sa)
            .iter()
            .any(|e| matches!(e, Event::KeysIgnored { count: 2, .. })));
        // Bravo's own log with its profile altered after signing: refused,
        // and nothing of the message is kept (the inception before it is).
        let lb = b.r.key_log_of(&b.me).expect("bravo's").clone();
        let mut forged = lb.statements()[1].bytes().to_vec();
        let at = forged.len() - 70;
        forged[at] ^= 1;
        let items = vec![lb.statements()[0].bytes().to_vec(), forged];
        sa.handle(
            Message::KeyStatements(KeyStatements {
                agency: b.me,
                items,
            }),
            &mut a.r,
            NOW,
        )
        .expect("not a protocol error");
        assert_eq!(a.r.key_log_of(&b.me).map(KeyLog::len), Some(1));
        assert!(events(&mut sa)
            .iter()
            .any(|e| matches!(e, Event::KeysRefused { unchecked: 0, .. })));
        // A peer that keeps sending refused statements is cut off: the
        // rest are dropped unread, bravo's good log included.
        for _ in 0..MAX_REFUSED_KEY_MESSAGES {
            sa.handle(Message::KeyStatements(planted.clone()), &mut a.r, NOW)
                .expect("not a protocol error");
        }
        assert!(events(&mut sa).contains(&Event::KeyLimit));
        let good = KeyStatements {
            agency: b.me,
            items: vec![lb.statements()[1].bytes().to_vec()],
        };
        sa.handle(Message::KeyStatements(good), &mut a.r, NOW)
            .expect("dropped");
        assert_eq!(a.r.key_log_of(&b.me).map(KeyLog::len), Some(1));
    }

    #[test]
    fn a_member_that_signs_without_end_is_kept_to_the_bound() {
        let (mut a, mut b, _) = synced_pair(1);
        start(&mut b, "bravo");
        for n in 1..=6 {
            sign_next(&mut b, &test_key("bravo"), officer(n)).expect("certify");
        }
        let (mut sa, mut sb) = sessions(&a, &b);
        sa.limit_key_logs(3);
        // Bravo's eight statements come in one message, taken whole: the
        // bound is checked per message, so a log passes it by at most one
        // message (256 statements).
        let (_, _, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(e, None);
        assert_eq!(a.r.key_log_of(&b.me).map(KeyLog::len), Some(8));
        // Past the bound, bravo's next statement is not taken.
        sign_next(&mut b, &test_key("bravo"), officer(9)).expect("certify");
        sb.changed(&mut b.r).expect("changed");
        exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(a.r.key_log_of(&b.me).map(KeyLog::len), Some(8));
        assert!(events(&mut sa)
            .iter()
            .any(|e| matches!(e, Event::KeysOverLimit { held: 8, .. })));
        // An agency's own log is never bounded: bravo takes back its own
        // eight from alpha after a restore to nothing.
        let mut fresh = node("bravo");
        fresh.r.pin(a.me);
        let (mut sa2, mut sf) = sessions(&a, &fresh);
        sf.limit_key_logs(3);
        exchange((&mut sa2, &mut a.r), (&mut sf, &mut fresh.r));
        assert_eq!(fresh.r.key_log_of(&fresh.me).map(KeyLog::len), Some(8));
    }

    #[test]
    fn key_messages_before_version_3_are_violations_and_limits_hold() {
        let (mut a, _) = alpha();
        let b = node("bravo");
        for versions in [vec![1], vec![1, 2]] {
            let mut s = Session::new(a.me, b.me);
            s.handle(
                Message::Hello(Hello {
                    versions,
                    agency: b.me,
                }),
                &mut a.r,
                NOW,
            )
            .expect("hello");
            let err = s
                .handle(Message::KeyHeads(KeyHeads { logs: vec![] }), &mut a.r, NOW)
                .expect_err("no key heads before version 3");
            assert_eq!(err.code(), ErrorCode::ProtocolViolation);
        }
        let decode = |m: Message| Message::decode(&m.to_frame()[4..]);
        let empty = KeyStatements {
            agency: b.me,
            items: vec![],
        };
        assert!(matches!(
            decode(Message::KeyStatements(empty)),
            Err(SyncError::Malformed(_))
        ));
        let many = KeyStatements {
            agency: b.me,
            items: vec![vec![0xD2]; MAX_KEY_BATCH + 1],
        };
        assert!(matches!(
            decode(Message::KeyStatements(many)),
            Err(SyncError::Oversize(_))
        ));
        let head = KeyHead(b.me, 1, StatementId([0; 32]));
        let unsorted = KeyHeads {
            logs: vec![head, head],
        };
        assert!(matches!(
            decode(Message::KeyHeads(unsorted)),
            Err(SyncError::Malformed(_))
        ));
    }

    #[test]
    fn a_recovery_reaches_a_peer_that_holds_what_the_thief_signed() {
        let (mut a, mut b, _) = synced_pair(1);
        start(&mut a, "alpha");
        let (mut sa, mut sb) = sessions(&a, &b);
        exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        // A thief with alpha's root certifies a key of its own; bravo
        // takes it from the thief (who spoke as alpha's node).
        let honest = a.r.clone();
        let stolen = sign_next(&mut a, &test_key("alpha"), officer(66)).expect("thief");
        let (mut sa, mut sb) = sessions(&a, &b);
        exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(b.r.key_log_of(&a.me).map(KeyLog::len), Some(3));
        // Alpha recovers on its honest copy with the pre-committed root, at
        // the thief's position.
        a.r = honest;
        let rotate = Statement::RotateRoot(Root {
            root: PublicKey::ed25519(key_of(&next_of("alpha"))),
            next: KeyDigest::of(&key_of(&test_key("alpha after"))),
        });
        let recovery = sign_next(&mut a, &next_of("alpha"), rotate).expect("recovery");
        let (mut sa, mut sb) = sessions(&a, &b);
        let (_, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(e, None);
        let held = b.r.key_log_of(&a.me).expect("alpha's log at bravo");
        assert_eq!(held.head(), recovery.id(), "the recovery took the position");
        assert_eq!(
            held.superseded().iter().map(|s| s.id()).collect::<Vec<_>>(),
            [stolen.id()]
        );
        assert!(events(&mut sb)
            .iter()
            .any(|e| matches!(e, Event::KeysStored { superseded: 1, .. })));
        // Bravo's answer (the thief's branch, whole) is kept apart at alpha.
        assert!(!key_frames(&ba).is_empty());
        let at_alpha = a.r.key_log_of(&a.me).expect("own");
        assert_eq!(at_alpha.head(), recovery.id());
        assert_eq!(at_alpha.superseded().len(), 1);
    }

    #[test]
    fn two_statements_by_one_root_at_one_position_are_kept_as_a_fork() {
        let (mut a, mut b, _) = synced_pair(1);
        start(&mut a, "alpha");
        let (mut sa, mut sb) = sessions(&a, &b);
        exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        let mut other = a.r.clone();
        let first = sign_next(&mut a, &test_key("alpha"), officer(1)).expect("one");
        std::mem::swap(&mut a.r, &mut other);
        let second = sign_next(&mut a, &test_key("alpha"), officer(2)).expect("two");
        std::mem::swap(&mut a.r, &mut other);
        let (mut sa, mut sb) = sessions(&a, &b);
        exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        let mut a2 = Node { me: a.me, r: other };
        let (mut sa, mut sb) = sessions(&a2, &b);
        exchange((&mut sa, &mut a2.r), (&mut sb, &mut b.r));
        let forks = b.r.key_forks();
        assert_eq!(forks.len(), 1);
        assert_eq!(
            (forks[0].0.id(), forks[0].1.id()),
            (first.id(), second.id())
        );
        assert_eq!(b.r.key_log_of(&a.me).map(KeyLog::head), Some(first.id()));
    }

    #[test]
    fn a_restored_node_writes_no_statement_until_a_peer_shows_its_log() {
        let (mut a, mut b, _) = synced_pair(1);
        start(&mut a, "alpha");
        let backup = a.r.clone();
        let (mut sa, mut sb) = sessions(&a, &b);
        sign_next(&mut a, &test_key("alpha"), officer(3)).expect("after the backup");
        exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        // The backup comes back: its log lacks the certification, and its
        // next statement would take a position bravo holds.
        a.r.restore(backup);
        assert!(a.r.key_log_unconfirmed());
        let refused = sign_next(&mut a, &test_key("alpha"), officer(4));
        assert!(refused.is_err(), "no statement while unconfirmed");
        let (mut sa, mut sb) = sessions(&a, &b);
        let (_, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
        assert_eq!(e, None);
        assert_eq!(
            key_frames(&ba).len(),
            1,
            "bravo sends alpha its own statement"
        );
        assert_eq!(a.r.key_log_of(&a.me).map(KeyLog::len), Some(3));
        assert!(
            !a.r.key_log_unconfirmed(),
            "confirmed once it holds bravo's view"
        );
        sign_next(&mut a, &test_key("alpha"), officer(4)).expect("then it writes on");
    }
}

#[test]
fn a_removed_member_that_found_an_equivocation_is_believed() {
    // Bravo's forked history reached only charlie, since removed from the
    // case: charlie's proof is the only way alpha learns of it. A proof
    // proves itself (both entries signed by bravo, in this case); who
    // carries it matters only to bound the work (SPEC.md §9.11).
    let (mut a, case) = alpha();
    let bravo = test_key("bravo");
    let fork = |a: &Node, text: &str| {
        let body = Body::Note(Note {
            text: text.into(),
            item: None,
        });
        let p =
            a.r.next_payload(bravo.agency(), &case, body, Tlp::Amber, NOW - 500)
                .expect("payload");
        Entry::sign(&bravo, &p)
    };
    let (x, y) = (fork(&a, "one version"), fork(&a, "another"));
    let proof = EquivocationProof::new(&x, &y);
    let charlie = test_key("charlie").agency();
    let removed = Body::MemberRemoved(MemberRemoved {
        agency: charlie,
        reason: Some("left the investigation".into()),
    });
    a.r.write(
        &test_key("alpha"),
        Some(&case),
        removed,
        Tlp::Amber,
        NOW - 400,
    )
    .expect("charlie removed");
    a.r.pin(charlie);
    let mut s = Session::new(a.me, charlie);
    s.handle(
        Message::Hello(Hello {
            versions: SYNC_VERSIONS.to_vec(),
            agency: charlie,
        }),
        &mut a.r,
        NOW,
    )
    .expect("hello");
    s.handle(
        Message::Equivocation(EquivocationNotice { case, proof }),
        &mut a.r,
        NOW,
    )
    .expect("not a protocol error");
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Proof {
                from_peer: true,
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(a.r.proofs_of(&case).len(), 1);
    // A pinned agency that never was a member is still refused unread.
    let mallory = test_key("mallory").agency();
    a.r.pin(mallory);
    let mut m = Session::new(a.me, mallory);
    m.handle(
        Message::Hello(Hello {
            versions: SYNC_VERSIONS.to_vec(),
            agency: mallory,
        }),
        &mut a.r,
        NOW,
    )
    .expect("hello");
    let (x2, y2) = (fork(&a, "third"), fork(&a, "fourth"));
    m.handle(
        Message::Equivocation(EquivocationNotice {
            case,
            proof: EquivocationProof::new(&x2, &y2),
        }),
        &mut a.r,
        NOW,
    )
    .expect("not a protocol error");
    assert!(std::iter::from_fn(|| m.poll_event()).any(|e| matches!(
        e,
        Event::ProofRefused {
            refusal: ProofRefusal::SenderNotMember,
            ..
        }
    )));
}

#[test]
fn bravo_sends_its_key_log_and_is_the_third_fuzz_seed() {
    use custodia_protocol::keylog::{KeyStatement, Profile, Statement, StatementPayload};
    let (mut a, _) = alpha();
    let mut b = node("bravo");
    b.r.pin(a.me);
    let root = test_key("bravo");
    let next = test_key("bravo next root");
    let inception = KeyStatement::sign(
        &root,
        &StatementPayload::inception(&root, &next, NOW - 5_000),
    );
    b.r.add_own_statement(inception).expect("inception");
    let log = b.r.key_log_of(&b.me).expect("log").clone();
    let profile = Statement::Profile(Profile {
        name: "Bundeskriminalamt".into(),
        country: "DE".into(),
    });
    b.r.add_own_statement(KeyStatement::sign(
        &root,
        &StatementPayload::after(&log, NOW - 4_000, profile),
    ))
    .expect("profile");
    let (mut sa, mut sb) = sessions(&a, &b);
    let (_, ba, e) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert_eq!(e, None);
    assert_eq!(a.r.key_log_of(&b.me).map(|l| l.len()), Some(2));
    // Bravo's side carries its key-heads and key-statements: the `session`
    // fuzz target's third seed, so mutations reach the key-log path.
    let seed = ba_after_hello(&ba);
    check_seed("bravo-sends-its-key-log", &seed);
}

/// A node whose store was lost starts again empty, with its key and pins.
/// Its partner sends the case back in its own order, the node's own note
/// last. From the first batch on, the node holds the case but not its own
/// chain: it must be on hold until that arrives (SPEC.md §9.14), or its
/// next entry would take a position it already signed.
#[test]
fn a_node_that_lost_its_store_is_on_hold_until_its_own_chain_is_back() {
    let (mut a, mut b, cases) = synced_pair(1);
    let case = cases[0];
    for i in 0..600 {
        note(&mut a, "alpha", &case, &format!("observation {i}"));
    }
    note(&mut b, "bravo", &case, "the phone was sealed in bag A-1");
    let (mut sa, mut sb) = sessions(&a, &b);
    let (_, _, err) = exchange((&mut sa, &mut a.r), (&mut sb, &mut b.r));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(a.r.case(&case).map(|v| v.next_seq(&b.me)), Some(1));

    b.r.lose();
    assert!(b.r.case(&case).is_none());
    let (mut sa, mut sb) = sessions(&a, &b);
    // One message at a time, to look at bravo after each.
    let mut window = 0;
    for _ in 0..10_000 {
        let mut moved = false;
        if let Some(m) = sa.poll_transmit() {
            let m = Message::decode(&m.to_frame()[4..]).expect("a frame decodes");
            sb.handle(m, &mut b.r, NOW).expect("bravo takes it");
            moved = true;
            if b.r.case(&case).is_some_and(|v| v.next_seq(&b.me) == 0) {
                window += 1;
                assert!(
                    !b.r.may_write(&case),
                    "bravo holds the case without its own note and may write"
                );
            }
        }
        if let Some(m) = sb.poll_transmit() {
            let m = Message::decode(&m.to_frame()[4..]).expect("a frame decodes");
            sa.handle(m, &mut a.r, NOW).expect("alpha takes it");
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(
        window > 0,
        "the case arrived in several batches, bravo's note not in the first"
    );
    assert_eq!(b.r.case(&case).map(|v| v.next_seq(&b.me)), Some(1));
    assert!(
        b.r.may_write(&case),
        "the hold ends once bravo's own note is back"
    );
}
