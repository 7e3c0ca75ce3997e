//! Court bundles: round trip, tampering, byte flips, selective disclosure,
//! and the bundle vectors of `spec/vectors/bundles.json`.
//!
//! `bundle_vectors` reads the committed vectors, made by
//! `spec/vectors/bundle_vectors.py` from the spec, and requires this
//! verifier's full problem list for each.

mod common;

use common::{key, lantern, Row, Sim, T0};
use custodia_protocol::bundle::{self, Bundle, BundleAgency, Element, Header, Report, Rule};
use custodia_protocol::*;
use serde_json::{json, Value};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/bundles.json");

fn check(bytes: &[u8]) -> Result<Report, bundle::BundleError> {
    Bundle::decode(bytes).map(|b| bundle::verify(&b, None))
}

fn header(sim: &Sim, items: Option<Vec<ItemId>>, proofs: Vec<EquivocationProof>) -> Header {
    Header {
        case: sim.case(),
        items,
        proofs,
        agencies: sim
            .v
            .state()
            .members
            .values()
            .map(|m| BundleAgency {
                agency: m.agency,
                name: m.name.clone(),
                country: m.country.clone(),
            })
            .collect(),
        exported_at: sim.export_time(),
        keys: None,
        key_histories: false,
    }
}

/// Flips one byte inside element `index`'s text `needle`.
fn edit_in_element(bundle: &[u8], sim: &Sim, index: usize, needle: &[u8]) -> Vec<u8> {
    let Row::Entry(e) = &sim.rows[index] else {
        panic!("element {index} is an entry")
    };
    let at = find(bundle, e.bytes()).expect("the entry is in the bundle");
    let inner = find(e.bytes(), needle).expect("the text is in the entry");
    let mut out = bundle.to_vec();
    out[at + inner] ^= 0x20; // change the case of a letter: still valid CBOR
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Signs `payload` as a bundle under `signer`'s key, whatever it says.
fn resign_payload(payload: &[u8], signer: &Identity) -> Vec<u8> {
    let protected = bundle::bundle_protected_header(&signer.agency());
    let bstr = |b: &[u8], out: &mut Vec<u8>| {
        let n = b.len();
        match n {
            0..=23 => out.push(0x40 | n as u8),
            24..=255 => out.extend_from_slice(&[0x58, n as u8]),
            256..=65535 => {
                out.push(0x59);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                out.push(0x5A);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        out.extend_from_slice(b);
    };
    let mut tbs = vec![0x84, 0x6A];
    tbs.extend_from_slice(b"Signature1");
    bstr(&protected, &mut tbs);
    tbs.push(0x40);
    bstr(payload, &mut tbs);
    let sig = signer.sign(&tbs);
    let mut out = vec![0xD2, 0x84];
    bstr(&protected, &mut out);
    out.push(0xA0);
    bstr(payload, &mut out);
    bstr(&sig, &mut out);
    out
}

/// (index, rule, class, caused_by) of every problem.
fn summary(r: &Report) -> Vec<(Option<usize>, String, String, Option<usize>)> {
    r.problems
        .iter()
        .map(|p| {
            (
                p.index,
                p.rule.to_string(),
                p.class.to_string(),
                p.caused_by,
            )
        })
        .collect()
}

fn roots(r: &Report) -> Vec<(Option<usize>, String, String)> {
    r.problems
        .iter()
        .filter(|p| !p.is_consequence())
        .map(|p| (p.index, p.rule.to_string(), p.class.to_string()))
        .collect()
}

fn root(index: Option<usize>, rule: &str, class: &str) -> (Option<usize>, String, String) {
    (index, rule.to_owned(), class.to_owned())
}

fn consequences(r: &Report) -> Vec<(usize, usize)> {
    r.problems
        .iter()
        .filter_map(|p| Some((p.index?, p.caused_by?)))
        .collect()
}

#[test]
fn a_multi_agency_case_round_trips_to_a_valid_verdict() {
    let l = lantern();
    let bytes = l.sim.export(0, None);
    let r = check(&bytes).expect("readable");
    assert!(r.is_valid(), "{:#?}", r.problems);
    assert!(r.signature_valid);
    assert_eq!(r.title, "Operation Lantern");
    assert_eq!(r.elements, l.sim.rows.len());
    assert_eq!(r.disclosed, l.sim.rows.len());
    assert_eq!(r.members.len(), 3);
    assert!(r
        .members
        .iter()
        .all(|m| m.trust == bundle::KeyTrust::NotChecked));
    assert_eq!(r.items.len(), 3);
    let phone = r.items.iter().find(|i| i.id == l.phone).expect("phone");
    let actions: Vec<&str> = phone.timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["registered", "transferred", "received", "examined"]
    );
    let receipt = phone.timeline[1].receipt.as_ref().expect("paired receipt");
    assert_eq!(receipt.entry, phone.timeline[2].entry);
    assert!(receipt.accepted);
    assert_eq!(phone.holder, l.sim.id(0));
    assert_eq!(phone.copies, vec![l.image]);
    assert_eq!(
        phone.timeline[0].authority.as_deref(),
        Some("Warrant W-2026-17")
    );
    assert!(r.conflicts.is_empty() && r.withheld.is_empty());
    assert!(r.verdict().starts_with("VALID"));
}

#[test]
fn a_trust_file_confirms_keys() {
    let l = lantern();
    let bytes = l.sim.export(0, None);
    let b = Bundle::decode(&bytes).expect("readable");
    let trust = bundle::TrustList::parse(&format!(
        "# keys confirmed by letter\n{} NBI\n{} BKA\n",
        l.sim.id(0),
        l.sim.id(1)
    ))
    .expect("trust file");
    let r = bundle::verify(&b, Some(&trust));
    assert!(r.is_valid());
    let t: Vec<&bundle::KeyTrust> = r.members.iter().map(|m| &m.trust).collect();
    assert_eq!(
        t.iter()
            .filter(|t| matches!(t, bundle::KeyTrust::Confirmed(_)))
            .count(),
        2
    );
    assert!(t.contains(&&bundle::KeyTrust::NotConfirmed));
    assert_eq!(r.exporter_trust, bundle::KeyTrust::Confirmed("NBI".into()));
}

#[test]
fn an_edited_entry_fails_at_that_entry_and_at_the_bundle_signature() {
    let l = lantern();
    let bytes = l.sim.export(0, None);
    let edited = edit_in_element(&bytes, &l.sim, 3, b"Exhibit number");
    let r = check(&edited).expect("still readable");
    assert!(!r.is_valid());
    assert_eq!(
        roots(&r),
        [
            root(Some(3), "V8", "bad-signature"),
            root(None, "B1", "bundle-signature")
        ]
    );
    // Everything after it depends on it, and says so.
    assert_eq!(
        consequences(&r),
        (4..l.sim.rows.len()).map(|i| (i, 3)).collect::<Vec<_>>()
    );
    assert!(r.problems[0].sentence.contains("signature"));
    assert_eq!(r.problems[0].author, Some(l.sim.id(1)));
    assert_eq!(
        r.problems[0].author_name.as_deref(),
        Some("BKA Cybercrime Unit")
    );
}

#[test]
fn a_reordered_bundle_fails_where_the_order_breaks() {
    let l = lantern();
    let mut el = l.sim.elements();
    el.swap(4, 5);
    let bytes = bundle::write(&l.sim.agencies[0].0, &header(&l.sim, None, vec![]), &el);
    let r = check(&bytes).expect("readable");
    assert_eq!(roots(&r), [root(Some(4), "V11", "sequence-gap")]);
    assert!(
        r.problems[0].sentence.contains("#1"),
        "{}",
        r.problems[0].sentence
    );
}

#[test]
fn a_missing_entry_is_found_from_both_sides() {
    let l = lantern();
    let mut el = l.sim.elements();
    el.remove(5); // bravo's transfer of the phone
    let bytes = bundle::write(&l.sim.agencies[0].0, &header(&l.sim, None, vec![]), &el);
    let r = check(&bytes).expect("readable");
    assert_eq!(
        roots(&r),
        [
            root(Some(5), "V13", "unknown-reference"),
            root(Some(10), "V11", "sequence-gap")
        ]
    );
    assert_eq!(consequences(&r), [(6, 5), (7, 5), (8, 5), (9, 5), (11, 10)]);
}

#[test]
fn a_bundle_re_signed_by_another_key_is_refused() {
    let l = lantern();
    let bytes = l.sim.export(0, None);
    let payload = Bundle::decode(&bytes).expect("readable").payload().to_vec();
    let mallory = key("mallory");
    let r = check(&resign_payload(&payload, &mallory)).expect("readable");
    assert_eq!(roots(&r), [root(None, "B2", "exporter-mismatch")]);
    let el = l.sim.elements();
    let as_mallory = bundle::write(&mallory, &header(&l.sim, None, vec![]), &el);
    let r = check(&as_mallory).expect("readable");
    assert_eq!(roots(&r), [root(None, "B4", "exporter-not-member")]);
}

#[test]
fn equivocation_is_a_conflict_in_proofs_and_a_problem_in_entries() {
    let mut l = lantern();
    let Row::Entry(original) = l.sim.rows[4].clone() else {
        panic!("an entry")
    };
    let mut p = original.payload().clone();
    p.body = Body::Note(Note {
        text: "a different history".into(),
        item: None,
    });
    let other = Entry::sign(&l.sim.agencies[1].0, &p);
    l.sim.proofs.push(EquivocationProof::new(&original, &other));
    let r = check(&l.sim.export(0, None)).expect("readable");
    assert!(r.is_valid(), "{:#?}", r.problems);
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].kind, "equivocation");
    assert_eq!(r.conflicts[0].author, Some(l.sim.id(1)));

    let mut el = l.sim.elements();
    el.insert(5, Element::Entry(other.bytes()));
    let bytes = bundle::write(&l.sim.agencies[0].0, &header(&l.sim, None, vec![]), &el);
    let r = check(&bytes).expect("readable");
    assert_eq!(
        summary(&r),
        [(Some(5), "V10".into(), "equivocation".into(), None)]
    );
}

#[test]
fn every_prefix_of_a_bundle_is_unreadable_as_truncated() {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    let bytes = s.export(0, None);
    for n in 0..bytes.len() {
        match Bundle::decode(&bytes[..n]) {
            Err(bundle::BundleError::Truncated { at, .. }) => assert_eq!(at, n),
            Err(bundle::BundleError::Empty) => assert_eq!(n, 0),
            other => panic!("prefix of {n} bytes: {other:?}"),
        }
    }
    assert!(Bundle::decode(&bytes).is_ok());
}

#[test]
fn no_single_byte_flip_gives_a_valid_verdict() {
    let mut s = Sim::new();
    s.add(0, 1, Role::Investigator);
    let item = s.register(1, 7, None);
    let t = s.transfer(1, item, 0);
    s.receive(0, &t, item);
    let bytes = s.export(0, None);
    assert!(check(&bytes).expect("readable").is_valid());
    let mut unreadable = 0;
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            match check(&b) {
                Err(_) => unreadable += 1,
                Ok(r) => assert!(
                    !r.is_valid(),
                    "flipping byte {i} with {mask:#x} went unnoticed"
                ),
            }
        }
    }
    assert!(unreadable > 0);
}

#[test]
fn a_selective_bundle_verifies_and_discloses_nothing_of_other_items() {
    let l = lantern();
    for (chosen, others) in [
        (vec![l.phone], vec![l.laptop, l.image]),
        (vec![l.laptop], vec![l.phone, l.image]),
        (vec![l.image], vec![l.laptop]),
    ] {
        let bytes = l.sim.export(0, Some(&chosen));
        let r = check(&bytes).expect("readable");
        assert!(r.is_valid(), "{chosen:?}: {:#?}", r.problems);
        assert_eq!(r.selective.as_deref(), Some(&chosen[..]));
        assert!(!r.withheld.is_empty());
        assert!(r.items.iter().any(|i| i.id == chosen[0]));
        for other in &others {
            assert!(
                find(&bytes, &other.0).is_none(),
                "item {other:?} is named in the bundle for {chosen:?}"
            );
            assert!(r.items.iter().all(|i| i.id != *other));
        }
        // No entry about another item, and no note, is disclosed.
        for row in &l.sim.rows {
            let Row::Entry(e) = row else { continue };
            let about_other = match &e.payload().body {
                Body::EvidenceRegistered(x) => others.contains(&x.item),
                Body::Custody(x) => others.contains(&x.item),
                Body::Note(_) => true,
                _ => false,
            };
            if about_other {
                assert!(find(&bytes, e.bytes()).is_none());
                assert!(r.withheld.iter().any(|w| w.id == e.id()));
            }
        }
    }
    // The image derives from the phone: its bundle discloses the phone's
    // registration, and none of the phone's custody events.
    let r = check(&l.sim.export(0, Some(&[l.image]))).expect("readable");
    let phone = r.items.iter().find(|i| i.id == l.phone).expect("ancestor");
    assert_eq!(phone.timeline.len(), 1);
}

#[test]
fn a_selective_bundle_checks_every_item_it_names() {
    let l = lantern();
    let bytes = l.sim.export(0, Some(&[l.phone]));
    let b = Bundle::decode(&bytes).expect("readable");
    let mut h = header(&l.sim, Some(vec![l.phone, ItemId([0xEE; 16])]), vec![]);
    if let Some(v) = h.items.as_mut() {
        v.sort();
    }
    let el: Vec<Element<'_>> = b.elements().collect();
    let r = check(&bundle::write(&l.sim.agencies[0].0, &h, &el)).expect("readable");
    assert_eq!(roots(&r), [root(None, "B7", "selection")]);
}

#[test]
fn other_files_are_not_bundles() {
    let l = lantern();
    let Row::Entry(g) = &l.sim.rows[0] else {
        panic!()
    };
    let e = Bundle::decode(g.bytes()).expect_err("an entry is not a bundle");
    assert!(e.to_string().contains("single Custodia entry"), "{e}");
    let e = Bundle::decode(b"%PDF-1.7\n").expect_err("a PDF");
    assert!(e.to_string().starts_with("not a Custodia bundle"), "{e}");
    assert!(matches!(
        Bundle::decode(b""),
        Err(bundle::BundleError::Empty)
    ));
    let mut long = l.sim.export(0, None);
    long.push(0);
    assert!(matches!(
        Bundle::decode(&long),
        Err(bundle::BundleError::TrailingBytes { .. })
    ));
}

#[test]
fn every_rule_has_a_plain_sentence() {
    let kinds = [
        RejectKind::Oversize { size: 70_000 },
        RejectKind::Malformed("x".into()),
        RejectKind::NonCanonical("payload"),
        RejectKind::BadHeader("x".into()),
        RejectKind::UnsupportedVersion(2),
        RejectKind::Schema("x".into()),
        RejectKind::AuthorMismatch {
            payload: AgencyId([1; 32]),
            kid: AgencyId([2; 32]),
        },
        RejectKind::BadSignature,
        RejectKind::WrongCase("x".into()),
        RejectKind::Equivocation {
            seq: 4,
            existing: None,
            proof: None,
        },
        RejectKind::SequenceGap {
            expected: 3,
            found: 5,
        },
        RejectKind::PrevMismatch { seq: 8 },
        RejectKind::UnknownReference {
            id: EntryId([3; 32]),
            why: "not a known entry of this case",
        },
        RejectKind::NotAMember(AgencyId([1; 32])),
        RejectKind::NotAuthorized("observer".into()),
        RejectKind::CustodyViolation("not the holder".into()),
        RejectKind::TimeViolation {
            time: T0,
            predecessor: EntryId([4; 32]),
            predecessor_time: T0 + 3_600_000,
        },
        RejectKind::FromTheFuture {
            time: T0 + 86_400_000,
            now: T0,
        },
    ];
    for k in &kinds {
        let s = bundle::explain(k, Some(9));
        assert!(s.len() > 40 && s.ends_with('.'), "{k:?}: {s}");
        assert!(!s.contains("CBOR") && !s.contains("COSE"), "{s}");
    }
    assert!(bundle::explain(&kinds[11], Some(8)).contains("entry #7"));
    assert!(bundle::explain(&kinds[10], None).contains("#3 to #4"));
    for b in bundle::BundleRule::ALL {
        assert!(bundle::explain_bundle_rule(Rule::Bundle(b), "d").ends_with('.'));
        assert_eq!(Rule::Bundle(b).to_string(), format!("B{}", b.number()));
    }
}

// ---------------------------------------------------------------------------
// Vectors

/// Every vector of `spec/vectors/bundles.json`, by name: the file is made by
/// `spec/vectors/bundle_vectors.py` from the spec, never by this crate, and
/// each vector pins one reading of SPEC.md section 10.
const VECTOR_NAMES: &[&str] = &[
    "valid-whole-case",
    "valid-selective-one-item",
    "valid-selective-derived-item",
    "edited-entry-byte",
    "truncated",
    "not-a-bundle-single-entry",
    "empty-file",
    "reordered-entries",
    "re-signed-by-another-key",
    "re-signed-as-exporter-by-a-non-member",
    "missing-entry",
    "equivocating-author-proof",
    "equivocating-author-in-entries",
    "equivocation-in-entries-and-proofs",
    "bad-proofs",
    "selection-unregistered-items",
    "case-mismatch",
    "genesis-as-marker",
    "genesis-garbage",
    "removed-member-listed",
    "removed-member-exports",
    "agencies-concurrent-names",
    "agency-list-differences",
    "position-unknown-schema",
    "position-unknown-author-mismatch",
    "unknown-reference-two-refused",
    "missing-position-before-undecodable",
    "simple-values",
    "structure-before-encoding",
    "marker-short-id",
    "marker-negative-seq",
    "marker-four-items",
    "items-not-ascending",
    "proof-of-three",
    "unsupported-version",
    "unknown-payload-key",
    "two-read-errors",
    "trailing-bytes-and-damaged-payload",
    "protected-header-not-a-byte-string",
    "derived-from-outside-causal-past",
    "reveal-after-later-events",
    "valid-key-logs",
    "valid-no-key-logs",
    "key-log-edited-after-export",
    "key-log-broken-statement",
    "key-log-not-from-inception",
    "key-log-of-a-non-agency",
    "key-log-duplicate-agency",
    "key-logs-not-ascending",
    "key-log-bad-inception-unknown-agency",
    "v3-recovery-with-what-it-superseded",
    "v3-superseded-after-the-recovery",
    "v3-plain-logs",
    "v3-history-with-a-duplicate",
    "v3-superseded-twice",
    "v3-history-refused-statement",
    "v2-log-with-a-recovery",
    "keys-in-version-1",
    "version-2-without-keys",
    "key-log-empty",
    "v2-entries-with-key-logs",
    "v2-entries-without-a-key-log",
    "revoked-key-witnessed-before-effective",
    "revoked-key-witnessed-after-effective",
    "revoked-key-witnessed-at-effective",
    "revoked-key-lost",
    "revoked-key-witnessed-only-by-own-agency",
    "revoked-key-witness-withheld",
    "revoked-key-witness-head-only",
    "revoked-key-witness-through-reveal",
    "revoked-key-retired-before-effective",
    "revoked-key-retired-at-effective",
    "revoked-key-in-cited-prefix",
    "revoked-keys-conflict-order",
];

fn problems_json(r: &Report) -> Value {
    Value::Array(
        r.problems
            .iter()
            .map(|p| {
                json!({"index": p.index, "rule": p.rule.to_string(), "class": p.class, "caused_by": p.caused_by})
            })
            .collect(),
    )
}

/// What a vector records for a bundle: the verdict, and the kind of read
/// error or the full problem list (rule, index, class, caused_by, in
/// order) with the conflicts (their number, and their kinds in report
/// order) and the counts of withheld and disclosed positions.
fn outcome(bytes: &[u8]) -> Value {
    match Bundle::decode(bytes) {
        Err(e) => json!({"expect": "unreadable", "error": e.class()}),
        Ok(b) => {
            let r = bundle::verify(&b, None);
            let mut out = json!({
                "expect": if r.is_valid() { "valid" } else { "invalid" },
                "problems": problems_json(&r),
                "conflicts": r.conflicts.len(),
                "conflict_kinds": r.conflicts.iter().map(|c| c.kind).collect::<Vec<_>>(),
                "withheld": r.withheld.len(),
                "disclosed": r.disclosed,
            });
            if b.version() >= 2 {
                // Each key log that replays (B8): agency, length, root;
                // in version 3, how many statements its history superseded.
                out["key_logs"] = r
                    .key_logs
                    .iter()
                    .map(|l| {
                        let mut log = json!({
                            "agency": hex::encode(l.agency.0),
                            "length": l.statements.len(),
                            "root": hex::encode(l.root.0),
                        });
                        if b.version() == 3 {
                            log["superseded"] = json!(l.superseded.len());
                        }
                        log
                    })
                    .collect();
            }
            out
        }
    }
}

#[test]
fn bundle_vectors() {
    let text = std::fs::read_to_string(VECTORS).expect("spec/vectors/bundles.json is readable");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["format"], "custodia-bundle-vectors/1");
    let vectors = doc["vectors"].as_array().expect("vectors");
    let names: Vec<&str> = vectors
        .iter()
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, VECTOR_NAMES, "the vectors, by name and in order");
    let mut failed = Vec::new();
    for v in vectors {
        let bytes = hex::decode(v["bundle"].as_str().expect("hex")).expect("hex");
        let got = outcome(&bytes);
        let mut want = serde_json::Map::new();
        for k in [
            "expect",
            "error",
            "problems",
            "conflicts",
            "conflict_kinds",
            "withheld",
            "disclosed",
            "key_logs",
        ] {
            if let Some(x) = v.get(k) {
                want.insert(k.to_owned(), x.clone());
            }
        }
        if got != Value::Object(want.clone()) {
            failed.push(format!(
                "{}:\n  expected {}\n  got      {}",
                v["name"],
                Value::Object(want),
                got
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

proptest::proptest! {
    /// Garbage, and garbage that starts like a bundle, is refused with an
    /// error or a report, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
        start in 0usize..3,
    ) {
        let mut bytes = [&[0xD2u8, 0x84, 0x58, 0x49][..start.min(4)], &body].concat();
        let _ = check(&bytes);
        bytes.insert(0, 0xD2);
        let _ = check(&bytes);
    }

    /// Several random edits of a valid bundle never give a valid verdict.
    #[test]
    fn random_edits_are_never_valid(
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), 1u8..=255), 1..4),
    ) {
        let mut s = Sim::new();
        s.add(0, 1, Role::Investigator);
        let item = s.register(1, 5, None);
        s.custody(1, item, CustodyAction::Sealed);
        let original = s.export(0, None);
        let mut bytes = original.clone();
        for (at, x) in edits {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        proptest::prop_assume!(bytes != original);
        if let Ok(r) = check(&bytes) {
            proptest::prop_assert!(!r.is_valid());
        }
    }
}

/// Alpha's key history: its inception (root alpha, next "after"), the
/// rotation to "after" at position 1, then `superseded` statements the old
/// root signed at position 1 (each certifying another node key), which the
/// rotation supersedes as they come.
fn history_with(s: &Sim, superseded: usize) -> Vec<Vec<u8>> {
    use custodia_protocol::keylog::{
        key_of, Certify, KeyLog, KeyRole, KeyStatement, PublicKey, Root, Statement,
        StatementPayload,
    };
    let alpha = &s.agencies[0].0;
    let inception = KeyStatement::sign(
        alpha,
        &StatementPayload::inception(alpha, &key("after"), T0),
    );
    let log = KeyLog::from_inception(inception.clone()).expect("inception");
    let rotate = Statement::RotateRoot(Root {
        root: PublicKey::ed25519(key_of(&key("after"))),
        next: KeyDigest::of(&key_of(&key("after-next"))),
    });
    let rotation = KeyStatement::sign(
        &key("after"),
        &StatementPayload::after(&log, T0 + 1, rotate),
    );
    let mut out = vec![inception.bytes().to_vec(), rotation.bytes().to_vec()];
    for k in 0..superseded {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(k as u64).to_le_bytes());
        let certify = Statement::Certify(Certify {
            key: PublicKey::ed25519(key_of(&Identity::from_seed(seed))),
            role: KeyRole::Node,
            officer: None,
            not_before: T0,
            not_after: None,
        });
        let st = KeyStatement::sign(alpha, &StatementPayload::after(&log, T0 + 2, certify));
        out.push(st.bytes().to_vec());
    }
    out
}

#[test]
fn a_key_history_holds_at_most_so_many_superseded_statements() {
    // A crafted history of recoveries and superseded statements without
    // end would cost its verifier time of the order of its square: past
    // MAX_HISTORY_SUPERSEDED it is B8 (SPEC.md §10.5, §16).
    let s = lantern().sim;
    let limit = custodia_protocol::keylog::MAX_HISTORY_SUPERSEDED;
    for (n, b8) in [(limit, false), (limit + 1, true)] {
        let mut h = header(&s, None, Vec::new());
        h.keys = Some(vec![history_with(&s, n)]);
        h.key_histories = true;
        let bytes = bundle::write(&s.agencies[0].0, &h, &s.elements());
        assert_eq!(Bundle::decode(&bytes).expect("readable").version(), 3);
        let r = check(&bytes).expect("readable");
        let broken = r
            .problems
            .iter()
            .any(|p| p.rule == Rule::Bundle(bundle::BundleRule::KeyLog));
        assert_eq!(broken, b8, "{n} superseded: {:?}", summary(&r));
        if !b8 {
            assert!(r.is_valid(), "{:?}", summary(&r));
            assert_eq!(r.key_logs[0].superseded.len(), n);
        }
    }
}
