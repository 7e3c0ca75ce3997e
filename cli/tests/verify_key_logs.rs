//! `custodia verify` on a bundle of format version 2 (SPEC.md §10.1
//! "keys"): the key histories of its agencies are shown, and the texts an
//! agency wrote into its key log (its signed name, its officers' names and
//! service numbers) are hostile input like any other: inert on a terminal,
//! escaped in HTML, data in JSON (which still follows its schema's shape).
//! A version 1 bundle still verifies, and says it carries no key logs.

mod common;

use custodia_protocol::bundle::{self, BundleAgency, Element, Header};
use custodia_protocol::keylog::{
    key_of, Appended, Certify, KeyLog, KeyRole, KeyStatement, Officer, Profile, PublicKey, Root,
    Statement, StatementPayload,
};
use custodia_protocol::{CaseOpened, Entry, Identity, KeyDigest, Payload, Tlp};

use common::custodia;

const T0: u64 = 1_795_000_000_000;
/// A right-to-left override and markup in the name the agency signs.
const SIGNED: &str = "Alpha \u{202e}tinU<img src=x>";
/// Markup and an isolate in the officer's name and number.
const OFFICER: &str = "<script>alert(1)</script>\u{2067}";
const NUMBER: &str = "SN\u{200f}-1";

/// A one-entry case whose agency's key log signs a hostile name and
/// certifies an officer with a hostile name: without key logs (format
/// version 1, `keys` None), with the log (version 2), or with the
/// officer's certification superseded by a recovery (version 3: the log
/// as a key history, the certification shown as void).
fn hostile(keys: Option<bool>) -> Vec<u8> {
    let alpha = Identity::from_seed([0x51; 32]);
    let genesis = Entry::sign(
        &alpha,
        &Payload::genesis(
            alpha.agency(),
            T0,
            Tlp::Amber,
            CaseOpened {
                title: "Keys".into(),
                reference: "K-1".into(),
                jurisdiction: None,
                name: "Alpha".into(),
                country: "PH".into(),
            },
        ),
    );
    let next = Identity::from_seed([0x52; 32]);
    let mut log = KeyLog::from_inception(KeyStatement::sign(
        &alpha,
        &StatementPayload::inception(&alpha, &next, T0 - 10_000),
    ))
    .expect("inception");
    for (i, st) in [
        Statement::Profile(Profile {
            name: SIGNED.into(),
            country: "PH".into(),
        }),
        Statement::Certify(Certify {
            key: PublicKey::ed25519(key_of(&Identity::from_seed([0x53; 32]))),
            role: KeyRole::Officer,
            officer: Some(Officer {
                name: OFFICER.into(),
                number: NUMBER.into(),
            }),
            not_before: T0 - 10_000,
            not_after: None,
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let p = StatementPayload::after(&log, T0 - 9_000 + i as u64, st);
        log.append(KeyStatement::sign(&alpha, &p))
            .expect("appended");
    }
    let recovered = keys == Some(true);
    if recovered {
        // The agency takes its root back with the pre-committed key at the
        // officer's position: the certification is superseded.
        let p = StatementPayload {
            v: 1,
            agency: alpha.agency(),
            seq: 2,
            prev: Some(log.statements()[1].id()),
            time: T0 - 5_000,
            st: Statement::RotateRoot(Root {
                root: PublicKey::ed25519(key_of(&next)),
                next: KeyDigest::of(&key_of(&Identity::from_seed([0x54; 32]))),
            }),
        };
        assert_eq!(
            log.append(KeyStatement::sign(&next, &p)),
            Ok(Appended::Recovered { superseded: 1 })
        );
    }
    let header = Header {
        case: genesis.id(),
        items: None,
        proofs: Vec::new(),
        agencies: vec![BundleAgency {
            agency: alpha.agency(),
            name: "Alpha".into(),
            country: "PH".into(),
        }],
        exported_at: T0 + 1_000,
        keys: keys.map(|_| vec![log.history().iter().map(|s| s.bytes().to_vec()).collect()]),
        key_histories: recovered,
    };
    bundle::write(&alpha, &header, &[Element::Entry(genesis.bytes())])
}

#[test]
fn key_histories_are_shown_and_their_texts_are_inert() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("keys.custodia");
    std::fs::write(&file, hostile(Some(false))).expect("write");
    let f = file.to_str().expect("utf-8");

    let text = custodia(&["verify", f]).code(0).stdout;
    assert!(text.contains("Key histories (1)"), "{text}");
    for c in ['\u{202e}', '\u{2067}', '\u{200f}'] {
        assert!(!text.contains(c), "raw {c:?} on the terminal: {text}");
    }
    assert!(
        text.contains(
            "signed name: Alpha \\u{202e}tinU<img src=x> (PH; listed in the bundle as Alpha)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "certify officer <script>alert(1)</script>\\u{2067} (service number SN\\u{200f}-1)"
        ),
        "{text}"
    );

    let html = dir.path().join("keys.html");
    custodia(&["verify", f, "--html", html.to_str().expect("utf-8")]).code(0);
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(page.contains("&lt;img src=x&gt;"), "escaped");
    assert!(
        !page.contains("<script>") && !page.contains("<img"),
        "never raw"
    );
    for c in ['\u{202e}', '\u{2067}', '\u{200f}'] {
        assert!(!page.contains(c), "raw {c:?} in the page");
    }

    let json = custodia(&["--json", "verify", f]).code(0).json();
    assert_eq!(json["bundle"]["format_version"], 2);
    let log = &json["key_logs"][0];
    assert_eq!(log["profile"]["name"], SIGNED, "JSON is data, as signed");
    assert_eq!(log["listed_name"], "Alpha");
    let kinds: Vec<&str> = log["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["inception", "profile", "certify"]);
    assert_eq!(log["statements"][2]["officer"]["name"], OFFICER);
    assert_eq!(log["statements"][2]["officer"]["number"], NUMBER);
    assert_eq!(log["statements"][2]["role"], "officer");
    assert_eq!(log["statements"][1]["officer"], serde_json::Value::Null);
}

#[test]
fn statements_a_recovery_superseded_are_shown_void_and_their_texts_are_inert() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("v3.custodia");
    std::fs::write(&file, hostile(Some(true))).expect("write");
    let f = file.to_str().expect("utf-8");

    let text = custodia(&["verify", f]).code(0).stdout;
    assert!(text.contains("SUPERSEDED by a recovery (1)"), "{text}");
    for c in ['\u{202e}', '\u{2067}', '\u{200f}'] {
        assert!(!text.contains(c), "raw {c:?} on the terminal: {text}");
    }
    let void = text
        .split("SUPERSEDED by a recovery (1)")
        .nth(1)
        .expect("the superseded part");
    assert!(
        void.contains(
            "certify officer <script>alert(1)</script>\\u{2067} (service number SN\\u{200f}-1)"
        ),
        "{text}"
    );

    let html = dir.path().join("v3.html");
    custodia(&["verify", f, "--html", html.to_str().expect("utf-8")]).code(0);
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("Superseded by a recovery (1)"), "shown");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>"),
        "escaped, never raw"
    );
    for c in ['\u{202e}', '\u{2067}', '\u{200f}'] {
        assert!(!page.contains(c), "raw {c:?} in the page");
    }

    let json = custodia(&["--json", "verify", f]).code(0).json();
    assert_eq!(json["bundle"]["format_version"], 3);
    assert_eq!(json["verdict"], "valid", "{json}");
    let log = &json["key_logs"][0];
    let kinds = |k: &str| -> Vec<String> {
        log[k]
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| s["kind"].as_str().expect("kind").to_owned())
            .collect()
    };
    assert_eq!(kinds("statements"), ["inception", "profile", "rotate-root"]);
    assert_eq!(kinds("superseded"), ["certify"]);
    assert_eq!(
        log["superseded"][0]["officer"]["name"], OFFICER,
        "data, as signed"
    );
}

#[test]
fn a_version_1_bundle_verifies_as_before_and_says_it_has_no_key_logs() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("v1.custodia");
    std::fs::write(&file, hostile(None)).expect("write");
    let f = file.to_str().expect("utf-8");
    let text = custodia(&["verify", f]).code(0).stdout;
    assert!(text.contains("Key histories (0)"), "{text}");
    assert!(text.contains("carries no key logs"), "{text}");
    let json = custodia(&["--json", "verify", f]).code(0).json();
    assert_eq!(json["bundle"]["format_version"], 1);
    assert_eq!(json["key_logs"], serde_json::json!([]));
    assert_eq!(json["verdict"], "valid");
}

/// The bytes of a bundle vector of `spec/vectors/bundles.json`.
fn bundle_vector(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/bundles.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("bundles.json")).expect("JSON");
    let v = doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == name)
        .expect("the vector");
    hex::decode(v["bundle"].as_str().expect("hex")).expect("hex")
}

/// `custodia verify` reads a file in two passes; entries of format version
/// 2 are checked against the bundle's key logs from the first entry on
/// (SPEC.md §10.5 step 2), so a case whose entries officer and node keys
/// signed verifies, and one whose signing agency's log is missing says
/// which entry cannot be checked (V20).
#[test]
fn entries_signed_by_officer_and_node_keys_are_checked_against_the_key_logs() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("v2.custodia");
    let f = file.to_str().expect("utf-8");
    std::fs::write(&file, bundle_vector("v2-entries-with-key-logs")).expect("write");
    let json = custodia(&["--json", "verify", f]).code(0).json();
    assert_eq!(json["verdict"], "valid", "{json}");
    // The report does not tell a court that the logs cannot change a verdict.
    let note = json["key_logs_note"].as_str().expect("note");
    assert!(
        note.contains("Entries signed by an officer or node key (format version 2) are checked against these logs"),
        "{note}"
    );
    std::fs::write(&file, bundle_vector("v2-entries-without-a-key-log")).expect("write");
    let run = custodia(&["--json", "verify", f]).code(1);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(json["verdict"], "invalid");
    assert_eq!(json["problems"][0]["index"], 2);
    assert_eq!(json["problems"][0]["rule"], "V20");
    assert_eq!(json["problems"][0]["class"], "key-log-pending");
}
