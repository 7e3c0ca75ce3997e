//! Entries of format version 2 (SPEC.md §5, §8.2 V19 to V24): signed by
//! the officer or node key that acted, checked against the prefix of the
//! author's key log each entry cites. Most tests are what a thief of a
//! key, a careless operator or a hostile peer tries.

use std::collections::BTreeMap;

use custodia_protocol::bundle::{self, Bundle, Element};
use custodia_protocol::keylog::{KeyLog, KeyRole, RevokeReason};
use custodia_protocol::*;

const T0: u64 = 1_795_000_000_000;
const MINUTE: u64 = 60_000;

use common::{id, Agency};

mod common;

fn logs(agencies: &[&Agency]) -> BTreeMap<AgencyId, KeyLog> {
    agencies
        .iter()
        .map(|a| (a.agency(), a.log.clone()))
        .collect()
}

fn opened() -> CaseOpened {
    CaseOpened {
        title: "Operation Lantern".into(),
        reference: "NBI-2026-0042".into(),
        jurisdiction: Some("PH".into()),
        name: "NBI Cybercrime Division".into(),
        country: "PH".into(),
    }
}

fn genesis(author: &Agency, officer: &Identity, keys: u64) -> Entry {
    let p = Payload::genesis_v2(author.agency(), keys, T0, Tlp::Amber, opened());
    Entry::sign(officer, &p)
}

/// The payload of `author`'s next entry in the case of `v`, made under
/// `keys` statements of its log, dated `dt` after T0.
fn next(v: &Validator, author: AgencyId, keys: u64, dt: u64, body: Body) -> Payload {
    let seq = v.next_seq(&author);
    let mut refs: Vec<EntryId> = v
        .state()
        .heads
        .iter()
        .filter(|(a, _)| **a != author)
        .map(|(_, (_, id))| *id)
        .collect();
    refs.sort();
    Payload {
        v: FORMAT_VERSION_2,
        keys: Some(keys),
        case: v.case(),
        author,
        seq,
        prev: seq.checked_sub(1).and_then(|s| v.at(&author, s)),
        refs,
        time: T0 + dt,
        tlp: Tlp::Amber,
        to: None,
        body,
    }
}

fn note(text: &str) -> Body {
    Body::Note(Note {
        text: text.into(),
        item: None,
    })
}

/// Alpha with officer 11 and node 12 certified, a case opened by the
/// officer, bravo (officer 21, node 22) added.
struct Case {
    alpha: Agency,
    bravo: Agency,
    v: Validator,
    officer: Identity,
    node: Identity,
    bravo_officer: Identity,
}

fn case() -> Case {
    let mut alpha = Agency::new(1);
    let mut bravo = Agency::new(2);
    let (officer, node, bravo_officer) = (id(11), id(12), id(21));
    alpha.certify(&officer, KeyRole::Officer, None);
    alpha.certify(&node, KeyRole::Node, None);
    bravo.certify(&bravo_officer, KeyRole::Officer, None);
    bravo.certify(&id(22), KeyRole::Node, None);
    let keys = logs(&[&alpha, &bravo]);
    let mut v = Validator::new();
    let g = genesis(&alpha, &officer, alpha.log.len());
    v.apply_keyed(&g, T0, &keys)
        .expect("genesis by a certified officer");
    let add = next(
        &v,
        alpha.agency(),
        alpha.log.len(),
        MINUTE,
        Body::MemberAdded(MemberAdded {
            agency: bravo.agency(),
            name: "BKA Cybercrime Unit".into(),
            country: "DE".into(),
            role: Role::Investigator,
        }),
    );
    v.apply_keyed(&Entry::sign(&officer, &add), T0 + MINUTE, &keys)
        .expect("member added");
    Case {
        alpha,
        bravo,
        v,
        officer,
        node,
        bravo_officer,
    }
}

/// The case exported by alpha with these key logs, every entry in the
/// order written (genesis first), and verified as a court would.
fn export_and_verify(c: &Case, with: &[KeyLog]) -> bundle::Report {
    let mut all: Vec<Entry> = Vec::new();
    for a in [c.alpha.agency(), c.bravo.agency()] {
        for s in 0..c.v.next_seq(&a) {
            let id = c.v.at(&a, s).expect("held");
            all.push(c.v.entry(&id).expect("kept").clone());
        }
    }
    all.sort_by_key(|e| e.payload().time);
    let elements: Vec<Element<'_>> = all.iter().map(|e| Element::Entry(e.bytes())).collect();
    let bytes = bundle::export(
        &c.alpha.root,
        &c.v,
        &elements,
        &[],
        with,
        T0 + 10 * MINUTE,
        None,
    )
    .expect("exports");
    bundle::verify(&Bundle::decode(&bytes).expect("decodes"), None)
}

fn refused(v: &mut Validator, e: &Entry, keys: &BTreeMap<AgencyId, KeyLog>) -> Rejection {
    v.apply_keyed(e, T0 + 3_600_000, keys).expect_err("refused")
}

#[test]
fn an_officer_signs_entries_a_node_signs_witnesses_and_each_names_its_key() {
    let mut c = case();
    let keys = logs(&[&c.alpha, &c.bravo]);
    let p = next(
        &c.v,
        c.bravo.agency(),
        c.bravo.log.len(),
        2 * MINUTE,
        note("seized"),
    );
    let e = Entry::sign(&c.bravo_officer, &p);
    let again = Entry::decode(e.bytes()).expect("decodes, the signature checked by the kid");
    assert_eq!(again.signer(), c.bravo_officer.agency());
    assert_eq!(again.author(), c.bravo.agency());
    assert_eq!(again.version(), 2);
    c.v.apply_keyed(&again, T0 + 3 * MINUTE, &keys)
        .expect("valid");
    let heads = vec![Head(c.bravo.agency(), 0, again.id())];
    let w = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        3 * MINUTE,
        Body::Witness(Witness { heads }),
    );
    c.v.apply_keyed(&Entry::sign(&c.node, &w), T0 + 4 * MINUTE, &keys)
        .expect("a witness by the node key");
}

#[test]
fn a_key_the_log_does_not_certify_signs_nothing() {
    let mut c = case();
    let keys = logs(&[&c.alpha, &c.bravo]);
    let stranger = id(99);
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("x"),
    );
    let r = refused(&mut c.v, &Entry::sign(&stranger, &p), &keys);
    assert_eq!((r.rule(), r.class()), (21, "uncertified-key"), "{r}");
    // The root signs key statements only, never entries.
    let r = refused(&mut c.v, &Entry::sign(&c.alpha.root, &p), &keys);
    assert_eq!(r.class(), "uncertified-key", "{r}");
    assert!(r.to_string().contains("root"), "{r}");
    // Another agency's officer cannot sign as alpha.
    let r = refused(&mut c.v, &Entry::sign(&c.bravo_officer, &p), &keys);
    assert_eq!(r.class(), "uncertified-key", "{r}");
}

#[test]
fn a_key_certified_after_the_cited_prefix_is_not_certified_there() {
    let mut c = case();
    let later = id(13);
    let before = c.alpha.log.len();
    c.alpha.certify(&later, KeyRole::Officer, None);
    let keys = logs(&[&c.alpha, &c.bravo]);
    let p = next(&c.v, c.alpha.agency(), before, 2 * MINUTE, note("x"));
    let r = refused(&mut c.v, &Entry::sign(&later, &p), &keys);
    assert_eq!(r.class(), "uncertified-key", "{r}");
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("x"),
    );
    c.v.apply_keyed(&Entry::sign(&later, &p), T0 + 3 * MINUTE, &keys)
        .expect("under the prefix that certifies it");
}

#[test]
fn each_role_signs_its_own_kind_of_entry() {
    let mut c = case();
    let keys = logs(&[&c.alpha, &c.bravo]);
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("x"),
    );
    let r = refused(&mut c.v, &Entry::sign(&c.node, &p), &keys);
    assert_eq!((r.rule(), r.class()), (23, "key-role"), "{r}");
    let heads = vec![Head(
        c.alpha.agency(),
        1,
        c.v.at(&c.alpha.agency(), 1).expect("held"),
    )];
    let w = next(
        &c.v,
        c.bravo.agency(),
        c.bravo.log.len(),
        2 * MINUTE,
        Body::Witness(Witness { heads }),
    );
    let r = refused(&mut c.v, &Entry::sign(&c.bravo_officer, &w), &keys);
    assert_eq!(r.class(), "key-role", "{r}");
}

#[test]
fn a_key_revoked_in_the_cited_prefix_signs_nothing_whatever_the_reason() {
    for reason in [
        RevokeReason::Retired,
        RevokeReason::Lost,
        RevokeReason::Compromised,
    ] {
        let mut c = case();
        // Effective in the future: the cited prefix holds the revocation,
        // which is enough.
        c.alpha.revoke(&c.officer, reason, T0 + 3_600_000);
        let keys = logs(&[&c.alpha, &c.bravo]);
        let p = next(
            &c.v,
            c.alpha.agency(),
            c.alpha.log.len(),
            2 * MINUTE,
            note("x"),
        );
        let r = refused(&mut c.v, &Entry::sign(&c.officer, &p), &keys);
        assert_eq!(
            (r.rule(), r.class()),
            (22, "revoked-key"),
            "{reason:?}: {r}"
        );
    }
}

#[test]
fn an_entry_dated_outside_its_keys_validity_is_refused() {
    let mut c = case();
    let brief = id(14);
    c.alpha
        .certify(&brief, KeyRole::Officer, Some(T0 + 10 * MINUTE));
    let keys = logs(&[&c.alpha, &c.bravo]);
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        11 * MINUTE,
        note("x"),
    );
    let r = refused(&mut c.v, &Entry::sign(&brief, &p), &keys);
    assert_eq!((r.rule(), r.class()), (24, "key-validity"), "{r}");
    let mut early = next(&c.v, c.alpha.agency(), c.alpha.log.len(), 0, note("x"));
    early.time = T0 - MINUTE;
    let r = refused(&mut c.v, &Entry::sign(&brief, &early), &keys);
    assert_eq!(r.class(), "key-validity", "{r}");
}

#[test]
fn an_entry_made_under_statements_not_held_waits_for_them() {
    let mut c = case();
    let fresh = id(15);
    let held = logs(&[&c.alpha, &c.bravo]);
    c.alpha.certify(&fresh, KeyRole::Officer, None);
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("x"),
    );
    let e = Entry::sign(&fresh, &p);
    let r = refused(&mut c.v, &e, &held);
    assert_eq!((r.rule(), r.class()), (20, "key-log-pending"), "{r}");
    assert_eq!(r.kind.receiver_class(), ReceiverClass::OutOfOrder);
    assert!(r.kind.is_transient());
    // Without any key log, too.
    let r = c.v.apply(&e, T0 + 3 * MINUTE).expect_err("no key logs");
    assert_eq!(r.class(), "key-log-pending", "{r}");
    // Once the statement arrives, the same entry is accepted.
    let now = logs(&[&c.alpha, &c.bravo]);
    c.v.apply_keyed(&e, T0 + 3 * MINUTE, &now)
        .expect("accepted once the statement is held");
}

#[test]
fn a_case_keeps_the_format_version_of_its_genesis() {
    let mut c = case();
    let keys = logs(&[&c.alpha, &c.bravo]);
    let mut p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("x"),
    );
    p.v = FORMAT_VERSION;
    p.keys = None;
    // A version 1 entry, signed by the agency key, in a version 2 case.
    let r = refused(&mut c.v, &Entry::sign(&c.alpha.root, &p), &keys);
    assert_eq!((r.rule(), r.class()), (19, "version-mismatch"), "{r}");

    // A version 2 entry in a version 1 case.
    let alpha = Agency::new(1);
    let mut v1 = Validator::new();
    let g = Entry::sign(
        &alpha.root,
        &Payload::genesis(alpha.agency(), T0, Tlp::Amber, opened()),
    );
    v1.apply(&g, T0).expect("genesis");
    let mut a = alpha;
    let officer = id(11);
    a.certify(&officer, KeyRole::Officer, None);
    let keys = logs(&[&a]);
    let p = next(&v1, a.agency(), a.log.len(), MINUTE, note("x"));
    let r = refused(&mut v1, &Entry::sign(&officer, &p), &keys);
    assert_eq!(r.class(), "version-mismatch", "{r}");
}

/// Replaces the protected header's alg byte (offset 6: tag, array, bstr
/// head of two bytes, map head, label 1) and re-signs with `signer`.
fn with_alg(e: &Entry, alg: u8, signer: &Identity) -> Vec<u8> {
    let mut b = e.bytes().to_vec();
    assert_eq!(&b[4..6], &[0xa3, 0x01]);
    b[6] = alg;
    let protected = &b[2..76];
    let payload_start = 77;
    let payload_end = b.len() - 66;
    let msg = [
        &b"\x84\x6aSignature1"[..],
        protected,
        &[0x40],
        &b[payload_start..payload_end],
    ]
    .concat();
    let sig = signer.sign(&msg);
    let n = b.len();
    b[n - 64..].copy_from_slice(&sig);
    b
}

#[test]
fn the_bytes_of_a_version_2_entry_are_checked_like_any_other() {
    let c = case();
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("x"),
    );
    let e = Entry::sign(&c.officer, &p);
    // alg -8 with version 2, and -19 with version 1: V4.
    let r = Entry::decode(&with_alg(&e, 0x27, &c.officer)).expect_err("alg -8");
    assert_eq!(r.class(), "bad-header", "{r}");
    let v1 = Entry::sign(&c.alpha.root, &{
        let mut p = p.clone();
        p.v = 1;
        p.keys = None;
        p
    });
    let r = Entry::decode(&with_alg(&v1, 0x32, &c.alpha.root)).expect_err("alg -19");
    assert_eq!(r.class(), "bad-header", "{r}");
    // "keys" belongs to version 2 only, and counts at least the inception.
    for (v, keys) in [
        (FORMAT_VERSION_2, None),
        (FORMAT_VERSION_2, Some(0)),
        (1, Some(3)),
    ] {
        let mut q = p.clone();
        q.v = v;
        q.keys = keys;
        let signer = if v == 1 { &c.alpha.root } else { &c.officer };
        let r = Entry::decode(Entry::sign(signer, &q).bytes()).expect_err("schema");
        assert_eq!(r.class(), "schema", "v {v} keys {keys:?}: {r}");
    }
    // The signature is the kid's: signed by another key, it fails V8.
    let mut forged = e.bytes().to_vec();
    let n = forged.len();
    forged[n - 64..].copy_from_slice(&id(99).sign(b"anything"));
    let r = Entry::decode(&forged).expect_err("bad signature");
    assert_eq!(r.class(), "bad-signature", "{r}");
    // A batch gives the single verdicts.
    let batch = Entry::decode_many(&[e.bytes(), &forged]);
    assert!(batch[0].is_ok());
    assert_eq!(
        batch[1].as_ref().expect_err("forged").class(),
        "bad-signature"
    );
    // The strict decoder and the fast path agree.
    let strict = Entry::decode_unverified_strict(e.bytes()).expect("strict");
    assert_eq!(strict.signer(), c.officer.agency());
}

#[test]
fn a_node_that_learnt_of_a_revocation_refuses_new_entries_dated_after_it() {
    let mut c = case();
    // The officer writes, then the key is reported compromised.
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("before"),
    );
    let before = Entry::sign(&c.officer, &p);
    let cited = c.alpha.log.len();
    c.alpha
        .revoke(&c.officer, RevokeReason::Compromised, T0 + 5 * MINUTE);
    let keys = logs(&[&c.alpha, &c.bravo]);
    // Dated before the effective time, under a prefix without the
    // revocation: valid by the rules, and taken.
    assert_eq!(refuse_revoked(&before, &keys), Ok(()));
    c.v.apply_keyed(&before, T0 + 3 * MINUTE, &keys)
        .expect("valid");
    // A thief writes after the effective time under the old prefix: valid
    // by the rules of the prefix it cites, refused by a node that holds
    // the revocation.
    let p = next(&c.v, c.alpha.agency(), cited, 6 * MINUTE, note("after"));
    let after = Entry::sign(&c.officer, &p);
    let r = refuse_revoked(&after, &keys).expect_err("refused as new");
    assert_eq!((r.rule(), r.class()), (22, "revoked-key"), "{r}");
    // A store reloading what it accepted, or a verifier, judges by the
    // cited prefix: the same entry is not refused there.
    let mut reload = c.v.clone();
    reload
        .apply_keyed(&after, T0 + 7 * MINUTE, &keys)
        .expect("valid under the prefix it cites");
}

#[test]
fn a_bundle_of_a_version_2_case_verifies_with_its_key_logs_and_not_without() {
    let mut c = case();
    let keys = logs(&[&c.alpha, &c.bravo]);
    let mut rows = Vec::new();
    for (who, body) in [(1, note("seized")), (0, note("examined"))] {
        let (agency, log_len, signer) = if who == 1 {
            (c.bravo.agency(), c.bravo.log.len(), &c.bravo_officer)
        } else {
            (c.alpha.agency(), c.alpha.log.len(), &c.officer)
        };
        let p = next(&c.v, agency, log_len, (2 + who) * MINUTE, body);
        let e = Entry::sign(signer, &p);
        c.v.apply_keyed(&e, T0 + 5 * MINUTE, &keys).expect("valid");
        rows.push(e);
    }
    let report = export_and_verify(&c, &[c.alpha.log.clone(), c.bravo.log.clone()]);
    assert!(report.is_valid(), "{}", report.verdict());
    // Without bravo's log, its entries cannot be checked: the bundle is
    // not valid, and says which rule.
    let report = export_and_verify(&c, &[c.alpha.log.clone()]);
    assert!(!report.is_valid());
    assert!(
        report.problems.iter().any(|p| p.class == "key-log-pending"),
        "{:?}",
        report.problems.iter().map(|p| p.class).collect::<Vec<_>>()
    );
}

#[test]
fn a_report_tells_entries_by_keys_revoked_later_apart_from_the_witnessed_ones() {
    let mut c = case();
    let retiring = id(16);
    c.alpha.certify(&retiring, KeyRole::Officer, None);
    let keys = logs(&[&c.alpha, &c.bravo]);
    let cited = c.alpha.log.len();
    // Alpha's entries, made under the log before the revocations.
    let write = |c: &mut Case, signer: &Identity, dt: u64, body: Body, keys: &BTreeMap<_, _>| {
        let e = Entry::sign(signer, &next(&c.v, c.alpha.agency(), cited, dt, body));
        c.v.apply_keyed(&e, T0 + 3_600_000, keys).expect("valid");
        e
    };
    // Written by the officer and witnessed by bravo's node before the
    // compromise is effective.
    let seen = write(&mut c, &id(11), 2 * MINUTE, note("seen"), &keys);
    let heads = vec![Head(c.alpha.agency(), seen.seq(), seen.id())];
    let bravo_node = id(22);
    let w = Entry::sign(
        &bravo_node,
        &next(
            &c.v,
            c.bravo.agency(),
            c.bravo.log.len(),
            3 * MINUTE,
            Body::Witness(Witness { heads }),
        ),
    );
    c.v.apply_keyed(&w, T0 + 3_600_000, &keys).expect("witness");
    // Written by the officer, never witnessed: dated before the effective
    // time, which a thief could have chosen.
    let unseen = write(&mut c, &id(11), 4 * MINUTE, note("unseen"), &keys);
    // By a key retired from 5 minutes: one entry before, one after.
    let before = write(&mut c, &retiring, 5 * MINUTE - 1, note("before"), &keys);
    let after = write(&mut c, &retiring, 6 * MINUTE, note("after"), &keys);
    c.alpha.revoke(
        &c.officer,
        RevokeReason::Compromised,
        T0 + 3 * MINUTE + 30_000,
    );
    c.alpha
        .revoke(&retiring, RevokeReason::Retired, T0 + 5 * MINUTE);
    let report = export_and_verify(&c, &[c.alpha.log.clone(), c.bravo.log.clone()]);
    assert!(report.is_valid(), "{}", report.verdict());
    let found: Vec<(&str, EntryId)> = report
        .conflicts
        .iter()
        .map(|k| (k.kind, k.entries[0].0))
        .collect();
    assert_eq!(
        found,
        vec![
            ("key-reported-compromised", unseen.id()),
            ("key-retired", after.id())
        ],
        "the witnessed entry and the one dated before the retirement are not findings"
    );
    assert_eq!(report.verdict_kind(), "valid-with-conflicts");
    assert!(report.conflicts[0].sentence.contains("Insp. R. Santos"));
    assert!(!found
        .iter()
        .any(|(_, id)| *id == seen.id() || *id == before.id()));
}

#[test]
fn a_stranger_cannot_make_an_author_look_like_an_equivocator() {
    let mut c = case();
    let keys = logs(&[&c.alpha, &c.bravo]);
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("seized"),
    );
    let honest = Entry::sign(&c.officer, &p);
    c.v.apply_keyed(&honest, T0 + 3 * MINUTE, &keys)
        .expect("valid");
    // The same position, the author's name, a key of the forger's own.
    let mut q = p.clone();
    q.body = note("the phone was never seized");
    let forged = Entry::sign(&id(99), &q);
    let r = refused(&mut c.v, &forged, &keys);
    assert_eq!(
        (r.rule(), r.class()),
        (21, "uncertified-key"),
        "a position is taken only by a certified key: {r}"
    );
    assert!(
        c.v.state().conflicts.is_empty(),
        "no equivocation is recorded"
    );
    let proof = EquivocationProof::new(&honest, &forged);
    assert!(
        proof.check_keyed(&keys).is_err(),
        "the proof does not check"
    );
    assert!(proof.check().is_err(), "nor without key logs");
    // The officer's own second entry at that position is an equivocation,
    // and its proof checks against the key logs.
    let twice = Entry::sign(&c.officer, &q);
    let r = refused(&mut c.v, &twice, &keys);
    assert_eq!(r.class(), "equivocation", "{r}");
    let proof = EquivocationProof::new(&honest, &twice);
    let eq = proof.check_keyed(&keys).expect("a real equivocation");
    assert_eq!((eq.author, eq.seq), (c.alpha.agency(), honest.seq()));
    assert!(
        proof.check().is_err(),
        "without the author's key log a proof of format version 2 entries proves nothing"
    );
}

#[test]
fn a_witness_by_a_key_reported_compromised_vouches_for_nothing() {
    let mut c = case();
    let keys = logs(&[&c.alpha, &c.bravo]);
    let p = next(
        &c.v,
        c.alpha.agency(),
        c.alpha.log.len(),
        2 * MINUTE,
        note("x"),
    );
    let e = Entry::sign(&c.officer, &p);
    c.v.apply_keyed(&e, T0 + 3_600_000, &keys).expect("valid");
    // Bravo's node key "witnesses" it, dated before alpha's revocation.
    let bravo_node = id(22);
    let heads = vec![Head(c.alpha.agency(), e.seq(), e.id())];
    let w = Entry::sign(
        &bravo_node,
        &next(
            &c.v,
            c.bravo.agency(),
            c.bravo.log.len(),
            3 * MINUTE,
            Body::Witness(Witness { heads }),
        ),
    );
    c.v.apply_keyed(&w, T0 + 3_600_000, &keys).expect("witness");
    c.alpha
        .revoke(&c.officer, RevokeReason::Compromised, T0 + 4 * MINUTE);
    let export = |c: &Case| export_and_verify(c, &[c.alpha.log.clone(), c.bravo.log.clone()]);
    let report = export(&c);
    assert!(
        report.conflicts.is_empty(),
        "witnessed in time: {:?}",
        report.conflicts
    );
    // Bravo then reports its node key compromised: its witness may have
    // been dated by whoever held it, and vouches for nothing.
    c.bravo
        .revoke(&bravo_node, RevokeReason::Compromised, T0 + 5 * MINUTE);
    let report = export(&c);
    let kinds: Vec<(&str, EntryId)> = report
        .conflicts
        .iter()
        .map(|k| (k.kind, k.entries[0].0))
        .collect();
    // The officer's three entries (the opening, the member added, the
    // note), none witnessed by a key that still counts, and the witness.
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(kinds.iter().all(|(k, _)| *k == "key-reported-compromised"));
    assert_eq!(kinds[2].1, e.id());
    assert_eq!(kinds[3].1, w.id());
}
