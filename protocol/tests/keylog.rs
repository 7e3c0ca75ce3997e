//! Key logs (SPEC.md §3.4): an honest agency's log, and what a thief of its
//! root, a stranger, a careless operator and hostile bytes can do to it.

use ciborium::value::Value as Cbor;
use custodia_protocol::keylog::{
    key_of, Appended, Certify, KeyLog, KeyLogError, KeyRole, KeyStatement, KeyStatus, Officer,
    Profile, PublicKey, Revoke, RevokeReason, Root, SignWithError, SignerError, Statement,
    StatementPayload, StatementSigner,
};
use custodia_protocol::{sig_structure, Identity, KeyDigest, KeyId};

const T0: u64 = 1_795_000_000_000;

fn id(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

/// The agency: root 1, next root 2 (kept offline), the one after 3.
fn incepted() -> KeyLog {
    let s = KeyStatement::sign(&id(1), &StatementPayload::inception(&id(1), &id(2), T0));
    KeyLog::from_inception(s).expect("inception")
}

fn officer(key: &Identity, name: &str) -> Statement {
    Statement::Certify(Certify {
        key: PublicKey::ed25519(key_of(key)),
        role: KeyRole::Officer,
        officer: Some(Officer {
            name: name.into(),
            number: "PNP-0042".into(),
        }),
        not_before: T0,
        not_after: None,
    })
}

fn node(key: &Identity) -> Statement {
    Statement::Certify(Certify {
        key: PublicKey::ed25519(key_of(key)),
        role: KeyRole::Node,
        officer: None,
        not_before: T0,
        not_after: None,
    })
}

/// Signs the statement that follows the log and appends it.
fn add(
    log: &mut KeyLog,
    signer: &Identity,
    dt: u64,
    st: Statement,
) -> Result<Appended, KeyLogError> {
    let s = KeyStatement::sign(signer, &StatementPayload::after(log, T0 + dt, st));
    log.append(s)
}

fn rotation(to: &Identity, then: &Identity) -> Statement {
    Statement::RotateRoot(Root {
        root: PublicKey::ed25519(key_of(to)),
        next: KeyDigest::of(&key_of(then)),
    })
}

#[test]
fn an_honest_log_answers_what_each_key_was_at_each_position() {
    let mut log = incepted();
    add(
        &mut log,
        &id(1),
        1,
        Statement::Profile(Profile {
            name: "NBI Cybercrime Division".into(),
            country: "PH".into(),
        }),
    )
    .expect("profile");
    add(&mut log, &id(1), 2, node(&id(10))).expect("node key");
    add(&mut log, &id(1), 3, officer(&id(11), "Insp. R. Santos")).expect("officer");
    add(
        &mut log,
        &id(1),
        4,
        Statement::Revoke(Revoke {
            key: key_of(&id(11)),
            effective: T0 + 3,
            reason: RevokeReason::Compromised,
        }),
    )
    .expect("revoke");
    assert_eq!(log.len(), 5);
    assert_eq!(
        log.profile(5).map(|p| p.name.as_str()),
        Some("NBI Cybercrime Division")
    );
    assert_eq!(log.profile(1), None, "no profile in the inception alone");
    let santos = key_of(&id(11));
    assert_eq!(
        log.status(&santos, 3),
        KeyStatus::Unknown,
        "not yet certified"
    );
    match log.status(&santos, 4) {
        KeyStatus::Certified { seq: 3, certify } => {
            assert_eq!(certify.officer.expect("officer").name, "Insp. R. Santos")
        }
        other => panic!("certified at 3, got {other:?}"),
    }
    match log.status(&santos, 5) {
        KeyStatus::Revoked {
            revoked_at: 4,
            revoke,
            ..
        } => assert_eq!(revoke.reason, RevokeReason::Compromised),
        other => panic!("revoked at 4, got {other:?}"),
    }
    assert_eq!(log.status(&key_of(&id(1)), 5), KeyStatus::Root);
    // Every statement decodes from its bytes to itself.
    for s in log.statements() {
        assert_eq!(&KeyStatement::decode(s.bytes()).expect("decodes"), s);
    }
    // The same statement again changes nothing.
    let again = log.statements()[2].clone();
    assert_eq!(log.append(again), Ok(Appended::Duplicate));
    assert_eq!(log.len(), 5);
}

#[test]
fn a_thief_with_the_root_key_cannot_rotate_to_a_key_of_its_own() {
    let mut log = incepted();
    let thief = id(66);
    let err = add(&mut log, &id(1), 1, rotation(&thief, &id(67))).expect_err("no rotation");
    assert!(
        matches!(err, KeyLogError::WrongSigner { seq: 1, .. }),
        "{err}"
    );
    // Nor by signing with its own key.
    let err = add(&mut log, &thief, 1, rotation(&thief, &id(67))).expect_err("no rotation");
    assert!(matches!(err, KeyLogError::WrongSigner { .. }), "{err}");
    assert_eq!(log.len(), 1, "a refused statement leaves the log as it was");
    assert_eq!(log.current_root(), key_of(&id(1)));
}

#[test]
fn the_pre_committed_key_recovers_the_log_and_supersedes_what_the_thief_signed() {
    let mut log = incepted();
    add(&mut log, &id(1), 1, node(&id(10))).expect("node key");
    // The thief of root 1 certifies a key of its own: valid, for now.
    add(&mut log, &id(1), 2, officer(&id(66), "Nobody")).expect("thief's officer");
    assert!(matches!(
        log.status(&key_of(&id(66)), 3),
        KeyStatus::Certified { .. }
    ));
    // The agency rotates with the key it kept offline, from position 2.
    let recovery = KeyStatement::sign(
        &id(2),
        &StatementPayload {
            v: 1,
            agency: log.agency(),
            seq: 2,
            prev: Some(log.statements()[1].id()),
            time: T0 + 5,
            st: rotation(&id(2), &id(3)),
        },
    );
    assert_eq!(
        log.append(recovery),
        Ok(Appended::Recovered { superseded: 1 })
    );
    assert_eq!(log.current_root(), key_of(&id(2)));
    assert_eq!(log.status(&key_of(&id(66)), log.len()), KeyStatus::Unknown);
    assert_eq!(log.superseded().len(), 1);
    assert!(
        matches!(
            log.status(&key_of(&id(10)), log.len()),
            KeyStatus::Certified { .. }
        ),
        "what the agency signed before the theft stands"
    );
    // The old root signs nothing any more.
    let err = add(&mut log, &id(1), 6, officer(&id(67), "Nobody")).expect_err("old root");
    assert!(matches!(err, KeyLogError::WrongSigner { .. }), "{err}");
    assert_eq!(
        log.status(&key_of(&id(1)), log.len()),
        KeyStatus::FormerRoot
    );
    // The new root does, and the next rotation needs key 3.
    add(&mut log, &id(2), 7, officer(&id(12), "Insp. M. Reyes")).expect("new root certifies");
    let err = add(&mut log, &id(2), 8, rotation(&id(2), &id(4))).expect_err("reuse");
    assert!(matches!(err, KeyLogError::WrongSigner { .. }), "{err}");
    add(&mut log, &id(3), 9, rotation(&id(3), &id(4))).expect("planned rotation");
}

#[test]
fn two_statements_by_the_root_at_one_position_are_a_fork() {
    let mut log = incepted();
    add(&mut log, &id(1), 1, node(&id(10))).expect("node");
    let other = KeyStatement::sign(
        &id(1),
        &StatementPayload {
            v: 1,
            agency: log.agency(),
            seq: 1,
            prev: Some(log.statements()[0].id()),
            time: T0 + 1,
            st: node(&id(20)),
        },
    );
    let err = log.append(other.clone()).expect_err("fork");
    assert_eq!(
        err,
        KeyLogError::Forked {
            seq: 1,
            held: log.statements()[1].id(),
            other: other.id()
        }
    );
}

/// A stranger (or a thief's rotation to a key of its own) at a position the
/// log holds is refused by the rule it breaks against the statements before
/// it, never as a fork: a fork accuses the agency's root of equivocating,
/// and a stranger's signature proves nothing of the root.
#[test]
fn a_stranger_at_a_held_position_is_not_a_fork_of_the_root() {
    let mut log = incepted();
    add(&mut log, &id(1), 1, node(&id(10))).expect("node");
    let agency = log.agency();
    let at_one = |signer: &Identity, prev, time, st| {
        KeyStatement::sign(
            signer,
            &StatementPayload {
                v: 1,
                agency,
                seq: 1,
                prev: Some(prev),
                time,
                st,
            },
        )
    };
    let inception = log.statements()[0].id();
    let stranger = at_one(&id(9), inception, T0 + 1, node(&id(20)));
    assert!(matches!(
        log.append(stranger),
        Err(KeyLogError::WrongSigner { seq: 1, .. })
    ));
    let thief_rotation = at_one(&id(9), inception, T0 + 1, rotation(&id(9), &id(8)));
    assert!(matches!(
        log.append(thief_rotation),
        Err(KeyLogError::WrongSigner { seq: 1, .. })
    ));
    let unchained = at_one(
        &id(1),
        custodia_protocol::StatementId([7; 32]),
        T0 + 1,
        node(&id(20)),
    );
    assert_eq!(
        log.append(unchained),
        Err(KeyLogError::BrokenChain { seq: 1 })
    );
    let late_recovery = at_one(&id(2), inception, T0 - 1, rotation(&id(2), &id(3)));
    assert_eq!(
        log.append(late_recovery),
        Err(KeyLogError::TimeReversed { seq: 1 })
    );
    assert_eq!(log.len(), 2, "refused statements leave the log as it was");
}

/// What a refusal must be.
type Expect = fn(&KeyLogError) -> bool;

#[test]
fn the_chain_is_checked_statement_by_statement() {
    let log0 = incepted();
    let stmt = |seq: u64, prev, time, signer: &Identity, st| {
        KeyStatement::sign(
            signer,
            &StatementPayload {
                v: 1,
                agency: log0.agency(),
                seq,
                prev,
                time,
                st,
            },
        )
    };
    let head = Some(log0.head());
    let cases: Vec<(KeyStatement, Expect)> = vec![
        (stmt(2, head, T0, &id(1), node(&id(10))), |e| {
            matches!(e, KeyLogError::Gap { seq: 2, len: 1 })
        }),
        (
            stmt(
                1,
                Some(custodia_protocol::StatementId([9; 32])),
                T0,
                &id(1),
                node(&id(10)),
            ),
            |e| matches!(e, KeyLogError::BrokenChain { seq: 1 }),
        ),
        (stmt(1, head, T0 - 1, &id(1), node(&id(10))), |e| {
            matches!(e, KeyLogError::TimeReversed { seq: 1 })
        }),
        (stmt(1, head, T0, &id(9), node(&id(10))), |e| {
            matches!(e, KeyLogError::WrongSigner { .. })
        }),
        (stmt(1, head, T0, &id(1), node(&id(1))), |e| {
            matches!(e, KeyLogError::BadKey { .. })
        }),
        (
            stmt(
                1,
                head,
                T0,
                &id(1),
                Statement::Revoke(Revoke {
                    key: key_of(&id(10)),
                    effective: T0,
                    reason: RevokeReason::Lost,
                }),
            ),
            |e| matches!(e, KeyLogError::BadKey { .. }),
        ),
        (
            stmt(
                1,
                head,
                T0,
                &id(1),
                Statement::Revoke(Revoke {
                    key: key_of(&id(1)),
                    effective: T0,
                    reason: RevokeReason::Compromised,
                }),
            ),
            |e| matches!(e, KeyLogError::BadKey { .. }),
        ),
    ];
    for (s, want) in cases {
        let mut log = log0.clone();
        let err = log.append(s).expect_err("refused");
        assert!(want(&err), "unexpected refusal: {err}");
        assert_eq!(log.len(), 1);
    }
    // Another agency's statement is not this log's.
    let mut log = log0.clone();
    let stranger = KeyStatement::sign(&id(5), &StatementPayload::inception(&id(5), &id(6), T0));
    assert!(matches!(
        log.append(stranger),
        Err(KeyLogError::WrongLog(_))
    ));
    // A key is certified once, and revoked once.
    add(&mut log, &id(1), 1, node(&id(10))).expect("node");
    assert!(matches!(
        add(&mut log, &id(1), 2, officer(&id(10), "Again")),
        Err(KeyLogError::BadKey { .. })
    ));
    let revoke = Statement::Revoke(Revoke {
        key: key_of(&id(10)),
        effective: T0,
        reason: RevokeReason::Retired,
    });
    add(&mut log, &id(1), 3, revoke.clone()).expect("revoke");
    assert!(matches!(
        add(&mut log, &id(1), 4, revoke),
        Err(KeyLogError::BadKey { .. })
    ));
}

/// Takes a statement apart: (protected, payload) as CBOR values.
fn parts(s: &KeyStatement) -> (Vec<u8>, Cbor) {
    let v: Cbor = ciborium::from_reader(&s.bytes()[1..]).expect("cbor");
    let Cbor::Array(items) = v else {
        panic!("array")
    };
    let (Cbor::Bytes(protected), Cbor::Bytes(payload)) = (&items[0], &items[2]) else {
        panic!("items")
    };
    (
        protected.clone(),
        ciborium::from_reader(payload.as_slice()).expect("payload"),
    )
}

fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encode");
    out
}

/// A statement made of these bytes, correctly signed by `signer`.
fn assemble(protected: &[u8], payload: &[u8], signer: &Identity) -> Vec<u8> {
    let sig = signer.sign(&sig_structure(protected, payload));
    let mut out = vec![0xD2];
    ciborium::into_writer(
        &Cbor::Array(vec![
            Cbor::Bytes(protected.to_vec()),
            Cbor::Map(vec![]),
            Cbor::Bytes(payload.to_vec()),
            Cbor::Bytes(sig.to_vec()),
        ]),
        &mut out,
    )
    .expect("encode");
    out
}

fn set(map: &Cbor, key: &str, value: Cbor) -> Cbor {
    let Cbor::Map(m) = map else { panic!("map") };
    let mut m = m.clone();
    match m.iter_mut().find(|(k, _)| k.as_text() == Some(key)) {
        Some(slot) => slot.1 = value,
        None => m.push((Cbor::Text(key.into()), value)),
    }
    // Deterministic order (RFC 8949 §4.2.1): by the keys' encodings.
    m.sort_by_key(|(k, _)| cbor(k));
    Cbor::Map(m)
}

#[test]
fn hostile_bytes_get_the_rule_they_break() {
    let log = incepted();
    let honest = log.statements()[0].clone();
    let (protected, payload) = parts(&honest);
    let signer = id(1);
    // The assembled honest statement is the statement: the helper is sound.
    assert_eq!(
        KeyStatement::decode(&assemble(&protected, &cbor(&payload), &signer)).as_ref(),
        Ok(&honest)
    );
    let check = |bytes: Vec<u8>, want: fn(&KeyLogError) -> bool| {
        let err = KeyStatement::decode(&bytes).expect_err("refused");
        assert!(want(&err), "unexpected: {err}");
    };
    // The polymorphic EdDSA (-8) header of version 1 entries.
    let mut old = protected.clone();
    let alg_at = old.iter().position(|b| *b == 0x32).expect("-19 is 0x32");
    old[alg_at] = 0x27;
    check(
        assemble(&old, &cbor(&payload), &signer),
        |e| matches!(e, KeyLogError::BadHeader(m) if m.contains("-19")),
    );
    // Keys out of order in the payload: not the deterministic encoding.
    let Cbor::Map(m) = &payload else { panic!() };
    let mut shuffled = m.clone();
    shuffled.reverse();
    check(
        assemble(&protected, &cbor(&Cbor::Map(shuffled)), &signer),
        |e| matches!(e, KeyLogError::NonCanonical("payload")),
    );
    // A member the schema does not have.
    check(
        assemble(
            &protected,
            &cbor(&set(&payload, "zz", Cbor::Integer(1.into()))),
            &signer,
        ),
        |e| matches!(e, KeyLogError::Schema(_)),
    );
    // Another version.
    check(
        assemble(
            &protected,
            &cbor(&set(&payload, "v", Cbor::Integer(2.into()))),
            &signer,
        ),
        |e| matches!(e, KeyLogError::Schema(_)),
    );
    // A signature by another key than the kid.
    check(assemble(&protected, &cbor(&payload), &id(9)), |e| {
        matches!(e, KeyLogError::BadSignature)
    });
    // Truncated, untagged, oversized.
    let b = honest.bytes();
    check(b[..b.len() - 1].to_vec(), |e| {
        matches!(e, KeyLogError::Malformed(_))
    });
    check(b[1..].to_vec(), |e| matches!(e, KeyLogError::Malformed(_)));
    check(vec![0xD2; 5000], |e| {
        matches!(e, KeyLogError::Oversize(5000))
    });
    // An officer certified without the officer's name.
    let mut l = log.clone();
    add(&mut l, &id(1), 1, officer(&id(11), "Insp. R. Santos")).expect("officer");
    let (p2, body) = parts(&l.statements()[1]);
    let st = body
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("st")))
        .map(|(_, v)| v.clone())
        .expect("st");
    let certify = st.as_map().expect("map")[0].1.clone();
    let Cbor::Map(c) = certify else { panic!() };
    let without: Vec<_> = c
        .into_iter()
        .filter(|(k, _)| k.as_text() != Some("officer"))
        .collect();
    let bad = set(
        &body,
        "st",
        Cbor::Map(vec![(Cbor::Text("certify".into()), Cbor::Map(without))]),
    );
    check(
        assemble(&p2, &cbor(&bad), &signer),
        |e| matches!(e, KeyLogError::Schema(m) if m.contains("officer")),
    );
    // A name with a terminal escape in it.
    let evil = Statement::Profile(Profile {
        name: "NBI\u{1b}[2J".into(),
        country: "PH".into(),
    });
    let s = KeyStatement::sign(&signer, &StatementPayload::after(&log, T0, evil));
    check(
        s.bytes().to_vec(),
        |e| matches!(e, KeyLogError::Schema(m) if m.contains("control")),
    );
}

#[test]
fn key_ids_are_the_identities_public_keys() {
    assert_eq!(KeyId(id(1).agency().0), key_of(&id(1)));
    assert_eq!(incepted().agency(), id(1).agency());
}

#[test]
fn what_a_recovery_supersedes_is_the_same_whatever_order_it_arrives_in() {
    // The thief of root 1 certifies a key at position 1; the agency
    // rotates to the pre-committed key 2 at position 1.
    let base = incepted();
    let thief = KeyStatement::sign(
        &id(1),
        &StatementPayload::after(&base, T0 + 1, node(&id(66))),
    );
    let recovery = KeyStatement::sign(
        &id(2),
        &StatementPayload::after(&base, T0 + 2, rotation(&id(2), &id(3))),
    );
    let mut thief_first = base.clone();
    assert_eq!(thief_first.append(thief.clone()), Ok(Appended::New));
    assert_eq!(
        thief_first.append(recovery.clone()),
        Ok(Appended::Recovered { superseded: 1 })
    );
    let mut rotation_first = base.clone();
    assert_eq!(rotation_first.append(recovery), Ok(Appended::New));
    assert_eq!(
        rotation_first.append(thief.clone()),
        Ok(Appended::Superseded),
        "not a fork: the two statements at position 1 are by different roots"
    );
    assert_eq!(rotation_first.append(thief), Ok(Appended::Duplicate));
    for log in [&thief_first, &rotation_first] {
        assert_eq!(log.head(), thief_first.head());
        assert_eq!(log.len(), 2);
        assert_eq!(log.superseded().len(), 1);
        assert_eq!(log.status(&key_of(&id(66)), 2), KeyStatus::Unknown);
    }
    // Two different rotations at one position: the new root equivocated.
    let mut log = rotation_first.clone();
    let other = KeyStatement::sign(
        &id(2),
        &StatementPayload {
            v: 1,
            agency: log.agency(),
            seq: 1,
            prev: Some(log.statements()[0].id()),
            time: T0 + 3,
            st: rotation(&id(2), &id(4)),
        },
    );
    assert!(matches!(
        log.append(other),
        Err(KeyLogError::Forked { seq: 1, .. })
    ));
}

/// A signer that is not an in-memory identity: a token in the node. Here a
/// device that lies about its key, or fails.
struct Device {
    claims: KeyId,
    signs_with: Option<Identity>,
}

impl StatementSigner for Device {
    fn key(&self) -> KeyId {
        self.claims
    }
    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        self.signs_with
            .as_ref()
            .map(|k| k.sign(message))
            .ok_or_else(|| SignerError("the token was removed".into()))
    }
}

#[test]
fn a_statement_signed_through_the_signer_trait_is_the_one_sign_makes() {
    let log = incepted();
    let payload = StatementPayload::after(&log, T0 + 1, officer(&id(7), "Insp. R. Santos"));
    let direct = KeyStatement::sign(&id(1), &payload);
    let through = KeyStatement::sign_with(&id(1), &payload).expect("signs");
    assert_eq!(direct.bytes(), through.bytes(), "Ed25519 is deterministic");
    let device = Device {
        claims: key_of(&id(1)),
        signs_with: Some(id(1)),
    };
    let s = KeyStatement::sign_with(&device, &payload).expect("signs");
    assert_eq!(s.bytes(), direct.bytes());
    let mut log = log;
    assert_eq!(log.append(s), Ok(Appended::New));
}

#[test]
fn a_device_that_signs_with_another_key_or_fails_makes_no_statement() {
    let log = incepted();
    let payload = StatementPayload::after(&log, T0 + 1, node(&id(7)));
    let liar = Device {
        claims: key_of(&id(1)),
        signs_with: Some(id(9)),
    };
    assert_eq!(
        KeyStatement::sign_with(&liar, &payload),
        Err(SignWithError::BadSignature(key_of(&id(1))))
    );
    let gone = Device {
        claims: key_of(&id(1)),
        signs_with: None,
    };
    assert!(matches!(
        KeyStatement::sign_with(&gone, &payload),
        Err(SignWithError::Signer(SignerError(m))) if m.contains("removed")
    ));
}

#[test]
fn a_payload_at_an_earlier_position_chains_to_the_statement_before_it() {
    let mut log = incepted();
    add(&mut log, &id(1), 1, node(&id(7))).expect("node");
    add(&mut log, &id(1), 2, officer(&id(8), "Thief's officer")).expect("officer");
    // Neither the inception's place nor a position past the end.
    assert!(StatementPayload::at(&log, 0, T0 + 3, rotation(&id(2), &id(3))).is_none());
    assert!(StatementPayload::at(&log, 4, T0 + 3, rotation(&id(2), &id(3))).is_none());
    assert_eq!(log.committed_next(2), Some(KeyDigest::of(&key_of(&id(2)))));
    assert_eq!(log.root_at(3), Some(key_of(&id(1))));
    let p = StatementPayload::at(&log, 2, T0 + 3, rotation(&id(2), &id(3))).expect("at 2");
    assert_eq!(p.prev, Some(log.statements()[1].id()));
    let s = KeyStatement::sign_with(&id(2), &p).expect("signs");
    assert_eq!(log.append(s), Ok(Appended::Recovered { superseded: 1 }));
    assert_eq!(log.root_at(log.len()), Some(key_of(&id(2))));
    assert_eq!(
        log.committed_next(log.len()),
        Some(KeyDigest::of(&key_of(&id(3))))
    );
}

/// Replays a key history the way a verifier of a version 3 bundle does
/// (SPEC.md §10.5 B8): each statement new, a recovery or superseded.
fn replay(history: &[&KeyStatement]) -> KeyLog {
    let (first, rest) = history.split_first().expect("an inception");
    let mut log = KeyLog::from_inception((*first).clone()).expect("inception");
    for s in rest {
        let got = log.append((*s).clone()).expect("taken");
        assert!(
            matches!(
                got,
                Appended::New | Appended::Recovered { .. } | Appended::Superseded
            ),
            "{got:?}"
        );
    }
    log
}

#[test]
fn a_key_history_replays_to_the_log_and_what_its_recoveries_superseded() {
    // The thief of root 1 signs two statements (positions 2 and 3); the
    // agency recovers at 2 with key 2 and certifies an officer at 3. A
    // store keeps the log and the superseded statements apart, without
    // their place.
    let mut thief_branch = incepted();
    add(&mut thief_branch, &id(1), 1, node(&id(10))).expect("node key");
    let base = thief_branch.clone();
    add(&mut thief_branch, &id(1), 2, officer(&id(66), "Nobody")).expect("thief 1");
    add(&mut thief_branch, &id(1), 3, node(&id(67))).expect("thief 2");
    let mut log = base.clone();
    add(&mut log, &id(2), 4, rotation(&id(2), &id(3))).expect("recovery");
    add(&mut log, &id(2), 5, officer(&id(12), "Insp. M. Reyes")).expect("new officer");
    let thief: Vec<KeyStatement> = thief_branch.statements()[2..].to_vec();
    assert!(log.superseded().is_empty());
    assert_eq!(
        log.history().len(),
        4,
        "a log without superseded statements is its history"
    );

    // Given back in any order, with a statement that fits nowhere (another
    // agency's) and one of the log itself: only the thief's two are kept.
    let stranger = KeyStatement::sign(&id(9), &StatementPayload::inception(&id(9), &id(8), T0));
    let given = [
        thief[1].clone(),
        stranger,
        thief[0].clone(),
        log.statements()[1].clone(),
    ];
    let kept = log.clone().with_superseded(&given);
    assert_eq!((kept.head(), kept.len()), (log.head(), log.len()));
    assert_eq!(kept.superseded().len(), 2);
    let history = kept.history();
    assert_eq!(history.len(), 6);
    // The thief's branch comes before the recovery that supersedes it.
    let at = |s: &KeyStatement| history.iter().position(|h| h.id() == s.id());
    assert!(at(&thief[0]) < at(&thief[1]) && at(&thief[1]) < at(&log.statements()[2]));
    let replayed = replay(&history);
    assert_eq!((replayed.head(), replayed.len()), (log.head(), log.len()));
    assert_eq!(replayed.superseded().len(), 2);

    // The branch's first statement alone (a node that learnt it after the
    // recovery): it takes its place before the recovery, like a branch.
    let late = log.clone().with_superseded(&thief[..1]);
    let history = late.history();
    assert_eq!(history.len(), 5);
    let replayed = replay(&history);
    assert_eq!(
        (replayed.head(), replayed.superseded().len()),
        (log.head(), 1)
    );
    // A second statement of the branch without the first fits nowhere.
    let orphan = log.clone().with_superseded(&thief[1..]);
    assert!(orphan.superseded().is_empty());
    assert_eq!(orphan.history().len(), 4);
}
