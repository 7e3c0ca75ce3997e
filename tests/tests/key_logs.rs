//! Key logs between real nodes (sync version 3, SPEC.md §9.15): real QUIC
//! on 127.0.0.1, real store files, statements written by one process while
//! the node runs in another place. Every test is bounded in time.

use std::process::Command;
use std::time::Duration;

use custodia_protocol::keylog::{key_of, Certify, KeyLog, KeyRole, Officer, PublicKey, Statement};
use custodia_protocol::{AgencyId, Body, Identity, Role, Tlp};
use custodia_tests::{copy_dir, eventually, link, open_shared, Agency};

const WAIT: Duration = Duration::from_secs(20);

fn officer(n: u8, name: &str) -> Statement {
    Statement::Certify(Certify {
        key: PublicKey::ed25519(key_of(&Identity::from_seed([n; 32]))),
        role: KeyRole::Officer,
        officer: Some(Officer {
            name: name.into(),
            number: format!("SN-{n:04}"),
        }),
        not_before: 0,
        not_after: None,
    })
}

/// The key log `at` holds of `of`, read fresh from its store.
fn log_at(at: &Agency, of: &AgencyId) -> Option<KeyLog> {
    at.store().key_log(of).expect("a key log that checks")
}

fn len_at(at: &Agency, of: &AgencyId) -> u64 {
    log_at(at, of).map_or(0, |l| l.len())
}

/// Starts `a`'s key log with a next root that is not its key.
fn start(a: &Agency) {
    let next = Identity::from_seed([0xEE; 32]);
    a.local().start_key_log(&next).expect("key log started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_logs_reach_every_member_through_the_liaison_and_no_stranger() {
    // A—B—C, no A–C link; A, B and C share a case. D is pinned by B only
    // and in no case with A.
    let (a, b, c, d) = (
        Agency::new("alpha", "PH"),
        Agency::new("liaison", "FR"),
        Agency::new("charlie", "DE"),
        Agency::new("delta", "NL"),
    );
    link(&a, &b);
    link(&b, &c);
    link(&b, &d);
    open_shared(&a, &[(&b, Role::Liaison), (&c, Role::Investigator)]);
    start(&a);
    start(&c);
    let nodes = [
        custodia_node::start(&a.dir).await.expect("a"),
        custodia_node::start(&b.dir).await.expect("b"),
        custodia_node::start(&c.dir).await.expect("c"),
        custodia_node::start(&d.dir).await.expect("d"),
    ];
    assert!(
        eventually(WAIT, || len_at(&c, &a.id) == 2 && len_at(&a, &c.id) == 2).await,
        "alpha's and charlie's logs crossed the liaison"
    );
    assert_eq!(len_at(&b, &a.id), 2, "the liaison holds them too");
    // A certification written while the nodes run (another process's
    // write to the store) reaches charlie.
    a.local()
        .add_key_statement(officer(7, "Insp. R. Santos"))
        .expect("certify");
    assert!(
        eventually(WAIT, || len_at(&c, &a.id) == 3).await,
        "the new statement reached charlie"
    );
    assert_eq!(
        log_at(&c, &a.id).map(|l| l.head()),
        log_at(&a, &a.id).map(|l| l.head())
    );
    // Charlie's operator reads alpha's key history from its own node.
    let out = Command::new(custodia_tests::custodia_binary())
        .arg("--dir")
        .arg(&c.dir)
        .args(["--json", "key", "log", "alpha"])
        .output()
        .expect("custodia");
    assert!(out.status.success(), "{out:?}");
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(log["agency"], a.id.to_hex());
    assert_eq!(log["name"], "alpha");
    let kinds: Vec<&str> = log["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["inception", "profile", "certify"], "{log}");
    assert_eq!(log["forks"], serde_json::json!([]));
    // Delta shares no case with alpha: it never gets alpha's log, and
    // says so.
    assert!(log_at(&d, &a.id).is_none());
    let out = Command::new(custodia_tests::custodia_binary())
        .arg("--dir")
        .arg(&d.dir)
        .args(["key", "log", &a.id.to_hex()])
        .output()
        .expect("custodia");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No key log of"),
        "{out:?}"
    );
    for n in nodes {
        n.shutdown().await;
    }
    assert!(log_at(&d, &a.id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_node_recovers_its_key_log_from_a_peer_before_it_signs_again() {
    let (m, b) = (Agency::new("manila", "PH"), Agency::new("berlin", "DE"));
    link(&m, &b);
    open_shared(&m, &[(&b, Role::Investigator)]);
    start(&m);
    let backup = m.dir.with_file_name("manila-backup");
    copy_dir(&m.dir, &backup);
    // After the backup: a certification that reaches Berlin.
    m.local()
        .add_key_statement(officer(1, "Insp. A. Reyes"))
        .expect("certify");
    let rb = custodia_node::start(&b.dir).await.expect("berlin");
    let rm = custodia_node::start(&m.dir).await.expect("manila");
    assert!(eventually(WAIT, || len_at(&b, &m.id) == 3).await);
    rm.shutdown().await;
    // The backup comes back: its log lacks the certification.
    std::fs::remove_dir_all(&m.dir).expect("remove");
    copy_dir(&backup, &m.dir);
    assert_eq!(len_at(&m, &m.id), 2);
    let refused = m.local().add_key_statement(officer(2, "Insp. B. Cruz"));
    assert!(refused.is_err(), "no statement from a suspect store");
    assert_eq!(len_at(&m, &m.id), 2, "nothing written");
    // Its node gets the missing statement from Berlin, and Berlin's view
    // confirms the log: the next statement takes the next position.
    let rm = custodia_node::start(&m.dir).await.expect("manila restored");
    assert!(
        eventually(WAIT, || len_at(&m, &m.id) == 3
            && m.store().key_log_unconfirmed().expect("meta").is_none())
        .await,
        "manila recovered its statement and the log is confirmed"
    );
    let next = m
        .local()
        .add_key_statement(officer(2, "Insp. B. Cruz"))
        .expect("writes again");
    assert_eq!(next.seq(), 3, "a new position, never one Berlin holds");
    assert!(
        eventually(WAIT, || len_at(&b, &m.id) == 4).await,
        "and it reaches Berlin"
    );
    assert!(b.store().key_forks(&m.id).expect("forks").is_empty());
    rm.shutdown().await;
    rb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_records_the_name_an_agency_signed_not_a_local_nickname() {
    let (a, b) = (
        Agency::new("alpha", "PH"),
        Agency::new("Bundeskriminalamt", "DE"),
    );
    // Alpha's operator knows bravo as "berlin".
    a.local()
        .add_peer(custodia_node::Peer {
            name: "berlin".into(),
            addr: b.addr.to_string(),
            key: b.id.to_hex(),
            country: "DE".into(),
        })
        .expect("peer");
    b.pin(&a, "PH");
    let case = a
        .local()
        .open_case("Operation Lantern", "NBI-2026-0042", Some("PH"), Tlp::Amber)
        .expect("open")
        .case_id();
    start(&b);
    // Before bravo's log reaches alpha, alpha knows only its nickname,
    // and a case shared now records it.
    let known = a.local().resolve_agency("berlin").expect("known");
    assert_eq!((known.name.as_str(), known.signed), ("berlin", false));
    let early = a
        .local()
        .open_case("Operation Ember", "NBI-2026-0043", Some("PH"), Tlp::Amber)
        .expect("open")
        .case_id();
    a.local()
        .share(&early, "berlin", Role::Investigator)
        .expect("shared early");
    let (ra, rb) = (
        custodia_node::start(&a.dir).await.expect("a"),
        custodia_node::start(&b.dir).await.expect("b"),
    );
    assert!(eventually(WAIT, || log_at(&a, &b.id).is_some()).await);
    let known = a.local().resolve_agency("berlin").expect("known");
    assert_eq!(
        (known.name.as_str(), known.country.as_str(), known.signed),
        ("Bundeskriminalamt", "DE", true),
        "the nickname still finds the agency, which is named as it signed"
    );
    // Another name for it is refused, and writes nothing.
    let mut other = known.clone();
    other.name = "Berlin Police".into();
    let before = a.case_count(&case);
    let refused = a.local().share_agency(&case, &other, Role::Investigator);
    assert!(
        matches!(refused, Err(custodia_node::LocalError::Refused(ref m)) if m.contains("Bundeskriminalamt")),
        "{refused:?}"
    );
    assert_eq!(a.case_count(&case), before);
    let e = a
        .local()
        .share(&case, "berlin", Role::Investigator)
        .expect("shared");
    match &e.payload().body {
        Body::MemberAdded(m) => assert_eq!(
            (m.name.as_str(), m.country.as_str()),
            ("Bundeskriminalamt", "DE")
        ),
        other => panic!("not a member-added: {other:?}"),
    }
    // The command line shows the signed name, and both where the record
    // holds another.
    let cli = |args: &[&str]| {
        let out = Command::new(custodia_tests::custodia_binary())
            .arg("--dir")
            .arg(&a.dir)
            .args(args)
            .output()
            .expect("custodia");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let list: serde_json::Value =
        serde_json::from_str(&cli(&["--json", "agency", "list"])).expect("json");
    let row = list["agencies"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["agency"] == b.id.to_hex())
        .expect("bravo listed");
    assert_eq!(
        (&row["name"], &row["signed"], &row["peer"]),
        (
            &serde_json::json!("Bundeskriminalamt"),
            &serde_json::json!(true),
            &serde_json::json!("berlin")
        )
    );
    let show = cli(&["case", "show", &early.to_hex()]);
    assert!(
        show.contains("berlin") && show.contains("signs as Bundeskriminalamt (DE)"),
        "{show}"
    );
    ra.shutdown().await;
    rb.shutdown().await;
}

/// `custodia [--json] verify FILE`: its exit code and standard output.
fn verify_file(file: &std::path::Path, json: bool) -> (i32, String) {
    let mut cmd = Command::new(custodia_tests::custodia_binary());
    if json {
        cmd.arg("--json");
    }
    let out = cmd.arg("verify").arg(file).output().expect("custodia");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_court_bundle_carries_the_partners_key_logs_and_a_forged_statement_is_caught() {
    // Alpha and bravo share a case; each certifies or names itself in its
    // key log, and the logs cross. Alpha's export carries both (SPEC.md
    // §10.1 "keys"), and the court's report shows the officer alpha
    // certified and the name bravo signed for itself beside the one the
    // case records.
    let (a, b) = (Agency::new("alpha", "PH"), Agency::new("bravo", "DE"));
    link(&a, &b);
    let case = open_shared(&a, &[(&b, Role::Investigator)]);
    start(&a);
    start(&b);
    a.local()
        .add_key_statement(officer(7, "Insp. R. Santos"))
        .expect("certify");
    b.local()
        .add_key_statement(Statement::Profile(custodia_protocol::keylog::Profile {
            name: "Bundeskriminalamt <b>".into(),
            country: "DE".into(),
        }))
        .expect("profile");
    let (ra, rb) = (
        custodia_node::start(&a.dir).await.expect("a"),
        custodia_node::start(&b.dir).await.expect("b"),
    );
    assert!(
        eventually(WAIT, || len_at(&a, &b.id) == 3).await,
        "bravo's log reached alpha"
    );
    ra.shutdown().await;
    rb.shutdown().await;
    let bytes = a.local().export_bundle(&case, &[]).expect("export");
    let file = a.dir.with_file_name("case.custodia");
    std::fs::write(&file, &bytes).expect("write the bundle");

    let (code, json) = verify_file(&file, true);
    assert_eq!(code, 0, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(report["verdict"], "valid", "{json}");
    assert_eq!(report["bundle"]["format_version"], 2);
    let logs = report["key_logs"].as_array().expect("key logs");
    let of = |id: &AgencyId| {
        logs.iter()
            .find(|l| l["agency"] == id.to_hex())
            .unwrap_or_else(|| panic!("the log of {id} in {json}"))
    };
    let alpha = of(&a.id);
    let certified = alpha["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["kind"] == "certify")
        .expect("a certification");
    assert_eq!(certified["officer"]["name"], "Insp. R. Santos");
    assert_eq!(certified["officer"]["number"], "SN-0007");
    assert_eq!(of(&b.id)["profile"]["name"], "Bundeskriminalamt <b>");
    assert_eq!(of(&b.id)["listed_name"], "bravo");
    let (code, text) = verify_file(&file, false);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Insp. R. Santos (service number SN-0007)"),
        "{text}"
    );
    assert!(
        text.contains("signed name: Bundeskriminalamt <b> (DE; listed in the bundle as bravo)"),
        "{text}"
    );
    // The HTML report escapes the name bravo signed.
    let html = a.dir.with_file_name("case.html");
    let out = Command::new(custodia_tests::custodia_binary())
        .arg("verify")
        .arg(&file)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("custodia");
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("Bundeskriminalamt &lt;b&gt;"), "escaped");
    assert!(!page.contains("Bundeskriminalamt <b>"), "never raw");

    // Someone edits the officer's name in the bundle: the statement's
    // signature fails, so alpha's log does not replay (B8), and the
    // exporter's signature fails (B1).
    let at = bytes
        .windows(15)
        .position(|w| w == b"Insp. R. Santos")
        .expect("the name is in the bundle");
    let mut forged = bytes.clone();
    forged[at + 12] = b'd';
    std::fs::write(&file, &forged).expect("write");
    let (code, json) = verify_file(&file, true);
    assert_eq!(code, 1, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(report["verdict"], "invalid");
    let rules: Vec<(&str, &str)> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["rule"].as_str().expect("rule"),
                p["class"].as_str().expect("class"),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [("B1", "bundle-signature"), ("B8", "key-log")],
        "{json}"
    );
    assert!(
        report["key_logs"]
            .as_array()
            .expect("key logs")
            .iter()
            .all(|l| l["agency"] != a.id.to_hex()),
        "a log that does not replay is not shown as a history"
    );
}
