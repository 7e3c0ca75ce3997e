//! `custodia export --format case-uco`: two node directories, entries moved
//! between them as replication would (see `common::sync`), and the export's
//! structure checked from the outside. Conformance to the ontology is
//! checked by `cli/tests/case_uco/check` with the official validator.

mod common;

use common::{at, init, open_case, sync};
use serde_json::Value;

fn of_type<'a>(doc: &'a Value, ty: &str) -> Vec<&'a Value> {
    doc["@graph"]
        .as_array()
        .expect("a @graph")
        .iter()
        .filter(|n| n["@type"] == ty)
        .collect()
}

#[test]
fn a_transfer_between_agencies_exports_as_a_custody_chain() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (manila, berlin) = (tmp.path().join("manila"), tmp.path().join("berlin"));
    init(&manila, "Manila Cybercrime Unit", "PH");
    let berlin_key = init(&berlin, "Berlin Partner Unit", "DE");
    let case = open_case(&manila, "Operation Test", "MCU-T-3");
    at(
        &manila,
        &[
            "case",
            "share",
            &case,
            "--with",
            &berlin_key,
            "--name",
            "Berlin Partner Unit",
            "--country",
            "DE",
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
            "--also",
            "md5,sha1",
        ],
    )
    .json();
    let item = v["registered"][0]["item"]
        .as_str()
        .expect("item")
        .to_owned();
    let registered = v["registered"][0]["entry"]
        .as_str()
        .expect("entry")
        .to_owned();
    let t = at(
        &manila,
        &["--json", "custody", "transfer", &item, "--to", &berlin_key],
    )
    .json();
    let transfer = t["entry"].as_str().expect("transfer entry").to_owned();
    sync(&manila, &berlin, &case);
    let r = at(&berlin, &["--json", "custody", "receive", &item]).json();
    let receipt = r["entry"].as_str().expect("receipt entry").to_owned();

    let out = tmp.path().join("case.jsonld");
    let path = out.to_str().expect("UTF-8");
    let r = at(
        &berlin,
        &[
            "--json", "export", &case, "--format", "case-uco", "--out", path,
        ],
    )
    .json();
    assert_eq!(r["items"], Value::Null, "the whole case: no selection");
    assert_eq!(r["file"], path);
    assert_eq!(r["counts"]["items"], 1);
    assert_eq!(r["counts"]["actions"], 3);
    assert_eq!(r["counts"]["agencies"], 2);
    let text = std::fs::read_to_string(&out).expect("the export");
    let doc: Value = serde_json::from_str(&text).expect("JSON");

    // Each step carries its Custodia entry id; the receipt is Berlin's
    // and takes the transfer's provenance record as its object.
    let actions = of_type(&doc, "case-investigation:InvestigativeAction");
    let step = |entry: &str| {
        *actions
            .iter()
            .find(|a| a["uco-core:externalReference"][0]["uco-core:externalIdentifier"] == entry)
            .unwrap_or_else(|| panic!("no action for entry {entry}"))
    };
    let (reg, tr, rc) = (step(&registered), step(&transfer), step(&receipt));
    assert_eq!(reg["uco-core:name"], "evidence-registered");
    assert_eq!(tr["uco-action:object"], reg["uco-action:result"]);
    assert_eq!(rc["uco-action:object"], tr["uco-action:result"]);
    let berlin_org = of_type(&doc, "uco-identity:Organization")
        .into_iter()
        .find(|o| o["uco-core:name"] == "Berlin Partner Unit")
        .expect("Berlin")["@id"]
        .clone();
    assert_eq!(rc["uco-action:performer"]["@id"], berlin_org);

    // The file with its three digests.
    let methods: Vec<&str> = text
        .match_indices("\"uco-types:hashMethod\": \"")
        .map(|(i, m)| &text[i + m.len()..i + m.len() + 3])
        .collect();
    assert_eq!(methods, ["SHA", "SHA", "MD5"]);
    assert_eq!(of_type(&doc, "uco-observable:File").len(), 1);

    // Exporting again gives the same bytes; from Manila too, which has
    // not seen the receipt yet, the shared steps have the same ids.
    at(
        &berlin,
        &["export", &case, "--format", "case-uco", "--out", path],
    )
    .code(0);
    assert_eq!(std::fs::read_to_string(&out).expect("again"), text);
    let m_out = tmp.path().join("manila.jsonld");
    at(
        &manila,
        &[
            "export",
            &case[..12],
            "--format",
            "case-uco",
            "--out",
            m_out.to_str().expect("UTF-8"),
            "--items",
            &item[..8],
        ],
    )
    .code(0);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(&m_out).expect("manila's")).expect("JSON");
    let m_actions = of_type(&m, "case-investigation:InvestigativeAction");
    assert_eq!(m_actions.len(), 2);
    assert!(m_actions.iter().any(|a| a["@id"] == tr["@id"]));

    // An item of no case is refused before anything is written.
    let nowhere = tmp.path().join("nowhere.jsonld");
    let r = at(
        &berlin,
        &[
            "export",
            &case,
            "--format",
            "case-uco",
            "--out",
            nowhere.to_str().expect("UTF-8"),
            "--items",
            "ffffffff",
        ],
    )
    .code(2);
    assert!(r.stderr.contains("no item"), "{}", r.stderr);
    assert!(!nowhere.exists());
}
