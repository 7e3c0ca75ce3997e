//! Which agency a TLS certificate key speaks for (SPEC.md §9.1): the agency
//! id while it is the root in force, or a node key that the agency's log
//! (held, with the statements the certificate carries) certifies. Most
//! tests are what a thief of a key or a hostile member tries.

use std::collections::BTreeMap;

use custodia_protocol::keylog::{key_of, KeyLog, KeyRole, KeyStatement, RevokeReason};
use custodia_protocol::keylog::{Root, Statement, StatementPayload};
use custodia_protocol::transport::{
    carried_for, decode_carried, encode_carried, speaks_for, Refusal, MAX_CARRIED,
    MAX_CARRIED_BYTES,
};
use custodia_protocol::*;

use common::{id, Agency, T0};

mod common;

const HOUR: u64 = 3_600_000;

fn held(agencies: &[&Agency]) -> BTreeMap<AgencyId, KeyLog> {
    agencies
        .iter()
        .map(|a| (a.agency(), a.log.clone()))
        .collect()
}

/// Every statement of `log`, as a certificate would carry them.
fn every_statement(log: &KeyLog) -> Vec<Vec<u8>> {
    log.statements()
        .iter()
        .map(|s| s.bytes().to_vec())
        .collect()
}

/// `key` judged by a node pinning `pinned`, holding `logs`, at T0 + 1 h.
fn judge(
    key: &Identity,
    carried: &[Vec<u8>],
    pinned: &[AgencyId],
    logs: &BTreeMap<AgencyId, KeyLog>,
) -> Result<AgencyId, Refusal> {
    speaks_for(
        &key_of(key),
        carried,
        &|a: &AgencyId| pinned.contains(a),
        logs,
        T0 + HOUR,
    )
}

#[test]
fn a_pinned_agency_key_speaks_for_its_agency_until_its_root_is_rotated_away() {
    let mut a = Agency::new(1);
    let none = BTreeMap::new();
    assert_eq!(judge(&a.root, &[], &[a.agency()], &none), Ok(a.agency()));
    assert_eq!(
        judge(&a.root, &[], &[a.agency()], &held(&[&a])),
        Ok(a.agency())
    );
    // Unpinned, it is a stranger's key.
    assert_eq!(judge(&a.root, &[], &[], &none), Err(Refusal::Uncertified));
    // The root moves to the pre-committed key (101): whoever still holds
    // the agency key (a thief, the reason for the rotation) is refused by
    // every partner that holds the rotation.
    let next = id(101);
    let rotation = KeyStatement::sign(
        &next,
        &StatementPayload::after(
            &a.log,
            T0,
            Statement::RotateRoot(Root {
                root: keylog::PublicKey::ed25519(key_of(&next)),
                next: KeyDigest::of(&key_of(&id(102))),
            }),
        ),
    );
    a.log.append(rotation).expect("rotation");
    assert_eq!(
        judge(&a.root, &[], &[a.agency()], &held(&[&a])),
        Err(Refusal::FormerRoot)
    );
    // A partner that has not yet received the rotation judges by what it
    // holds.
    assert_eq!(judge(&a.root, &[], &[a.agency()], &none), Ok(a.agency()));
    // The new root is not a transport key: roots stay off the wire.
    assert_eq!(
        judge(&next, &[], &[a.agency()], &held(&[&a])),
        Err(Refusal::Uncertified)
    );
}

#[test]
fn a_node_key_carrying_its_certification_speaks_for_its_agency_at_a_partner_without_the_log() {
    let mut a = Agency::new(1);
    let node = id(11);
    a.certify(&node, KeyRole::Node, None);
    let carried = carried_for(&a.log, &key_of(&node)).expect("certified");
    assert_eq!(carried.len(), 2, "inception and certification");
    let pinned = [a.agency()];
    assert_eq!(
        judge(&node, &carried, &pinned, &BTreeMap::new()),
        Ok(a.agency())
    );
    assert_eq!(
        judge(&node, &carried, &pinned, &held(&[&a])),
        Ok(a.agency())
    );
    // Without the statements, a partner that does not hold them cannot
    // tell whose key it is.
    assert_eq!(
        judge(&node, &[], &pinned, &BTreeMap::new()),
        Err(Refusal::Uncertified)
    );
    // Nor does a certification make a key speak for an agency not pinned.
    assert_eq!(
        judge(&node, &carried, &[], &BTreeMap::new()),
        Err(Refusal::NotPinned)
    );
}

#[test]
fn a_node_key_the_partner_holds_revoked_is_refused_whatever_it_carries() {
    for reason in [
        RevokeReason::Retired,
        RevokeReason::Lost,
        RevokeReason::Compromised,
    ] {
        let mut a = Agency::new(1);
        let node = id(11);
        a.certify(&node, KeyRole::Node, None);
        // The thief kept the certificate's statements from before.
        let carried = carried_for(&a.log, &key_of(&node)).expect("certified");
        a.revoke(&node, reason, T0);
        assert_eq!(carried_for(&a.log, &key_of(&node)), None);
        assert_eq!(
            judge(&node, &carried, &[a.agency()], &held(&[&a])),
            Err(Refusal::Revoked(reason)),
            "{reason:?}"
        );
    }
}

#[test]
fn another_agencys_statements_do_not_make_a_strangers_key_speak_for_it() {
    let mut a = Agency::new(1);
    let node = id(11);
    a.certify(&node, KeyRole::Node, None);
    let carried = carried_for(&a.log, &key_of(&node)).expect("certified");
    let stranger = id(66);
    assert_eq!(
        judge(&stranger, &carried, &[a.agency()], &BTreeMap::new()),
        Err(Refusal::Uncertified)
    );
}

#[test]
fn an_officer_key_is_not_a_transport_key() {
    let mut a = Agency::new(1);
    let officer = id(21);
    a.certify(&officer, KeyRole::Officer, None);
    // Carried by hand, as a hostile node would.
    let carried = every_statement(&a.log);
    assert_eq!(carried_for(&a.log, &key_of(&officer)), None);
    assert_eq!(
        judge(&officer, &carried, &[a.agency()], &BTreeMap::new()),
        Err(Refusal::NotANodeKey)
    );
}

#[test]
fn a_node_key_outside_its_validity_is_refused() {
    let mut a = Agency::new(1);
    let node = id(11);
    // Valid until T0 + 1 min; judged at T0 + 1 h (beyond the skew).
    a.certify(&node, KeyRole::Node, Some(T0 + 60_000));
    let carried = carried_for(&a.log, &key_of(&node)).expect("certified");
    assert_eq!(
        judge(&node, &carried, &[a.agency()], &BTreeMap::new()),
        Err(Refusal::OutsideValidity)
    );
}

#[test]
fn a_forged_or_foreign_carried_statement_is_refused() {
    let mut a = Agency::new(1);
    let node = id(11);
    a.certify(&node, KeyRole::Node, None);
    let good = carried_for(&a.log, &key_of(&node)).expect("certified");
    let pinned = [a.agency()];

    // A byte of the certification's signature changed.
    let mut forged = good.clone();
    let last = forged.last_mut().expect("two");
    let n = last.len();
    last[n - 1] ^= 1;
    assert!(matches!(
        judge(&node, &forged, &pinned, &BTreeMap::new()),
        Err(Refusal::Carried(_))
    ));

    // A hostile member B certifies A's node key in B's own log: carried
    // as B's, the key speaks for B (B vouches for it), never for A; and
    // carried as A's it is A's only by A's statements.
    let mut b = Agency::new(2);
    b.certify(&node, KeyRole::Node, None);
    let as_b = carried_for(&b.log, &key_of(&node)).expect("certified by B");
    assert_eq!(
        judge(&node, &as_b, &[a.agency(), b.agency()], &BTreeMap::new()),
        Ok(b.agency())
    );
    assert_eq!(
        judge(&node, &good, &[a.agency(), b.agency()], &BTreeMap::new()),
        Ok(a.agency())
    );

    // The certification alone, without the statements before it, cannot
    // be checked by a partner that holds none of them.
    assert!(matches!(
        judge(&node, &good[1..], &pinned, &BTreeMap::new()),
        Err(Refusal::Carried(_))
    ));
    // But a partner holding the prefix can.
    let mut prefix = Agency::new(1);
    prefix.log = KeyLog::from_inception(a.log.statements()[0].clone()).expect("inception");
    assert_eq!(
        judge(&node, &good[1..], &pinned, &held(&[&prefix])),
        Ok(a.agency())
    );
}

#[test]
fn a_certificate_carries_a_bounded_run_of_statements_ending_at_the_certification() {
    let mut a = Agency::new(1);
    for n in 0..(MAX_CARRIED as u8 + 8) {
        a.certify(&id(30 + n), KeyRole::Officer, None);
    }
    let node = id(11);
    a.certify(&node, KeyRole::Node, None);
    a.certify(&id(12), KeyRole::Officer, None);
    let carried = carried_for(&a.log, &key_of(&node)).expect("certified");
    assert!(carried.len() <= MAX_CARRIED);
    assert!(carried.iter().map(Vec::len).sum::<usize>() <= MAX_CARRIED_BYTES);
    assert_ne!(carried[0].as_slice(), a.log.statements()[0].bytes());
    let cert_at = a.log.len() - 2;
    assert_eq!(
        carried.last().map(Vec::as_slice),
        Some(a.log.statements()[cert_at as usize].bytes())
    );
    // A partner holding the log's beginning checks it.
    let mut partner = Agency::new(1);
    partner.log = a.log.clone();
    assert_eq!(
        judge(&node, &carried, &[a.agency()], &held(&[&partner])),
        Ok(a.agency())
    );
    // One without it cannot: the run does not start at the inception.
    assert!(judge(&node, &carried, &[a.agency()], &BTreeMap::new()).is_err());

    // More than the bound is refused before anything is checked.
    let all = every_statement(&a.log);
    assert_eq!(
        judge(&node, &all, &[a.agency()], &held(&[&a])),
        Err(Refusal::TooManyCarried)
    );
}

#[test]
fn the_carried_statements_encoding_is_strict() {
    let items = vec![vec![1u8, 2, 3], vec![4u8]];
    let cbor = encode_carried(&items);
    assert_eq!(decode_carried(&cbor), Ok(items));
    // Not an array of byte strings; not deterministic; trailing bytes.
    for bad in [
        vec![0x81, 0x01],
        vec![0x9f, 0x41, 0x00, 0xff],
        vec![0x81, 0x58, 0x01, 0x00],
        [cbor.clone(), vec![0x00]].concat(),
        vec![],
    ] {
        assert!(
            matches!(decode_carried(&bad), Err(Refusal::Malformed(_))),
            "{bad:02x?}"
        );
    }
    let many = vec![vec![0u8]; MAX_CARRIED + 1];
    assert_eq!(
        decode_carried(&encode_carried(&many)),
        Err(Refusal::TooManyCarried)
    );
}

#[test]
fn a_carried_run_must_end_with_the_presented_keys_certification() {
    let mut a = Agency::new(1);
    let node = id(11);
    a.certify(&node, KeyRole::Node, None);
    let good = carried_for(&a.log, &key_of(&node)).expect("certified");
    a.certify(&id(12), KeyRole::Officer, None);
    // A member carries statements past its key's certification (to grow
    // its log at its partners on every handshake): refused.
    let past = every_statement(&a.log);
    assert_eq!(
        judge(&node, &past, &[a.agency()], &BTreeMap::new()),
        Err(Refusal::Uncertified)
    );
    // A stranger with a key of its own replays the agency's statements in
    // another order: refused at the last one, before any log is copied.
    let stranger = id(66);
    let reordered: Vec<Vec<u8>> = good.iter().rev().cloned().collect();
    assert_eq!(
        judge(&stranger, &reordered, &[a.agency()], &held(&[&a])),
        Err(Refusal::Uncertified)
    );
    assert_eq!(
        judge(&node, &reordered, &[a.agency()], &held(&[&a])),
        Err(Refusal::Uncertified)
    );
}
