//! The COSE working group's Sign1 examples (shared/conformance), as an
//! outside test suite for the COSE_Sign1 layer under Custodia's entries.
//!
//! - eddsa-sig-01 (Ed25519): the Sig_structure we build equals the
//!   example's `ToBeSign_hex`, and the signature verifies with `x_hex`.
//! - eddsa-sig-02 (Ed448) and the ES256 examples: refused, with an error
//!   that says why (Custodia accepts EdDSA/Ed25519 only); the deliberately
//!   broken ones are refused for their break where it is structural.

use std::path::PathBuf;

use custodia_protocol::{AgencyId, CoseError, CoseSign1};
use serde_json::Value;

fn dir() -> Option<PathBuf> {
    let d =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/cose-wg-examples");
    d.is_dir().then_some(d)
}

fn load(rel: &str) -> Value {
    let d = dir().expect("shared/conformance/cose-wg-examples is beside the project");
    serde_json::from_str(&std::fs::read_to_string(d.join(rel)).expect("read")).expect("json")
}

fn message(v: &Value) -> Vec<u8> {
    hex::decode(v["output"]["cbor"].as_str().expect("cbor")).expect("hex")
}

fn key(v: &Value) -> Option<AgencyId> {
    v["input"]["sign0"]["key"]["x_hex"]
        .as_str()
        .and_then(|h| AgencyId::from_hex(h).ok())
}

#[test]
fn eddsa_ed25519_example_builds_the_same_to_be_signed_and_verifies() {
    if dir().is_none() {
        eprintln!("shared/conformance not present; skipping");
        return;
    }
    let v = load("eddsa-examples/eddsa-sig-01.json");
    let m = CoseSign1::decode(&message(&v)).expect("decodes");
    assert!(m.tagged);
    let tbs = hex::encode_upper(m.to_be_signed(&[]));
    assert_eq!(
        tbs,
        v["intermediates"]["ToBeSign_hex"].as_str().expect("tbs")
    );
    let k = key(&v).expect("Ed25519 key");
    assert_eq!(m.verify_ed25519(&k, &[]), Ok(()));
    // One flipped signature bit, and another key, are refused.
    let mut bad = m.clone();
    bad.signature[10] ^= 1;
    assert_eq!(bad.verify_ed25519(&k, &[]), Err(CoseError::BadSignature));
    let other = custodia_protocol::Identity::from_seed([1; 32]).agency();
    assert_eq!(m.verify_ed25519(&other, &[]), Err(CoseError::BadSignature));
}

#[test]
fn ed448_and_es256_examples_are_refused_with_a_reason() {
    if dir().is_none() {
        eprintln!("shared/conformance not present; skipping");
        return;
    }
    let ed448 = load("eddsa-examples/eddsa-sig-02.json");
    let m = CoseSign1::decode(&message(&ed448)).expect("well-formed");
    // Ed448 keys are 57 bytes: there is no Ed25519 key to verify with.
    assert!(key(&ed448).is_none(), "an Ed448 key is not an agency key");
    let err = m
        .verify_ed25519(&AgencyId([9; 32]), &[])
        .expect_err("refused");
    assert!(!err.to_string().is_empty());

    let d = dir().expect("dir");
    let mut seen = 0;
    for f in std::fs::read_dir(d.join("sign1-tests")).expect("dir") {
        let path = f.expect("entry").path();
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let failures = v["input"]["failures"].clone();
        let err = match CoseSign1::decode(&message(&v)) {
            Err(e) => e,
            Ok(m) => m
                .verify_ed25519(&AgencyId([9; 32]), &[])
                .expect_err("ES256 is never accepted"),
        };
        if failures.get("ChangeCBORTag").is_some() {
            assert!(matches!(err, CoseError::WrongTag(998)), "{name}: {err}");
        } else {
            assert!(
                matches!(err, CoseError::UnsupportedAlgorithm(_)),
                "{name}: refused for its algorithm, got {err}"
            );
        }
        seen += 1;
    }
    assert_eq!(seen, 9);
}
