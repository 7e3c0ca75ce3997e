//! Officers, node keys and a revocation between three real nodes (entries
//! of format version 2, SPEC.md §5.7): every operator step is the
//! `custodia` binary, the nodes run on QUIC on 127.0.0.1 with real store
//! files, and the thief speaks the wire protocol by hand. Every test is
//! bounded in time.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use custodia_protocol::keylog::{key_of, Statement};
use custodia_protocol::{
    AgencyId, Body, CaseId, Entry, Hello, Message, Note, Payload, SyncItem, Tlp, SYNC_VERSIONS,
};
use custodia_tests::{eventually, link, raw_client, Agency, Wire};

const WAIT: Duration = Duration::from_secs(30);

fn custodia(dir: &Path, args: &[&str]) -> Output {
    Command::new(custodia_tests::custodia_binary())
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("CUSTODIA_PASSPHRASE")
        .env_remove("CUSTODIA_OFFICER_KEY")
        .output()
        .expect("custodia runs")
}

/// Runs a command that must succeed; returns its JSON document.
fn ok(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = custodia(dir, &all);
    assert!(
        out.status.success(),
        "custodia {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

/// The agency starts its key log, certifies an officer (key file
/// `officer.key`) and its node key (`node.key`, where the node reads it).
fn equip(a: &Agency, officer: &str, number: &str) -> String {
    ok(
        &a.dir,
        &[
            "key",
            "start",
            "--next-key",
            &path(&a.dir, "next-root.key"),
            "--no-passphrase",
        ],
    );
    let key = ok(
        &a.dir,
        &[
            "key",
            "certify-officer",
            "--name",
            officer,
            "--number",
            number,
            "--out",
            &path(&a.dir, "officer.key"),
            "--no-passphrase",
        ],
    )["key"]
        .as_str()
        .expect("key")
        .to_owned();
    ok(&a.dir, &["key", "certify-node", "--no-passphrase"]);
    key
}

/// The officer whose key file is `officer` registers a file of `a`'s as
/// an exhibit of the case.
fn register(a: &Agency, officer: &str, case_hex: &str, file: &str, exhibit: &str) {
    let file = a.dir.join(file);
    std::fs::write(&file, format!("the image of {exhibit}")).expect("evidence file");
    ok(
        &a.dir,
        &[
            "--as",
            &path(&a.dir, officer),
            "evidence",
            "add",
            case_hex,
            file.to_str().expect("path"),
            "--exhibit",
            exhibit,
        ],
    );
}

fn log_len(at: &Agency, of: &AgencyId) -> u64 {
    at.store()
        .key_log(of)
        .expect("a key log that checks")
        .map_or(0, |l| l.len())
}

/// Every entry `at` holds of the case, decoded.
fn entries(at: &Agency, case: &CaseId) -> Vec<Entry> {
    at.case_bytes(case)
        .iter()
        .filter_map(|b| Entry::decode(b).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agencies_accept_officers_entries_witness_with_node_keys_and_refuse_a_revoked_key() {
    let (a, b, c) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("charlie", "FR"),
    );
    link(&a, &b);
    link(&b, &c);
    link(&a, &c);
    let santos = equip(&a, "Insp. R. Santos", "PNP-0042");
    equip(&b, "KHK M. Weber", "BKA-7781");
    equip(&c, "Lt. A. Moreau", "IP-0311");
    let nodes = [
        custodia_node::start(&a.dir).await.expect("a"),
        custodia_node::start(&b.dir).await.expect("b"),
        custodia_node::start(&c.dir).await.expect("c"),
    ];
    assert!(
        eventually(WAIT, || [&a, &b, &c]
            .iter()
            .all(|x| [&a, &b, &c].iter().all(|y| log_len(x, &y.id) == 4)))
        .await,
        "every agency holds every key log (inception, profile, officer, node)"
    );

    // The peers were pinned with a country of the operator's ("ZZ");
    // `peer list` and `peer add` show the name and country each agency
    // signed for itself, read from the store while its node runs.
    let peers = ok(&a.dir, &["peer", "list"]);
    for (peer, country) in [(&b, "DE"), (&c, "FR")] {
        let row = peers["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .find(|p| p["key"] == peer.id.to_hex().as_str())
            .expect("pinned");
        assert_eq!(row["country"], "ZZ", "{row}");
        assert_eq!(row["signed"]["name"], peer.name.as_str(), "{row}");
        assert_eq!(row["signed"]["country"], country, "{row}");
    }
    let again = custodia(
        &a.dir,
        &[
            "peer",
            "add",
            &b.name,
            "--addr",
            &b.addr.to_string(),
            "--key",
            &b.id.to_hex(),
            "--country",
            "NL",
        ],
    );
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{again:?}");
    assert!(
        said.contains("it signs as:  bravo (DE)") && said.contains("NL, is not the one it signed"),
        "{said}"
    );

    // The officer opens the case and shares it: entries of format
    // version 2, signed by the officer's key in the agency's name.
    let as_santos = path(&a.dir, "officer.key");
    let opened = ok(
        &a.dir,
        &[
            "--as",
            &as_santos,
            "case",
            "open",
            "--title",
            "Operation Lantern",
            "--reference",
            "NBI-2026-0042",
        ],
    );
    let case_hex = opened["case"].as_str().expect("case").to_owned();
    let case = CaseId::from_hex(&case_hex).expect("case id");
    for (who, role) in [(&b, "investigator"), (&c, "examiner")] {
        ok(
            &a.dir,
            &[
                "--as",
                &as_santos,
                "case",
                "share",
                &case_hex,
                "--with",
                &who.id.to_hex(),
                "--role",
                role,
            ],
        );
    }
    // Without an officer, the agency's own key writes nothing in it.
    let refused = custodia(
        &a.dir,
        &["case", "share", &case_hex, "--with", &c.id.to_hex()],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--as"));

    // Bravo's officer registers an item once the case has arrived.
    assert!(
        eventually(WAIT, || b.case_count(&case) >= 3).await,
        "bravo received the case"
    );
    register(&b, "officer.key", &case_hex, "phone.img", "BKA-EX-1");

    // Everyone holds bravo's entry, and every node witnesses with its
    // node key (the witness entries' kid is not the agency id).
    let witnessed_by_node_key = |at: &Agency, of: &Agency| {
        entries(at, &case).iter().any(|e| {
            e.author() == of.id
                && matches!(e.payload().body, Body::Witness(_))
                && e.signer() != of.id
                && e.version() == 2
        })
    };
    assert!(
        eventually(WAIT, || {
            [&a, &b, &c].iter().all(|x| {
                entries(x, &case).iter().any(|e| {
                    e.author() == b.id && matches!(e.payload().body, Body::EvidenceRegistered(_))
                })
            }) && witnessed_by_node_key(&c, &a)
                && witnessed_by_node_key(&a, &b)
        })
        .await,
        "the officer's entries reached everyone and the nodes witnessed with their node keys"
    );
    let held_a = entries(&a, &case);
    assert!(held_a.iter().all(|e| e.version() == 2));
    assert!(
        held_a
            .iter()
            .filter(|e| !matches!(e.payload().body, Body::Witness(_)))
            .all(|e| e.signer() != e.author()),
        "no entry of the case is signed by an agency key"
    );

    // The officer's key is reported compromised; the statement reaches
    // every agency.
    let before_revocation = log_len(&a, &a.id);
    ok(
        &a.dir,
        &["key", "revoke", &santos, "--reason", "compromised"],
    );
    assert!(
        eventually(WAIT, || log_len(&b, &a.id) == before_revocation + 1
            && log_len(&c, &a.id) == before_revocation + 1)
        .await,
        "the revocation reached bravo and charlie"
    );
    // Alpha's operator cannot act as the officer any more.
    let refused = custodia(
        &a.dir,
        &[
            "--as",
            &as_santos,
            "case",
            "share",
            &case_hex,
            "--with",
            &c.id.to_hex(),
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("revoked"));

    // The thief holds the key and writes after the revocation, citing the
    // log as it was before it; a member relays the entry to each node.
    let thief = custodia_node::read_key_file(Path::new(&as_santos)).expect("the stolen key");
    let v = a
        .store()
        .case(&case)
        .cloned()
        .expect("alpha holds the case");
    let seq = v.next_seq(&a.id);
    let mut refs: Vec<_> = v
        .state()
        .heads
        .iter()
        .filter(|(x, _)| **x != a.id)
        .map(|(_, (_, id))| *id)
        .collect();
    refs.sort();
    let forged = Entry::sign(
        &thief,
        &Payload {
            v: 2,
            keys: Some(before_revocation),
            case: Some(case),
            author: a.id,
            seq,
            prev: v.at(&a.id, seq - 1),
            refs,
            time: custodia_node::now_ms(),
            tlp: Tlp::Amber,
            to: None,
            body: Body::Note(Note {
                text: "the phone was returned to its owner".into(),
                item: None,
            }),
        },
    );
    for (relay, to) in [(&c, &b), (&b, &c)] {
        let conn = raw_client(relay, to)
            .connect(to.addr, custodia_node::SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        let mut w = Wire::open(conn).await.expect("stream");
        assert!(
            w.send(&Message::Hello(Hello {
                versions: SYNC_VERSIONS.to_vec(),
                agency: relay.id,
            }))
            .await
        );
        let _ = w.drain(Duration::from_millis(300)).await;
        w.send(&Message::Entries(custodia_protocol::Entries {
            case,
            batch: 1,
            items: vec![SyncItem::Entry(forged.bytes().to_vec())],
        }))
        .await;
        let _ = w.drain(Duration::from_millis(800)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for x in [&a, &b, &c] {
        assert!(
            !x.case_bytes(&case).contains(&forged.bytes().to_vec()),
            "{} refused the entry by the revoked key",
            x.name
        );
    }

    // Bravo replaces its node key while every node runs: the old key is
    // retired, a new one certified and written where the node reads it.
    let old_node = custodia_node::read_key_file(&b.dir.join(custodia_node::NODE_KEY_FILE))
        .expect("bravo's node key")
        .agency();
    let connected = nodes[1].connected();
    assert!(
        connected.contains(&a.id) && connected.contains(&c.id),
        "{connected:?}"
    );
    // On the wire, every node authenticates with its node key (SPEC.md
    // §9.1), which its partners accepted from the statements its
    // certificate carries.
    let wire_key = |n: &custodia_node::Running, of: &Agency| {
        n.connected_keys()
            .into_iter()
            .find(|(agency, _)| *agency == of.id)
            .map(|(_, k)| k)
    };
    for (n, of) in [(0, &b), (0, &c), (1, &a), (2, &b)] {
        let node_key = custodia_node::read_key_file(&of.dir.join(custodia_node::NODE_KEY_FILE))
            .expect("node key");
        assert_eq!(
            wire_key(&nodes[n], of),
            Some(key_of(&node_key)),
            "{} authenticates with its node key",
            of.name
        );
    }
    let sessions_before = [nodes[0].peer_stats(&b.id), nodes[2].peer_stats(&b.id)];
    ok(
        &b.dir,
        &["key", "revoke", &old_node.to_hex(), "--reason", "retired"],
    );
    std::fs::rename(
        b.dir.join(custodia_node::NODE_KEY_FILE),
        b.dir.join("node.key.retired"),
    )
    .expect("move the old key away");
    let new_node = ok(&b.dir, &["key", "certify-node", "--no-passphrase"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    // Alpha roots its log in its pre-committed next key and certifies a
    // new officer with it; the partners follow without a new pin.
    ok(
        &a.dir,
        &[
            "key",
            "rotate-root",
            "--root",
            &path(&a.dir, "next-root.key"),
            "--next-key",
            &path(&a.dir, "next-root-2.key"),
            "--no-passphrase",
        ],
    );
    ok(
        &a.dir,
        &[
            "key",
            "certify-officer",
            "--name",
            "Insp. L. Cruz",
            "--number",
            "PNP-0107",
            "--out",
            &path(&a.dir, "cruz.key"),
            "--no-passphrase",
            "--root",
            &path(&a.dir, "next-root.key"),
        ],
    );
    register(&a, "cruz.key", &case_hex, "laptop.img", "NBI-EX-2");
    let cruz_entry = |at: &Agency| {
        entries(at, &case).iter().any(|e| {
            e.author() == a.id
                && matches!(e.payload().body, Body::EvidenceRegistered(_))
                && e.payload().keys.is_some_and(|k| k > before_revocation + 1)
        })
    };
    let by_new_node_key = |at: &Agency| {
        entries(at, &case).iter().any(|e| {
            e.author() == b.id
                && matches!(e.payload().body, Body::Witness(_))
                && e.signer().to_hex() == new_node
        })
    };
    assert!(
        eventually(WAIT, || cruz_entry(&b) && cruz_entry(&c)).await,
        "the officer certified by the rotated root is accepted by bravo and charlie"
    );
    assert!(
        eventually(WAIT, || by_new_node_key(&a) && by_new_node_key(&c)).await,
        "bravo witnesses with its new node key, without a restart, and the others accept it"
    );
    let connected = nodes[1].connected();
    assert!(
        connected.contains(&a.id) && connected.contains(&c.id),
        "bravo's sessions outlived the replacement: {connected:?}"
    );
    assert_eq!(
        [
            nodes[0].peer_stats(&b.id).sessions,
            nodes[2].peer_stats(&b.id).sessions
        ],
        sessions_before.map(|s| s.sessions),
        "no session with bravo was lost or started again over the replacement"
    );

    // A thief of alpha's agency key (the reason one rotates a root) is
    // refused by the partners that hold the rotation, and a thief of
    // bravo's retired node key by every partner.
    // Refused: no handshake, or no answer to a hello (an accepted peer
    // gets the node's hello back at once).
    let refused = |endpoint: quinn::Endpoint, to: &Agency, as_: AgencyId| {
        let addr = to.addr;
        async move {
            let conn = endpoint
                .connect(addr, custodia_node::SERVER_NAME)
                .expect("connect")
                .await;
            let Ok(conn) = conn else { return true };
            let Some(mut w) = Wire::open(conn).await else {
                return true;
            };
            let hello = Message::Hello(Hello {
                versions: SYNC_VERSIONS.to_vec(),
                agency: as_,
            });
            !w.send(&hello).await || w.recv(Duration::from_secs(3)).await.is_none()
        }
    };
    // The same probe is answered for a key that speaks for its agency.
    assert!(
        !refused(raw_client(&c, &b), &b, c.id).await,
        "the probe tells an accepted key from a refused one"
    );
    assert!(
        refused(raw_client(&a, &b), &b, a.id).await,
        "bravo refuses alpha's agency key after alpha's root rotation"
    );
    let b_log = a
        .store()
        .key_log(&b.id)
        .expect("read")
        .expect("alpha holds bravo's log");
    let old_cert_at = b_log
        .statements()
        .iter()
        .position(|s| matches!(&s.payload().st, Statement::Certify(c) if c.key.key.0 == old_node.0))
        .expect("the old node key's certification");
    let old_key = custodia_node::read_key_file(&b.dir.join("node.key.retired")).expect("old key");
    let stolen = custodia_node::Presented {
        key: old_key.signing_key().clone(),
        carried: b_log.statements()[..=old_cert_at]
            .iter()
            .map(|s| s.bytes().to_vec())
            .collect(),
    };
    let mut thief =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    thief.set_default_client_config(
        custodia_node::client_config_presenting(&stolen, custodia_node::PinSet::new([c.id.0]))
            .expect("client config"),
    );
    assert!(
        refused(thief, &c, b.id).await,
        "charlie refuses bravo's retired node key"
    );

    // The case's log at charlie names the officer behind each entry.
    let log = ok(&c.dir, &["case", "log", &case_hex]);
    let rows = log["entries"].as_array().expect("rows");
    let registration = rows
        .iter()
        .find(|r| r["kind"] == "evidence-registered" && r["author"] == b.id.to_hex())
        .expect("bravo's registration");
    assert_eq!(registration["signer"]["officer"]["name"], "KHK M. Weber");
    assert!(rows
        .iter()
        .any(|r| r["kind"] == "witness" && r["signer"]["role"] == "node"));

    // The case exports to a bundle that verifies and names the officers.
    for n in nodes {
        n.shutdown().await;
    }
    let bundle = c.dir.join("lantern.custodia");
    ok(
        &c.dir,
        &["export", &case_hex, "--out", bundle.to_str().expect("path")],
    );
    let out = Command::new(custodia_tests::custodia_binary())
        .args(["verify", "--json", bundle.to_str().expect("path")])
        .output()
        .expect("verify");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report");
    assert_eq!(report["verdict"], "valid", "{report:#}");
    let text = report.to_string();
    for name in [
        "Insp. R. Santos",
        "KHK M. Weber",
        "Lt. A. Moreau",
        "Insp. L. Cruz",
    ] {
        assert!(text.contains(name), "the report names {name}");
    }
    // Each entry names the officer who signed it: the registration is
    // bravo's officer's.
    let registered = &report["items"][0]["timeline"][0];
    assert_eq!(registered["action"], "registered", "{registered:#}");
    assert_eq!(registered["signer"]["role"], "officer");
    assert_eq!(registered["signer"]["officer"]["name"], "KHK M. Weber");
    assert_eq!(registered["signer"]["officer"]["number"], "BKA-7781");
    let text_report = Command::new(custodia_tests::custodia_binary())
        .args(["verify", bundle.to_str().expect("path")])
        .output()
        .expect("verify");
    assert!(
        String::from_utf8_lossy(&text_report.stdout).contains("officer KHK M. Weber (BKA-7781)"),
        "the text report names the officer on the entry"
    );
}
