//! Federation end to end: several real nodes on 127.0.0.1, real QUIC with
//! pinned mutual TLS, real SQLite store files. Every test is bounded in time.

use std::time::Duration;

use custodia_node::Draft;
use custodia_protocol::{
    Body, Entry, Identity, MemberAdded, Message, Note, Payload, Role, SyncItem, Tlp,
};
use custodia_tests::{eventually, link, note, open_shared, raw_client, Agency};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agencies_receive_the_case_byte_identical() {
    let (a, b, c) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("charlie", "FR"),
    );
    link(&a, &b);
    link(&a, &c);
    let case = open_shared(&a, &[(&b, Role::Investigator), (&c, Role::Liaison)]);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    let rc = custodia_node::start(&c.dir).await.expect("c");
    // A's three entries reach both.
    let want = a.case_bytes(&case);
    assert_eq!(want.len(), 3);
    assert!(
        eventually(WAIT, || {
            let (bb, cb) = (b.case_bytes(&case), c.case_bytes(&case));
            want.iter().all(|e| bb.contains(e) && cb.contains(e))
        })
        .await,
        "the case reached both partners"
    );
    // Byte-identical: every entry A wrote is stored verbatim at B and C,
    // and each node's store verifies.
    for x in [&b, &c] {
        let got = x.case_bytes(&case);
        for e in &want {
            assert!(got.contains(e));
        }
        assert!(x.local().store().check().expect("check").is_empty());
    }
    // B writes; A and C get it.
    let from_b = b
        .local()
        .write(&case, note("seen at bravo"))
        .expect("b writes");
    assert!(
        eventually(WAIT, || {
            a.case_bytes(&case).contains(&from_b.bytes().to_vec())
                && c.case_bytes(&case).contains(&from_b.bytes().to_vec())
        })
        .await,
        "bravo's entry reached alpha and charlie"
    );
    for r in [ra, rb, rc] {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liaison_relays_between_agencies_with_no_link() {
    let (a, b, c) = (
        Agency::new("alpha", "PH"),
        Agency::new("liaison", "FR"),
        Agency::new("charlie", "DE"),
    );
    // A—B—C: A and C never talk.
    link(&a, &b);
    link(&b, &c);
    let case = open_shared(&a, &[(&b, Role::Liaison), (&c, Role::Investigator)]);
    let first = a.local().write(&case, note("from alpha")).expect("note");
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    let rc = custodia_node::start(&c.dir).await.expect("c");
    assert!(
        eventually(WAIT, || c
            .case_bytes(&case)
            .contains(&first.bytes().to_vec()))
        .await,
        "charlie received alpha's entries through the liaison"
    );
    // C verified them: its store holds the case state with alpha as lead.
    let lc = c.local();
    let state = lc.store().state(&case).expect("case at charlie");
    assert_eq!(state.members[&a.id].role, Role::Lead);
    assert!(lc.store().check().expect("check").is_empty());
    assert!(!rc.connected().contains(&a.id), "no direct link A–C");
    // And back: C's entry reaches A through B.
    let back = c.local().write(&case, note("from charlie")).expect("c");
    assert!(
        eventually(WAIT, || a
            .case_bytes(&case)
            .contains(&back.bytes().to_vec()))
        .await,
        "alpha received charlie's entry through the liaison"
    );
    for r in [ra, rb, rc] {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_non_member_receives_nothing_of_the_case() {
    let (a, b, d) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("delta", "NL"),
    );
    link(&a, &b);
    link(&a, &d);
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    a.local().write(&case, note("confidential")).expect("note");
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    let rd = custodia_node::start(&d.dir).await.expect("d");
    assert!(eventually(WAIT, || b.case_count(&case) >= 4).await);
    // D is connected to A (hello exchanged) but got no case bytes at all.
    assert!(
        eventually(WAIT, || rd.peer_stats(&a.id).frames >= 1).await,
        "delta and alpha did connect"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = rd.peer_stats(&a.id);
    assert_eq!(
        stats.case_bytes, 0,
        "no heads, entries or proofs: {stats:?}"
    );
    assert_eq!(stats.items, 0);
    assert_eq!(d.count(), 0, "delta's store is empty");
    for r in [ra, rb, rd] {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_entries_travel_as_withheld_positions() {
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    link(&a, &b);
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    let mut l = a.local();
    let mut red = note("victim's name and address");
    red.tlp = Tlp::Red;
    red.to = Some(vec![a.id]);
    let secret = l.write(&case, red).expect("red");
    let after = l.write(&case, note("next")).expect("after");
    drop(l);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    assert!(
        eventually(WAIT, || b
            .case_bytes(&case)
            .contains(&after.bytes().to_vec()))
        .await
    );
    let lb = b.local();
    let state = lb.store().state(&case).expect("case");
    assert_eq!(state.withheld.len(), 1);
    assert_eq!(state.withheld[0].id, secret.id());
    assert!(!b.case_bytes(&case).contains(&secret.bytes().to_vec()));
    assert!(lb.store().check().expect("check").is_empty());
    ra.shutdown().await;
    rb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_at_three_nodes_converge() {
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
    // Each writes 30 notes, interleaved, while syncing.
    for i in 0..30 {
        for x in [&a, &b, &c] {
            x.local()
                .write(&case, note(&format!("{} {i}", x.name)))
                .expect("write");
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let same = |x: &Agency, y: &Agency| {
        let (mut p, mut q) = (x.case_bytes(&case), y.case_bytes(&case));
        p.sort();
        q.sort();
        p == q
    };
    let converged = eventually(Duration::from_secs(30), || same(&a, &b) && same(&b, &c)).await;
    if !converged {
        for x in [&a, &b, &c] {
            let l = x.local();
            let v = l.store().case(&case).expect("case");
            let heads: Vec<String> = v
                .state()
                .heads
                .iter()
                .map(|(k, (s, _))| format!("{}:{s}", &k.to_hex()[..4]))
                .collect();
            eprintln!(
                "{} heads {heads:?} damaged {:?}",
                x.name,
                l.store().damaged()
            );
            let mine = x.case_bytes(&case);
            let other = a.case_bytes(&case);
            let extra: Vec<String> = mine
                .iter()
                .filter(|e| !other.contains(e))
                .map(|e| {
                    let d = Entry::decode(e).expect("decode");
                    format!(
                        "{}:{} {}",
                        &d.author().to_hex()[..4],
                        d.seq(),
                        d.payload().body.kind()
                    )
                })
                .collect();
            eprintln!("  {} rows; not at alpha: {extra:?}", mine.len());
        }
    }
    assert!(
        converged,
        "all three converge to the same set: {} {} {}",
        a.case_count(&case),
        b.case_count(&case),
        c.case_count(&case)
    );
    assert!(a.case_count(&case) >= 93);
    for x in [&a, &b, &c] {
        assert!(x.local().store().check().expect("check").is_empty());
    }
    for r in [ra, rb, rc] {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocation_is_detected_and_the_proof_reaches_the_third_node() {
    let (a, b, c) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("charlie", "FR"),
    );
    // A—B—C; the equivocating author M runs no node: its two forks are
    // handed to A and B separately.
    link(&a, &b);
    link(&b, &c);
    let mallory = Identity::from_seed([77; 32]);
    let mut la = a.local();
    let case = la
        .open_case("Operation Fork", "F-1", None, Tlp::Amber)
        .expect("open")
        .id();
    for (who, role) in [(&b, Role::Investigator), (&c, Role::Liaison)] {
        la.share(&case, &who.id.to_hex(), role).expect("share");
    }
    let add_m = la
        .write(
            &case,
            Draft::new(
                Tlp::Amber,
                Body::MemberAdded(MemberAdded {
                    agency: mallory.agency(),
                    name: "Mallory".into(),
                    country: "ZZ".into(),
                    role: Role::Investigator,
                }),
            ),
        )
        .expect("add mallory");
    drop(la);
    let fork = |text: &str| {
        Entry::sign(
            &mallory,
            &Payload {
                v: 1,
                keys: None,
                case: Some(case),
                author: mallory.agency(),
                seq: 0,
                prev: None,
                refs: vec![add_m.id()],
                time: custodia_node::now_ms(),
                tlp: Tlp::Amber,
                to: None,
                body: Body::Note(Note {
                    text: text.into(),
                    item: None,
                }),
            },
        )
    };
    let (m1, m2) = (
        fork("the phone was sealed"),
        fork("the phone was never seized"),
    );
    // A holds the whole case plus fork 1; B gets the case and fork 2.
    let all: Vec<SyncItem> = a
        .case_bytes(&case)
        .into_iter()
        .map(SyncItem::Entry)
        .collect();
    let now = custodia_node::now_ms();
    a.store()
        .receive(&case, vec![SyncItem::Entry(m1.bytes().to_vec())], now)
        .expect("a gets fork 1");
    let mut items = all;
    items.push(SyncItem::Entry(m2.bytes().to_vec()));
    let out = b.store().receive(&case, items, now).expect("b gets fork 2");
    assert!(out.refused.is_empty(), "{:?}", out.refused);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    let rc = custodia_node::start(&c.dir).await.expect("c");
    let proofs = |x: &Agency| x.local().store().proofs(&case).expect("proofs");
    assert!(
        eventually(WAIT, || {
            !proofs(&a).is_empty() && !proofs(&b).is_empty() && !proofs(&c).is_empty()
        })
        .await,
        "the equivocation was detected and the proof reached all three nodes"
    );
    let eq = proofs(&c)[0].check().expect("the proof checks on its own");
    assert_eq!((eq.author, eq.seq, eq.case), (mallory.agency(), 0, case));
    for r in [ra, rb, rc] {
        r.shutdown().await;
    }
}

/// A pinned peer that misbehaves on the wire (garbage, an oversize frame,
/// a wrong protocol version) is disconnected with the defined error code,
/// while the node keeps replicating with its honest peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_peer_is_disconnected_and_others_are_served() {
    let (a, b, m) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("mallory", "ZZ"),
    );
    link(&a, &b);
    a.pin(&m, "ZZ");
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let rb = custodia_node::start(&b.dir).await.expect("b");
    assert!(eventually(WAIT, || b.case_count(&case) >= 2).await);

    let endpoint = raw_client(&m, &a);

    let garbage = b"\x00\x00\x00\x05\xff\xff\xff\xff\xff".to_vec();
    let oversize = (custodia_protocol::MAX_FRAME as u32 + 1)
        .to_be_bytes()
        .to_vec();
    let wrong_version = Message::Hello(custodia_protocol::Hello {
        versions: vec![99],
        agency: m.id,
    })
    .to_frame();
    for (what, frame, code) in [
        ("garbage", garbage, 2u64),
        ("oversize", oversize, 3),
        ("wrong version", wrong_version, 1),
    ] {
        let conn = endpoint
            .connect(a.addr, custodia_node::SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake with a pinned key");
        let (mut send, _recv) = conn.open_bi().await.expect("stream");
        send.write_all(&frame).await.expect("write");
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .unwrap_or_else(|_| panic!("{what}: the node did not close the connection"));
        match closed {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(c.error_code.into_inner(), code, "{what}: error code")
            }
            other => panic!("{what}: closed with {other:?}"),
        }
        // Meanwhile the honest peer is still served.
        let e = a.local().write(&case, note(what)).expect("write");
        assert!(
            eventually(WAIT, || b.case_bytes(&case).contains(&e.bytes().to_vec())).await,
            "{what}: bravo still receives alpha's entries"
        );
    }
    assert_eq!(
        m.count(),
        0,
        "nothing was written into the misbehaving peer's store"
    );
    ra.shutdown().await;
    rb.shutdown().await;
}

/// An agency whose key is not pinned is refused at the handshake and gets
/// nothing; it never appears as a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_agency_is_refused_at_the_handshake() {
    let (a, stranger) = (Agency::new("alpha", "PH"), Agency::new("stranger", "ZZ"));
    let _case = open_shared(&a, &[]);
    let ra = custodia_node::start(&a.dir).await.expect("a");
    let endpoint = raw_client(&stranger, &a);
    // With TLS 1.3 the client's side of the handshake may complete before
    // the server's verdict: look at the whole exchange.
    let outcome = async {
        let conn = endpoint
            .connect(a.addr, custodia_node::SERVER_NAME)
            .ok()?
            .await
            .ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(
            &Message::Hello(custodia_protocol::Hello {
                versions: vec![1],
                agency: stranger.id,
            })
            .to_frame(),
        )
        .await
        .ok()?;
        let mut buf = [0u8; 4];
        recv.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    let got = tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .expect("bounded");
    assert_eq!(got, None, "the stranger read nothing");
    assert!(ra.connected().is_empty());
    assert_eq!(ra.peer_stats(&stranger.id).frames, 0);
    ra.shutdown().await;
}

/// Several received batches stored in one call, as the daemon's group
/// commit does: each batch sees the ones before it (the second depends on
/// the first), each gets its own outcome, and an unsigned marker counts
/// only from an agency that is a member by the time its batch starts.
#[test]
fn a_group_of_batches_is_stored_in_order_each_with_its_outcome() {
    use custodia_protocol::{EntryId, WithheldPosition};
    let (a, b, stranger) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("stranger", "ZZ"),
    );
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    {
        let mut l = a.local();
        for i in 0..10 {
            l.write(&case, note(&format!("observation {i}")))
                .expect("write");
        }
    }
    let all = a.case_bytes(&case);
    let n = all.len();
    let entries = |bytes: &[Vec<u8>]| {
        custodia_node::check_items(bytes.iter().cloned().map(SyncItem::Entry).collect())
    };
    let marker = || {
        custodia_node::check_items(vec![SyncItem::Withheld(WithheldPosition {
            author: a.id,
            seq: 1_000,
            id: EntryId([7; 32]),
        })])
    };
    let now = custodia_node::now_ms();
    let mut store = b.store();
    let outs = store
        .receive_checked(
            vec![
                (case, entries(&all[..3])),
                (case, entries(&all[3..])),
                (case, marker()),
            ],
            Some(stranger.id),
            now,
        )
        .expect("the group is stored");
    assert_eq!(outs.len(), 3, "one outcome per batch");
    assert_eq!(outs[0].stored.len(), 3, "{:?}", outs[0].refused);
    assert_eq!(outs[1].stored.len(), n - 3, "{:?}", outs[1].refused);
    assert_eq!(
        (outs[2].ignored, outs[2].stored.len(), outs[2].refused.len()),
        (1, 0, 0),
        "a non-member's marker is ignored"
    );
    assert_eq!(b.case_count(&case), n as u64, "every entry is on disk");
    // From a member the same marker is judged by the rules (a gap: V11).
    let outs = store
        .receive_checked(vec![(case, marker())], Some(a.id), now)
        .expect("stored");
    assert_eq!((outs[0].ignored, outs[0].refused.len()), (0, 1));
}
