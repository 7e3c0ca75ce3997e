//! Unit tests of the validation rules and the case-state derivation, built
//! with the crate's own signing (the spec's vectors test the same rules from
//! independently produced bytes).

use custodia_protocol::*;
use proptest::prelude::*;

const T0: u64 = 1_795_000_000_000;

struct Agency {
    id: Identity,
    seq: u64,
    prev: Option<EntryId>,
}

impl Agency {
    fn new(n: u8) -> Self {
        Agency {
            id: Identity::from_seed([n; 32]),
            seq: 0,
            prev: None,
        }
    }
    fn key(&self) -> AgencyId {
        self.id.agency()
    }
    fn open(&mut self) -> Entry {
        let p = Payload::genesis(
            self.key(),
            T0,
            Tlp::Amber,
            CaseOpened {
                title: "Operation Lantern".into(),
                reference: "NBI-2026-0042".into(),
                jurisdiction: Some("PH".into()),
                name: "Alpha Unit".into(),
                country: "PH".into(),
            },
        );
        self.write(p)
    }
    fn payload(&self, case: CaseId, refs: Vec<EntryId>, body: Body) -> Payload {
        let mut refs = refs;
        refs.sort();
        Payload {
            v: 1,
            keys: None,
            case: Some(case),
            author: self.key(),
            seq: self.seq,
            prev: self.prev,
            refs,
            time: T0 + 1000 * self.seq,
            tlp: Tlp::Amber,
            to: None,
            body,
        }
    }
    fn write(&mut self, p: Payload) -> Entry {
        let e = Entry::sign(&self.id, &p);
        self.seq += 1;
        self.prev = Some(e.id());
        e
    }
    fn say(&mut self, case: CaseId, refs: Vec<EntryId>, body: Body) -> Entry {
        let p = self.payload(case, refs, body);
        self.write(p)
    }
}

fn add(agency: &Agency, role: Role) -> Body {
    Body::MemberAdded(MemberAdded {
        agency: agency.key(),
        name: format!("Agency {}", agency.key().fingerprint()),
        country: "DE".into(),
        role,
    })
}

fn register(item: ItemId) -> Body {
    Body::EvidenceRegistered(EvidenceRegistered {
        item,
        exhibit: Some("EX-1".into()),
        digests: Digests {
            sha256: [9; 32],
            sha1: None,
            md5: None,
        },
        size: 1024,
        media_type: "image/jpeg".into(),
        description: None,
        acquired: Acquisition {
            by: "J. Cruz".into(),
            at: T0,
            place: None,
            method: None,
            tool: None,
        },
        authority: Some("W-2026-17".into()),
        derived_from: None,
    })
}

fn custody(item: ItemId, action: CustodyAction) -> CustodyEvent {
    CustodyEvent::new(item, action)
}

/// Alpha opens a case and adds bravo (investigator) and charlie (observer).
fn case3() -> (Validator, Agency, Agency, Agency, Vec<Entry>) {
    let (mut a, mut b, c) = (Agency::new(1), Agency::new(2), Agency::new(3));
    let mut v = Validator::new();
    let g = a.open();
    let case = g.id();
    let add_b = a.say(case, vec![], add(&b, Role::Investigator));
    let add_c = a.say(case, vec![], add(&c, Role::Observer));
    for e in [&g, &add_b, &add_c] {
        v.apply(e, T0).expect("valid");
    }
    let hello = b.say(
        case,
        vec![add_b.id()],
        Body::Note(Note {
            text: "hello".into(),
            item: None,
        }),
    );
    v.apply(&hello, T0).expect("bravo's first entry");
    (v, a, b, c, vec![g, add_b, add_c, hello])
}

fn class(r: Result<Applied, Rejection>) -> &'static str {
    match r {
        Ok(_) => "valid",
        Err(e) => e.class(),
    }
}

#[test]
fn duplicate_is_a_no_op_and_genesis_sets_case() {
    let (mut v, _, _, _, es) = case3();
    assert_eq!(v.apply(&es[1], T0), Ok(Applied::Duplicate));
    assert_eq!(v.apply(&es[0], T0), Ok(Applied::Duplicate));
    assert_eq!(v.case(), Some(es[0].id()));
    assert_eq!(v.state().members.len(), 3);
    assert_eq!(v.state().members[&es[0].author()].role, Role::Lead);
}

#[test]
fn second_genesis_and_foreign_case_are_wrong_case() {
    let (mut v, _, mut b, _, _) = case3();
    let mut other = Agency::new(9);
    let g2 = other.open();
    assert_eq!(class(v.apply(&g2, T0)), "wrong-case");
    let foreign = b.say(
        g2.id(),
        vec![],
        Body::Note(Note {
            text: "x".into(),
            item: None,
        }),
    );
    assert_eq!(class(v.apply(&foreign, T0)), "wrong-case");
}

#[test]
fn non_member_and_removed_member() {
    let (mut v, mut a, mut b, _, es) = case3();
    let case = es[0].id();
    let mut d = Agency::new(4);
    let e = d.say(
        case,
        vec![],
        Body::Note(Note {
            text: "let me in".into(),
            item: None,
        }),
    );
    assert_eq!(class(v.apply(&e, T0)), "not-a-member");
    // Alpha removes bravo after seeing bravo's note; bravo's next entry,
    // which has seen the removal, is refused.
    let rm = a.say(
        case,
        vec![es[3].id()],
        Body::MemberRemoved(MemberRemoved {
            agency: b.key(),
            reason: None,
        }),
    );
    v.apply(&rm, T0).expect("removal");
    let after = b.say(
        case,
        vec![rm.id()],
        Body::Note(Note {
            text: "still here".into(),
            item: None,
        }),
    );
    assert_eq!(class(v.apply(&after, T0)), "not-a-member");
}

#[test]
fn concurrent_removal_does_not_invalidate_what_was_written_before_it() {
    // Bravo writes without having seen its removal: valid on every node,
    // whatever the arrival order (the rule is evaluated on the causal past).
    let (v0, mut a, mut b, _, es) = case3();
    let case = es[0].id();
    let rm = a.say(
        case,
        vec![es[3].id()],
        Body::MemberRemoved(MemberRemoved {
            agency: b.key(),
            reason: None,
        }),
    );
    let concurrent = b.say(
        case,
        vec![],
        Body::Note(Note {
            text: "concurrent".into(),
            item: None,
        }),
    );
    let mut v1 = v0.clone();
    v1.apply(&rm, T0).expect("rm");
    v1.apply(&concurrent, T0).expect("concurrent after rm");
    let mut v2 = v0;
    v2.apply(&concurrent, T0).expect("concurrent first");
    v2.apply(&rm, T0).expect("rm second");
    assert_eq!(v1.state().members, v2.state().members);
}

#[test]
fn roles_are_enforced() {
    let (mut v, _, mut b, mut c, es) = case3();
    let case = es[0].id();
    let d = Agency::new(4);
    let by_investigator = b.say(case, vec![], add(&d, Role::Examiner));
    assert_eq!(class(v.apply(&by_investigator, T0)), "not-authorized");
    let by_observer = c.say(case, vec![es[2].id()], register(ItemId([1; 16])));
    assert_eq!(class(v.apply(&by_observer, T0)), "not-authorized");
}

#[test]
fn retraction_of_another_authors_entry_is_refused() {
    let (mut v, _, mut b, _, es) = case3();
    let case = es[0].id();
    let bad = b.say(
        case,
        vec![],
        Body::Retracted(Retracted {
            entry: es[1].id(),
            reason: "no".into(),
        }),
    );
    assert_eq!(class(v.apply(&bad, T0)), "not-authorized");
}

#[test]
fn custody_transfer_receipt_and_holder() {
    let (mut v, mut a, mut b, _, es) = case3();
    let case = es[0].id();
    let item = ItemId::new_v4([5; 16]);
    let reg = a.say(case, vec![es[3].id()], register(item));
    v.apply(&reg, T0).expect("register");
    assert_eq!(v.state().items[&item].holder, a.key());

    // Bravo is not the holder: cannot transfer or examine.
    let mut t = custody(item, CustodyAction::Transferred);
    t.to = Some(a.key());
    let by_b = b.say(case, vec![reg.id()], Body::Custody(t));
    assert_eq!(class(v.apply(&by_b, T0)), "custody-violation");
    b.seq -= 1;
    b.prev = Some(es[3].id());

    let mut t = custody(item, CustodyAction::Transferred);
    t.to = Some(b.key());
    let transfer = a.say(case, vec![], Body::Custody(t));
    v.apply(&transfer, T0).expect("transfer");
    assert_eq!(v.state().open_transfers.len(), 1);

    // In transit: the sender may not record further events.
    let examine = a.say(
        case,
        vec![],
        Body::Custody(custody(item, CustodyAction::Examined)),
    );
    assert_eq!(class(v.apply(&examine, T0)), "custody-violation");
    a.seq -= 1;
    a.prev = Some(transfer.id());

    let mut r = custody(item, CustodyAction::Received);
    r.transfer = Some(transfer.id());
    r.accepted = Some(true);
    let receipt = b.say(case, vec![transfer.id()], Body::Custody(r));
    v.apply(&receipt, T0).expect("receipt");
    let state = v.state();
    assert_eq!(state.items[&item].holder, b.key());
    assert!(state.open_transfers.is_empty());
    assert_eq!(state.items[&item].events.len(), 2);
}

#[test]
fn receipt_must_be_addressed_to_the_author_and_in_its_causal_past() {
    let (mut v, mut a, mut b, mut c, es) = case3();
    let case = es[0].id();
    let item = ItemId::new_v4([6; 16]);
    let reg = a.say(case, vec![], register(item));
    v.apply(&reg, T0).expect("register");
    let mut t = custody(item, CustodyAction::Transferred);
    t.to = Some(b.key());
    let transfer = a.say(case, vec![], Body::Custody(t));
    v.apply(&transfer, T0).expect("transfer");
    let mut r = custody(item, CustodyAction::Received);
    r.transfer = Some(transfer.id());
    r.accepted = Some(true);
    // Charlie is an observer (not-authorized), so use bravo without the ref
    // first: the transfer is not in its causal past.
    let no_ref = b.say(case, vec![], Body::Custody(r.clone()));
    assert_eq!(class(v.apply(&no_ref, T0)), "custody-violation");
    let by_c = c.say(
        case,
        vec![transfer.id()],
        Body::Note(Note {
            text: "seen".into(),
            item: Some(item),
        }),
    );
    v.apply(&by_c, T0).expect("observer note");
}

#[test]
fn digest_mismatch_and_duplicate_digest_are_conflicts() {
    let (mut v, mut a, _, _, es) = case3();
    let case = es[0].id();
    let (i1, i2) = (ItemId::new_v4([1; 16]), ItemId::new_v4([2; 16]));
    v.apply(&a.say(case, vec![], register(i1)), T0).expect("i1");
    v.apply(&a.say(case, vec![], register(i2)), T0)
        .expect("i2 same digest");
    let mut ev = custody(i1, CustodyAction::Examined);
    ev.digest_matched = Some(false);
    v.apply(&a.say(case, vec![], Body::Custody(ev)), T0)
        .expect("examined");
    let kinds: Vec<_> = v
        .state()
        .conflicts
        .iter()
        .map(|c| matches!(c, Conflict::DuplicateDigest { .. }))
        .collect();
    assert_eq!(kinds, vec![true, false]);
}

#[test]
fn destroyed_item_takes_no_more_events() {
    let (mut v, mut a, _, _, es) = case3();
    let case = es[0].id();
    let item = ItemId::new_v4([3; 16]);
    v.apply(&a.say(case, vec![], register(item)), T0)
        .expect("reg");
    v.apply(
        &a.say(
            case,
            vec![],
            Body::Custody(custody(item, CustodyAction::Destroyed)),
        ),
        T0,
    )
    .expect("destroyed");
    let e = a.say(
        case,
        vec![],
        Body::Custody(custody(item, CustodyAction::Examined)),
    );
    assert_eq!(class(v.apply(&e, T0)), "custody-violation");
}

#[test]
fn equivocation_yields_a_checkable_proof() {
    let (mut v, mut a, _, _, es) = case3();
    let case = es[0].id();
    let one = a.say(
        case,
        vec![],
        Body::Note(Note {
            text: "one".into(),
            item: None,
        }),
    );
    a.seq -= 1;
    a.prev = Some(es[2].id());
    let two = a.say(
        case,
        vec![],
        Body::Note(Note {
            text: "two".into(),
            item: None,
        }),
    );
    v.apply(&one, T0).expect("first");
    let err = v.apply(&two, T0).expect_err("equivocation");
    let RejectKind::Equivocation {
        proof: Some(proof), ..
    } = err.kind
    else {
        panic!("{err}")
    };
    let eq = proof.check().expect("proof checks");
    assert_eq!((eq.author, eq.seq, eq.case), (a.key(), 3, case));
    let bytes = proof.to_bytes();
    assert_eq!(
        EquivocationProof::from_bytes(&bytes)
            .expect("decode")
            .check(),
        Ok(eq)
    );
    assert!(matches!(
        v.state().conflicts[0],
        Conflict::Equivocation { .. }
    ));
    // The same entry twice is no proof.
    assert!(
        EquivocationProof(one.bytes().to_vec(), one.bytes().to_vec())
            .check()
            .is_err()
    );
}

#[test]
fn sequence_prev_refs_and_time() {
    let (v0, a, b, _, es) = case3();
    let case = es[0].id();
    let mut p = a.payload(
        case,
        vec![],
        Body::Note(Note {
            text: "gap".into(),
            item: None,
        }),
    );
    p.seq += 1;
    p.prev = Some(es[2].id());
    assert_eq!(
        class(v0.clone().apply(&Entry::sign(&a.id, &p), T0)),
        "sequence-gap"
    );
    let mut p = a.payload(
        case,
        vec![],
        Body::Note(Note {
            text: "prev".into(),
            item: None,
        }),
    );
    p.prev = Some(es[1].id());
    assert_eq!(
        class(v0.clone().apply(&Entry::sign(&a.id, &p), T0)),
        "prev-mismatch"
    );
    let p = a.payload(
        case,
        vec![EntryId([7; 32])],
        Body::Note(Note {
            text: "r".into(),
            item: None,
        }),
    );
    assert_eq!(
        class(v0.clone().apply(&Entry::sign(&a.id, &p), T0)),
        "unknown-reference"
    );
    let p = a.payload(
        case,
        vec![es[1].id()],
        Body::Note(Note {
            text: "own".into(),
            item: None,
        }),
    );
    assert_eq!(
        class(v0.clone().apply(&Entry::sign(&a.id, &p), T0)),
        "unknown-reference"
    );
    let mut p = b.payload(
        case,
        vec![],
        Body::Note(Note {
            text: "early".into(),
            item: None,
        }),
    );
    p.time = T0 - SKEW_MS - 10_000;
    assert_eq!(
        class(v0.clone().apply(&Entry::sign(&b.id, &p), T0)),
        "time-violation"
    );
    let mut p = b.payload(
        case,
        vec![],
        Body::Note(Note {
            text: "late".into(),
            item: None,
        }),
    );
    p.time = T0 + SKEW_MS + 1;
    assert_eq!(
        class(v0.clone().apply(&Entry::sign(&b.id, &p), T0)),
        "from-the-future"
    );
    assert_eq!(
        class(v0.clone().apply(&Entry::sign(&b.id, &p), T0 + 2)),
        "valid"
    );
}

#[test]
fn withheld_positions_keep_the_chain_verifiable() {
    let (mut a, b) = (Agency::new(1), Agency::new(2));
    let g = a.open();
    let case = g.id();
    let add_b = a.say(case, vec![], add(&b, Role::Investigator));
    let mut p = a.payload(
        case,
        vec![],
        Body::Note(Note {
            text: "victim's name".into(),
            item: None,
        }),
    );
    p.tlp = Tlp::Red;
    p.to = Some(vec![a.key()]);
    let red = a.write(p);
    assert!(!red.visible_to(&b.key()));
    assert!(red.visible_to(&a.key()));
    let after = a.say(
        case,
        vec![],
        Body::Note(Note {
            text: "next".into(),
            item: None,
        }),
    );

    let mut v = Validator::new();
    v.apply(&g, T0).expect("g");
    v.apply(&add_b, T0).expect("add");
    v.apply_withheld(WithheldPosition {
        author: a.key(),
        seq: 2,
        id: red.id(),
    })
    .expect("withheld");
    v.apply(&after, T0)
        .expect("chain continues through the withheld position");
    assert_eq!(v.state().withheld.len(), 1);
    assert_eq!(v.state().withheld[0].seq, 2);
    // The real entry, shown later, reveals the position.
    assert_eq!(v.apply(&red, T0), Ok(Applied::Revealed));
    assert!(v.state().withheld.is_empty());
    // A withheld marker contradicting a known id is refused.
    let bogus = WithheldPosition {
        author: a.key(),
        seq: 2,
        id: EntryId([1; 32]),
    };
    assert_eq!(
        v.apply_withheld(bogus).map_err(|e| e.class()),
        Err("equivocation")
    );
}

#[test]
fn decode_rejects_garbage_classes() {
    let mut a = Agency::new(1);
    let g = a.open();
    let bytes = g.bytes().to_vec();
    assert_eq!(
        Entry::decode(&[]).expect_err("refused").class(),
        "malformed"
    );
    assert_eq!(
        Entry::decode(&bytes[1..]).expect_err("refused").class(),
        "malformed"
    );
    assert_eq!(
        Entry::decode(&bytes[..bytes.len() - 1])
            .expect_err("refused")
            .class(),
        "malformed"
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Entry::decode(&trailing).expect_err("refused").class(),
        "malformed"
    );
    let big = vec![0xD2; MAX_ENTRY_SIZE + 1];
    assert_eq!(
        Entry::decode(&big).expect_err("refused").class(),
        "oversize"
    );
    let mut sig = bytes.clone();
    let n = sig.len();
    sig[n - 1] ^= 1;
    assert_eq!(
        Entry::decode(&sig).expect_err("refused").class(),
        "bad-signature"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// decode ∘ encode is the identity, for arbitrary field contents.
    #[test]
    fn decode_encode_round_trip(title in ".{0,200}", seq in 1u64..u64::MAX / 2, time in 0u64..u64::MAX / 2,
                                refs in proptest::collection::btree_set(any::<[u8; 32]>(), 0..8),
                                sha1 in proptest::option::of(any::<[u8; 20]>())) {
        let a = Identity::from_seed([1; 32]);
        let p = Payload {
            v: 1, case: Some(EntryId([3; 32])), author: a.agency(), seq, prev: Some(EntryId([4; 32])),
            keys: None,
            refs: refs.into_iter().map(EntryId).collect(), time, tlp: Tlp::Green, to: None,
            body: Body::Note(Note { text: title, item: None }),
        };
        let mut p2 = p.clone();
        p2.body = Body::EvidenceRegistered(EvidenceRegistered {
            item: ItemId([1; 16]), exhibit: None,
            digests: Digests { sha256: [2; 32], sha1, md5: None }, size: seq, media_type: "x/y".into(),
            description: None, acquired: Acquisition { by: "x".into(), at: time, place: None, method: None, tool: None },
            authority: None, derived_from: None,
        });
        for p in [p, p2] {
            let e = Entry::sign(&a, &p);
            let d = Entry::decode(e.bytes()).expect("decodes");
            prop_assert_eq!(d.payload(), &p);
            prop_assert_eq!(d.id(), e.id());
            prop_assert_eq!(d.bytes(), e.bytes());
        }
    }

    /// Flipping any single byte of a valid entry makes it fail decoding.
    #[test]
    fn any_flipped_byte_is_refused(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut a = Agency::new(1);
        let g = a.open();
        let mut bytes = g.bytes().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(Entry::decode(&bytes).is_err());
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Entry::decode(&bytes);
        let mut tagged = vec![0xD2];
        tagged.extend_from_slice(&bytes);
        let _ = Entry::decode(&tagged);
    }
}
