//! Golden tests of custody between agencies (`custody transfer`, `receive`,
//! `record`), `case log` and `agency list`. Two or three node directories;
//! entries move between them as replication would move them, without a
//! network (see `common::sync`).

mod common;

use std::path::PathBuf;

use common::{at, init, normalize, open_case, sync};

struct Three {
    tmp: tempfile::TempDir,
    manila: PathBuf,
    berlin: PathBuf,
    lyon: PathBuf,
    berlin_key: String,
    case: String,
    item: String,
}

/// Manila opens a case, shares it with Berlin (investigator) and Lyon
/// (liaison), registers one item; both partners receive the entries.
fn three() -> Three {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let manila = tmp.path().join("manila");
    let berlin = tmp.path().join("berlin");
    let lyon = tmp.path().join("lyon");
    init(&manila, "Manila Cybercrime Unit", "PH");
    let berlin_key = init(&berlin, "Berlin Partner Unit", "DE");
    let lyon_key = init(&lyon, "Lyon Liaison Desk", "FR");
    at(
        &manila,
        &[
            "peer",
            "add",
            "berlin",
            "--addr",
            "127.0.0.1:7401",
            "--key",
            &berlin_key,
            "--country",
            "DE",
        ],
    )
    .code(0);
    let case = open_case(&manila, "Operation Test", "MCU-T-2");
    at(
        &manila,
        &[
            "case",
            "share",
            &case,
            "--with",
            "berlin",
            "--name",
            "Berlin Partner Unit",
        ],
    )
    .code(0);
    // An agency that is not a peer, by full key, named explicitly.
    at(
        &manila,
        &[
            "case",
            "share",
            &case,
            "--with",
            &lyon_key,
            "--role",
            "liaison",
            "--name",
            "Lyon Liaison Desk",
            "--country",
            "FR",
        ],
    )
    .code(0);
    let file = tmp.path().join("phone.img");
    std::fs::write(&file, b"\0\x01 phone image").expect("write");
    let v = at(
        &manila,
        &[
            "--json",
            "evidence",
            "add",
            &case,
            file.to_str().expect("UTF-8"),
            "--exhibit",
            "EX-1",
            "--description",
            "Seized phone",
        ],
    )
    .json();
    let item = v["registered"][0]["item"]
        .as_str()
        .expect("item")
        .to_owned();
    sync(&manila, &berlin, &case);
    sync(&manila, &lyon, &case);
    Three {
        tmp,
        manila,
        berlin,
        lyon,
        berlin_key,
        case,
        item,
    }
}

fn holder(dir: &std::path::Path, case: &str) -> serde_json::Value {
    let v = at(dir, &["--json", "case", "show", case]).json();
    v["items"][0]["holder_name"].clone()
}

#[test]
fn transfer_and_receipt_move_custody() {
    let t = three();
    let r = at(
        &t.manila,
        &[
            "custody",
            "transfer",
            &t.item[..8],
            "--to",
            "Berlin Partner Unit",
            "--purpose",
            "forensic examination",
        ],
    )
    .code(0);
    assert_eq!(
        normalize(&r.stdout, &[], &[]),
        "Transferred item EX-1 (<UUID>) to Berlin Partner Unit\n\
         transfer: <ID>\n\
         It is in transit until Berlin Partner Unit signs a receipt (`custodia custody receive <SHORT>` on their node).\n"
    );
    let transfer = r.stdout.lines().nth(1).expect("line 2")["transfer: ".len()..].to_owned();
    // In transit: not even the holder may transfer it again.
    let r = at(
        &t.manila,
        &["custody", "transfer", &t.item, "--to", "berlin"],
    )
    .code(1);
    assert_eq!(
        normalize(&r.stderr, &[], &[]),
        "error: item EX-1 (<UUID>) is in transit: transfer <SHORT> awaits its receipt\n"
    );
    sync(&t.manila, &t.berlin, &t.case);
    let r = at(
        &t.berlin,
        &[
            "custody",
            "receive",
            &transfer[..10],
            "--note",
            "seal intact on arrival",
        ],
    )
    .code(0);
    assert_eq!(
        normalize(&r.stdout, &[], &[]),
        "Received item EX-1 (<UUID>) from Manila Cybercrime Unit (accepted); this agency now holds it\n\
         receipt: <ID>\n"
    );
    assert_eq!(holder(&t.berlin, &t.case), "Berlin Partner Unit");
    sync(&t.berlin, &t.manila, &t.case);
    assert_eq!(holder(&t.manila, &t.case), "Berlin Partner Unit");
    // The new holder records events; the old one no longer may.
    let r = at(
        &t.berlin,
        &[
            "--json",
            "custody",
            "record",
            &t.item,
            "--action",
            "examined",
            "--digest-matched",
            "yes",
            "--tool",
            "X-Ways 21.3",
        ],
    )
    .json();
    assert_eq!(r["action"], "examined");
    assert_eq!(r["item"], t.item.as_str());
    let r = at(
        &t.manila,
        &["custody", "record", &t.item, "--action", "sealed"],
    )
    .code(1);
    assert_eq!(
        normalize(&r.stderr, &[], &[]),
        "error: only the current holder (Berlin Partner Unit) may record sealed of item EX-1 (<UUID>)\n"
    );
    // The timeline, as Manila sees it once Berlin's entries arrive.
    sync(&t.berlin, &t.manila, &t.case);
    let r = at(&t.manila, &["case", "log", &t.case[..8]]).code(0);
    let sha = hex_of_phone();
    assert_eq!(
        normalize(&r.stdout, &[], &[&sha[..12]]),
        format!(
            "<TIME>  Manila Cybercrime Unit  case-opened          opened case \u{2018}Operation Test\u{2019} (MCU-T-2)\n\
             <TIME>  Manila Cybercrime Unit  member-added         added Berlin Partner Unit (DE) as investigator\n\
             <TIME>  Manila Cybercrime Unit  member-added         added Lyon Liaison Desk (FR) as liaison\n\
             <TIME>  Manila Cybercrime Unit  evidence-registered  registered EX-1 \u{2018}Seized phone\u{2019} sha256 {}\u{2026} 14 bytes application/octet-stream, item <U8>\n\
             <TIME>  Manila Cybercrime Unit  custody              transferred item EX-1 (<U8>) to Berlin Partner Unit, purpose: forensic examination\n\
             <TIME>  Berlin Partner Unit     custody              received transfer <SHORT> of item EX-1 (<U8>) (accepted)\n\
             <TIME>  Berlin Partner Unit     note                 note on item EX-1 (<U8>): seal intact on arrival\n\
             <TIME>  Berlin Partner Unit     custody              examined item EX-1 (<U8>), digest matched, with X-Ways 21.3\n",
            &sha[..12]
        )
    );
    let v = at(&t.manila, &["--json", "case", "log", &t.case]).json();
    let rows = v["entries"].as_array().expect("an array");
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[5]["kind"], "custody");
    assert_eq!(rows[5]["author_name"], "Berlin Partner Unit");
    assert_eq!(rows[5]["withheld"], false);
    assert_eq!(rows[5]["tlp"], "AMBER");
    assert!(rows[0]["time"].as_str().is_some_and(|s| s.ends_with('Z')));
}

fn hex_of_phone() -> String {
    hex::encode(
        custodia_node::hash_reader(
            &b"\0\x01 phone image"[..],
            custodia_node::Wanted::default(),
            &mut |_| {},
        )
        .expect("hash")
        .digests
        .sha256,
    )
}

#[test]
fn only_the_holder_may_transfer() {
    let t = three();
    let r = at(
        &t.berlin,
        &["custody", "transfer", &t.item, "--to", "Lyon Liaison Desk"],
    )
    .code(1);
    assert_eq!(
        normalize(&r.stderr, &[], &[]),
        "error: only the current holder (Manila Cybercrime Unit) may transfer item EX-1 (<UUID>)\n"
    );
    assert_eq!(holder(&t.berlin, &t.case), "Manila Cybercrime Unit");
}

#[test]
fn a_receipt_for_a_transfer_addressed_to_another_agency_is_refused() {
    let t = three();
    let v = at(
        &t.manila,
        &[
            "--json",
            "custody",
            "transfer",
            &t.item,
            "--to",
            &t.berlin_key,
        ],
    )
    .json();
    let transfer = v["transfer"].as_str().expect("transfer").to_owned();
    assert_eq!(v["transfer"], v["entry"]);
    assert_eq!(v["action"], "transferred");
    assert_eq!(v["to"], t.berlin_key.as_str());
    sync(&t.manila, &t.lyon, &t.case);
    let r = at(&t.lyon, &["custody", "receive", &transfer[..8]]).code(1);
    assert_eq!(
        normalize(&r.stderr, &[], &[]),
        "error: transfer <SHORT> is addressed to Berlin Partner Unit, not to this agency\n"
    );
    // Named by its item, the same.
    let r = at(&t.lyon, &["custody", "receive", &t.item]).code(1);
    assert_eq!(
        normalize(&r.stderr, &[], &[]),
        "error: transfer <SHORT> of item EX-1 (<UUID>) is addressed to Berlin Partner Unit, not to this agency\n"
    );
    // A rejection by the addressee leaves the sender the holder.
    sync(&t.manila, &t.berlin, &t.case);
    let r = at(
        &t.berlin,
        &["custody", "receive", &t.item, "--reject", "seal broken"],
    )
    .code(0);
    assert_eq!(
        normalize(&r.stdout, &[], &[]),
        "Rejected the transfer of item EX-1 (<UUID>) from Manila Cybercrime Unit: seal broken; Manila Cybercrime Unit remains the holder\n\
         receipt: <ID>\n"
    );
    assert_eq!(holder(&t.berlin, &t.case), "Manila Cybercrime Unit");
    // Answered: no longer open.
    let r = at(&t.berlin, &["custody", "receive", &transfer]).code(1);
    assert!(r.stderr.contains("already answered"), "{}", r.stderr);
}

#[test]
fn unknown_items_agencies_and_bad_actions() {
    let t = three();
    let r = at(
        &t.manila,
        &["custody", "transfer", "abcdef0123", "--to", "berlin"],
    )
    .code(2);
    assert_eq!(
        r.stderr,
        "error: no item \"abcdef0123\" in this node's cases (see `custodia case show CASE`)\n"
    );
    let r = at(
        &t.manila,
        &["custody", "transfer", &t.item, "--to", "interpol"],
    )
    .code(2);
    assert!(
        r.stderr.contains("no agency called \"interpol\""),
        "{}",
        r.stderr
    );
    let r = at(&t.manila, &["custody", "receive", "0123456789"]).code(2);
    assert!(r.stderr.contains("no open transfer"), "{}", r.stderr);
    let r = at(
        &t.manila,
        &["custody", "record", &t.item, "--action", "lost"],
    )
    .code(2);
    assert!(
        r.stderr
            .contains("use examined, sealed, unsealed, copied, returned, destroyed or acquired"),
        "{}",
        r.stderr
    );
    let r = at(
        &t.manila,
        &["custody", "record", &t.item, "--action", "copied"],
    )
    .code(2);
    assert!(r.stderr.contains("--copy NEW_ITEM"), "{}", r.stderr);
    // A transfer to an agency outside the case.
    let outsider = t.tmp.path().join("outsider");
    let key = init(&outsider, "Outside Agency", "NL");
    let r = at(&t.manila, &["custody", "transfer", &t.item, "--to", &key]).code(1);
    assert!(r.stderr.contains("is not a member of case"), "{}", r.stderr);
    // Recorded events by the holder, with a digest mismatch reported as a conflict.
    let r = at(
        &t.manila,
        &[
            "custody",
            "record",
            &t.item,
            "--action",
            "examined",
            "--digest-matched",
            "no",
            "--note",
            "hash differs from the seizure report",
        ],
    )
    .code(0);
    assert_eq!(
        normalize(&r.stdout, &[], &[]),
        "Recorded examined of item EX-1 (<UUID>)\nentry: <ID>\n"
    );
    let show = at(&t.manila, &["case", "show", &t.case]).code(0);
    assert!(
        show.stdout
            .contains("digest mismatch: Manila Cybercrime Unit observed a different digest"),
        "{}",
        show.stdout
    );
    at(
        &t.manila,
        &["custody", "record", &t.item, "--action", "destroyed"],
    )
    .code(0);
    let r = at(
        &t.manila,
        &["custody", "record", &t.item, "--action", "sealed"],
    )
    .code(1);
    assert!(r.stderr.contains("was destroyed"), "{}", r.stderr);
}

#[test]
fn agency_list_names_every_known_agency() {
    let t = three();
    let r = at(&t.manila, &["agency", "list"]).code(0);
    assert_eq!(
        normalize(&r.stdout, &[], &[]),
        "Berlin Partner Unit     DE  <FP>  peer berlin\n\
         Lyon Liaison Desk       FR  <FP>\n\
         Manila Cybercrime Unit  PH  <FP>  (this node)\n"
    );
    let v = at(&t.lyon, &["--json", "agency", "list"]).json();
    let names: Vec<&str> = v["agencies"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Berlin Partner Unit",
            "Lyon Liaison Desk",
            "Manila Cybercrime Unit"
        ]
    );
    let me: Vec<bool> = v["agencies"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["me"].as_bool())
        .collect();
    assert_eq!(me, [false, true, false]);
    // Any form of an agency resolves: peer name, agency name, fingerprint, key.
    let fp = v["agencies"][0]["fingerprint"]
        .as_str()
        .expect("fp")
        .to_owned();
    for who in [
        "berlin",
        "Berlin Partner Unit",
        fp.as_str(),
        t.berlin_key.as_str(),
    ] {
        let v = at(
            &t.manila,
            &[
                "--json", "case", "share", &t.case, "--with", who, "--role", "examiner",
            ],
        )
        .json();
        assert_eq!(v["agency"], t.berlin_key.as_str(), "{who}");
    }
}
