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
    // The transcript: hello both ways first, then alpha's heads, bravo's
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
                _ => "other",
            })
            .collect()
    };
    assert_eq!(kinds(&ab), ["hello", "heads", "entries"]);
    assert_eq!(kinds(&ba), ["hello", "heads", "ack"]);
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
