//! Runs the spec's test vectors (`spec/vectors/entries.json`) by name.
//!
//! The vectors are produced from the spec by an independent Python program
//! (`spec/vectors/generate.py`); this test only reads them. A vector of
//! format version 2 carries the key logs (`keylogs`) its validator holds
//! before it replays the entries (SPEC.md Appendix A.1).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use custodia_protocol::keylog::{KeyLog, KeyStatement};
use custodia_protocol::{AgencyId, Applied, Entry, EntryId, Validator, WithheldPosition};
use serde_json::Value;

fn load() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/entries.json");
    let text = std::fs::read_to_string(path).expect("spec/vectors/entries.json is readable");
    let doc: Value = serde_json::from_str(&text).expect("vectors are JSON");
    doc["vectors"].as_array().expect("a vectors array").clone()
}

/// The key logs a vector's validator holds, by agency: each log's
/// statements decoded (K1 to K5) and fed in order from its inception.
fn key_logs(v: &Value) -> BTreeMap<AgencyId, KeyLog> {
    let name = v["name"].as_str().expect("name");
    let mut logs = BTreeMap::new();
    for statements in v["keylogs"].as_array().into_iter().flatten() {
        let mut log: Option<KeyLog> = None;
        for (i, s) in statements.as_array().expect("a key log").iter().enumerate() {
            let bytes = hex::decode(s.as_str().expect("hex statement")).expect("hex");
            let s = KeyStatement::decode(&bytes)
                .unwrap_or_else(|e| panic!("{name}: key statement {i}: {e}"));
            match log.as_mut() {
                None => {
                    log = Some(
                        KeyLog::from_inception(s)
                            .unwrap_or_else(|e| panic!("{name}: inception: {e}")),
                    )
                }
                Some(l) => {
                    l.append(s)
                        .unwrap_or_else(|e| panic!("{name}: key statement {i}: {e}"));
                }
            }
        }
        let log = log.unwrap_or_else(|| panic!("{name}: an empty key log"));
        assert!(
            logs.insert(log.agency(), log).is_none(),
            "{name}: two key logs of one agency"
        );
    }
    logs
}

/// Feeds one vector's entries to a fresh validator. Returns the ids of the
/// accepted entries and those the state reports as concurrent with a
/// removal, or the index and class of the first failure.
#[allow(clippy::type_complexity)]
fn run(v: &Value, kind: Kind) -> Result<(Vec<EntryId>, Vec<EntryId>), (usize, String, String)> {
    let now = v["now"].as_u64().expect("now");
    let keys = key_logs(v);
    let mut validator = match kind {
        Kind::Full => Validator::new(),
        Kind::Lean => Validator::lean(),
        Kind::Spilled => Validator::lean().with_spill(Arc::new(common::TempFiles), 1),
    };
    let mut ids = Vec::new();
    for (i, e) in v["entries"].as_array().expect("entries").iter().enumerate() {
        let result = if let Some(w) = e.get("withheld") {
            let pos = WithheldPosition {
                author: AgencyId::from_hex(w[0].as_str().expect("author")).expect("hex"),
                seq: w[1].as_u64().expect("seq"),
                id: EntryId::from_hex(w[2].as_str().expect("id")).expect("hex"),
            };
            validator.apply_withheld(pos).map(|_| pos.id)
        } else {
            let bytes = hex::decode(e.as_str().expect("hex entry")).expect("hex");
            Entry::decode(&bytes).and_then(|entry| {
                validator.apply_keyed(&entry, now, &keys).map(|a| {
                    assert_ne!(a, Applied::Revealed);
                    entry.id()
                })
            })
        };
        match result {
            Ok(id) => ids.push(id),
            Err(r) => {
                let class = r.kind.receiver_class().as_str();
                return Err((i, r.class().to_string(), format!("{r} [{class}]")));
            }
        }
    }
    let late = validator.after_removal().iter().map(|x| x.entry).collect();
    assert_eq!(validator.failure(), None);
    Ok((ids, late))
}

/// Which validator [`run`] uses.
#[derive(Clone, Copy)]
enum Kind {
    /// Keeps every entry.
    Full,
    /// Keeps a record of each.
    Lean,
    /// Keeps one record in memory, the others in temporary files.
    Spilled,
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let vectors = load();
    assert!(vectors.len() >= 30, "expected a full vector set");
    let mut failures = Vec::new();
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let expect = v["expect"].as_str().expect("expect");
        // The lean validator (what nodes use) must reach the same verdicts,
        // with its older records in memory or out of it.
        let lean = run(v, Kind::Lean);
        let full = run(v, Kind::Full);
        if lean != full {
            failures.push(format!("{name}: lean and full validators disagree"));
        }
        if run(v, Kind::Spilled) != full {
            failures.push(format!(
                "{name}: a validator with its records out of memory disagrees"
            ));
        }
        match (full, expect) {
            (Ok((ids, late)), "valid") => {
                let hexes = |key: &str| -> Vec<String> {
                    v[key]
                        .as_array()
                        .unwrap_or_else(|| panic!("{name}: {key}"))
                        .iter()
                        .map(|x| x.as_str().expect("hex").to_string())
                        .collect()
                };
                let got: Vec<String> = ids.iter().map(|i| i.to_hex()).collect();
                if hexes("ids") != got {
                    failures.push(format!("{name}: ids differ"));
                }
                let got: Vec<String> = late.iter().map(|i| i.to_hex()).collect();
                if hexes("after_removal") != got {
                    failures.push(format!(
                        "{name}: concurrent with removal: got {got:?}, expected {:?}",
                        hexes("after_removal")
                    ));
                }
            }
            (Ok(_), _) => failures.push(format!("{name}: accepted, expected {expect}")),
            (Err((i, _, msg)), "valid") => {
                failures.push(format!("{name}: entry {i} refused ({msg}), expected valid"))
            }
            (Err((i, class, msg)), _) => {
                let at = v["failing_index"].as_u64().expect("failing_index") as usize;
                if class != expect || i != at {
                    failures.push(format!(
                        "{name}: entry {i} failed with {class} ({msg}); expected {expect} at {at}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_refusal_has_its_receiver_class_of_spec_8_6() {
    // SPEC.md §8.6's table, by the vectors' class names.
    let class_of = |name: &str| match name {
        "equivocation" => "equivocation",
        "sequence-gap" | "unknown-reference" | "key-log-pending" => "out of order",
        "from-the-future" => "transient",
        _ => "permanent",
    };
    let mut seen = std::collections::BTreeSet::new();
    for v in load() {
        if let Err((_, name, message)) = run(&v, Kind::Full) {
            let want = class_of(&name);
            assert!(
                message.ends_with(&format!("[{want}]")),
                "{}: {name} is {want} in §8.6, got {message}",
                v["name"]
            );
            seen.insert(want);
        }
    }
    assert_eq!(seen.len(), 4, "every class of §8.6 has a vector: {seen:?}");
}

#[test]
fn every_rule_has_a_failing_vector() {
    let vectors = load();
    let classes = [
        "oversize",
        "malformed",
        "non-canonical",
        "bad-header",
        "unsupported-version",
        "schema",
        "author-mismatch",
        "bad-signature",
        "wrong-case",
        "equivocation",
        "sequence-gap",
        "prev-mismatch",
        "unknown-reference",
        "not-a-member",
        "not-authorized",
        "custody-violation",
        "time-violation",
        "from-the-future",
        "version-mismatch",
        "key-log-pending",
        "uncertified-key",
        "revoked-key",
        "key-role",
        "key-validity",
    ];
    for class in classes {
        assert!(
            vectors.iter().any(|v| v["expect"] == class),
            "no vector for class {class}"
        );
    }
    let failing = vectors.iter().filter(|v| v["expect"] != "valid").count();
    assert!(failing * 2 > vectors.len(), "most vectors are failures");
}

/// A second, independent CBOR implementation (ciborium) decodes every entry
/// of the valid vectors to the same structure: the format does not depend on
/// serde_cbor.
#[test]
fn ciborium_decodes_every_valid_entry() {
    use ciborium::value::Value as C;
    for v in load().iter().filter(|v| v["expect"] == "valid") {
        for e in v["entries"].as_array().expect("entries") {
            let Some(h) = e.as_str() else { continue };
            let bytes = hex::decode(h).expect("hex");
            let outer: C = ciborium::de::from_reader(bytes.as_slice()).expect("ciborium decodes");
            let C::Tag(18, inner) = outer else {
                panic!("tag 18")
            };
            let C::Array(parts) = *inner else {
                panic!("array")
            };
            assert_eq!(parts.len(), 4);
            let payload = parts[2].as_bytes().expect("payload bstr");
            let p: C = ciborium::de::from_reader(payload.as_slice()).expect("payload decodes");
            // Re-encoding with ciborium gives the same bytes: deterministic.
            let mut again = Vec::new();
            ciborium::ser::into_writer(&p, &mut again).expect("encode");
            assert_eq!(
                &again, payload,
                "ciborium re-encodes the payload identically"
            );
            let entry = Entry::decode(&bytes).expect("valid entry");
            let map = p.as_map().expect("map");
            let author = map
                .iter()
                .find(|(k, _)| k.as_text() == Some("author"))
                .and_then(|(_, v)| v.as_bytes())
                .expect("author");
            assert_eq!(author.as_slice(), entry.author().as_bytes());
        }
    }
}

/// The vectors of format version 2 (SPEC.md §5.7, V19 to V24), by name and
/// expected outcome: none may go missing from the file unnoticed.
#[test]
fn format_version_2_vectors_are_all_there() {
    let vectors = load();
    let want = [
        ("v2-officer-and-node-keys", "valid"),
        ("v2-after-root-rotation", "valid"),
        ("v2-revoked-after-cited-prefix", "valid"),
        ("v2-key-validity-at-limits", "valid"),
        ("v2-prefix-read-in-recovered-log", "valid"),
        ("v2-uncertified-stranger-key", "uncertified-key"),
        ("v2-uncertified-root-as-kid", "uncertified-key"),
        ("v2-uncertified-former-root", "uncertified-key"),
        ("v2-uncertified-other-agencys-officer", "uncertified-key"),
        ("v2-uncertified-certified-after-prefix", "uncertified-key"),
        ("v2-uncertified-superseded-certification", "uncertified-key"),
        ("v2-revoked-retired", "revoked-key"),
        ("v2-revoked-lost", "revoked-key"),
        ("v2-revoked-compromised", "revoked-key"),
        ("v2-key-role-note-by-node-key", "key-role"),
        ("v2-key-role-genesis-by-node-key", "key-role"),
        ("v2-key-role-witness-by-officer-key", "key-role"),
        ("v2-key-validity-before-not-before", "key-validity"),
        ("v2-key-validity-after-not-after", "key-validity"),
        ("v2-key-log-pending", "key-log-pending"),
        ("v2-key-log-pending-no-log", "key-log-pending"),
        ("v2-key-log-pending-after-recovery", "key-log-pending"),
        ("v2-version-mismatch-v1-in-v2-case", "version-mismatch"),
        ("v2-version-mismatch-v2-in-v1-case", "version-mismatch"),
        ("v2-bad-header-v2-alg-eddsa", "bad-header"),
        ("v2-bad-header-v1-alg-ed25519", "bad-header"),
        ("v2-unsupported-version-alg-ed25519", "unsupported-version"),
        ("v2-schema-keys-missing", "schema"),
        ("v2-schema-keys-zero", "schema"),
        ("v2-schema-keys-in-v1", "schema"),
        ("v2-bad-signature-root-signs-for-officer", "bad-signature"),
        ("v2-bad-header-before-schema", "bad-header"),
        (
            "v2-version-mismatch-before-equivocation",
            "version-mismatch",
        ),
        ("v2-uncertified-before-not-a-member", "uncertified-key"),
    ];
    for (name, expect) in want {
        let v = vectors
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name}"));
        assert_eq!(v["expect"], expect, "{name}");
    }
    let in_file = vectors
        .iter()
        .filter(|v| v["name"].as_str().is_some_and(|n| n.starts_with("v2-")))
        .count();
    assert_eq!(in_file, want.len(), "a v2- vector not listed here");
}

/// SPEC.md §8.6: the entry of `v2-revoked-after-cited-prefix` is valid by
/// the rules (its cited prefix does not hold the revocation), and a
/// receiver that holds the revocation refuses it as a new entry, since it
/// is dated at or after the revocation's effective time; the entries before
/// it are not refused.
#[test]
fn a_receiver_refuses_the_entry_signed_after_a_later_revocation_as_new() {
    let vectors = load();
    let v = vectors
        .iter()
        .find(|v| v["name"] == "v2-revoked-after-cited-prefix")
        .expect("the vector");
    let keys = key_logs(v);
    let entries: Vec<Entry> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| Entry::decode(&hex::decode(e.as_str().expect("hex")).expect("hex")).expect("v"))
        .collect();
    let (last, before) = entries.split_last().expect("entries");
    for e in before {
        assert_eq!(custodia_protocol::refuse_revoked(e, &keys), Ok(()));
    }
    let r = custodia_protocol::refuse_revoked(last, &keys).expect_err("refused as new");
    assert_eq!((r.rule(), r.class()), (22, "revoked-key"), "{r}");
}
