//! Replays the fuzzers' inputs in the normal test suite, on stable Rust:
//! every seed of `protocol/fuzz/corpus/<target>/` and every input a fuzzer
//! once crashed on, kept in `tests/fuzz-regressions/<target>/`. Each must
//! give a typed result without a panic (see `fuzz_checks/mod.rs` for what
//! is checked). Also runs the seed corpora's generator (`write_fuzz_seeds`).

mod fuzz_checks;
// The hostile bundles `custodia verify` is measured on (bench/RESULTS.md).
#[path = "../../cli/tests/common/hostile.rs"]
#[allow(dead_code)]
mod hostile;

use std::path::{Path, PathBuf};

use custodia_protocol::bundle::{self, Element};
use custodia_protocol::cbor;
use custodia_protocol::*;
use fuzz_checks::Chunk;
use serde_json::Value;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// A fuzz target's check, its result dropped.
type Check = fn(&[u8]);

/// The protocol's fuzz targets and their checks.
const TARGETS: [(&str, Check); 7] = [
    ("entry_decode", |d| drop(fuzz_checks::entry_decode(d))),
    ("validate", |d| drop(fuzz_checks::validate(d))),
    ("sync_message", |d| drop(fuzz_checks::sync_message(d))),
    ("equivocation_proof", |d| {
        drop(fuzz_checks::equivocation_proof(d))
    }),
    ("bundle", |d| drop(fuzz_checks::bundle(d))),
    ("trust_list", |d| drop(fuzz_checks::trust_list(d))),
    ("key_log", |d| drop(fuzz_checks::key_log(d))),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_and_every_former_crash_gives_a_typed_result() {
    let mut total = 0;
    for (target, check) in TARGETS {
        let seeds = files(&Path::new(MANIFEST).join("fuzz/corpus").join(target));
        assert!(!seeds.is_empty(), "no seed corpus for {target}");
        let crashes = files(
            &Path::new(MANIFEST)
                .join("tests/fuzz-regressions")
                .join(target),
        );
        for f in seeds.iter().chain(&crashes) {
            let data = std::fs::read(f).expect("readable");
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{target}: {} panics", f.display());
            total += 1;
        }
    }
    assert!(total > 50, "only {total} inputs");
}

/// Fuzzing regression (`entry_decode`, `bstr-for-tstr-actor`): serde took
/// a CBOR byte string where the schema has a text string, so one payload
/// had two encodings (two entry ids) and this implementation accepted
/// entries the spec's schema (V6) refuses. Now refused as `schema`, even
/// when correctly signed, and likewise in sync messages and proofs.
#[test]
fn a_byte_string_for_a_text_string_is_a_schema_error() {
    let alpha = fuzz_checks::test_key("alpha");
    let payload = Payload::genesis(
        alpha.agency(),
        1_795_000_000_000,
        Tlp::Amber,
        CaseOpened {
            title: "Lantern-X".into(),
            reference: "R".into(),
            jurisdiction: None,
            name: "Alpha".into(),
            country: "PH".into(),
        },
    );
    let mut bytes = cbor::to_vec(&payload);
    let at = bytes
        .windows(10)
        .position(|w| w == b"\x69Lantern-X")
        .expect("the title");
    bytes[at] = 0x49; // the same 9 bytes as a byte string
    let protected = protected_header(&alpha.agency());
    let signature = alpha.sign(&sig_structure(&protected, &bytes));
    let mut entry = vec![0xD2, 0x84, 0x58, protected.len() as u8];
    entry.extend_from_slice(&protected);
    entry.extend_from_slice(&[0xA0, 0x58, bytes.len() as u8]);
    entry.extend_from_slice(&bytes);
    entry.extend_from_slice(&[0x58, 0x40]);
    entry.extend_from_slice(&signature);
    let r = Entry::decode(&entry).expect_err("a bstr title is refused");
    assert_eq!(r.class(), "schema", "{r}");
    // The crashing input itself (invalid signature, bstr "actor").
    let crash = std::fs::read(format!(
        "{MANIFEST}/tests/fuzz-regressions/entry_decode/bstr-for-tstr-actor"
    ))
    .expect("regression file");
    let r = Entry::decode(&crash).expect_err("refused");
    assert_eq!(r.class(), "schema", "{r}");
    // A sync error message whose text is a byte string.
    let m = Message::Error(ErrorMessage {
        code: 2,
        message: "xyz".into(),
    })
    .to_frame();
    let mut body = m[4..].to_vec();
    let at = body.windows(4).position(|w| w == b"\x63xyz").expect("text");
    body[at] = 0x43;
    assert!(matches!(
        Message::decode(&body),
        Err(SyncError::Malformed(_))
    ));
}

// ---------------------------------------------------------------------
// Seed corpora.

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{MANIFEST}/../spec/vectors/entries.json"))
        .expect("entries.json");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    doc["vectors"].as_array().expect("vectors").clone()
}

fn bundle_vectors() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(format!("{MANIFEST}/../spec/vectors/bundles.json"))
        .expect("bundles.json");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_owned(),
                hex::decode(v["bundle"].as_str().expect("hex")).expect("hex"),
            )
        })
        .collect()
}

/// A vector's elements as `validate` chunks; entries of a known test key
/// become signing (`SIGN`) or linking (`LINK`) chunks, so mutations keep
/// valid signatures, or raw entries with `mode` 0.
fn vector_chunks(v: &Value, mode: u8) -> Vec<Chunk> {
    let keys: Vec<AgencyId> = fuzz_checks::KEY_LABELS
        .iter()
        .map(|l| fuzz_checks::test_key(l).agency())
        .collect();
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            if let Some(w) = e.get("withheld") {
                return Chunk::Withheld(WithheldPosition {
                    author: AgencyId::from_hex(w[0].as_str().expect("a")).expect("hex"),
                    seq: w[1].as_u64().expect("seq"),
                    id: EntryId::from_hex(w[2].as_str().expect("id")).expect("hex"),
                });
            }
            let bytes = hex::decode(e.as_str().expect("hex")).expect("hex");
            if mode != 0 {
                if let Ok(entry) = Entry::decode(&bytes) {
                    if let Some(k) = keys.iter().position(|k| *k == entry.author()) {
                        let payload = cbor::to_vec(entry.payload());
                        return match mode {
                            fuzz_checks::LINK => Chunk::Link(k as u8, payload),
                            _ => Chunk::Sign(k as u8, payload),
                        };
                    }
                }
            }
            Chunk::Raw(bytes)
        })
        .collect()
}

/// Entries of one vector at the same (author, seq) as its failing entry.
fn equivocation_pair(v: &Value) -> Option<(Entry, Entry)> {
    let entries: Vec<Entry> = v["entries"]
        .as_array()?
        .iter()
        .filter_map(|e| e.as_str())
        .filter_map(|h| Entry::decode(&hex::decode(h).ok()?).ok())
        .collect();
    let last = entries.last()?;
    let first = entries.iter().find(|e| {
        e.author() == last.author()
            && e.seq() == last.seq()
            && e.case_id() == last.case_id()
            && e.id() != last.id()
    })?;
    Some((first.clone(), last.clone()))
}

/// Where seeds go: the committed corpora with CUSTODIA_WRITE_FUZZ_SEEDS=1
/// (to regenerate them), else a scratch folder (the generator still runs,
/// so a change that breaks it fails the suite).
fn write_seed(target: &str, name: &str, data: &[u8]) {
    let dir = if std::env::var_os("CUSTODIA_WRITE_FUZZ_SEEDS").is_some() {
        Path::new(MANIFEST).join("fuzz/corpus").join(target)
    } else {
        std::env::temp_dir()
            .join(format!("custodia-protocol-seeds-{}", std::process::id()))
            .join(target)
    };
    assert!(!data.is_empty(), "seed {target}/{name} is empty");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(name), data).expect("write seed");
}

/// Writes the seed corpora under `protocol/fuzz/corpus/` from the spec's
/// vectors and from small generated messages:
/// `CUSTODIA_WRITE_FUZZ_SEEDS=1 cargo test -p custodia-protocol --test fuzz_regressions write_fuzz_seeds`.
#[test]
fn write_fuzz_seeds() {
    let vectors = vectors();
    let small = |v: &&Value| {
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e.as_str().is_none_or(|h| h.len() <= 8192))
    };

    // key_log: an honest log (inception, profile, officer, revocation),
    // and the same log whose last statement a recovery rotation supersedes.
    {
        use custodia_protocol::keylog::*;
        let t0 = 1_795_000_000_000;
        let (root, next, after) = (
            fuzz_checks::test_key("alpha"),
            fuzz_checks::test_key("bravo"),
            fuzz_checks::test_key("charlie"),
        );
        let officer = fuzz_checks::test_key("mallory");
        let inception = KeyStatement::sign(&root, &StatementPayload::inception(&root, &next, t0));
        let mut log = KeyLog::from_inception(inception).expect("inception");
        let add = |log: &mut KeyLog, by: &Identity, st| {
            let s = KeyStatement::sign(by, &StatementPayload::after(log, t0 + 1, st));
            log.append(s.clone()).expect("append");
            s
        };
        add(
            &mut log,
            &root,
            Statement::Profile(Profile {
                name: "NBI Cybercrime Division".into(),
                country: "PH".into(),
            }),
        );
        let certify = Statement::Certify(Certify {
            key: PublicKey::ed25519(key_of(&officer)),
            role: KeyRole::Officer,
            officer: Some(Officer {
                name: "Insp. R. Santos".into(),
                number: "PNP-0042".into(),
            }),
            not_before: t0,
            not_after: None,
        });
        add(&mut log, &root, certify);
        let honest = log.clone();
        add(
            &mut log,
            &root,
            Statement::Revoke(Revoke {
                key: key_of(&officer),
                effective: t0,
                reason: RevokeReason::Compromised,
            }),
        );
        let all: Vec<fuzz_checks::Chunk> = log
            .statements()
            .iter()
            .map(|s| fuzz_checks::Chunk::Raw(s.bytes().to_vec()))
            .collect();
        write_seed("key_log", "honest", &fuzz_checks::join(&all));
        let recovery = KeyStatement::sign(
            &next,
            &StatementPayload::after(
                &honest,
                t0 + 2,
                Statement::RotateRoot(Root {
                    root: PublicKey::ed25519(key_of(&next)),
                    next: KeyDigest::of(&key_of(&after)),
                }),
            ),
        );
        let mut chunks = all;
        chunks.push(fuzz_checks::Chunk::Raw(recovery.bytes().to_vec()));
        write_seed("key_log", "recovery", &fuzz_checks::join(&chunks));
    }

    // entry_decode: the failing entry of the first vector of each class,
    // and the last entry of each valid vector.
    let mut classes = std::collections::HashSet::new();
    for v in vectors.iter().filter(small) {
        let expect = v["expect"].as_str().expect("expect");
        if expect != "valid" && !classes.insert(expect) {
            continue;
        }
        let Some(last) = v["entries"].as_array().and_then(|e| e.last()?.as_str()) else {
            continue;
        };
        let name = v["name"].as_str().expect("name");
        write_seed("entry_decode", name, &hex::decode(last).expect("hex"));
    }

    // validate: valid vectors as linking chunks, one of each failing
    // class as signing chunks, and a few as raw entries. The target holds
    // no key logs, so the vectors that carry them (entries of format
    // version 2) are left out here; their entries seed entry_decode.
    let mut classes = std::collections::HashSet::new();
    for v in vectors
        .iter()
        .filter(small)
        .filter(|v| v.get("keylogs").is_none())
    {
        let expect = v["expect"].as_str().expect("expect");
        if expect != "valid" && !classes.insert(expect) {
            continue;
        }
        let name = v["name"].as_str().expect("name");
        let mode = if expect == "valid" {
            fuzz_checks::LINK
        } else {
            fuzz_checks::SIGN
        };
        let chunks = vector_chunks(v, mode);
        if expect == "valid" {
            // Linking changes nothing in a valid case.
            let verdicts = fuzz_checks::validate(&fuzz_checks::join(&chunks));
            assert!(verdicts.iter().all(|v| v.is_ok()), "{name}: {verdicts:?}");
        }
        write_seed("validate", name, &fuzz_checks::join(&chunks));
    }
    for name in [
        "withheld-red-entry",
        "custody-transfer-with-receipt",
        "equivocation",
    ] {
        let v = vectors.iter().find(|v| v["name"] == name).expect("vector");
        let raw = fuzz_checks::join(&vector_chunks(v, 0));
        write_seed("validate", &format!("raw-{name}"), &raw);
    }

    // equivocation_proof: from the equivocation vectors and the bundle
    // vectors' proof, plus two that prove nothing.
    let mut some_pair = None;
    for v in &vectors {
        // A proof of format version 2 entries needs the author's key log,
        // which the fuzz target does not hold: those vectors are left out.
        if let Some((a, b)) = equivocation_pair(v).filter(|(a, _)| a.version() == 1) {
            let name = v["name"].as_str().expect("name");
            let p = EquivocationProof::new(&a, &b);
            assert!(p.check().is_ok(), "{name}");
            write_seed("equivocation_proof", name, &p.to_bytes());
            some_pair.get_or_insert((a, b));
        }
    }
    let (a, b) = some_pair.expect("an equivocation vector");
    let same = EquivocationProof(a.bytes().to_vec(), a.bytes().to_vec());
    write_seed("equivocation_proof", "same-entry-twice", &same.to_bytes());
    let proof = EquivocationProof::new(&a, &b);
    let reversed = EquivocationProof(proof.1.clone(), proof.0.clone());
    write_seed("equivocation_proof", "reversed", &reversed.to_bytes());

    // sync_message: one of each message.
    let genesis =
        Entry::decode(&hex::decode(vectors[0]["entries"][0].as_str().expect("hex")).expect("hex"))
            .expect("genesis");
    let case = genesis.id();
    let w = WithheldPosition {
        author: b.author(),
        seq: 3,
        id: b.id(),
    };
    let messages = [
        (
            "hello",
            Message::Hello(Hello {
                versions: vec![1],
                agency: a.author(),
            }),
        ),
        (
            "heads",
            Message::Heads(Heads {
                case,
                heads: vec![Head(a.author(), 1, a.id()), Head(genesis.author(), 0, case)],
            }),
        ),
        (
            "entries",
            Message::Entries(Entries {
                case,
                batch: 1,
                items: vec![
                    SyncItem::Entry(genesis.bytes().to_vec()),
                    SyncItem::Withheld(w),
                    SyncItem::Entry(a.bytes().to_vec()),
                ],
            }),
        ),
        (
            "ack",
            Message::Ack(Ack {
                case,
                batch: 1,
                stored: 2,
                refused: 1,
            }),
        ),
        (
            "equivocation",
            Message::Equivocation(EquivocationNotice {
                case,
                proof: proof.clone(),
            }),
        ),
        (
            "error",
            Message::Error(ErrorMessage {
                code: 4,
                message: "hello first".into(),
            }),
        ),
    ];
    for (name, m) in messages {
        write_seed("sync_message", name, &m.to_frame());
    }

    // bundle: the bundle vectors, and a bundle of the genesis alone.
    for (name, bytes) in bundle_vectors() {
        if [
            "valid-whole-case",
            "valid-selective-one-item",
            "truncated",
            "equivocating-author-proof",
            "missing-entry",
            "not-a-bundle-single-entry",
            "valid-key-logs",
            "key-log-broken-statement",
        ]
        .contains(&name.as_str())
        {
            write_seed("bundle", &name, &bytes);
        }
    }
    let alpha = fuzz_checks::test_key("alpha");
    let mut v = Validator::new();
    let g = vectors
        .iter()
        .find(|v| v["name"] == "genesis-only")
        .expect("genesis-only");
    let g = Entry::decode(&hex::decode(g["entries"][0].as_str().expect("hex")).expect("hex"))
        .expect("genesis");
    v.apply(&g, g.payload().time).expect("genesis");
    let one = bundle::export(
        &alpha,
        &v,
        &[Element::Entry(g.bytes())],
        &[],
        &[],
        g.payload().time + 60_000,
        None,
    )
    .expect("export");
    assert!(fuzz_checks::bundle(&one).is_ok());
    write_seed("bundle", "genesis-only", &one);

    // bundle: hostile shapes. More one-byte elements than a report lists
    // one by one, markers that all carry one id, and one problem with more
    // consequences than a report lists.
    for (shape, n) in [
        ("garbage", bundle::LISTED + 100),
        ("same-id", 200),
        ("consequences", bundle::LISTED + 100),
    ] {
        let bytes = hostile::bundle(shape, n).expect("a shape");
        assert!(fuzz_checks::bundle(&bytes).is_err(), "{shape}");
        write_seed("bundle", &format!("hostile-{shape}"), &bytes);
    }

    // trust_list: a file with comments, and one with a bad line.
    let text = format!(
        "# keys confirmed by phone, 2026-05-01\n{} NBI Cybercrime Division\n\n{} BKA Cybercrime Unit\n",
        a.author().to_hex(),
        genesis.author().to_hex()
    );
    write_seed("trust_list", "two-keys", text.as_bytes());
    write_seed("trust_list", "bad-line", b"abcd Alpha\n");
}
